# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import LBError, make_adapter
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import read_fixture
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeConsul


@pytest.fixture
def consul():
    with FakeConsul() as server:
        yield server


def adapter_for(consul, **extra):
    params = {'url': consul.base_url, 'service_id': 'test', 'validate_certs': True, 'timeout': 5.0}
    params.update(extra)
    return make_adapter('consul', params)


def test_captured_checks_read_as_maintenance(consul):
    consul.maintenance = True
    info = adapter_for(consul).get_state()
    assert info['state'] == 'maintenance'
    captured = json.loads(read_fixture('consul_v1_agent_checks_service_maintenance_consul0.5.json'))
    assert info['raw']['maintenance_check'] == {
        'CheckID': '_service_maintenance:test', 'Status': 'critical',
        'Notes': captured['_service_maintenance:test']['Notes']}
    assert info['raw']['service_checks'] == {'service:test': 'passing'}
    assert info['in_flight'] is None


def test_ready_without_maintenance_check(consul):
    info = adapter_for(consul).get_state()
    assert info['state'] == 'ready' and info['raw']['maintenance'] is False


def test_draining_is_maintenance(consul):
    adapter = adapter_for(consul, reason='rolling shutdown')
    assert adapter.effective_state('draining') == 'maintenance'
    adapter.set_state('draining')
    put = consul.mutations()[-1]
    assert put['method'] == 'PUT' and put['path'] == '/v1/agent/service/maintenance/test'
    assert 'enable=true' in put['query'] and 'reason=rolling+shutdown' in put['query']
    ok, detail = adapter.verify('draining')
    assert ok and 'present (critical)' in detail
    assert adapter.get_state()['raw']['maintenance_check']['Notes'] == 'rolling shutdown'


def test_ready_disables(consul):
    consul.maintenance = True
    adapter = adapter_for(consul)
    adapter.set_state('ready')
    assert 'enable=false' in consul.mutations()[-1]['query'] and 'reason' not in consul.mutations()[-1]['query']
    assert adapter.verify('ready')[0]


def test_default_reason(consul):
    adapter_for(consul).set_state('maintenance')
    assert 'reason=modelops.shutdown%3A+maintenance' in consul.mutations()[-1]['query']


def test_verify_fails_when_agent_ignores(consul):
    consul.ignore_sets = True
    adapter = adapter_for(consul)
    adapter.set_state('maintenance')
    ok, detail = adapter.verify('maintenance')
    assert not ok and 'absent' in detail


def test_unknown_service(consul):
    with pytest.raises(LBError) as err:
        make_adapter('consul', {'url': consul.base_url, 'service_id': 'nope'}).get_state()
    assert "no service 'nope'" in str(err.value) and 'registered: test' in str(err.value) and consul.base_url in str(err.value)
    with pytest.raises(LBError, match='does not know service ID nope'):
        make_adapter('consul', {'url': consul.base_url, 'service_id': 'nope'}).set_state('maintenance')


def test_token_header_and_acl_error():
    consul = FakeConsul(token='s3cr3t-token').start()
    try:
        assert adapter_for(consul, token='s3cr3t-token').get_state()['state'] == 'ready'
        assert consul.requests[-1]['headers'].get('X-Consul-Token') == 's3cr3t-token'
        with pytest.raises(LBError) as err:
            adapter_for(consul, token='wrong-token').get_state()
        assert 'HTTP 403' in str(err.value) and 'service:write' in str(err.value)
        assert 'wrong-token' not in str(err.value)
        with pytest.raises(LBError):
            adapter_for(consul).set_state('maintenance')
    finally:
        consul.stop()


def test_unreachable_agent():
    adapter = make_adapter('consul', {'url': 'http://127.0.0.1:9', 'service_id': 'test', 'timeout': 2.0})
    with pytest.raises(HttpError, match='GET http://127.0.0.1:9/v1/agent/services failed'):
        adapter.get_state()


def test_service_id_is_quoted(consul):
    adapter = make_adapter('consul', {'url': consul.base_url + '/', 'service_id': 'a/b c'})
    with pytest.raises(LBError):
        adapter.set_state('maintenance')
    assert consul.mutations()[-1]['path'] == '/v1/agent/service/maintenance/a%2Fb%20c'


def test_malformed_answers(consul):
    adapter = adapter_for(consul)
    consul.route = lambda *a: (200, '[]', 'application/json')
    with pytest.raises(LBError, match='expected a JSON object of services'):
        adapter.get_state()
    consul.route = lambda *a: (200, '', 'application/json')
    with pytest.raises(HttpError, match='not JSON'):
        adapter.get_state()
    consul.route = lambda *a: (200, '{"test": {}}' if a[1].endswith('services') else '"x"', 'application/json')
    with pytest.raises(LBError, match='expected a JSON object of checks'):
        adapter.get_state()


def test_service_id_required():
    with pytest.raises(LBError, match='service_id'):
        make_adapter('consul', {'url': 'http://127.0.0.1:8500'})
