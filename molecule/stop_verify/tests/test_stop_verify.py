"""Stop and verify on real systemd hosts: how each unit ended, what verify found, and the live state.

converge.yml wrote, on its first run, $MOLECULE_EPHEMERAL_DIRECTORY/<host>-stop.json (after the stop
role), <host>-verify.json (after the verify role, with verify_kill_orphans false), sv-orphan-verify-kill.json
(after verify with verify_kill_orphans true) and <host>-result.json (modelops_shutdown_result at the end).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://sv-clean']
RESULTS = pathlib.Path(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'))
HOSTS = ['sv-clean', 'sv-stubborn', 'sv-orphan']
UNIT = 'model-server@llama.service'
INFLIGHT_ID = 'sv-stubborn-inflight-0001'  # molecule.yml, host_vars of sv-stubborn
TASK_LOG = '/var/log/model-server/llama.tasks.jsonl'


def _json(host_name, kind):
    return json.loads((RESULTS / ('%s-%s.json' % (host_name, kind))).read_text())


def _on(host, name):
    return host if name == 'sv-clean' else fleetcheck.other_host(host, name)


def _unit_props(h, unit=UNIT):
    out = h.check_output('systemctl show %s -p ActiveState -p SubState -p Result -p ExecMainCode -p ExecMainStatus -p ExecMainPID' % unit)
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


def _cgroup_pids(h, unit):
    """PIDs whose cgroup (any hierarchy) is `unit`'s, read from /proc/<pid>/cgroup on the host."""
    out = h.check_output(
        "for p in /proc/[0-9]*; do grep -qsE '/%s(/|$)' $p/cgroup && echo ${p#/proc/}; done; true"
        % unit.replace('.', r'\.'))
    return sorted(int(pid) for pid in out.split())


def _gpu_apps(h):
    """The fake nvidia-smi's compute processes: [(pid, process_name, used_mib)]."""
    out = h.check_output('nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits')
    return [tuple(cell.strip() for cell in line.split(',')) for line in out.splitlines() if line.strip()]


def _listening_ports(h):
    """TCP ports with a listening socket on the host (ss -Hltn: state, recv-q, send-q, local address, ...)."""
    out = h.check_output('ss -Hltn')
    return sorted(int(line.split()[3].rsplit(':', 1)[1]) for line in out.splitlines() if line.strip())


def _orphan_pid():
    """The orphan's PID, as unit_processes found it in the unit's cgroup during the first verification."""
    leftovers = _json('sv-orphan', 'verify')['result']['verify']['leftover_processes']
    workers = [p['pid'] for p in leftovers if p['name'] == 'model-worker']
    assert len(workers) == 1, leftovers
    return workers[0]


# --- the stop role's classification ----------------------------------------------------------

def test_clean_stop_is_classified_clean(host):
    stop = _json('sv-clean', 'stop')
    assert stop['failed'] is False, stop['msg']
    record = stop['result']['stop']
    assert record['ok'] is True
    [unit] = record['units']
    assert (unit['unit'], unit['stopped'], unit['classification']) == (UNIT, True, 'clean')
    # systemd unloads a unit that stopped cleanly at once, so its ExecMain* (and the record's
    # exec_main_*) are reset; Result=success is what is left, and the journal has the exit.
    assert (unit['result'], unit['active_state']) == ('success', 'inactive')
    assert unit['stop_seconds'] < 10, 'an idle server should exit on SIGTERM at once'
    live = _unit_props(host)
    assert (live['ActiveState'], live['Result']) == ('inactive', 'success'), live
    journal = host.check_output('journalctl -u %s --no-pager -o cat' % UNIT)
    assert 'exiting with code 0' in journal and 'Deactivated successfully' in journal, journal[-2000:]


def test_sigterm_ignoring_unit_is_timeout_killed_and_fails_the_host(host):
    stop = _json('sv-stubborn', 'stop')
    assert stop['failed'] is True, 'the stop role should fail the host (timeout_killed is in stop_fail_on)'
    assert 'Result=timeout' in stop['msg'] and UNIT in stop['msg'], stop['msg']
    record = stop['result']['stop']
    assert record['ok'] is False
    [unit] = record['units']
    assert (unit['classification'], unit['result'], unit['exit']) == ('timeout_killed', 'timeout', 'killed by SIGKILL')
    assert unit['timeout_stop_sec'] == 3.0
    assert 3.0 <= unit['stop_seconds'] < 10, 'systemd should SIGKILL it right after TimeoutStopSec=3'
    live = _unit_props(fleetcheck.other_host(host, 'sv-stubborn'))
    assert (live['ActiveState'], live['Result'], live['ExecMainStatus']) == ('failed', 'timeout', '9'), live
    assert int(live['ExecMainPID']) == unit['exec_main_pid'], 'the record is not from this fleet'


def test_orphaning_unit_stops_clean_but_leaves_its_worker(host):
    # KillMode=process: systemd signals only the main process, which drains and exits 0.
    [unit] = _json('sv-orphan', 'stop')['result']['stop']['units']
    assert (unit['classification'], unit['result'], unit['exit']) == ('clean', 'success', 'exited with status 0')
    assert unit['exec_main_pid'] != _orphan_pid()
    assert _unit_props(fleetcheck.other_host(host, 'sv-orphan'))['ActiveState'] == 'inactive'


# --- the interrupted request -------------------------------------------------------------

def test_interrupted_request_was_cut_and_is_listed_incomplete(host):
    request = _json('sv-stubborn', 'stop')['request']
    assert request is not None, 'converge did not send the long request'
    assert request['status'] == -1, 'the client should have lost its connection, not got an answer: %s' % request
    verify = _json('sv-stubborn', 'verify')
    assert verify['failed'] is False, verify['msg']
    record = verify['result']['verify']
    assert record['incomplete_count'] == 1
    [incomplete] = record['incomplete']
    assert incomplete['id'] == INFLIGHT_ID
    assert incomplete['path'] == TASK_LOG
    # The same story in the host's task log: started, never completed.
    events = [e['event'] for e in fleetcheck.task_log(fleetcheck.other_host(host, 'sv-stubborn')) if e['id'] == INFLIGHT_ID]
    assert events == ['started']


def test_stopped_hosts_without_inflight_requests_report_none_incomplete():
    for name in ('sv-clean', 'sv-orphan'):
        record = _json(name, 'verify')['result']['verify']
        assert (record['incomplete_count'], record['incomplete']) == (0, []), name


# --- the orphan holding GPU memory ---------------------------------------------------------

def test_orphan_fails_the_gpu_check_by_pid():
    pid = _orphan_pid()
    verify = _json('sv-orphan', 'verify')
    assert verify['failed'] is True, 'verify with verify_kill_orphans: false should fail the host'
    record = verify['result']['verify']
    assert record['ok'] is False
    gpu_failures = [f for f in record['failures'] if f.startswith('GPU memory not released')]
    assert len(gpu_failures) == 1, record['failures']
    assert 'PID %d (model-worker' % pid in gpu_failures[0]
    assert record['gpu']['released'] is False and record['gpu']['killed'] == []
    holders = [h['pid'] for g in record['gpu']['gpus'] for h in g['holders']]
    assert holders == [pid]
    # The cgroup check names it too; the port check passed (the worker never listened).
    assert any('PID %d (model-worker)' % pid in f for f in record['failures'] if f != gpu_failures[0])
    assert not [f for f in record['failures'] if 'port' in f], record['failures']
    # What the fake nvidia-smi listed right after that verification.
    apps = [tuple(cell.strip() for cell in line.split(',')) for line in verify['nvidia_smi_apps']]
    assert apps == [(str(pid), 'model-worker', '2048')], 'nvidia-smi should list only the orphan, with its 2048 MiB'


def test_kill_orphans_frees_the_gpu_and_passes(host):
    pid = _orphan_pid()
    record = _json('sv-orphan', 'verify-kill')['result']['verify']
    assert record['ok'] is True, record['failures']
    assert record['failures'] == []
    assert record['gpu']['killed'] == [pid]
    assert record['gpu']['released'] is True
    assert [h for g in record['gpu']['gpus'] for h in g['holders']] == []
    assert record['leftover_processes'] == []
    assert record['ports_closed'] == [8000]
    orphan_host = fleetcheck.other_host(host, 'sv-orphan')
    assert str(pid) not in [app[0] for app in _gpu_apps(orphan_host)]
    assert not orphan_host.file('/proc/%d' % pid).exists


# --- port closed, cgroup empty, GPU free: verify's record and the live hosts ------------------

@pytest.mark.parametrize('name,kind', [('sv-clean', 'verify'), ('sv-stubborn', 'verify'), ('sv-orphan', 'verify-kill')])
def test_port_and_cgroup_checks_pass(host, name, kind):
    record = _json(name, kind)['result']['verify']
    assert record['ok'] is True, record['failures']
    assert record['ports_closed'] == [8000]
    assert record['leftover_processes'] == []
    assert record['gpu']['checked'] is True and record['gpu']['released'] is True


@pytest.mark.parametrize('name', HOSTS)
def test_live_host_has_nothing_left(host, name):
    h = _on(host, name)
    assert _unit_props(h)['ActiveState'] in ('inactive', 'failed')
    # The /proc scan finds a running unit's processes (journald), so an empty answer means something.
    assert _cgroup_pids(h, 'systemd-journald.service'), 'the cgroup scan does not work on this host'
    assert _cgroup_pids(h, UNIT) == []
    assert 8000 not in _listening_ports(h)
    assert _gpu_apps(h) == []


# --- the policy role -------------------------------------------------------------------------

@pytest.mark.parametrize('name', HOSTS)
def test_policy_skips_every_step_with_its_reason(name):
    policy = _json(name, 'result')['policy']
    assert policy['ok'] is True and policy['changed'] is False
    steps = {step['step']: step for step in policy['steps']}
    assert sorted(steps) == ['firewall', 'selinux', 'units'], policy['steps']
    assert len(policy['steps']) == 3
    for step in steps.values():
        assert step['status'] == 'skipped' and step['changed'] is False, step
    assert steps['selinux']['reason'].startswith('SELinux is not enabled on this host')
    assert steps['firewall']['reason'] == 'neither firewalld nor ufw is active on this host'
    assert steps['units']['reason'] == 'no units to mask and no drop-ins listed'


@pytest.mark.parametrize('name', HOSTS)
def test_result_fact_holds_every_role(name):
    result = _json(name, 'result')
    assert sorted(result) == ['policy', 'stop', 'verify']
    assert result['stop']['units'][0]['unit'] == UNIT
