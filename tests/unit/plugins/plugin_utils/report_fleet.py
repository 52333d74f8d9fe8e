# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A realistic run for the HTML report's tests, built with rollout_report from module results shaped as the
modules return them: two batches over two load balancers, a host failed in its drain, a host put back after its
call failed to connect, and a loadgen's per-request records with errors while the failed host was cut."""

from __future__ import annotations

from ansible_collections.modelops.shutdown.plugins.filter.rollout_report import rollout_report
from ansible_collections.modelops.shutdown.tests.unit.plugins.filter.test_rollout_report import at, done, mark, server

DRAIN_FAILURE = ('3 request(s) still in flight (metrics=3) after 6.0 s (counted from since=1764614420.2). Raise '
                 'drain.timeout, or set on_timeout: proceed; re-run to retry <gpu-3> & co.')
UNREACHABLE = 'Failed to connect to the host via ssh: Connection timed out'


def phases(drain=None, stop=None, policy=None, verify=None):
    def interval(pair):
        return None if pair is None else {'start': at(pair[0]), 'end': at(pair[1])}
    return {'drain': interval(drain), 'stop': interval(stop), 'policy': interval(policy), 'verify': interval(verify)}


def hosts():
    batch1 = [mark('lb1', 0.0, 0.2, [server('gpu-1', 3), server('gpu-2', 1)]),
              mark('lb2', 0.3, 0.5, [server('gpu-1', 1), server('gpu-2', 0)])]
    batch2 = [mark('lb1', 20.0, 20.2, [server('gpu-3', 3), server('gpu-4', 2)]),
              mark('lb2', 20.3, 20.4, [server('gpu-3', 0), server('gpu-4', 1)])]
    gpu3 = done('gpu-3', 20.6, 6.0, None, status='failed', ok=False, failed_step='drain', msg=DRAIN_FAILURE,
                stop=None, policy=None, verify=None, phases=phases(drain=(20.4, 26.6)))
    gpu3['drain'] = {'drained': False, 'in_flight_initial': 3, 'in_flight_final': 3, 'waited_seconds': 6.0,
                     'drained_at': None}
    restored = [server('gpu-3', previous='draining', state='ready'), server('gpu-4', previous='draining', state='ready')]
    put_back = [mark('lb1', 27.0, 27.1, restored), mark('lb2', 27.1, 27.2, restored)]
    for result in put_back:
        result['state'] = 'restore'
    return {
        'gpu-1': {'marks': batch1, 'record': done('gpu-1', 0.8, 4.5, 2.0, phases=phases(
            drain=(0.5, 5.3), stop=(5.4, 7.4), policy=(7.4, 7.6), verify=(7.6, 8.3)))},
        'gpu-2': {'marks': batch1, 'record': done('gpu-2', 0.8, 2.5, 1.5, phases=phases(
            drain=(0.5, 3.3), stop=(3.4, 4.9), policy=(4.9, 5.0), verify=(5.0, 5.3)))},
        'gpu-3': {'marks': batch2, 'record': gpu3, 'put_back': put_back},
        'gpu-4': {'marks': batch2, 'put_back': put_back,
                  'record': {'unreachable': True, 'changed': False, 'msg': UNREACHABLE}},
    }


def report():
    return rollout_report(hosts(), halted=True, halt_reason='batch 2 failed: gpu-3 did not drain; gpu-4 unreachable',
                          finished_at=at(30.0))


def load_records():
    """4 requests a second from 5 s before the run to its end; those to gpu-3 after it was put back fail."""
    records = []
    for index in range(4 * 40):
        start = at(-5.0 + index * 0.25)
        outcome = 'ok'
        if 26.0 <= start - at(0) < 28.0 and index % 2:
            outcome = 'cut' if index % 4 == 1 else 'http_error'
        records.append({'id': 'r%04d' % index, 'start': start, 'latency': 3.0, 'outcome': outcome,
                        'status': 502 if outcome == 'http_error' else (200 if outcome == 'ok' else None),
                        'error': None if outcome == 'ok' else outcome})
    return records
