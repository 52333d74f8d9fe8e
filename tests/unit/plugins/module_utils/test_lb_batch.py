# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BatchStateManager and parse_members: scripted adapters and a fake clock (nothing sleeps), the runtime API
stand-in replaying HAProxy 2.6.12 captures (m1 drain, m2 no check, m3 maint, m4 drain and down, m5 up), and a
real HAProxy where the binary is installed."""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._budget import BudgetError
from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import Adapter, LBError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_batch import (
    BatchStateManager,
    Member,
    parse_members,
)
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeHAProxy
# The real-HAProxy fixture lives with the adapter's tests; pytest finds a fixture imported into a test module.
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_lb_haproxy import (  # noqa: F401 pylint: disable=unused-import
    HAPROXY,
    real_haproxy,
)

EPOCH = 1764614400.0
SET_SECONDS = 0.25   # what one set_state costs on the fake clock


class FakeClock(object):
    """Serves as both the monotonic and the wall clock; moves only when slept or when an adapter is sent something."""

    def __init__(self):
        self.now = EPOCH
        self.sleeps = []
        self.on_sleep = None

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


class FakeAdapter(Adapter):
    """One scripted server. Every read and set goes to the shared C(log).

    C(lag): reads after a set before it shows; C(applies=False): sets are accepted and never show;
    C(unreadable): every read fails; C(fail_sets): states whose set raises; C(in_flight): one value a read
    (the last repeats); C(merge_drain): draining is reported as maintenance (like consul and file).
    """

    kind = 'fake'

    def __init__(self, name, log, clock, state='ready', lag=0, applies=True, unreadable=False, fail_sets=(),
                 in_flight=None, merge_drain=False):
        super(FakeAdapter, self).__init__()
        self.name = name
        self.log = log
        self.clock = clock
        self.state = state
        self.lag = lag
        self.applies = applies
        self.unreadable = unreadable
        self.fail_sets = fail_sets
        self.in_flight_values = list(in_flight) if isinstance(in_flight, (list, tuple)) else [in_flight]
        self.merge_drain = merge_drain
        self.pending = None
        self.wait = 0

    def describe(self):
        return 'fake server %s' % self.name

    def effective_state(self, state):
        return 'maintenance' if self.merge_drain and state == 'draining' else state

    def _get_state(self):
        self.log.append(('read', self.name))
        if self.unreadable:
            raise LBError('%s: connection refused' % self.describe())
        if self.pending is not None:
            if self.wait == 0:
                self.state, self.pending = self.pending, None
            else:
                self.wait -= 1
        in_flight = self.in_flight_values.pop(0) if len(self.in_flight_values) > 1 else self.in_flight_values[0]
        return {'state': self.state, 'raw': {}, 'in_flight': in_flight}

    def set_state(self, state):
        self.log.append(('set', self.name, state))
        self.clock.now += SET_SECONDS
        if state in self.fail_sets:
            raise LBError('%s refused %s' % (self.describe(), state))
        if self.applies:
            self.pending, self.wait = state, self.lag


class Rig(object):
    """Members of load balancer lb1 (one pool, C(lb1)), each behind a FakeAdapter, parsed as the module does."""

    def __init__(self, **servers):
        self.clock = FakeClock()
        self.log = []
        entries = [{'host': host, 'file': {'path': '/nonexistent/%s.flag' % host}} for host in sorted(servers)]
        self.members = parse_members(entries, 'lb1')
        self.adapters = {}
        for member in self.members:
            member.adapter = FakeAdapter(member.host, self.log, self.clock, **servers[member.host])
            self.adapters[member.host] = member.adapter

    def manager(self, batch, min_available=0, **kwargs):
        kwargs.setdefault('verify_timeout', 2.0)
        kwargs.setdefault('verify_interval', 0.5)
        return BatchStateManager('lb1', self.members, batch, min_available, clock=self.clock, wall=self.clock,
                                 sleep=self.clock.sleep, **kwargs)

    def run(self, state, batch, min_available=0, manager=None, **kwargs):
        options = dict((key, kwargs.pop(key)) for key in ('verify_timeout', 'verify_interval', 'available_timeout',
                                                          'answer_timeout') if key in kwargs)
        return self.manager(batch, min_available, **options).run(state, **kwargs)

    def sets(self):
        return [entry[1:] for entry in self.log if entry[0] == 'set']

    def states(self):
        return dict((host, adapter.state) for host, adapter in self.adapters.items())


def four_ready(**changes):
    servers = dict((host, {}) for host in 'abcd')
    for host, options in changes.items():
        servers[host] = options
    return Rig(**servers)


def by_host(result):
    return dict((server['host'], server) for server in result['servers'])


# ----------------------------------------------------------------------------------------- the budget holds

def test_budget_holds_every_batch_server_marked_in_one_read():
    rig = four_ready(a={'in_flight': [7, 5, 0], 'lag': 1}, b={'in_flight': 2})
    result, failure = rig.run('draining', ['a', 'b'], min_available=2)
    assert failure is None
    # One read of every member, the budget on it, then the batch marked, then reads until it shows.
    assert rig.log[:6] == [('read', 'a'), ('read', 'b'), ('read', 'c'), ('read', 'd'),
                           ('set', 'a', 'draining'), ('set', 'b', 'draining')]
    assert rig.sets() == [('a', 'draining'), ('b', 'draining')]
    assert rig.states() == {'a': 'draining', 'b': 'draining', 'c': 'ready', 'd': 'ready'}
    assert result['changed'] is True and result['refused'] is False
    assert (result['lb'], result['state']) == ('lb1', 'draining')
    assert [s['host'] for s in result['servers']] == ['a', 'b']
    a, b = result['servers']
    assert a == {'host': 'a', 'kind': 'file', 'target': 'fake server a', 'state': 'draining',
                 'previous_state': 'ready', 'previous_status': None, 'status': None, 'changed': True,
                 'in_flight_at_mark': 5, 'marked_at': result['marked_at'], 'error': None}
    assert (b['previous_state'], b['changed'], b['in_flight_at_mark']) == ('ready', True, 2)
    assert result['marked_at'] is not None and b['marked_at'] == result['marked_at']
    # The budget was checked on the read the mark was made on.
    [pool] = result['budget']
    assert (pool['pool'], pool['size'], pool['available'], pool['taking'], pool['remaining'], pool['required'],
            pool['ok'], pool['unknown']) == ('lb1', 4, 4, 2, 2, 2, True, [])
    assert pool['taking_members'] == ['a', 'b']
    # Times: started, marked after the two sets, finished after one verify interval (a showed on the second read).
    assert result['started_at'] == EPOCH
    assert result['marked_at'] == EPOCH + 2 * SET_SECONDS
    assert result['verify_seconds'] == 0.5
    assert result['finished_at'] == EPOCH + 2 * SET_SECONDS + 0.5
    assert 'put_back' not in result and 'diff' not in result


def test_percentage_and_per_pool_floors():
    rig = four_ready()
    result, failure = rig.run('maintenance', ['a'], min_available='75%')
    assert failure is None and result['budget'][0]['required'] == 3 and rig.sets() == [('a', 'maintenance')]
    rig = four_ready()
    result, failure = rig.run('draining', ['a', 'b'], min_available={'lb1': 3, 'default': 1})
    assert result['refused'] is True and 'below min_available=3' in failure and rig.sets() == []


def test_servers_already_in_the_state_are_not_sent_anything():
    rig = four_ready(a={'state': 'draining'})
    result, failure = rig.run('draining', ['a', 'b'], min_available=1)
    assert failure is None and rig.sets() == [('b', 'draining')]
    assert by_host(result)['a']['changed'] is False and by_host(result)['b']['changed'] is True
    rig = four_ready(a={'state': 'draining'})
    result, failure = rig.run('draining', ['a'])
    assert failure is None and rig.sets() == [] and result['changed'] is False
    assert result['marked_at'] == EPOCH and result['verify_seconds'] == 0.0


def test_kinds_that_merge_drain_into_maintenance():
    rig = four_ready(a={'merge_drain': True}, b={'merge_drain': True, 'state': 'maintenance'})
    result, failure = rig.run('draining', ['a', 'b'], min_available=1)
    assert failure is None and rig.sets() == [('a', 'maintenance')]
    assert [(s['state'], s['changed']) for s in result['servers']] == [('maintenance', True), ('maintenance', False)]


# ----------------------------------------------------------------------------------------- refused

def test_budget_refused_nothing_set_message_names_the_pool():
    rig = four_ready(a={'in_flight': 3})
    result, failure = rig.run('draining', ['a', 'b', 'c'], min_available=2, diff_mode=True)
    assert rig.sets() == [] and rig.states() == dict.fromkeys('abcd', 'ready')
    assert result['refused'] is True and result['changed'] is False
    assert result['marked_at'] is None and result['finished_at'] == EPOCH and 'verify_seconds' not in result
    assert all(server['marked_at'] is None for server in result['servers'])
    assert failure.startswith('Batch refused by the disruption budget on lb1, nothing was touched: ')
    assert ('pool lb1: taking out 3 of 4 available servers (a, b, c) would leave 1 available, below min_available=2'
            in failure)
    assert 'shutdown_serial' in failure and 'min_available' in failure
    # Each server reports the state it is still in.
    assert [(s['state'], s['previous_state'], s['changed'], s['in_flight_at_mark']) for s in result['servers']] == [
        ('ready', 'ready', False, None)] * 3
    assert result['budget'][0]['ok'] is False and result['budget'][0]['remaining'] == 1


def test_refused_in_check_mode_too():
    rig = four_ready()
    result, failure = rig.run('maintenance', ['a', 'b', 'c', 'd'], min_available=1, check_mode=True)
    assert result['refused'] is True and failure and rig.sets() == []


def test_budget_counts_only_available_servers():
    # c and d are already out: taking a leaves b alone.
    rig = four_ready(c={'state': 'maintenance'}, d={'state': 'draining'})
    result, failure = rig.run('draining', ['a'], min_available=2)
    assert result['refused'] is True and 'taking out 1 of 2 available servers (a) would leave 1 available' in failure
    assert rig.sets() == []


def test_malformed_min_available_raises_before_anything_is_sent():
    rig = four_ready()
    with pytest.raises(BudgetError, match=r"min_available must be a non-negative integer count .* got 'half'"):
        rig.run('draining', ['a'], min_available='half')
    with pytest.raises(BudgetError, match='min_available names pools that are not in the query results: lb2'):
        rig.run('draining', ['a'], min_available={'lb2': 1, 'default': 1})
    assert rig.sets() == []


@pytest.mark.parametrize('off', [0, '0', '0%'])
def test_min_available_zero_turns_the_budget_off(off):
    # Every server taken out, and a member whose state cannot be read: without a budget, neither matters.
    rig = four_ready(d={'unreadable': True})
    result, failure = rig.run('draining', ['a', 'b', 'c'], min_available=off)
    assert failure is None and result['budget'] == [] and result['refused'] is False
    assert rig.sets() == [('a', 'draining'), ('b', 'draining'), ('c', 'draining')]


@pytest.mark.parametrize('state', ['ready', 'restore'])
def test_putting_back_is_never_refused(state):
    rig = four_ready(a={'state': 'maintenance'}, b={'state': 'maintenance'}, c={'state': 'maintenance'})
    result, failure = rig.run(state, ['a', 'b'], min_available=4,
                              restore_states={'a': 'ready', 'b': 'ready'} if state == 'restore' else None)
    assert failure is None and result['budget'] == [] and rig.sets() == [('a', 'ready'), ('b', 'ready')]


# ----------------------------------------------------------------------------------------- fail closed

def test_unreadable_batch_member_fails_closed_nothing_changed():
    rig = four_ready(a={'unreadable': True})
    result, failure = rig.run('draining', ['a', 'b'], min_available=1)
    assert rig.sets() == []
    assert failure.startswith('lb1: could not read the state of a, so nothing was changed: '
                              'a: fake server a: connection refused.')
    assert result['changed'] is False and result['marked_at'] is None and result['refused'] is False
    a, b = result['servers']
    assert (a['previous_state'], a['state'], a['changed'], a['error']) == (
        None, None, False, 'fake server a: connection refused')
    assert (b['previous_state'], b['state'], b['changed'], b['error']) == ('ready', 'ready', False, None)


def test_unreadable_batch_member_without_budget_fails_closed_too():
    rig = four_ready(b={'unreadable': True})
    result, failure = rig.run('ready', ['a', 'b'])
    assert 'could not read the state of b' in failure and rig.sets() == [] and result['changed'] is False


@pytest.mark.parametrize('other', [{'unreadable': True}, {'state': 'unknown'}])
def test_unknown_member_outside_the_batch_refuses_the_batch(other):
    rig = four_ready(d=other)
    result, failure = rig.run('draining', ['a'], min_available=1)
    assert result['refused'] is True and rig.sets() == []
    assert 'not counted as available because their state is unknown: d' in failure
    assert result['budget'][0]['unknown'] == ['d']
    assert 'the budget fails closed' in failure


# ----------------------------------------------------------------------------------------- verify, put back

def test_change_that_never_shows_is_put_back_to_exactly_the_previous_states():
    rig = four_ready(a={'applies': False}, b={'applies': False}, d={'applies': False})
    result, failure = rig.run('maintenance', ['a', 'b'], min_available=0, verify_timeout=2.0, verify_interval=0.5)
    # a and b were changed and went back to what they were.
    assert rig.sets() == [('a', 'maintenance'), ('b', 'maintenance'), ('a', 'ready'), ('b', 'ready')]
    assert result['put_back'] == ['a to ready', 'b to ready']
    assert [(s['host'], s['state'], s['changed']) for s in result['servers']] == [
        ('a', 'ready', False), ('b', 'ready', False)]
    assert result['changed'] is False and result['marked_at'] == EPOCH + 2 * SET_SECONDS
    assert result['verify_seconds'] == 2.0 and rig.clock.sleeps == [0.5, 0.5, 0.5, 0.5]
    assert failure == ('lb1: maintenance did not take effect within 2.0 s: fake server a reports ready (expected '
                       'maintenance); fake server b reports ready (expected maintenance). '
                       'Put back: a to ready, b to ready.')


def test_a_mark_never_moves_a_server_towards_service():
    # b was put in maintenance by an operator before the run: draining would let its sticky clients back in.
    rig = four_ready(b={'state': 'maintenance'}, c={'state': 'draining'})
    result, failure = rig.run('draining', ['a', 'b', 'c'], min_available=0, verify_timeout=2.0, verify_interval=0.5)
    assert failure is None and rig.sets() == [('a', 'draining')]
    assert [(s['host'], s['previous_state'], s['state'], s['changed']) for s in result['servers']] == [
        ('a', 'ready', 'draining', True), ('b', 'maintenance', 'maintenance', False), ('c', 'draining', 'draining', False)]


def test_a_put_back_waits_for_the_load_balancer_to_answer_again():
    # The admin API went away mid-batch: the put-back reads until it answers, then puts back.
    rig = four_ready(a={'state': 'draining', 'unreadable': True}, b={'state': 'draining'})
    reads = []

    def back_after_three_reads():
        reads.append(1)
        if len(reads) == 3:
            rig.adapters['a'].unreadable = False

    original = rig.adapters['a']._get_state

    def flaky():
        back_after_three_reads()
        return original()
    rig.adapters['a']._get_state = flaky
    result, failure = rig.run('restore', ['a', 'b'], restore_states={'a': 'ready', 'b': 'ready'}, answer_timeout=5.0)
    assert failure is None and rig.sets() == [('a', 'ready'), ('b', 'ready')]
    assert result['answer_waited_seconds'] == 1.0


def test_a_put_back_that_never_reaches_the_load_balancer_changes_nothing():
    rig = four_ready(a={'state': 'draining', 'unreadable': True}, b={'state': 'draining'})
    result, failure = rig.run('restore', ['a', 'b'], restore_states={'a': 'ready', 'b': 'ready'}, answer_timeout=2.0)
    assert rig.sets() == [] and result['answer_waited_seconds'] == 2.0
    assert failure.startswith('lb1: could not read the state of a (read for 2.0 s), so nothing was changed: a: fake server a: '
                              'connection refused.')


def test_a_slow_change_within_verify_timeout_is_kept():
    rig = four_ready(a={'lag': 3})
    result, failure = rig.run('maintenance', ['a'], verify_timeout=2.0, verify_interval=0.5)
    assert failure is None and result['verify_seconds'] == 1.5 and rig.sets() == [('a', 'maintenance')]
    assert by_host(result)['a']['state'] == 'maintenance' and by_host(result)['a']['changed'] is True


def test_reads_failing_after_the_mark_count_as_not_in_effect():
    rig = four_ready(a={'applies': False})
    adapter = rig.adapters['a']
    original = adapter._get_state

    def flaky():
        if rig.sets():
            raise LBError('admin API timed out')
        return original()

    adapter._get_state = flaky
    result, failure = rig.run('draining', ['a'], verify_timeout=1.0)
    assert 'a: admin API timed out' in failure and result['put_back'] == ['a to ready']


def test_a_refused_set_puts_back_the_others_without_verifying():
    rig = four_ready(b={'fail_sets': ('draining',)})
    result, failure = rig.run('draining', ['a', 'b', 'c'], min_available=1)
    assert rig.sets() == [('a', 'draining'), ('b', 'draining'), ('c', 'draining'), ('a', 'ready'), ('c', 'ready')]
    assert rig.states() == dict.fromkeys('abcd', 'ready')
    assert 'verify_seconds' not in result and result['put_back'] == ['a to ready', 'c to ready']
    assert by_host(result)['b']['error'] == 'fake server b refused draining'
    assert 'b: fake server b refused draining' in failure and 'Put back: a to ready, c to ready.' in failure
    assert result['changed'] is False


def test_a_failed_put_back_is_reported_and_left_changed():
    rig = four_ready(a={'applies': False, 'fail_sets': ('ready',)}, b={'applies': False})
    result, failure = rig.run('draining', ['a', 'b'], verify_timeout=0.5)
    assert result['put_back'] == ['a to ready FAILED: fake server a refused ready', 'b to ready']
    a, b = result['servers']
    assert (a['state'], a['changed']) == ('draining', True) and (b['state'], b['changed']) == ('ready', False)
    assert result['changed'] is True and 'Put back: a to ready FAILED' in failure


# ----------------------------------------------------------------------------------------- restore

def test_restore_puts_back_the_given_states():
    rig = four_ready(a={'state': 'draining'}, b={'state': 'maintenance'}, c={'state': 'maintenance'})
    result, failure = rig.run('restore', ['a', 'b', 'c'], min_available=3,
                              restore_states={'a': 'ready', 'b': 'draining', 'c': 'maintenance', 'x': 'ready'})
    assert failure is None and result['state'] == 'restore'
    assert rig.sets() == [('a', 'ready'), ('b', 'draining')]
    assert [(s['host'], s['previous_state'], s['state'], s['changed']) for s in result['servers']] == [
        ('a', 'draining', 'ready', True), ('b', 'maintenance', 'draining', True), ('c', 'maintenance', 'maintenance', False)]
    assert result['budget'] == [] and result['refused'] is False


@pytest.mark.parametrize('restore_states, match', [
    (None, r"restore_states has no state for a \(one of ready, draining, maintenance expected, got None\)"),
    ({'b': 'ready'}, r'restore_states has no state for a .*got None'),
    ({'a': 'up'}, r"restore_states has no state for a .*got 'up'"),
    ({'a': ['ready']}, r"restore_states has no state for a .*got \['ready'\]"),
    ({'a': 'unknown'}, r"got 'unknown'"),
])
def test_restore_without_a_valid_state_raises_before_reading(restore_states, match):
    rig = four_ready()
    with pytest.raises(SpecError, match=match):
        rig.run('restore', ['a'], restore_states=restore_states)
    assert rig.log == []


def test_ready_waits_for_available_with_available_timeout():
    # A server reported ready and serving at once passes on the first read.
    rig = four_ready(a={'state': 'maintenance'})
    result, failure = rig.run('ready', ['a'], available_timeout=5.0)
    assert failure is None and result['verify_seconds'] == 0.0


# ----------------------------------------------------------------------------------------- check mode, diff

def test_check_mode_reads_checks_and_changes_nothing():
    rig = four_ready(b={'state': 'draining'})
    result, failure = rig.run('draining', ['a', 'b'], min_available=2, check_mode=True)
    assert failure is None and rig.sets() == []
    assert [entry for entry in rig.log if entry[0] == 'read'] == [('read', h) for h in 'abcd']
    assert result['changed'] is True and result['marked_at'] is None and 'verify_seconds' not in result
    assert [(s['host'], s['state'], s['changed']) for s in result['servers']] == [
        ('a', 'draining', True), ('b', 'draining', False)]
    assert result['budget'][0]['ok'] is True and result['budget'][0]['taking'] == 1


def test_diff_before_and_after_per_host():
    rig = four_ready(b={'state': 'maintenance'})
    result, failure = rig.run('draining', ['a', 'b'], diff_mode=True, check_mode=True)
    assert result['diff'] == {
        'before': {'a': {'state': 'ready'}, 'b': {'state': 'maintenance'}},
        'after': {'a': {'state': 'draining'}, 'b': {'state': 'maintenance'}},
        'before_header': 'lb1', 'after_header': 'lb1',
    }
    result, failure = rig.run('draining', ['a', 'b'])
    assert 'diff' not in result


# ----------------------------------------------------------------------------------------- parse_members

def test_parse_members_validates_with_the_adapter_specs_and_drops_nulls():
    members = parse_members([
        {'host': 'gpu-1', 'haproxy': {'socket': '/run/haproxy/admin.sock', 'backend': 'models', 'server': 'm1',
                                      'timeout': None, 'host': None}},
        {'host': 'gpu-1', 'haproxy': {'socket': '/run/haproxy/admin.sock', 'backend': 'models', 'server': 'm1b'}},
        {'host': 'gpu-2', 'consul': {'service_id': 'model-gpu-2'}, 'haproxy': None},
        {'host': 'gpu-3', 'file': {'path': '/var/lib/model-server/maintenance'}},
        {'host': 'gpu-4', 'http': {'url': 'http://10.0.0.4:8000/admin/state'}},
    ], 'lb1')
    assert [(m.host, m.kind) for m in members] == [('gpu-1', 'haproxy'), ('gpu-1', 'haproxy'), ('gpu-2', 'consul'),
                                                   ('gpu-3', 'file'), ('gpu-4', 'http')]
    first = members[0]
    assert first.options['timeout'] == 5.0 and first.options['host'] is None   # the null dropped, the default applied
    assert first.entry == {'name': 'lb1', 'haproxy': first.options}
    assert first.runtime_key() == ('/run/haproxy/admin.sock', None, None, 5.0)
    assert members[2].options['url'] == 'http://127.0.0.1:8500' and members[2].options['validate_certs'] is True
    assert isinstance(members[0], Member) and members[0].adapter.kind == 'haproxy'


@pytest.mark.parametrize('members, message', [
    (['gpu-1'], 'members[0] must be a dict with host and one of haproxy, consul, http, file, got str'),
    ([{'haproxy': {'socket': '/s', 'backend': 'b', 'server': 's'}}],
     'members[0] has no host (the inventory name of the model host this entry serves)'),
    ([{'host': '', 'file': {'path': '/f'}}], 'members[0] has no host'),
    ([{'host': 'gpu-1'}], 'members[0] (gpu-1) must have exactly one of haproxy, consul, http, file; it has none'),
    ([{'host': 'gpu-1', 'file': {'path': '/f'}, 'consul': {'service_id': 's'}}],
     'members[0] (gpu-1) must have exactly one of haproxy, consul, http, file; it has consul, file'),
    ([{'host': 'gpu-1', 'file': {'path': '/f'}, 'delegate_to': 'lb1'}],
     'members[0] (gpu-1) must have exactly one of haproxy, consul, http, file and no other key; it has file, '
     'delegate_to'),
    ([{'host': 'gpu-1', 'file': {'path': '/f'}}, {'host': 'gpu-2', 'haproxy': {'socket': '/s', 'server': 'm2'}}],
     'members[1] (gpu-2).haproxy: missing required arguments: backend'),
    ([{'host': 'gpu-1', 'haproxy': {'socket': '/s', 'host': 'lb', 'port': 9999, 'backend': 'b', 'server': 's'}}],
     'members[0] (gpu-1).haproxy: parameters are mutually exclusive: socket|host'),
    ([{'host': 'gpu-1', 'haproxy': {'backend': 'b', 'server': 's'}}],
     'members[0] (gpu-1).haproxy: one of the following is required: socket, host'),
    ([{'host': 'gpu-1', 'file': 'path=/f'}], 'members[0] (gpu-1).file must be a dict, got str'),
    ([{'host': 'gpu-1', 'file': {'path': '/f', 'mode': '0644'}}],
     'members[0] (gpu-1).file: mode. Supported parameters include: create_parent, path, reason.'),
    ([{'host': 'gpu-1', 'http': {'url': 'http://x/', 'timeout': 'soon'}}],
     "members[0] (gpu-1).http: argument 'timeout' is of type"),
    ([{'host': 'gpu-1', 'file': {'path': '/f'}}, {'host': 'gpu-1', 'file': {'path': '/f', 'reason': 'x'}}],
     'members[1] (gpu-1) repeats maintenance flag file /f'),
    ([{'host': 'gpu-1', 'haproxy': {'socket': '/s', 'backend': 'b', 'server': 's'}},
      {'host': 'gpu-1', 'haproxy': {'socket': '/s', 'backend': 'b', 'server': 's', 'timeout': 2}}],
     'members[1] (gpu-1) repeats HAProxy server b/s (HAProxy runtime socket /s)'),
])
def test_parse_members_errors_name_the_entry(members, message):
    with pytest.raises(SpecError) as err:
        parse_members(members, 'lb1')
    assert message in str(err.value)


def test_parse_members_refuses_an_injected_haproxy_name():
    with pytest.raises(HAProxyError, match='HAProxy server name'):
        parse_members([{'host': 'gpu-1', 'haproxy': {'socket': '/s', 'backend': 'models', 'server': 'm1;shutdown'}}],
                      'lb1')


# ----------------------------------------------------------------------------------------- HAProxy pools

@pytest.fixture
def fake(short_dir):
    with FakeHAProxy(os.path.join(short_dir, 'admin.sock')) as server:
        yield server


def haproxy_members(path, servers=('m1', 'm2', 'm3', 'm4', 'm5'), backend='models'):
    entries = [{'host': 'gpu-%s' % server[1:], 'haproxy': {'socket': path, 'backend': backend, 'server': server}}
               for server in servers]
    return parse_members(entries, 'lb1')


def haproxy_manager(members, batch, min_available=0, clock=None, **kwargs):
    clock = clock or FakeClock()
    kwargs.setdefault('verify_interval', 0.5)
    return BatchStateManager('lb1', members, batch, min_available, clock=clock, wall=clock, sleep=clock.sleep,
                             **kwargs)


def test_haproxy_pool_read_whole_marked_verified(fake):
    result, failure = haproxy_manager(haproxy_members(fake.path), ['gpu-5'], min_available=1).run('draining')
    assert failure is None
    # One show stat and one show servers state for the five members, the set, and one read back.
    assert fake.commands == ['show stat', 'show servers state', 'set server models/m5 state drain',
                             'show stat', 'show servers state']
    [server] = result['servers']
    assert server == {'host': 'gpu-5', 'kind': 'haproxy',
                      'target': 'HAProxy server models/m5 (HAProxy runtime socket %s)' % fake.path,
                      'state': 'draining', 'previous_state': 'ready', 'previous_status': 'UP', 'status': 'DRAIN',
                      'changed': True, 'in_flight_at_mark': 0, 'marked_at': result['marked_at'], 'error': None}
    [pool] = result['budget']
    assert (pool['pool'], pool['size'], pool['available'], pool['taking'], pool['remaining'], pool['ok']) == (
        'lb1/models', 5, 2, 1, 1, True)
    assert pool['members'] == {'gpu-1': 'DRAIN', 'gpu-2': 'no check', 'gpu-3': 'MAINT', 'gpu-4': 'DOWN',
                               'gpu-5': 'UP'}


def test_haproxy_refusal_names_the_pool_and_sends_no_set(fake):
    result, failure = haproxy_manager(haproxy_members(fake.path), ['gpu-5'], min_available=2).run('maintenance')
    assert result['refused'] is True and fake.sets() == []
    assert fake.commands == ['show stat', 'show servers state']
    assert ('pool lb1/models: taking out 1 of 2 available servers (gpu-5) would leave 1 UP, below min_available=2'
            in failure)


def test_haproxy_server_missing_from_the_backend_fails_closed(fake):
    members = haproxy_members(fake.path, servers=('m2', 'm5', 'm9'))
    result, failure = haproxy_manager(members, ['gpu-9', 'gpu-5']).run('draining')
    assert fake.sets() == [] and result['changed'] is False
    assert ('could not read the state of gpu-5' not in failure
            and 'could not read the state of gpu-9' in failure
            and 'HAProxy runtime socket %s has no server models/m9' % fake.path in failure)
    result, failure = haproxy_manager(members, ['gpu-5'], min_available=1).run('draining')
    assert result['refused'] is True and fake.sets() == [] and 'unknown: gpu-9' in failure


def test_haproxy_unreachable_runtime_api_fails_only_its_members(fake, short_dir):
    members = parse_members([
        {'host': 'gpu-5', 'haproxy': {'socket': fake.path, 'backend': 'models', 'server': 'm5'}},
        {'host': 'gpu-6', 'haproxy': {'socket': os.path.join(short_dir, 'none.sock'), 'backend': 'models',
                                      'server': 'm6'}},
    ], 'lb1')
    observed = haproxy_manager(members, ['gpu-5']).read()
    assert observed[0] == {'state': 'ready', 'status': 'UP', 'available': True, 'in_flight': 0}
    assert observed[1]['failed'] is True and 'none.sock' in observed[1]['msg']
    result, failure = haproxy_manager(members, ['gpu-5'], min_available=1).run('draining')
    assert result['refused'] is True and 'unknown: gpu-6' in failure and fake.sets() == []


def test_haproxy_mark_that_never_shows_is_put_back(short_dir):
    with FakeHAProxy(os.path.join(short_dir, 'ignore.sock'), ignore_sets=True) as fake:
        result, failure = haproxy_manager(haproxy_members(fake.path), ['gpu-5', 'gpu-2'],
                                          verify_timeout=1.0).run('draining')
        assert fake.sets() == ['set server models/m2 state drain', 'set server models/m5 state drain',
                               'set server models/m2 state ready', 'set server models/m5 state ready']
    assert result['put_back'] == ['gpu-2 to ready', 'gpu-5 to ready']
    assert 'HAProxy server models/m5 (HAProxy runtime socket %s) reports ready (expected draining)' % fake.path in failure


def test_haproxy_restore_waits_until_up(fake):
    fake.op[('models', 'm1')] = 0   # m1 is in drain and its health check fails: DOWN once ready
    clock = FakeClock()

    def comes_up(sleeps):
        if sleeps == 2:
            fake.op[('models', 'm1')] = 2

    clock.on_sleep = comes_up
    manager = haproxy_manager(haproxy_members(fake.path), ['gpu-1'], clock=clock, verify_timeout=1.0,
                              available_timeout=5.0)
    result, failure = manager.run('restore', restore_states={'gpu-1': 'ready'})
    assert failure is None, failure
    [server] = result['servers']
    assert (server['previous_state'], server['previous_status'], server['state'], server['status']) == (
        'draining', 'DRAIN', 'ready', 'UP')
    assert result['verify_seconds'] == 1.0 and fake.sets() == ['set server models/m1 state ready']


def test_haproxy_ready_that_never_comes_up_is_put_back(fake):
    # m4 is in drain and stopped: put back to ready it stays DOWN.
    clock = FakeClock()
    manager = haproxy_manager(haproxy_members(fake.path), ['gpu-4'], clock=clock, verify_timeout=1.0,
                              available_timeout=2.0)
    result, failure = manager.run('ready')
    assert fake.sets() == ['set server models/m4 state ready', 'set server models/m4 state drain']
    assert result['verify_seconds'] == 3.0 and result['put_back'] == ['gpu-4 to draining']
    assert 'is ready but not serving yet (status DOWN)' in failure
    # Without available_timeout, ready is enough.
    result, failure = haproxy_manager(haproxy_members(fake.path), ['gpu-4'], verify_timeout=1.0).run('ready')
    assert failure is None and result['servers'][0]['status'] == 'DOWN'


# ----------------------------------------------------------------------------------------- real HAProxy

@pytest.mark.skipif(not HAPROXY, reason='haproxy is not installed (molecule exercises it)')
def test_real_haproxy_refuse_mark_restore(real_haproxy):
    members = parse_members([
        {'host': 'gpu-%d' % number, 'haproxy': {'socket': real_haproxy, 'backend': 'models', 'server': 'm%d' % number}}
        for number in (1, 2, 3)], 'lb1')

    def manager(min_available=0):
        return BatchStateManager('lb1', members, ['gpu-1'], min_available, verify_timeout=5.0, verify_interval=0.05)

    # At most m1 and m2 are available (m3 is disabled): keeping 3 is impossible.
    result, failure = manager(min_available=3).run('draining')
    assert result['refused'] is True and 'pool lb1/models' in failure
    assert manager().read()[0]['state'] == 'ready'
    result, failure = manager().run('draining')
    assert failure is None, failure
    [server] = result['servers']
    assert (server['previous_state'], server['previous_status'], server['state'], server['status']) == (
        'ready', 'no check', 'draining', 'DRAIN')
    assert server['in_flight_at_mark'] == 0 and result['marked_at'] >= result['started_at']
    assert manager().read()[2]['state'] == 'maintenance'
    result, failure = manager().run('restore', restore_states={'gpu-1': server['previous_state']})
    assert failure is None, failure
    assert result['servers'][0]['state'] == 'ready' and manager().read()[0]['state'] == 'ready'
