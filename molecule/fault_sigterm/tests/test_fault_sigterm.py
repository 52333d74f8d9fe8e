"""A unit that ignores SIGTERM fails its host and halts the rollout; the rest of the batch is restored."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import faultcheck  # noqa: E402  pylint: disable=wrong-import-position
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://fs-lb']


def test_rollout_failed_and_halted():
    assert faultcheck.run_rc() != 0
    report = faultcheck.report()
    assert report['halted'] is True
    assert [batch['hosts'] for batch in report['batches']] == [['fs-m1', 'fs-m2']], 'the second batch must never start'


def test_stubborn_host_failed_as_timeout_killed(host):
    record = faultcheck.host_records()['fs-m1']
    assert record['status'] == 'failed'
    assert record['failed_step'] == 'stop'
    assert [(u['unit'], u['classification']) for u in record['units']] == [('model-server@llama.service', 'timeout_killed')]
    stubborn = fleetcheck.other_host(host, 'fs-m1')
    assert stubborn.check_output('systemctl show -p Result --value model-server@llama.service') == 'timeout'
    assert not stubborn.service('model-server@llama.service').is_running


def test_rest_of_the_batch_was_restored_and_serves(host):
    record = faultcheck.host_records()['fs-m2']
    # Sequential stop order: fs-m1 failed first, so fs-m2 was never stopped and went back into service.
    assert record['status'] == 'put_back', record
    assert record['put_back'] is True
    assert not record['units']
    assert fleetcheck.other_host(host, 'fs-m2').service('model-server@llama.service').is_running
    assert fleetcheck.haproxy_servers(host)['fs-m2'] == 'UP'


def test_next_batch_never_touched(host):
    record = faultcheck.host_records().get('fs-m3', {'status': 'not_reached'})
    assert record['status'] == 'not_reached'
    assert fleetcheck.haproxy_servers(host)['fs-m3'] == 'UP'
    assert fleetcheck.other_host(host, 'fs-m3').service('model-server@llama.service').is_running


def test_no_host_left_drained_while_its_unit_runs(host):
    faultcheck.assert_no_host_drained_while_running(host, ['fs-m1', 'fs-m2', 'fs-m3'])


def test_fleet_serves_after_the_halt():
    summary = fleetcheck.run_load(seconds=4, rate=5)
    assert summary['failed'] == 0
