"""HAProxy reloaded mid-drain and cookie-persistent clients: drained again, escalated, nothing lost."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import faultcheck  # noqa: E402  pylint: disable=wrong-import-position
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://fl-lb']


def test_the_rollout_finished():
    assert faultcheck.run_rc() == 0, faultcheck.run_log()[-3000:]
    records = faultcheck.host_records('shutdown')
    assert [records[name]['status'] for name in ('fl-m1', 'fl-m2')] == ['done', 'done'], records


def test_preflight_warned_that_haproxy_forgets_drains_on_reload():
    log = ' '.join(faultcheck.run_log().split())  # the warning is wrapped on the console
    assert 'has no server-state-file in its global section and no load-server-state-from-file' in log, log[-3000:]


def test_the_reloaded_lb_put_fl_m1_back_and_it_was_drained_again_before_its_stop():
    fault = (faultcheck.RESULTS / 'fault.log').read_text()
    assert 'reloaded' in fault and 'DRAIN' in fault, fault
    record = faultcheck.host_records('shutdown')['fl-m1']
    came_back = [e for e in record['lb_events'] if e['event'] == 'came_back']
    assert record['lb_came_back'] >= 1 and came_back, record
    assert (came_back[0]['lb'], came_back[0]['seen'], came_back[0]['set']) == ('fl-lb', 'ready', 'draining')
    assert not record['lb_escalated']
    # The drain after the re-mark: the host's record ends drained, and its stop came after the last re-mark.
    assert record['drained'] is True and record['finished'] > came_back[-1]['at']


def test_sticky_clients_kept_fl_m2_busy_until_it_was_escalated_to_maintenance():
    record = faultcheck.host_records('shutdown')['fl-m2']
    escalated = [e for e in record['lb_events'] if e['event'] == 'escalated']
    assert record['lb_escalated'] is True and len(escalated) == 1, record
    assert (escalated[0]['lb'], escalated[0]['seen'], escalated[0]['set']) == ('fl-lb', 'draining', 'maintenance')
    assert record['drained'] is True
    sticky = json.loads((faultcheck.RESULTS / 'sticky' / 'summary.json').read_text())
    assert sticky['sent'] > 0 and sticky['failed'] == 0, sticky


def test_no_host_left_drained_while_its_unit_runs(host):
    faultcheck.assert_no_host_drained_while_running(host, ['fl-m1', 'fl-m2', 'fl-m3'])
    assert fleetcheck.haproxy_servers(host)['fl-m3'] == 'UP'


def test_no_request_lost_under_constant_load():
    summary = faultcheck.load_summary()
    assert summary['sent'] > 0 and summary['failed'] == 0, summary
