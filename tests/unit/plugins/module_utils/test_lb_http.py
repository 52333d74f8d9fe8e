# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import LBError, make_adapter
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeModelServer


@pytest.fixture
def srv():
    with FakeModelServer() as server:
        yield server


def adapter_for(srv, **extra):
    params = {'url': srv.base_url + '/admin/state'}
    params.update(extra)
    return make_adapter('http', params)


def test_reference_server_round_trip(srv):
    adapter = adapter_for(srv)
    assert adapter.get_state() == {'state': 'ready', 'raw': {'reported': 'ready', 'response': {'state': 'ready'}},
                                   'in_flight': None}
    for target in ('draining', 'maintenance', 'ready'):
        adapter.set_state(target)
        post = srv.mutations()[-1]
        assert post['method'] == 'POST' and json.loads(post['body']) == {'state': target}
        assert post['headers']['Content-Type'] == 'application/json'
        ok, detail = adapter.verify(target)
        assert ok, detail


def test_body_template_method_headers_and_token():
    srv = FakeModelServer(token='tok-123').start()
    try:
        adapter = adapter_for(srv, body='{"state": "{state}", "by": "ansible"}', headers={'X-Req': '1'}, token='tok-123')
        adapter.set_state('draining')
        post = srv.mutations()[-1]
        assert json.loads(post['body']) == {'state': 'draining', 'by': 'ansible'}
        assert post['headers']['X-Req'] == '1' and post['headers']['Authorization'] == 'Bearer tok-123'
        assert adapter.get_state()['state'] == 'draining'
        with pytest.raises(HttpError) as err:
            adapter_for(srv).get_state()
        assert 'HTTP 401' in str(err.value) and 'tok-123' not in str(err.value)
    finally:
        srv.stop()


def test_put_and_custom_content_type(srv):
    adapter = adapter_for(srv, method='put', body='state={state}', headers={'content-type': 'text/plain'})
    with pytest.raises(HttpError, match='PUT .* returned HTTP 404'):
        adapter.set_state('draining')
    put = srv.mutations()[-1]
    assert put['method'] == 'PUT' and put['body'] == 'state=draining' and put['headers']['Content-Type'] == 'text/plain'


def test_state_url_and_nested_key(srv):
    srv.route = lambda m, p, q, h, b: (200, json.dumps({'admin': {'mode': 'draining'}}), 'application/json')
    adapter = adapter_for(srv, state_url=srv.base_url + '/status', state_key='admin.mode')
    assert adapter.get_state()['state'] == 'draining'
    assert srv.requests[-1]['path'] == '/status'
    assert adapter.describe() == 'HTTP admin endpoint %s/status' % srv.base_url


def test_unknown_reported_value(srv):
    srv.state = 'warming-up'
    info = adapter_for(srv).get_state()
    assert info['state'] == 'unknown' and info['raw']['reported'] == 'warming-up'


@pytest.mark.parametrize('payload,error,match', [
    ('{"status": "ready"}', LBError, "without the key 'state'"),
    ('["ready"]', LBError, "without the key 'state'"),
    ('', HttpError, 'not JSON'),
    ('<html>oops</html>', HttpError, 'not JSON'),
])
def test_malformed_state_answers(srv, payload, error, match):
    srv.route = lambda m, p, q, h, b: (200, payload, 'application/json')
    with pytest.raises(error, match=match):
        adapter_for(srv).get_state()


def test_refused_change(srv):
    srv.route = lambda m, p, q, h, b: (409, '{"error": "busy"}', 'application/json')
    with pytest.raises(HttpError, match='POST .* returned HTTP 409.*busy'):
        adapter_for(srv).set_state('draining')


def test_verify_when_ignored():
    srv = FakeModelServer(ignore_sets=True).start()
    try:
        adapter = adapter_for(srv)
        adapter.set_state('maintenance')
        ok, detail = adapter.verify('maintenance')
        assert not ok and "'ready'" in detail and "'maintenance'" in detail
    finally:
        srv.stop()


def test_url_required():
    with pytest.raises(LBError, match='http.url'):
        make_adapter('http', {})


# ----------------------------------------------------------------------------------------- headers, tokens, bad input

class HeaderGatedServer(FakeModelServer):
    """The reference server behind a gateway that answers 403 to any request without C(X-Tenant: blue), reads included."""

    def route(self, method, path, query, headers, body):
        if headers.get('X-Tenant') != 'blue':
            return 403, json.dumps({'error': 'X-Tenant required'}), 'application/json'
        return super(HeaderGatedServer, self).route(method, path, query, headers, body)


def test_extra_headers_go_with_the_get_that_reads_the_state_too():
    with HeaderGatedServer() as srv:
        adapter = adapter_for(srv, headers={'X-Tenant': 'blue'})
        assert adapter.get_state()['state'] == 'ready'
        adapter.set_state('draining')
        assert adapter.verify('draining')[0]
        gets = [r for r in srv.requests if r['method'] == 'GET']
        assert gets and all(r['headers'].get('X-Tenant') == 'blue' for r in srv.requests)
        assert all('Content-Type' not in r['headers'] for r in gets)


def test_token_ending_in_a_newline_is_sent_stripped_and_never_shown():
    srv = FakeModelServer(token='tok-123').start()
    try:
        adapter = adapter_for(srv, token='tok-123\n')
        adapter.set_state('draining')
        assert srv.mutations()[-1]['headers']['Authorization'] == 'Bearer tok-123'
        assert adapter.get_state()['state'] == 'draining'
        with pytest.raises(HttpError) as err:
            adapter_for(srv, token='zq9x\n-123').get_state()
        assert 'bearer token contains a line break inside it' in str(err.value) and 'zq9x' not in str(err.value)
    finally:
        srv.stop()


@pytest.mark.parametrize('value', [['draining'], {'state': 'ready'}, 3, None])
def test_reported_value_that_is_not_a_state_reads_unknown(srv, value):
    srv.route = lambda *a: (200, json.dumps({'state': value}), 'application/json')
    info = adapter_for(srv).get_state()
    assert info['state'] == 'unknown' and info['raw']['reported'] == value


@pytest.mark.parametrize('url, words', [
    ('http://a..b/admin/state', "host name 'a..b' has an empty label"),
    ('http://%s/admin/state' % ('h' * 64), 'has a label of 64 characters'),
])
def test_bad_url(url, words):
    with pytest.raises(HttpError) as err:
        make_adapter('http', {'url': url}).get_state()
    assert words in str(err.value) and 'UnicodeError' not in str(err.value)


def test_header_injection_refused(srv):
    with pytest.raises(HttpError, match="Refusing the value of HTTP header X-Req: it contains '\\\\n'"):
        adapter_for(srv, headers={'X-Req': '1\nX-Admin: yes'}).set_state('draining')
    assert srv.requests == []


def test_deeply_nested_state_answer_is_an_adapter_error(srv):
    srv.route = lambda *a: (200, '[' * 3000 + ']' * 3000, 'application/json')
    with pytest.raises(HttpError, match='nested too deeply'):
        adapter_for(srv).get_state()
