# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""molecule/_shared/inject.py with the docker CLI replaced by a fake: arguments, parsing, decisions.

The shell it runs inside the containers (the lock probe, the admin-up script) runs here for
real, with local sh and flock and a stand-in iptables.
"""

from __future__ import annotations

import fcntl
import importlib.util
import io
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
INJECT = REPO / "molecule" / "_shared" / "inject.py"
_spec = importlib.util.spec_from_file_location("fleet_inject", INJECT)
inject = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inject)

STAT_COMMAND = "echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock"
INFO_COMMAND = "echo 'show info' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock"

# Captured from HAProxy 2.6.12 (Debian bookworm's 2.6.12-1+deb12u3) through its admin socket:
# backend "models" as haproxy.cfg.j2 renders it with fleet_haproxy_cookie, fu-m1 and fu-m2 healthy,
# after "set server models/fu-m2 state drain".
SHOW_STAT = (
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,statu'
    's,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rat'
    'e,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_'
    '5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,co'
    'mp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,che'
    'ck_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie'
    ',mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,c'
    'ache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur'
    ',used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ss'
    'l_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_str'
    'eam_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_str'
    'eam_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_'
    'total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,'
    'h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,\n'
    'models_in,FRONTEND,,,0,0,9985,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,'
    '0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,'
    '0,0,0,0,0,0,0,0,0,0,\n'
    'models,fu-m1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,2,0,,1,3,1,,0,,2,0,,0,L7OK,200,1,0,0,0,0,0,0,,,'
    ',0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:18001,fu-m1,http,,,,,,,,0,0,0,,,0'
    ',,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'models,fu-m2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,1,1,0,0,0,1,0,,1,3,2,,0,,2,0,,0,L7OK,200,1,0,0,0,0,0,0'
    ',,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:18002,fu-m2,http,,,,,,,,0,0,0,'
    ',,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'models,BACKEND,0,0,0,0,999,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,2,0,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,'
    '0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,SERVERID,http,leastconn,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,1,0,0,0'
    ',-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,9,9,1009,216,0,0,\n'
    '\n'
)

SHOW_INFO = (
    'Name: HAProxy\n'
    'Version: 2.6.12-1+deb12u3\n'
    'Release_date: 2025/10/03\n'
    'Nbthread: 2\n'
    'Nbproc: 1\n'
    'Process_num: 1\n'
    'Pid: 16115\n'
    'Uptime: 0d 0h00m02s\n'
    'Uptime_sec: 2\n'
    'Memmax_MB: 0\n'
    'PoolAlloc_MB: 0\n'
    'PoolUsed_MB: 0\n'
    'PoolFailed: 0\n'
    'Ulimit-n: 20000\n'
    'Maxsock: 20000\n'
    'Maxconn: 9985\n'
    'Hard_maxconn: 9985\n'
    'CurrConns: 0\n'
    'CumConns: 12\n'
    'CumReq: 3\n'
    'MaxSslConns: 0\n'
    'CurrSslConns: 0\n'
    'CumSslConns: 0\n'
    'Maxpipes: 0\n'
    'PipesUsed: 0\n'
    'PipesFree: 0\n'
    'ConnRate: 0\n'
    'ConnRateLimit: 0\n'
    'MaxConnRate: 0\n'
    'SessRate: 0\n'
    'SessRateLimit: 0\n'
    'MaxSessRate: 0\n'
    'SslRate: 0\n'
    'SslRateLimit: 0\n'
    'MaxSslRate: 0\n'
    'SslFrontendKeyRate: 0\n'
    'SslFrontendMaxKeyRate: 0\n'
    'SslFrontendSessionReuse_pct: 0\n'
    'SslBackendKeyRate: 0\n'
    'SslBackendMaxKeyRate: 0\n'
    'SslCacheLookups: 0\n'
    'SslCacheMisses: 0\n'
    'CompressBpsIn: 0\n'
    'CompressBpsOut: 0\n'
    'CompressBpsRateLim: 0\n'
    'Tasks: 15\n'
    'Run_queue: 0\n'
    'Idle_pct: 100\n'
    'node: vm\n'
    'Stopping: 0\n'
    'Jobs: 3\n'
    'Unstoppable Jobs: 0\n'
    'Listeners: 2\n'
    'ActivePeers: 0\n'
    'ConnectedPeers: 0\n'
    'DroppedLogs: 0\n'
    'BusyPolling: 0\n'
    'FailedResolutions: 0\n'
    'TotalBytesOut: 2564\n'
    'TotalSplicdedBytesOut: 0\n'
    'BytesOutRate: 2464\n'
    'DebugCommandsIssued: 0\n'
    'CumRecvLogs: 0\n'
    'Build info: 2.6.12-1+deb12u3\n'
    'Memmax_bytes: 0\n'
    'PoolAlloc_bytes: 123760\n'
    'PoolUsed_bytes: 123760\n'
    'Start_time_sec: 1796176726\n'
    'Tainted: 0\n'
    '\n'
)


def stat_with(**statuses):
    """SHOW_STAT with the named servers' status column set (fu_m1="UP" sets fu-m1)."""
    lines = SHOW_STAT.split("\n")
    column = lines[0].lstrip("# ").split(",").index("status")
    wanted = {name.replace("_", "-"): status for name, status in statuses.items()}
    for number, line in enumerate(lines[1:], 1):
        fields = line.split(",")
        if len(fields) > column and fields[1] in wanted:
            fields[column] = wanted[fields[1]]
            lines[number] = ",".join(fields)
    return "\n".join(lines)


def info_with(pid):
    return SHOW_INFO.replace("Pid: 16115\n", "Pid: %d\n" % pid)


class FakeClock:
    """Time that passes only when the injector sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def wall(self):
        return "T+%.1f" % (self.now - 1000.0)


class FakeDocker:
    """The docker CLI as subprocess.run would run it: answers by kind of call, records each call.

    answers[kind] is a list of answers, used in turn, the last one repeating; an answer is
    stdout text (exit 0), or (rc, stdout, stderr), or a callable returning either.
    """

    def __init__(self, clock=None, **answers):
        self.clock = clock
        self.answers = {kind: list(value) for kind, value in answers.items()}
        self.calls = []  # (kind, argv after "docker", fake time or None)

    @staticmethod
    def kind(args):
        if args[0] == "kill":
            return "kill"
        assert args[0] == "exec", args
        command = args[2:]
        if command[:2] == ["sh", "-c"]:
            script = command[2]
            if script == STAT_COMMAND:
                return "stat"
            if script == INFO_COMMAND:
                return "info"
            if script == inject.LOCK_PROBE:
                assert command[3:] == ["sh", "/run/modelops-shutdown.lock"]
                return "lock"
            if script == 'kill -9 "$1"':
                return "hostkill"
            if script == inject.admin_up_script(9999) or "iptables -C" in script:
                return "up"
            if script.startswith("echo 'get weight "):
                return "weight"
            if script.startswith("echo 'set server "):
                return "setserver"
        if command == ["cat", "/run/modelops-shutdown.lock"]:
            return "cat"
        if command == ["systemctl", "reload", "haproxy"]:
            return "reload"
        if command[0] in ("mv", "iptables"):
            return command[0]
        raise AssertionError("unexpected docker call %r" % (args,))

    def __call__(self, argv, **kwargs):
        assert argv[0] == "docker" and kwargs["check"] is False and kwargs["timeout"] > 0
        assert kwargs["capture_output"] and kwargs["text"]
        args = argv[1:]
        kind = self.kind(args)
        if kind == "lock":
            kind = "lock:" + args[1]
        self.calls.append((kind, args, self.clock.now if self.clock else None))
        queue = self.answers.get(kind, [""])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(answer):
            answer = answer()
        if isinstance(answer, BaseException):
            raise answer
        rc, out, err = (0, answer, "") if isinstance(answer, str) else answer
        return subprocess.CompletedProcess(argv, rc, out, err)

    def kinds(self):
        return [kind for kind, _args, _when in self.calls]


def run(argv, fake, clock):
    out = io.StringIO()
    rc = inject.main(argv, docker=inject.Docker(runner=fake), clock=clock, out=out)
    return rc, out.getvalue()


# --- arguments -----------------------------------------------------------------------------

def test_parse_kill_container_defaults():
    args = inject.parse_args(["kill-container", "--lb", "fu-lb", "--backend", "models", "--server", "fu-m2"])
    assert (args.lb, args.backend, args.server, args.timeout, args.command) == ("fu-lb", "models", "fu-m2", 120.0, None)
    assert args.func is inject.cmd_kill_container


def test_parse_reload_and_admin_options():
    args = inject.parse_args(["reload", "--lb", "l", "--backend", "b", "--server", "s", "--timeout", "7.5"])
    assert args.status == "DRAIN" and args.timeout == 7.5
    args = inject.parse_args(["reload", "--lb", "l", "--backend", "b", "--server", "s", "--status", "MAINT"])
    assert args.status == "MAINT"
    args = inject.parse_args(["admin-down", "--lb", "l", "--backend", "b", "--server", "s", "--for", "0"])
    assert args.for_seconds == 0 and args.port == 9999
    args = inject.parse_args(["admin-down", "--lb", "l", "--backend", "b", "--server", "s", "--for", "2.5",
                              "--port", "19999"])
    assert args.for_seconds == 2.5 and args.port == 19999
    args = inject.parse_args(["admin-up", "--lb", "l"])
    assert args.port == 9999 and args.func is inject.cmd_admin_up


def test_parse_run_and_kill_keeps_argv_after_the_separator_verbatim():
    argv = ["ansible-playbook", "-i", "inv", "--check", "-e", '{"shutdown_serial": [2]}', "--", "x"]
    args = inject.parse_args(["run-and-kill", "--lb", "l", "--backend", "b", "--servers", "fu-m1, fu-m2",
                              "--hosts", "fu-m1,fu-m2", "--log", "/tmp/l", "--rc", "/tmp/rc", "--"] + argv)
    assert args.servers == ["fu-m1", "fu-m2"] and args.hosts == ["fu-m1", "fu-m2"]
    assert args.command == argv and args.timeout == 120.0


RUN_AND_KILL = ["run-and-kill", "--lb", "l", "--backend", "b", "--servers", "s", "--hosts", "h",
                "--log", "log", "--rc", "rc"]


@pytest.mark.parametrize("argv", [
    [],
    ["bogus"],
    ["kill-container", "--backend", "b", "--server", "s"],
    ["kill-container", "--lb", "l", "--server", "s"],
    ["kill-container", "--lb", "l", "--backend", "b"],
    ["kill-container", "--lb", "l", "--backend", "b", "--server", "s", "--timeout", "0"],
    ["kill-container", "--lb", "l", "--backend", "b", "--server", "s", "--timeout", "-1"],
    ["kill-container", "--lb", "l", "--backend", "b", "--server", "s", "--timeout", "soon"],
    ["kill-container", "--lb", "l", "--backend", "b", "--server", "s", "--timeout", "nan"],
    ["kill-container", "--lb", "l", "--backend", "b", "--server", "s", "--", "true"],
    ["reload", "--lb", "l", "--backend", "b", "--server", "s", "--bogus"],
    ["admin-down", "--lb", "l", "--backend", "b", "--server", "s"],
    ["admin-down", "--lb", "l", "--backend", "b", "--server", "s", "--for", "-1"],
    ["admin-down", "--lb", "l", "--backend", "b", "--server", "s", "--for", "1", "--port", "0"],
    ["admin-down", "--lb", "l", "--backend", "b", "--server", "s", "--for", "1", "--port", "65536"],
    ["admin-up"],
    ["admin-up", "--lb", "l", "--port", "http"],
    RUN_AND_KILL,
    RUN_AND_KILL + ["--"],
    [a if a != "s" else "s1,,s2" for a in RUN_AND_KILL] + ["--", "true"],
    [a if a != "h" else "h1,h1" for a in RUN_AND_KILL] + ["--", "true"],
    [a for a in RUN_AND_KILL if a not in ("--rc", "rc")] + ["--", "true"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        inject.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "error:" in err and len(err.strip().splitlines()[-1]) < 200


def test_bad_arguments_exit_2_from_the_command_line():
    result = subprocess.run([sys.executable, str(INJECT), "admin-down", "--lb", "l", "--backend", "b", "--server", "s",
                             "--for", "x"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "argument --for: 'x' is not a number" in result.stderr


# --- HAProxy answers -----------------------------------------------------------------------

def test_parse_stat_of_a_real_capture():
    rows = inject.parse_stat(SHOW_STAT)
    assert [(row["pxname"], row["svname"], row["status"]) for row in rows] == [
        ("models_in", "FRONTEND", "OPEN"), ("models", "fu-m1", "UP"), ("models", "fu-m2", "DRAIN"),
        ("models", "BACKEND", "UP")]
    assert rows[1]["check_desc"] == "Layer7 check passed" and rows[1]["cookie"] == "fu-m1"
    assert inject.server_status(rows, "models", "fu-m2") == "DRAIN"
    assert inject.server_status(rows, "models", "fu-m3") is None
    assert inject.server_status(rows, "other", "fu-m1") is None


def test_parse_stat_reads_a_quoted_field_with_a_comma():
    # HAProxy quotes CSV fields that hold a comma: the columns after it must stay in place.
    text = SHOW_STAT.replace("Layer7 check passed", '"Layer7 wrong status, code: 503"', 1)
    rows = inject.parse_stat(text)
    assert rows[1]["check_desc"] == "Layer7 wrong status, code: 503"
    assert [row["status"] for row in rows] == ["OPEN", "UP", "DRAIN", "UP"]
    assert rows[1]["cookie"] == "fu-m1"


@pytest.mark.parametrize("text", ["", "\n", "Unknown command: 'show stats'\n", "Permission denied\n"])
def test_parse_stat_refuses_what_is_not_its_csv(text):
    with pytest.raises(inject.NoAnswer):
        inject.parse_stat(text)


def test_parse_info_pid():
    assert inject.parse_info_pid(SHOW_INFO) == 16115
    assert inject.parse_info_pid("Name: HAProxy\n") is None
    assert inject.parse_info_pid("") is None


@pytest.mark.parametrize("status, wanted, matches", [
    ("DRAIN", "DRAIN", True),
    ("DRAIN 1/2", "DRAIN", True),
    ("DRAIN (agent)", "DRAIN", True),
    ("MAINT (via models/fu-m1)", "MAINT", True),
    ("MAINT (via models/fu-m1)", "MAINT (via models/fu-m1)", True),
    ("UP", "DRAIN", False),
    ("UP 1/2", "DRAIN", False),
    ("DOWN", "DRAIN", False),
    ("NOLB", "DRAIN", False),
    (None, "DRAIN", False),
])
def test_status_matches(status, wanted, matches):
    assert inject.status_matches(status, wanted) is matches


# --- the docker helper ---------------------------------------------------------------------

def test_docker_failure_carries_the_command_and_its_stderr():
    fake = FakeDocker(kill=[(1, "", "Error response from daemon: No such container: fu-m9\n")])
    with pytest.raises(inject.DockerError) as exc:
        inject.Docker(runner=fake)("kill", "fu-m9")
    assert str(exc.value) == "docker kill fu-m9: exit 1: Error response from daemon: No such container: fu-m9"


def test_docker_timeout_and_missing_cli_are_docker_errors():
    def hangs(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    with pytest.raises(inject.DockerError, match=r"^docker kill x: no answer within 3 s$"):
        inject.Docker(runner=hangs, timeout=3)("kill", "x")

    def missing(argv, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "docker")

    with pytest.raises(inject.DockerError, match="No such file or directory"):
        inject.Docker(runner=missing)("kill", "x")


def test_docker_passes_a_timeout_on_every_call():
    seen = []

    def runner(argv, **kwargs):
        seen.append(kwargs["timeout"])
        return subprocess.CompletedProcess(argv, 0, "", "")

    docker = inject.Docker(runner=runner)
    docker("kill", "x")
    docker.exec("lb", "true", timeout=60)
    assert seen == [inject.DOCKER_TIMEOUT, 60]


# --- kill-container ------------------------------------------------------------------------

KILL = ["kill-container", "--lb", "fu-lb", "--backend", "models", "--server", "fu-m2", "--timeout", "30"]


def test_kill_container_kills_half_a_second_after_the_drain_shows():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="UP"), stat_with(fu_m2="UP"), stat_with(fu_m2="DRAIN")])
    rc, out = run(KILL, fake, clock)
    assert rc == 0
    assert fake.kinds() == ["stat", "stat", "stat", "kill"]
    assert fake.calls[-1][1] == ["kill", "fu-m2"]
    assert fake.calls[-1][2] - fake.calls[-2][2] == pytest.approx(0.5)
    # molecule/fault_unreachable/tests/test_fault_unreachable.py looks for this wording.
    assert out.startswith("killed fu-m2 while it was draining") and out.count("\n") == 1


def test_kill_container_rides_out_failed_reads():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[(1, "", "2024/01/01 socat[7] E connect(): No such file or directory"),
                                   "", stat_with(fu_m2="DRAIN 1/2")])
    rc, out = run(KILL, fake, clock)
    assert rc == 0 and fake.kinds() == ["stat", "stat", "stat", "kill"] and "killed fu-m2" in out


def test_kill_container_never_draining_exits_1_with_a_reason():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="UP")])
    rc, out = run(KILL, fake, clock)
    assert rc == 1 and "kill" not in fake.kinds()
    assert out == "fu-m2 never started draining within 30 s (last seen: models/fu-m2 UP)\n"
    assert 29 <= clock.now - 1000 <= 31


def test_kill_container_reports_the_last_docker_error_when_haproxy_never_answers():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[(1, "", "Error response from daemon: container fu-lb is not running")])
    rc, out = run(KILL, fake, clock)
    assert rc == 1 and out.count("\n") == 1
    assert "last error: docker exec fu-lb sh -c" in out and "container fu-lb is not running" in out


def test_kill_container_failing_kill_exits_3_with_stderr(capsys):
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="DRAIN")], kill=[(1, "", "Error response from daemon: gone")])
    rc, out = run(KILL, fake, clock)
    assert rc == 3 and out == ""
    assert capsys.readouterr().err == "kill-container: docker kill fu-m2: exit 1: Error response from daemon: gone\n"


# --- reload --------------------------------------------------------------------------------

RELOAD = ["reload", "--lb", "fu-lb", "--backend", "models", "--server", "fu-m2", "--timeout", "20"]


def test_reload_waits_for_a_new_worker_and_reports_before_and_after():
    clock = FakeClock()
    fake = FakeDocker(clock,
                      stat=[stat_with(fu_m2="UP"), stat_with(fu_m2="DRAIN"), stat_with(fu_m2="UP")],
                      # the old worker still answers twice after the reload, then the new one
                      info=[info_with(100), info_with(100), info_with(100), info_with(200)])
    rc, out = run(RELOAD, fake, clock)
    assert rc == 0
    assert fake.kinds() == ["stat", "stat", "info", "reload", "info", "info", "info", "stat"]
    assert out.count("\n") == 1
    assert "reloaded haproxy on fu-lb at T+0.2: models/fu-m2 was DRAIN before, UP after (worker pid 100 -> 200" in out


def test_reload_waits_for_the_status_asked_for():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="DRAIN"), stat_with(fu_m2="MAINT")],
                      info=[info_with(1), info_with(2)])
    rc, out = run(RELOAD + ["--status", "MAINT"], fake, clock)
    assert rc == 0 and fake.kinds()[:3] == ["stat", "stat", "info"] and "was MAINT before, MAINT after" in out


def test_reload_never_in_that_status_does_not_reload():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="UP")])
    rc, out = run(RELOAD, fake, clock)
    assert rc == 1 and "reload" not in fake.kinds()
    assert out == "fu-m2 never was DRAIN within 20 s (last seen: models/fu-m2 UP)\n"


def test_reload_without_a_new_worker_exits_3(capsys):
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="DRAIN")], info=[info_with(100)])
    rc, out = run(RELOAD, fake, clock)
    assert rc == 3 and out == ""
    assert "no new worker answered within 20 s (last seen: worker pid 100)" in capsys.readouterr().err


def test_reload_failing_systemctl_exits_3_with_stderr(capsys):
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="DRAIN")], info=[info_with(100)],
                      reload=[(1, "", "Job for haproxy.service failed because the control process exited")])
    rc, _out = run(RELOAD, fake, clock)
    assert rc == 3
    assert "docker exec fu-lb systemctl reload haproxy: exit 1: Job for haproxy.service failed" in capsys.readouterr().err


# --- admin-down / admin-up -----------------------------------------------------------------

ADMIN_DOWN = ["admin-down", "--lb", "fu-lb", "--backend", "models", "--server", "fu-m2", "--timeout", "20"]
RULE = ["INPUT", "-p", "tcp", "--dport", "9999", "-j", "REJECT", "--reject-with", "tcp-reset"]


def test_admin_down_reads_state_only_before_going_down_and_comes_back_after_the_time():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="UP"), stat_with(fu_m2="DRAIN")],
                      up=["socket: restored\niptables: 1 rule(s) removed\n"])
    rc, out = run(ADMIN_DOWN + ["--for", "5"], fake, clock)
    assert rc == 0
    assert fake.kinds() == ["stat", "stat", "mv", "iptables", "up"]
    assert fake.calls[2][1] == ["exec", "fu-lb", "mv", "/run/haproxy/admin.sock", "/run/haproxy/admin.sock.away"]
    assert fake.calls[3][1] == ["exec", "fu-lb", "iptables", "-I"] + RULE
    assert fake.calls[4][2] - fake.calls[3][2] == pytest.approx(5)
    lines = out.splitlines()
    assert lines == [
        "admin API on fu-lb down at T+0.2 (models/fu-m2 was DRAIN): /run/haproxy/admin.sock moved away, tcp/9999 rejected",
        "admin API on fu-lb back up at T+5.2 (socket: restored iptables: 1 rule(s) removed)"]


def test_admin_down_for_0_leaves_it_down():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="DRAIN")])
    rc, out = run(ADMIN_DOWN + ["--for", "0", "--port", "19999"], fake, clock)
    assert rc == 0 and fake.kinds() == ["stat", "mv", "iptables"]
    assert fake.calls[2][1] == ["exec", "fu-lb", "iptables", "-I"] + [a.replace("9999", "19999") for a in RULE]
    assert "down at" in out and "admin-up --lb fu-lb --port 19999" in out and "back up" not in out


def test_admin_down_never_draining_touches_nothing():
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="UP")])
    rc, out = run(ADMIN_DOWN + ["--for", "5"], fake, clock)
    assert rc == 1 and set(fake.kinds()) == {"stat"} and "never started draining within 20 s" in out


def test_admin_down_puts_the_socket_back_when_iptables_fails(capsys):
    clock = FakeClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="DRAIN")],
                      iptables=[(4, "", "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: "
                                        "Permission denied (you must be root)")])
    rc, out = run(ADMIN_DOWN + ["--for", "5"], fake, clock)
    assert rc == 3 and fake.kinds() == ["stat", "mv", "iptables", "up"] and out == ""
    assert "Permission denied (you must be root)" in capsys.readouterr().err


def test_admin_down_stopped_by_a_signal_comes_back_early():
    class StoppedClock(FakeClock):
        def sleep(self, seconds):
            if seconds == 60:
                self.now += 2
                raise inject.Interrupted("SIGTERM")
            super().sleep(seconds)

    clock = StoppedClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="DRAIN")], up=["socket: restored\niptables: 1 rule(s) removed\n"])
    rc, out = run(ADMIN_DOWN + ["--for", "60"], fake, clock)
    assert rc == 0 and fake.kinds() == ["stat", "mv", "iptables", "up"]
    assert out.splitlines()[-1].startswith("admin API on fu-lb back up at T+2.0 early, on SIGTERM")


def test_admin_down_restores_on_a_real_sigterm(tmp_path):
    """The signal handler itself: SIGTERM during the wait puts the API back, and the run still exits 0."""
    class SignalClock(FakeClock):
        def sleep(self, seconds):
            if seconds == 60:
                os.kill(os.getpid(), signal.SIGTERM)
            super().sleep(seconds)

    before = signal.getsignal(signal.SIGTERM)
    clock = SignalClock()
    fake = FakeDocker(clock, stat=[stat_with(fu_m2="DRAIN")], up=["socket: restored\n"])
    rc, out = run(ADMIN_DOWN + ["--for", "60"], fake, clock)
    assert rc == 0 and fake.kinds()[-1] == "up" and "early, on SIGTERM" in out
    assert signal.getsignal(signal.SIGTERM) is before


def test_admin_up_runs_the_restore_script():
    clock = FakeClock()
    fake = FakeDocker(clock, up=["socket: in place\niptables: 0 rule(s) removed\n"])
    rc, out = run(["admin-up", "--lb", "fu-lb"], fake, clock)
    assert rc == 0 and fake.kinds() == ["up"]
    assert fake.calls[0][1] == ["exec", "fu-lb", "sh", "-c", inject.admin_up_script(9999)]
    assert out == "admin API on fu-lb up at T+0.0 (socket: in place iptables: 0 rule(s) removed)\n"


FAKE_IPTABLES = textwrap.dedent("""\
    #!/bin/sh
    # Stand-in iptables: rules are lines in $RULES; -I adds one, -C checks, -D removes one.
    op=$1; shift
    rule="$*"
    case $op in
      -I) echo "$rule" >> "$RULES" ;;
      -C) grep -qxF -- "$rule" "$RULES" ;;
      -D) [ -n "$FAIL_DELETE" ] && { echo "iptables: Bad rule" >&2; exit 1; }
          grep -qxF -- "$rule" "$RULES" || exit 1
          awk -v r="$rule" 'done || $0 != r { print; next } { done = 1 }' "$RULES" > "$RULES.new"
          mv "$RULES.new" "$RULES" ;;
      *) exit 2 ;;
    esac
""")


@pytest.fixture
def lb_root(tmp_path):
    """A directory standing in for /run/haproxy, with a stand-in iptables on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "iptables").write_text(FAKE_IPTABLES)
    (bin_dir / "iptables").chmod(0o755)
    rules = tmp_path / "rules"
    rules.write_text("")
    sock = tmp_path / "admin.sock"

    def up(port=9999, **env):
        script = inject.admin_up_script(port, socket_path=str(sock))
        full_env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]), RULES=str(rules), **env)
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=full_env, timeout=30,
                              check=False)

    return type("LbRoot", (), {"sock": sock, "away": tmp_path / "admin.sock.away", "rules": rules, "up": up,
                               "rule": " ".join(RULE)})


def test_admin_up_script_undoes_admin_down(lb_root):
    lb_root.away.write_text("socket")
    lb_root.rules.write_text(lb_root.rule + "\n")
    result = lb_root.up()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["socket: restored", "iptables: 1 rule(s) removed", ""]
    assert lb_root.sock.read_text() == "socket" and not lb_root.away.exists() and lb_root.rules.read_text() == ""


def test_admin_up_script_is_idempotent(lb_root):
    lb_root.sock.write_text("socket")
    lb_root.rules.write_text("INPUT -p tcp --dport 8080 -j ACCEPT\n")
    for _attempt in range(2):
        result = lb_root.up()
        assert result.returncode == 0, result.stderr
        assert result.stdout == "socket: in place\niptables: 0 rule(s) removed\n"
    assert lb_root.sock.read_text() == "socket" and lb_root.rules.read_text() == "INPUT -p tcp --dport 8080 -j ACCEPT\n"


def test_admin_up_script_keeps_a_socket_a_reload_made_and_removes_every_copy_of_the_rule(lb_root):
    lb_root.sock.write_text("new socket")
    lb_root.away.write_text("old socket")
    lb_root.rules.write_text((lb_root.rule + "\n") * 2)
    result = lb_root.up()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "socket: stale .away removed\niptables: 2 rule(s) removed\n"
    assert lb_root.sock.read_text() == "new socket" and not lb_root.away.exists() and lb_root.rules.read_text() == ""


def test_admin_up_script_fails_when_the_rule_cannot_be_deleted(lb_root):
    lb_root.sock.write_text("socket")
    lb_root.rules.write_text(lb_root.rule + "\n")
    result = lb_root.up(FAIL_DELETE="1")
    assert result.returncode == 1 and "Bad rule" in result.stderr


def test_admin_up_script_touches_only_the_rule_for_its_port(lb_root):
    lb_root.sock.write_text("socket")
    other = lb_root.rule.replace("9999", "19999")
    lb_root.rules.write_text(other + "\n")
    result = lb_root.up(port=9999)
    assert result.returncode == 0 and lb_root.rules.read_text() == other + "\n"


# --- the host lock probe, for real ---------------------------------------------------------

def probe(path):
    return subprocess.run(["sh", "-c", inject.LOCK_PROBE, "sh", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.skipif(not any(os.access(os.path.join(d, "flock"), os.X_OK) for d in os.environ["PATH"].split(":")),
                    reason="no flock(1) here")
def test_lock_probe_tells_held_from_free(tmp_path):
    lock = tmp_path / "modelops-shutdown.lock"
    result = probe(lock)
    assert result.returncode == 0 and not lock.exists()  # a missing file is free, and stays missing
    lock.write_text('{"pid": 1234}')
    assert probe(lock).returncode == 0
    with open(lock, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # what the module under test does
        result = probe(lock)
        assert result.returncode == inject.LOCK_HELD_RC and result.stderr == ""
    assert probe(lock).returncode == 0


# --- run-and-kill --------------------------------------------------------------------------

# ARGV stand-in: prints, starts a grandchild in its own process group, records the grandchild's pid, sleeps.
PLAYBOOK = textwrap.dedent("""\
    import subprocess, sys, time
    print("PLAY [Retire]", flush=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open(sys.argv[1], "w").write(str(child.pid))
    time.sleep(60)
""")


@pytest.fixture
def playbook(tmp_path, fleet):
    """ARGV for run-and-kill; the fleet fixture's token makes its teardown kill anything left over."""
    token_env = {k: v for k, v in fleet.env().items() if k == "MODELOPS_FLEET_TEST_TOKEN"}
    saved = {k: os.environ.get(k) for k in token_env}
    os.environ.update(token_env)
    script = tmp_path / "playbook.py"
    script.write_text(PLAYBOOK)
    yield [sys.executable, str(script), str(tmp_path / "grandchild.pid")]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run_and_kill_argv(tmp_path, command, timeout="10"):
    return ["run-and-kill", "--lb", "fu-lb", "--backend", "models", "--servers", "fu-m1,fu-m2",
            "--hosts", "fu-m1,fu-m2", "--log", str(tmp_path / "play.log"), "--rc", str(tmp_path / "play.rc"),
            "--timeout", timeout, "--"] + command


def grandchild_gone(tmp_path, helpers):
    pid = int((tmp_path / "grandchild.pid").read_text())
    helpers.wait_for(lambda: not helpers.pid_running(pid), 5.0, message="grandchild %d gone" % pid)
    return True


def test_run_and_kill_kills_the_group_and_the_host_modules_once_all_drain_locked(tmp_path, playbook, helpers):
    (tmp_path / "play.rc").write_text("0\n")  # stale, from an earlier run
    fake = FakeDocker(
        stat=[stat_with(fu_m1="UP", fu_m2="UP"), stat_with(fu_m1="DRAIN", fu_m2="UP"),
              stat_with(fu_m1="DRAIN", fu_m2="DRAIN")],
        # fu-m2's module has not taken its lock at the first look; after the kill both locks are free.
        **{"lock:fu-m1": [(75, "", ""), (75, "", ""), (0, "", "")],
           "lock:fu-m2": [(0, "", ""), (75, "", ""), (75, "", ""), (0, "", "")]},
        cat=["", '{"pid": 4242, "started": 1714564801.5}'],
        hostkill=[(0, "", ""), (1, "", "sh: 1: kill: No such process")])
    rc, out = run(run_and_kill_argv(tmp_path, playbook), fake, inject.Clock())
    assert rc == 0, out
    kinds = fake.kinds()
    first_kill = kinds.index("hostkill")
    # Armed only when both servers drain and both locks are held; then pid reads, kills, lock checks.
    assert kinds[:first_kill] == ["stat", "stat", "stat", "lock:fu-m1", "lock:fu-m2",
                                  "stat", "lock:fu-m1", "lock:fu-m2", "cat", "cat"]
    assert [args for kind, args, _t in fake.calls if kind == "hostkill"] == [
        ["exec", "fu-m1", "sh", "-c", 'kill -9 "$1"', "sh", "4242"],
        ["exec", "fu-m2", "sh", "-c", 'kill -9 "$1"', "sh", "4242"]]
    assert (tmp_path / "play.rc").read_text() == "-9\n"
    assert (tmp_path / "play.log").read_text().startswith("PLAY [Retire]")
    assert grandchild_gone(tmp_path, helpers)
    assert out.count("\n") == 1 and out.startswith("killed %s " % playbook[0])
    assert "rc -9) at 20" in out  # an ISO wall-clock time follows "at"
    assert "then on the hosts fu-m1 pid 4242, fu-m2 pid 4242 (already gone)" in out
    assert out.rstrip().endswith("HAProxy then: models/fu-m1=DRAIN models/fu-m2=DRAIN")


def test_run_and_kill_when_argv_exits_first(tmp_path):
    fake = FakeDocker(stat=[stat_with(fu_m1="UP", fu_m2="UP")])
    rc, out = run(run_and_kill_argv(tmp_path, [sys.executable, "-c", "print('boom'); raise SystemExit(4)"]),
                  fake, inject.Clock())
    assert rc == 1 and (tmp_path / "play.rc").read_text() == "4\n" and "boom" in (tmp_path / "play.log").read_text()
    assert out.count("\n") == 1 and "exited with rc 4 before every server was DRAIN with its host locked" in out
    assert "hostkill" not in fake.kinds()


def test_run_and_kill_stops_argv_when_the_condition_never_holds(tmp_path, playbook, helpers):
    fake = FakeDocker(stat=[stat_with(fu_m1="DRAIN", fu_m2="DRAIN")],
                      **{"lock:fu-m1": [(75, "", "")], "lock:fu-m2": [(0, "", "")]})
    rc, out = run(run_and_kill_argv(tmp_path, playbook, timeout="1"), fake, inject.Clock())
    assert rc == 1 and "hostkill" not in fake.kinds()
    assert "not every server was DRAIN with its host locked within 1 s" in out and "lock free on fu-m2" in out
    assert (tmp_path / "play.rc").read_text() == "-15\n"
    assert grandchild_gone(tmp_path, helpers)


def test_run_and_kill_does_not_take_a_docker_failure_for_a_held_lock(tmp_path, playbook):
    fake = FakeDocker(stat=[stat_with(fu_m1="DRAIN", fu_m2="DRAIN")],
                      **{"lock:fu-m1": [(75, "", "")],
                         "lock:fu-m2": [(1, "", "Error response from daemon: No such container: fu-m2")]})
    rc, out = run(run_and_kill_argv(tmp_path, playbook, timeout="1"), fake, inject.Clock())
    assert rc == 1 and "hostkill" not in fake.kinds() and "No such container: fu-m2" in out


def test_run_and_kill_exits_3_when_a_lock_outlives_the_kill(tmp_path, playbook, monkeypatch, capsys):
    monkeypatch.setattr(inject, "LOCK_RELEASE_TIMEOUT", 0.5)
    fake = FakeDocker(stat=[stat_with(fu_m1="DRAIN", fu_m2="DRAIN")],
                      **{"lock:fu-m1": [(75, "", ""), (0, "", "")], "lock:fu-m2": [(75, "", "")]},
                      cat=['{"pid": 77}'])
    rc, out = run(run_and_kill_argv(tmp_path, playbook), fake, inject.Clock())
    assert rc == 3 and out.startswith("killed ") and (tmp_path / "play.rc").read_text() == "-9\n"
    assert "lock still held on fu-m2 after 0.5 s" in capsys.readouterr().err


def test_run_and_kill_cannot_start_argv(tmp_path):
    fake = FakeDocker()
    rc, out = run(run_and_kill_argv(tmp_path, [str(tmp_path / "no-such-playbook")]), fake, inject.Clock())
    assert rc == 3 and out == "" and fake.calls == []


def test_run_and_kill_with_an_unwritable_log_exits_3(tmp_path, capsys):
    argv = run_and_kill_argv(tmp_path, [sys.executable, "-c", "pass"])
    argv[argv.index("--log") + 1] = str(tmp_path / "no-such-dir" / "play.log")
    rc, out = run(argv, FakeDocker(), inject.Clock())
    assert rc == 3 and out == "" and "No such file or directory" in capsys.readouterr().err


# --- maint-on-weight-drop ------------------------------------------------------------------

WEIGHT_DROP = ["maint-on-weight-drop", "--lb", "rp-lb1", "--backend", "models", "--server", "rp-m1", "--other", "rp-m2"]


def test_maint_on_weight_drop_acts_once_the_ramp_has_begun():
    clock = FakeClock()
    # Real HAProxy 2.6.12 answers (tests/unit/fixtures/haproxy_weight_answers_v2.6.12.json).
    fake = FakeDocker(clock, weight=["10 (initial 10)\n\n", "10 (initial 10)\n\n", "7 (initial 10)\n\n"], setserver=["\n"])
    rc, out = run(WEIGHT_DROP, fake, clock)
    assert rc == 0 and fake.kinds() == ["weight", "weight", "weight", "setserver"]
    assert fake.calls[0][1][-1].startswith("echo 'get weight models/rp-m1' | socat")
    assert fake.calls[-1][1][-1].startswith("echo 'set server models/rp-m2 state maint' | socat")
    assert out.startswith("models/rp-m2 went to maintenance once rp-m1's weight was 7 of 10")


def test_maint_on_weight_drop_never_dropping_exits_1_and_an_odd_answer_is_not_a_drop():
    clock = FakeClock()
    fake = FakeDocker(clock, weight=["No such server.\n\n", "10 (initial 10)\n\n"])
    rc, out = run(WEIGHT_DROP + ["--timeout", "2"], fake, clock)
    assert rc == 1 and "setserver" not in fake.kinds()
    assert out.startswith("the weight of rp-m1 never dropped within 2 s (last seen: models/rp-m1 weight (10, 10))")


def test_maint_on_weight_drop_reports_a_refused_set(capsys):
    clock = FakeClock()
    fake = FakeDocker(clock, weight=["7 (initial 10)\n\n"], setserver=["No such server.\n\n"])
    rc, _out = run(WEIGHT_DROP, fake, clock)
    assert rc == 3 and "No such server." in capsys.readouterr().err
