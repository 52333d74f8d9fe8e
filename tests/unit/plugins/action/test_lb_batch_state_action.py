# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugins/action/lb_batch_state.py: intended/observed, and run() with the module stubbed: the intent is in the journal
before the module runs, the result after it; check mode journals a read; a journal that cannot be written stops the
task before anything is sent. The last tests run the real BatchStateManager (test_lb_batch.py's Rig) as the module."""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.action import lb_batch_state as action
from ansible_collections.modelops.shutdown.plugins.action.lb_batch_state import ActionModule, intended, observed
from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal
from ansible_collections.modelops.shutdown.tests.unit.plugins.action.journal_harness import (
    ModuleCalls, events, last, read_only, run_action)
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_lb_batch import Rig

RUN = '20261202T020304Z-1a2b3c'
MEMBERS = [{'host': 'm1', 'haproxy': {'socket': '/run/haproxy/admin.sock', 'backend': 'models', 'server': 'm1'}},
           {'host': 'm2', 'haproxy': {'socket': '/run/haproxy/admin.sock', 'backend': 'models', 'server': 'm2'}}]


def server(host, previous_state, state, changed, **extra):
    return dict({'host': host, 'kind': 'haproxy', 'target': 'HAProxy server models/%s' % host, 'state': state,
                 'previous_state': previous_state, 'previous_status': None, 'status': None, 'changed': changed,
                 'in_flight_at_mark': None, 'marked_at': None, 'error': None}, **extra)


def module_result(state, servers, failed=False, msg=None):
    result = {'changed': any(s['changed'] for s in servers), 'lb': 'lb1', 'state': state, 'refused': False, 'budget': [],
              'servers': servers, 'started_at': 1764614400.0, 'marked_at': None, 'finished_at': 1764614400.5}
    if failed:
        result.update(failed=True, msg=msg)
    return result


@pytest.fixture
def journal(tmp_path):
    """This run's journal, opened, with the pre-flight read: m1 ready, m2 in maintenance."""
    path = str(tmp_path / ('%s.jsonl' % RUN))
    _journal.append(path, RUN, 'run_started', targets=['m1', 'm2'], pid=None)
    _journal.append(path, RUN, 'lb_read', lb='lb1', state='ready', ok=True, msg='', servers={'m1': 'ready', 'm2': 'maintenance'})
    return path


def args(journal=None, **extra):
    values = dict({'name': 'lb1', 'state': 'draining', 'members': MEMBERS, 'batch': ['m1', 'm2']}, **extra)
    if journal is not None:
        values['journal'] = {'path': journal, 'run': RUN}
    return values


def summary_of(path):
    return _journal.summarize(_journal.read(path), path)


# --- intended, observed ------------------------------------------------------------------------------------

def test_intended_starts_from_what_the_run_last_read_or_set(journal):
    summary = summary_of(journal)
    assert intended(args(), summary) == {'m1': {'previous_state': 'ready', 'new_state': 'draining'},
                                         # a mark never weakens maintenance
                                         'm2': {'previous_state': 'maintenance', 'new_state': 'maintenance'}}
    assert intended(args(state='maintenance'), summary)['m1'] == {'previous_state': 'ready', 'new_state': 'maintenance'}
    # A host the run never read: nothing known before.
    assert intended(args(batch=['m9']), summary) == {'m9': {'previous_state': None, 'new_state': 'draining'}}
    # After the run marked m1, its own state wins over the pre-flight read.
    _journal.append(journal, RUN, 'lb_intent', lb='lb1', state='maintenance',
                    hosts={'m1': {'previous_state': 'ready', 'new_state': 'maintenance'}})
    _journal.append(journal, RUN, 'lb_result', lb='lb1', state='maintenance',
                    servers={'m1': {'previous_state': 'ready', 'state': 'maintenance', 'changed': True}})
    summary = summary_of(journal)
    assert intended(args(batch=['m1']), summary) == {'m1': {'previous_state': 'maintenance', 'new_state': 'maintenance'}}
    assert intended(args(batch=['m1'], state='restore', restore_states={'m1': 'ready'}), summary) == {
        'm1': {'previous_state': 'maintenance', 'new_state': 'ready'}}
    assert intended(args(batch=['m1'], state='ready'), summary) == {'m1': {'previous_state': 'maintenance', 'new_state': 'ready'}}
    # Another load balancer of the same host knows nothing of it.
    assert intended(args(name='lb2', batch=['m1']), summary) == {'m1': {'previous_state': None, 'new_state': 'draining'}}
    # A restore without a state for the host has no new state.
    assert intended(args(batch=['m2'], state='restore', restore_states={}), summary)['m2']['new_state'] is None


def test_observed_per_server_and_in_check_mode():
    result = module_result('draining', [server('m1', 'ready', 'draining', True), server('m2', None, None, False)])
    assert observed(result, False) == {'m1': {'previous_state': 'ready', 'state': 'draining', 'changed': True},
                                       'm2': {'previous_state': None, 'state': None, 'changed': False}}
    assert observed(result, True) == {'m1': 'ready', 'm2': None}
    assert observed({'failed': True, 'msg': 'x'}, False) == {} and observed({'servers': None}, True) == {}


# --- run(): the order of journal, module, journal ------------------------------------------------------------

def test_the_intent_is_journaled_before_the_module_runs_and_the_result_after(journal):
    def check(module_args):
        assert 'journal' not in module_args
        assert events(journal)[-1] == 'lb_intent'
        intent = last(journal)
        assert (intent['run'], intent['lb'], intent['state']) == (RUN, 'lb1', 'draining')
        assert intent['hosts'] == {'m1': {'previous_state': 'ready', 'new_state': 'draining'},
                                   'm2': {'previous_state': 'maintenance', 'new_state': 'maintenance'}}

    calls = ModuleCalls(module_result('draining', [server('m1', 'ready', 'draining', True),
                                                   server('m2', 'maintenance', 'maintenance', False)]), check)
    result = run_action(ActionModule, args(journal), calls)
    assert len(calls.calls) == 1 and calls.calls[0] == args()
    assert not result.get('failed') and result['changed'] is True and result['journal_path'] == journal
    assert [s['host'] for s in result['servers']] == ['m1', 'm2']
    assert events(journal) == ['run_started', 'lb_read', 'lb_intent', 'lb_result']
    outcome = last(journal)
    assert (outcome['lb'], outcome['state'], outcome['ok'], outcome['msg']) == ('lb1', 'draining', True, '')
    assert outcome['servers'] == {'m1': {'previous_state': 'ready', 'state': 'draining', 'changed': True},
                                  'm2': {'previous_state': 'maintenance', 'state': 'maintenance', 'changed': False}}
    assert _journal.outstanding(summary_of(journal)) == {'m1': {'lb1': {'previous_state': 'ready', 'state': 'draining'}}}


def test_a_weight_ramp_is_journaled_with_the_intent_so_a_dead_run_leaves_it_flagged(journal):
    def check(module_args):
        assert last(journal)['event'] == 'lb_intent' and last(journal)['weight_ramp'] is True
        # The controller dies here, mid-ramp: the state may still be ready, the weight lowered.
        assert _journal.outstanding(summary_of(journal))['m1'] == {
            'lb1': {'previous_state': 'ready', 'state': 'draining', 'weight_ramp': True}}

    calls = ModuleCalls(module_result('draining', [server('m1', 'ready', 'draining', True)]), check)
    run_action(ActionModule, args(journal, batch=['m1'], weight_ramp={'duration': 10, 'steps': 4}), calls)
    assert 'weight_ramp' not in _journal.outstanding(summary_of(journal))['m1']['lb1']
    # A put-back is no ramp.
    calls = ModuleCalls(module_result('restore', [server('m1', 'draining', 'ready', True)]))
    run_action(ActionModule, args(journal, batch=['m1'], state='restore', restore_states={'m1': 'ready'},
                                  weight_ramp={'duration': 10}), calls)
    assert [e.get('weight_ramp') for e in _journal.read(journal) if e['event'] == 'lb_intent'] == [True, False]


def test_a_failed_module_is_journaled_with_its_message_cut(journal):
    msg = 'lb1: draining did not take effect within 10.0 s: m1: ... ' + 'x' * 3000
    calls = ModuleCalls(module_result('draining', [server('m1', 'ready', 'ready', False)], failed=True, msg=msg))
    result = run_action(ActionModule, args(journal, batch=['m1']), calls)
    assert result['failed'] is True and result['msg'] == msg
    outcome = last(journal)
    assert outcome['event'] == 'lb_result' and outcome['ok'] is False and outcome['msg'] == msg[:2000]
    assert _journal.outstanding(summary_of(journal)) == {}


def test_check_mode_journals_a_read_and_no_intent(tmp_path):
    path = str(tmp_path / 'new.jsonl')   # check mode reads nothing first: the file need not exist yet

    def check(module_args):
        assert not os.path.exists(path) and 'journal' not in module_args

    calls = ModuleCalls(module_result('ready', [server('m1', 'ready', 'ready', False),
                                                server('m2', 'maintenance', 'ready', True)]), check)
    result = run_action(ActionModule, args(path, state='ready'), calls, check_mode=True)
    assert len(calls.calls) == 1 and not result.get('failed') and result['journal_path'] == path
    assert events(path) == ['lb_read']
    read = last(path)
    assert (read['lb'], read['state'], read['ok'], read['servers']) == ('lb1', 'ready', True, {'m1': 'ready', 'm2': 'maintenance'})
    summary = summary_of(path)
    assert summary['hosts'] == {} and summary['last_read'] == {'lb1': {'m1': 'ready', 'm2': 'maintenance'}}


def test_without_a_journal_the_module_gets_its_args_untouched(tmp_path):
    calls = ModuleCalls(module_result('draining', [server('m1', 'ready', 'draining', True)]))
    result = run_action(ActionModule, args(batch=['m1']), calls)
    assert calls.calls == [args(batch=['m1'])] and 'journal_path' not in result and result['changed'] is True
    assert os.listdir(str(tmp_path)) == []


# --- a journal that cannot be written -----------------------------------------------------------------------

def test_a_removed_journal_directory_fails_the_task_before_the_module(tmp_path):
    path = str(tmp_path / 'gone' / ('%s.jsonl' % RUN))
    result = run_action(ActionModule, args(path))  # the default execute fails the test if the module is run
    assert result['failed'] is True and result['changed'] is False
    assert path in result['msg'] and 'No such file or directory' in result['msg']


def test_a_read_only_journal_fails_the_task_before_the_module(journal, monkeypatch):
    read_only(monkeypatch, journal)
    before = open(journal, 'rb').read()
    result = run_action(ActionModule, args(journal))
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith('cannot write the journal %s (lb_intent, before: lb1): ' % journal)
    assert 'Read-only file system' in result['msg'] and 'Nothing was changed by this step' in result['msg']
    assert open(journal, 'rb').read() == before


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes through file modes')
def test_a_journal_without_write_permission_fails_the_task_before_the_module(journal):
    os.chmod(journal, 0o400)
    result = run_action(ActionModule, args(journal))
    assert result['failed'] is True and 'Permission denied' in result['msg']


def test_a_bad_journal_option_fails_the_task_before_the_module(journal):
    result = run_action(ActionModule, dict(args(), journal={'path': journal}))
    assert result['failed'] is True and result['msg'].startswith('lb_batch_state lb1: journal must be a dict with path and run')
    assert events(journal) == ['run_started', 'lb_read']


def test_a_journal_lost_while_the_module_ran_is_a_warning(journal):
    def lose_it(module_args):
        os.remove(journal)
        os.rmdir(os.path.dirname(journal))

    calls = ModuleCalls(module_result('draining', [server('m1', 'ready', 'draining', True)]), lose_it)
    result = run_action(ActionModule, args(journal, batch=['m1']), calls)
    assert not result.get('failed') and result['changed'] is True
    [warning] = result['warnings']
    assert warning.startswith('cannot write the journal %s (lb_result, before: lb1): ' % journal)


def test_check_mode_with_a_journal_that_cannot_be_written_still_reads(tmp_path):
    path = str(tmp_path / 'gone' / 'j.jsonl')
    calls = ModuleCalls(module_result('ready', [server('m1', 'ready', 'ready', False)]))
    result = run_action(ActionModule, args(path, state='ready', batch=['m1']), calls, check_mode=True)
    assert len(calls.calls) == 1 and not result.get('failed')
    assert result['warnings'][0].startswith('cannot write the journal %s (lb_read, before: lb1)' % path)


# --- the real manager as the module: the sequences the rollout runs --------------------------------------------

def rig_module(rig, check_mode=False):
    """The module's answer, from BatchStateManager over the Rig's fake adapters (failed and msg like main())."""
    def answer(module_args):
        result, failure = rig.run(module_args['state'], module_args['batch'],
                                  restore_states=module_args.get('restore_states'), check_mode=check_mode)
        if failure:
            result.update(failed=True, msg=failure)
        return result
    return answer


def rig_args(journal, state, batch, **extra):
    return dict({'name': 'lb1', 'state': state, 'members': [], 'batch': batch, 'journal': {'path': journal, 'run': RUN}},
                **extra)


def test_preflight_mark_and_put_back_through_the_real_manager(tmp_path):
    journal = str(tmp_path / 'j.jsonl')
    rig = Rig(a={}, b={}, c={'state': 'maintenance'})
    run_action(ActionModule, rig_args(journal, 'ready', ['a', 'b', 'c']), ModuleCalls(rig_module(rig, True)), check_mode=True)
    assert rig.sets() == [] and last(journal)['servers'] == {'a': 'ready', 'b': 'ready', 'c': 'maintenance'}
    result = run_action(ActionModule, rig_args(journal, 'draining', ['a', 'b', 'c']), ModuleCalls(rig_module(rig)))
    assert not result.get('failed') and rig.states() == {'a': 'draining', 'b': 'draining', 'c': 'maintenance'}
    # a was stopped, b was not (put back), c was never touched.
    _journal.append(journal, RUN, 'host_intent', host='a', units=[])
    _journal.append(journal, RUN, 'host_result', host='a', ok=True, status='done', stopped=True, units_stopped=['u'])
    assert _journal.outstanding(summary_of(journal)) == {'b': {'lb1': {'previous_state': 'ready', 'state': 'draining'}}}
    result = run_action(ActionModule, rig_args(journal, 'restore', ['b'], restore_states={'b': 'ready'}),
                        ModuleCalls(rig_module(rig)))
    assert not result.get('failed') and rig.states()['b'] == 'ready'
    summary = summary_of(journal)
    assert _journal.outstanding(summary) == {}
    assert summary['hosts']['c']['lbs']['lb1'] == {'previous_state': 'maintenance', 'state': 'maintenance', 'outstanding': False}
    assert events(journal) == ['lb_read', 'lb_intent', 'lb_result', 'host_intent', 'host_result', 'lb_intent', 'lb_result']


def test_a_mark_the_lb_does_not_take_is_put_back_and_not_outstanding(tmp_path):
    journal = str(tmp_path / 'j.jsonl')
    _journal.append(journal, RUN, 'run_started', targets=['a'], pid=None)
    rig = Rig(a={'applies': False})
    result = run_action(ActionModule, rig_args(journal, 'draining', ['a']), ModuleCalls(rig_module(rig)))
    assert result['failed'] is True and 'Put back: a to ready' in result['msg']
    assert _journal.outstanding(summary_of(journal)) == {}


def test_a_put_back_the_lb_refuses_stays_outstanding(tmp_path):
    journal = str(tmp_path / 'j.jsonl')
    _journal.append(journal, RUN, 'run_started', targets=['a'], pid=None)
    rig = Rig(a={'fail_sets': ('ready',)})
    run_action(ActionModule, rig_args(journal, 'draining', ['a']), ModuleCalls(rig_module(rig)))
    result = run_action(ActionModule, rig_args(journal, 'restore', ['a'], restore_states={'a': 'ready'}),
                        ModuleCalls(rig_module(rig)))
    assert result['failed'] is True and rig.states() == {'a': 'draining'}
    _journal.append(journal, RUN, 'run_finished', status='halted', stranded={'a': ['lb1']})
    assert _journal.outstanding(summary_of(journal)) == {'a': {'lb1': {'previous_state': 'ready', 'state': 'draining'}}}
    assert [run['run'] for run in _journal.open_runs(str(tmp_path))] == [RUN]


def test_marks_use_the_managers_own_rule():
    from ansible_collections.modelops.shutdown.plugins.module_utils import _lb_batch
    assert action.never_weaker is _lb_batch.never_weaker
    assert [_lb_batch.never_weaker(current, 'draining') for current in ('ready', 'draining', 'maintenance', None)] == [
        'draining', 'draining', 'maintenance', 'draining']
    assert _lb_batch.never_weaker('draining', 'maintenance') == 'maintenance'
