# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_http.request: URL and header checks, the whole-request deadline, the size cap, secrets masked, bodies decoded."""

from __future__ import annotations

import json
import socket
import time

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _http
from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError, request
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import MetricsServer, ThreadedServer, free_port

TOKEN = 's3cr3t-tok3n'


@pytest.fixture
def server():
    with MetricsServer() as srv:
        yield srv


class RawServer(ThreadedServer):
    """A TCP server on 127.0.0.1 that reads the request and hands every connection to C(handle(conn)) in a thread
    (for slow answers)."""

    def __init__(self, handle):
        self.answer = handle
        sock = socket.socket()
        sock.bind(('127.0.0.1', 0))
        self.url = 'http://127.0.0.1:%d/metrics' % sock.getsockname()[1]
        super(RawServer, self).__init__(sock, self.read_then_answer)

    def read_then_answer(self, conn):
        conn.recv(65536)
        self.answer(conn)


def trickle(data, pause=0.1):
    def handle(conn):
        for index in range(len(data)):
            conn.sendall(data[index:index + 1])
            time.sleep(pause)
    return handle


# --------------------------------------------------------------------------------------------- URL checks

@pytest.mark.parametrize('url, words', [
    ('http://a..b/x', "host name 'a..b' has an empty label (two dots in a row, or a leading dot)"),
    ('http://.example/x', 'has an empty label'),
    ('http://%s.example/x' % ('a' * 64), 'has a label of 64 characters'),
    ('http://%s/x' % '.'.join(['abcdefgh'] * 30), 'DNS allows at most 253'),
    ('http://bad_host!/x', "contains '!'"),
    ('http://127.0.0.1:0/x', 'port 0 is not between 1 and 65535'),
    ('http://127.0.0.1:99999/x', 'Port out of range'),
    ('http://127.0.0.1:port/x', 'Invalid URL'),
    ('ftp://127.0.0.1/x', "the scheme must be http or https, got 'ftp'"),
    ('http:///x', 'the host name is empty'),
    ('', 'The URL is empty'),
    ('http://x/a b', "contains ' ' (whitespace or a control character)"),
    ('http://x/a\r\nHost: y', "contains '\\r'"),
])
def test_bad_urls_are_refused_before_sending(url, words):
    with pytest.raises(HttpError) as err:
        request(url, timeout=1)
    assert words in str(err.value)
    assert 'UnicodeError' not in str(err.value)


@pytest.mark.parametrize('host', ['localhost', '127.0.0.1', '::1', 'gpu-07.models.example.net', 'münchen.example', 'a' * 63,
                                  'svc_internal.local', 'lb1.'])
def test_good_hosts(host):
    assert _http.host_problem(host) is None


def test_ipv6_url_is_accepted(server):
    assert _http.check_url('http://[::1]:8080/metrics') == 'http://[::1]:8080/metrics'


def test_password_in_url_is_masked_in_messages():
    port = free_port()
    with pytest.raises(HttpError) as err:
        request('http://user:pa55word@127.0.0.1:%d/x' % port, timeout=2)
    assert 'pa55word' not in str(err.value) and 'user:********@127.0.0.1' in str(err.value)


@pytest.mark.parametrize('timeout, words', [
    (float('nan'), 'timeout must be a finite number of seconds, got nan'),
    (float('inf'), 'timeout must be a finite number of seconds, got inf'),
    (-1, 'timeout must be more than 0.0 seconds, got -1'),
    (0, 'timeout must be more than 0.0 seconds, got 0'),
    (1e300, 'timeout must be at most 604800 seconds'),
])
def test_bad_timeouts(timeout, words):
    with pytest.raises(HttpError) as err:
        request('http://127.0.0.1:1/x', timeout=timeout)
    assert words in str(err.value)


# --------------------------------------------------------------------------------------------- headers and secrets

def test_token_is_stripped_and_sent(server):
    server.body = 'ok'
    request(server.url, token=TOKEN + '\n', timeout=5)
    assert server.requests[-1]['headers']['Authorization'] == 'Bearer ' + TOKEN


def test_headers_sent_stripped_and_scalars_as_text(server):
    server.body = 'ok'
    request(server.url, headers={'X-Tenant': ' blue \n', 'X-Retries': 3, 'X-Consul-Token': TOKEN + '\n'}, timeout=5)
    sent = server.requests[-1]['headers']
    assert sent['X-Tenant'] == 'blue' and sent['X-Retries'] == '3' and sent['X-Consul-Token'] == TOKEN


@pytest.mark.parametrize('headers, words', [
    ({'X-A': 'v\r\nX-Injected: 1'}, "Refusing the value of HTTP header X-A: it contains '\\r'"),
    ({'X-A': 'v\nX-Injected: 1'}, "Refusing the value of HTTP header X-A: it contains '\\n'"),
    ({'X A': 'v'}, "Refusing HTTP header name 'X A'"),
    ({'X-A:': 'v'}, "Refusing HTTP header name 'X-A:'"),
    ({'X-Consul-Token': TOKEN[:6] + '\n' + TOKEN[6:]}, 'The value of header X-Consul-Token contains a line break inside it'),
    ({'Authorization': 'Bearer ' + TOKEN + '\x00'}, 'The value of header Authorization contains'),
])
def test_header_injection_is_refused_and_secrets_unshown(server, headers, words):
    with pytest.raises(HttpError) as err:
        request(server.url, headers=headers, timeout=5)
    assert words in str(err.value)
    assert TOKEN not in str(err.value) and TOKEN[:6] + '\n' not in str(err.value)
    assert server.scrapes == 0


def test_masker_covers_every_form_of_the_token():
    mask = _http.make_masker([TOKEN + '\n'])
    texts = [
        "Invalid header value b'Bearer %s\\n'" % TOKEN,     # what http.client said for a token ending in a newline
        "Invalid header value 'Bearer %s\\n'" % TOKEN,
        'Authorization: Bearer %s' % TOKEN,
        'token=%s;' % TOKEN,
        json.dumps({'token': TOKEN + '\n'}),
    ]
    for text in texts:
        masked = mask(text)
        assert TOKEN not in masked and '********' in masked, masked


def test_token_echoed_in_an_error_body_is_masked(server):
    server.status = 403
    server.body = lambda: 'denied for %s' % server.requests[-1]['headers'].get('Authorization')
    with pytest.raises(HttpError) as err:
        request(server.url, token=TOKEN + '\n', timeout=5, expect_status=(200,))
    assert 'denied for ********' in str(err.value) and TOKEN not in str(err.value) and TOKEN not in err.value.body


def test_secrets_argument_is_masked_too(server):
    server.status = 500
    server.body = 'bad key abcd-1234'
    with pytest.raises(HttpError) as err:
        request(server.url, timeout=5, expect_status=(200,), secrets=['abcd-1234'])
    assert 'abcd-1234' not in str(err.value)


# --------------------------------------------------------------------------------------------- deadline and size

def test_trickled_body_is_cut_off_at_the_deadline():
    body = b'x' * 200
    srv = RawServer(lambda conn: (conn.sendall(b'HTTP/1.0 200 OK\r\nContent-Length: 200\r\n\r\n'), trickle(body)(conn)))
    try:
        started = time.monotonic()
        with pytest.raises(HttpError) as err:
            request(srv.url, timeout=0.8)
        assert time.monotonic() - started < 1.6
    finally:
        srv.close()
    assert 'no complete answer within timeout=0.8 s (the timeout bounds the whole request' in str(err.value)
    assert 'bytes of the body had arrived' in str(err.value)


def test_trickled_headers_are_cut_off_at_the_deadline():
    srv = RawServer(trickle(b'HTTP/1.0 200 OK\r\nContent-Length: 2\r\nX-Slow: ' + b'y' * 100 + b'\r\n\r\nok'))
    try:
        started = time.monotonic()
        with pytest.raises(HttpError) as err:
            request(srv.url, timeout=0.8)
        assert time.monotonic() - started < 1.6
    finally:
        srv.close()
    assert 'not even the status line and headers had arrived' in str(err.value)


def test_silent_server_times_out():
    srv = RawServer(lambda conn: time.sleep(3))
    try:
        with pytest.raises(HttpError, match='no complete answer within timeout=0.5 s'):
            request(srv.url, timeout=0.5)
    finally:
        srv.close()


def test_answer_over_the_cap_is_refused(server):
    server.body = 'x' * 5000
    with pytest.raises(HttpError, match='the answer is larger than 1000 bytes'):
        request(server.url, timeout=5, max_bytes=1000)
    assert request(server.url, timeout=5, max_bytes=5000).body == 'x' * 5000


def test_chunked_answer_is_read_whole():
    chunks = b''.join(b'%x\r\n%s\r\n' % (len(part), part) for part in (b'a' * 70000, b'b' * 10)) + b'0\r\n\r\n'
    srv = RawServer(lambda conn: conn.sendall(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n' + chunks))
    try:
        assert request(srv.url, timeout=5).body == 'a' * 70000 + 'b' * 10
    finally:
        srv.close()


# --------------------------------------------------------------------------------------------- bodies

def test_non_utf8_bodies_are_replaced(server):
    server.body = b'ok \xff\xfe'
    assert request(server.url, timeout=5).body == 'ok \ufffd\ufffd'
    server.status = 500
    server.body = b'error \xff'
    with pytest.raises(HttpError) as err:
        request(server.url, timeout=5, expect_status=(200,))
    assert 'error \ufffd' in str(err.value)
    json.dumps(str(err.value)).encode('utf-8')


def test_error_status_returned_when_not_expected(server):
    server.status = 503
    server.body = 'draining'
    resp = request(server.url, timeout=5)
    assert resp.status == 503 and resp.body == 'draining'


def test_json_error_names_the_url(server):
    server.body = 'not json'
    with pytest.raises(HttpError, match="%s returned a body that is not JSON" % server.url):
        request(server.url, timeout=5).json(server.url)


def test_connection_refused():
    port = free_port()
    with pytest.raises(HttpError, match='GET http://127.0.0.1:%d/x failed: .*refused' % port):
        request('http://127.0.0.1:%d/x' % port, timeout=2)


def test_response_masks_the_secrets_for_callers_quoting_the_body(server):
    """A caller quoting a non-2xx body itself (resubmission) masks it with resp.mask()."""
    server.status = 400
    server.body = lambda: 'bad request from %s' % server.requests[-1]['headers'].get('Authorization')
    resp = request(server.url, token=TOKEN + '\n', timeout=5)
    assert resp.status == 400 and TOKEN in resp.body
    assert resp.mask(resp.body) == 'bad request from ********'


def test_json_with_a_lone_surrogate_escape_stays_serializable(server):
    server.body = '{"Notes": "bad \\ud800 note", "ok": ["\\ud83d\\ude00"]}'
    data = request(server.url, timeout=5).json(server.url)
    json.dumps(data).encode('utf-8')
    assert data['Notes'].startswith('bad ') and '\ud800' not in data['Notes'] and data['ok'] == ['\U0001f600']


def test_json_nested_too_deeply_is_an_error_not_a_recursion(server):
    server.body = '[' * 5000 + ']' * 5000
    with pytest.raises(HttpError, match='returned JSON nested too deeply to read'):
        request(server.url, timeout=5).json(server.url)
