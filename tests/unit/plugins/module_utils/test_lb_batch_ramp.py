# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The weight ramp of BatchStateManager, against a real HAProxy (Debian's package) over its admin socket.

The manager's clock and sleep are stand-ins: a step is due when the fake clock says so, and what happens "during"
a step (another server going down) is done from the sleep hook, so nothing here depends on timing.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyError, HAProxyRuntime
from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy_checks import backend_balancing
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_batch import BatchStateManager, parse_members
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import free_port
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_lb_haproxy import HAPROXY, run_haproxy

pytestmark = pytest.mark.skipif(not HAPROXY, reason='haproxy is not installed (molecule exercises it)')


def config(sock_path):
    servers = '\n'.join('    server m%d 127.0.0.1:%d weight 10' % (n, free_port()) for n in (1, 2, 3))
    return '\n'.join([
        'global',
        '    stats socket %s mode 600 level admin' % sock_path,
        'defaults',
        '    mode http',
        '    timeout connect 1s',
        '    timeout client 5s',
        '    timeout server 5s',
        'backend models',
        '    balance roundrobin',
        servers,
        'backend sticky',
        '    balance source',
        servers,
        'backend sticky_consistent',
        '    balance source',
        '    hash-type consistent',
        servers,
        'backend fixed',
        '    balance static-rr',
        servers,
        '',
    ])


@pytest.fixture
def lb(short_dir):
    sock_path = os.path.join(short_dir, 'admin.sock')
    text = config(sock_path)
    proc = run_haproxy(short_dir, text, sock_path)
    yield {'socket': sock_path, 'config': text, 'runtime': HAProxyRuntime(socket_path=sock_path)}
    proc.terminate()
    proc.wait(10)


class FakeTime(object):
    """A clock that moves only when the manager sleeps; C(on_sleep(n)) runs at the n-th sleep."""

    def __init__(self, on_sleep=None):
        self.now = 1000.0
        self.sleeps = []
        self.on_sleep = on_sleep

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def manager(lb, backend, fake, min_available=0, steps=4, duration=12.0, with_config=True):
    members = parse_members([{'host': 'gpu-%d' % n, 'haproxy': {'socket': lb['socket'], 'backend': backend, 'server': 'm%d' % n}}
                             for n in (1, 2, 3)], 'lb1')
    return BatchStateManager('lb1', members, ['gpu-1'], min_available, verify_timeout=5.0, verify_interval=0.05,
                             weight_ramp={'duration': duration, 'steps': steps},
                             balancing=backend_balancing(lb['config']) if with_config else None,
                             clock=fake.clock, sleep=fake.sleep)


def state_of(lb, backend, server):
    [row] = [r for r in lb['runtime'].servers_state(backend) if r['srv_name'] == server]
    return row['srv_admin_state']


def test_a_ramp_lowers_the_weight_in_steps_then_drains_and_puts_the_weight_back(lb):
    fake = FakeTime()
    result, failure = manager(lb, 'models', fake, min_available=1).run('draining')
    assert failure is None, failure
    ramp = result['weight_ramp']
    [server] = ramp['servers']
    # 10 * 3/4, 10 * 2/4, 10 * 1/4 (Python rounds half to even), each read back from HAProxy.
    assert [step['weight'] for step in server['steps']] == [8, 5, 2]
    assert (server['previous_weight'], server['initial_weight'], ramp['interval_seconds']) == (10, 10, 4.0)
    assert ramp['aborted'] is None and server['weight_back'] == 10 and ramp['weights_back_failed'] == []
    # Steps at 0, 4 and 8 s, the mark at 12 s: the fake clock moved by exactly the ramp's duration.
    assert fake.now - 1000.0 == pytest.approx(12.0)
    assert result['servers'][0]['state'] == 'draining' and result['servers'][0]['status'] == 'DRAIN'
    # Drained, with its weight back: HAProxy keeps DRAIN whatever the weight.
    assert lb['runtime'].get_weight('models', 'm1') == (10, 10)
    assert state_of(lb, 'models', 'm1') == '8'


def test_a_budget_that_breaks_mid_ramp_stops_it_and_puts_the_weights_back(lb):
    def peer_goes_down(count):
        if count == 2:  # the sleep before step 2: another server of the pool is taken out meanwhile
            lb['runtime'].command('set server models/m2 state maint')

    fake = FakeTime(on_sleep=peer_goes_down)
    result, failure = manager(lb, 'models', fake, min_available=2).run('draining')
    assert failure is not None and 'the weight ramp stopped at step 2 of 4' in failure
    assert 'disruption budget no longer holds' in failure and 'Weights put back: gpu-1 10' in failure
    assert 'nothing was drained' in failure
    assert result['weight_ramp']['aborted'].startswith('step 2 of 4: ')
    assert [step['weight'] for step in result['weight_ramp']['servers'][0]['steps']] == [8]
    assert lb['runtime'].get_weight('models', 'm1') == (10, 10)
    assert state_of(lb, 'models', 'm1') == '0' and result['servers'][0]['changed'] is False


def test_a_server_changed_by_someone_else_mid_ramp_stops_it(lb):
    def operator_drains_it(count):
        if count == 3:
            lb['runtime'].command('set server models/m1 state maint')

    fake = FakeTime(on_sleep=operator_drains_it)
    result, failure = manager(lb, 'models', fake).run('draining')
    assert 'step 3 of 4' in failure and 'is now maintenance, not ready' in failure
    assert lb['runtime'].get_weight('models', 'm1') == (10, 10)


@pytest.mark.parametrize('backend, with_config, why', [
    ('fixed', True, 'algorithm static-rr (show stat) is static'),
    ('sticky', True, 'algorithm source (show stat) with hash-type map-based is static'),
    ('sticky', False, 'is static unless the backend has "hash-type consistent", and the configuration could not be read'),
])
def test_a_static_algorithm_is_refused_before_anything_changes(lb, backend, with_config, why):
    fake = FakeTime()
    result, failure = manager(lb, backend, fake, with_config=with_config).run('draining')
    assert result['refused'] is True and why in failure and 'nothing was changed' in failure
    assert 'only 0 or 100 %' in failure
    assert fake.sleeps == [] and lb['runtime'].get_weight(backend, 'm1') == (10, 10)
    assert state_of(lb, backend, 'm1') == '0'


def test_a_consistent_hash_ramps(lb):
    result, failure = manager(lb, 'sticky_consistent', FakeTime(), steps=2, duration=1.0).run('maintenance')
    assert failure is None, failure
    assert [step['weight'] for step in result['weight_ramp']['servers'][0]['steps']] == [5]
    assert state_of(lb, 'sticky_consistent', 'm1') == '1' and lb['runtime'].get_weight('sticky_consistent', 'm1') == (10, 10)


def test_check_mode_checks_the_ramp_and_changes_nothing(lb):
    fake = FakeTime()
    result, failure = manager(lb, 'fixed', fake).run('draining', check_mode=True)
    assert result['refused'] is True and 'static-rr' in failure
    result, failure = manager(lb, 'models', fake).run('draining', check_mode=True)
    assert failure is None and result['weight_ramp']['servers'][0]['steps'] == [] and fake.sleeps == []
    assert lb['runtime'].get_weight('models', 'm1') == (10, 10) and state_of(lb, 'models', 'm1') == '0'


def test_the_preflight_read_checks_the_ramp_of_every_server_of_the_batch(lb):
    fake = FakeTime()
    result, failure = manager(lb, 'fixed', fake).run('ready', check_mode=True)
    assert result['refused'] is True and 'fixed/m1' in failure and 'static-rr' in failure
    assert fake.sleeps == [] and state_of(lb, 'fixed', 'm1') == '0'
    result, failure = manager(lb, 'models', fake).run('ready', check_mode=True)
    assert failure is None and [s['previous_weight'] for s in result['weight_ramp']['servers']] == [10]


def test_a_put_back_resets_the_weight_a_dead_run_left_lowered(lb):
    lb['runtime'].set_weight('models', 'm1', 40)
    members = parse_members([{'host': 'gpu-%d' % n, 'haproxy': {'socket': lb['socket'], 'backend': 'models', 'server': 'm%d' % n}}
                             for n in (1, 2, 3)], 'lb1')
    result, failure = BatchStateManager('lb1', members, ['gpu-1', 'gpu-2'], verify_timeout=5.0, verify_interval=0.05,
                                        reset_weights=['gpu-1', 'gpu-2']).run(
        'restore', restore_states={'gpu-1': 'ready', 'gpu-2': 'ready'})
    assert failure is None, failure
    assert result['weights_reset'] == [{'host': 'gpu-1', 'backend': 'models', 'server': 'm1', 'from': 40, 'to': 10},
                                       {'host': 'gpu-2', 'backend': 'models', 'server': 'm2', 'from': 10, 'to': 10}]
    assert lb['runtime'].get_weight('models', 'm1') == (10, 10) and state_of(lb, 'models', 'm1') == '0'
    # In check mode nothing is set.
    lb['runtime'].set_weight('models', 'm1', 40)
    result, failure = BatchStateManager('lb1', members, ['gpu-1'], reset_weights=['gpu-1']).run(
        'ready', check_mode=True)
    assert failure is None and 'weights_reset' not in result and lb['runtime'].get_weight('models', 'm1') == (40, 10)


def test_a_weight_too_low_for_the_steps_is_refused_and_weight_0_is_left_alone(lb):
    lb['runtime'].set_weight('models', 'm1', 1)   # HAProxy's default weight
    result, failure = manager(lb, 'models', FakeTime()).run('draining')
    assert result['refused'] is True and 'models/m1' in failure and 'has weight 1, too low for 4 steps' in failure
    assert lb['runtime'].get_weight('models', 'm1') == (1, 10) and state_of(lb, 'models', 'm1') == '0'
    lb['runtime'].set_weight('models', 'm1', 0)
    fake = FakeTime()
    result, failure = manager(lb, 'models', fake).run('draining')
    assert failure is None and result['weight_ramp']['servers'] == [] and fake.sleeps == []
    assert lb['runtime'].get_weight('models', 'm1') == (0, 10) and state_of(lb, 'models', 'm1') == '8'


def test_a_weight_set_but_not_read_back_is_still_put_back(lb, monkeypatch):
    calls = []
    real = HAProxyRuntime.get_weight

    def flaky(self, backend, server):
        calls.append(server)
        if len(calls) == 2:   # the read-back of the first step
            raise HAProxyError('the admin socket closed mid-answer')
        return real(self, backend, server)

    monkeypatch.setattr(HAProxyRuntime, 'get_weight', flaky)
    result, failure = manager(lb, 'models', FakeTime()).run('draining')
    assert 'step 1 of 4: gpu-1: the admin socket closed mid-answer' in failure
    assert 'Weights put back: gpu-1 10' in failure
    assert real(lb['runtime'], 'models', 'm1') == (10, 10) and state_of(lb, 'models', 'm1') == '0'
    assert result['weight_ramp']['servers'][0]['weight_back'] == 10
