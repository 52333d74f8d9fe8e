#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault injector for the molecule fleet (stdlib only; runs on the controller).

It watches HAProxy in the LB container through its runtime API
(`docker exec LB sh -c "echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock"`)
and acts once a condition holds:

  kill-container --lb LB --backend B --server S [--timeout 120]
      When S is DRAIN: wait 0.5 s, `docker kill S` (the server's container has its name).
  reload --lb LB --backend B --server S [--status DRAIN] [--timeout 120]
      When S has that status: `systemctl reload haproxy` in LB, wait until a new HAProxy
      worker answers (its `show info` Pid differs), print S's status before and after.
  admin-down --lb LB --backend B --server S --for SECONDS [--port 9999] [--timeout 120]
      When S is DRAIN: make the admin API unreachable, traffic untouched (in LB: move
      admin.sock to admin.sock.away, REJECT tcp/PORT with a reset); after SECONDS put both
      back (0 = leave them down; admin-up restores). SIGTERM/SIGINT restore early.
  admin-up --lb LB [--port 9999]
      Undo admin-down; fine if already up.
  maint-on-weight-drop --lb LB --backend B --server S --other O [--timeout 120]
      When S's weight (`get weight B/S`) is below its initial weight (a weight ramp has
      begun), put O into maintenance (`set server B/O state maint`): another server of the
      pool goes away mid-ramp.
  run-and-kill --lb LB --backend B --servers S1,S2 --hosts H1,H2 --log FILE --rc FILE
               [--timeout 120] -- ARGV...
      Start ARGV (ansible-playbook ...) in its own session, output to FILE. When every
      server is DRAIN and every host's /run/modelops-shutdown.lock is held, SIGKILL ARGV's
      process group, then kill -9 on each host the pid recorded in its lock file (a killed
      controller's `docker exec` leaves the remote module running) and wait for the locks
      to be free. Writes ARGV's exit status as Python reports it (-9 when SIGKILLed) to
      the rc FILE. If the condition never holds, ARGV is stopped too.

A status matches --status when it is equal, or when its first word is (DRAIN matches
"DRAIN 1/2" and "DRAIN (agent)" too, which HAProxy shows while a draining server's health
check goes down or an agent drains it).

Output: one line on stdout for what it did (wall-clock ISO times). Exit codes: 0 it acted,
1 the condition never held within --timeout (one-line reason), 2 bad arguments, 3 a docker
call or an action failed (the docker command and its stderr on stderr).
"""

from __future__ import annotations

import argparse
import csv
import glob
import datetime
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

ADMIN_SOCKET = "/run/haproxy/admin.sock"
ADMIN_SOCKET_AWAY = ADMIN_SOCKET + ".away"
HOST_LOCK = "/run/modelops-shutdown.lock"
# flock's exit code when the lock is taken: distinct from docker's own failures (1, 125-127).
LOCK_HELD_RC = 75
# sh -c LOCK_PROBE sh PATH: 0 free, LOCK_HELD_RC held. A missing file is free: flock would create it.
LOCK_PROBE = '[ ! -e "$1" ] || exec flock -n -E %d "$1" true' % LOCK_HELD_RC
DOCKER_TIMEOUT = 20.0
POLL_INTERVAL = 0.2
KILL_DELAY = 0.5  # kill-container: let the drain get under way, as the fault scenario expects
LOCK_RELEASE_TIMEOUT = 30.0
PID_READ_TIMEOUT = 5.0  # the module writes its pid just after taking the lock
STOP_GRACE = 10.0

EXIT_ACTED, EXIT_NEVER_HELD, EXIT_BAD_ARGS, EXIT_FAILED = 0, 1, 2, 3


class DockerError(Exception):
    """A docker call failed; the message names the command and carries its stderr."""


class NoAnswer(DockerError):
    """The call ran but HAProxy's answer was not what the command gives (not CSV, say)."""


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived; raised so that `finally` blocks undo what was done."""


class Docker:
    """Every docker call goes through here: bounded in time, failures reported with stderr."""

    def __init__(self, runner=subprocess.run, timeout=DOCKER_TIMEOUT):
        self.runner = runner
        self.timeout = timeout

    def __call__(self, *args, check=True, timeout=None) -> subprocess.CompletedProcess:
        argv = ["docker", *[str(a) for a in args]]
        limit = self.timeout if timeout is None else timeout
        try:
            result = self.runner(argv, capture_output=True, text=True, timeout=limit, check=False,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise DockerError("%s: no answer within %g s" % (shlex.join(argv), limit)) from None
        except OSError as exc:
            raise DockerError("%s: %s" % (shlex.join(argv), exc)) from None
        if check and result.returncode != 0:
            raise DockerError("%s: exit %d: %s" % (shlex.join(argv), result.returncode,
                                                   (result.stderr or "").strip() or "(no stderr)"))
        return result

    def exec(self, container, *argv, check=True, timeout=None) -> subprocess.CompletedProcess:
        return self("exec", container, *argv, check=check, timeout=timeout)


class Clock:
    """Time as the injector sees it; tests substitute a fake one."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    @staticmethod
    def wall() -> str:
        return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


# --- HAProxy runtime API -------------------------------------------------------------------

def runtime_command(docker: Docker, lb, command) -> str:
    """One runtime API command through the admin socket in LB; its output."""
    return docker.exec(lb, "sh", "-c", "echo '%s' | socat stdio UNIX-CONNECT:%s" % (command, ADMIN_SOCKET)).stdout


def parse_stat(text) -> list[dict]:
    """Rows of `show stat` CSV as dicts keyed by its '# pxname,svname,...' header."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#"):
        raise NoAnswer("HAProxy did not answer show stat with its CSV: %r" % text[:200])
    header = lines[0].lstrip("# ").split(",")
    # HAProxy quotes a field that holds a comma (a check description, say), so read it as CSV.
    return [dict(zip(header, row)) for row in csv.reader(line for line in lines[1:] if line.strip())]


def server_status(rows, backend, server):
    for row in rows:
        if row.get("pxname") == backend and row.get("svname") == server:
            return row.get("status")
    return None


def parse_info_pid(text):
    """The answering worker's Pid from `show info`, or None."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Pid" and value.strip().isdigit():
            return int(value.strip())
    return None


def status_matches(status, wanted) -> bool:
    if status is None:
        return False
    return status == wanted or status.split(" ", 1)[0] == wanted


def read_statuses(docker, lb, backend, servers) -> dict:
    rows = parse_stat(runtime_command(docker, lb, "show stat"))
    return {server: server_status(rows, backend, server) for server in servers}


# --- waiting -------------------------------------------------------------------------------

class Waiter:
    """Polls a probe until it returns a value that is not None, tolerating failed reads."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.last_error = None
        self.last_seen = None

    def until(self, probe, timeout):
        deadline = self.clock.monotonic() + timeout
        while True:
            try:
                value = probe()
            except DockerError as exc:
                # HAProxy may be reloading or the socket not yet there: keep polling, keep the cause.
                self.last_error = str(exc)
            else:
                if value is not None:
                    return value
            if self.clock.monotonic() >= deadline:
                return None
            self.clock.sleep(POLL_INTERVAL)

    def why(self) -> str:
        parts = []
        if self.last_seen is not None:
            parts.append("last seen: %s" % self.last_seen)
        if self.last_error:
            parts.append("last error: %s" % self.last_error)
        return "; ".join(parts) if parts else "no answer"


def wait_for_status(docker, clock, lb, backend, server, wanted, timeout):
    """(status, Waiter): the matching status, or None and what was seen instead."""
    waiter = Waiter(clock)

    def probe():
        status = read_statuses(docker, lb, backend, [server])[server]
        waiter.last_seen = "%s/%s %s" % (backend, server, status or "not in show stat")
        return status if status_matches(status, wanted) else None

    return waiter.until(probe, timeout), waiter


def never_held(out, what, timeout, waiter) -> int:
    out.write("%s within %g s (%s)\n" % (what, timeout, waiter.why()))
    return EXIT_NEVER_HELD


# --- subcommands ---------------------------------------------------------------------------

def cmd_kill_container(args, docker, clock, out) -> int:
    status, waiter = wait_for_status(docker, clock, args.lb, args.backend, args.server, "DRAIN", args.timeout)
    if status is None:
        return never_held(out, "%s never started draining" % args.server, args.timeout, waiter)
    clock.sleep(KILL_DELAY)
    docker("kill", args.server)
    # The fault_unreachable scenario's test looks for this wording.
    out.write("killed %s while it was draining (at %s)\n" % (args.server, clock.wall()))
    return EXIT_ACTED


def parse_weight(text):
    """(current, initial) from a `get weight` answer ("7 (initial 10)"), or None for any other shape."""
    words = text.split()
    if len(words) == 3 and words[0].isdigit() and words[1] == "(initial" and words[2].endswith(")") \
            and words[2][:-1].isdigit():
        return int(words[0]), int(words[2][:-1])
    return None


def cmd_maint_on_weight_drop(args, docker, clock, out) -> int:
    waiter = Waiter(clock)

    def probe():
        weight = parse_weight(runtime_command(docker, args.lb, "get weight %s/%s" % (args.backend, args.server)))
        waiter.last_seen = "%s/%s weight %s" % (args.backend, args.server, weight)
        return weight if weight is not None and weight[0] < weight[1] else None

    weight = waiter.until(probe, args.timeout)
    if weight is None:
        return never_held(out, "the weight of %s never dropped" % args.server, args.timeout, waiter)
    answer = runtime_command(docker, args.lb, "set server %s/%s state maint" % (args.backend, args.other)).strip()
    if answer:
        raise DockerError("set server %s/%s state maint answered: %s" % (args.backend, args.other, answer[:200]))
    out.write("%s/%s went to maintenance once %s's weight was %d of %d (at %s)\n"
              % (args.backend, args.other, args.server, weight[0], weight[1], clock.wall()))
    return EXIT_ACTED


def cmd_reload(args, docker, clock, out) -> int:
    before, waiter = wait_for_status(docker, clock, args.lb, args.backend, args.server, args.status, args.timeout)
    if before is None:
        return never_held(out, "%s never was %s" % (args.server, args.status), args.timeout, waiter)
    old_pid = parse_info_pid(runtime_command(docker, args.lb, "show info"))
    docker.exec(args.lb, "systemctl", "reload", "haproxy", timeout=60)
    reloaded_at = clock.wall()
    answered = Waiter(clock)

    def new_worker_answers():
        # Until the old worker has handed over, it still answers: only a new Pid shows the reload.
        pid = parse_info_pid(runtime_command(docker, args.lb, "show info"))
        if pid is None or pid == old_pid:
            answered.last_seen = "worker pid %s" % pid
            return None
        return pid, read_statuses(docker, args.lb, args.backend, [args.server])[args.server]

    result = answered.until(new_worker_answers, args.timeout)
    if result is None:
        sys.stderr.write("reloaded haproxy on %s at %s, but no new worker answered within %g s (%s)\n"
                         % (args.lb, reloaded_at, args.timeout, answered.why()))
        return EXIT_FAILED
    new_pid, after = result
    out.write("reloaded haproxy on %s at %s: %s/%s was %s before, %s after (worker pid %s -> %s, answering at %s)\n"
              % (args.lb, reloaded_at, args.backend, args.server, before, after or "not in show stat",
                 old_pid, new_pid, clock.wall()))
    return EXIT_ACTED


def iptables_rule(port) -> list[str]:
    return ["INPUT", "-p", "tcp", "--dport", str(port), "-j", "REJECT", "--reject-with", "tcp-reset"]


def admin_up_script(port, socket_path=ADMIN_SOCKET) -> str:
    """Shell run in LB: put the socket back (unless a reload made a new one) and drop every copy of the rule."""
    rule = " ".join(iptables_rule(port))
    return (
        'if [ -e {away} ]; then if [ -e {sock} ]; then rm -f {away}; echo "socket: stale .away removed";'
        ' else mv {away} {sock}; echo "socket: restored"; fi; else echo "socket: in place"; fi; '
        'n=0; while [ $n -lt 10 ] && iptables -C {rule} 2>/dev/null; do iptables -D {rule} || exit 1; n=$((n+1)); done; '
        'echo "iptables: $n rule(s) removed"'
    ).format(away=shlex.quote(socket_path + ".away"), sock=shlex.quote(socket_path), rule=rule)


def bring_admin_up(docker, lb, port) -> str:
    return " ".join(docker.exec(lb, "sh", "-c", admin_up_script(port)).stdout.split())


def cmd_admin_down(args, docker, clock, out) -> int:
    # The watcher reads HAProxy through the socket it is about to hide: read state only before that.
    status, waiter = wait_for_status(docker, clock, args.lb, args.backend, args.server, "DRAIN", args.timeout)
    if status is None:
        return never_held(out, "%s never started draining" % args.server, args.timeout, waiter)
    early = None
    with signals_raise():
        try:
            docker.exec(args.lb, "mv", ADMIN_SOCKET, ADMIN_SOCKET_AWAY)
            docker.exec(args.lb, "iptables", "-I", *iptables_rule(args.port))
            out.write("admin API on %s down at %s (%s/%s was %s): %s moved away, tcp/%d rejected\n"
                      % (args.lb, clock.wall(), args.backend, args.server, status, ADMIN_SOCKET, args.port))
            out.flush()
            if args.for_seconds == 0:
                out.write("left down; `inject.py admin-up --lb %s --port %d` brings it back\n" % (args.lb, args.port))
                return EXIT_ACTED
            try:
                clock.sleep(args.for_seconds)
            except Interrupted as exc:
                early = str(exc)
        except BaseException:
            # A step failed or we were stopped half-way: never leave the LB unmanageable behind us.
            try:
                bring_admin_up(docker, args.lb, args.port)
            except DockerError as exc:
                sys.stderr.write("admin-down: putting the admin API back failed too: %s\n" % exc)
            raise
        done = bring_admin_up(docker, args.lb, args.port)
    out.write("admin API on %s back up at %s%s (%s)\n"
              % (args.lb, clock.wall(), " early, on %s" % early if early else "", done))
    return EXIT_ACTED


def journal_shows_failed_step(directory, step) -> bool:
    """Whether a rollout journal in DIRECTORY has a host that failed at STEP (its host_result event)."""
    for path in sorted(glob.glob(os.path.join(directory, "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if isinstance(event, dict) and event.get("event") == "host_result" and event.get("failed_step") == step:
                    return True
    return False


def cmd_admin_up(args, docker, clock, out) -> int:
    if args.when_journal:
        # Up again only once the rollout has given up on the host: then the put-back has to wait for it.
        seen = Waiter(clock).until(lambda: True if journal_shows_failed_step(args.when_journal, args.failed_step)
                                   else None, args.journal_timeout)
        if seen is None:
            out.write("no host failed at %s in %s within %g s\n"
                      % (args.failed_step, args.when_journal, args.journal_timeout))
            return EXIT_NEVER_HELD
    done = bring_admin_up(docker, args.lb, args.port)
    out.write("admin API on %s up at %s (%s)\n" % (args.lb, clock.wall(), done))
    return EXIT_ACTED


def lock_held(docker, host) -> bool:
    """Whether another process holds the host lock."""
    result = docker.exec(host, "sh", "-c", LOCK_PROBE, "sh", HOST_LOCK, check=False)
    if result.returncode == 0:
        return False
    if result.returncode == LOCK_HELD_RC:
        return True
    raise DockerError("docker exec %s flock -n %s: exit %d: %s" % (host, HOST_LOCK, result.returncode,
                                                                   (result.stderr or "").strip() or "(no stderr)"))


def lock_pid(docker, host):
    """The pid in the host lock's JSON, or None while it is not (yet) there."""
    text = docker.exec(host, "cat", HOST_LOCK).stdout
    try:
        pid = json.loads(text)["pid"]
    except (ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) and pid > 1 else None


def stop_group(proc, sig, killpg):
    try:
        killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def reap(proc, clock, grace):
    deadline = clock.monotonic() + grace
    while proc.poll() is None and clock.monotonic() < deadline:
        clock.sleep(0.05)
    return proc.poll()


def write_rc(path, rc):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("%s\n" % rc)


def cmd_run_and_kill(args, docker, clock, out, popen=subprocess.Popen, killpg=os.killpg) -> int:
    # A stale rc file from an earlier run must not pass for this run's.
    if os.path.lexists(args.rc):
        os.unlink(args.rc)
    with open(args.log, "wb") as log, signals_raise():
        try:
            proc = popen(args.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
        except OSError as exc:
            sys.stderr.write("run-and-kill: cannot start %s: %s\n" % (args.command[0], exc))
            return EXIT_FAILED
        try:
            return _run_and_kill(args, docker, clock, out, proc, killpg)
        finally:
            # Whatever happened here, ARGV must not outlive the injector, and its rc is recorded.
            if proc.poll() is None:
                stop_group(proc, signal.SIGKILL, killpg)
                reap(proc, clock, STOP_GRACE)
            if not os.path.exists(args.rc):
                write_rc(args.rc, proc.poll())


def _run_and_kill(args, docker, clock, out, proc, killpg) -> int:
    waiter = Waiter(clock)
    exited = []

    def armed():
        if proc.poll() is not None:
            exited.append(proc.returncode)
            return "exited"
        statuses = read_statuses(docker, args.lb, args.backend, args.servers)
        waiter.last_seen = " ".join("%s=%s" % item for item in statuses.items())
        if not all(status_matches(status, "DRAIN") for status in statuses.values()):
            return None
        free = [host for host in args.hosts if not lock_held(docker, host)]
        if free:
            waiter.last_seen += "; lock free on %s" % ",".join(free)
            return None
        return statuses

    statuses = waiter.until(armed, args.timeout)
    if statuses == "exited":
        write_rc(args.rc, exited[0])
        out.write("%s exited with rc %s before every server was DRAIN with its host locked (%s)\n"
                  % (args.command[0], exited[0], waiter.why()))
        return EXIT_NEVER_HELD
    if statuses is None:
        stop_group(proc, signal.SIGTERM, killpg)
        rc = reap(proc, clock, STOP_GRACE)
        if rc is None:
            stop_group(proc, signal.SIGKILL, killpg)
            rc = reap(proc, clock, STOP_GRACE)
        write_rc(args.rc, rc)
        out.write("not every server was DRAIN with its host locked within %g s (%s); stopped %s, rc %s\n"
                  % (args.timeout, waiter.why(), args.command[0], rc))
        return EXIT_NEVER_HELD

    stop_group(proc, signal.SIGKILL, killpg)
    killed_at = clock.wall()
    rc = reap(proc, clock, STOP_GRACE)
    write_rc(args.rc, rc)

    problems = []
    host_kills = []
    for host in args.hosts:
        pid = Waiter(clock).until(lambda host=host: lock_pid(docker, host), PID_READ_TIMEOUT)
        if pid is None:
            problems.append("no pid in %s on %s" % (HOST_LOCK, host))
            continue
        # `kill` is the shell's: the image need not ship /bin/kill.
        result = docker.exec(host, "sh", "-c", 'kill -9 "$1"', "sh", pid, check=False)
        host_kills.append("%s pid %d%s" % (host, pid, "" if result.returncode == 0 else " (already gone)"))
    still_held = set(args.hosts)

    def all_free():
        still_held.intersection_update(host for host in list(still_held) if lock_held(docker, host))
        return True if not still_held else None

    Waiter(clock).until(all_free, LOCK_RELEASE_TIMEOUT)
    if still_held:
        problems.append("lock still held on %s after %g s" % (",".join(sorted(still_held)), LOCK_RELEASE_TIMEOUT))

    out.write("killed %s (process group %d, rc %s) at %s, then on the hosts %s; HAProxy then: %s\n"
              % (shlex.join(args.command), proc.pid, rc, killed_at, ", ".join(host_kills) or "nothing",
                 " ".join("%s/%s=%s" % (args.backend, server, status) for server, status in statuses.items())))
    if problems:
        sys.stderr.write("run-and-kill: %s\n" % "; ".join(problems))
        return EXIT_FAILED
    return EXIT_ACTED


class signals_raise:  # pylint: disable=invalid-name
    """Context manager: SIGTERM/SIGINT raise Interrupted, so cleanup runs when molecule or a user stops us."""

    def __enter__(self):
        def _raise(signum, frame):  # pylint: disable=unused-argument
            raise Interrupted(signal.Signals(signum).name)

        self.saved = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self.saved[signum] = signal.signal(signum, _raise)
            except ValueError:  # not the main thread (a test runner's worker): leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        return False


# --- arguments -----------------------------------------------------------------------------

def positive_seconds(text):
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("%r must be > 0" % text)
    return value


def nonnegative_seconds(text):
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("%r must be >= 0" % text)
    return value


def _float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError("%r is not a finite number" % text)
    return value


def tcp_port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % text) from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("%r is not in 1-65535" % text)
    return value


def name_list(text):
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError("%r: want NAME[,NAME...] without empty names" % text)
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("%r names one twice" % text)
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inject.py", description="Fault injector for the molecule fleet.")
    subs = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

    def sub(name, help_text, watch=True, usage=None):
        p = subs.add_parser(name, help=help_text, description=help_text, usage=usage)
        p.set_defaults(subparser=p)  # for errors found after parsing, with this subcommand's usage
        p.add_argument("--lb", required=True, help="the HAProxy container")
        if watch:
            p.add_argument("--backend", required=True, help="the HAProxy backend")
            p.add_argument("--timeout", type=positive_seconds, default=120.0,
                           help="seconds to wait for the condition [120]")
        return p

    p = sub("kill-container", "When SERVER is DRAIN, wait 0.5 s and docker kill it.")
    p.add_argument("--server", required=True, help="the HAProxy server, also its container's name")
    p.set_defaults(func=cmd_kill_container)

    p = sub("reload", "When SERVER has STATUS, reload HAProxy; print SERVER's status before and after.")
    p.add_argument("--server", required=True)
    p.add_argument("--status", default="DRAIN", help="the status to wait for [DRAIN]")
    p.set_defaults(func=cmd_reload)

    p = sub("admin-down", "When SERVER is DRAIN, make HAProxy's admin API unreachable for SECONDS.")
    p.add_argument("--server", required=True)
    p.add_argument("--for", dest="for_seconds", type=nonnegative_seconds, required=True, metavar="SECONDS",
                   help="how long to keep it down; 0 leaves it down")
    p.add_argument("--port", type=tcp_port, default=9999, help="the runtime API's TCP port [9999]")
    p.set_defaults(func=cmd_admin_down)

    p = sub("admin-up", "Undo admin-down (fine if the admin API is already up).", watch=False)
    p.add_argument("--port", type=tcp_port, default=9999, help="the runtime API's TCP port [9999]")
    p.add_argument("--when-journal", metavar="DIR", help="first wait until a rollout journal in DIR has a host that "
                   "failed at --failed-step")
    p.add_argument("--failed-step", default="recheck", help="the failed_step to wait for [recheck]")
    p.add_argument("--journal-timeout", type=positive_seconds, default=120.0, help="seconds to wait for it [120]")
    p.set_defaults(func=cmd_admin_up)

    p = sub("maint-on-weight-drop", "When SERVER's weight drops below its initial one, put OTHER into maintenance.")
    p.add_argument("--server", required=True, help="the server whose weight is ramped down")
    p.add_argument("--other", required=True, help="the server of the same backend put into maintenance")
    p.set_defaults(func=cmd_maint_on_weight_drop)

    p = sub("run-and-kill", "Run ARGV; when every server drains with its host locked, kill it and the host modules.",
            usage="inject.py run-and-kill --lb LB --backend B --servers S1,S2,... --hosts H1,H2,... --log FILE"
                  " --rc FILE [--timeout SECONDS] -- ARGV...")
    p.add_argument("--servers", type=name_list, required=True, metavar="S1,S2,...", help="HAProxy servers")
    p.add_argument("--hosts", type=name_list, required=True, metavar="H1,H2,...", help="host containers")
    p.add_argument("--log", required=True, help="ARGV's stdout and stderr go here")
    p.add_argument("--rc", required=True, help="ARGV's exit status goes here")
    p.set_defaults(func=cmd_run_and_kill)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Split at the first "--" ourselves: argparse would also take options meant for ARGV.
    command = None
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if args.subcommand == "run-and-kill":
        if not command:
            args.subparser.error("needs the command to run after --")
    elif command is not None:
        args.subparser.error("takes no command after --")
    args.command = command
    return args


def main(argv=None, docker=None, clock=None, out=None) -> int:
    args = parse_args(argv)
    out = out or sys.stdout
    try:
        return args.func(args, docker or Docker(), clock or Clock(), out)
    except DockerError as exc:
        sys.stderr.write("%s: %s\n" % (args.subcommand, exc))
        return EXIT_FAILED
    except Interrupted as exc:
        sys.stderr.write("%s: stopped by %s\n" % (args.subcommand, exc))
        return EXIT_FAILED
    except OSError as exc:  # run-and-kill's --log or --rc cannot be written
        sys.stderr.write("%s: %s\n" % (args.subcommand, exc))
        return EXIT_FAILED
    finally:
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
