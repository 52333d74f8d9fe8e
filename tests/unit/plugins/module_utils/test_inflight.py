# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import sys

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _inflight
from ansible_collections.modelops.shutdown.plugins.module_utils import _netstat
from ansible_collections.modelops.shutdown.plugins.module_utils._inflight import InFlightError
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import (
    HAPROXY_STAT_CSV,
    FakeHAProxySocket,
    MetricsServer,
    fixture_path,
    free_port,
    haproxy_csv,
    needs_haproxy,
    read_fixture,
)
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_haproxy import cli_answer

TCP4 = fixture_path('proc_net_tcp_dev_established_timewait.txt')
TCP6 = fixture_path('proc_net_tcp6_dev_established_v4mapped.txt')


# --- a real HTTP server on 127.0.0.1 -------------------------------------------------------------

@pytest.fixture
def server():
    with MetricsServer() as srv:
        yield srv


# --- metrics source: presets on real captures ---------------------------------------------------

@pytest.mark.parametrize('preset, name, labels, expected, detail', [
    ('vllm', 'vllm_metrics_v0.5_opt125m_datadog.txt', {'model_name': 'facebook/opt-125m'}, 0,
     {'vllm:num_requests_running{model_name="facebook/opt-125m"}': 0, 'vllm:num_requests_waiting{model_name="facebook/opt-125m"}': 0,
      'vllm:num_requests_swapped{model_name="facebook/opt-125m"}': 0}),
    ('sglang', 'sglang_metrics_docs_v0.4_loaded.txt', None, 162 + 2826,
     {'sglang:num_running_reqs': 162, 'sglang:num_queue_reqs': 2826}),
    ('tgi', 'tgi_metrics_datadog_payload_head.txt', None, 0, {'tgi_queue_size': 0, 'tgi_batch_current_size': 0}),
    ('triton', 'triton_metrics_datadog_head.txt', {'model': 'densenet_onnx'}, 0,
     {'nv_inference_pending_request_count{model="densenet_onnx"}': 0}),
    ('triton', 'triton_metrics_datadog_head.txt', None, 0, {'nv_inference_pending_request_count': 0}),
])
def test_presets_on_real_captures(server, preset, name, labels, expected, detail):
    server.body = read_fixture(name)
    source = _inflight.MetricsSource(server.url, preset=preset, labels=labels)
    result = source.read()
    assert result == {'in_flight': expected, 'detail': detail}
    assert isinstance(result['in_flight'], int)


def vllm_v0(running=0, waiting=0, swapped=0):
    """The real vLLM V0 capture with its three request gauges set."""
    text = read_fixture('vllm_metrics_v0.5_opt125m_datadog.txt')
    for name, value in (('running', running), ('waiting', waiting), ('swapped', swapped)):
        line = 'vllm:num_requests_%s{model_name="facebook/opt-125m"} 0.0' % name
        assert line in text
        text = text.replace(line, line[:-3] + '%.1f' % value)
    return text


def test_vllm_preset_counts_swapped_requests(server):
    """vLLM V0 swaps preempted requests to CPU memory; they are still in flight and must be waited for."""
    server.body = vllm_v0(running=0, waiting=0, swapped=2)
    result = _inflight.MetricsSource(server.url, preset='vllm').read()
    assert result['in_flight'] == 2
    assert result['detail'] == {'vllm:num_requests_running': 0, 'vllm:num_requests_waiting': 0, 'vllm:num_requests_swapped': 2}
    server.body = vllm_v0(running=3, waiting=1, swapped=2)
    assert _inflight.MetricsSource(server.url, preset='vllm').read()['in_flight'] == 6


def test_vllm_preset_without_the_swapped_gauge(server):
    """vLLM V1 exports no vllm:num_requests_swapped: running + waiting is the figure, not a failure.

    The input is the V0 capture with the swapped family removed (V1's own capture is not in the fixtures).
    """
    text = '\n'.join(line for line in vllm_v0(running=1, waiting=1).split('\n') if 'num_requests_swapped' not in line)
    server.body = text
    result = _inflight.MetricsSource(server.url, preset='vllm').read()
    assert result['in_flight'] == 2 and 'vllm:num_requests_swapped' not in result['detail']


def test_vllm_figures_change_between_scrapes(server):
    base = read_fixture('vllm_metrics_v0.5_opt125m_datadog.txt')
    source = _inflight.MetricsSource(server.url, preset='vllm')
    server.body = base.replace('vllm:num_requests_running{model_name="facebook/opt-125m"} 0.0',
                               'vllm:num_requests_running{model_name="facebook/opt-125m"} 3.0').replace(
        'vllm:num_requests_waiting{model_name="facebook/opt-125m"} 0.0', 'vllm:num_requests_waiting{model_name="facebook/opt-125m"} 2.0')
    assert source.read()['in_flight'] == 5
    server.body = base
    assert source.read()['in_flight'] == 0


# Ray Serve: no genuine capture exists (see /work/shared/fixtures/SOURCES.md). This text follows the
# names and labels documented in Ray's doc/source/serve/monitoring.md; it is not a capture.
RAY_TEXT = '''# HELP ray_serve_replica_processing_queries The current number of queries being processed.
# TYPE ray_serve_replica_processing_queries gauge
ray_serve_replica_processing_queries{application="llm",deployment="LLMServer",replica="LLMServer#abc"} 2.0
ray_serve_replica_processing_queries{application="llm",deployment="Ingress",replica="Ingress#def"} 1.0
# HELP ray_serve_deployment_queued_queries The current number of queries to this deployment waiting to be assigned to a replica.
# TYPE ray_serve_deployment_queued_queries gauge
ray_serve_deployment_queued_queries{actor_id="a1",application="llm",deployment="LLMServer",handle="h1"} 4.0
'''


def test_ray_serve_preset_documented_names(server):
    server.body = RAY_TEXT
    assert _inflight.MetricsSource(server.url, preset='ray_serve').read()['in_flight'] == 7
    only = _inflight.MetricsSource(server.url, preset='ray_serve', labels={'deployment': 'LLMServer'}).read()
    assert only['in_flight'] == 6


def test_generic_metrics_with_labels_merged(server):
    server.body = read_fixture('triton_metrics_datadog_head.txt')
    source = _inflight.MetricsSource(server.url, preset='generic', labels={'version': '1'}, metrics=[
        {'name': 'nv_inference_request_success', 'labels': {'model': 'densenet_onnx'}},
        {'name': 'nv_inference_pending_request_count', 'labels': None},
    ])
    result = source.read()
    assert result['in_flight'] == 3
    assert source.describe()['metrics'][0] == {'name': 'nv_inference_request_success', 'labels': {'version': '1', 'model': 'densenet_onnx'}}


def test_token_headers_and_accept_are_sent_and_not_described(server):
    server.body = 'x 1\n'
    source = _inflight.MetricsSource(server.url, metrics=[{'name': 'x'}], token='s3cr3t', headers={'X-Tenant': 'blue'})
    assert source.read()['in_flight'] == 1
    sent = server.requests[-1]['headers']
    assert sent['Authorization'] == 'Bearer s3cr3t'
    assert sent['X-Tenant'] == 'blue'
    assert sent['Accept'].startswith('text/plain;version=0.0.4')
    described = repr(source.describe())
    assert 's3cr3t' not in described and 'blue' not in described
    assert source.describe()['header_names'] == ['X-Tenant']


@pytest.mark.parametrize('token', ['s3cr3t-token\n', '  s3cr3t-token\r\n', 's3cr3t-token'])
def test_token_with_surrounding_whitespace_is_stripped(server, token):
    """A token read from a YAML block scalar or slurp | b64decode ends with a newline; it is sent stripped."""
    server.body = 'x 1\n'
    assert _inflight.MetricsSource(server.url, metrics=['x'], token=token).read()['in_flight'] == 1
    assert server.requests[-1]['headers']['Authorization'] == 'Bearer s3cr3t-token'


def test_token_with_a_newline_inside_is_refused_without_showing_it():
    with pytest.raises(InFlightError) as err:
        _inflight.MetricsSource('http://127.0.0.1:1/metrics', metrics=['x'], token='s3cr3t\ntoken')
    assert 'metrics.token contains a line break inside it' in str(err.value)
    assert 's3cr3t' not in str(err.value)


@pytest.mark.parametrize('url, words', [
    ('http://a..b/metrics', "host name 'a..b' has an empty label"),
    ('http://%s.example/metrics' % ('x' * 64), 'has a label of 64 characters'),
    ('http://127.0.0.1:0/metrics', 'port 0 is not between 1 and 65535'),
    ('ftp://127.0.0.1/metrics', 'the scheme must be http or https'),
])
def test_bad_url_is_refused_when_configured(url, words):
    with pytest.raises(InFlightError) as err:
        _inflight.MetricsSource(url, preset='tgi')
    assert 'Invalid metrics.url' in str(err.value) and words in str(err.value)


def test_fractional_values_stay_floats(server):
    server.body = 'x 0.5\nx 1.25\n'
    assert _inflight.MetricsSource(server.url, metrics=['x']).read()['in_flight'] == 1.75


# --- metrics source: errors name the URL and the metric ------------------------------------------

def test_missing_metric_names_url_and_metric(server):
    server.body = read_fixture('tgi_metrics_datadog_payload_head.txt')
    with pytest.raises(InFlightError) as err:
        _inflight.MetricsSource(server.url, preset='vllm').read()
    msg = str(err.value)
    assert '%s does not export metric vllm:num_requests_running, which preset vllm needs' % server.url in msg


def test_declared_but_no_samples(server):
    server.body = '# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_waiting 0\n'
    with pytest.raises(InFlightError, match=r'declares metric vllm:num_requests_running \(# TYPE gauge\) but exports no sample of it'):
        _inflight.MetricsSource(server.url, preset='vllm').read()


def test_label_filter_matching_nothing_lists_label_sets(server):
    server.body = read_fixture('vllm_metrics_v0.5_opt125m_datadog.txt')
    with pytest.raises(InFlightError) as err:
        _inflight.MetricsSource(server.url, preset='vllm', labels={'model_name': 'llama'}).read()
    msg = str(err.value)
    assert 'no sample matches the labels {model_name="llama"}' in msg
    assert '{model_name="facebook/opt-125m"}' in msg and server.url in msg


@pytest.mark.parametrize('value', ['NaN', '+Inf', '-1'])
def test_impossible_values(server, value):
    server.body = 'tgi_queue_size %s\ntgi_batch_current_size 0\n' % value
    with pytest.raises(InFlightError, match='cannot be a count of requests'):
        _inflight.MetricsSource(server.url, preset='tgi').read()


def test_http_error_status(server):
    server.status = 404
    server.body = 'not found'
    with pytest.raises(InFlightError) as err:
        _inflight.MetricsSource(server.url, preset='tgi').read()
    assert 'GET %s returned HTTP 404' % server.url in str(err.value)
    assert '/metrics endpoint' in str(err.value)


def test_connection_refused_names_url():
    url = 'http://127.0.0.1:%d/metrics' % free_port()
    with pytest.raises(InFlightError) as err:
        _inflight.MetricsSource(url, preset='tgi', timeout=2).read()
    assert url in str(err.value) and 'server is up' in str(err.value)


def test_garbage_body_names_url_and_line(server):
    server.body = '<html>\n<body>login</body>\n</html>\n'
    server.content_type = 'text/html'
    with pytest.raises(InFlightError) as err:
        _inflight.MetricsSource(server.url, preset='tgi').read()
    assert '%s did not return Prometheus text format (line 1: ' % server.url in str(err.value)


def test_empty_body_means_metric_missing(server):
    server.body = ''
    with pytest.raises(InFlightError, match='does not export metric tgi_queue_size'):
        _inflight.MetricsSource(server.url, preset='tgi').read()


def test_tls_verified_by_default():
    source = _inflight.MetricsSource('https://127.0.0.1:1/metrics', preset='tgi')
    calls = []

    def fake_request(url, **kwargs):
        calls.append(kwargs)
        raise _inflight._http.HttpError('GET %s failed: boom' % url)

    source._request = fake_request
    with pytest.raises(InFlightError):
        source.read()
    assert calls[0]['validate_certs'] is True and calls[0]['expect_status'] == (200,)


@pytest.mark.parametrize('kwargs, words', [
    ({'preset': 'generic'}, 'needs a list of metrics'),
    ({'preset': 'generic', 'metrics': [{'labels': {}}]}, 'needs a name'),
    ({'preset': 'vllm', 'metrics': [{'name': 'x'}]}, 'only with preset "generic"'),
    ({'preset': 'nope'}, 'unknown metrics preset'),
])
def test_bad_configuration(kwargs, words):
    with pytest.raises(InFlightError, match=words):
        _inflight.MetricsSource('http://127.0.0.1:1/metrics', **kwargs)


# --- /proc/net/tcp parsing on real captures ----------------------------------------------------

def test_parse_proc_net_tcp_capture():
    entries = _netstat.parse_proc_net_tcp(open(TCP4).read(), byteorder='little')
    assert len(entries) == 9
    listen = entries[0]
    assert listen['local'] == ipaddress.ip_address('127.0.0.1') and listen['local_port'] == 18080 and listen['state'] == '0A'
    assert entries[4]['local'] == ipaddress.ip_address('192.0.2.2') and entries[4]['remote'] == ipaddress.ip_address('203.0.113.80')
    assert entries[4]['remote_port'] == 80 and entries[4]['state'] == '06'


def test_parse_proc_net_tcp6_capture_maps_ipv4():
    entries = _netstat.parse_proc_net_tcp(open(TCP6).read(), byteorder='little')
    assert [str(e['remote']) for e in entries] == ['::', '::1', '::1', '127.0.0.1']
    assert entries[3]['local'] == ipaddress.ip_address('127.0.0.1') and entries[3]['local_port'] == 18081


def test_established_only_time_wait_not_counted():
    assert _netstat.read_established(18080, paths=(TCP4, TCP6), byteorder='little') == (2, 0)


def test_tcp6_and_v4_mapped_counted_once_each():
    assert _netstat.read_established(18081, paths=(TCP4, TCP6), byteorder='little') == (2, 0)


@pytest.mark.parametrize('exclude, expected', [
    (['127.0.0.1'], (1, 1)),
    (['::ffff:127.0.0.1'], (1, 1)),
    (['[::1]'], (1, 1)),
    (['127.0.0.0/8', '::1'], (0, 2)),
    (['::ffff:127.0.0.0/104'], (1, 1)),
    (['10.0.0.5'], (2, 0)),
])
def test_exclude_peers(exclude, expected):
    networks = _netstat.parse_networks(exclude)
    assert _netstat.read_established(18081, networks, paths=(TCP4, TCP6), byteorder='little') == expected


def test_connections_source_on_captures():
    source = _inflight.ConnectionsSource(18081, exclude_peers=['127.0.0.1'], paths=(TCP4, TCP6), byteorder='little')
    assert source.read() == {'in_flight': 1, 'detail': {'established': 1, 'excluded': 1}}
    assert source.describe() == {'port': 18081, 'exclude_peers': ['127.0.0.1']}


def test_missing_tcp6_is_skipped(tmp_path):
    assert _netstat.read_established(18080, paths=(TCP4, str(tmp_path / 'tcp6')), byteorder='little') == (2, 0)


def test_no_proc_files_is_an_error(tmp_path):
    source = _inflight.ConnectionsSource(80, paths=(str(tmp_path / 'tcp'), str(tmp_path / 'tcp6')))
    with pytest.raises(InFlightError, match='cannot count connections to port 80: none of .* exists'):
        source.read()


def test_unreadable_proc_file_is_an_error(tmp_path):
    with pytest.raises(_netstat.NetstatError, match='cannot read'):
        _netstat.read_established(80, paths=(str(tmp_path),))


@pytest.mark.parametrize('text, words', [
    ('', 'empty text'),
    ('garbage\n', 'line 1: expected the "sl local_address'),
    (open(TCP4).read() + '   9: zz:1F90 00000000:0000 01\n', 'line 11'),
    (open(TCP4).read() + '   9: 0100007F 00000000:0000 01\n', 'has no ":port"'),
    (open(TCP4).read() + '   9: 0100007F:1F90\n', 'expected "N: local remote state'),
    (open(TCP4).read() + '   9: 0100007F:1F90 00000000:0000 1\n', 'two hex digits'),
    (open(TCP4).read() + '   9: 0100:1F90 00000000:0000 01\n', 'neither 8 nor 32'),
])
def test_malformed_proc_net_tcp(text, words):
    with pytest.raises(ValueError, match=words):
        _netstat.parse_proc_net_tcp(text, byteorder='little')


def test_malformed_file_names_path(tmp_path):
    path = tmp_path / 'tcp'
    path.write_text('sl local\n 0: nonsense\n')
    with pytest.raises(_netstat.NetstatError, match='%s is not in the expected' % path):
        _netstat.read_established(80, paths=(str(path),))


def test_header_only_counts_zero(tmp_path):
    path = tmp_path / 'tcp'
    path.write_text(open(TCP4).read().splitlines()[0] + '\n')
    assert _netstat.read_established(18080, paths=(str(path),)) == (0, 0)


def test_bad_exclude_peer():
    with pytest.raises(InFlightError, match="exclude_peers entry 'lb.example' is not an IP address"):
        _inflight.ConnectionsSource(80, exclude_peers=['lb.example'])


@pytest.mark.skipif(not os.path.exists('/proc/net/tcp'), reason='needs Linux /proc/net/tcp')
def test_live_connections_on_this_machine():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(('127.0.0.1', port)) for dummy in range(3)]
    accepted = [listener.accept()[0] for dummy in range(3)]
    try:
        source = _inflight.ConnectionsSource(port)
        assert source.read()['in_flight'] == 3
        assert _inflight.ConnectionsSource(port, exclude_peers=['127.0.0.1']).read()['detail'] == {'established': 0, 'excluded': 3}
        clients[0].close()
        accepted[0].close()
        assert source.read()['in_flight'] == 2
    finally:
        for sock in clients + accepted + [listener]:
            sock.close()


# --- haproxy source ----------------------------------------------------------------------------

class FakeRuntime(object):
    def __init__(self, rows):
        self.rows = rows

    def server_stat(self, backend, server):
        result = self.rows.pop(0) if len(self.rows) > 1 else self.rows[0]
        if isinstance(result, Exception):
            raise result
        return result


def test_haproxy_source_with_fake_runtime():
    runtime = FakeRuntime([{'scur': '3', 'qcur': '2', 'status': 'DRAIN'}, {'scur': '0', 'qcur': '', 'status': 'MAINT'}])
    source = _inflight.HAProxySource('be', 'srv', socket_path='/run/haproxy.sock', runtime=runtime)
    assert source.read() == {'in_flight': 5, 'detail': {'scur': 3, 'qcur': 2, 'status': 'DRAIN'}}
    assert source.read() == {'in_flight': 0, 'detail': {'scur': 0, 'qcur': 0, 'status': 'MAINT'}}
    assert source.describe() == {'backend': 'be', 'server': 'srv', 'socket': '/run/haproxy.sock', 'host': None, 'port': None}


def test_haproxy_source_bad_row():
    source = _inflight.HAProxySource('be', 'srv', host='lb1', port=9999, runtime=FakeRuntime([{'scur': 'x', 'qcur': '0'}]))
    with pytest.raises(InFlightError, match="HAProxy at lb1:9999 gave be/srv a scur of 'x', not a number"):
        source.read()


def test_haproxy_source_os_error():
    source = _inflight.HAProxySource('be', 'srv', socket_path='/nope', runtime=FakeRuntime([OSError(2, 'No such file')]))
    with pytest.raises(InFlightError, match='cannot read be/srv from HAProxy at socket /nope'):
        source.read()


def test_haproxy_source_without_the_haproxy_module_utils(monkeypatch):
    """If _haproxy cannot be imported, the haproxy source says so and the other sources still load."""
    name = 'ansible_collections.modelops.shutdown.plugins.module_utils._haproxy'
    monkeypatch.setitem(sys.modules, name, None)
    spec = importlib.util.find_spec('ansible_collections.modelops.shutdown.plugins.module_utils._inflight')
    isolated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(isolated)
    assert isolated.HAPROXY_IMPORT_ERROR
    with pytest.raises(isolated.InFlightError, match='needs module_utils._haproxy, which failed to import'):
        isolated.HAProxySource('be', 'srv', socket_path='/run/haproxy.sock')
    source = isolated.HAProxySource('be', 'srv', socket_path='/x', runtime=FakeRuntime([{'scur': '1', 'qcur': '0'}]))
    assert source.read()['in_flight'] == 1


@pytest.fixture
def haproxy_socket(tmp_path):
    fake = FakeHAProxySocket(str(tmp_path / 'admin.sock'))
    yield fake
    fake.close()


@needs_haproxy
def test_haproxy_source_real_runtime_on_capture(haproxy_socket):
    source = _inflight.HAProxySource('webservers', 's1', socket_path=haproxy_socket.path)
    haproxy_socket.answer = cli_answer(read_fixture(HAPROXY_STAT_CSV))
    assert source.read() == {'in_flight': 0, 'detail': {'scur': 0, 'qcur': 0, 'status': 'UP'}}
    haproxy_socket.answer = cli_answer(haproxy_csv(scur=4, qcur=1))
    assert source.read()['in_flight'] == 5
    assert haproxy_socket.commands[-1] == 'show stat\n'


@needs_haproxy
def test_haproxy_source_unknown_server(haproxy_socket):
    haproxy_socket.answer = cli_answer(read_fixture(HAPROXY_STAT_CSV))
    source = _inflight.HAProxySource('webservers', 's9', socket_path=haproxy_socket.path)
    with pytest.raises(InFlightError) as err:
        source.read()
    assert 'cannot read webservers/s9 from HAProxy at socket %s' % haproxy_socket.path in str(err.value)
    assert 's1, s2' in str(err.value)


@needs_haproxy
def test_haproxy_source_garbage_and_missing_socket(haproxy_socket, tmp_path):
    haproxy_socket.answer = 'Permission denied\n\n'   # HAProxy 2.6.12's answer on a level user socket
    with pytest.raises(InFlightError, match='Permission denied'):
        _inflight.HAProxySource('webservers', 's1', socket_path=haproxy_socket.path).read()
    with pytest.raises(InFlightError, match='does not exist'):
        _inflight.HAProxySource('webservers', 's1', socket_path=str(tmp_path / 'none.sock')).read()


@needs_haproxy
def test_haproxy_source_refuses_injection():
    with pytest.raises(InFlightError, match='Refusing HAProxy server name'):
        _inflight.HAProxySource('webservers', 's1;disable server x/y', socket_path='/run/haproxy.sock')


# --- combining -------------------------------------------------------------------------------

class Fixed(object):
    def __init__(self, name, value):
        self.name = name
        self.value = value

    def read(self):
        if isinstance(self.value, Exception):
            raise self.value
        return {'in_flight': self.value, 'detail': {'v': self.value}}


def test_read_all_takes_the_max_not_the_sum():
    in_flight, values, details = _inflight.read_all([Fixed('metrics', 3), Fixed('haproxy', 5), Fixed('connections', 4)])
    assert in_flight == 5
    assert values == {'metrics': 3, 'haproxy': 5, 'connections': 4}
    assert details['haproxy'] == {'v': 5}


def test_read_all_propagates_the_first_error():
    with pytest.raises(InFlightError, match='boom'):
        _inflight.read_all([Fixed('metrics', 0), Fixed('haproxy', InFlightError('boom'))])


def test_read_all_without_sources_is_an_error_not_zero():
    """No source read is nothing known: it must never come out as 0 in flight (drained)."""
    with pytest.raises(InFlightError, match='no in-flight source is configured'):
        _inflight.read_all([])
