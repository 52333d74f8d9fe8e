# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LBGuard (module_utils/_lb_guard.py) over fake adapters on a fake clock: the watch at every drain poll (a server
found ready is drained again, read errors are counted), the sticky escalation, the confirmation before the stop;
and parse_entries' validation."""

from __future__ import annotations

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _lb_guard
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import Adapter, LBError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_batch import iso
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_file import FileAdapter
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_guard import LBGuard, parse_entries
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_lb_batch import (
    EPOCH, SET_SECONDS, FakeAdapter, FakeClock)


class ScriptedLB(Adapter):
    """A server whose reads answer C(script) in turn (the last repeats): a state, or an exception to raise; a
    callable in the script is called and its answer used. Sets are recorded and change nothing; C(fail_sets):
    states whose set raises. Every read and set goes to C(log)."""

    kind = 'fake'

    def __init__(self, name, script, log=None, fail_sets=()):
        super(ScriptedLB, self).__init__()
        self.name = name
        self.script = list(script)
        self.log = [] if log is None else log
        self.fail_sets = fail_sets

    def describe(self):
        return 'scripted server %s' % self.name

    def _get_state(self):
        self.log.append(('read', self.name))
        value = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if callable(value):
            value = value()
        if isinstance(value, BaseException):
            raise value
        return {'state': value, 'raw': {}}

    def set_state(self, state):
        self.log.append(('set', self.name, state))
        if state in self.fail_sets:
            raise LBError('%s refused %s' % (self.describe(), state))


def entry(name, adapter, state='draining'):
    """One parsed load_balancers entry, as parse_entries builds it, around C(adapter)."""
    return {'name': name, 'state': state, 'kind': adapter.kind, 'adapter': adapter}


class Rig(object):
    """Load balancers lb1, lb2, ... of one host around FakeAdapters m-lb1, m-lb2, ... on one fake clock. Each server is
    a dict of FakeAdapter options (state defaults to draining) plus C(want), the entry's state (default draining)."""

    def __init__(self, servers, **guard_options):
        self.clock = FakeClock()
        self.log = []
        self.adapters = []
        entries = []
        for index, options in enumerate(servers):
            options = dict(options)
            want = options.pop('want', 'draining')
            options.setdefault('state', 'draining')
            adapter = FakeAdapter('m-lb%d' % (index + 1), self.log, self.clock, **options)
            self.adapters.append(adapter)
            entries.append(entry('lb%d' % (index + 1), adapter, want))
        self.guard = LBGuard(entries, clock=self.clock, wall=self.clock, sleep=self.clock.sleep, **guard_options)

    def sets(self):
        return [item[1:] for item in self.log if item[0] == 'set']


def rig(*servers, **guard_options):
    return Rig(servers, **guard_options)


# --- on_poll ---------------------------------------------------------------------------------------------------

def test_on_poll_drains_again_a_server_found_ready():
    r = rig({'state': 'ready'}, {'state': 'draining'})
    assert r.guard.on_poll(1.0, 3) is True
    assert r.sets() == [('m-lb1', 'draining')]
    [event] = r.guard.events
    # Recorded once the set returned (each set takes SET_SECONDS on the fake clock).
    assert event == {'at': iso(EPOCH + SET_SECONDS), 'event': 'came_back', 'lb': 'lb1', 'target': 'fake server m-lb1', 'seen': 'ready',
                     'set': 'draining'}
    assert r.guard.last_seen == {'lb1': 'ready', 'lb2': 'draining'}
    # Drained again: the next poll finds nothing to do.
    assert r.guard.on_poll(1.5, 3) is False
    assert len(r.sets()) == 1 and len(r.guard.events) == 1 and r.guard.last_seen['lb1'] == 'draining'


def test_on_poll_puts_back_the_state_asked_for():
    r = rig({'state': 'ready', 'want': 'maintenance'})
    assert r.guard.on_poll(0.0, 0) is True and r.sets() == [('m-lb1', 'maintenance')]


def test_on_poll_a_server_that_cannot_be_drained_again_is_noted_and_still_came_back():
    r = rig({'state': 'ready', 'fail_sets': ('draining',)})
    assert r.guard.on_poll(1.0, 0) is True
    [event] = r.guard.events
    assert (event['event'], event['seen'], event['set'], event['error']) == ('came_back', 'ready', None,
                                                                             'fake server m-lb1 refused draining')


def test_read_errors_during_the_wait_are_counted_not_fatal():
    r = rig({'unreadable': True}, {'state': 'draining'})
    assert r.guard.on_poll(1.0, 2) is False
    assert r.guard.on_poll(1.5, 2) is False
    assert r.guard.read_errors == 2 and r.guard.events == [] and r.sets() == []
    assert r.guard.last_seen == {'lb2': 'draining'}
    assert r.guard.describe()[0] == {'lb': 'lb1', 'target': 'fake server m-lb1', 'state': 'draining', 'want': 'draining',
                                     'last_seen': None}


# --- sticky escalation ------------------------------------------------------------------------------------------

def test_sticky_escalation_once_after_the_grace_while_requests_are_in_flight():
    # lb1 drains; lb2 was asked for maintenance already; lb3 reports its drain as maintenance (consul, file).
    r = rig({'state': 'draining'}, {'state': 'maintenance', 'want': 'maintenance'}, {'state': 'maintenance'},
            sticky_grace=10.0)
    assert r.guard.on_poll(9.999, 5) is False
    assert r.guard.on_poll(10.0, 0) is False        # nothing in flight: no reason to escalate
    assert r.guard.on_poll(12.0, None) is False     # in flight unknown
    assert r.sets() == [] and r.guard.escalated is False
    assert r.guard.on_poll(10.5, 2) is False        # escalating is not coming back
    assert r.guard.escalated is True and r.sets() == [('m-lb1', 'maintenance')]
    [event] = r.guard.events
    assert event == {'at': iso(EPOCH + SET_SECONDS), 'event': 'escalated', 'lb': 'lb1', 'target': 'fake server m-lb1', 'after_seconds': 10.5,
                     'in_flight': 2, 'seen': 'draining', 'set': 'maintenance'}
    assert [(d['lb'], d['state'], d['want']) for d in r.guard.describe()] == [
        ('lb1', 'draining', 'maintenance'), ('lb2', 'maintenance', 'maintenance'), ('lb3', 'draining', 'draining')]
    # Once only.
    r.guard.on_poll(30.0, 7)
    assert r.sets() == [('m-lb1', 'maintenance')] and len(r.guard.events) == 1


def test_after_escalation_a_server_that_came_back_is_put_into_maintenance():
    r = rig({'state': 'draining'}, sticky_grace=0.0)
    r.guard.on_poll(0.0, 1)
    r.adapters[0].state, r.adapters[0].pending = 'ready', None   # an HAProxy reload
    assert r.guard.on_poll(1.0, 1) is True
    assert r.sets() == [('m-lb1', 'maintenance'), ('m-lb1', 'maintenance')]


def test_without_sticky_grace_nothing_is_escalated():
    r = rig({'state': 'draining'})
    for elapsed in (0.0, 100.0, 100000.0):
        r.guard.on_poll(elapsed, 50)
    assert r.guard.escalated is False and r.sets() == []


def test_an_escalation_the_lb_refuses_is_noted_and_not_retried():
    r = rig({'state': 'draining', 'fail_sets': ('maintenance',)}, sticky_grace=5.0)
    r.guard.on_poll(6.0, 1)
    r.guard.on_poll(7.0, 1)
    assert r.guard.escalated is True and r.sets() == [('m-lb1', 'maintenance')]
    [event] = r.guard.events
    assert (event['event'], event['set'], event['error']) == ('escalated', None, 'fake server m-lb1 refused maintenance')


# --- confirm ------------------------------------------------------------------------------------------------------

def test_confirm_every_lb_answers_out_of_rotation():
    r = rig({'state': 'draining'}, {'state': 'maintenance'}, answer_timeout=5.0)
    assert r.guard.confirm() == (False, None)
    assert r.sets() == [] and r.guard.events == [] and r.clock.sleeps == []
    assert [item[0] for item in r.log] == ['read', 'read']


def test_confirm_drains_again_a_server_found_ready():
    r = rig({'state': 'draining'}, {'state': 'ready'})
    assert r.guard.confirm() == (True, None)
    assert r.sets() == [('m-lb2', 'draining')]
    assert [(e['event'], e['lb'], e['seen'], e['set']) for e in r.guard.events] == [('came_back', 'lb2', 'ready', 'draining')]


def test_confirm_a_server_found_ready_that_cannot_be_drained_again():
    r = rig({'state': 'ready', 'fail_sets': ('draining',)})
    came_back, failure = r.guard.confirm()
    assert came_back is True
    assert failure == 'lb1 reports fake server m-lb1 ready again before its stop and could not be drained again: ' \
                      'fake server m-lb1 refused draining'


def test_confirm_an_lb_that_never_answers_within_answer_timeout():
    r = rig({'state': 'ready'}, {'unreadable': True}, answer_timeout=5.0, interval=0.5)
    came_back, failure = r.guard.confirm()
    assert came_back is False
    assert failure == ('could not read lb2 within 5.0 s to confirm that the host is out of rotation before its stop: '
                       'lb2: fake server m-lb2: connection refused')
    # It was asked again until the deadline, on the fake clock; nothing was set (lb1 is not drained again either).
    assert r.clock.now - EPOCH == 5.0 and sum(r.clock.sleeps) == 5.0 and r.sets() == []
    [event] = r.guard.events
    assert (event['event'], event['lb'], event['error'], event['waited_seconds']) == (
        'unanswered', 'lb2', 'fake server m-lb2: connection refused', 5.0)


def test_confirm_waits_for_an_lb_that_answers_late():
    log = []
    late = ScriptedLB('m1', [LBError('timed out'), LBError('timed out'), 'draining'], log)
    clock = FakeClock()
    guard = LBGuard([entry('lb1', late)], answer_timeout=5.0, interval=0.5, clock=clock, wall=clock, sleep=clock.sleep)
    assert guard.confirm() == (False, None)
    assert clock.sleeps == [0.5, 0.5] and log == [('read', 'm1')] * 3 and guard.events == []


def test_confirm_an_lb_that_does_not_know_the_state():
    clock = FakeClock()
    guard = LBGuard([entry('lb1', ScriptedLB('m1', ['unknown']))], clock=clock, wall=clock, sleep=clock.sleep)
    assert guard.confirm() == (False, 'the host is not known to be out of rotation before its stop: lb1 reports '
                                      'scripted server m1 as unknown')


def test_confirm_in_check_mode_only_reads():
    r = rig({'state': 'ready'}, {'state': 'draining'}, check_mode=True)
    assert r.guard.confirm() == (False, None)
    assert r.sets() == [] and [item[0] for item in r.log] == ['read', 'read'] and r.guard.events == []
    r = rig({'unreadable': True}, check_mode=True, answer_timeout=1.0)
    came_back, failure = r.guard.confirm()
    assert came_back is False and failure.startswith('could not read lb1 within 1.0 s') and r.sets() == []


def test_events_are_bounded_and_the_rest_counted():
    r = rig({'state': 'ready', 'applies': False})   # the LB keeps answering ready
    for poll in range(_lb_guard.MAX_EVENTS + 7):
        assert r.guard.on_poll(poll * 0.5, 1) is True
    assert len(r.guard.events) == _lb_guard.MAX_EVENTS and r.guard.events_dropped == 7
    assert len(r.sets()) == _lb_guard.MAX_EVENTS + 7


def test_confirm_names_the_refusal_even_when_the_events_are_full():
    log = []
    lb = ScriptedLB('m1', ['ready'], log)
    clock = FakeClock()
    guard = LBGuard([entry('lb1', lb)], clock=clock, wall=clock, sleep=clock.sleep)
    for poll in range(_lb_guard.MAX_EVENTS):
        guard.on_poll(poll * 0.5, 1)
    lb.fail_sets = ('draining',)
    came_back, failure = guard.confirm()
    assert came_back is True and failure.endswith('could not be drained again: scripted server m1 refused draining')


# --- parse_entries ---------------------------------------------------------------------------------------------------

def test_parse_entries_builds_the_adapters(tmp_path):
    flag = str(tmp_path / 'lb1.flag')
    parsed = parse_entries([{'name': 'lb1', 'file': {'path': flag}},
                            {'name': 'lb2', 'state': 'maintenance', 'file': {'path': flag + '2'}}])
    assert [(p['name'], p['state'], p['kind']) for p in parsed] == [('lb1', 'draining', 'file'), ('lb2', 'maintenance', 'file')]
    assert isinstance(parsed[0]['adapter'], FileAdapter) and parsed[0]['adapter'].describe() == 'maintenance flag file %s' % flag
    assert parse_entries(None) == [] and parse_entries([]) == []


@pytest.mark.parametrize('entries,message', [
    (['lb1'], 'load_balancers[0] must be a dict with name and one of haproxy, consul, http, file'),
    ([{'file': {'path': '/f'}}], 'load_balancers[0] has no name (the load balancer, as the rollout names it)'),
    ([{'name': '', 'file': {'path': '/f'}}], 'load_balancers[0] has no name'),
    ([{'name': 3, 'file': {'path': '/f'}}], 'load_balancers[0] has no name'),
    ([{'name': 'lb1', 'file': {'path': '/f'}}, {'name': 'lb1', 'file': {'path': '/g'}}],
     'load_balancers[1] repeats the load balancer lb1'),
    ([{'name': 'lb1', 'state': 'ready', 'file': {'path': '/f'}}],
     "load_balancers[0] (lb1).state must be one of draining, maintenance, got 'ready'"),
    ([{'name': 'lb1', 'state': None, 'file': {'path': '/f'}}], 'load_balancers[0] (lb1).state must be one of'),
    ([{'name': 'lb1', 'file': {'path': '/f'}, 'consul': {'service_id': 'm1'}}],
     'load_balancers[0] (lb1) must have exactly one of haproxy, consul, http, file; it has consul, file'),
    ([{'name': 'lb1'}], 'load_balancers[0] (lb1) must have exactly one of haproxy, consul, http, file; it has none'),
    ([{'name': 'lb1', 'file': {'path': '/f'}, 'delegate_to': 'lb-host'}],
     'load_balancers[0] (lb1) must have exactly one of haproxy, consul, http, file and no other key; it has file, delegate_to'),
    ([{'name': 'lb1', 'file': {}}], 'load_balancers[0] (lb1).file: missing required arguments: path'),
    ([{'name': 'lb1', 'consul': {'service_id': 'm1', 'timeout': 0}}], 'load_balancers[0] (lb1).consul.timeout'),
])
def test_parse_entries_errors_name_the_entry(entries, message):
    with pytest.raises(SpecError) as caught:
        parse_entries(entries)
    assert str(caught.value).startswith(message), str(caught.value)
