# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import LBError, make_adapter
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_consul import maintenance_state, parse_checks
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


# ----------------------------------------------------------------------------------------- node maintenance, shape

NODE_CAPTURE = 'consul_v1_health_node_node_and_service_maintenance_consul-exporter-issue152.json'


def test_parse_checks_of_the_captured_node_answer():
    """GET /v1/health/node/<node> after "consul maint -enable" and "consul maint -enable -service=node" (real output)."""
    checks = parse_checks(json.loads(read_fixture(NODE_CAPTURE)), 'GET /v1/health/node/test')
    assert sorted(checks) == ['_node_maintenance', '_service_maintenance:node']
    state, raw = maintenance_state(checks, 'node')
    assert state == 'maintenance' and raw['maintenance'] is True and raw['node_maintenance'] is True
    assert raw['node_maintenance_check'] == {'CheckID': '_node_maintenance', 'Status': 'critical', 'Notes': 'testing'}


def test_node_maintenance_alone_reads_maintenance():
    """A service without its own maintenance check, on a node in maintenance (the captured node check), is not ready."""
    captured = json.loads(read_fixture(NODE_CAPTURE))
    node_only = [check for check in captured if check['CheckID'] == '_node_maintenance']
    state, raw = maintenance_state(parse_checks(node_only, 'GET /v1/health/node/test'), 'other')
    assert state == 'maintenance' and raw['maintenance'] is False and raw['node_maintenance'] is True


def test_captured_agent_checks_without_node_maintenance_read_ready():
    checks = parse_checks(json.loads(read_fixture('consul_v1_agent_checks_service_maintenance_consul0.5.json')), 'agent')
    checks.pop('_service_maintenance:test')
    assert maintenance_state(checks, 'test')[0] == 'ready'


class NodeMaintConsul(FakeConsul):
    """The agent of FakeConsul, its node in maintenance: the captured C(_node_maintenance) check added to its checks."""

    def route(self, method, path, query, headers, body):
        status, payload, content_type = super(NodeMaintConsul, self).route(method, path, query, headers, body)
        if method == 'GET' and path == '/v1/agent/checks':
            checks = json.loads(payload)
            node = [c for c in json.loads(read_fixture(NODE_CAPTURE)) if c['CheckID'] == '_node_maintenance'][0]
            checks['_node_maintenance'] = node
            payload = json.dumps(checks)
        return status, payload, content_type


def test_adapter_sees_node_maintenance_and_says_what_to_do():
    with NodeMaintConsul() as consul:
        adapter = adapter_for(consul)
        info = adapter.get_state()
        assert info['state'] == 'maintenance' and info['raw']['maintenance'] is False
        assert info['raw']['node_maintenance_check']['Notes'] == 'testing'
        ok, detail = adapter.verify('ready')
        assert not ok and 'the node itself is in maintenance mode' in detail and 'consul maint -disable' in detail
        ok, detail = adapter.verify('draining')
        assert ok and 'node maintenance check present (critical)' in detail


@pytest.mark.parametrize('payload, words', [
    ('{"service:test": "passing"}', 'a check that is not an object with a CheckID and a Status: "passing"'),
    ('{"service:test": {"CheckID": "service:test"}}', 'a check that is not an object with a CheckID and a Status'),
    ('{"x": {"CheckID": 5, "Status": "passing"}}', 'a check that is not an object with a CheckID and a Status'),
])
def test_checks_of_the_wrong_shape_are_refused(consul, payload, words):
    adapter = adapter_for(consul)
    consul.route = lambda *a: (200, '{"test": {}}' if a[1].endswith('services') else payload, 'application/json')
    with pytest.raises(LBError) as err:
        adapter.get_state()
    assert words in str(err.value) and '/v1/agent/checks' in str(err.value)


def test_token_ending_in_a_newline_is_sent_stripped_and_never_shown():
    consul = FakeConsul(token='s3cr3t-token').start()
    try:
        assert adapter_for(consul, token='s3cr3t-token\n').get_state()['state'] == 'ready'
        assert consul.requests[-1]['headers'].get('X-Consul-Token') == 's3cr3t-token'
        with pytest.raises(HttpError) as err:
            adapter_for(consul, token='s3cr3t\ntoken').get_state()
        assert 'X-Consul-Token contains a line break inside it' in str(err.value) and 's3cr3t' not in str(err.value)
    finally:
        consul.stop()


@pytest.mark.parametrize('url, words', [
    ('http://a..b:8500', "host name 'a..b' has an empty label"),
    ('http://%s:8500' % ('c' * 64), 'has a label of 64 characters'),
])
def test_bad_agent_url(url, words):
    with pytest.raises(HttpError) as err:
        make_adapter('consul', {'url': url, 'service_id': 'test'}).get_state()
    assert words in str(err.value)
