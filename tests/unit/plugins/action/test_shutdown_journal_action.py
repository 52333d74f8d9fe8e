# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugins/action/shutdown_journal.py: open (refused while a live run exists), recovered, finish, read, check mode, and
the module's own argument spec (the action plugin validates with it; the module never runs)."""

from __future__ import annotations

import os
import re
import socket
import stat

import pytest

from ansible_collections.modelops.shutdown.plugins.action.shutdown_journal import ActionModule, open_run
from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal
from ansible_collections.modelops.shutdown.tests.unit.plugins.action.journal_harness import events, last, run_action

OLD = '20261201T000000Z-0a0b0c'


def act(args, check_mode=False):
    return run_action(ActionModule, args, check_mode=check_mode)


@pytest.fixture
def directory(tmp_path):
    return tmp_path / 'journal'


def interrupted_run(directory, run=OLD, pid=None, pid_start=None, hosts=('m1',)):
    """An earlier run killed after marking C(hosts) draining on lb1 (nothing stopped)."""
    directory.mkdir(exist_ok=True)
    path = str(directory / ('%s.jsonl' % run))
    _journal.append(path, run, 'run_started', targets=list(hosts), controller=socket.gethostname(), pid=pid,
                    pid_start=pid_start, playbook='shutdown')
    for host in hosts:
        _journal.append(path, run, 'lb_intent', lb='lb1', state='draining',
                        hosts={host: {'previous_state': 'ready', 'new_state': 'draining'}})
        _journal.append(path, run, 'lb_result', lb='lb1', state='draining',
                        servers={host: {'previous_state': 'ready', 'state': 'draining', 'changed': True}})
    return path


# --- open ------------------------------------------------------------------------------------------------------

def test_open_creates_the_directory_and_the_runs_journal(directory):
    result = act({'state': 'open', 'dir': str(directory), 'targets': ['m1', 'm2'], 'playbook': 'shutdown'})
    assert not result.get('failed') and result['changed'] is False and result['interrupted'] == []
    journal = result['journal']
    assert re.match(r'^\d{8}T\d{6}Z-[0-9a-f]{6}$', journal['run'])
    assert journal['path'] == str(directory / ('%s.jsonl' % journal['run']))
    assert stat.S_IMODE(os.stat(str(directory)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(journal['path']).st_mode) == 0o600
    started = last(journal['path'])
    assert events(journal['path']) == ['run_started'] and started['run'] == journal['run']
    assert (started['targets'], started['playbook'], started['controller'], started['interrupted']) == (
        ['m1', 'm2'], 'shutdown', socket.gethostname(), [])
    # The controller process is the action's parent (ansible-playbook; the worker forked from it).
    assert started['pid'] == os.getppid() and started['pid_start'] == _journal.process_start(os.getppid())
    assert started['user']
    assert result['msg'] == 'journal %s; 0 interrupted run(s) found' % journal['path']


def test_open_returns_the_interrupted_runs_and_records_them(directory, tmp_path):
    old = interrupted_run(directory)
    result = act({'state': 'open', 'dir': str(directory), 'targets': ['m1']})
    assert not result.get('failed')
    [found] = result['interrupted']
    assert found == {'run': OLD, 'path': old, 'started': _journal.read(old)[0]['ts'], 'finished': False, 'status': None,
                     'targets': ['m1'], 'outstanding': {'m1': {'lb1': {'previous_state': 'ready', 'state': 'draining'}}}}
    assert last(result['journal']['path'])['interrupted'] == [OLD]
    assert result['msg'].endswith('; 1 interrupted run(s) found')


def test_open_is_refused_while_a_run_of_this_controller_is_live(directory):
    me = os.getpid()
    live = interrupted_run(directory, pid=me, pid_start=_journal.process_start(me), hosts=())
    result = act({'state': 'open', 'dir': str(directory)})
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'] == ('run %s (pid %s on this controller, journal %s) is still running: two runs must not shut down '
                             'the same fleet at once. Wait for it, or end it (kill %s), then re-run.' % (OLD, me, live, me))
    assert os.listdir(str(directory)) == [os.path.basename(live)]
    # Refused in check mode too.
    assert act({'state': 'open', 'dir': str(directory)}, check_mode=True)['failed'] is True


def test_a_second_open_by_the_same_controller_process_is_refused(directory):
    first = act({'state': 'open', 'dir': str(directory)})
    second = act({'state': 'open', 'dir': str(directory)})
    assert second['failed'] is True and first['journal']['run'] in second['msg']


def test_open_ignores_a_run_whose_pid_was_reused(directory):
    me = os.getpid()
    interrupted_run(directory, pid=me, pid_start=_journal.process_start(me) + 1)
    result = act({'state': 'open', 'dir': str(directory)})
    assert not result.get('failed') and [run['run'] for run in result['interrupted']] == [OLD]


def test_open_in_check_mode_reads_and_writes_nothing(directory, tmp_path):
    result = act({'state': 'open', 'dir': str(directory)}, check_mode=True)
    assert result == dict(result, changed=False, journal=None, interrupted=[])
    assert result['msg'] == 'journal not opened (check mode); 0 interrupted run(s) found'
    assert not directory.exists()
    interrupted_run(directory)
    result = act({'state': 'open', 'dir': str(directory)}, check_mode=True)
    assert result['journal'] is None and [run['run'] for run in result['interrupted']] == [OLD]
    assert os.listdir(str(directory)) == ['%s.jsonl' % OLD]


def test_open_where_the_directory_cannot_be_made(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    result = act({'state': 'open', 'dir': str(blocker / 'journal')})
    assert result['failed'] is True and 'shutdown_journal_dir' in result['msg']


def test_open_run_names_the_file_after_the_time(directory):
    journal, found = open_run(str(directory), ('m1',), 'restore', False, now=1796177584.0)
    assert journal['run'].startswith('20261202T021304Z-') and found == []
    assert last(journal['path'])['playbook'] == 'restore'


# --- recovered, finish ----------------------------------------------------------------------------------------

def test_recovered_records_it_and_closes_the_earlier_journals(directory):
    old = interrupted_run(directory)
    older = interrupted_run(directory, run='20261130T000000Z-000000', hosts=('m2',))
    journal = act({'state': 'open', 'dir': str(directory)})['journal']
    before = os.listdir(str(directory))
    result = act({'state': 'recovered', 'journal': journal, 'runs': [older, old], 'put_back': ['m1', 'm2'], 'carried_on': []})
    assert not result.get('failed') and result['changed'] is False
    assert result['msg'] == '2 interrupted run(s) closed by run %s' % journal['run']
    assert sorted(os.listdir(str(directory))) == sorted(before)
    mine = last(journal['path'])
    assert (mine['event'], mine['from_runs'], mine['put_back'], mine['carried_on']) == ('recovered', [older, old], ['m1', 'm2'], [])
    closed = last(old)
    assert (closed['event'], closed['run'], closed['by']) == ('closed', OLD, journal['run'])
    assert closed['reason'] == 'put back: m1, m2; carried on: none'
    assert _journal.summarize(_journal.read(older))['closed']['by'] == journal['run']
    assert [run['path'] for run in _journal.open_runs(str(directory), exclude=journal['path'])] == []


def test_finish_records_the_end_and_a_clean_run_is_not_interrupted(directory):
    journal = act({'state': 'open', 'dir': str(directory)})['journal']
    result = act({'state': 'finish', 'journal': journal, 'status': 'done'})
    assert not result.get('failed') and result['msg'] == 'run %s done' % journal['run']
    finished = last(journal['path'])
    assert (finished['event'], finished['status'], finished['stranded']) == ('run_finished', 'done', {})
    assert _journal.open_runs(str(directory)) == []


def test_a_halted_run_with_stranded_hosts_is_found_by_the_next_open(directory):
    journal = act({'state': 'open', 'dir': str(directory), 'targets': ['m1']})['journal']
    _journal.append(journal['path'], journal['run'], 'lb_intent', lb='lb1', state='draining',
                    hosts={'m1': {'previous_state': 'ready', 'new_state': 'draining'}})
    _journal.append(journal['path'], journal['run'], 'lb_result', lb='lb1', state='draining',
                    servers={'m1': {'previous_state': 'ready', 'state': 'draining', 'changed': True}})
    act({'state': 'finish', 'journal': journal, 'status': 'halted', 'stranded': {'m1': ['lb1']}})
    result = act({'state': 'open', 'dir': str(directory)})   # the same controller process: finished, so not live
    assert not result.get('failed')
    [found] = result['interrupted']
    assert (found['run'], found['finished'], found['status']) == (journal['run'], True, 'halted')
    assert found['outstanding'] == {'m1': {'lb1': {'previous_state': 'ready', 'state': 'draining'}}}


def test_recovered_and_finish_in_check_mode_write_nothing(directory):
    old = interrupted_run(directory)
    journal = act({'state': 'open', 'dir': str(directory)})['journal']
    for args in ({'state': 'recovered', 'journal': journal, 'runs': [old], 'put_back': ['m1']},
                 {'state': 'finish', 'journal': journal, 'status': 'halted'}):
        result = act(args, check_mode=True)
        assert result == dict(result, changed=False, msg='check mode: nothing written') and not result.get('failed')
    assert events(journal['path']) == ['run_started'] and events(old)[-1] == 'lb_result'


def test_finish_to_a_journal_that_is_gone_fails_with_the_cause(tmp_path):
    path = str(tmp_path / 'gone' / 'r.jsonl')
    result = act({'state': 'finish', 'journal': {'path': path, 'run': 'r'}, 'status': 'done'})
    assert result['failed'] is True and result['msg'].startswith('cannot write the journal %s (run_finished' % path)


# --- read --------------------------------------------------------------------------------------------------------

def test_read_summarizes_one_journal_with_what_it_left_out(directory):
    old = interrupted_run(directory, hosts=('m1', 'm2'))
    _journal.append(old, OLD, 'host_intent', host='m2', units=['u'])
    _journal.append(old, OLD, 'host_result', host='m2', ok=True, status='done', stopped=True, units_stopped=['u'])
    result = act({'state': 'read', 'path': old})
    assert not result.get('failed') and result['changed'] is False
    assert result['msg'] == 'journal %s of run %s read' % (old, OLD)
    summary = result['summary']
    assert summary['run'] == OLD and summary['path'] == old and summary['finished'] is False
    assert summary['outstanding'] == {'m1': {'lb1': {'previous_state': 'ready', 'state': 'draining'}}}
    assert summary['hosts']['m2']['units_stopped'] == ['u'] and summary['hosts']['m2']['stopped'] is True
    # In check mode too (restore.yml --check).
    assert act({'state': 'read', 'path': old}, check_mode=True)['summary'] == summary


def test_read_of_a_missing_journal_fails(tmp_path):
    result = act({'state': 'read', 'path': str(tmp_path / 'none.jsonl')})
    assert result['failed'] is True and result['msg'].startswith('cannot read the journal ')


# --- arguments ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('args,message', [
    ({'state': 'open'}, 'state is open but all of the following are missing: dir'),
    ({'state': 'finish', 'journal': {'path': '/j', 'run': 'r'}}, 'state is finish but all of the following are missing: status'),
    ({'state': 'recovered'}, 'state is recovered but all of the following are missing: journal'),
    ({'state': 'read'}, 'state is read but all of the following are missing: path'),
    ({'state': 'close'}, 'value of state must be one of: open, recovered, finish, read, got: close'),
    ({'state': 'finish', 'journal': {'path': '/j'}, 'status': 'done'}, 'missing required arguments: run'),
    ({'state': 'finish', 'journal': {'path': '/j', 'run': 'r'}, 'status': 'aborted'}, 'value of status must be one of: done, halted'),
    ({'state': 'open', 'dir': '/tmp', 'bogus': 1}, 'bogus'),
])
def test_bad_arguments_fail_before_anything_is_read_or_written(args, message):
    result = act(args)
    assert result['failed'] is True and result['msg'].startswith('shutdown_journal: ') and message in result['msg'], result['msg']
