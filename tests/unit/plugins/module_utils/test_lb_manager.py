# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The adapter factory and the manager (read, change, verify), with a scripted adapter and a fake clock."""

from __future__ import annotations

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _lb
from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import (
    Adapter,
    HealthCheck,
    HealthStateManager,
    LBError,
    make_adapter,
)
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeModelServer


class FakeClock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class ScriptedAdapter(Adapter):
    """Reports C(state); C(set_state) takes effect after C(lag) reads; C(fail_reads) reads raise first."""

    kind = 'scripted'

    def __init__(self, state='ready', lag=0, fail_reads=0, never=False, merge_drain=False):
        super(ScriptedAdapter, self).__init__()
        self.state = state
        self.pending = None
        self.lag = lag
        self.fail_reads = fail_reads
        self.never = never
        self.merge_drain = merge_drain
        self.sets = []
        self.reads = 0

    def describe(self):
        return 'scripted target'

    def effective_state(self, state):
        if self.merge_drain and state == 'draining':
            return 'maintenance'
        return state

    def _get_state(self):
        self.reads += 1
        if self.fail_reads and self.sets:
            self.fail_reads -= 1
            raise LBError('read failed')
        if self.pending is not None:
            if self.lag == 0:
                self.state, self.pending = self.pending, None
            else:
                self.lag -= 1
        return {'state': self.state, 'raw': {'reads': self.reads}}

    def set_state(self, state):
        self.sets.append(state)
        if not self.never:
            self.pending = state


def manager(adapter, clock=None, **kwargs):
    clock = clock or FakeClock()
    return HealthStateManager(adapter, clock=clock, sleep=clock.sleep, **kwargs)


def test_query_reads_only():
    adapter = ScriptedAdapter('draining')
    result, failure = manager(adapter).run('query')
    assert failure is None and adapter.sets == []
    assert result['changed'] is False and result['state'] == result['previous_state'] == 'draining'
    assert result['verified']['skipped'] is True and result['verified']['ok'] is None
    assert result['target'] == 'scripted target' and result['raw'] == {'reads': 1} and result['in_flight'] is None
    assert 'diff' not in result


def test_check_mode_predicts_without_sending():
    adapter = ScriptedAdapter('ready')
    result, failure = manager(adapter).run('draining', check_mode=True, diff_mode=True)
    assert failure is None and adapter.sets == [] and adapter.reads == 1
    assert result['changed'] is True and result['previous_state'] == 'ready' and result['state'] == 'draining'
    assert result['diff']['before'] == {'state': 'ready'} and result['diff']['after'] == {'state': 'draining'}
    assert result['verified']['skipped'] is True


def test_idempotent_sends_nothing_but_confirms():
    adapter = ScriptedAdapter('maintenance')
    result, failure = manager(adapter).run('maintenance', diff_mode=True)
    assert failure is None and adapter.sets == [] and result['changed'] is False
    assert result['verified']['ok'] is True and result['verified']['checks'][0]['polls'] == 1
    assert result['diff']['before'] == result['diff']['after']


def test_merged_drain_is_idempotent():
    adapter = ScriptedAdapter('maintenance', merge_drain=True)
    result, dummy = manager(adapter).run('draining')
    assert result['changed'] is False and adapter.sets == [] and result['state'] == 'maintenance'


def test_change_verified_after_lag():
    clock = FakeClock()
    adapter = ScriptedAdapter('ready', lag=3)
    result, failure = manager(adapter, clock, verify_timeout=10, verify_interval=0.5).run('draining')
    assert failure is None and adapter.sets == ['draining']
    assert result['changed'] is True and result['state'] == 'draining' and result['previous_state'] == 'ready'
    check = result['verified']['checks'][0]
    assert check['name'] == 'backend' and check['ok'] and check['polls'] == 4 and check['waited_seconds'] == 1.5
    assert result['verified']['waited_seconds'] == 1.5
    assert result['raw'] == {'reads': 5}


def test_change_not_seen_fails_with_clear_message():
    adapter = ScriptedAdapter('ready', never=True)
    result, failure = manager(adapter, verify_timeout=2, verify_interval=0.5).run('maintenance')
    assert result['changed'] is True and result['verified']['ok'] is False and result['state'] == 'ready'
    assert result['verified']['checks'][0]['waited_seconds'] == 2.0
    assert 'scripted target was asked for state maintenance' in failure
    assert 'within 2.0 seconds' in failure and 'reports ready (expected maintenance)' in failure
    assert 'verify_timeout' in failure


def test_read_errors_during_verification_are_retried():
    adapter = ScriptedAdapter('ready', fail_reads=2)
    result, failure = manager(adapter, verify_timeout=5, verify_interval=1).run('draining')
    assert failure is None and result['verified']['checks'][0]['polls'] == 3


def test_all_reads_fail_after_change():
    adapter = ScriptedAdapter('ready', fail_reads=100)
    result, failure = manager(adapter, verify_timeout=1, verify_interval=0.5).run('draining')
    assert result['state'] == 'unknown' and result['changed'] is True
    assert 'read failed' in failure


def test_haproxy_errors_count_as_not_yet():
    class Flaky(ScriptedAdapter):
        def _get_state(self):
            if self.sets and self.reads < 2:
                self.reads += 1
                raise HAProxyError('socket gone')
            return super(Flaky, self)._get_state()

    adapter = Flaky('ready')
    result, failure = manager(adapter, verify_timeout=5, verify_interval=1).run('ready')
    assert failure is None


def test_unknown_previous_state_is_changed():
    adapter = ScriptedAdapter('unknown')
    result, failure = manager(adapter).run('ready')
    assert result['changed'] is True and adapter.sets == ['ready'] and failure is None


@pytest.fixture
def model_server():
    with FakeModelServer() as srv:
        yield srv


def test_health_check_follows_backend(model_server):
    adapter = make_adapter('http', {'url': model_server.base_url + '/admin/state'})
    health = HealthCheck(model_server.base_url + '/health', 503)
    result, failure = HealthStateManager(adapter, verify_timeout=5, verify_interval=0.1, health_check=health).run('draining')
    assert failure is None, failure
    names = [c['name'] for c in result['verified']['checks']]
    assert names == ['backend', 'health_url'] and all(c['ok'] for c in result['verified']['checks'])
    assert result['verified']['checks'][1]['what'] == 'GET %s/health returns HTTP 503' % model_server.base_url


def test_health_check_failure(model_server):
    model_server.health_follows = False
    adapter = make_adapter('http', {'url': model_server.base_url + '/admin/state'})
    health = HealthCheck(model_server.base_url + '/health', 503)
    result, failure = HealthStateManager(adapter, verify_timeout=0.3, verify_interval=0.1, health_check=health).run('draining')
    assert result['verified']['ok'] is False and result['verified']['checks'][0]['ok'] is True
    assert 'returned HTTP 200 (expected 503)' in failure and 'returned HTTP 200 (expected 503)' in result['verified']['detail']


def test_health_check_unreachable_counts_as_not_yet():
    ok, detail = HealthCheck('http://127.0.0.1:9/health', 200, request_timeout=1).probe()
    assert not ok and 'GET http://127.0.0.1:9/health failed' in detail


def test_health_check_skipped_when_backend_fails():
    adapter = ScriptedAdapter('ready', never=True)
    health = HealthCheck('http://127.0.0.1:9/health', 503)
    result, failure = manager(adapter, verify_timeout=1, health_check=health).run('draining')
    assert [c['name'] for c in result['verified']['checks']] == ['backend'] and failure


def test_make_adapter_kinds(tmp_path):
    assert make_adapter('file', {'path': str(tmp_path / 'x')}).kind == 'file'
    assert make_adapter('http', {'url': 'http://127.0.0.1:1/'}).kind == 'http'
    assert make_adapter('consul', {'service_id': 's'}).kind == 'consul'
    assert make_adapter('haproxy', {'socket': '/nonexistent', 'backend': 'b', 'server': 's'}).kind == 'haproxy'
    with pytest.raises(LBError, match="Unknown load-balancer kind 'nginx'"):
        make_adapter('nginx', {})


def test_base_adapter_contract():
    adapter = Adapter()
    with pytest.raises(NotImplementedError):
        adapter.get_state()
    with pytest.raises(NotImplementedError):
        adapter.set_state('ready')
    with pytest.raises(NotImplementedError):
        adapter.describe()
    assert adapter.in_flight() is None and adapter.effective_state('draining') == 'draining'
    assert _lb.STATES == ('ready', 'draining', 'maintenance')
