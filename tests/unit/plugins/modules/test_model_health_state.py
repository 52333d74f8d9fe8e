# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_health_state through main(), against local stand-ins replaying captured output (see lb_fakes)."""

from __future__ import annotations

import json
import re
import os

import pytest

from ansible_collections.modelops.shutdown.plugins.modules import model_health_state
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import (
    FakeConsul,
    FakeHAProxy,
    FakeModelServer,
)


@pytest.fixture
def haproxy(short_dir):
    with FakeHAProxy(os.path.join(short_dir, 'admin.sock')) as fake:
        yield fake


@pytest.fixture
def consul():
    with FakeConsul() as fake:
        yield fake


@pytest.fixture
def model_server():
    with FakeModelServer() as fake:
        yield fake


@pytest.fixture
def run(run_module):
    def runner(args, **kwargs):
        args = dict(args)
        args.setdefault('verify_interval', 0.05)
        return run_module(model_health_state, args, **kwargs)
    return runner


def hap(fake, server='m5', **extra):
    params = {'socket': fake.path, 'backend': 'models', 'server': server}
    params.update(extra)
    return params


# ----------------------------------------------------------------------------------------- HAProxy

def test_haproxy_drain_then_idempotent(run, haproxy):
    result = run({'state': 'draining', 'haproxy': hap(haproxy)}, diff=True, expect_failed=False)
    assert result['changed'] is True and result['previous_state'] == 'ready' and result['state'] == 'draining'
    assert result['verified']['ok'] is True and result['verified']['checks'][0]['name'] == 'backend'
    assert result['raw']['status'] == 'DRAIN' and result['raw']['admin_state'] == 8
    assert result['in_flight'] == 0
    assert result['diff']['before'] == {'state': 'ready'} and result['diff']['after'] == {'state': 'draining'}
    assert haproxy.sets() == ['set server models/m5 state drain']

    again = run({'state': 'draining', 'haproxy': hap(haproxy)}, expect_failed=False)
    assert again['changed'] is False and again['verified']['ok'] is True and 'diff' not in again
    assert haproxy.sets() == ['set server models/m5 state drain']   # nothing more sent


def test_haproxy_maintenance_and_back(run, haproxy):
    assert run({'state': 'maintenance', 'haproxy': hap(haproxy)})['raw']['status'] == 'MAINT'
    result = run({'state': 'ready', 'haproxy': hap(haproxy)}, expect_failed=False)
    assert result['changed'] and result['previous_state'] == 'maintenance' and result['state'] == 'ready'
    assert haproxy.sets() == ['set server models/m5 state maint', 'set server models/m5 state ready']


def test_haproxy_query(run, haproxy):
    result = run({'state': 'query', 'haproxy': hap(haproxy, server='m4')}, expect_failed=False)
    assert result['changed'] is False and result['state'] == 'draining' and result['raw']['status'] == 'DOWN'
    assert result['raw']['op_state_name'] == 'stopped' and result['verified']['skipped'] is True
    assert haproxy.sets() == []


def test_haproxy_check_mode_sends_nothing(run, haproxy):
    result = run({'state': 'maintenance', 'haproxy': hap(haproxy)}, check_mode=True, diff=True, expect_failed=False)
    assert result['changed'] is True and result['state'] == 'maintenance' and result['previous_state'] == 'ready'
    assert result['diff']['after'] == {'state': 'maintenance'}
    assert haproxy.sets() == [] and haproxy.admin[('models', 'm5')] == 0
    unchanged = run({'state': 'ready', 'haproxy': hap(haproxy)}, check_mode=True)
    assert unchanged['changed'] is False


def test_haproxy_over_tcp(run):
    fake = FakeHAProxy(tcp=True).start()
    try:
        result = run({'state': 'draining', 'haproxy': {'host': '127.0.0.1', 'port': fake.address[1], 'backend': 'models',
                                                       'server': 'm2'}}, expect_failed=False)
        assert result['changed'] and result['raw']['status'] == 'DRAIN'
        assert result['target'] == 'HAProxy server models/m2 (HAProxy runtime API at 127.0.0.1:%d)' % fake.address[1]
    finally:
        fake.stop()


@pytest.mark.parametrize('field,value', [
    ('backend', 'models;shutdown sessions'),
    ('server', 'm5;shutdown sessions server models/m1'),
    ('server', 'm5\nset server models/m1 state maint'),
    ('server', 'm 5'),
    ('backend', 'models#x'),
])
def test_haproxy_injection_refused_before_sending(run, haproxy, field, value):
    params = hap(haproxy)
    params[field] = value
    result = run({'state': 'maintenance', 'haproxy': params}, expect_failed=True)
    assert 'Refusing HAProxy %s name' % field in result['msg'] and repr(value) in result['msg']
    assert haproxy.commands == []


def test_haproxy_unknown_server(run, haproxy):
    result = run({'state': 'draining', 'haproxy': hap(haproxy, server='gpu-99')}, expect_failed=True)
    assert "no server 'gpu-99' in backend 'models'" in result['msg'] and 'm1, m2, m3, m4, m5' in result['msg']
    assert haproxy.path in result['msg'] and result['changed'] is False


def test_haproxy_permission_denied(run, haproxy):
    haproxy.level = 'user'
    result = run({'state': 'draining', 'haproxy': hap(haproxy)}, expect_failed=True)
    assert 'Permission denied' in result['msg'] and 'level admin' in result['msg']
    assert 'Traceback' not in result['msg']


def test_haproxy_missing_socket(run, short_dir):
    path = os.path.join(short_dir, 'missing.sock')
    result = run({'state': 'query', 'haproxy': {'socket': path, 'backend': 'models', 'server': 'm1'}}, expect_failed=True)
    assert 'Cannot connect to HAProxy runtime socket %s' % path in result['msg'] and 'stats socket' in result['msg']


def test_haproxy_verification_timeout(run, short_dir):
    fake = FakeHAProxy(os.path.join(short_dir, 'ign.sock'), ignore_sets=True).start()
    try:
        result = run({'state': 'draining', 'haproxy': hap(fake), 'verify_timeout': 0.3}, expect_failed=True)
        assert result['changed'] is True   # the command was sent
        assert result['verified']['ok'] is False and result['verified']['waited_seconds'] >= 0.3
        assert 'HAProxy server models/m5' in result['msg'] and 'asked for state draining' in result['msg']
        assert 'admin state ready' in result['msg'] and 'within 0.3 seconds' in result['msg']
    finally:
        fake.stop()


def test_haproxy_verification_with_health_url(run, haproxy, model_server):
    result = run({'state': 'draining', 'haproxy': hap(haproxy), 'health_url': model_server.base_url + '/health',
                  'health_status': 200}, expect_failed=False)
    assert [c['name'] for c in result['verified']['checks']] == ['backend', 'health_url']
    assert result['verified']['checks'][1]['detail'].endswith('returned HTTP 200 (expected 200)')


# ----------------------------------------------------------------------------------------- argument spec

@pytest.mark.parametrize('args,match', [
    ({'state': 'ready'}, 'one of the following is required: haproxy, consul, http, file'),
    ({'state': 'ready', 'file': {'path': '/tmp/x'}, 'http': {'url': 'http://x'}}, 'mutually exclusive'),
    ({'state': 'up', 'file': {'path': '/tmp/x'}}, 'value of state must be one of'),
    ({'state': 'ready', 'haproxy': {'backend': 'b', 'server': 's'}}, 'one of the following is required: socket, host'),
    ({'state': 'ready', 'haproxy': {'socket': '/s', 'host': 'h', 'port': 1, 'backend': 'b', 'server': 's'}},
     'mutually exclusive: socket|host'),
    ({'state': 'ready', 'haproxy': {'host': 'h', 'backend': 'b', 'server': 's'}}, 'parameters are required together: host, port'),
    ({'state': 'ready', 'haproxy': {'socket': '/s', 'backend': 'b'}}, 'missing required arguments: server'),
    ({'state': 'ready', 'http': {'url': 'http://x', 'method': 'DELETE'}}, 'value of method must be one of'),
    ({'state': 'ready', 'file': {'path': '/tmp/x'}, 'health_status': 503}, 'health_status'),
])
def test_argument_spec_errors(run, args, match):
    result = run(args, expect_failed=True)
    assert re.search(match, result['msg']), result['msg']


# ----------------------------------------------------------------------------------------- Consul

def test_consul_maintenance(run, consul):
    args = {'state': 'maintenance', 'consul': {'url': consul.base_url, 'service_id': 'test', 'reason': 'rollout 42'}}
    result = run(args, diff=True, expect_failed=False)
    assert result['changed'] and result['state'] == 'maintenance' and result['previous_state'] == 'ready'
    assert result['raw']['maintenance_check']['Notes'] == 'rollout 42' and result['in_flight'] is None
    assert len(consul.mutations()) == 1
    again = run(dict(args, state='draining'), expect_failed=False)
    assert again['changed'] is False and again['state'] == 'maintenance' and len(consul.mutations()) == 1
    back = run(dict(args, state='ready'), expect_failed=False)
    assert back['changed'] and back['state'] == 'ready' and back['raw']['maintenance'] is False


def test_consul_token_is_not_leaked(run):
    fake = FakeConsul(token='consul-s3cr3t').start()
    try:
        ok = run({'state': 'maintenance', 'consul': {'url': fake.base_url, 'service_id': 'test', 'token': 'consul-s3cr3t'}},
                 expect_failed=False)
        assert 'consul-s3cr3t' not in json.dumps(ok)
        bad = run({'state': 'ready', 'consul': {'url': fake.base_url, 'service_id': 'test', 'token': 'wrong-s3cr3t'}},
                  expect_failed=True)
        assert 'HTTP 403' in bad['msg'] and 'wrong-s3cr3t' not in json.dumps(bad)
    finally:
        fake.stop()


def test_consul_check_mode(run, consul):
    result = run({'state': 'draining', 'consul': {'url': consul.base_url, 'service_id': 'test'}}, check_mode=True)
    assert result['changed'] is True and result['state'] == 'maintenance' and consul.mutations() == []


def test_consul_unreachable(run):
    result = run({'state': 'query', 'consul': {'url': 'http://127.0.0.1:9', 'service_id': 'test', 'timeout': 2}},
                 expect_failed=True)
    assert 'GET http://127.0.0.1:9/v1/agent/services failed' in result['msg']


# ----------------------------------------------------------------------------------------- HTTP

def test_http_reference_server_with_health(run, model_server):
    args = {'state': 'draining', 'http': {'url': model_server.base_url + '/admin/state', 'token': 'unused-token'},
            'health_url': model_server.base_url + '/health', 'verify_timeout': 5}
    result = run(args, expect_failed=False)
    assert result['changed'] and result['state'] == 'draining' and model_server.state == 'draining'
    assert result['verified']['ok'] and result['verified']['checks'][1]['detail'].endswith('(expected 503)')
    assert result['raw'] == {'reported': 'draining', 'response': {'state': 'draining'}}
    posts = model_server.mutations()
    assert len(posts) == 1 and json.loads(posts[0]['body']) == {'state': 'draining'}
    assert posts[0]['headers']['Authorization'] == 'Bearer unused-token'
    assert 'unused-token' not in json.dumps(result)
    back = run(dict(args, state='ready'), expect_failed=False)
    assert back['changed'] and back['verified']['checks'][1]['detail'].endswith('(expected 200)')


def test_http_health_never_follows(run, model_server):
    model_server.health_follows = False
    result = run({'state': 'maintenance', 'http': {'url': model_server.base_url + '/admin/state'},
                  'health_url': model_server.base_url + '/health', 'verify_timeout': 0.3}, expect_failed=True)
    assert result['changed'] is True and result['state'] == 'maintenance'
    assert 'returned HTTP 200 (expected 503)' in result['msg']


def test_http_unknown_state_value(run, model_server):
    model_server.state = 'booting'
    result = run({'state': 'query', 'http': {'url': model_server.base_url + '/admin/state'}}, expect_failed=False)
    assert result['state'] == 'unknown' and result['raw']['reported'] == 'booting'


# ----------------------------------------------------------------------------------------- file

def test_file_flag(run, tmp_path):
    path = tmp_path / 'maintenance'
    result = run({'state': 'draining', 'file': {'path': str(path), 'reason': 'rollout'}}, diff=True, expect_failed=False)
    assert result['changed'] and result['state'] == 'maintenance' and path.read_text().startswith('reason: rollout\n')
    assert run({'state': 'maintenance', 'file': {'path': str(path)}})['changed'] is False
    assert path.read_text().startswith('reason: rollout\n')   # not rewritten
    result = run({'state': 'ready', 'file': {'path': str(path)}}, expect_failed=False)
    assert result['changed'] and not path.exists()


def test_file_check_mode(run, tmp_path):
    path = tmp_path / 'maintenance'
    result = run({'state': 'maintenance', 'file': {'path': str(path)}}, check_mode=True)
    assert result['changed'] is True and not path.exists()


def test_file_missing_parent(run, tmp_path):
    path = tmp_path / 'nope' / 'maintenance'
    result = run({'state': 'maintenance', 'file': {'path': str(path)}}, expect_failed=True)
    assert 'does not exist' in result['msg'] and 'create_parent' in result['msg']
    assert run({'state': 'maintenance', 'file': {'path': str(path), 'create_parent': True}})['changed'] is True


# ----------------------------------------------------------------------------------------- bad input (sweep against HAProxy 2.6)

ALWAYS = ('previous_state', 'state', 'target', 'in_flight', 'verified', 'raw')


def assert_always_keys(result):
    """Every key RETURN documents as returned always, with a value of its documented type."""
    missing = [key for key in ALWAYS if key not in result]
    assert not missing, 'missing %s in %r' % (missing, result)
    assert isinstance(result['previous_state'], str) and isinstance(result['state'], str)
    assert isinstance(result['target'], str) and isinstance(result['raw'], dict) and isinstance(result['verified'], dict)
    assert set(['ok', 'skipped', 'waited_seconds', 'checks', 'detail']) <= set(result['verified'])
    json.dumps(result).encode('utf-8')


@pytest.mark.parametrize('args, words', [
    ({'state': 'query', 'haproxy': None}, 'one of the following is required: haproxy, consul, http, file (an option given as null'),
    ({'state': 'query', 'haproxy': None, 'file': None}, 'mutually exclusive'),
    ({'state': 'query', 'haproxy': {'socket': '', 'backend': 'b', 'server': 's'}}, 'haproxy.socket is empty'),
    ({'state': 'query', 'haproxy': {'host': 'lb1', 'port': 0, 'backend': 'b', 'server': 's'}},
     'haproxy.port must be between 1 and 65535, got 0'),
    ({'state': 'query', 'haproxy': {'socket': '/s', 'backend': 'b', 'server': 's', 'timeout': -1}},
     'haproxy.timeout must be more than 0.0 seconds, got -1.0'),
    ({'state': 'query', 'haproxy': {'socket': '/s', 'backend': 'b', 'server': 's', 'timeout': 'nan'}},
     'haproxy.timeout must be a finite number of seconds, got nan'),
    ({'state': 'query', 'haproxy': {'socket': '/s', 'backend': 'b', 'server': 's', 'timeout': 1e300}},
     'haproxy.timeout must be at most 604800 seconds'),
    ({'state': 'query', 'haproxy': {'host': 'a..b', 'port': 9999, 'backend': 'b', 'server': 's'}},
     "Invalid haproxy.host: host name 'a..b' has an empty label"),
    ({'state': 'query', 'http': {'url': 'http://%s/admin' % ('h' * 64)}}, 'has a label of 64 characters'),
    ({'state': 'query', 'http': {'url': 'http://a..b/admin'}}, "host name 'a..b' has an empty label"),
    ({'state': 'query', 'http': {'url': 'http://127.0.0.1:1/admin', 'timeout': 'nan'}},
     'http.timeout must be a finite number of seconds, got nan'),
    ({'state': 'query', 'consul': {'url': 'http://a..b:8500', 'service_id': 'x'}}, "host name 'a..b' has an empty label"),
    ({'state': 'query', 'consul': {'service_id': 'x', 'timeout': -5}}, 'consul.timeout must be more than 0.0 seconds, got -5.0'),
    ({'state': 'query', 'file': {'path': '/run/model/maint\x00x'}}, 'Refusing file.path'),
    ({'state': 'ready', 'file': {'path': '/tmp/x'}, 'verify_timeout': 'nan'}, 'verify_timeout must be a finite number of seconds, got nan'),
    ({'state': 'ready', 'file': {'path': '/tmp/x'}, 'verify_interval': 'nan'}, 'verify_interval must be a finite number of seconds, got nan'),
    ({'state': 'ready', 'file': {'path': '/tmp/x'}, 'verify_interval': 0}, 'verify_interval must be at least 0.01 seconds, got 0.0'),
    ({'state': 'ready', 'file': {'path': '/tmp/x'}, 'verify_timeout': -1}, 'verify_timeout must be at least 0.0 seconds, got -1.0'),
    ({'state': 'ready', 'file': {'path': '/tmp/x'}, 'health_url': 'http://a..b/health'}, "Invalid health_url 'http://a..b/health'"),
    ({'state': 'ready', 'file': {'path': '/tmp/x'}, 'health_url': 'http://h/health', 'health_status': 42},
     'health_status must be an HTTP status between 100 and 599, got 42'),
])
def test_bad_input_is_a_clear_failure_with_every_key(run, args, words):
    result = run(args, expect_failed=True)
    assert words in result['msg'], result['msg']
    assert 'Traceback' not in result['msg'] and 'UnicodeError' not in result['msg']
    if 'mutually exclusive' not in words:   # AnsibleModule's own argument errors carry only msg
        assert_always_keys(result)
        assert result['changed'] is False


@pytest.mark.parametrize('case', ['unreachable', 'unknown_server', 'verification'])
def test_runtime_failures_return_every_key(run, haproxy, short_dir, case):
    if case == 'unreachable':
        args = {'state': 'draining', 'haproxy': {'socket': os.path.join(short_dir, 'none.sock'), 'backend': 'models', 'server': 'm5'}}
    elif case == 'unknown_server':
        args = {'state': 'draining', 'haproxy': hap(haproxy, server='gpu-99')}
    else:
        haproxy.ignore_sets = True
        args = {'state': 'draining', 'haproxy': hap(haproxy), 'verify_timeout': 0.2}
    result = run(args, expect_failed=True)
    assert_always_keys(result)
    assert 'HAProxy server models/' in result['target']
    if case != 'verification':
        assert result['previous_state'] == 'unknown' and result['state'] == 'unknown' and result['verified']['skipped'] is True


def test_failure_after_the_first_read_keeps_what_was_read(run, haproxy):
    haproxy.level = 'user'   # set server answers Permission denied
    result = run({'state': 'draining', 'haproxy': hap(haproxy)}, expect_failed=True)
    assert_always_keys(result)
    assert result['previous_state'] == 'ready' and result['state'] == 'ready' and result['changed'] is False
    assert result['raw']['status'] == 'UP'


def test_http_token_ending_in_a_newline(run):
    with FakeModelServer(token='tok-7q2w') as srv:
        result = run({'state': 'draining', 'http': {'url': srv.base_url + '/admin/state', 'token': 'tok-7q2w\n'}},
                     expect_failed=False)
        assert result['state'] == 'draining' and 'tok-7q2w' not in json.dumps(result)
        bad = run({'state': 'ready', 'http': {'url': srv.base_url + '/admin/state', 'token': 'tok-\n7q2w'}}, expect_failed=True)
        assert 'bearer token contains a line break inside it' in bad['msg'] and '7q2w' not in json.dumps(bad)


def test_consul_token_ending_in_a_newline(run):
    fake = FakeConsul(token='consul-s3cr3t').start()
    try:
        result = run({'state': 'maintenance', 'consul': {'url': fake.base_url, 'service_id': 'test', 'token': 'consul-s3cr3t\n'}},
                     expect_failed=False)
        assert result['state'] == 'maintenance' and 'consul-s3cr3t' not in json.dumps(result)
    finally:
        fake.stop()


def test_http_headers_reach_the_state_read(run, model_server):
    run({'state': 'query', 'http': {'url': model_server.base_url + '/admin/state', 'headers': {'X-Tenant': 'blue'}}},
        expect_failed=False)
    assert model_server.requests and model_server.requests[-1]['method'] == 'GET'
    assert model_server.requests[-1]['headers'].get('X-Tenant') == 'blue'


def test_file_flag_is_put_back_when_the_health_check_fails(run, tmp_path, model_server):
    """The flag written, the health URL never answers 503: the task fails and leaves no flag behind."""
    path = tmp_path / 'maintenance'
    result = run({'state': 'maintenance', 'file': {'path': str(path)}, 'health_url': model_server.base_url + '/health',
                  'verify_timeout': 0.3}, expect_failed=True)
    assert not path.exists()
    assert 'returned HTTP 200 (expected 503)' in result['msg'] and 'It was put back to ready' in result['msg']
    assert result['changed'] is False and result['state'] == 'ready' and result['previous_state'] == 'ready'


def test_file_with_a_long_multibyte_reason_and_binary_content(run, tmp_path):
    path = tmp_path / 'maintenance'
    result = run({'state': 'maintenance', 'file': {'path': str(path), 'reason': 'ü' * 495}}, expect_failed=False)
    assert result['raw']['content'].startswith('reason: üü') and result['raw']['content_truncated'] is True
    path.write_bytes(b'\xff\xfe\x00 flag\n')
    result = run({'state': 'query', 'file': {'path': str(path)}}, expect_failed=False)
    assert result['raw']['content'] == '\ufffd\ufffd\x00 flag\n'


def test_file_flag_removal_is_undone_byte_for_byte_when_the_health_check_fails(run, tmp_path, model_server):
    path = tmp_path / 'maintenance'
    path.write_bytes(b'reason: operator set this\nsince: 2025-01-02T03:04:05Z\n')
    os.chmod(str(path), 0o640)
    model_server.state = 'draining'   # its /health answers 503, never the 200 expected for ready
    result = run({'state': 'ready', 'file': {'path': str(path)}, 'health_url': model_server.base_url + '/health',
                  'verify_timeout': 0.3}, expect_failed=True)
    assert path.read_bytes() == b'reason: operator set this\nsince: 2025-01-02T03:04:05Z\n'
    assert oct(os.stat(str(path)).st_mode & 0o777) == oct(0o640)
    assert 'It was put back to maintenance' in result['msg'] and result['state'] == 'maintenance'


@pytest.mark.parametrize('kind', ['haproxy', 'consul', 'http', 'file'])
def test_scalar_for_a_target_is_an_argument_error_not_a_traceback(run, kind):
    result = run({'state': 'query', kind: 0}, expect_failed=True)
    assert "argument '%s' is of type int and we were unable to convert to dict" % kind in result['msg']
