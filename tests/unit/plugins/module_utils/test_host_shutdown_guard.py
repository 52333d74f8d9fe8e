# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HostShutdown's host lock and its load-balancer guard (module_utils/_host_shutdown.py), on the fakes of
test_host_shutdown.py (FakeSystemd behind ModelHost, a MetricsServer, one FakeTime for every phase).

The load balancers are parsed as the module parses them (file entries), then their adapters are replaced by
ScriptedLB (test_lb_guard.py), whose reads go to the host's own event list, so the order of scrapes, LB reads and
sets, and systemctl calls is one list. The host lock lives in the test's tmp_path (tests/unit/conftest.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _host_shutdown
from ansible_collections.modelops.shutdown.plugins.module_utils._host_shutdown import (
    MAX_DRAIN_ROUNDS, HostLock, HostShutdown, LockBusy, parse_params)
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import LBError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_batch import iso
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_drain import EPOCH
# The fakes and fixtures of test_host_shutdown.py (pytest finds a fixture imported into a test module).
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_host_shutdown import (  # noqa: F401 pylint: disable=unused-import
    HOST,
    RECORD_KEYS,
    SINCE,
    ModelHost,
    drain_options,
    fake_time,
    machine,
    metrics,
)
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_lb_guard import ScriptedLB
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_gpu_release_check import isolated  # noqa: F401 pylint: disable=unused-import
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_model_drain import vllm_text
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_unit_stop import (
    AFTER, LLAMA, ONESHOT_DONE, RUNNING, SYSTEMCTL, FakeSystemd)

STOP = [SYSTEMCTL, 'stop', '--', LLAMA]


def running(fake_time):
    return ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), fake_time)


def lb(host, name, script, fail_sets=()):
    """A scripted load balancer entry's adapter whose reads and sets go to C(host.events)."""
    return ScriptedLB(name, script, host.events, fail_sets=fail_sets)


def guarded(host, fake_time, lbs, check_mode=False, **params):
    """parse_params(params) with a load_balancers entry per C(lbs) (name to adapter), the adapters then replaced by
    C(lbs); HostShutdown(...).run(). Returns C((record, failure, warnings))."""
    params.setdefault('stop', {'units': [LLAMA]})
    params.setdefault('verify', {'processes': False})
    params['load_balancers'] = [{'name': name, 'file': {'path': '/nonexistent/%s.flag' % name}} for name in lbs]
    phases = parse_params(params)
    for entry in phases['guard']['load_balancers']:
        entry['adapter'] = lbs[entry['name']]
    warnings = []
    record, failure = HostShutdown(phases, host, {'systemctl': SYSTEMCTL}.get, check_mode=check_mode, warn=warnings.append,
                                   clock=fake_time.clock, wall=fake_time.wall, sleep=fake_time.sleep).run()
    json.dumps(record)
    assert set(record) | {'already_down'} == RECORD_KEYS
    return record, failure, warnings


def trail(host):
    """The host's events in order: ('scrape', n), ('read', lb), ('set', lb, state), 'stop'."""
    out = []
    for event in host.events:
        if isinstance(event, tuple):
            out.append(event)
        elif event == STOP:
            out.append('stop')
    return out


# --- the host lock ---------------------------------------------------------------------------------------------

def _hold(path, run_id, held, release):
    lock = HostLock(path, run_id)
    lock.acquire()
    held.set()
    release.wait(60)
    lock.release()


def _try_lock(path, results):
    try:
        HostLock(path, 'other').acquire()
    except LockBusy as exc:
        results.put(str(exc))
    else:
        results.put(None)


@pytest.fixture
def holder():
    """Start another process holding the host lock (C(holder(path, run_id)) returns it); it ends at teardown."""
    context = multiprocessing.get_context('fork')
    started = []

    def start(path, run_id):
        held, release = context.Event(), context.Event()
        process = context.Process(target=_hold, args=(path, run_id, held, release))
        process.start()
        assert held.wait(60), 'the holder did not take the lock'
        started.append((process, release))
        return process, release

    yield start
    for process, release in started:
        release.set()
        process.join(60)


def lock_free_for_another_process(path):
    context = multiprocessing.get_context('fork')
    results = context.Queue()
    process = context.Process(target=_try_lock, args=(path, results))
    process.start()
    answer = results.get(timeout=60)
    process.join(60)
    return answer is None


def test_a_second_holder_in_another_process_is_refused_naming_it(tmp_path, holder):
    path = str(tmp_path / 'host.lock')
    process, release = holder(path, '20261202T020304Z-aaaaaa')
    with pytest.raises(LockBusy) as caught:
        HostLock(path, 'mine').acquire()
    message = str(caught.value)
    assert 'another shutdown run works on this host: pid %d of run 20261202T020304Z-aaaaaa, since ' % process.pid in message
    assert '(lock %s)' % path in message and 'kill %d on this host' % process.pid in message
    # Check mode tests it too.
    with pytest.raises(LockBusy):
        HostLock(path, 'mine').acquire(check_mode=True)
    release.set()
    process.join(60)
    lock = HostLock(path, 'mine')
    lock.acquire()
    lock.release()


def test_run_with_the_lock_held_elsewhere_touches_nothing(machine, fake_time, metrics, holder):
    process, dummy = holder(_host_shutdown.DEFAULT_LOCK_PATH, 'run-A')
    host = running(fake_time)
    metrics.body = host.scrape([0])
    for check_mode in (False, True):
        record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining'])}, check_mode=check_mode,
                                         drain=drain_options(metrics))
        assert record['failed_step'] == 'lock' and record['status'] == 'failed' and not record['ok']
        assert failure == record['msg'] and 'pid %d of run run-A' % process.pid in failure
        assert record['drain'] is None and record['stop'] is None and record['lb_guard'] is None
    assert host.events == [] and metrics.scrapes == 0


def test_the_lock_names_this_run_and_is_released_after_run(machine, fake_time, metrics, tmp_path):
    path = _host_shutdown.DEFAULT_LOCK_PATH
    assert os.path.dirname(path) == str(tmp_path)   # redirected by tests/unit/conftest.py
    host = running(fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining'])}, drain=drain_options(metrics),
                                     run_id='20261202T020304Z-1a2b3c')
    assert failure is None and record['run_id'] == '20261202T020304Z-1a2b3c'
    with open(path) as handle:
        assert json.loads(handle.read()) == {'pid': os.getpid(), 'run': '20261202T020304Z-1a2b3c', 'started_at': iso(EPOCH)}
    assert lock_free_for_another_process(path)


def test_the_lock_is_released_after_a_failed_run_too(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([5])
    record, dummy, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining'])}, drain=drain_options(metrics, timeout=1))
    assert record['failed_step'] == 'drain'
    assert lock_free_for_another_process(_host_shutdown.DEFAULT_LOCK_PATH)


def test_lock_path_is_honoured_and_one_that_cannot_be_opened_fails_the_host(machine, fake_time, tmp_path):
    host = running(fake_time)
    path = tmp_path / 'mine.lock'
    record, failure, dummy = guarded(host, fake_time, {}, lock_path=str(path))
    assert failure is None and path.exists() and not os.path.exists(_host_shutdown.DEFAULT_LOCK_PATH)
    missing = str(tmp_path / 'no-such-dir' / 'x.lock')
    record, failure, dummy = guarded(host, fake_time, {}, lock_path=missing)
    assert record['failed_step'] == 'lock'
    assert failure.startswith('cannot open the host lock %s on %s: ' % (missing, HOST)) and 'No such file' in failure


def test_check_mode_creates_no_lock_file_and_leaves_one_as_it_is(machine, fake_time, metrics):
    path = _host_shutdown.DEFAULT_LOCK_PATH
    host = running(fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining'])}, check_mode=True,
                                     drain=drain_options(metrics))
    assert failure is None and record['status'] == 'would_shut_down' and not os.path.exists(path)
    # Left by an earlier run that ended: only tested, not rewritten.
    with open(path, 'w') as handle:
        handle.write('{"pid": 1, "run": "earlier", "started_at": "x"}')
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining'])}, check_mode=True,
                                     drain=drain_options(metrics))
    assert failure is None
    with open(path) as handle:
        assert handle.read() == '{"pid": 1, "run": "earlier", "started_at": "x"}'


# --- drain rounds -----------------------------------------------------------------------------------------------

def test_a_host_found_back_in_rotation_at_the_confirmation_drains_again_from_then(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([2, 0])
    # Reads: two drain polls, the confirmation (ready again: an HAProxy reload), the new drain's poll, the confirmation.
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining', 'draining', 'ready', 'draining'])},
                                     since=SINCE, drain=drain_options(metrics))
    assert failure is None and record['status'] == 'done' and record['ok']
    assert trail(host) == [('scrape', 2), ('read', 'm1'), ('scrape', 0), ('read', 'm1'),   # round 1, drained at +0.5
                           ('read', 'm1'), ('set', 'm1', 'draining'),                       # confirmation: ready, drained again
                           ('scrape', 0), ('read', 'm1'),                                   # round 2
                           ('read', 'm1'),                                                  # confirmation: draining
                           'stop']
    drain = record['drain']
    # The second round counts from the moment it was drained again, not from the rollout's since.
    assert drain['earlier_rounds'] == 1 and drain['started_at'] == EPOCH + 0.5 and record['since'] == SINCE
    assert drain['drained'] and drain['drained_at'] == EPOCH + 0.5 and drain['polls'] == 1
    assert record['timings']['drain_seconds'] == 4.5   # from the rollout's since to the end of the last round
    guard = record['lb_guard']
    assert guard['came_back'] == 1 and guard['escalated'] is False and guard['read_errors'] == 0
    assert [(e['event'], e['lb'], e['seen'], e['set']) for e in guard['events']] == [('came_back', 'lb1', 'ready', 'draining')]
    assert record['in_flight_at_stop'] is None


def test_a_host_put_back_every_round_fails_at_recheck_and_is_not_stopped(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining', 'ready'] * MAX_DRAIN_ROUNDS)},
                                     since=SINCE, drain=drain_options(metrics))
    assert record['failed_step'] == 'recheck' and record['status'] == 'failed' and not record['ok']
    assert failure == record['msg'] == (
        '%s was not stopped: a load balancer put it back into rotation %d time(s) while it drained (lb1). Find what resets '
        'the state (an HAProxy reload without a server-state file, a configuration tool) and re-run.' % (HOST, MAX_DRAIN_ROUNDS))
    assert 'stop' not in trail(host) and host.verbs() == ['show'] and record['stop'] is None and not record['changed']
    assert [e for e in trail(host) if e[0] == 'set'] == [('set', 'm1', 'draining')] * MAX_DRAIN_ROUNDS
    assert record['drain']['earlier_rounds'] == MAX_DRAIN_ROUNDS - 1 and record['lb_guard']['came_back'] == MAX_DRAIN_ROUNDS


def test_a_host_back_in_rotation_without_a_drain_to_wait_for_fails_at_recheck(machine, fake_time):
    host = running(fake_time)
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['ready', 'draining'])})
    assert record['failed_step'] == 'recheck' and 'put it back into rotation 1 time(s)' in failure
    assert trail(host) == [('read', 'm1'), ('set', 'm1', 'draining')] and record['drain'] is None


def test_an_lb_that_does_not_answer_the_confirmation_stops_nothing(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['maintenance']),
                                                       'lb2': lb(host, 'm2', ['draining', LBError('connection refused')])},
                                     since=SINCE, drain=drain_options(metrics), lb_answer_timeout=2)
    assert record['failed_step'] == 'recheck' and record['status'] == 'failed'
    assert failure == record['msg'] == (
        '%s was not stopped: could not read lb2 within 2.0 s to confirm that the host is out of rotation before its stop: '
        'lb2: connection refused. The rollout puts it back; if the load balancer does not answer, run restore.yml '
        "with the run's journal once it does." % HOST)
    assert 'stop' not in trail(host) and host.verbs() == ['show'] and record['stop'] is None
    assert sum(fake_time.sleeps) == 2.0   # the confirmation asked until lb_answer_timeout, on the fake clock
    [event] = record['lb_guard']['events']
    assert (event['event'], event['lb'], event['error'], event['waited_seconds']) == ('unanswered', 'lb2', 'connection refused', 2.0)


def test_on_timeout_proceed_stops_with_the_last_in_flight_count(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([5, 4, 3])
    record, failure, warnings = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining'])},
                                        drain=drain_options(metrics, timeout=1, on_timeout='proceed'))
    assert failure is None and record['status'] == 'done' and trail(host)[-1] == 'stop'
    assert record['drain']['drained'] is False and record['drain']['polls'] == 3
    assert record['in_flight_at_stop'] == 3 and len(warnings) == 1 and 'on_timeout=proceed' in warnings[0]


def test_a_drain_that_ends_in_time_has_nothing_in_flight_at_stop(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([2, 0])
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining'])},
                                     drain=drain_options(metrics, on_timeout='proceed'))
    assert failure is None and record['in_flight_at_stop'] is None


def test_in_flight_at_stop_is_that_of_the_last_round(machine, fake_time, metrics):
    host = running(fake_time)
    in_flight = {'now': 3}
    metrics.body = lambda: vllm_text(in_flight['now'])

    def back_in_rotation():
        in_flight['now'] = 0   # what it had finished meanwhile
        return 'ready'

    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['draining'] * 3 + [back_in_rotation, 'draining'])},
                                     drain=drain_options(metrics, timeout=1, on_timeout='proceed'))
    assert failure is None and record['drain']['earlier_rounds'] == 1 and record['drain']['drained'] is True
    assert record['in_flight_at_stop'] is None


# --- what the record says of the load balancers ---------------------------------------------------------------------

def test_the_lb_guard_record(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([2, 2, 0])
    lbs = {'lb1': lb(host, 'm1', ['draining', 'draining', 'maintenance']),
           'lb2': lb(host, 'm2', ['draining', LBError('timed out'), 'draining'])}
    # since 4 s ago: the polls are at 4.0, 4.5 and 5.0 s; the grace ends at 4.5 s.
    record, failure, dummy = guarded(host, fake_time, lbs, since=SINCE, drain=drain_options(metrics), sticky_grace=4.5)
    assert failure is None and record['status'] == 'done'
    escalated = {'at': iso(EPOCH + 0.5), 'event': 'escalated', 'after_seconds': 4.5, 'in_flight': 2, 'seen': 'draining',
                 'set': 'maintenance'}
    assert record['lb_guard'] == {
        'load_balancers': [
            {'lb': 'lb1', 'target': 'scripted server m1', 'state': 'draining', 'want': 'maintenance', 'last_seen': 'maintenance'},
            {'lb': 'lb2', 'target': 'scripted server m2', 'state': 'draining', 'want': 'maintenance', 'last_seen': 'draining'}],
        'events': [dict(escalated, lb='lb1', target='scripted server m1'), dict(escalated, lb='lb2', target='scripted server m2')],
        'events_dropped': 0, 'escalated': True, 'came_back': 0, 'read_errors': 1}
    assert trail(host).index(('set', 'm1', 'maintenance')) < trail(host).index('stop')


def test_without_load_balancers_there_is_no_guard(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = guarded(host, fake_time, {}, drain=drain_options(metrics))
    assert failure is None and record['lb_guard'] is None and record['drain']['drained']


def test_an_already_down_host_reads_no_load_balancer(machine, fake_time, metrics):
    host = ModelHost(FakeSystemd({LLAMA: (ONESHOT_DONE, None)}), fake_time)
    metrics.body = host.scrape([3])
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['ready'])}, drain=drain_options(metrics))
    assert failure is None and record['status'] == 'already_down' and trail(host) == []
    assert record['lb_guard']['events'] == [] and record['lb_guard']['load_balancers'][0]['last_seen'] is None


def test_check_mode_reads_the_load_balancers_once_and_sets_nothing(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([3])
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', ['ready'])}, check_mode=True,
                                     drain=drain_options(metrics), sticky_grace=0)
    assert failure is None and record['status'] == 'would_shut_down'
    assert trail(host) == [('scrape', 3), ('read', 'm1')] and record['lb_guard']['escalated'] is False


def test_check_mode_fails_a_host_that_cannot_reach_its_load_balancer(machine, fake_time, metrics):
    host = running(fake_time)
    metrics.body = host.scrape([0])
    record, failure, dummy = guarded(host, fake_time, {'lb1': lb(host, 'm1', [LBError('connection refused')])},
                                     check_mode=True, drain=drain_options(metrics), lb_answer_timeout=1)
    assert record['failed_step'] == 'recheck' and 'could not read lb1 within 1.0 s' in failure
    # Pre-flight's words: what the read is for and how to fix it, not a stop that never was due.
    assert 'was not stopped' not in failure and 'check the from_host entry of drain_load_balancers' in failure
    assert 'stop' not in trail(host)


@pytest.mark.parametrize('params,message', [
    ({'sticky_grace': -1}, 'sticky_grace must be a finite number of seconds from 0 to'),
    ({'sticky_grace': float('inf')}, 'sticky_grace must be a finite number of seconds'),
    ({'lb_answer_timeout': float('nan')}, 'lb_answer_timeout must be a finite number of seconds'),
    ({'load_balancers': [{'name': 'lb1'}]}, 'load_balancers[0] (lb1) must have exactly one of'),
])
def test_parse_params_checks_the_guard_options(params, message):
    with pytest.raises(SpecError) as caught:
        parse_params(dict({'stop': {'units': [LLAMA]}}, **params))
    assert str(caught.value).startswith(message), str(caught.value)


def test_parse_params_guard_defaults():
    phases = parse_params({'stop': {'units': [LLAMA]}})
    assert phases['guard'] == {'load_balancers': [], 'sticky_grace': None, 'answer_timeout': 5.0}
    assert phases['run_id'] is None and phases['lock_path'] is None
