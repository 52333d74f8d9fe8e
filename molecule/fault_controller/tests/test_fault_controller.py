"""The controller killed mid-drain, twice: re-runs find the stranded hosts in the journal and carry on or put back."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import faultcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://fc-lb']

BATCH = ['fc-m1', 'fc-m2', 'fc-m3']


def snapshot(name):
    data = json.loads((faultcheck.RESULTS / (name + '.json')).read_text())
    header = data['stat'].splitlines()[0].lstrip('# ').split(',')
    rows = [dict(zip(header, line.split(','))) for line in data['stat'].splitlines()[1:] if line]
    servers = dict((row['svname'], row['status']) for row in rows if row.get('pxname') == 'models'
                   and row.get('svname') not in ('FRONTEND', 'BACKEND'))
    return servers, data['units']


def interrupted_run_of(report_name):
    """The killed run a re-run found: its run_started names it."""
    started = faultcheck.events(faultcheck.journal_of(report_name), 'run_started')[0]
    assert len(started['interrupted']) == 1, started
    return started['interrupted'][0]


def test_each_kill_left_the_batch_drained_but_running():
    for killed, snap in (('killed-1', 'after-killed-1'), ('killed-2', 'after-killed-2')):
        assert faultcheck.run_rc(killed) == -9, faultcheck.run_log(killed)[-2000:]
        assert (faultcheck.RESULTS / (killed + '.fault.log')).read_text().startswith('killed'), killed
        servers, units = snapshot(snap)
        # The fault the journal is for: every host of the batch drained, every unit still serving.
        assert [servers[name] for name in BATCH] == ['DRAIN'] * 3, servers
        assert [units[name] for name in BATCH] == ['active'] * 3, units
        assert servers['fc-m4'] == 'UP'


def test_the_killed_runs_journal_recorded_each_mark_before_it_was_made():
    for report_name in ('rerun-carry-on', 'rerun-put-back'):
        events = faultcheck.journal(interrupted_run_of(report_name))
        kinds = [e['event'] for e in events]
        intent = kinds.index('lb_intent')
        assert kinds[0] == 'run_started' and 'lb_read' in kinds[:intent]
        assert events[intent]['hosts'] == dict((name, {'previous_state': 'ready', 'new_state': 'draining'}) for name in BATCH)
        assert kinds.index('lb_result') > intent
        assert sorted(e['host'] for e in faultcheck.events(events, 'host_intent')) == BATCH
        # Killed mid-drain: no end of run. Ansible's worker processes run in their own sessions and outlive the
        # controller's process group; each may still journal its module's end (killed with it), never a stop.
        assert not faultcheck.events(events, 'run_finished')
        assert all(not e['ok'] and not e['stopped'] for e in faultcheck.events(events, 'host_result')), events
        closed = faultcheck.events(events, 'closed')
        assert len(closed) == 1 and closed[0]['by'] == faultcheck.report(report_name)['journal']['run']


def test_carry_on_finished_the_stranded_hosts_first():
    assert faultcheck.run_rc('rerun-carry-on') == 0, faultcheck.run_log('rerun-carry-on')[-3000:]
    events = faultcheck.journal_of('rerun-carry-on')
    recovered = faultcheck.events(events, 'recovered')
    assert len(recovered) == 1 and sorted(recovered[0]['carried_on']) == BATCH and recovered[0]['put_back'] == []
    # Each stranded host was stopped by the recovery, before the rollout's own mark.
    kinds = [(e['event'], e.get('state')) for e in events]
    first_mark = kinds.index(('lb_intent', 'draining'))
    carried = [e for e in events[:first_mark] if e['event'] == 'host_result']
    assert sorted(e['host'] for e in carried) == BATCH and all(e['ok'] and e['stopped'] for e in carried), carried
    assert not faultcheck.events(events, 'lb_intent', state='restore'), 'carry_on must put nothing back'
    records = faultcheck.host_records('rerun-carry-on')
    assert sorted(records) == BATCH and all(r['status'] == 'already_down' for r in records.values()), records


def test_put_back_returned_the_stranded_hosts_to_service_before_draining_them_again():
    assert faultcheck.run_rc('rerun-put-back') == 0, faultcheck.run_log('rerun-put-back')[-3000:]
    events = faultcheck.journal_of('rerun-put-back')
    recovered = faultcheck.events(events, 'recovered')
    assert len(recovered) == 1 and sorted(recovered[0]['put_back']) == BATCH and recovered[0]['carried_on'] == []
    restored = faultcheck.events(events, 'lb_result', state='restore')
    assert len(restored) == 1 and restored[0]['ok'], restored
    assert restored[0]['servers'] == dict((name, {'previous_state': 'draining', 'state': 'ready', 'changed': True})
                                          for name in BATCH)
    marks = faultcheck.events(events, 'lb_intent', state='draining')
    assert marks and events.index(marks[0]) > events.index(restored[0])
    # Put back to ready, so the rollout drained them again from ready.
    assert marks[0]['hosts'] == dict((name, {'previous_state': 'ready', 'new_state': 'draining'}) for name in BATCH)
    records = faultcheck.host_records('rerun-put-back')
    assert sorted(records) == BATCH and all(r['status'] == 'done' for r in records.values()), records


def test_no_host_left_drained_while_its_unit_runs(host):
    faultcheck.assert_no_host_drained_while_running(host, BATCH + ['fc-m4'])


def test_no_request_lost_under_constant_load():
    summary = faultcheck.load_summary()
    assert summary['sent'] > 0 and summary['failed'] == 0, summary
