"""A host that becomes unreachable mid-batch halts the rollout; nothing is left draining while it runs."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import faultcheck  # noqa: E402  pylint: disable=wrong-import-position
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://fu-lb']


def test_fault_struck_while_draining():
    assert 'killed fu-m2 while it was draining' in (faultcheck.RESULTS / 'fault.log').read_text()


def test_rollout_halted():
    assert faultcheck.run_rc() != 0
    report = faultcheck.report()
    assert report['halted'] is True
    records = faultcheck.host_records()
    assert records['fu-m2']['status'] == 'failed', records['fu-m2']
    # The docker connection reports a dead container as a failed exec, other connections as unreachable.
    assert records['fu-m2']['failed_step'] in ('unreachable', 'connection'), records['fu-m2']
    assert records['fu-m2']['put_back'] is True, records['fu-m2']


def test_lost_host_is_not_left_draining(host):
    # Its container is dead: HAProxy must see it DOWN by health check, not held in DRAIN or MAINT.
    assert fleetcheck.haproxy_servers(host)['fu-m2'] == 'DOWN'


def test_other_host_of_the_batch_finished_in_parallel(host):
    # A batch is stopped in parallel: losing fu-m2 does not undo fu-m1, which the budget had already allowed.
    record = faultcheck.host_records()['fu-m1']
    assert record['status'] == 'done', record
    assert fleetcheck.haproxy_servers(host)['fu-m1'] in ('DOWN', 'DRAIN')
    assert not fleetcheck.other_host(host, 'fu-m1').service('model-server@llama.service').is_running


def test_spare_untouched(host):
    assert fleetcheck.haproxy_servers(host)['fu-m3'] == 'UP'


def test_no_host_left_drained_while_its_unit_runs(host):
    faultcheck.assert_no_host_drained_while_running(host, ['fu-m1', 'fu-m3'])
