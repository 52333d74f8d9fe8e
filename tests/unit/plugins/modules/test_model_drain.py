# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import http.client
import os
import socket
import threading
import time

import pytest

from ansible_collections.modelops.shutdown.plugins.modules import model_drain
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import (
    FakeHAProxySocket,
    MetricsServer,
    QuietHandler,
    haproxy_csv,
    needs_haproxy,
    read_fixture,
    serve_http,
    stop_http,
)
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_haproxy import cli_answer

HAS_PROC = os.path.exists('/proc/net/tcp')


VLLM = read_fixture('vllm_metrics_v0.5_opt125m_datadog.txt')


def vllm_text(running, waiting=0):
    return VLLM.replace(
        'vllm:num_requests_running{model_name="facebook/opt-125m"} 0.0',
        'vllm:num_requests_running{model_name="facebook/opt-125m"} %.1f' % running).replace(
        'vllm:num_requests_waiting{model_name="facebook/opt-125m"} 0.0',
        'vllm:num_requests_waiting{model_name="facebook/opt-125m"} %.1f' % waiting)


# --- running main() through the shared run_module fixture (conftest.py) ---------------------------

@pytest.fixture
def run(run_module):
    """Run model_drain.main(); return C((failed, result, warnings))."""
    def runner(args, check_mode=False):
        result = run_module(model_drain, args, check_mode=check_mode)
        return result['failed'], result, result['warnings']
    return runner


# --- servers on 127.0.0.1 ------------------------------------------------------------------------

@pytest.fixture
def metrics():
    with MetricsServer() as srv:
        yield srv


class ModelServer(object):
    """A tiny "model server": GET /generate?s=SECONDS holds the request that long.

    Its vLLM-format metrics (the real capture, with the running gauge replaced by the number of
    requests being held) are served on a separate port, as Triton does (8000 vs 8002).
    """

    def __init__(self):
        self.active = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(QuietHandler):
            def do_GET(self):
                seconds = float(self.path.split('s=', 1)[1])
                with owner.lock:
                    owner.active += 1
                try:
                    time.sleep(seconds)
                    data = b'{"text": "ok"}'
                    self.send_response(200)
                    self.send_header('Content-Length', str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with owner.lock:
                        owner.active -= 1

        self.httpd = serve_http(Handler)
        self.port = self.httpd.server_address[1]
        self.metrics = MetricsServer(lambda: vllm_text(owner.active))
        self.finished = []

    def start_requests(self, durations):
        def one(seconds):
            conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
            conn.request('GET', '/generate?s=%s' % seconds)
            conn.getresponse().read()
            conn.close()
            self.finished.append(time.monotonic())

        threads = [threading.Thread(target=one, args=(d,), daemon=True) for d in durations]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while self.active < len(durations) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.active == len(durations)
        return threads

    def close(self):
        self.metrics.close()
        stop_http(self.httpd)


@pytest.fixture
def model_server():
    srv = ModelServer()
    yield srv
    srv.close()


# --- the acceptance test: notice the last request finishing within poll_interval ---------------

@pytest.mark.skipif(not HAS_PROC, reason='the connections source needs Linux /proc/net/tcp')
def test_returns_soon_after_the_last_request_finishes(run, model_server):
    threads = model_server.start_requests([0.4, 0.8, 1.5])
    failed, result, warnings = run({
        'metrics': {'url': model_server.metrics.url, 'preset': 'vllm', 'labels': {'model_name': 'facebook/opt-125m'}},
        'connections': {'port': model_server.port},
        'poll_interval': 0.5,
        'timeout': 30,
    })
    returned = time.monotonic()
    for thread in threads:
        thread.join(5)
    assert not failed, result['msg']
    assert len(model_server.finished) == 3
    last_done = max(model_server.finished)
    assert returned - last_done <= 0.5 + 0.5, 'returned %.3f s after the last request finished' % (returned - last_done)
    assert result['drained'] is True and result['changed'] is False
    assert result['in_flight_initial'] == 3
    assert result['in_flight_final'] == 0
    assert result['samples'][0]['sources'] == {'metrics': 3, 'connections': 3}
    assert result['samples'][-1] == {'t': result['waited_seconds'], 'in_flight': 0, 'sources': {'metrics': 0, 'connections': 0}}
    assert 1.2 <= result['waited_seconds'] <= 3
    assert result['polls'] == len(result['samples']) and result['samples_dropped'] == 0
    assert result['sources']['metrics']['detail'] == {
        'vllm:num_requests_running{model_name="facebook/opt-125m"}': 0, 'vllm:num_requests_waiting{model_name="facebook/opt-125m"}': 0,
        'vllm:num_requests_swapped{model_name="facebook/opt-125m"}': 0}
    assert result['sources']['connections'] == {'port': model_server.port, 'exclude_peers': [], 'in_flight': 0,
                                                'detail': {'established': 0, 'excluded': 0}}
    assert warnings == []


@pytest.mark.parametrize('poll_interval', [0.1, 1.0])
def test_poll_interval_bounds_the_reaction_time(run, metrics, poll_interval):
    state = {'done_at': None}
    metrics.body = vllm_text(2)

    def finish():
        time.sleep(0.7)
        metrics.body = vllm_text(0)
        state['done_at'] = time.monotonic()

    threading.Thread(target=finish, daemon=True).start()
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'poll_interval': poll_interval, 'timeout': 20})
    returned = time.monotonic()
    assert not failed and result['drained'] is True
    assert 0 <= returned - state['done_at'] <= poll_interval + 0.5


def test_already_drained_returns_after_one_read(run, metrics):
    metrics.body = read_fixture('tgi_metrics_datadog_payload_head.txt')
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'tgi'}})
    assert not failed
    assert result['drained'] is True and result['polls'] == 1 and result['waited_seconds'] < 0.5
    assert result['in_flight_initial'] == 0
    assert result['samples'] == [{'t': result['waited_seconds'], 'in_flight': 0, 'sources': {'metrics': 0}}]
    assert result['sources']['metrics']['preset'] == 'tgi'


def test_quiet_period_must_hold(run, metrics):
    metrics.body = read_fixture('tgi_metrics_datadog_payload_head.txt')
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'tgi'}, 'poll_interval': 0.1, 'quiet_period': 0.5})
    assert not failed and result['drained'] is True
    # Drained at the first read, yet it kept reading until 0 had held for the quiet period.
    assert result['waited_seconds'] >= 0.5 and result['polls'] >= 2
    assert all(sample['in_flight'] == 0 for sample in result['samples'])


def test_quiet_period_restarts_when_a_request_reappears(run, metrics):
    bodies = [vllm_text(0), vllm_text(1), vllm_text(0), vllm_text(0), vllm_text(0), vllm_text(0), vllm_text(0)]

    def body():
        return bodies.pop(0) if len(bodies) > 1 else bodies[0]

    metrics.body = body
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'poll_interval': 0.1, 'quiet_period': 0.25})
    assert not failed and result['drained'] is True
    values = [s['in_flight'] for s in result['samples']]
    assert values[:3] == [0, 1, 0] and values[-1] == 0 and len(values) >= 5


# --- timeouts --------------------------------------------------------------------------------------

def test_timeout_fails_with_the_numbers(run, metrics):
    metrics.body = read_fixture('sglang_metrics_docs_v0.4_loaded.txt')
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'sglang'}, 'timeout': 0.4, 'poll_interval': 0.1})
    assert failed
    assert result['msg'].startswith('2988 request(s) still in flight (metrics=2988) after ')
    assert 'within timeout=0.4 s' in result['msg'] and 'load balancer' in result['msg']
    assert result['drained'] is False and result['changed'] is False
    assert result['in_flight_initial'] == 2988 and result['in_flight_final'] == 2988
    assert 0.4 <= result['waited_seconds'] < 1.5
    assert result['polls'] >= 3


def test_timeout_proceed_warns(run, metrics):
    metrics.body = vllm_text(1, 1)
    failed, result, warnings = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'timeout': 0.2, 'poll_interval': 0.1,
                                    'on_timeout': 'proceed', 'quiet_period': 0.1})
    assert not failed
    assert result['drained'] is False and result['in_flight_final'] == 2
    assert len(warnings) == 1 and 'Proceeding because on_timeout=proceed' in warnings[0]
    assert 'stay 0 for 0.1 s' in warnings[0]


def test_timeout_zero_reads_once(run, metrics):
    metrics.body = vllm_text(1)
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'timeout': 0})
    assert failed and result['polls'] == 1


def test_max_samples_bounds_the_list(run, metrics):
    metrics.body = vllm_text(1)
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'timeout': 0.6, 'poll_interval': 0.1,
                                 'max_samples': 3, 'on_timeout': 'proceed'})
    assert not failed
    assert len(result['samples']) == 3
    assert result['samples_dropped'] == result['polls'] - 3 > 0
    # The first sample is kept and the oldest of the rest dropped: a gap of 2+ poll intervals follows it.
    times = [sample['t'] for sample in result['samples']]
    assert times == sorted(times) and times[1] - times[0] >= 0.19


# --- check mode ----------------------------------------------------------------------------------

def test_check_mode_reads_once_and_waits_for_nothing(run, metrics):
    metrics.body = vllm_text(3)
    start = time.monotonic()
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'timeout': 60}, check_mode=True)
    assert time.monotonic() - start < 2
    assert not failed
    assert result['drained'] is False and result['changed'] is False
    assert result['polls'] == 1 and metrics.scrapes == 1
    assert result['in_flight_initial'] == result['in_flight_final'] == 3
    assert result['samples'] == [{'t': result['waited_seconds'], 'in_flight': 3, 'sources': {'metrics': 3}}]
    assert result['waited_seconds'] < 1


def test_check_mode_drained(run, metrics):
    metrics.body = vllm_text(0)
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}}, check_mode=True)
    assert not failed and result['drained'] is True


def test_check_mode_error_still_fails(run):
    failed, result, dummy = run({'metrics': {'url': 'http://127.0.0.1:1/metrics', 'preset': 'vllm'}}, check_mode=True)
    assert failed and 'http://127.0.0.1:1/metrics' in result['msg']


# --- several sources: the max, not the sum ------------------------------------------------------

@needs_haproxy
def test_max_over_metrics_and_haproxy(run, metrics, tmp_path):
    fake = FakeHAProxySocket(str(tmp_path / 'admin.sock'))
    try:
        metrics.body = vllm_text(0)
        reads = {'n': 0}

        def answer():
            reads['n'] += 1
            return cli_answer(haproxy_csv(scur=2, qcur=1) if reads['n'] < 4 else haproxy_csv(scur=0))

        fake.answer = answer
        failed, result, dummy = run({
            'metrics': {'url': metrics.url, 'preset': 'vllm'},
            'haproxy': {'socket': fake.path, 'backend': 'webservers', 'server': 's1'},
            'poll_interval': 0.1,
        })
    finally:
        fake.close()
    assert not failed and result['drained'] is True
    assert result['samples'][0]['in_flight'] == 3 and result['samples'][0]['sources'] == {'metrics': 0, 'haproxy': 3}
    assert result['polls'] == 4
    assert result['sources']['haproxy']['detail'] == {'scur': 0, 'qcur': 0, 'status': 'UP'}
    assert result['sources']['haproxy']['backend'] == 'webservers'


@needs_haproxy
def test_haproxy_unknown_server_fails_clearly(run, tmp_path):
    fake = FakeHAProxySocket(str(tmp_path / 'admin.sock'))
    fake.answer = cli_answer(haproxy_csv(0))
    try:
        failed, result, dummy = run({'haproxy': {'socket': fake.path, 'backend': 'webservers', 'server': 'nope'}})
    finally:
        fake.close()
    assert failed and 'webservers/nope' in result['msg'] and 's1, s2' in result['msg']
    assert result['polls'] == 0 and result['in_flight_initial'] is None


@pytest.mark.skipif(not HAS_PROC, reason='the connections source needs Linux /proc/net/tcp')
def test_connections_excluding_peers(run):
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    client = socket.create_connection(('127.0.0.1', port))
    accepted = listener.accept()[0]
    try:
        failed, result, dummy = run({'connections': {'port': port, 'exclude_peers': ['127.0.0.0/8']}})
        assert not failed and result['drained'] is True
        assert result['sources']['connections']['detail'] == {'established': 0, 'excluded': 1}
        failed, result, dummy = run({'connections': {'port': port}, 'timeout': 0.2, 'poll_interval': 0.1})
        assert failed and result['in_flight_final'] == 1 and '(connections=1)' in result['msg']
    finally:
        for sock in (client, accepted, listener):
            sock.close()


# --- errors ----------------------------------------------------------------------------------------

def test_scrape_fails_mid_drain(run, metrics):
    bodies = [vllm_text(2)]

    def body():
        if bodies:
            return bodies.pop()
        metrics.status = 503
        return 'overloaded'

    metrics.body = body
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'poll_interval': 0.1})
    assert failed
    assert metrics.url in result['msg'] and 'HTTP 503' in result['msg']
    assert 'after 1 successful reads; the last one counted 2 in flight' in result['msg']
    assert result['in_flight_initial'] == 2 and result['polls'] == 1


def test_wrong_preset_names_url_and_metric(run, metrics):
    metrics.body = read_fixture('triton_metrics_datadog_head.txt')
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}})
    assert failed
    assert '%s does not export metric vllm:num_requests_running' % metrics.url in result['msg']
    assert 'traceback' not in result['msg'].lower()


def test_garbage_endpoint(run, metrics):
    metrics.body = '{"status": "healthy"}'
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'generic', 'metrics': [{'name': 'x'}]}})
    assert failed and 'did not return Prometheus text format (line 1: ' in result['msg']


def test_token_is_no_log():
    spec = model_drain.argument_spec()
    assert spec['metrics']['options']['token']['no_log'] is True
    assert spec['metrics']['options']['validate_certs']['default'] is True


@pytest.mark.parametrize('args, words', [
    ({}, 'one of the following is required: metrics, haproxy, connections'),
    ({'connections': {'port': 80}, 'poll_interval': 0.05}, 'poll_interval must be at least 0.1 seconds, got 0.05'),
    ({'connections': {'port': 80}, 'timeout': -1}, 'timeout must be 0 or more seconds'),
    ({'connections': {'port': 80}, 'quiet_period': -1}, 'quiet_period must be 0 or more seconds'),
    ({'connections': {'port': 80}, 'max_samples': 1}, 'max_samples must be at least 2'),
    ({'connections': {'port': 0}}, 'connections.port must be between 1 and 65535'),
    ({'connections': {'port': 80, 'exclude_peers': ['lb.example']}}, "'lb.example' is not an IP address or CIDR network"),
    ({'metrics': {'url': 'http://x/metrics'}}, 'preset is generic but all of the following are missing: metrics'),
    ({'metrics': {'url': 'http://x/metrics', 'preset': 'tgi', 'metrics': [{'name': 'x'}]}}, 'only with preset "generic"'),
    ({'metrics': {'url': 'http://x/metrics', 'preset': 'vllm', 'timeout': 0}}, 'metrics.timeout must be more than 0'),
    ({'metrics': {'url': 'http://x/metrics', 'preset': 'ollama'}}, 'value of preset must be one of'),
    ({'haproxy': {'backend': 'b', 'server': 's'}}, 'one of the following is required: socket, host'),
    ({'haproxy': {'socket': '/s', 'host': 'h', 'port': 1, 'backend': 'b', 'server': 's'}}, 'mutually exclusive: socket|host'),
    ({'haproxy': {'host': 'h', 'backend': 'b', 'server': 's'}}, 'parameters are required together: host, port'),
    ({'haproxy': {'host': 'h', 'port': 70000, 'backend': 'b', 'server': 's'}}, 'haproxy.port must be between 1 and 65535'),
])
def test_argument_errors(run, args, words):
    failed, result, dummy = run(args)
    assert failed
    assert words in result['msg']


# --- since, drained_at, non-finite numbers (main() through DrainWaiter) ----------------------------

def test_since_counts_the_deadline_from_the_mark(run, metrics):
    metrics.body = vllm_text(1)
    since = time.time() - 100
    start = time.monotonic()
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'since': since, 'timeout': 100.3,
                                 'poll_interval': 0.1})
    assert time.monotonic() - start < 2
    assert failed and '(counted from since=%s)' % round(since, 3) in result['msg']
    assert result['started_at'] == round(since, 3)
    assert 100.3 <= result['waited_seconds'] < 102
    assert result['samples'][0]['t'] >= 100 and result['drained_at'] is None


def test_since_in_the_future_warns(run, metrics):
    metrics.body = vllm_text(0)
    failed, result, warnings = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'since': time.time() + 3600})
    assert not failed and result['drained'] is True
    assert len(warnings) == 1 and 'ahead of the clock' in warnings[0]
    assert result['waited_seconds'] < 1 and result['started_at'] <= result['finished_at']


def test_drained_at_is_returned(run, metrics):
    metrics.body = vllm_text(0)
    before = time.time()
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}})
    assert not failed and before - 0.01 <= result['drained_at'] <= result['finished_at'] + 0.01


def test_failure_results_have_every_key(run):
    failed, result, dummy = run({'metrics': {'url': 'http://127.0.0.1:1/metrics', 'preset': 'vllm'}})
    assert failed and result['drained'] is False and result['drained_at'] is None
    assert result['polls'] == 0 and result['samples'] == [] and 'metrics' in result['sources']


@pytest.mark.parametrize('args, words', [
    ({'connections': {'port': 80}, 'timeout': 'nan'}, 'timeout must be a finite number of seconds, got nan'),
    ({'connections': {'port': 80}, 'poll_interval': 'nan'}, 'poll_interval must be a finite number of seconds, got nan'),
    ({'connections': {'port': 80}, 'quiet_period': 'inf'}, 'quiet_period must be a finite number of seconds, got inf'),
    ({'metrics': {'url': 'http://x/metrics', 'preset': 'vllm', 'timeout': 'nan'}}, 'metrics.timeout must be a finite number'),
    ({'connections': {'port': 80}, 'since': 'nan'}, 'since must be a wall-clock time in seconds since the epoch, got nan'),
])
def test_non_finite_numbers_are_refused(run, args, words):
    failed, result, dummy = run(args)
    assert failed and words in result['msg']


# --- bad input from the sweep against a real HAProxy 2.6 (each a clear failure, never drained, never a traceback) ---

@pytest.mark.parametrize('args', [
    {'metrics': None, 'haproxy': None, 'connections': None},
    {'haproxy': None},
    {'metrics': None, 'timeout': 5},
])
def test_every_source_null_is_an_error_not_drained(run, args):
    failed, result, dummy = run(args)
    assert failed and result['drained'] is False and result['drained_at'] is None
    assert 'no in-flight source is configured: give at least one of metrics, haproxy, connections' in result['msg']
    assert result['polls'] == 0 and result['in_flight_final'] is None


def test_trickling_metrics_endpoint_is_cut_off_at_the_timeout(run):
    """An endpoint sending one byte every 0.2 s: metrics.timeout bounds the whole request, not each read."""
    class Trickle(QuietHandler):
        def do_GET(self):
            body = vllm_text(0).encode()
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            try:
                for index in range(len(body)):
                    self.wfile.write(body[index:index + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

    httpd = serve_http(Trickle)
    try:
        started = time.monotonic()
        failed, result, dummy = run({'metrics': {'url': 'http://127.0.0.1:%d/metrics' % httpd.server_address[1], 'preset': 'vllm',
                                                 'timeout': 1}, 'timeout': 4})
        elapsed = time.monotonic() - started
    finally:
        stop_http(httpd)
    assert failed and elapsed < 3
    assert 'no complete answer within timeout=1.0 s (the timeout bounds the whole request' in result['msg']
    assert result['drained'] is False


@pytest.mark.parametrize('args, words', [
    ({'haproxy': {'socket': '', 'backend': 'b', 'server': 's'}}, 'haproxy.socket is empty'),
    ({'haproxy': {'host': 'lb1', 'port': 0, 'backend': 'b', 'server': 's'}}, 'haproxy.port must be between 1 and 65535, got 0'),
    ({'haproxy': {'host': 'a..b', 'port': 9999, 'backend': 'b', 'server': 's'}}, "host name 'a..b' has an empty label"),
    ({'haproxy': {'socket': '/run/haproxy.sock', 'backend': 'b;disable server b/x', 'server': 's'}},
     'Refusing HAProxy backend name'),
    ({'metrics': {'url': 'http://%s.example/metrics' % ('x' * 64), 'preset': 'vllm'}}, 'has a label of 64 characters'),
    ({'metrics': {'url': 'http://a..b/metrics', 'preset': 'vllm'}}, "host name 'a..b' has an empty label"),
    ({'connections': {'port': 80}, 'timeout': 1e300}, 'timeout must be at most 604800 seconds'),
    ({'connections': {'port': 80}, 'poll_interval': 1e300}, 'poll_interval must be at most 604800 seconds'),
    ({'metrics': {'url': 'http://x/metrics', 'preset': 'vllm', 'timeout': -1}}, 'metrics.timeout must be more than 0'),
])
def test_bad_input_is_a_clear_failure(run, args, words):
    failed, result, dummy = run(args)
    assert failed and words in result['msg'] and result['drained'] is False
    assert 'Traceback' not in result['msg'] and 'UnicodeError' not in result['msg']


@pytest.mark.parametrize('token', ['s3cr3t-tok3n\n', 's3cr3t-tok3n'])
def test_token_never_appears_in_the_failure(run, token):
    url = 'http://127.0.0.1:1/metrics'
    failed, result, dummy = run({'metrics': {'url': url, 'preset': 'vllm', 'token': token, 'timeout': 2}, 'timeout': 0})
    assert failed and url in result['msg'] and 'Connection refused' in result['msg']
    assert 's3cr3t' not in repr(result)


@pytest.mark.parametrize('token, words', [
    ('s3cr3t\nx', 'metrics.token contains a line break inside it'),
    ('Bearer s3cr3t', 'metrics.token contains a space after "Bearer" (give the token alone'),
    ('s3cr3t\tx', 'metrics.token contains whitespace, a control or a non-ASCII character inside it'),
    ('\n', 'metrics.token is empty once surrounding whitespace is removed'),
])
def test_token_that_cannot_be_sent_is_refused_unshown(run, token, words):
    failed, result, dummy = run({'metrics': {'url': 'http://127.0.0.1:1/metrics', 'preset': 'vllm', 'token': token}})
    assert failed and words in result['msg']
    assert 's3cr3t' not in repr(result)


def test_token_echoed_by_the_server_is_masked(run, metrics):
    """A server echoing the Authorization header in its error body: the token is masked in the message."""
    metrics.status = 401
    metrics.body = lambda: 'invalid credentials: %s' % metrics.requests[-1]['headers'].get('Authorization')
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm', 'token': 's3cr3t-tok3n\n'}})
    assert failed and 'HTTP 401' in result['msg'] and 'invalid credentials: ********' in result['msg']
    assert 's3cr3t' not in repr(result)


def test_non_utf8_error_body_keeps_the_message(run, metrics):
    metrics.status = 500
    metrics.body = b'internal error \xff\xfe\xfd'
    failed, result, dummy = run({'metrics': {'url': metrics.url, 'preset': 'vllm'}})
    assert failed and 'HTTP 500' in result['msg'] and 'internal error \ufffd' in result['msg']


@pytest.mark.parametrize('args, words', [
    ({'haproxy': 0, 'connections': {'port': 80}}, "argument 'haproxy' is of type int and we were unable to convert to dict"),
    ({'metrics': True}, "argument 'metrics' is of type bool and we were unable to convert to dict"),
    ({'connections': 1.5}, "argument 'connections' is of type float and we were unable to convert to dict"),
    ({'metrics': {'url': 'http://x/metrics', 'metrics': [0]}}, 'metrics'),
])
def test_scalar_for_a_source_is_an_argument_error_not_a_traceback(run, args, words):
    """ansible-core itself raises a TypeError on these unless the spec is guarded (module_argument_spec)."""
    failed, result, dummy = run(args)
    assert failed and words in result['msg']
