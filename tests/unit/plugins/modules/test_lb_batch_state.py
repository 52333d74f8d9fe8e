# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lb_batch_state through main(), over the runtime API stand-in replaying HAProxy 2.6.12 captures (m1 drain,
m2 no check, m3 maint, m4 drain and down, m5 up) and over flag files."""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.modules import lb_batch_state
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import FakeHAProxySocket, read_fixture
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeHAProxy


@pytest.fixture
def haproxy(short_dir):
    with FakeHAProxy(os.path.join(short_dir, 'admin.sock')) as fake:
        yield fake


def members(fake, servers=('m1', 'm2', 'm3', 'm4', 'm5')):
    return [{'host': 'gpu-%s' % server[1:], 'haproxy': {'socket': fake.path, 'backend': 'models', 'server': server}}
            for server in servers]


@pytest.fixture
def run(run_module, haproxy):
    def runner(extra=None, **kwargs):
        args = {'name': 'lb1', 'state': 'draining', 'members': members(haproxy), 'batch': ['gpu-5'],
                'verify_interval': 0.05}
        args.update(extra or {})
        return run_module(lb_batch_state, args, **kwargs)
    return runner


def test_marks_the_batch_when_the_budget_holds(run, haproxy):
    result = run({'min_available': 1}, expect_failed=False)
    assert haproxy.sets() == ['set server models/m5 state drain']
    assert result['changed'] is True and result['refused'] is False
    assert (result['lb'], result['state']) == ('lb1', 'draining')
    [server] = result['servers']
    assert (server['host'], server['previous_state'], server['previous_status'], server['state'], server['status'],
            server['in_flight_at_mark']) == ('gpu-5', 'ready', 'UP', 'draining', 'DRAIN', 0)
    assert result['budget'][0]['pool'] == 'lb1/models' and result['budget'][0]['ok'] is True
    assert result['started_at'] <= result['marked_at'] <= result['finished_at']
    assert isinstance(result['verify_seconds'], float)
    # Run again: already draining, nothing sent.
    result = run({'min_available': 1}, expect_failed=False)
    assert result['changed'] is False and len(haproxy.sets()) == 1


def test_check_mode_and_diff(run, haproxy):
    result = run({'min_available': '0%', 'batch': ['gpu-5', 'gpu-2']}, check_mode=True, diff=True,
                 expect_failed=False)
    assert haproxy.sets() == [] and result['changed'] is True and result['marked_at'] is None
    assert result['diff']['before'] == {'gpu-2': {'state': 'ready'}, 'gpu-5': {'state': 'ready'}}
    assert result['diff']['after'] == {'gpu-2': {'state': 'draining'}, 'gpu-5': {'state': 'draining'}}


def test_refusal_fails_and_touches_nothing(run, haproxy):
    result = run({'min_available': 2, 'state': 'maintenance'}, expect_failed=True)
    assert haproxy.sets() == [] and result['refused'] is True and result['changed'] is False
    assert result['msg'].startswith('Batch refused by the disruption budget on lb1, nothing was touched: pool '
                                    'lb1/models: taking out 1 of 2 available servers (gpu-5) would leave 1 UP, '
                                    'below min_available=2')
    assert result['servers'][0]['state'] == 'ready' and result['budget'][0]['ok'] is False


def test_restore_puts_back_previous_states(run, haproxy):
    result = run({'state': 'restore', 'batch': ['gpu-1', 'gpu-3'],
                  'restore_states': {'gpu-1': 'ready', 'gpu-3': 'draining'}}, expect_failed=False)
    assert haproxy.sets() == ['set server models/m1 state ready', 'set server models/m3 state drain']
    assert [(s['host'], s['previous_state'], s['state']) for s in result['servers']] == [
        ('gpu-1', 'draining', 'ready'), ('gpu-3', 'maintenance', 'draining')]
    assert result['budget'] == []


def test_mark_that_never_shows_is_put_back(run_module, short_dir):
    with FakeHAProxy(os.path.join(short_dir, 'ignore.sock'), ignore_sets=True) as fake:
        result = run_module(lb_batch_state, {'name': 'lb1', 'state': 'draining', 'members': members(fake),
                                             'batch': ['gpu-5'], 'verify_timeout': 0.2, 'verify_interval': 0.05},
                            expect_failed=True)
        assert fake.sets() == ['set server models/m5 state drain', 'set server models/m5 state ready']
    assert result['put_back'] == ['gpu-5 to ready']
    assert 'lb1: draining did not take effect within 0.2 s' in result['msg']
    assert 'Put back: gpu-5 to ready.' in result['msg']


def test_flag_files(run_module, tmp_path):
    entries = [{'host': 'gpu-%d' % number, 'file': {'path': str(tmp_path / ('gpu-%d.flag' % number))}}
               for number in (1, 2, 3)]
    args = {'name': 'web', 'state': 'draining', 'members': entries, 'batch': ['gpu-1'], 'min_available': 2,
            'verify_interval': 0.05}
    result = run_module(lb_batch_state, args, expect_failed=False)
    assert (tmp_path / 'gpu-1.flag').exists() and not (tmp_path / 'gpu-2.flag').exists()
    assert result['servers'][0]['state'] == 'maintenance' and result['budget'][0]['pool'] == 'web'
    args['batch'] = ['gpu-2']
    result = run_module(lb_batch_state, args, expect_failed=True)
    assert result['refused'] is True and not (tmp_path / 'gpu-2.flag').exists()


@pytest.mark.parametrize('option, value, message', [
    ('verify_timeout', 'nan', 'verify_timeout must be a finite number of at least 0.0 seconds, got nan'),
    ('verify_timeout', -1, 'verify_timeout must be a finite number of at least 0.0 seconds, got -1.0'),
    ('verify_interval', 0, 'verify_interval must be a finite number of at least 0.01 seconds, got 0.0'),
    ('available_timeout', 'inf', 'available_timeout must be a finite number of at least 0.0 seconds, got inf'),
])
def test_timeouts_must_be_finite(run, haproxy, option, value, message):
    result = run({option: value}, expect_failed=True)
    assert result['msg'] == message and haproxy.commands == []


@pytest.mark.parametrize('extra, message', [
    ({'batch': ['gpu-5', 'gpu-9', 'gpu-7']}, 'lb1: batch names hosts with no entry in members: gpu-7, gpu-9'),
    ({'state': 'restore'}, 'state is restore but all of the following are missing: restore_states'),
    ({'state': 'restore', 'restore_states': {'gpu-1': 'ready'}},
     "lb1: restore_states has no state for gpu-5 (one of ready, draining, maintenance expected, got None)"),
    ({'members': [{'host': 'gpu-5'}]},
     'lb1: members[0] (gpu-5) must have exactly one of haproxy, consul, http, file; it has none'),
    ({'members': [{'host': 'gpu-5', 'haproxy': {'socket': '/s', 'server': 'm5'}}]},
     'lb1: members[0] (gpu-5).haproxy: missing required arguments: backend'),
    ({'min_available': 'half'}, 'lb1: modelops.shutdown.disruption_budget: min_available must be a non-negative'),
    ({'members': [{'host': 'gpu-5', 'haproxy': {'socket': '/s', 'backend': 'models', 'server': 'm5;shutdown'}}]},
     "lb1: Refusing HAProxy server name 'm5;shutdown'"),
    ({'state': 'up'}, 'value of state must be one of: draining, maintenance, ready, restore, got: up'),
])
def test_argument_errors(run, haproxy, extra, message):
    result = run(extra, expect_failed=True)
    assert message in result['msg']
    assert haproxy.sets() == [] and not result.get('changed')


def test_required_options(run_module):
    result = run_module(lb_batch_state, {'state': 'draining'}, expect_failed=True)
    assert 'missing required arguments: batch, members, name' in result['msg']


def test_unreachable_runtime_api_fails_closed(run_module, short_dir):
    entries = [{'host': 'gpu-5', 'haproxy': {'socket': os.path.join(short_dir, 'none.sock'), 'backend': 'models',
                                             'server': 'm5'}}]
    result = run_module(lb_batch_state, {'name': 'lb1', 'state': 'draining', 'members': entries, 'batch': ['gpu-5']},
                        expect_failed=True)
    assert result['msg'].startswith('lb1: could not read the state of gpu-5, so nothing was changed: gpu-5: ')
    assert 'none.sock' in result['msg'] and result['servers'][0]['previous_state'] is None


# ----------------------------------------------------------------------------------------- bad input, cut-off pool reads

ALWAYS = ('lb', 'state', 'refused', 'budget', 'servers', 'started_at', 'marked_at', 'finished_at')


@pytest.mark.parametrize('entry, message', [
    ({'socket': '', 'backend': 'models', 'server': 'm5'}, 'haproxy.socket is empty'),
    ({'host': 'lb1', 'port': 0, 'backend': 'models', 'server': 'm5'},
     'lb1: members[0] (gpu-5).haproxy.port must be between 1 and 65535, got 0'),
    ({'socket': '/s', 'backend': 'models', 'server': 'm5', 'timeout': 'nan'},
     'lb1: members[0] (gpu-5).haproxy.timeout must be a finite number of seconds, got nan'),
    ({'socket': '/s', 'backend': 'models', 'server': 'm5', 'timeout': -1},
     'lb1: members[0] (gpu-5).haproxy.timeout must be more than 0.0 seconds, got -1.0'),
    ({'socket': '/s', 'backend': 'models', 'server': 'm5', 'timeout': 1e300},
     'lb1: members[0] (gpu-5).haproxy.timeout must be at most 604800 seconds'),
    ({'host': 'a..b', 'port': 9999, 'backend': 'models', 'server': 'm5'}, "host name 'a..b' has an empty label"),
])
def test_bad_haproxy_member_is_a_clear_failure(run, haproxy, entry, message):
    result = run({'members': [{'host': 'gpu-5', 'haproxy': entry}]}, expect_failed=True)
    assert message in result['msg'] and 'Traceback' not in result['msg']
    assert haproxy.commands == [] and all(key in result for key in ALWAYS)


@pytest.mark.parametrize('member, message', [
    ({'host': 'gpu-5', 'file': {'path': '/run/a\x00b'}}, 'Refusing file.path'),
    ({'host': 'gpu-5', 'http': {'url': 'http://a..b/admin', 'timeout': 'nan'}}, 'http.timeout must be a finite number of seconds, got nan'),
    ({'host': 'gpu-5', 'haproxy': None}, 'must have exactly one of haproxy, consul, http, file; it has none'),
])
def test_bad_other_members(run, member, message):
    result = run({'members': [member]}, expect_failed=True)
    assert message in result['msg'] and all(key in result for key in ALWAYS)


def test_verify_interval_too_large_is_refused(run, haproxy):
    result = run({'verify_interval': 1e300}, expect_failed=True)
    assert result['msg'] == 'verify_interval must be at most 604800 seconds (a week), got 1e+300'
    assert all(key in result for key in ALWAYS) and haproxy.commands == []


def test_cut_off_pool_read_changes_nothing(run_module, short_dir):
    """The runtime API closes after 3 of the 5 servers of "show stat": no budget is counted on it, nothing is sent."""
    stat = read_fixture('haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv')
    fake = FakeHAProxySocket(os.path.join(short_dir, 'cut.sock'))
    fake.answer = '\n'.join(stat.split('\n')[:5]) + '\n'
    try:
        entries = [{'host': 'gpu-%d' % n, 'haproxy': {'socket': fake.path, 'backend': 'models', 'server': 'm%d' % n}}
                   for n in range(1, 6)]
        result = run_module(lb_batch_state, {'name': 'lb1', 'state': 'draining', 'members': entries, 'batch': ['gpu-5'],
                                             'min_available': 1}, expect_failed=True)
    finally:
        fake.close()
    assert 'could not read the state of gpu-5, so nothing was changed' in result['msg']
    assert 'the answer to "show stat" is cut off' in result['msg']
    assert not [cmd for cmd in fake.commands if cmd.startswith('set ')]
