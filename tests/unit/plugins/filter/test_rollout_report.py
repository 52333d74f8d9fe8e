# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollout_report on registered module results shaped as roles/report passes them: per host, the batch's
lb_batch_state results (marks), its host_shutdown loop item (record) and the lb_batch_state restore results
(put_back)."""

from __future__ import annotations

import copy
import datetime
import json

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.modelops.shutdown.plugins.filter.rollout_report import FilterModule, rollout_report

try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test requirement
    given = None

EPOCH = 1764614400.0   # 2025-12-01T18:40:00Z


def at(seconds):
    return EPOCH + seconds


def iso(seconds):
    """What the record says for EPOCH + seconds: ISO 8601 UTC to the millisecond."""
    moment = datetime.datetime(2025, 12, 1, 18, 40, 0, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return moment.isoformat(timespec='milliseconds')


def server(host, in_flight=0, previous='ready', state='draining', changed=True):
    return {'host': host, 'kind': 'haproxy', 'target': 'HAProxy server models/%s (HAProxy runtime socket /run/h.sock)'
            % host, 'state': state, 'previous_state': previous, 'previous_status': 'UP', 'status': 'DRAIN',
            'changed': changed, 'in_flight_at_mark': in_flight, 'error': None}


def mark(lb, started, marked, servers, failed=False, refused=False, msg=None):
    """One item of the registered lb_batch_state loop (__rollout_marks.results)."""
    result = {
        'changed': bool(marked is not None), 'lb': lb, 'state': 'draining', 'refused': refused, 'budget': [],
        'servers': servers, 'started_at': at(started), 'marked_at': None if marked is None else at(marked),
        'finished_at': at((marked if marked is not None else started) + 0.1), 'failed': failed,
        '__rollout_lb': {'name': lb, 'delegate_to': lb, 'members': [], 'batch': [s['host'] for s in servers]},
        'ansible_loop_var': '__rollout_lb',
    }
    if msg is not None:
        result['msg'] = msg
    if marked is not None:
        result['verify_seconds'] = 0.01
    return result


def done(host, started, drain_seconds, stop_seconds, in_flight=3, incomplete=0, gpu_released=True, **changes):
    """One item of the registered host_shutdown loop (__rollout_host_loop.results) for a host that went through."""
    floor = None if drain_seconds is None or stop_seconds is None else round(drain_seconds + stop_seconds, 3)
    finished = started + (drain_seconds or 0) + (stop_seconds or 0) + 1.0
    record = {
        'changed': True, 'ok': True, 'status': 'done', 'failed_step': None, 'msg': '', 'host': host,
        'already_down': False, 'since': at(started - 0.5), 'started_at': at(started), 'finished_at': at(finished),
        'drain': {'drained': True, 'in_flight_initial': in_flight, 'in_flight_final': 0,
                  'waited_seconds': drain_seconds, 'drained_at': at(started + (drain_seconds or 0))},
        'stop': {'changed': True, 'stop_seconds': stop_seconds,
                 'units': [{'unit': 'vllm@llama3.service', 'classification': 'clean', 'stop_seconds': stop_seconds,
                            'result': 'success'}]},
        'policy': {'changed': True, 'steps': [{'step': 'firewall', 'status': 'done', 'reason': 'closed 8000/tcp'}]},
        'verify': {'ok': True, 'failures': [], 'ports_open': [], 'leftover_processes': [],
                   'gpu': {'checked': True, 'released': gpu_released, 'killed': [] if gpu_released else [4821],
                           'gpus': []},
                   'incomplete_count': incomplete, 'seconds': 0.4},
        'timings': {'drain_seconds': drain_seconds, 'stop_seconds': stop_seconds, 'floor_seconds': floor},
        '__rollout_turn': host, 'ansible_loop_var': '__rollout_turn',
    }
    record.update(changes)
    return record


def restore(lb, hosts, failed=False):
    """One item of the registered put-back loop (__rollout_put_back.results)."""
    result = mark(lb, 30.0, 30.1, [server(h, previous='draining', state='ready') for h in hosts], failed=failed)
    result['state'] = 'restore'
    return result


REFUSAL = ('Batch refused by the disruption budget on lb1, nothing was touched: pool lb1/models: taking out 2 of 2 '
           'available servers (gpu-5, gpu-6) would leave 0 UP, below min_available=1.')


def fleet():
    """Three batches. 1: gpu-1 on lb1 and gpu-2 on lb2, both done. 2: gpu-3 done without a task log, gpu-4
    unreachable during its call and put back. 3: refused by the budget on lb1."""
    batch1 = [mark('lb1', 0.0, 0.2, [server('gpu-1', in_flight=4)]), mark('lb2', 0.3, 0.5, [server('gpu-2', 1)])]
    batch2 = [mark('lb1', 20.0, 20.25, [server('gpu-3', 2), server('gpu-4', 5)])]
    batch3 = [mark('lb1', 40.0, None, [server('gpu-5', state='ready', changed=False),
                                       server('gpu-6', state='ready', changed=False)],
                   failed=True, refused=True, msg=REFUSAL)]
    gpu3 = done('gpu-3', 20.5, 2.0, 1.5)
    gpu3['verify']['incomplete_count'] = None
    return {
        'gpu-2': {'marks': batch1, 'record': done('gpu-2', 0.8, 6.5, 4.0, in_flight=1), 'put_back': []},
        'gpu-1': {'marks': batch1, 'record': done('gpu-1', 0.8, 5.0, 3.0, incomplete=2, gpu_released=False),
                  'put_back': []},
        'gpu-3': {'marks': batch2, 'record': gpu3, 'put_back': [restore('lb1', ['gpu-4'])]},
        'gpu-4': {'marks': batch2, 'put_back': [restore('lb1', ['gpu-4'])],
                  'record': {'unreachable': True, 'changed': False, '__rollout_turn': 'gpu-4',
                             'msg': 'Failed to connect to the host via ssh: Connection timed out'}},
        'gpu-5': {'marks': batch3, 'record': None, 'put_back': []},
        'gpu-6': {'marks': batch3, 'record': None, 'put_back': []},
    }


def report(**kwargs):
    kwargs.setdefault('halted', True)
    kwargs.setdefault('halt_reason', REFUSAL)
    kwargs.setdefault('finished_at', at(41.0))
    return rollout_report(fleet(), **kwargs)


def by_host(out):
    return dict((record['host'], record) for record in out['hosts'])


def test_registered_as_filter():
    assert FilterModule().filters()['rollout_report'] is rollout_report


def test_top_level():
    out = report()
    assert sorted(out) == ['batches', 'finished', 'finished_at', 'halt_reason', 'halted', 'hosts', 'mode', 'run_id',
                           'started', 'started_at', 'totals']
    assert (out['started_at'], out['finished_at']) == (at(0), at(41.0))
    assert (out['run_id'], out['mode'], out['started'], out['finished']) == (
        '20251201T184000Z', 'run', iso(0), iso(41.0))
    assert (out['halted'], out['halt_reason']) == (True, REFUSAL)
    assert [(r['batch'], r['host']) for r in out['hosts']] == [
        (1, 'gpu-1'), (1, 'gpu-2'), (2, 'gpu-3'), (2, 'gpu-4'), (3, 'gpu-5'), (3, 'gpu-6')]
    json.dumps(out)


def test_done_host_record():
    assert by_host(report())['gpu-1'] == {
        'host': 'gpu-1', 'batch': 1, 'status': 'done', 'failed_step': None, 'msg': '',
        'marked': iso(0.2), 'marked_at': at(0.2),
        'load_balancers': [{'lb': 'lb1', 'previous_state': 'ready', 'state': 'draining', 'changed': True,
                            'marked_at': at(0.2), 'weight_ramp': None}],
        'in_flight_at_mark': 4, 'drained': True, 'in_flight_initial': 3, 'in_flight_final': 0,
        'drained_at': iso(5.8), 'drain_seconds': 5.0, 'stop_seconds': 3.0, 'floor_seconds': 8.0,
        'started': iso(0.8), 'finished': iso(9.8), 'started_at': at(0.8), 'finished_at': at(9.8),
        'phases': {'drain': None, 'stop': None, 'policy': None, 'verify': None},
        'units': [{'unit': 'vllm@llama3.service', 'classification': 'clean', 'stop_seconds': 3.0}],
        'policy_changed': True, 'verify_ok': True, 'verify_failures': [], 'gpu_released': False,
        'gpu_killed': [4821], 'leftover_processes': 0, 'incomplete_count': 2, 'put_back': False,
        'in_flight_at_stop': None, 'lb_came_back': 0, 'lb_escalated': False, 'lb_events': [],
    }


def test_batches_grouped_by_their_mark_across_load_balancers():
    # gpu-1 is only on lb1, gpu-2 only on lb2: both belong to the batch that began with lb1's mark.
    out = report()
    assert [b['hosts'] for b in out['batches']] == [['gpu-2', 'gpu-1'], ['gpu-3', 'gpu-4'], ['gpu-5', 'gpu-6']]
    assert by_host(out)['gpu-2']['marked'] == iso(0.5)


def test_batch_lasts_until_the_next_starts_and_floors_come_from_host_timings():
    batches = report()['batches']
    assert batches[0] == {'number': 1, 'hosts': ['gpu-2', 'gpu-1'], 'started': iso(0), 'finished': iso(20.0),
                          'started_at': at(0), 'finished_at': at(20.0),
                          'modules_finished': iso(12.3), 'duration_seconds': 20.0, 'floor_seconds': 10.5,
                          'overhead_seconds': 9.5}
    assert batches[1] == {'number': 2, 'hosts': ['gpu-3', 'gpu-4'], 'started': iso(20.0), 'finished': iso(40.0),
                          'started_at': at(20.0), 'finished_at': at(40.0),
                          'modules_finished': iso(25.0), 'duration_seconds': 20.0, 'floor_seconds': 3.5,
                          'overhead_seconds': 16.5}
    # The last batch lasts until the run ends; nothing of it ran, so it has no floor.
    assert batches[2] == {'number': 3, 'hosts': ['gpu-5', 'gpu-6'], 'started': iso(40.0), 'finished': iso(41.0),
                          'started_at': at(40.0), 'finished_at': at(41.0),
                          'modules_finished': iso(40.0), 'duration_seconds': 1.0, 'floor_seconds': None,
                          'overhead_seconds': None}


def test_without_finished_at_the_run_ends_with_the_last_module():
    hosts = fleet()
    del hosts['gpu-5'], hosts['gpu-6']
    out = rollout_report(hosts)
    assert out['finished'] == iso(25.0) and out['batches'][-1]['finished'] == iso(25.0)
    assert out['batches'][-1]['duration_seconds'] == 5.0 and out['totals']['duration_seconds'] == 25.0
    assert (out['halted'], out['halt_reason']) == (False, '')
    # A finished_at earlier than the last module does not cut the last batch short.
    assert rollout_report(hosts, finished_at=at(21.0))['batches'][-1]['finished'] == iso(25.0)


def test_refused_unreachable_and_put_back_statuses():
    records = by_host(report())
    gpu4 = records['gpu-4']
    assert (gpu4['status'], gpu4['failed_step'], gpu4['put_back']) == ('failed', 'unreachable', True)
    assert gpu4['msg'] == 'Failed to connect to the host via ssh: Connection timed out; put back into service'
    assert gpu4['in_flight_at_mark'] == 5 and gpu4['drained'] is None and gpu4['floor_seconds'] is None
    assert records['gpu-3']['put_back'] is False   # the put-back named gpu-4 only
    for name in ('gpu-5', 'gpu-6'):
        record = records[name]
        assert (record['status'], record['failed_step'], record['msg']) == ('refused', 'budget', REFUSAL)
        assert record['marked'] is None and record['in_flight_at_mark'] == 0 and record['put_back'] is False
        assert record['load_balancers'] == [{'lb': 'lb1', 'previous_state': 'ready', 'state': 'ready',
                                             'changed': False, 'marked_at': None, 'weight_ramp': None}]
        assert record['phases'] == {'drain': None, 'stop': None, 'policy': None, 'verify': None}


def test_phases_and_each_load_balancers_mark_are_carried_for_the_timeline():
    batch = [mark('lb1', 0.0, 0.2, [server('gpu-1', 2)]), mark('lb2', 0.3, 0.6, [server('gpu-1', 1)])]
    record = done('gpu-1', 1.0, 2.0, 1.0, phases={
        'drain': {'start': at(0.2), 'end': at(3.0)}, 'stop': {'start': at(3.1), 'end': '1764614404.1'},
        'policy': None, 'verify': {'start': at(4.2), 'end': at(4.5)}})
    out = rollout_report({'gpu-1': {'marks': batch, 'record': record}})
    host = out['hosts'][0]
    assert host['phases'] == {'drain': {'start': at(0.2), 'end': at(3.0)}, 'stop': {'start': at(3.1), 'end': at(4.1)},
                              'policy': None, 'verify': {'start': at(4.2), 'end': at(4.5)}}
    assert [(lb['lb'], lb['marked_at']) for lb in host['load_balancers']] == [('lb1', at(0.2)), ('lb2', at(0.6))]
    assert host['marked_at'] == at(0.6) and host['marked'] == iso(0.6)
    assert (out['batches'][0]['started_at'], out['started_at']) == (at(0.0), at(0.0))


@pytest.mark.parametrize('phases, match', [
    ('soon', r'gpu-1\.record\.phases must be a dict, got str'),
    ({'stop': [1, 2]}, r'gpu-1\.record\.phases\.stop must be a dict, got list'),
    ({'drain': {'start': 'inf', 'end': None}}, r'gpu-1\.record\.phases\.drain\.start must be epoch seconds'),
    ({'verify': {'start': at(5), 'end': at(4)}}, r'gpu-1\.record\.phases\.verify ends .* before it starts'),
])
def test_bad_phases_name_where(phases, match):
    with pytest.raises(AnsibleFilterError, match=match):
        rollout_report({'gpu-1': {'record': done('gpu-1', 1.0, 2.0, 1.0, phases=phases)}})


def test_failed_mark_not_refused():
    failed = mark('lb1', 0.0, 0.2, [server('gpu-1', changed=False, state='ready')], failed=True,
                  msg='lb1: draining did not take effect within 10.0 s: ... Put back: gpu-1 to ready.')
    record = rollout_report({'gpu-1': {'marks': [failed]}})['hosts'][0]
    assert (record['status'], record['failed_step']) == ('failed', 'mark')
    assert record['msg'].startswith('lb1: draining did not take effect')
    assert record['batch'] == 1


def test_not_reached_and_put_back():
    batch = [mark('lb1', 0.0, 0.2, [server('gpu-1'), server('gpu-2')])]
    hosts = {
        'gpu-1': {'marks': batch, 'record': None, 'put_back': [restore('lb1', ['gpu-1'])]},
        'gpu-2': {'marks': batch, 'record': None, 'put_back': [restore('lb1', ['gpu-2'], failed=True)]},
        'gpu-3': {'marks': batch, 'record': None, 'put_back': [dict(restore('lb1', ['gpu-3']), skipped=True)]},
        'gpu-9': {},
    }
    out = rollout_report(hosts)
    records = by_host(out)
    assert (records['gpu-1']['status'], records['gpu-1']['put_back']) == ('put_back', True)
    assert records['gpu-1']['msg'] == 'marked on its load balancers, then not reached by the per-host call; ' \
                                      'put back into service'
    # A put-back that failed, or one that was skipped, does not count.
    assert (records['gpu-2']['status'], records['gpu-2']['put_back']) == ('not_reached', False)
    assert (records['gpu-3']['status'], records['gpu-3']['batch']) == ('not_reached', 1)
    # Named by no mark and with no record: not reached, in no batch, listed last.
    assert records['gpu-9'] == dict(records['gpu-9'], status='not_reached', batch=None, msg='', marked=None)
    assert [r['host'] for r in out['hosts']][-1] == 'gpu-9'
    assert out['totals']['put_back'] == 1 and out['totals']['not_reached'] == 3
    assert out['totals']['by_status'] == {'put_back': 1, 'not_reached': 3}


def test_per_host_call_failed_or_unknown():
    batch = [mark('lb1', 0.0, 0.2, [server('gpu-1'), server('gpu-2'), server('gpu-3')])]
    stop_failed = done('gpu-1', 1.0, 2.0, None, status='failed', failed_step='stop', ok=False, failed=True,
                       msg='vllm@llama3.service did not stop within 90 s')
    hosts = {
        'gpu-1': {'marks': batch, 'record': stop_failed, 'put_back': []},
        'gpu-2': {'marks': batch, 'record': {'failed': True, 'msg': 'MODULE FAILURE', '__rollout_turn': 'gpu-2'}},
        'gpu-3': {'marks': batch, 'record': {'changed': False, '__rollout_turn': 'gpu-3'}},
    }
    records = by_host(rollout_report(hosts))
    assert (records['gpu-1']['status'], records['gpu-1']['failed_step']) == ('failed', 'stop')
    assert records['gpu-1']['floor_seconds'] is None and records['gpu-1']['drain_seconds'] == 2.0
    assert (records['gpu-2']['status'], records['gpu-2']['msg']) == ('failed', 'MODULE FAILURE')
    # No record of the module's own: the connection failed (a docker exec into a dead container).
    assert records['gpu-2']['failed_step'] == 'connection'
    assert records['gpu-3']['status'] == 'unknown'


def test_already_down_and_check_mode():
    batch = [mark('lb1', 0.0, None, [server('gpu-1'), server('gpu-2')])]
    down = done('gpu-1', 1.0, None, 0.0, status='already_down', already_down=True, drain=None)
    would = done('gpu-2', 1.0, None, None, status='would_shut_down', drain=None, verify=None, timings={})
    out = rollout_report({'gpu-1': {'marks': batch, 'record': down}, 'gpu-2': {'marks': batch, 'record': would}},
                         mode='check')
    records = by_host(out)
    assert out['mode'] == 'check'
    assert (records['gpu-1']['status'], records['gpu-1']['drained']) == ('already_down', True)
    assert (records['gpu-2']['status'], records['gpu-2']['drained'], records['gpu-2']['gpu_released']) == (
        'would_shut_down', None, None)
    assert records['gpu-2']['incomplete_count'] is None and records['gpu-2']['verify_ok'] is None
    assert out['totals']['already_down'] == 1
    assert out['totals']['by_status'] == {'already_down': 1, 'would_shut_down': 1}
    assert out['totals']['no_task_log'] == 0   # only hosts done without a task log are counted


def test_incomplete_count_none_means_no_task_log():
    batch = [mark('lb1', 0.0, 0.2, [server('gpu-1'), server('gpu-2'), server('gpu-3')])]
    no_log = done('gpu-1', 1.0, 1.0, 1.0)
    no_log['verify']['incomplete_count'] = None
    unchecked = done('gpu-3', 1.0, 1.0, 1.0)
    unchecked['verify']['gpu'] = {'checked': False, 'released': True}
    out = rollout_report({'gpu-1': {'marks': batch, 'record': no_log},
                          'gpu-2': {'marks': batch, 'record': done('gpu-2', 1.0, 1.0, 1.0, incomplete=0)},
                          'gpu-3': {'marks': batch, 'record': unchecked}})
    records = by_host(out)
    assert records['gpu-1']['incomplete_count'] is None and records['gpu-2']['incomplete_count'] == 0
    assert records['gpu-3']['gpu_released'] is None
    assert (out['totals']['no_task_log'], out['totals']['incomplete_total'], out['totals']['gpu_not_released']) == (
        1, 0, 0)


def test_totals():
    assert report()['totals'] == {
        'hosts': 6, 'done': 3, 'failed': 1, 'put_back': 0, 'already_down': 0, 'not_reached': 0,
        'by_status': {'done': 3, 'failed': 1, 'refused': 2},
        'in_flight_at_mark_total': 12, 'incomplete_total': 2, 'no_task_log': 1, 'gpu_not_released': 1,
        'in_flight_at_stop_total': 0, 'lb_came_back_total': 0, 'lb_escalated': 0,
        'duration_seconds': 41.0, 'floor_seconds_sum': 14.0, 'ratio': 2.93,
    }


def test_hosts_without_marks_are_grouped_by_their_call():
    # No load balancer: each host's call starts its own batch.
    hosts = {'gpu-1': {'marks': [], 'record': done('gpu-1', 0.0, 1.0, 1.0)},
             'gpu-2': {'marks': [], 'record': done('gpu-2', 10.0, 1.0, 2.0)}}
    out = rollout_report(hosts, finished_at=at(15.0))
    assert [(b['number'], b['hosts'], b['duration_seconds'], b['floor_seconds'], b['overhead_seconds'])
            for b in out['batches']] == [(1, ['gpu-1'], 10.0, 2.0, 8.0), (2, ['gpu-2'], 5.0, 3.0, 2.0)]
    assert out['totals']['ratio'] == 3.0


def test_a_host_on_no_load_balancer_joins_its_batch():
    batch = [mark('lb1', 0.0, 0.2, [server('gpu-1')])]
    out = rollout_report({'gpu-1': {'marks': batch, 'record': done('gpu-1', 1.0, 1.0, 1.0)},
                          'gpu-2': {'marks': batch, 'record': done('gpu-2', 1.0, 1.0, 1.0)}})
    assert [b['hosts'] for b in out['batches']] == [['gpu-1', 'gpu-2']]
    assert by_host(out)['gpu-2']['marked'] is None and by_host(out)['gpu-2']['load_balancers'] == []


def test_epoch_strings_are_accepted():
    record = done('gpu-1', 1.0, 1.0, 1.0)
    record['started_at'] = str(record['started_at'])
    out = rollout_report({'gpu-1': {'record': record}}, finished_at=str(at(10.0)))
    assert out['started'] == iso(1.0) and out['finished'] == iso(10.0)


def test_empty_input():
    out = rollout_report({})
    assert (out['run_id'], out['started'], out['finished'], out['batches'], out['hosts']) == (
        'no-batch', None, None, [], [])
    assert out['totals'] == {'hosts': 0, 'done': 0, 'failed': 0, 'put_back': 0, 'already_down': 0, 'not_reached': 0,
                             'by_status': {}, 'in_flight_at_mark_total': 0, 'incomplete_total': 0, 'no_task_log': 0,
                             'in_flight_at_stop_total': 0, 'lb_came_back_total': 0, 'lb_escalated': 0,
                             'gpu_not_released': 0, 'duration_seconds': None, 'floor_seconds_sum': None,
                             'ratio': None}
    assert rollout_report(None)['hosts'] == []


def test_input_is_not_modified():
    hosts = fleet()
    before = copy.deepcopy(hosts)
    rollout_report(hosts, finished_at=at(41.0))
    assert hosts == before


@pytest.mark.parametrize('hosts, kwargs, match', [
    (['gpu-1'], {}, r'the input must be a dict, got list'),
    ({}, {'mode': 'dry-run'}, r"mode must be one of run, check, got 'dry-run'"),
    ({}, {'finished_at': 'soon'}, r"finished_at must be epoch seconds, got 'soon'"),
    ({}, {'finished_at': -5}, r'finished_at must be epoch seconds \(from 0 to the year 9999\), got -5'),
    ({}, {'finished_at': 1e20}, r'finished_at must be epoch seconds \(from 0 to the year 9999\)'),
    ({}, {'finished_at': float('nan')}, r'finished_at must be epoch seconds, got nan'),
    ({}, {'finished_at': True}, r'finished_at must be epoch seconds, got True'),
    ({1: {}}, {}, r'the input must map inventory host names \(strings\) to results, got the key 1'),
    ({'gpu-1': 'done'}, {}, r'gpu-1 must be a dict, got str'),
    ({'gpu-1': {'marks': {'lb': 'lb1'}}}, {}, r'gpu-1\.marks must be a list, got dict'),
    ({'gpu-1': {'marks': ['lb1']}}, {}, r'gpu-1\.marks\[0\] must be a dict, got str'),
    ({'gpu-1': {'marks': [{'servers': 'gpu-1'}]}}, {}, r'gpu-1\.marks\[0\]\.servers must be a list, got str'),
    ({'gpu-1': {'marks': [{'servers': [], 'started_at': 'now'}]}}, {},
     r"gpu-1\.marks\[0\]\.started_at must be epoch seconds, got 'now'"),
    ({'gpu-1': {'marks': [{'servers': [{'host': 'gpu-1'}], 'marked_at': [1]}]}}, {},
     r'gpu-1\.marks\.marked_at must be epoch seconds, got \[1\]'),
    ({'gpu-1': {'marks': [{'failed': True, 'msg': 3, 'servers': [{'host': 'gpu-1'}]}]}}, {},
     r'gpu-1\.marks\.msg must be a string, got 3'),
    ({'gpu-1': {'record': ['done']}}, {}, r'gpu-1\.record must be a dict, got list'),
    ({'gpu-1': {'record': {'status': ['done']}}}, {}, r"gpu-1\.record\.status must be a string, got \['done'\]"),
    ({'gpu-1': {'record': {'status': 'failed', 'msg': {'a': 1}}}}, {}, r'gpu-1\.record\.msg must be a string'),
    ({'gpu-1': {'record': {'unreachable': True, 'msg': 5}}}, {}, r'gpu-1\.record\.msg must be a string, got 5'),
    ({'gpu-1': {'record': {'drain': 'ok'}}}, {}, r'gpu-1\.record\.drain must be a dict, got str'),
    ({'gpu-1': {'record': {'drain': {'drained_at': 'x'}}}}, {},
     r"gpu-1\.record\.drain\.drained_at must be epoch seconds, got 'x'"),
    ({'gpu-1': {'record': {'stop': {'units': 'vllm.service'}}}}, {}, r'gpu-1\.record\.stop\.units must be a list'),
    ({'gpu-1': {'record': {'verify': {'gpu': []}}}}, {}, r'gpu-1\.record\.verify\.gpu must be a dict, got list'),
    ({'gpu-1': {'record': {'verify': {'incomplete_count': '2'}}}}, {},
     r"gpu-1\.record\.verify\.incomplete_count must be a count \(an integer of at least 0\) or null, got '2'"),
    ({'gpu-1': {'record': {'verify': {'incomplete_count': -1}}}}, {}, r'incomplete_count must be a count'),
    ({'gpu-1': {'record': {'verify': {'failures': 'gpu'}}}}, {}, r'gpu-1\.record\.verify\.failures must be a list'),
    ({'gpu-1': {'record': {'timings': {'floor_seconds': 'long'}}}}, {},
     r"gpu-1\.record\.timings\.floor_seconds must be a number of seconds, got 'long'"),
    ({'gpu-1': {'record': {'timings': {'stop_seconds': 10 ** 400}}}}, {},
     r'gpu-1\.record\.timings\.stop_seconds must be a number of seconds'),
    ({'gpu-1': {'record': {'started_at': 10 ** 400}}}, {}, r'gpu-1\.record\.started_at must be epoch seconds'),
    ({'gpu-1': {'record': {'finished_at': 'inf'}}}, {}, r"gpu-1\.record\.finished_at must be epoch seconds, got 'inf'"),
    ({'gpu-1': {'record': {'policy': 'on'}}}, {}, r'gpu-1\.record\.policy must be a dict'),
    ({'gpu-1': {'put_back': {}}}, {}, r'gpu-1\.put_back must be a list, got dict'),
    ({'gpu-1': {'put_back': [{'servers': 'gpu-1'}]}}, {}, r'gpu-1\.put_back\[0\]\.servers must be a list, got str'),
])
def test_bad_input_names_where(hosts, kwargs, match):
    with pytest.raises(AnsibleFilterError, match=match) as err:
        rollout_report(hosts, **kwargs)
    assert str(err.value).startswith('modelops.shutdown.rollout_report: ')


# ----------------------------------------------------------------------------------------- any input

if given is not None:
    KEYS = ['marks', 'record', 'put_back', 'servers', 'host', 'started_at', 'marked_at', 'finished_at', 'failed',
            'refused', 'msg', 'status', 'failed_step', 'unreachable', 'skipped', 'drain', 'stop', 'verify', 'timings',
            'policy', 'gpu', 'units', 'drained_at', 'incomplete_count', 'in_flight_at_mark', 'floor_seconds',
            'drain_seconds', 'stop_seconds', 'already_down', 'checked', 'released', 'killed', 'failures',
            'leftover_processes', 'changed', 'lb', 'state', 'previous_state', 'gpu-1', 'gpu-2']
    SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
               | st.sampled_from(['gpu-1', 'gpu-2', 'done', 'failed', '1764614400.5', 'nan', '', 'x'])
               | st.text(max_size=8))
    JSON = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5),
                        max_leaves=30)
    HOSTS = st.sampled_from(['gpu-1', 'gpu-2', 'gpu-3'])
    EPOCHS = SCALARS | st.floats(min_value=0, max_value=2e9) | st.integers(min_value=0, max_value=2 * 10 ** 9)

    def often(value):
        """C(value) three times in four, else anything JSON-like."""
        return st.integers(min_value=0, max_value=3).flatmap(lambda pick: value if pick else JSON)

    def some(**fields):
        """Mostly a dict with some of these keys, each mostly drawn from its strategy; else anything JSON-like."""
        return often(st.fixed_dictionaries({}, optional=dict((key, often(value)) for key, value in fields.items())))

    SERVER = some(host=HOSTS, in_flight_at_mark=SCALARS, state=SCALARS, previous_state=SCALARS, changed=SCALARS)
    MARK = some(servers=st.lists(SERVER, max_size=3), started_at=EPOCHS, marked_at=EPOCHS, failed=SCALARS,
                refused=SCALARS, msg=SCALARS, lb=SCALARS, skipped=SCALARS)
    RECORD = some(
        status=SCALARS, msg=SCALARS, failed=SCALARS, unreachable=SCALARS, failed_step=SCALARS, already_down=SCALARS,
        started_at=EPOCHS, finished_at=EPOCHS,
        drain=some(drained=SCALARS, drained_at=EPOCHS, in_flight_initial=SCALARS, in_flight_final=SCALARS),
        stop=some(units=st.lists(some(unit=SCALARS, classification=SCALARS, stop_seconds=SCALARS), max_size=2)),
        verify=some(ok=SCALARS, incomplete_count=SCALARS, failures=JSON, leftover_processes=JSON,
                    gpu=some(checked=SCALARS, released=SCALARS, killed=JSON)),
        timings=some(drain_seconds=SCALARS, stop_seconds=SCALARS, floor_seconds=SCALARS),
        phases=some(drain=some(start=EPOCHS, end=EPOCHS), stop=some(start=EPOCHS, end=EPOCHS),
                    policy=JSON, verify=some(start=EPOCHS)),
        policy=some(changed=SCALARS))
    # Shaped like the real input (host -> {marks, record, put_back}) down to the leaves, which are anything.
    SHAPED = st.dictionaries(HOSTS, st.fixed_dictionaries({}, optional={
        'marks': st.lists(MARK, max_size=3), 'record': RECORD, 'put_back': st.lists(MARK, max_size=2)}), max_size=3)
    OPTIONS = st.fixed_dictionaries({}, optional={'mode': SCALARS, 'halted': SCALARS, 'halt_reason': SCALARS,
                                                  'finished_at': EPOCHS})
    RUN_OPTIONS = st.fixed_dictionaries({}, optional={'mode': st.sampled_from(['run', 'check']), 'halted': SCALARS,
                                                      'halt_reason': SCALARS, 'finished_at': EPOCHS})

    def _only_filter_errors(hosts, options):
        try:
            out = rollout_report(hosts, **options)
        except AnsibleFilterError as exc:
            assert str(exc).startswith('modelops.shutdown.rollout_report: ')
            return
        json.dumps(out)   # what the report role writes
        assert sorted(out) == ['batches', 'finished', 'finished_at', 'halt_reason', 'halted', 'hosts', 'mode', 'run_id',
                               'started', 'started_at', 'totals']

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(hosts=JSON, options=OPTIONS)
    def test_any_json_like_input_raises_only_filter_errors(hosts, options):
        _only_filter_errors(hosts, options)

    @settings(max_examples=500, deadline=None, derandomize=True, database=None)
    @given(hosts=SHAPED, options=RUN_OPTIONS)
    def test_any_input_shaped_like_the_results_raises_only_filter_errors(hosts, options):
        _only_filter_errors(hosts, options)
else:  # pragma: no cover
    @pytest.mark.skip(reason='hypothesis is not installed (pip install hypothesis)')
    def test_any_json_like_input_raises_only_filter_errors():
        pass


def test_floor_is_the_stop_alone_when_nothing_was_in_flight_at_the_mark():
    batch = [mark('lb1', 0.0, 0.2, [server('gpu-1', in_flight=0), server('gpu-2', in_flight=2)])]
    hosts = {
        'gpu-1': {'marks': batch, 'record': done('gpu-1', 1.0, 0.6, 0.4, in_flight=0)},
        'gpu-2': {'marks': batch, 'record': done('gpu-2', 1.0, 2.5, 0.4)},
    }
    records = by_host(rollout_report(hosts))
    # Nothing in flight: the 0.6 s until the first read saw 0 is the tooling's time, not the floor's.
    assert records['gpu-1']['drain_seconds'] == 0.6 and records['gpu-1']['floor_seconds'] == 0.4
    assert records['gpu-2']['floor_seconds'] == 2.9


def test_cut_requests_and_load_balancer_events_are_reported():
    record = done('gpu-1', 0.8, 5.0, 3.0)
    record['in_flight_at_stop'] = 3
    record['lb_guard'] = {'came_back': 1, 'escalated': True, 'events': [
        {'at': '2026-12-02T02:03:04.512+00:00', 'event': 'came_back', 'lb': 'lb1', 'seen': 'ready', 'set': 'draining',
         'target': 'HAProxy server models/gpu-1'},
        {'at': '2026-12-02T02:03:07.512+00:00', 'event': 'escalated', 'lb': 'lb1', 'seen': 'draining', 'set': 'maintenance'}]}
    out = rollout_report({'gpu-1': {'marks': [mark('lb1', 0.0, 0.2, [server('gpu-1', 2)])], 'record': record, 'put_back': []}})
    host = out['hosts'][0]
    assert (host['in_flight_at_stop'], host['lb_came_back'], host['lb_escalated']) == (3, 1, True)
    assert [e['event'] for e in host['lb_events']] == ['came_back', 'escalated'] and 'target' not in host['lb_events'][0]
    assert (out['totals']['in_flight_at_stop_total'], out['totals']['lb_came_back_total'], out['totals']['lb_escalated']) == (3, 1, 1)


def test_a_weight_ramp_is_carried_per_load_balancer():
    ramped = mark('lb1', 0.0, 12.0, [server('gpu-1', 2)])
    ramped['weight_ramp'] = {'duration_seconds': 12.0, 'steps': 4, 'aborted': None,
                             'servers': [{'host': 'gpu-1', 'previous_weight': 100, 'initial_weight': 100, 'weight_back': 100,
                                          'steps': [{'at': at(0.0), 'weight': 75}, {'at': at(4.0), 'weight': 50},
                                                    {'at': at(8.0), 'weight': 25}]}]}
    plain = mark('lb2', 12.1, 12.3, [server('gpu-1', 1)])
    out = rollout_report({'gpu-1': {'marks': [ramped, plain], 'record': done('gpu-1', 12.5, 2.0, 1.0)}})
    [lb1, lb2] = out['hosts'][0]['load_balancers']
    assert lb1['weight_ramp'] == {'previous_weight': 100, 'weights': [75, 50, 25], 'aborted': None, 'weight_back': 100}
    assert lb2['weight_ramp'] is None


def test_a_weight_ramp_of_the_wrong_shape_names_where():
    ramped = mark('lb1', 0.0, 1.0, [server('gpu-1', 2)])
    ramped['weight_ramp'] = {'servers': 'gpu-1'}
    with pytest.raises(AnsibleFilterError, match=r'gpu-1\.marks\.weight_ramp\.servers must be a list, got str'):
        rollout_report({'gpu-1': {'marks': [ramped], 'record': done('gpu-1', 1.5, 2.0, 1.0)}})
