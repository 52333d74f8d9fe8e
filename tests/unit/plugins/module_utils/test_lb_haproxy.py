# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyConnectionError, HAProxyError, HAProxyRuntime
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import HealthStateManager, make_adapter
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_haproxy import HAProxyAdapter, read_pool
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import free_port
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeHAProxy
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_haproxy import CliFakeHAProxy


@pytest.fixture
def fake(short_dir):
    with FakeHAProxy(os.path.join(short_dir, 'admin.sock')) as server:
        yield server


def adapter_for(fake, server, backend='models'):
    return make_adapter('haproxy', {'socket': fake.path, 'backend': backend, 'server': server, 'timeout': 2.0})


@pytest.mark.parametrize('server,state,status', [
    ('m1', 'draining', 'DRAIN'),
    ('m2', 'ready', 'no check'),
    ('m3', 'maintenance', 'MAINT'),
    ('m4', 'draining', 'DOWN'),   # stopped and in drain: the status column alone would say ready
    ('m5', 'ready', 'UP'),
])
def test_get_state_from_captured_output(fake, server, state, status):
    info = adapter_for(fake, server).get_state()
    assert info['state'] == state
    assert info['operational_status'] == status
    assert info['raw']['status'] == status
    assert info['raw']['admin_source'] == 'show servers state'
    assert info['in_flight'] == 0


def test_raw_details(fake):
    raw = adapter_for(fake, 'm4').get_state()['raw']
    assert raw['admin_state'] == 8 and raw['admin_flags'] == ['forced drain']
    assert raw['op_state'] == 0 and raw['op_state_name'] == 'stopped'
    assert raw['check_status'] == 'L4CON' and raw['addr'] == '127.0.0.1:18094'
    raw = adapter_for(fake, 'm3').get_state()['raw']
    assert raw['admin_state'] == 5 and raw['admin_flags'] == ['forced maintenance']


def test_legacy_haproxy_falls_back_to_status(short_dir):
    fake = FakeHAProxy(os.path.join(short_dir, 'old.sock'), legacy=True).start()
    try:
        info = adapter_for(fake, 'm1').get_state()
        assert info['state'] == 'draining'
        assert info['raw']['admin_source'] == 'show stat status'
        assert 'Unknown command' in info['raw']['admin_fallback_reason']
    finally:
        fake.stop()


def test_in_flight_counts_sessions_and_queue(short_dir):
    fake = CliFakeHAProxy(os.path.join(short_dir, 'a.sock'), stat_fixture='haproxy_show_stat_csv_telegraf_sample.csv',
                          legacy=True).start()
    try:
        adapter = make_adapter('haproxy', {'socket': fake.path, 'backend': 'www', 'server': 'www'})
        assert adapter.in_flight() == 0
        # the 'demo' BACKEND row is not a server
        with pytest.raises(HAProxyError, match='no server'):
            make_adapter('haproxy', {'socket': fake.path, 'backend': 'demo', 'server': 'BACKEND'}).get_state()
    finally:
        fake.stop()


def test_in_flight_from_v27_capture(short_dir):
    fake = CliFakeHAProxy(os.path.join(short_dir, 'b.sock'), stat_fixture='haproxy_show_stat_csv_v2.7.1_otel.csv',
                          legacy=True).start()
    try:
        fake.stat_text = fake.stat_text.replace('webservers,s2,0,0,0,1,', 'webservers,s2,4,0,7,1,')  # qcur 4, scur 7
        adapter = make_adapter('haproxy', {'socket': fake.path, 'backend': 'webservers', 'server': 's2'})
        assert adapter.in_flight() == 11
        assert adapter.get_state()['in_flight'] == 11
    finally:
        fake.stop()


@pytest.mark.parametrize('start_server,target,command', [
    ('m5', 'draining', 'set server models/m5 state drain'),
    ('m5', 'maintenance', 'set server models/m5 state maint'),
    ('m1', 'ready', 'set server models/m1 state ready'),
    ('m1', 'maintenance', 'set server models/m1 state maint'),
    ('m3', 'ready', 'set server models/m3 state ready'),
])
def test_set_and_verify(fake, start_server, target, command):
    adapter = adapter_for(fake, start_server)
    adapter.set_state(target)
    assert fake.sets() == [command]
    ok, detail = adapter.verify(target)
    assert ok, detail
    assert adapter.get_state()['state'] == target


def test_drain_a_down_server_verifies(fake):
    adapter = adapter_for(fake, 'm4')
    adapter.set_state('ready')
    assert adapter.get_state()['state'] == 'ready'
    assert adapter.get_state()['operational_status'] == 'DOWN'
    adapter.set_state('draining')
    ok, detail = adapter.verify('draining')
    assert ok and 'status DOWN' in detail and 'admin state drain' in detail


def test_verify_reports_when_not_in_effect(short_dir):
    fake = FakeHAProxy(os.path.join(short_dir, 'c.sock'), ignore_sets=True).start()
    try:
        adapter = adapter_for(fake, 'm5')
        adapter.set_state('draining')
        ok, detail = adapter.verify('draining')
        assert not ok and 'admin state ready' in detail and 'status UP' in detail
    finally:
        fake.stop()


def test_verify_explains_inherited_maintenance(fake):
    fake.admin[('models', 'm5')] = 0x02   # maintenance inherited from a tracked server
    ok, detail = adapter_for(fake, 'm5').verify('ready')
    assert not ok and 'tracks' in detail


def test_names_checked_before_connecting(short_dir):
    # No socket exists: a connection attempt would give a connection error, not the name error.
    for params in ({'backend': 'models;shutdown sessions', 'server': 'm1'}, {'backend': 'models', 'server': 'm1\nx'},
                   {'backend': 'models', 'server': ''}, {'backend': 'models', 'server': None}):
        params['socket'] = os.path.join(short_dir, 'none.sock')
        with pytest.raises(HAProxyError, match='HAProxy (backend|server) name') as err:
            HAProxyAdapter(params)
        assert not isinstance(err.value, HAProxyConnectionError)


def test_describe(fake):
    assert adapter_for(fake, 'm1').describe() == 'HAProxy server models/m1 (HAProxy runtime socket %s)' % fake.path


def test_manager_idempotent_sends_nothing(fake):
    result, failure = HealthStateManager(adapter_for(fake, 'm1')).run('draining')
    assert failure is None and result['changed'] is False and result['verified']['ok'] is True
    assert fake.sets() == []


# ----------------------------------------------------------------------------------------- real HAProxy

HAPROXY = shutil.which('haproxy') or (os.path.exists('/usr/sbin/haproxy') and '/usr/sbin/haproxy')


def run_haproxy(directory, config_text, sock_path):
    """Start a real HAProxy on C(config_text) (written to C(directory)/haproxy.cfg) until its admin socket C(sock_path)
    exists; skip the test when it does not start. Returns the process (terminate it when done)."""
    cfg = os.path.join(directory, 'haproxy.cfg')
    with open(cfg, 'w') as handle:
        handle.write(config_text)
    proc = subprocess.Popen([HAPROXY, '-db', '-f', cfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip('haproxy did not start: %s' % proc.stderr.read().decode()[:300])
        time.sleep(0.05)
    return proc


@pytest.fixture
def real_haproxy(short_dir):
    sock_path = os.path.join(short_dir, 'admin.sock')
    proc = run_haproxy(short_dir, '\n'.join([
        'global',
        '    stats socket %s mode 600 level admin' % sock_path,
        '    stats socket %s mode 600 level user' % os.path.join(short_dir, 'user.sock'),
        'defaults',
        '    mode http',
        '    timeout connect 1s',
        '    timeout client 5s',
        '    timeout server 5s',
        'backend models',
        '    server m1 127.0.0.1:%d' % free_port(),
        '    server m2 127.0.0.1:%d check inter 200' % free_port(),
        '    server m3 127.0.0.1:%d disabled' % free_port(),
        '',
    ]), sock_path)
    yield sock_path
    proc.terminate()
    proc.wait(10)


@pytest.mark.skipif(not HAPROXY, reason='haproxy is not installed (molecule exercises it)')
def test_real_haproxy_round_trip(real_haproxy):
    adapter = make_adapter('haproxy', {'socket': real_haproxy, 'backend': 'models', 'server': 'm1'})
    assert adapter.get_state()['state'] == 'ready'
    assert adapter.get_state()['operational_status'] == 'no check'
    for target, status in (('draining', 'DRAIN'), ('maintenance', 'MAINT'), ('ready', 'no check')):
        adapter.set_state(target)
        ok, detail = adapter.verify(target)
        assert ok, detail
        assert adapter.get_state()['raw']['status'] == status
    m3 = make_adapter('haproxy', {'socket': real_haproxy, 'backend': 'models', 'server': 'm3'})
    assert m3.get_state()['state'] == 'maintenance'
    m3.set_state('ready')
    assert m3.get_state()['state'] == 'ready'   # admin_state 4 (config) alone is not maintenance


@pytest.mark.skipif(not HAPROXY, reason='haproxy is not installed (molecule exercises it)')
def test_real_haproxy_down_server_in_drain(real_haproxy):
    adapter = make_adapter('haproxy', {'socket': real_haproxy, 'backend': 'models', 'server': 'm2'})
    deadline = time.monotonic() + 5
    while adapter.get_state()['operational_status'] != 'DOWN' and time.monotonic() < deadline:
        time.sleep(0.1)
    adapter.set_state('draining')
    info = adapter.get_state()
    assert info['state'] == 'draining' and info['raw']['status'] == 'DOWN'


@pytest.mark.skipif(not HAPROXY, reason='haproxy is not installed (molecule exercises it)')
def test_real_haproxy_errors(real_haproxy):
    with pytest.raises(HAProxyError, match='No such server'):
        make_adapter('haproxy', {'socket': real_haproxy, 'backend': 'models', 'server': 'zz'}).set_state('draining')
    user = make_adapter('haproxy', {'socket': os.path.join(os.path.dirname(real_haproxy), 'user.sock'),
                                    'backend': 'models', 'server': 'm1'})
    assert user.get_state()['state'] == 'ready'
    with pytest.raises(HAProxyError, match='Permission denied.*level admin'):
        user.set_state('draining')


# ----------------------------------------------------------------------------------------- shape, not guesses

class EditedStateHAProxy(CliFakeHAProxy):
    """The captured 2.6.12 runtime API, with the rows of C(show servers state) passed through C(edit(row fields))."""

    def __init__(self, path, edit):
        super(EditedStateHAProxy, self).__init__(path)
        self.edit = edit

    def answer(self, cmd):
        text = super(EditedStateHAProxy, self).answer(cmd)
        if not cmd.startswith('show servers state'):
            return text
        lines = text.split('\n')
        out = lines[:2]
        for line in lines[2:]:
            fields = line.split(' ') if line else None
            if fields:
                fields = self.edit(fields)
                if fields is None:
                    continue
                line = ' '.join(fields)
            out.append(line)
        return '\n'.join(out)


def test_admin_state_that_is_not_a_number_reads_unknown(short_dir):
    def garble(fields):
        if fields[3] == 'm5':
            fields[6] = 'x'   # srv_admin_state
        return fields
    with EditedStateHAProxy(os.path.join(short_dir, 'g.sock'), garble) as fake:
        info = adapter_for(fake, 'm5').get_state()
        assert info['state'] == 'unknown' and info['raw']['admin_state'] is None and info['raw']['admin_flags'] == []
        pool = dict((row['server'], row) for row in read_pool(fake_runtime(fake), ['models']))
        assert pool['m5']['state'] == 'unknown' and pool['m5']['available'] is False
        assert pool['m1']['state'] == 'draining'


def test_pool_server_missing_from_servers_state_reads_unknown(short_dir):
    with EditedStateHAProxy(os.path.join(short_dir, 'h.sock'), lambda fields: None if fields[3] == 'm2' else fields) as fake:
        pool = dict((row['server'], row) for row in read_pool(fake_runtime(fake), ['models']))
        assert pool['m2']['state'] == 'unknown' and pool['m2']['status'] == 'no check'
        assert pool['m5']['state'] == 'ready'


def test_pool_legacy_haproxy_uses_the_status_column(short_dir):
    with CliFakeHAProxy(os.path.join(short_dir, 'l.sock'), legacy=True) as fake:
        pool = dict((row['server'], row) for row in read_pool(fake_runtime(fake), ['models']))
        assert pool['m1']['state'] == 'draining' and pool['m4']['state'] == 'ready'   # DOWN hides the drain


def test_pool_unknown_backend_lists_the_known_ones(fake):
    with pytest.raises(HAProxyError) as err:
        read_pool(fake_runtime(fake), ['nope'])
    assert 'has no backend nope with servers (backends in "show stat": models)' in str(err.value)


def test_pool_refuses_injection_before_sending(fake):
    with pytest.raises(HAProxyError, match='Refusing HAProxy backend name'):
        read_pool(fake_runtime(fake), ['models;disable server models/m1'])
    assert fake.commands == []


def fake_runtime(fake):
    return HAProxyRuntime(socket_path=fake.path, timeout=2.0)
