# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/_journal.py: append (whole lines, 0600, several processes at once), read (torn last line, corrupt
middle line), summarize/outstanding over the sequences of events the rollout writes, open_runs, check_option.

The events are written with C(_journal.append) in the shapes the action plugins write them (plugins/action/
lb_batch_state.py: lb_read in check mode, else lb_intent then lb_result; plugins/action/host_shutdown.py:
host_intent then host_result; plugins/action/shutdown_journal.py: run_started, recovered, closed, run_finished).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import stat
import subprocess

import pytest

from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal
from ansible_collections.modelops.shutdown.plugins.plugin_utils._journal import JournalError

RUN = '20261202T020304Z-1a2b3c'
LB = 'lb1'


@pytest.fixture
def journal(tmp_path):
    return str(tmp_path / ('%s.jsonl' % RUN))


@pytest.fixture(scope='module')
def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(['true'])
    child.wait()
    return child.pid


# --- the events, as the action plugins write them ---------------------------------------------------------

def run_started(path, run=RUN, pid=None, pid_start=None, controller=None, targets=('m1', 'm2')):
    _journal.append(path, run, 'run_started', playbook='shutdown', targets=list(targets),
                    controller=socket.gethostname() if controller is None else controller, pid=pid, pid_start=pid_start,
                    user='ops', interrupted=[])


def lb_read(path, servers, lb=LB, run=RUN):
    """Pre-flight (check mode): lb_read with {host: previous_state}."""
    _journal.append(path, run, 'lb_read', lb=lb, state='ready', ok=True, msg='', servers=servers)


def lb_intent(path, state, hosts, lb=LB, run=RUN):
    """Before a mark or a put-back: {host: (previous_state, new_state)}."""
    _journal.append(path, run, 'lb_intent', lb=lb, state=state,
                    hosts=dict((host, {'previous_state': prev, 'new_state': new}) for host, (prev, new) in hosts.items()))


def lb_result(path, state, servers, ok=True, lb=LB, run=RUN, msg=''):
    """After it: {host: (previous_state, state, changed)}."""
    _journal.append(path, run, 'lb_result', lb=lb, state=state, ok=ok, msg=msg,
                    servers=dict((host, {'previous_state': prev, 'state': now, 'changed': changed})
                                 for host, (prev, now, changed) in servers.items()))


def host_intent(path, host, run=RUN):
    _journal.append(path, run, 'host_intent', host=host, units=['model-server@llama.service'], since=1764614400.0)


def host_result(path, host, stopped, status='done', failed_step=None, run=RUN):
    _journal.append(path, run, 'host_result', host=host, ok=failed_step is None, status=status, failed_step=failed_step,
                    msg='', stopped=stopped, units_stopped=['model-server@llama.service'] if stopped else [],
                    in_flight_at_stop=None, lb_events=[])


def mark(path, host='m1', before='ready', state='draining', lb=LB):
    """A mark that changed the server."""
    lb_intent(path, state, {host: (before, state)}, lb=lb)
    lb_result(path, state, {host: (before, state, True)}, lb=lb)


def summary_of(path):
    return _journal.summarize(_journal.read(path), path)


def entry(summary, host='m1', lb=LB):
    return summary['hosts'][host]['lbs'][lb]


# --- new_run_id, iso --------------------------------------------------------------------------------------

def test_new_run_id_is_the_utc_time_and_six_hex_digits():
    run_id = _journal.new_run_id(1796177584.9)  # 2026-12-02T02:13:04.9Z
    assert re.match(r'^20261202T021304Z-[0-9a-f]{6}$', run_id), run_id
    # Runs started in the same second still get their own ids (and journal files).
    assert len(set(_journal.new_run_id(1796177584.9) for dummy in range(8))) > 1
    assert re.match(r'^\d{8}T\d{6}Z-[0-9a-f]{6}$', _journal.new_run_id())


def test_iso_is_utc_to_the_millisecond():
    assert _journal.iso(1796177584.25) == '2026-12-02T02:13:04.250+00:00'


# --- append -------------------------------------------------------------------------------------------------

def test_append_writes_one_whole_line_mode_0600(journal, monkeypatch):
    monkeypatch.setattr(_journal.time, 'time', lambda: 1796177584.25)
    record = _journal.append(journal, RUN, 'lb_read', lb=LB, servers={'m1': 'ready'})
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
    with open(journal, 'rb') as handle:
        data = handle.read()
    assert data.endswith(b'\n') and data.count(b'\n') == 1
    line = json.loads(data)
    assert line == record
    assert list(line)[:4] == ['ts', 't', 'run', 'event']
    assert (line['run'], line['event'], line['lb'], line['servers']) == (RUN, 'lb_read', LB, {'m1': 'ready'})
    assert (line['ts'], line['t']) == ('2026-12-02T02:13:04.250+00:00', 1796177584.25)
    _journal.append(journal, RUN, 'closed', by='x', reason='y')
    assert [e['event'] for e in _journal.read(journal)] == ['lb_read', 'closed']
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600


def test_append_mode_is_0600_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        _journal.append(str(tmp_path / 'j.jsonl'), RUN, 'run_started')
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(tmp_path / 'j.jsonl')).st_mode) == 0o600


def test_append_that_cannot_write_names_the_file_the_event_and_the_target(tmp_path):
    path = str(tmp_path / 'gone' / 'j.jsonl')
    with pytest.raises(JournalError) as caught:
        _journal.append(path, RUN, 'lb_intent', lb='lb-west', hosts={})
    message = str(caught.value)
    assert path in message and '(lb_intent, before: lb-west)' in message and 'Nothing was changed by this step' in message
    assert 'No such file or directory' in message
    with pytest.raises(JournalError, match=r'\(host_intent, before: m7\)'):
        _journal.append(path, RUN, 'host_intent', host='m7')


def _append_lines(path, worker, count, payload):
    for index in range(count):
        _journal.append(path, 'run-%d' % worker, 'lb_read', lb=LB, worker=worker, index=index, payload=payload)


def test_concurrent_appends_from_several_processes_give_intact_lines(journal):
    # Lines of 64 KiB: far more than one pipe buffer or page, so unlocked writes would be likely to interleave.
    payload = 'x' * 65536
    context = multiprocessing.get_context('fork')
    workers = [context.Process(target=_append_lines, args=(journal, worker, 50, payload)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [process.exitcode for process in workers] == [0, 0, 0, 0]
    with open(journal, 'rb') as handle:
        lines = handle.read().split(b'\n')
    assert lines[-1] == b'' and len(lines) == 201
    records = [json.loads(line) for line in lines[:-1]]  # every line is one whole JSON object
    assert all(r['payload'] == payload for r in records)
    assert sorted((r['worker'], r['index']) for r in records) == [(w, i) for w in range(4) for i in range(50)]
    # Each process's lines are in its own order.
    for worker in range(4):
        assert [r['index'] for r in records if r['worker'] == worker] == list(range(50))
    assert len(_journal.read(journal)) == 200


# --- read ---------------------------------------------------------------------------------------------------

def test_read_leaves_out_a_torn_last_line(journal):
    run_started(journal)
    mark(journal)
    with open(journal, 'ab') as handle:
        handle.write(b'{"ts": "2026-12-02T02:13:04.250+00:00", "t": 1796177584.25, "run": "%s", "event": "host_in'
                     % RUN.encode())
    events = _journal.read(journal)
    assert [e['event'] for e in events] == ['run_started', 'lb_intent', 'lb_result']
    # Cut short but ending in a newline, it is still the last line.
    with open(journal, 'ab') as handle:
        handle.write(b'\n')
    assert [e['event'] for e in _journal.read(journal)] == ['run_started', 'lb_intent', 'lb_result']


def test_read_refuses_a_corrupt_line_in_the_middle_naming_it(journal):
    run_started(journal)
    with open(journal, 'ab') as handle:
        handle.write(b'{"run": "x", "event": \n')
    mark(journal)
    with pytest.raises(JournalError) as caught:
        _journal.read(journal)
    assert str(caught.value).startswith('%s line 2 is not a journal event (' % journal)


@pytest.mark.parametrize('line', [b'[1, 2]', b'{"run": "r"}', b'{"event": "lb_read"}', b'{"event": 3, "run": "r"}'])
def test_read_refuses_json_that_is_no_event(journal, line):
    run_started(journal)
    with open(journal, 'ab') as handle:
        handle.write(line + b'\n')
    with pytest.raises(JournalError, match=r'line 2 is not a journal event \(no event or run\)'):
        _journal.read(journal)


def test_read_skips_blank_lines(journal):
    with open(journal, 'wb') as handle:
        handle.write(b'\n  \n{"run": "r", "event": "run_started"}\n\n')
    assert _journal.read(journal) == [{'run': 'r', 'event': 'run_started'}]


def test_read_missing_or_oversized_journal(tmp_path, journal, monkeypatch):
    with pytest.raises(JournalError, match='cannot read the journal %s' % re.escape(journal)):
        _journal.read(journal)
    run_started(journal)
    monkeypatch.setattr(_journal, 'MAX_JOURNAL_BYTES', 10)
    with pytest.raises(JournalError, match='larger than 10 bytes'):
        _journal.read(journal)


def test_an_event_appended_after_a_torn_line_is_read(journal):
    run_started(journal)
    mark(journal)
    with open(journal, 'ab') as handle:
        handle.write(b'{"ts": "2026-12-02T02:13:04.250+00:00", "run": "%s", "event": "host_in' % RUN.encode())
    _journal.append(journal, RUN, 'closed', by='20261203T000000Z-abcdef', reason='put back: m1; carried on: none')
    assert summary_of(journal)['closed'] is not None
    _journal.append(journal, RUN, 'closed', by='20261204T000000Z-abcdef', reason='again')
    assert [e['event'] for e in _journal.read(journal)][-2:] == ['closed', 'closed']


# --- summarize and outstanding: the sequences the rollout writes ----------------------------------------------

def test_preflight_read_changes_nothing_and_is_the_known_state(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'ready', 'm2': 'maintenance'})
    summary = summary_of(journal)
    assert summary['run'] == RUN and summary['targets'] == ['m1', 'm2'] and summary['path'] == journal
    assert summary['hosts'] == {} and _journal.outstanding(summary) == {}
    assert summary['last_read'] == {LB: {'m1': 'ready', 'm2': 'maintenance'}}
    assert _journal.known_state(summary, LB, 'm2') == 'maintenance'
    assert _journal.known_state(summary, LB, 'm9') is None and _journal.known_state(summary, 'lb9', 'm1') is None


def test_a_mark_that_changed_the_server_is_outstanding(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'ready'})
    mark(journal)
    summary = summary_of(journal)
    assert entry(summary) == {'previous_state': 'ready', 'state': 'draining', 'outstanding': True}
    assert _journal.outstanding(summary) == {'m1': {LB: {'previous_state': 'ready', 'state': 'draining'}}}
    # What the run set now wins over what the pre-flight read.
    assert _journal.known_state(summary, LB, 'm1') == 'draining'
    assert summary['finished'] is False and summary['closed'] is None


def test_a_server_already_in_maintenance_is_left_and_not_outstanding(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'maintenance', 'm2': 'ready'})
    # The action plugin's intent never weakens a mark: maintenance stays maintenance.
    lb_intent(journal, 'draining', {'m1': ('maintenance', 'maintenance'), 'm2': ('ready', 'draining')})
    lb_result(journal, 'draining', {'m1': ('maintenance', 'maintenance', False), 'm2': ('ready', 'draining', True)})
    summary = summary_of(journal)
    assert entry(summary, 'm1') == {'previous_state': 'maintenance', 'state': 'maintenance', 'outstanding': False}
    assert _journal.outstanding(summary) == {'m2': {LB: {'previous_state': 'ready', 'state': 'draining'}}}


def test_a_mark_put_back_after_failing_verify_is_not_outstanding(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'ready'})
    lb_intent(journal, 'draining', {'m1': ('ready', 'draining')})
    lb_result(journal, 'draining', {'m1': ('ready', 'ready', False)}, ok=False,
              msg='lb1: draining did not take effect within 10.0 s: m1: ... Put back: m1 to ready.')
    summary = summary_of(journal)
    assert entry(summary) == {'previous_state': 'ready', 'state': 'ready', 'outstanding': False}
    assert _journal.outstanding(summary) == {}


def test_a_mark_whose_put_back_failed_in_the_same_call_is_outstanding(journal):
    run_started(journal)
    lb_intent(journal, 'draining', {'m1': ('ready', 'draining')})
    lb_result(journal, 'draining', {'m1': ('ready', 'draining', True)}, ok=False, msg='... Put back: m1 to ready FAILED: x')
    assert _journal.outstanding(summary_of(journal)) == {'m1': {LB: {'previous_state': 'ready', 'state': 'draining'}}}


def test_an_unread_lb_where_nothing_was_sent_is_not_outstanding(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'ready'})
    lb_intent(journal, 'draining', {'m1': ('ready', 'draining')})
    # The module could not read m1, so it sent nothing: previous_state and state null.
    lb_result(journal, 'draining', {'m1': (None, None, False)}, ok=False, msg='lb1: could not read the state of m1')
    summary = summary_of(journal)
    assert entry(summary) == {'previous_state': 'ready', 'state': 'ready', 'outstanding': False}
    assert _journal.outstanding(summary) == {}


def test_an_unread_lb_never_read_before_is_not_outstanding(journal):
    run_started(journal)
    lb_intent(journal, 'draining', {'m1': (None, 'draining')})
    assert _journal.outstanding(summary_of(journal)) == {'m1': {LB: {'previous_state': None, 'state': 'draining'}}}
    lb_result(journal, 'draining', {'m1': (None, None, False)}, ok=False)
    assert _journal.outstanding(summary_of(journal)) == {}


def test_a_stopped_host_is_not_outstanding(journal):
    run_started(journal)
    mark(journal)
    host_intent(journal, 'm1')
    summary = summary_of(journal)
    assert summary['hosts']['m1']['in_progress'] is True
    host_result(journal, 'm1', stopped=True)
    summary = summary_of(journal)
    host = summary['hosts']['m1']
    assert host['in_progress'] is False and host['stopped'] is True and host['status'] == 'done'
    assert host['units_stopped'] == ['model-server@llama.service']
    # It stays out of service (that is what the run was for), and the journal still says what it was before.
    assert entry(summary)['state'] == 'draining' and entry(summary)['previous_state'] == 'ready'
    assert _journal.outstanding(summary) == {}


def test_a_put_back_to_ready_is_not_outstanding(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'ready'})
    mark(journal)
    host_intent(journal, 'm1')
    host_result(journal, 'm1', stopped=False, status='failed', failed_step='drain')
    assert _journal.outstanding(summary_of(journal)) != {}
    lb_intent(journal, 'restore', {'m1': ('draining', 'ready')})
    # Until the put-back's result is read it still counts as out of service.
    assert _journal.outstanding(summary_of(journal)) == {'m1': {LB: {'previous_state': 'ready', 'state': 'draining'}}}
    lb_result(journal, 'restore', {'m1': ('draining', 'ready', True)})
    summary = summary_of(journal)
    # The state before the run is kept, not the one the put-back found.
    assert entry(summary) == {'previous_state': 'ready', 'state': 'ready', 'outstanding': False}
    assert _journal.outstanding(summary) == {}
    assert summary['hosts']['m1']['status'] == 'failed' and summary['hosts']['m1']['stopped'] is False


def test_a_put_back_that_could_not_read_the_lb_leaves_the_entry_outstanding(journal):
    run_started(journal)
    mark(journal)
    host_intent(journal, 'm1')
    host_result(journal, 'm1', stopped=False, status='failed', failed_step='recheck')
    lb_intent(journal, 'restore', {'m1': ('draining', 'ready')})
    lb_result(journal, 'restore', {'m1': (None, None, False)}, ok=False, msg='lb1: could not read the state of m1')
    summary = summary_of(journal)
    assert entry(summary)['state'] == 'draining' and entry(summary)['outstanding'] is True
    assert _journal.outstanding(summary) == {'m1': {LB: {'previous_state': 'ready', 'state': 'draining'}}}
    # A later put-back that works clears it.
    lb_intent(journal, 'restore', {'m1': ('draining', 'ready')})
    lb_result(journal, 'restore', {'m1': ('draining', 'ready', True)})
    assert _journal.outstanding(summary_of(journal)) == {}


def test_a_controller_killed_between_intent_and_result_counts_the_change_as_made(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'ready', 'm2': 'maintenance'})
    lb_intent(journal, 'draining', {'m1': ('ready', 'draining'), 'm2': ('maintenance', 'maintenance')})
    summary = summary_of(journal)
    assert entry(summary, 'm1') == {'previous_state': 'ready', 'state': 'draining', 'outstanding': True, 'unconfirmed': True}
    # m2 would not have been changed at all.
    assert entry(summary, 'm2')['outstanding'] is False
    assert _journal.outstanding(summary) == {'m1': {LB: {'previous_state': 'ready', 'state': 'draining'}}}
    assert summary['finished'] is False


def test_a_controller_killed_during_a_host_leaves_it_in_progress(journal):
    run_started(journal)
    mark(journal)
    host_intent(journal, 'm1')
    summary = summary_of(journal)
    assert summary['hosts']['m1']['in_progress'] is True and summary['hosts']['m1']['stopped'] is False
    assert _journal.outstanding(summary) == {'m1': {LB: {'previous_state': 'ready', 'state': 'draining'}}}


def test_two_load_balancers_are_tracked_apart(journal):
    run_started(journal)
    mark(journal, lb='lb1')
    mark(journal, lb='lb2', state='maintenance')
    lb_intent(journal, 'restore', {'m1': ('draining', 'ready')}, lb='lb1')
    lb_result(journal, 'restore', {'m1': ('draining', 'ready', True)}, lb='lb1')
    assert _journal.outstanding(summary_of(journal)) == {'m1': {'lb2': {'previous_state': 'ready', 'state': 'maintenance'}}}


def test_finished_closed_and_recovered_are_summarized(journal):
    run_started(journal, pid=4242, pid_start=77)
    summary = summary_of(journal)
    assert (summary['pid'], summary['pid_start'], summary['controller']) == (4242, 77, socket.gethostname())
    _journal.append(journal, RUN, 'run_finished', status='halted', stranded={'m1': [LB]})
    summary = summary_of(journal)
    assert summary['finished'] is True and summary['status'] == 'halted' and summary['stranded'] == {'m1': [LB]}
    _journal.append(journal, RUN, 'closed', by='20261203T000000Z-000000', reason='put back: m1; carried on: none')
    closed = summary_of(journal)['closed']
    assert closed['by'] == '20261203T000000Z-000000' and closed['reason'].startswith('put back: m1') and closed['ts']


def test_summarize_tolerates_odd_fields():
    events = [{'run': 'r', 'event': 'lb_intent', 'lb': LB, 'hosts': ['m1']},
              {'run': 'r', 'event': 'lb_result', 'lb': LB, 'servers': {'m1': 'ready'}},
              {'run': 'r', 'event': 'run_finished', 'stranded': None}]
    summary = _journal.summarize(events)
    assert summary['run'] == 'r' and summary['finished'] is True and summary['stranded'] == {}


def test_a_put_back_to_the_draining_it_was_in_before_is_not_outstanding(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'draining'})      # an operator had drained it
    mark(journal, before='draining', state='maintenance')
    host_intent(journal, 'm1')
    host_result(journal, 'm1', stopped=False, status='failed', failed_step='drain')
    lb_intent(journal, 'restore', {'m1': ('maintenance', 'draining')})
    lb_result(journal, 'restore', {'m1': ('maintenance', 'draining', True)})
    summary = summary_of(journal)
    assert entry(summary)['previous_state'] == 'draining'
    assert _journal.outstanding(summary) == {}


# --- open_runs ---------------------------------------------------------------------------------------------

def journal_in(directory, run):
    return str(directory / ('%s.jsonl' % run))


def test_open_runs_lists_the_interrupted_oldest_first_and_skips_the_rest(tmp_path, dead_pid):
    # Listed: killed after a mark (outstanding); killed while a host was in progress; finished with stranded hosts.
    killed = journal_in(tmp_path, '20261202T010000Z-000001')
    run_started(killed, run='20261202T010000Z-000001', pid=dead_pid)
    mark(killed)
    in_host = journal_in(tmp_path, '20261202T000000Z-000002')
    run_started(in_host, run='20261202T000000Z-000002', pid=dead_pid)
    _journal.append(in_host, '20261202T000000Z-000002', 'host_intent', host='m2', units=[])
    stranded = journal_in(tmp_path, '20261202T020000Z-000003')
    run_started(stranded, run='20261202T020000Z-000003', pid=dead_pid)
    mark(stranded, host='m3')
    lb_intent(stranded, 'restore', {'m3': ('draining', 'ready')}, run='20261202T020000Z-000003')
    lb_result(stranded, 'restore', {'m3': (None, None, False)}, ok=False, run='20261202T020000Z-000003')
    _journal.append(stranded, '20261202T020000Z-000003', 'run_finished', status='halted', stranded={'m3': [LB]})
    # Skipped: closed; finished cleanly; stopped in pre-flight; put everything back; stopped its host; not a journal.
    closed = journal_in(tmp_path, '20261201T000000Z-000004')
    run_started(closed, run='20261201T000000Z-000004', pid=dead_pid)
    mark(closed)
    _journal.append(closed, '20261201T000000Z-000004', 'closed', by='x', reason='put back: m1')
    done = journal_in(tmp_path, '20261201T000000Z-000005')
    run_started(done, run='20261201T000000Z-000005', pid=dead_pid)
    mark(done)
    host_intent(done, 'm1', run='20261201T000000Z-000005')
    _journal.append(done, '20261201T000000Z-000005', 'run_finished', status='done', stranded={})
    preflight = journal_in(tmp_path, '20261201T000000Z-000006')
    run_started(preflight, run='20261201T000000Z-000006', pid=dead_pid)
    lb_read(preflight, {'m1': 'ready'}, run='20261201T000000Z-000006')
    put_back = journal_in(tmp_path, '20261201T000000Z-000007')
    run_started(put_back, run='20261201T000000Z-000007', pid=dead_pid)
    mark(put_back)
    lb_intent(put_back, 'restore', {'m1': ('draining', 'ready')}, run='20261201T000000Z-000007')
    lb_result(put_back, 'restore', {'m1': ('draining', 'ready', True)}, run='20261201T000000Z-000007')
    stopped = journal_in(tmp_path, '20261201T000000Z-000008')
    run_started(stopped, run='20261201T000000Z-000008', pid=dead_pid)
    mark(stopped)
    host_intent(stopped, 'm1', run='20261201T000000Z-000008')
    host_result(stopped, 'm1', stopped=True, run='20261201T000000Z-000008')
    (tmp_path / 'notes.txt').write_text('not a journal')

    found = _journal.open_runs(str(tmp_path))
    assert [run['path'] for run in found] == [in_host, killed, stranded]
    assert [run['live'] for run in found] == [False, False, False]
    assert found[1]['outstanding'] == {'m1': {LB: {'previous_state': 'ready', 'state': 'draining'}}}
    assert found[0]['outstanding'] == {} and found[0]['hosts']['m2']['in_progress'] is True
    assert found[2]['stranded'] == {'m3': [LB]} and found[2]['finished'] is True
    assert found[2]['outstanding'] == {'m3': {LB: {'previous_state': 'ready', 'state': 'draining'}}}
    # exclude leaves one journal out (this run's own).
    assert [run['path'] for run in _journal.open_runs(str(tmp_path), exclude=killed)] == [in_host, stranded]


def test_open_runs_live_only_with_a_live_pid_of_the_same_start_on_this_controller(tmp_path, dead_pid):
    me, my_start = os.getpid(), _journal.process_start(os.getpid())
    assert isinstance(my_start, int)
    live = journal_in(tmp_path, '20261202T000000Z-00000a')
    run_started(live, run='20261202T000000Z-00000a', pid=me, pid_start=my_start)   # nothing changed yet: listed anyway
    reused = journal_in(tmp_path, '20261202T000000Z-00000b')
    run_started(reused, run='20261202T000000Z-00000b', pid=me, pid_start=my_start + 1)
    mark(reused, host='m2')
    reused_idle = journal_in(tmp_path, '20261202T000000Z-00000c')
    run_started(reused_idle, run='20261202T000000Z-00000c', pid=me, pid_start=my_start + 1)
    dead = journal_in(tmp_path, '20261202T000000Z-00000d')
    run_started(dead, run='20261202T000000Z-00000d', pid=dead_pid, pid_start=my_start)
    mark(dead, host='m3')
    elsewhere = journal_in(tmp_path, '20261202T000000Z-00000e')
    run_started(elsewhere, run='20261202T000000Z-00000e', pid=me, pid_start=my_start, controller='another-controller')
    mark(elsewhere, host='m4')
    finished = journal_in(tmp_path, '20261202T000000Z-00000f')
    run_started(finished, run='20261202T000000Z-00000f', pid=me, pid_start=my_start)
    _journal.append(finished, '20261202T000000Z-00000f', 'run_finished', status='done', stranded={})

    found = dict((os.path.basename(run['path'])[:-6], run['live']) for run in _journal.open_runs(str(tmp_path)))
    assert found == {'20261202T000000Z-00000a': True, '20261202T000000Z-00000b': False,
                     '20261202T000000Z-00000d': False, '20261202T000000Z-00000e': False}


def test_process_start_of_a_pid_that_is_gone_or_bad(dead_pid):
    assert _journal.process_start(dead_pid) is None
    assert _journal.process_start(None) is None and _journal.process_start('x') is None
    # The start time of a running process stays the same between reads.
    assert _journal.process_start(os.getpid()) == _journal.process_start(os.getpid())


def test_open_runs_of_a_missing_directory_is_empty_and_a_corrupt_journal_is_an_error(tmp_path):
    assert _journal.open_runs(str(tmp_path / 'none')) == []
    bad = journal_in(tmp_path, '20261202T000000Z-0000aa')
    run_started(bad, run='x')
    with open(bad, 'ab') as handle:
        handle.write(b'garbage\n{"run": "x", "event": "closed"}\n')
    with pytest.raises(JournalError, match='%s line 2' % re.escape(bad)):
        _journal.open_runs(str(tmp_path))
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(JournalError, match='cannot list the journal directory'):
        _journal.open_runs(str(blocker))


# --- ensure_dir, check_option --------------------------------------------------------------------------------

def test_ensure_dir_creates_0700_and_names_the_setting_when_it_cannot(tmp_path):
    path = tmp_path / 'a' / 'journal'
    _journal.ensure_dir(str(path))
    assert path.is_dir() and stat.S_IMODE(os.stat(str(path)).st_mode) == 0o700
    _journal.ensure_dir(str(path))  # again: fine
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(JournalError, match='shutdown_journal_dir'):
        _journal.ensure_dir(str(blocker / 'journal'))
    with pytest.raises(JournalError, match='shutdown_journal_dir'):
        _journal.ensure_dir(str(blocker))


def test_check_option_accepts_path_and_run_only(monkeypatch):
    monkeypatch.setenv('HOME', '/home/ops')
    assert _journal.check_option(None, 'x') is None
    assert _journal.check_option({'path': '/j/r.jsonl', 'run': 'r'}, 'x') == {'path': '/j/r.jsonl', 'run': 'r'}
    assert _journal.check_option({'path': '~/j/r.jsonl', 'run': 'r'}, 'x') == {'path': '/home/ops/j/r.jsonl', 'run': 'r'}


@pytest.mark.parametrize('value', [
    '/j/r.jsonl', ['/j/r.jsonl', 'r'], {}, {'path': '/j/r.jsonl'}, {'run': 'r'}, {'path': '', 'run': 'r'},
    {'path': '/j/r.jsonl', 'run': ''}, {'path': 3, 'run': 'r'}, {'path': '/j/r.jsonl', 'run': None},
    {'path': '/j/r.jsonl', 'run': 'r', 'extra': 1},
])
def test_check_option_refuses_anything_else_naming_the_task(value):
    with pytest.raises(JournalError) as caught:
        _journal.check_option(value, 'lb_batch_state lb1')
    message = str(caught.value)
    assert message.startswith('lb_batch_state lb1: journal must be a dict with path and run (non-empty strings) and '
                              'nothing else, got ')
    assert message.endswith(repr(value))


def test_a_controller_killed_mid_ramp_leaves_the_entry_flagged_whatever_its_state(journal):
    run_started(journal)
    lb_read(journal, {'m1': 'ready', 'm2': 'maintenance'})
    _journal.append(journal, RUN, 'lb_intent', lb=LB, state='draining', weight_ramp=True,
                    hosts={'m1': {'previous_state': 'ready', 'new_state': 'draining'},
                           'm2': {'previous_state': 'maintenance', 'new_state': 'maintenance'}})
    summary = summary_of(journal)
    assert entry(summary, 'm1')['weight_ramp'] is True
    # m2 was not going to be changed, but a ramp of its batch may still have lowered its weight.
    assert _journal.outstanding(summary) == {
        'm1': {LB: {'previous_state': 'ready', 'state': 'draining', 'weight_ramp': True}},
        'm2': {LB: {'previous_state': 'maintenance', 'state': 'maintenance', 'weight_ramp': True}}}


def test_a_ramp_whose_result_was_read_is_no_longer_flagged(journal):
    run_started(journal)
    _journal.append(journal, RUN, 'lb_intent', lb=LB, state='draining', weight_ramp=True,
                    hosts={'m1': {'previous_state': 'ready', 'new_state': 'draining'}})
    lb_result(journal, 'draining', {'m1': ('ready', 'ready', False)}, ok=False, msg='the weight ramp stopped at step 2')
    summary = summary_of(journal)
    assert 'weight_ramp' not in entry(summary) and _journal.outstanding(summary) == {}


def test_a_ramp_that_could_not_put_its_weights_back_stays_flagged(journal):
    run_started(journal)
    _journal.append(journal, RUN, 'lb_intent', lb=LB, state='draining', weight_ramp=True,
                    hosts={'m1': {'previous_state': 'ready', 'new_state': 'draining'}})
    _journal.append(journal, RUN, 'lb_result', lb=LB, state='draining', ok=True, msg='', weights_left_lowered=True,
                    servers={'m1': {'previous_state': 'ready', 'state': 'draining', 'changed': True}})
    summary = summary_of(journal)
    assert entry(summary)['weight_ramp'] is True
    assert _journal.outstanding(summary) == {'m1': {LB: {'previous_state': 'ready', 'state': 'draining', 'weight_ramp': True}}}
