# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollout_report on modelops_shutdown_result facts shaped as the drain, stop, policy and verify roles record them,
and the report role's Markdown template rendered from its output."""

from __future__ import annotations

import copy
import datetime
import os

import jinja2
import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.modelops.shutdown.plugins.filter.rollout_report import FilterModule, rollout_report

TEMPLATE = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'report', 'templates', 'report.md.j2')


def ts(seconds):
    """ISO 8601 UTC timestamp, as now(utc=true).isoformat() writes it, `seconds` after 2026-11-29T00:40:00."""
    base = datetime.datetime(2026, 11, 29, 0, 40, 0, tzinfo=datetime.timezone.utc)
    return (base + datetime.timedelta(seconds=seconds)).isoformat()


def unit(name, classification='clean', stop_seconds=3.2, result='success', code=1, status=0):
    return {
        'unit': name, 'was_active': True, 'stopped': True, 'classification': classification, 'result': result,
        'load_state': 'loaded', 'active_state': 'inactive' if classification == 'clean' else 'failed',
        'sub_state': 'dead' if classification == 'clean' else 'failed', 'unit_file_state': 'enabled',
        'exec_main_code': code, 'exec_main_status': status, 'exec_main_pid': 48211,
        'exit': 'exited with status %d' % status, 'timeout_stop_sec': 90.0, 'stop_seconds': stop_seconds,
        'disabled': False, 'masked': False, 'changed': True, 'error': None,
    }


def done_host(batch, start, waited, in_flight, units, incomplete=(), gpu_released=True, killed=()):
    """A host that went through drain, stop, policy and verify; times in seconds after the rollout start."""
    drain_finished = start + 1.5 + waited
    stop_finished = drain_finished + max(u['stop_seconds'] or 0 for u in units) + 0.4
    return {
        'batch': batch,
        'status': 'done',
        'failed_step': None,
        'msg': 'drained, stopped, policy taken back, verified clean',
        'drain': {
            'ok': True, 'state': 'maintenance', 'started': ts(start), 'finished': ts(drain_finished),
            'drained': True, 'in_flight_initial': in_flight, 'in_flight_final': 0, 'waited_seconds': waited,
            'load_balancers': [{'name': 'lb1', 'previous_state': 'ready', 'state': 'maintenance', 'changed': True}],
        },
        'stop': {'ok': True, 'finished': ts(stop_finished), 'units': units},
        'policy': {
            'ok': True, 'changed': True,
            'steps': [
                {'step': 'selinux', 'status': 'skipped', 'reason': 'SELinux is disabled', 'changed': False},
                {'step': 'firewall', 'status': 'done', 'reason': 'closed 8000/tcp', 'changed': True},
                {'step': 'units', 'status': 'done', 'reason': 'masked model-server@llama.service', 'changed': True},
            ],
        },
        'verify': {
            'ok': not incomplete and gpu_released, 'failures': [], 'ports_closed': [8000], 'leftover_processes': [],
            'gpu': {
                'checked': True, 'released': gpu_released, 'killed': list(killed),
                'gpus': [{'index': 0, 'uuid': 'GPU-5b2e1c9a-0000-0000-0000-000000000000', 'memory_used_mib': 1,
                          'memory_total_mib': 143771, 'holders': []}],
            },
            'incomplete_count': len(incomplete),
            'incomplete': [{'id': task_id, 'started_ts': 1795999212.5, 'started_at': '2026-11-29T00:40:12.500Z',
                            'path': '/var/log/model-server/llama.tasks.jsonl', 'line': 1841,
                            'fields': {'instance': 'llama'}} for task_id in incomplete],
            'resubmitted': [],
            'finished': ts(stop_finished + 2.0),
        },
    }


def fleet():
    """Four hosts in two batches: batch 1 clean; batch 2 one host timed out on stop and left an unfinished task,
    one host never got a drain through (drain failed, put back in service)."""
    gpu1 = done_host(1, 1.0, 11.8, 7, [unit('model-server@llama.service', stop_seconds=3.2)])
    gpu2 = done_host(1, 1.0, 6.0, 2, [unit('model-server@llama.service', stop_seconds=2.1),
                                      unit('model-server@embed.service', stop_seconds=4.0)])
    gpu3 = done_host(2, 30.0, 4.0, 10,
                     [unit('model-server@llama.service', 'timeout_killed', 90.08, 'timeout', 2, 9)],
                     incomplete=['5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21', 'req-1842'], gpu_released=False,
                     killed=[48230])
    gpu3['status'] = 'failed'
    gpu3['failed_step'] = 'verify'
    gpu3['msg'] = 'gpu-3 is not clean: GPU memory not released; 2 requests started and never completed'
    gpu3['verify']['failures'] = ['GPU memory not released', '2 requests started and never completed']
    gpu4 = {
        'batch': 2,
        'status': 'restored',
        'failed_step': 'drain',
        'msg': 'Could not mark gpu-4 maintenance on every load balancer: HAProxy runtime API refused the command',
        'drain': {'ok': False, 'step': 'mark', 'started': ts(30.5), 'msg': 'HAProxy runtime API refused the command',
                  'load_balancers': ['lb1']},
        'restore': {'ok': True, 'state': 'ready', 'finished': ts(34.0), 'changed': True},
    }
    hosts = {'gpu-3': gpu3, 'gpu-1': gpu1, 'gpu-4': gpu4, 'gpu-2': gpu2}
    batches = [
        {'number': 1, 'hosts': ['gpu-1', 'gpu-2'], 'started': ts(0.5), 'finished': ts(21.0)},
        {'number': 2, 'hosts': ['gpu-3', 'gpu-4'], 'started': ts(29.0), 'finished': ts(131.5)},
    ]
    return hosts, batches


def report(**overrides):
    hosts, batches = fleet()
    kwargs = dict(batches=batches, mode='run', started=ts(0), finished=ts(140.0), halted=False, halt_reason=None)
    kwargs.update(overrides)
    return rollout_report(hosts, **kwargs)


def test_registered_as_filter():
    assert FilterModule().filters()['rollout_report'] is rollout_report


def test_top_level_keys_and_host_order():
    out = report()
    assert sorted(out) == ['batches', 'finished', 'halt_reason', 'halted', 'hosts', 'mode', 'started', 'totals']
    assert (out['mode'], out['started'], out['finished'], out['halted']) == ('run', ts(0), ts(140.0), False)
    assert [(h['batch'], h['host']) for h in out['hosts']] == [(1, 'gpu-1'), (1, 'gpu-2'), (2, 'gpu-3'), (2, 'gpu-4')]


def test_done_host_record():
    gpu2 = report()['hosts'][1]
    assert gpu2 == {
        'host': 'gpu-2', 'batch': 1, 'status': 'done', 'failed_step': None,
        'msg': 'drained, stopped, policy taken back, verified clean',
        'drain_started': ts(1.0), 'drain_finished': ts(8.5), 'drain_seconds': 7.5, 'drain_waited_seconds': 6.0,
        'in_flight_at_drain_start': 2, 'drained': True,
        'stop_classifications': {'model-server@llama.service': 'clean', 'model-server@embed.service': 'clean'},
        'stop_seconds': 4.0, 'floor_seconds': 10.0,
        'gpu_released': True, 'gpu_killed': [], 'incomplete_count': 0, 'incomplete_ids': [],
        'policy_changed': True, 'restored': False,
    }


def test_failed_and_restored_host_records():
    hosts = report()['hosts']
    gpu3, gpu4 = hosts[2], hosts[3]
    assert gpu3['status'] == 'failed'
    assert gpu3['failed_step'] == 'verify'
    assert gpu3['stop_classifications'] == {'model-server@llama.service': 'timeout_killed'}
    assert gpu3['stop_seconds'] == 90.08
    assert gpu3['floor_seconds'] == 94.08
    assert (gpu3['gpu_released'], gpu3['gpu_killed']) == (False, [48230])
    assert gpu3['incomplete_count'] == 2
    assert gpu3['incomplete_ids'] == ['5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21', 'req-1842']
    # The drain failed while marking: no drain figures, no stop, no verification, but put back in service.
    assert gpu4['status'] == 'restored'
    assert gpu4['restored'] is True
    assert gpu4['drain_started'] == ts(30.5)
    assert (gpu4['drain_finished'], gpu4['drain_seconds'], gpu4['in_flight_at_drain_start']) == (None, None, None)
    assert (gpu4['stop_classifications'], gpu4['stop_seconds'], gpu4['floor_seconds']) == ({}, None, None)
    assert (gpu4['gpu_released'], gpu4['incomplete_count'], gpu4['policy_changed']) == (None, None, None)


def test_batches_duration_floor_overhead():
    batches = report()['batches']
    assert batches == [
        {'number': 1, 'hosts': ['gpu-1', 'gpu-2'], 'started': ts(0.5), 'finished': ts(21.0),
         'duration_seconds': 20.5, 'floor_seconds': 15.0, 'overhead_seconds': 5.5},
        {'number': 2, 'hosts': ['gpu-3', 'gpu-4'], 'started': ts(29.0), 'finished': ts(131.5),
         'duration_seconds': 102.5, 'floor_seconds': 94.08, 'overhead_seconds': 8.42},
    ]


def test_totals():
    assert report()['totals'] == {
        'hosts': 4, 'done': 2, 'failed': 1, 'restored': 1, 'already_down': 0, 'skipped': 0,
        'by_status': {'done': 2, 'failed': 1, 'restored': 1}, 'in_flight_at_start_total': 19, 'incomplete_total': 2, 'gpu_not_released': 1,
        'duration_seconds': 140.0, 'floor_seconds_sum': 109.08, 'ratio': 1.283,
    }


def test_halted_rollout_with_unfinished_batch_and_unreached_hosts():
    hosts, batches = fleet()
    del batches[1]['finished']
    batches.append({'number': 3, 'hosts': ['gpu-5', 'gpu-6'], 'started': ts(132.0)})
    hosts['gpu-5'] = {}
    out = rollout_report(hosts, batches=batches, mode='run', started=ts(0), halted=True,
                         halt_reason='batch 2: gpu-3 failed verify')
    assert (out['halted'], out['halt_reason'], out['finished']) == (True, 'batch 2: gpu-3 failed verify', None)
    assert [b['duration_seconds'] for b in out['batches']] == [20.5, None, None]
    assert out['batches'][1]['overhead_seconds'] is None
    assert out['batches'][2] == {'number': 3, 'hosts': ['gpu-5', 'gpu-6'], 'started': ts(132.0), 'finished': None,
                                 'duration_seconds': None, 'floor_seconds': 0.0, 'overhead_seconds': None}
    by_host = {h['host']: h for h in out['hosts']}
    assert by_host['gpu-5']['status'] == 'not_reached'
    assert by_host['gpu-6']['status'] == 'not_reached'   # named in a batch, absent from the results
    assert by_host['gpu-6']['batch'] == 3
    assert out['totals']['by_status'] == {'done': 2, 'failed': 1, 'not_reached': 2, 'restored': 1}
    assert out['totals']['hosts'] == 6
    # Without a rollout finish time and with a batch unfinished, the duration is not known.
    assert (out['totals']['duration_seconds'], out['totals']['ratio']) == (None, None)
    assert out['totals']['floor_seconds_sum'] == 109.08


def test_duration_falls_back_to_sum_of_batch_durations():
    hosts, batches = fleet()
    out = rollout_report(hosts, batches=batches)
    assert out['totals']['duration_seconds'] == 123.0
    assert out['totals']['ratio'] == round(123.0 / 109.08, 3)


def test_status_and_failed_step_derived_when_missing():
    hosts = {
        'gpu-7': {'batch': 1, 'drain': {'ok': True, 'waited_seconds': 2.0, 'in_flight_initial': 1},
                  'stop': {'ok': False, 'finished': ts(9.0), 'units': [unit('model-server@llama.service', 'failed', 1.1,
                                                                            'exit-code', 1, 3)],
                           'msg': 'model-server@llama.service: exited with status 3 (failed)'}},
        'gpu-8': {'batch': 1, 'drain': {'ok': True, 'waited_seconds': 1.0}},
    }
    out = rollout_report(hosts)
    gpu7, gpu8 = out['hosts']
    assert (gpu7['status'], gpu7['failed_step']) == ('failed', 'stop')
    assert gpu7['msg'] == 'model-server@llama.service: exited with status 3 (failed)'
    assert gpu7['floor_seconds'] == 3.1
    assert gpu7['drain_seconds'] == 2.0   # no timestamps: the drain wait
    assert (gpu8['status'], gpu8['failed_step']) == ('unknown', None)
    # No batches given: taken from the hosts, without times.
    assert out['batches'] == [{'number': 1, 'hosts': ['gpu-7', 'gpu-8'], 'started': None, 'finished': None,
                               'duration_seconds': None, 'floor_seconds': 3.1, 'overhead_seconds': None}]
    assert (out['totals']['duration_seconds'], out['totals']['ratio']) == (None, None)
    assert out['mode'] == 'run'


def test_verify_failures_become_message_of_failed_host_without_msg():
    hosts, dummy = fleet()
    del hosts['gpu-3']['msg']
    del hosts['gpu-3']['failed_step']
    hosts['gpu-3']['verify']['ok'] = False
    record = [h for h in rollout_report(hosts)['hosts'] if h['host'] == 'gpu-3'][0]
    assert record['failed_step'] == 'verify'
    assert record['msg'] == 'GPU memory not released; 2 requests started and never completed'


def test_already_down_and_skipped_hosts_and_gpu_not_checked():
    hosts = {
        'gpu-9': {'batch': 1, 'status': 'already_down', 'msg': 'no unit was active',
                  'verify': {'ok': True, 'gpu': {'checked': False, 'released': True, 'killed': [], 'gpus': []},
                             'incomplete_count': 0, 'incomplete': []}},
        'gpu-10': {'batch': 1, 'status': 'skipped', 'msg': 'not in the selected pools'},
    }
    out = rollout_report(hosts, batches=[{'number': 1, 'hosts': ['gpu-9', 'gpu-10'], 'started': ts(0),
                                          'finished': ts(5)}], mode='check')
    assert out['mode'] == 'check'
    assert [h['host'] for h in out['hosts']] == ['gpu-10', 'gpu-9']
    assert out['hosts'][1]['gpu_released'] is None
    assert (out['totals']['already_down'], out['totals']['skipped'], out['totals']['gpu_not_released']) == (1, 1, 0)
    assert out['batches'][0]['floor_seconds'] == 0.0
    assert out['totals']['ratio'] is None   # the floor sum is 0


def test_statuses_the_rollout_role_records():
    """Records as roles/rollout leaves them: check mode, a refused batch, an unreachable host, a failed host that was
    put back in service, a restore that failed too."""
    hosts, dummy = fleet()
    check = copy.deepcopy(hosts['gpu-1'])
    check.update({'status': 'would_shut_down', 'msg': '', 'verify': {'skipped': 'check mode'}})
    hosts = {
        'gpu-1': check,
        'gpu-2': {'batch': 1, 'status': 'refused', 'failed_step': 'budget',
                  'msg': 'pool lb1/models: taking out 2 of 3 available servers (gpu-2, gpu-3) would leave 1 UP, '
                         'below min_available=2 (50% of 4)'},
        'gpu-3': {'batch': 2, 'status': 'unreachable', 'failed_step': 'drain', 'msg': ''},
        'gpu-4': dict(hosts['gpu-4'], status='failed', restored=True),
        'gpu-5': {'batch': 2, 'status': 'failed', 'failed_step': 'drain', 'restored': False,
                  'restore_msg': 'HAProxy runtime API: connection refused', 'msg': 'drain timed out after 600s'},
        'gpu-6': {'batch': 2, 'status': 'running', 'failed_step': None, 'msg': ''},
    }
    out = rollout_report(hosts, mode='check')
    by_host = dict((h['host'], h) for h in out['hosts'])
    assert by_host['gpu-1']['status'] == 'would_shut_down'
    assert by_host['gpu-1']['msg'] is None
    assert (by_host['gpu-1']['incomplete_count'], by_host['gpu-1']['gpu_released']) == (None, None)
    assert by_host['gpu-2']['failed_step'] == 'budget'
    assert by_host['gpu-3']['msg'] is None
    assert by_host['gpu-4']['restored'] is True
    assert by_host['gpu-5']['restored'] is False
    assert by_host['gpu-5']['msg'] == ('drain timed out after 600s; putting it back in service failed: '
                                       'HAProxy runtime API: connection refused')
    assert out['totals']['by_status'] == {'failed': 2, 'refused': 1, 'running': 1, 'unreachable': 1,
                                          'would_shut_down': 1}
    assert (out['totals']['done'], out['totals']['failed'], out['totals']['restored']) == (0, 2, 0)
    lines = render(out).splitlines()
    for expected in ['| Would shut down | 1 |', '| Refused | 1 |', '| Unreachable | 1 |', '| Running | 1 |',
                     '| gpu-4 | 2 | failed (put back in service) | drain | - | - | - | - | - |',
                     '- **gpu-2** (batch 1, refused, step budget): pool lb1/models: taking out 2 of 3 available servers '
                     '(gpu-2, gpu-3) would leave 1 UP, below min_available=2 (50% of 4)',
                     '- **gpu-3** (batch 2, unreachable, step drain): no message',
                     '- **gpu-6** (batch 2, running): no message']:
        assert expected in lines
    assert not any(line.startswith('- **gpu-1**') for line in lines)


def test_host_batch_taken_from_batches_and_results_win():
    hosts = {'gpu-1': {'status': 'done'}, 'gpu-2': {'status': 'done', 'batch': 2}}
    out = rollout_report(hosts, batches=[{'number': 1, 'hosts': ['gpu-1', 'gpu-2'], 'started': ts(0),
                                          'finished': ts(1)}])
    assert [(h['host'], h['batch']) for h in out['hosts']] == [('gpu-1', 1), ('gpu-2', 2)]


def test_timestamps_with_z_naive_and_datetime():
    hosts = {'gpu-1': {'batch': 1, 'status': 'done',
                       'drain': {'started': '2026-11-29T00:40:00Z', 'finished': '2026-11-29T00:40:10.250000',
                                 'waited_seconds': 9}}}
    start = datetime.datetime(2026, 11, 29, 0, 39, 0, tzinfo=datetime.timezone.utc)
    out = rollout_report(hosts, started=start, finished='2026-11-29T01:39:30+01:00')
    assert out['hosts'][0]['drain_seconds'] == 10.25
    assert out['started'] == '2026-11-29T00:39:00+00:00'
    assert out['totals']['duration_seconds'] == 30.0
    assert out['totals']['ratio'] == round(30 / 9, 3)


def test_empty_input():
    out = rollout_report({}, batches=[], started=ts(0), finished=ts(1))
    assert (out['hosts'], out['batches']) == ([], [])
    assert out['totals']['hosts'] == 0
    assert out['totals']['duration_seconds'] == 1.0
    assert out['totals']['ratio'] is None


def test_empty_start_time_as_the_report_role_passes_it():
    # roles/report passes started=hostvars['localhost'].__report_started | default('') and halt_reason="".
    out = rollout_report({'gpu-1': {'batch': 1, 'status': 'done'}}, started='', finished=ts(5), halted=False,
                         halt_reason='')
    assert (out['started'], out['finished'], out['totals']['duration_seconds']) == (None, ts(5), None)
    assert render(out).splitlines()[2] == 'Started at an unknown time, finished %s.' % ts(5)


def test_input_is_not_modified():
    hosts, batches = fleet()
    before = copy.deepcopy((hosts, batches))
    rollout_report(hosts, batches=batches, started=ts(0), finished=ts(140))
    assert (hosts, batches) == before


@pytest.mark.parametrize('call, match', [
    (lambda: rollout_report(['gpu-1']), r'expected a dict \{inventory_hostname: modelops_shutdown_result\}, got'),
    (lambda: rollout_report({}, mode='dry-run'), r"mode must be one of run, check, got 'dry-run'"),
    (lambda: rollout_report({}, halted='yes'), r"halted must be true or false, got 'yes'"),
    (lambda: rollout_report({}, halt_reason=3), r'halt_reason must be a string'),
    (lambda: rollout_report({}, started='yesterday'), r"started must be an ISO 8601 timestamp .* got 'yesterday'"),
    (lambda: rollout_report({}, finished=1764374400), r'finished must be an ISO 8601 timestamp string, got 1764374400'),
    (lambda: rollout_report({}, batches={'number': 1}), r'batches must be a list'),
    (lambda: rollout_report({}, batches=['gpu-1']), r'batches\[0\] must be a dict'),
    (lambda: rollout_report({}, batches=[{'number': 1, 'hosts': 'gpu-1'}]), r'batches\[0\]\.hosts must be a list'),
    (lambda: rollout_report({}, batches=[{'number': 'one', 'hosts': []}]), r"batches\[0\]\.number must be a number, got 'one'"),
    (lambda: rollout_report({}, batches=[{'number': 1, 'hosts': [], 'started': '29/11/2026'}]),
     r"batches\[0\]\.started must be an ISO 8601 timestamp"),
    (lambda: rollout_report({'gpu-1': 'done'}), r"hosts_results\['gpu-1'\] must be the modelops_shutdown_result dict"),
    (lambda: rollout_report({'gpu-1': {'drain': 'ok'}}), r"hosts_results\['gpu-1'\]\.drain must be a dict"),
    (lambda: rollout_report({'gpu-1': {'drain': {'waited_seconds': 'long'}}}),
     r"hosts_results\['gpu-1'\]\.drain\.waited_seconds must be a number, got 'long'"),
    (lambda: rollout_report({'gpu-1': {'drain': {'started': 'now'}}}),
     r"hosts_results\['gpu-1'\]\.drain\.started must be an ISO 8601 timestamp"),
    (lambda: rollout_report({'gpu-1': {'stop': {'units': [{'unit': 'a', 'stop_seconds': True}]}}}),
     r"stop\.units\[0\]\.stop_seconds must be a number, got True"),
    (lambda: rollout_report({'gpu-1': {'stop': {'units': 'model.service'}}}), r'stop\.units must be a list'),
    (lambda: rollout_report({'gpu-1': {'verify': {'incomplete': 'x'}}}), r'verify\.incomplete must be a list'),
])
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(AnsibleFilterError, match=match) as err:
        call()
    assert str(err.value).startswith('modelops.shutdown.rollout_report: ')


# The Markdown report template.

def render(data):
    # trim_blocks as Ansible's template module sets it; StrictUndefined catches a misspelled key.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.dirname(TEMPLATE)), trim_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template('report.md.j2').render(shutdown_report=data)


def test_template_renders_run_report():
    text = render(report())
    lines = text.splitlines()
    assert lines[0] == '# Model-serving shutdown rollout: run'
    assert 'Started %s, finished %s.' % (ts(0), ts(140.0)) in lines
    assert 'HALTED' not in text
    for expected in ['| Hosts | 4 |', '| Done | 2 |', '| Failed | 1 |', '| Restored to service | 1 |',
                     '| Requests in flight when the load balancers stopped sending | 19 |', '| Incomplete tasks | 2 |',
                     '| Hosts with GPU memory not released | 1 |', '| Duration | 140.0 s |',
                     '| Floor (sum over batches) | 109.1 s |', '| Duration / floor | 1.28 |']:
        assert expected in lines
    assert not any(line.startswith('| Not reached') for line in lines)
    assert '| Batch | Hosts | Duration | Floor | Overhead |' in lines
    assert '| 1 | gpu-1, gpu-2 | 20.5 s | 15.0 s | 5.5 s |' in lines
    assert '| 2 | gpu-3, gpu-4 | 102.5 s | 94.1 s | 8.4 s |' in lines
    assert ('| Host | Batch | Status | Failed step | Drained in | In flight at start | Stop classification '
            '| GPU released | Incomplete tasks |') in lines
    assert ('| gpu-2 | 1 | done | - | 7.5 s | 2 | model-server@embed.service: clean, '
            'model-server@llama.service: clean | yes | 0 |') in lines
    assert ('| gpu-3 | 2 | failed | verify | 5.5 s | 10 | model-server@llama.service: timeout_killed '
            '| no (killed 48230) | 2 |') in lines
    assert '| gpu-4 | 2 | restored | drain | - | - | - | - | - |' in lines
    assert '- **gpu-3** (2): 5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21, req-1842' in lines
    assert ('- **gpu-3** (batch 2, failed, step verify): gpu-3 is not clean: GPU memory not released; '
            '2 requests started and never completed') in lines
    assert ('- **gpu-4** (batch 2, restored, step drain): Could not mark gpu-4 maintenance on every load balancer: '
            'HAProxy runtime API refused the command') in lines
    assert not any(line.startswith('- **gpu-1**') or line.startswith('- **gpu-2**') for line in lines)
    # Every table row has the same number of cells as its header.
    assert all(line.count(' | ') == 9 - 1 for line in lines if line.startswith('| gpu-'))


def test_template_renders_halted_check_report():
    hosts, batches = fleet()
    del batches[1]['finished']
    hosts['gpu-3']['msg'] = 'unit | pipe\nand a second line'
    hosts['gpu-3']['verify']['incomplete_count'] = 5
    hosts['gpu-5'] = {}
    data = rollout_report(hosts, batches=batches, mode='check', started=ts(0), halted=True,
                          halt_reason='pool lb1/models: taking out 2 of 3 available servers (gpu-3, gpu-4) would leave 1 UP, '
                                      'below min_available=2 (50% of 4)')
    lines = render(data).splitlines()
    assert lines[0] == '# Model-serving shutdown rollout: check mode (nothing was changed)'
    assert 'Started %s, not finished.' % ts(0) in lines
    assert ('> **HALTED**: pool lb1/models: taking out 2 of 3 available servers (gpu-3, gpu-4) would leave 1 UP, '
            'below min_available=2 (50% of 4)') in lines
    assert '| 2 | gpu-3, gpu-4 | not finished | 94.1 s | - |' in lines
    assert '| Not reached | 1 |' in lines
    assert '| Unknown | 1 |' not in lines
    assert '| gpu-5 | - | not_reached | - | - | - | - | - | - |' in lines
    assert ('- **gpu-3** (5): 5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21, req-1842 and 3 more not listed') in lines
    assert '- **gpu-3** (batch 2, failed, step verify): unit \\| pipe and a second line' in lines


def test_template_renders_clean_report_without_incomplete_or_failures():
    hosts, batches = fleet()
    del hosts['gpu-3'], hosts['gpu-4']
    batches[1]['hosts'] = []
    text = render(rollout_report(hosts, batches=batches[:1], started=ts(0), finished=ts(22)))
    sections = text.split('\n## ')
    assert [s.splitlines()[0] for s in sections[1:]] == ['Totals', 'Batches', 'Hosts', 'Incomplete tasks', 'Failures']
    assert sections[4].strip() == 'Incomplete tasks\n\nNo incomplete task recorded.'
    assert sections[5].strip() == 'Failures\n\nNone.'
    assert '\n\n\n' not in text


def test_template_renders_empty_report():
    text = render(rollout_report({}, started=ts(0), finished=ts(1)))
    assert 'No batch ran.' in text
    assert 'No host.' in text


def test_floor_counts_from_when_the_load_balancers_stopped_sending():
    # Marked at +2 s, drained at +9.5 s, then a 3.2 s stop: the floor is 7.5 + 3.2, whatever the
    # in-flight wait itself measured (it starts later, after the propagation delay).
    host = done_host(1, 0, 1.0, 0, [unit('model-server@llama.service', stop_seconds=3.2)])
    host['drain'].update({'marked': ts(2), 'finished': ts(9.5), 'in_flight_at_mark': 4, 'waited': True})
    record = rollout_report({'gpu-1': host})['hosts'][0]
    assert record['floor_seconds'] == pytest.approx(10.7)
    assert record['in_flight_at_drain_start'] == 4


def test_floor_of_a_host_that_was_not_waited_for_is_its_stop_alone():
    host = done_host(1, 0, 0, 0, [unit('model-server@llama.service', stop_seconds=0.2)])
    host['drain'].update({'marked': ts(2), 'finished': ts(4), 'waited': False})
    assert rollout_report({'gpu-1': host})['hosts'][0]['floor_seconds'] == pytest.approx(0.2)
