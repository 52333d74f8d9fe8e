"""Drain deadlines (fail, proceed) and a load balancer whose admin API goes away mid-batch."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import faultcheck  # noqa: E402  pylint: disable=wrong-import-position
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://fd-lb']


def long_requests(name):
    return json.loads((faultcheck.RESULTS / 'long' / (name + '.json')).read_text())


def one_line(name):
    return ' '.join(faultcheck.run_log(name).split())


def test_fail_put_fd_m1_back_and_left_fd_m3_in_maintenance():
    assert faultcheck.run_rc('fail') != 0
    report = faultcheck.report('fail')
    assert report['halted'] is True
    records = faultcheck.host_records('fail')
    m1, m3 = records['fd-m1'], records['fd-m3']
    assert (m1['status'], m1['failed_step'], m1['put_back'], m1['drained']) == ('failed', 'drain', True, False), m1
    assert m1['in_flight_final'] == 3 and m1['units'] == [], m1
    # In MAINT by hand before the run: the mark left it there, and nothing put it anywhere else.
    assert [dict((key, lb[key]) for key in ('lb', 'previous_state', 'state', 'changed', 'weight_ramp'))
            for lb in m3['load_balancers']] == [{'lb': 'fd-lb', 'previous_state': 'maintenance', 'state': 'maintenance',
                                                 'changed': False, 'weight_ramp': None}], m3
    assert m3['status'] == 'done'
    # fd-m1 was not stopped: its long requests all finished.
    long = long_requests('fail')
    assert (long['sent'], long['ok'], long['failed']) == (3, 3, 0), long


def test_proceed_stopped_fd_m1_and_named_exactly_the_requests_it_cut():
    assert faultcheck.run_rc('proceed') == 0, faultcheck.run_log('proceed')[-3000:]
    m1 = faultcheck.host_records('proceed')['fd-m1']
    assert (m1['status'], m1['drained']) == ('done', False), m1
    assert m1['in_flight_at_stop'] == 3
    assert faultcheck.report('proceed')['totals']['in_flight_at_stop_total'] == 3
    long = long_requests('proceed')
    assert (long['sent'], long['failed']) == (3, m1['in_flight_at_stop']), long
    assert 'Proceeding because on_timeout=proceed' in one_line('proceed')


def test_restore_from_the_proceed_runs_journal_brought_fd_m1_back():
    assert faultcheck.run_rc('restore-proceed') == 0, faultcheck.run_log('restore-proceed')[-3000:]
    events = faultcheck.journal_of('proceed')
    restored = faultcheck.events(events, 'lb_result', state='restore')
    assert restored and restored[-1]['servers']['fd-m1']['state'] == 'ready', restored


def test_lb_away_mid_batch_halted_and_fd_m2_was_put_back_when_it_answered():
    assert faultcheck.run_rc('lb-back') != 0
    m2 = faultcheck.host_records('lb-back')['fd-m2']
    assert (m2['status'], m2['failed_step'], m2['put_back'], m2['units']) == ('failed', 'recheck', True, []), m2
    assert 'could not read fd-lb within 2.0 s' in m2['msg'], m2['msg']
    fault = (faultcheck.RESULTS / 'lb-back.fault.log').read_text()
    assert 'admin API on fd-lb' in fault, fault
    events = faultcheck.journal_of('lb-back')
    put_back = faultcheck.events(events, 'lb_result', state='restore')
    assert len(put_back) == 1 and put_back[0]['ok'] and put_back[0]['servers']['fd-m2']['state'] == 'ready', put_back
    # The put-back came after the host gave up, while the admin API was still away: it waited for it.
    failed = faultcheck.events(events, 'host_result', host='fd-m2')[0]
    assert failed['failed_step'] == 'recheck' and put_back[0]['t'] > failed['t']
    finished = faultcheck.events(events, 'run_finished')[0]
    assert (finished['status'], finished['stranded']) == ('halted', {}), finished


def test_lb_gone_past_the_deadline_listed_fd_m2_with_the_command_and_restore_put_it_back():
    assert faultcheck.run_rc('lb-gone') != 0
    log = one_line('lb-gone')
    journal = faultcheck.report('lb-gone')['journal']
    assert 'Left drained but still running: fd-m2' in log, log[-3000:]
    assert 'ansible-playbook playbooks/restore.yml -i <inventory> -e restore_journal=%s' % journal['path'] in log
    events = faultcheck.journal_of('lb-gone')
    assert faultcheck.events(events, 'run_finished')[0]['stranded'] == {'fd-m2': ['fd-lb']}
    assert faultcheck.run_rc('restore-lb-gone') == 0, faultcheck.run_log('restore-lb-gone')[-3000:]
    restored = faultcheck.events(faultcheck.journal_of('lb-gone'), 'lb_result', state='restore')
    assert restored[-1]['ok'] and restored[-1]['servers']['fd-m2']['state'] == 'ready', restored


def test_end_state(host):
    servers = fleetcheck.haproxy_servers(host)
    assert servers['fd-m3'] == 'MAINT', servers
    assert (servers['fd-m1'], servers['fd-m2']) == ('UP', 'UP'), servers
    for name in ('fd-m1', 'fd-m2'):
        assert fleetcheck.other_host(host, name).service('model-server@llama.service').is_running
    faultcheck.assert_no_host_drained_while_running(host, ['fd-m1', 'fd-m2', 'fd-m3'])


def test_no_request_lost_through_the_lb_under_constant_load():
    summary = faultcheck.load_summary()
    assert summary['sent'] > 0 and summary['failed'] == 0, summary
