# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugins/action/host_shutdown.py: outcome(), and run() with the module stubbed: host_intent is in the journal before
the module runs on the host, host_result after; check mode writes nothing; a journal that cannot be written fails the
task (failed_step input) and the host is never touched."""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.action.host_shutdown import NOT_STOPPED_STEPS, ActionModule, outcome
from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal
from ansible_collections.modelops.shutdown.tests.unit.plugins.action.journal_harness import (
    ModuleCalls, events, last, read_only, run_action)

RUN = '20261202T020304Z-1a2b3c'
LLAMA = 'model-server@llama.service'
MISTRAL = 'model-server@mistral.service'
SINCE = 1764614396.0


def record(status='done', failed_step=None, stopped=(LLAMA,), **extra):
    """host_shutdown's record, trimmed to what the action plugin reads."""
    units = [{'unit': LLAMA, 'stopped': LLAMA in stopped}, {'unit': MISTRAL, 'stopped': MISTRAL in stopped}]
    value = {'changed': bool(stopped), 'ok': failed_step is None, 'status': status, 'failed_step': failed_step,
             'msg': '' if failed_step is None else '%s failed' % failed_step, 'host': 'gpu-1',
             'stop': {'units': units}, 'lb_guard': None, 'in_flight_at_stop': None, 'run_id': RUN}
    if failed_step is not None:
        value['failed'] = True
    value.update(extra)
    return value


@pytest.fixture
def journal(tmp_path):
    path = str(tmp_path / ('%s.jsonl' % RUN))
    _journal.append(path, RUN, 'run_started', targets=['m1', 'm2'], pid=None)
    return path


def args(journal=None, **extra):
    values = dict({'since': SINCE, 'drain': {'connections': {'port': 8000}}, 'stop': {'units': [LLAMA, MISTRAL]},
                   'load_balancers': [{'name': 'lb1', 'file': {'path': '/run/lb1.flag'}}]}, **extra)
    if journal is not None:
        values['journal'] = {'path': journal, 'run': RUN}
    return values


# --- outcome -------------------------------------------------------------------------------------------------

def test_outcome_of_a_host_that_was_stopped():
    events_ = [{'event': 'came_back', 'lb': 'lb1'}] * 30
    got = outcome(record(in_flight_at_stop=2, lb_guard={'events': events_}))
    assert got == {'ok': True, 'status': 'done', 'failed_step': None, 'msg': '', 'stopped': True,
                   'units_stopped': [LLAMA], 'in_flight_at_stop': 2, 'lb_events': events_[:20]}
    assert outcome(record(status='already_down', stopped=()))['stopped'] is True


@pytest.mark.parametrize('step', NOT_STOPPED_STEPS)
def test_outcome_of_a_step_that_fails_before_the_stop(step):
    got = outcome(record(status='failed', failed_step=step, stopped=()))
    assert got['stopped'] is False and got['ok'] is False and got['failed_step'] == step and got['units_stopped'] == []


@pytest.mark.parametrize('step', ['stop', 'policy', 'verify'])
def test_outcome_of_a_step_that_fails_at_or_after_the_stop_counts_as_stopped(step):
    # Even a stop that failed may have stopped some units: the host stays out of service.
    got = outcome(record(status='failed', failed_step=step, stopped=(MISTRAL,)))
    assert got['stopped'] is True and got['ok'] is False and got['units_stopped'] == [MISTRAL]


def test_outcome_of_an_unreachable_host_and_of_a_module_that_failed_early():
    got = outcome({'unreachable': True, 'msg': 'Failed to connect to the host via ssh', 'changed': False})
    assert (got['ok'], got['status'], got['stopped'], got['units_stopped'], got['lb_events']) == (False, 'unreachable', False, [], [])
    got = outcome({'failed': True, 'msg': 'x' * 5000})
    assert (got['ok'], got['status'], got['stopped'], len(got['msg'])) == (False, 'failed', False, 2000)
    # ok from a record that failed anyway is not ok.
    assert outcome({'ok': True, 'failed': True, 'status': 'done'})['ok'] is False


# --- run() --------------------------------------------------------------------------------------------------

def test_host_intent_before_the_module_and_host_result_after(journal):
    def check(module_args):
        assert 'journal' not in module_args and module_args['run_id'] == RUN
        intent = last(journal)
        assert intent['event'] == 'host_intent' and intent['run'] == RUN
        assert (intent['host'], intent['units'], intent['since']) == ('m1', [LLAMA, MISTRAL], SINCE)

    calls = ModuleCalls(record(in_flight_at_stop=1), check)
    result = run_action(ActionModule, args(journal), calls, task_vars={'inventory_hostname': 'm1'})
    assert calls.calls == [dict(args(), run_id=RUN)]
    assert not result.get('failed') and result['status'] == 'done' and result['journal_path'] == journal
    assert events(journal) == ['run_started', 'host_intent', 'host_result']
    done = last(journal)
    assert (done['host'], done['ok'], done['status'], done['stopped'], done['units_stopped'], done['in_flight_at_stop']) == (
        'm1', True, 'done', True, [LLAMA], 1)
    summary = _journal.summarize(_journal.read(journal))
    assert summary['hosts']['m1']['stopped'] is True and summary['hosts']['m1']['in_progress'] is False


def test_a_failed_host_is_journaled_as_not_stopped(journal):
    calls = ModuleCalls(record(status='failed', failed_step='recheck', stopped=()))
    result = run_action(ActionModule, args(journal), calls, task_vars={'inventory_hostname': 'm1'})
    assert result['failed'] is True and result['failed_step'] == 'recheck'
    done = last(journal)
    assert (done['event'], done['ok'], done['failed_step'], done['stopped'], done['msg']) == (
        'host_result', False, 'recheck', False, 'recheck failed')


def test_the_delegated_host_is_journaled_in_one_after_another_mode(journal):
    calls = ModuleCalls(record())
    run_action(ActionModule, args(journal), calls, task_vars={'inventory_hostname': 'm1'}, delegate_to='m2')
    assert [(e['event'], e.get('host')) for e in _journal.read(journal)][1:] == [('host_intent', 'm2'), ('host_result', 'm2')]


def test_a_run_id_given_is_kept(journal):
    calls = ModuleCalls(record())
    run_action(ActionModule, args(journal, run_id='manual'), calls, task_vars={'inventory_hostname': 'm1'})
    assert calls.calls[0]['run_id'] == 'manual'


def test_check_mode_writes_nothing(journal):
    before = open(journal, 'rb').read()

    def check(module_args):
        assert open(journal, 'rb').read() == before

    calls = ModuleCalls(record(status='would_shut_down'), check)
    result = run_action(ActionModule, args(journal), calls, check_mode=True, task_vars={'inventory_hostname': 'm1'})
    assert len(calls.calls) == 1 and 'journal' not in calls.calls[0] and calls.calls[0]['run_id'] == RUN
    assert result['status'] == 'would_shut_down' and 'journal_path' not in result
    assert open(journal, 'rb').read() == before


def test_without_a_journal_nothing_is_added_to_the_args():
    calls = ModuleCalls(record())
    result = run_action(ActionModule, args(), calls, task_vars={'inventory_hostname': 'm1'})
    assert calls.calls == [args()] and 'journal_path' not in result


def test_a_removed_journal_directory_fails_the_host_before_the_module(tmp_path):
    path = str(tmp_path / 'gone' / ('%s.jsonl' % RUN))
    result = run_action(ActionModule, args(path), task_vars={'inventory_hostname': 'm1'})
    assert (result['failed'], result['changed'], result['ok'], result['status'], result['failed_step']) == (
        True, False, False, 'failed', 'input')
    assert result['msg'].startswith('cannot write the journal %s (host_intent, before: m1): ' % path)
    assert 'No such file or directory' in result['msg']


def test_a_read_only_journal_fails_the_host_before_the_module(journal, monkeypatch):
    read_only(monkeypatch, journal)
    result = run_action(ActionModule, args(journal), task_vars={'inventory_hostname': 'm1'})
    assert result['failed'] is True and result['failed_step'] == 'input' and 'Read-only file system' in result['msg']
    assert events(journal) == ['run_started']


def test_a_bad_journal_option_fails_the_host_before_the_module():
    result = run_action(ActionModule, dict(args(), journal='/tmp/j.jsonl'), task_vars={'inventory_hostname': 'm1'})
    assert result['failed'] is True and result['failed_step'] == 'input'
    assert result['msg'].startswith('host_shutdown on m1: journal must be a dict')


def test_a_journal_lost_while_the_host_ran_is_a_warning(journal):
    def lose_it(module_args):
        os.remove(journal)
        os.rmdir(os.path.dirname(journal))

    result = run_action(ActionModule, args(journal), ModuleCalls(record(), lose_it), task_vars={'inventory_hostname': 'm1'})
    assert not result.get('failed') and result['status'] == 'done'
    assert result['warnings'][0].startswith('cannot write the journal %s (host_result, before: m1)' % journal)
