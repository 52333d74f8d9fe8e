# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HostShutdown driven directly: parse_params, then drain, stop, policy and verify against fakes.

The fakes are those of the phase modules' own tests (FakeSystemd, FakeHost, MetricsServer, FakeTime,
FakePolicyHost); one fake clock drives the drain wait, the stop times and the port wait, so nothing sleeps.
"""

from __future__ import annotations

import functools
import json
import os
import socket

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _netstat, _unit_stop
from ansible_collections.modelops.shutdown.plugins.module_utils._host_shutdown import HostShutdown, parse_params
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import MetricsServer, add_proc, fixture_path
# The fakes and fixtures of the phases' own tests.
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_drain import EPOCH, FakeTime
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_policy import FIREWALL_CMD, FakePolicyHost
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_gpu_release_check import (  # pylint: disable=unused-import
    APPS_IDLE,
    APPS_LOAD,
    GPU_H100,
    FakeHost,
    isolated,
    tools,
)
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_model_drain import vllm_text
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_unit_stop import (
    AFTER,
    LLAMA,
    MISTRAL,
    ONESHOT_DONE,
    RUNNING,
    SYSTEMCTL,
    FakeSystemd,
)

HOST = socket.gethostname()
# The LB stopped sending 4 s before the host's call began.
SINCE = EPOCH - 4.0
STOP_SECONDS = 2.5
# /proc/net/tcp with listeners on 18080 (127.0.0.1) and 2024 (0.0.0.0), nothing on 8000.
PROC_NET_TCP = fixture_path('proc_net_tcp_dev_established_timewait.txt')
T0 = 1714564800.25

RECORD_KEYS = {'changed', 'ok', 'status', 'failed_step', 'msg', 'host', 'started_at', 'finished_at', 'since', 'drain', 'stop',
               'policy', 'verify', 'timings', 'already_down', 'lb_guard', 'in_flight_at_stop', 'run_id', 'phases'}


class ModelHost(object):
    """One host's run_command: systemctl goes to C(systemd) (a FakeSystemd; each stop takes C(stop_seconds)
    on C(fake_time)), nvidia-smi to C(gpu) (a FakeHost), every other tool to C(policy) (a FakePolicyHost).
    C(events) is the order of everything, metric scrapes included."""

    def __init__(self, systemd, fake_time, gpu=None, policy=None, stop_seconds=STOP_SECONDS):
        self.systemd = systemd
        self.time = fake_time
        self.gpu = gpu
        self.policy = policy if policy is not None else FakePolicyHost()
        self.stop_seconds = stop_seconds
        self.events = []

    def __call__(self, argv, *args, **kwargs):
        self.events.append(argv)
        if argv[0] == SYSTEMCTL:
            if argv[1] == 'stop':
                self.time.sleep(self.stop_seconds)
            return self.systemd(argv)
        if os.path.basename(argv[0]) in ('nvidia-smi', 'rocm-smi'):
            return self.gpu(argv)
        return self.policy(argv)

    def verbs(self, unit=None):
        """The systemctl verbs run, for C(unit) only when given."""
        return [c[0] for c in self.systemd.calls if unit is None or c[-1] == unit]

    def scrape(self, script):
        """A metrics body answering C(script) (in-flight counts, the last one repeats), each read an event."""
        script = list(script)

        def body():
            value = script.pop(0) if len(script) > 1 else script[0]
            self.events.append(('scrape', value))
            return vllm_text(value)
        return body


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def metrics():
    with MetricsServer() as srv:
        yield srv


@pytest.fixture
def machine(monkeypatch, fake_time, isolated):
    """The host around HostShutdown: the fake clock in every phase (the unit stops included), /proc/net/tcp from a
    capture, /proc and /dev empty (C(isolated))."""
    real_stopper = _unit_stop.UnitStopper

    def stopper(*args, **kwargs):
        kwargs.update(clock=fake_time.clock, wall=fake_time.wall)
        return real_stopper(*args, **kwargs)

    monkeypatch.setattr(_unit_stop, 'UnitStopper', stopper)
    monkeypatch.setattr(_netstat, 'listening', functools.partial(_netstat.listening, paths=(PROC_NET_TCP,), byteorder='little'))
    return isolated


def shutdown(host, fake_time, on_path=None, check_mode=False, **params):
    """parse_params(params), then HostShutdown(...).run(); returns C((record, failure, warnings))."""
    warnings = []
    phases = parse_params(params)
    found = dict(on_path or {}, systemctl=SYSTEMCTL)
    record, failure = HostShutdown(phases, host, found.get, check_mode=check_mode, warn=warnings.append,
                                   clock=fake_time.clock, wall=fake_time.wall, sleep=fake_time.sleep).run()
    json.dumps(record)
    assert set(record) | {'already_down'} == RECORD_KEYS
    return record, failure, warnings


def drain_options(metrics, **extra):
    return dict({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'poll_interval': 0.5, 'timeout': 30}, **extra)


def task_log(tmp_path, complete=True):
    path = tmp_path / 'tasks.jsonl'
    records = [{'event': 'started', 'id': 'a', 'ts': T0}, {'event': 'started', 'id': 'b', 'ts': T0 + 1},
               {'event': 'completed', 'id': 'b', 'ts': T0 + 2}]
    if complete:
        records.append({'event': 'completed', 'id': 'a', 'ts': T0 + 3})
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    return str(path)


# --- the whole phase ----------------------------------------------------------------------------------

def test_drain_stop_policy_verify_in_order(machine, fake_time, metrics, tools, tmp_path):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time,
                     gpu=FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')]),
                     policy=FakePolicyHost(firewalld={('public', False): {'8000/tcp'}, ('public', True): {'8000/tcp'}}))
    metrics.body = host.scrape([2, 1, 0])
    record, failure, warnings = shutdown(
        host, fake_time, on_path={'nvidia-smi': tools['nvidia-smi'], 'firewall-cmd': FIREWALL_CMD},
        since=SINCE, drain=drain_options(metrics), stop={'units': [LLAMA]}, policy={'firewall_ports': ['8000/tcp']},
        verify={'ports': [8000], 'gpu': {'timeout': 0}, 'task_log': {'paths': [task_log(tmp_path)]}})
    assert failure is None and warnings == []
    assert record['ok'] and record['status'] == 'done' and record['failed_step'] is None and record['msg'] == ''
    assert record['changed'] and record['already_down'] is False and record['host'] == HOST
    assert record['since'] == SINCE and record['started_at'] == EPOCH and record['finished_at'] >= record['started_at']
    # drain
    assert record['drain']['drained'] and record['drain']['polls'] == 3 and record['drain']['started_at'] == SINCE
    # stop: read once before the drain, then stopped after it
    # the read before the drain; show, stop, show; the GPU check's read of ExecMainPID
    assert host.verbs() == ['show', 'show', 'stop', 'show', 'show']
    scrapes = [i for i, e in enumerate(host.events) if isinstance(e, tuple)]
    stop_at = host.events.index([SYSTEMCTL, 'stop', '--', LLAMA])
    assert host.events[0][:2] == [SYSTEMCTL, 'show'] and host.events[0][-1] == LLAMA and 0 < scrapes[0] and scrapes[-1] < stop_at
    assert [(u['unit'], u['stopped'], u['classification']) for u in record['stop']['units']] == [(LLAMA, True, 'clean')]
    # policy, after the stop
    assert record['policy']['ok'] and record['policy']['changed']
    assert host.policy.mutations == [[FIREWALL_CMD, '--zone', 'public', '--remove-port', '8000/tcp'],
                                     [FIREWALL_CMD, '--permanent', '--zone', 'public', '--remove-port', '8000/tcp']]
    assert host.events.index(host.policy.mutations[0]) > stop_at
    # verify
    verify = record['verify']
    assert verify['ok'] and verify['failures'] == [] and verify['ports_open'] == [] and verify['leftover_processes'] == []
    assert verify['gpu']['checked'] and verify['gpu']['released'] and verify['gpu']['killed'] == []
    assert len(verify['gpu']['results']) == 1 and verify['gpu']['gpus'][0]['name'] == 'NVIDIA H100 80GB HBM3'
    assert verify['task_log']['started_count'] == 2 and verify['incomplete_count'] == 0
    assert verify['changed'] is False and verify['seconds'] == 0.0


def test_timings_count_the_drain_from_since_to_drained_at(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    # 2, 1, then 0 at +1.0 s; the quiet period holds it until +2.0 s.
    metrics.body = host.scrape([2, 1, 0])
    record, failure, dummy = shutdown(host, fake_time, since=SINCE, drain=drain_options(metrics, quiet_period=1.0),
                                      stop={'units': [LLAMA]}, verify={'processes': False})
    assert failure is None and record['status'] == 'done'
    assert record['drain']['drained_at'] == EPOCH + 1.0
    assert record['drain']['waited_seconds'] == 6.0  # since to the end of the quiet period
    assert record['stop']['stop_seconds'] == STOP_SECONDS
    assert record['timings'] == {'drain_seconds': 5.0, 'stop_seconds': STOP_SECONDS, 'floor_seconds': 7.5}
    assert record['finished_at'] == EPOCH + 2.0 + STOP_SECONDS


def test_phases_are_wall_clock_intervals_in_order(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    metrics.body = host.scrape([2, 1, 0])
    record, failure, dummy = shutdown(host, fake_time, since=SINCE, drain=drain_options(metrics, quiet_period=1.0),
                                      stop={'units': [LLAMA]}, verify={'processes': False})
    assert failure is None
    phases = record['phases']
    # The drain runs from the mark (since) to the first read of 0, not to the end of the quiet period.
    assert phases['drain'] == {'start': SINCE, 'end': EPOCH + 1.0}
    assert phases['stop'] == {'start': EPOCH + 2.0, 'end': EPOCH + 2.0 + STOP_SECONDS}
    assert phases['policy']['start'] == phases['stop']['end'] <= phases['policy']['end']
    assert phases['verify']['start'] == phases['policy']['end'] <= phases['verify']['end'] == record['finished_at']


def test_phases_after_a_failure_are_none(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    metrics.body = host.scrape([3])
    record, failure, dummy = shutdown(host, fake_time, since=SINCE, drain=drain_options(metrics, timeout=6),
                                      stop={'units': [LLAMA]})
    assert record['failed_step'] == 'drain'
    # Not drained: the drain ends where the wait gave up.
    assert record['phases'] == {'drain': {'start': SINCE, 'end': record['finished_at']}, 'stop': None, 'policy': None,
                                'verify': None}


def test_already_down_has_no_drain_phase(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (ONESHOT_DONE, None)}), fake_time)
    metrics.body = host.scrape([5])
    record, failure, dummy = shutdown(host, fake_time, since=SINCE, drain=drain_options(metrics), stop={'units': [LLAMA]})
    assert failure is None and record['status'] == 'already_down'
    assert record['phases']['drain'] is None and record['phases']['stop']['start'] == EPOCH


def test_since_in_drain_options_counts_too(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = shutdown(host, fake_time, drain=drain_options(metrics, since=EPOCH - 10.0),
                                      stop={'units': [LLAMA]}, verify={'processes': False})
    assert failure is None and record['since'] == EPOCH - 10.0
    assert record['timings']['drain_seconds'] == 10.0
    # The top-level since wins over drain's.
    record, failure, dummy = shutdown(host, fake_time, since=SINCE, drain=drain_options(metrics, since=EPOCH - 10.0),
                                      stop={'units': [LLAMA]}, verify={'processes': False})
    assert record['since'] == SINCE


def test_without_drain_the_floor_is_the_stop(machine, fake_time):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    record, failure, dummy = shutdown(host, fake_time, stop={'units': [LLAMA]})
    assert failure is None and record['status'] == 'done' and record['drain'] is None
    assert record['timings'] == {'drain_seconds': None, 'stop_seconds': STOP_SECONDS, 'floor_seconds': STOP_SECONDS}
    assert all(s['status'] == 'skipped' for s in record['policy']['steps']) and host.policy.calls == []


# --- already down ---------------------------------------------------------------------------------------

def test_already_down_host_is_not_waited_for(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (ONESHOT_DONE, None), MISTRAL: (ONESHOT_DONE, None)}), fake_time)
    metrics.body = host.scrape([5])
    record, failure, dummy = shutdown(host, fake_time, since=SINCE, drain=drain_options(metrics),
                                      stop={'units': [LLAMA, MISTRAL]})
    assert failure is None and record['ok'] and record['status'] == 'already_down' and record['already_down'] is True
    assert metrics.scrapes == 0 and record['drain'] is None and fake_time.sleeps == []
    assert 'stop' not in host.verbs() and not record['changed']
    assert [u['stopped'] for u in record['stop']['units']] == [False, False]
    assert record['timings']['drain_seconds'] is None
    assert record['timings']['floor_seconds'] == record['timings']['stop_seconds'] == 0.0
    assert record['verify']['ok']


def test_one_unit_still_up_means_not_already_down(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (ONESHOT_DONE, None), MISTRAL: (RUNNING, AFTER['clean'])}), fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = shutdown(host, fake_time, drain=drain_options(metrics), stop={'units': [LLAMA, MISTRAL]},
                                      verify={'processes': False})
    assert failure is None and record['already_down'] is False and record['status'] == 'done'
    assert metrics.scrapes == 1 and host.verbs(MISTRAL).count('stop') == 1 and host.verbs(LLAMA) == ['show', 'show']


# --- failures -------------------------------------------------------------------------------------------

def test_drain_failure_stops_nothing(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time, policy=FakePolicyHost(firewalld={}))
    metrics.body = host.scrape([3])
    record, failure, dummy = shutdown(host, fake_time, on_path={'firewall-cmd': FIREWALL_CMD}, since=SINCE,
                                      drain=drain_options(metrics, timeout=6), stop={'units': [LLAMA]},
                                      policy={'firewall_ports': ['8000/tcp']})
    assert record['failed_step'] == 'drain' and record['status'] == 'failed' and not record['ok']
    assert failure == record['msg'] and failure.startswith('3 request(s) still in flight (metrics=3) after 6.0 s')
    assert '(counted from since=%s)' % SINCE in failure
    # The units were only read, never stopped; nothing after the drain ran.
    assert host.verbs() == ['show'] and record['stop'] is None and record['policy'] is None and record['verify'] is None
    assert host.policy.calls == [] and not record['changed']
    # No drained_at: the wait itself is the drain time.
    assert record['timings'] == {'drain_seconds': 6.0, 'stop_seconds': None, 'floor_seconds': 6.0}


def test_drain_timeout_proceed_goes_on_to_stop(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    metrics.body = host.scrape([1])
    record, failure, warnings = shutdown(host, fake_time, drain=drain_options(metrics, timeout=1, on_timeout='proceed'),
                                         stop={'units': [LLAMA]}, verify={'processes': False})
    assert failure is None and record['status'] == 'done' and 'stop' in host.verbs()
    assert len(warnings) == 1 and 'Proceeding because on_timeout=proceed' in warnings[0]


def test_stop_failure(machine, fake_time):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['timeout']), MISTRAL: (RUNNING, AFTER['clean'])}), fake_time,
                     policy=FakePolicyHost(firewalld={}))
    record, failure, dummy = shutdown(host, fake_time, on_path={'firewall-cmd': FIREWALL_CMD},
                                      stop={'units': [LLAMA, MISTRAL]}, policy={'firewall_ports': ['8000/tcp']})
    assert record['failed_step'] == 'stop' and record['status'] == 'failed'
    assert failure == record['msg'] and failure.startswith('unit_stop on %s: %s' % (HOST, LLAMA)) and 'SIGKILL' in failure
    assert record['stop']['failed_units'] == [LLAMA] and record['changed']
    assert record['policy'] is None and record['verify'] is None and host.policy.calls == []
    assert record['timings']['stop_seconds'] == 2 * STOP_SECONDS == record['timings']['floor_seconds']


def test_units_that_cannot_be_read_fail_before_the_drain(machine, fake_time, metrics):
    systemd = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}, fail={'show': (1, '', 'Failed to connect to bus: No such file or directory')})
    host = ModelHost(systemd, fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = shutdown(host, fake_time, drain=drain_options(metrics), stop={'units': [LLAMA]})
    assert record['failed_step'] == 'stop' and 'Failed to connect to bus' in failure and 'already_down' not in record
    assert metrics.scrapes == 0 and host.verbs() == ['show'] and record['drain'] is None


def test_policy_failure(machine, fake_time):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time,
                     policy=FakePolicyHost(firewalld={('public', False): {'8000/tcp'}},
                                           fail={('firewall-cmd', '--zone', 'public', '--remove-port'): (252, '', 'FirewallD is not running\n')}))
    record, failure, dummy = shutdown(host, fake_time, on_path={'firewall-cmd': FIREWALL_CMD}, stop={'units': [LLAMA]},
                                      policy={'firewall_ports': ['8000/tcp']})
    assert record['failed_step'] == 'policy' and record['verify'] is None
    assert failure == ('policy on %s: firewall: /usr/bin/firewall-cmd --zone public --remove-port 8000/tcp failed (rc 252): '
                       'FirewallD is not running' % HOST)
    assert record['stop']['units'][0]['stopped'] and record['changed']


def test_verify_failures_are_all_listed(machine, fake_time, tools, tmp_path):
    # A worker left in the unit's cgroup holds GPU memory; 18080 still listens; request a never completed.
    add_proc(machine.proc, 21198, cgroup='0::/system.slice/%s\n' % LLAMA, comm='gpu_burn')
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time,
                     gpu=FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')]))
    record, failure, dummy = shutdown(
        host, fake_time, on_path={'nvidia-smi': tools['nvidia-smi']}, stop={'units': [LLAMA]},
        verify={'ports': [8000, 18080], 'port_timeout': 1, 'gpu': {'timeout': 0},
                'task_log': {'paths': [task_log(tmp_path, complete=False)]}, 'fail_on_incomplete': True})
    assert record['failed_step'] == 'verify' and record['status'] == 'failed' and not record['ok']
    verify = record['verify']
    assert not verify['ok'] and len(verify['failures']) == 4
    assert failure == record['msg'] == '%s is not clean: %s' % (HOST, '; '.join(verify['failures']))
    ports, gpu, procs, incomplete = verify['failures']
    assert ports == 'port(s) 18080 still listening after 1.0 s' and verify['ports_open'] == [18080]
    assert gpu.startswith('GPU memory not released: GPUs on %s not released' % HOST) and '21198' in gpu
    assert verify['gpu']['released'] is False and verify['gpu']['killed'] == []
    assert procs.startswith('1 process(es) are still running in the cgroups of stopped units (%s: PID 21198 (gpu_burn))' % LLAMA)
    assert [p['pid'] for p in verify['leftover_processes']] == [21198]
    assert incomplete == '1 request(s) were started but never completed' and verify['incomplete_count'] == 1
    # The ports were polled on the fake clock up to port_timeout, two samples kept.
    assert verify['seconds'] >= 1.0 and sum(fake_time.sleeps) >= 1.0


def test_incomplete_requests_pass_unless_asked_to_fail(machine, fake_time, tmp_path):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    record, failure, dummy = shutdown(host, fake_time, stop={'units': [LLAMA]},
                                      verify={'task_log': {'paths': [task_log(tmp_path, complete=False)]}})
    assert failure is None and record['verify']['incomplete_count'] == 1
    assert [r['id'] for r in record['verify']['task_log']['incomplete']] == ['a']


def test_task_log_failure_is_a_verify_failure(machine, fake_time, tmp_path):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    missing = str(tmp_path / 'gone.jsonl')
    record, failure, dummy = shutdown(host, fake_time, stop={'units': [LLAMA]}, verify={'task_log': {'paths': [missing]}})
    assert record['failed_step'] == 'verify'
    assert record['verify']['failures'][0].startswith('task log reconciliation failed: ') and missing in failure


def test_unreadable_proc_net_tcp_is_a_verify_failure(machine, fake_time, monkeypatch, tmp_path):
    monkeypatch.setattr(_netstat, 'listening', functools.partial(_netstat.listening.func, paths=(str(tmp_path / 'none'),)))
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    record, dummy, dummy = shutdown(host, fake_time, stop={'units': [LLAMA]}, verify={'ports': [8000]})
    assert record['failed_step'] == 'verify'
    assert record['verify']['failures'] == ['could not read the listening ports: none of %s exists: the connections source '
                                            'needs Linux with /proc mounted' % (tmp_path / 'none')]


# --- GPU: once per unit -----------------------------------------------------------------------------------

def test_gpu_is_checked_once_per_unit(machine, fake_time, tools):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean']), MISTRAL: (RUNNING, AFTER['clean'])}), fake_time,
                     gpu=FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')]))
    record, failure, dummy = shutdown(host, fake_time, on_path={'nvidia-smi': tools['nvidia-smi']},
                                      stop={'units': [LLAMA, MISTRAL]},
                                      verify={'gpu': {'timeout': 0, 'unit': 'ignored.service', 'kill_orphans': True}})
    assert failure is None and record['verify']['gpu']['released']
    assert len(record['verify']['gpu']['results']) == 2
    assert [c[1].split('=')[0] for c in host.gpu.calls].count('--query-compute-apps') == 2
    # Each check read its own unit's last main PID; the unit given in gpu is replaced.
    assert host.verbs(LLAMA) == host.verbs(MISTRAL) == ['show', 'show', 'stop', 'show', 'show']
    assert 'ignored.service' not in [c[-1] for c in host.systemd.calls]
    gpu_reads = [e[-1] for e in host.events[host.events.index(host.gpu.calls[0]) - 1:] if e[:2] == [SYSTEMCTL, 'show']]
    assert gpu_reads == [LLAMA, MISTRAL]


def test_gpu_with_no_units_to_verify_checks_the_host_once(machine, fake_time, tools):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time,
                     gpu=FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')]))
    record, failure, dummy = shutdown(host, fake_time, on_path={'nvidia-smi': tools['nvidia-smi']}, stop={'units': [LLAMA]},
                                      verify={'units': [], 'gpu': {'timeout': 0, 'kill_orphans': True}})
    assert failure is None and len(record['verify']['gpu']['results']) == 1
    assert host.verbs(LLAMA) == ['show', 'show', 'stop', 'show']  # no GPU-check show


def test_verify_units_default_to_the_stopped_units():
    phases = parse_params({'stop': {'units': [LLAMA, MISTRAL]}})
    assert phases['verify']['units'] == [LLAMA, MISTRAL] and phases['verify']['gpu'] is None
    assert parse_params({'stop': {'units': [LLAMA]}, 'verify': {'units': ['x.service']}})['verify']['units'] == ['x.service']


# --- check mode -------------------------------------------------------------------------------------------

def test_check_mode_reads_and_changes_nothing(machine, fake_time, metrics, tools):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time,
                     gpu=FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')]),
                     policy=FakePolicyHost(firewalld={('public', False): {'8000/tcp'}}))
    metrics.body = host.scrape([3])
    record, failure, dummy = shutdown(host, fake_time, check_mode=True,
                                      on_path={'nvidia-smi': tools['nvidia-smi'], 'firewall-cmd': FIREWALL_CMD},
                                      since=SINCE, drain=drain_options(metrics), stop={'units': [LLAMA]},
                                      policy={'firewall_ports': ['8000/tcp']}, verify={'ports': [18080], 'gpu': {'timeout': 0}})
    assert failure is None and record['ok'] and record['status'] == 'would_shut_down'
    # One read of the in-flight count, no waiting.
    assert metrics.scrapes == 1 and fake_time.sleeps == [] and record['drain']['drained'] is False
    # Nothing stopped, no policy changed, nothing verified.
    assert host.verbs() == ['show', 'show'] and record['stop']['units'][0]['stopped'] is True
    assert host.policy.mutations == [] and record['policy']['steps'][1]['items'][0]['changed'] is True
    assert record['verify'] == {'ok': None, 'skipped': 'check mode: nothing was stopped, so nothing is verified'}
    assert host.gpu.calls == [] and record['changed']


def test_check_mode_already_down(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (ONESHOT_DONE, None)}), fake_time)
    metrics.body = host.scrape([3])
    record, failure, dummy = shutdown(host, fake_time, check_mode=True, drain=drain_options(metrics), stop={'units': [LLAMA]})
    assert failure is None and record['status'] == 'already_down' and metrics.scrapes == 0 and not record['changed']


# --- parse_params -------------------------------------------------------------------------------------------

STOP = {'units': [LLAMA]}


@pytest.mark.parametrize('params,message', [
    (dict(drain={'metrics': None, 'haproxy': None, 'connections': None}, stop=STOP),
     'drain: one of the following is required: metrics, haproxy, connections'),
    (dict(drain={}, stop=STOP), 'drain: one of the following is required: metrics, haproxy, connections'),
    (dict(drain={'connections': {'port': 70000}}, stop=STOP), 'drain: connections.port must be between 1 and 65535, got 70000'),
    (dict(drain={'connections': {'port': 80}, 'poll_interval': 0.01}, stop=STOP),
     'drain: poll_interval must be at least 0.1 seconds, got 0.01'),
    (dict(drain={'connections': {'port': 80}, 'timeout': 'soon'}, stop=STOP), "drain: argument 'timeout' is of type str"),
    (dict(drain={'connections': {'port': 80}}, since=float('nan'), stop=STOP),
     'drain: since must be a wall-clock time in seconds since the epoch, got nan'),
    (dict(drain='metrics', stop=STOP), 'drain must be a dict, got str'),
    (dict(stop=None), 'stop: missing required arguments: units'),
    (dict(stop={'units': [LLAMA], 'fail_on': ['bogus']}), 'stop: value of fail_on must be one or more of'),
    (dict(stop={'units': [LLAMA], 'force': True}), 'stop: force. Supported parameters include'),
    (dict(stop=STOP, policy={'mask_units': ['--now']}), "policy: mask_units: '--now' is not a valid name"),
    (dict(stop=STOP, policy={'firewall_ports': ['8000/icmp']}), "policy: firewall_ports: '8000/icmp' is not"),
    (dict(stop=STOP, policy={'selinux_mode': 'enforcing'}), 'policy: value of selinux_mode must be one of: permissive, disabled'),
    (dict(stop=STOP, verify={'port_timeout': float('nan')}), 'verify.port_timeout must be a finite number of 0 or more seconds'),
    (dict(stop=STOP, verify={'port_timeout': -1}), 'verify.port_timeout must be a finite number of 0 or more seconds, got -1'),
    (dict(stop=STOP, verify={'ports': [8000, 0]}), 'verify.ports must be between 1 and 65535, got [8000, 0]'),
    (dict(stop=STOP, verify={'bogus': 1}), 'verify: bogus. Supported parameters include'),
    (dict(stop=STOP, verify={'gpu': {'backend': 'cuda'}}), 'verify.gpu: value of backend must be one of: auto'),
    (dict(stop=STOP, verify={'gpu': {'timeout': 'x'}}), "verify.gpu: argument 'timeout' is of type str"),
    (dict(stop=STOP, verify={'task_log': {}}), 'verify.task_log: missing required arguments: paths'),
    (dict(stop=STOP, verify={'task_log': {'paths': ['/x'], 'since': 'yesterday'}}), "verify.task_log: argument 'since'"),
])
def test_parse_params_errors_name_the_phase(params, message):
    with pytest.raises(SpecError) as caught:
        parse_params(params)
    assert str(caught.value).startswith(message), str(caught.value)


def test_drain_with_every_source_null_is_refused_and_never_drained(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)
    metrics.body = host.scrape([0])
    with pytest.raises(SpecError, match='^drain: one of the following is required'):
        shutdown(host, fake_time, drain={'metrics': None, 'haproxy': None, 'connections': None, 'timeout': 5},
                 stop={'units': [LLAMA]})
    assert metrics.scrapes == 0 and host.events == []


def test_parse_params_defaults_and_nulls():
    phases = parse_params({'drain': None, 'since': None, 'stop': {'units': [LLAMA], 'timeout_stop_sec': None},
                           'policy': None, 'verify': None})
    assert 'drain' not in phases
    assert phases['stop']['fail_on'] == ['timeout_killed', 'timeout', 'failed', 'signal'] and phases['stop']['timeout_stop_sec'] is None
    assert phases['policy']['firewall_zone'] == 'public' and phases['policy']['selinux_mode'] is None
    assert phases['verify'] == {'units': [LLAMA], 'ports': [], 'port_timeout': 10.0, 'processes': True, 'gpu': None,
                                'task_log': None, 'fail_on_incomplete': False}


def test_parse_params_drain_is_validated_by_model_drains_spec():
    phases = parse_params({'since': SINCE, 'drain': {'connections': {'port': 8000}}, 'stop': STOP})
    drain = phases['drain']
    assert drain['since'] == SINCE and drain['timeout'] == 300 and drain['on_timeout'] == 'fail'
    assert drain['connections'] == {'port': 8000, 'exclude_peers': []}


def test_gpu_unit_is_dropped_and_kill_orphans_needs_no_unit():
    gpu = parse_params({'stop': STOP, 'verify': {'gpu': {'unit': 'x.service', 'kill_orphans': True}}})['verify']['gpu']
    assert gpu['unit'] is None and gpu['kill_orphans'] is True and gpu['backend'] == 'auto'
