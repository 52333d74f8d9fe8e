# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Prometheus HTTP API client, against answers captured from Prometheus 2.42 (tests/unit/fixtures/SOURCES.md)."""

from __future__ import annotations

import json
import math
import time

from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _prom_api
from ansible_collections.modelops.shutdown.plugins.module_utils._prom_api import PromClient, PromError, parse_answer, parse_value
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import LocalHTTPServer, QuietHandler, free_port, read_fixture, send_reply

NOW = 1796187733


def body(name):
    return json.loads(read_fixture('prometheus_api_%s.json' % name))


class FakePrometheus(LocalHTTPServer):
    """Answers C(/api/v1/query) and C(/api/v1/query_range) with C(answer(path, params)) -> C((status, text)) and records
    every request (method, path, params, headers)."""

    def __init__(self, answer):
        self.requests = []
        owner = self

        class Handler(QuietHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                params = dict((k, v[0]) for k, v in parse_qs(parts.query).items())
                owner.requests.append({'method': 'GET', 'path': parts.path, 'params': params, 'headers': dict(self.headers.items())})
                status, text = answer(parts.path, params)
                try:
                    send_reply(self, status, text.encode('utf-8'), 'application/json')
                except OSError:  # the client gave up (the timeout test)
                    pass

        super(FakePrometheus, self).__init__(Handler)
        self.url = 'http://127.0.0.1:%d' % self.httpd.server_address[1]


def fixture_server(name, status=200):
    return FakePrometheus(lambda path, params: (status, read_fixture('prometheus_api_%s.json' % name)))


def test_values_are_parsed_from_their_strings_nan_and_infinities_included():
    assert parse_value('1.4444444444444446') == pytest.approx(1.4444444444444446)
    assert math.isnan(parse_value('NaN'))
    assert parse_value('+Inf') == math.inf and parse_value('-Inf') == -math.inf
    assert parse_value('1e-3') == 0.001
    for bad in ('', 'abc', '1,5', None, 1.5, 'inf ', '0x10'):
        with pytest.raises(ValueError):
            parse_value(bad)


def test_captured_vector_answers():
    busy = parse_answer(body('query_vector_busy_qps'), 'q')
    assert busy['resultType'] == 'vector'
    assert busy['result'] == [{'metric': {'model_name': 'chat'}, 'value': (NOW, pytest.approx(1.4444444444444446))}]
    idle = parse_answer(body('query_vector_idle_qps_or_zero'), 'q')
    assert idle['result'] == [{'metric': {}, 'value': (NOW, 0.0)}]
    assert parse_answer(body('query_vector_empty_absent'), 'q')['result'] == []
    up = parse_answer(body('query_vector_up_one_down'), 'q')
    assert [(s['metric']['instance'], s['value'][1]) for s in up['result']] == [
        ('127.0.0.1:18101', 1.0), ('127.0.0.1:18102', 1.0), ('127.0.0.1:18109', 0.0)]
    assert math.isnan(parse_answer(body('query_vector_nan_quantile_idle'), 'q')['result'][0]['value'][1])
    assert math.isnan(parse_answer(body('query_vector_nan_zero_over_zero'), 'q')['result'][0]['value'][1])


def test_captured_matrix_scalar_and_string_answers():
    matrix = parse_answer(body('query_range_matrix_running'), 'q')
    assert matrix['resultType'] == 'matrix'
    chat = matrix['result'][0]
    assert chat['metric']['model_name'] == 'chat'
    assert [v for _t, v in chat['values']] == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert chat['values'][0][0] == NOW - 10
    assert parse_answer(body('query_scalar'), 'q') == {'resultType': 'scalar', 'result': (NOW, 0.0)}
    assert parse_answer(body('query_scalar_inf'), 'q')['result'][1] == math.inf
    assert parse_answer(body('query_string'), 'q') == {'resultType': 'string', 'result': (NOW, 'modelops')}


@pytest.mark.parametrize('name, status, error_type, text', [
    ('query_error_bad_data_syntax', 400, 'bad_data', 'unclosed left parenthesis'),
    ('query_error_execution_many_to_many', 422, 'execution', 'many-to-many matching not allowed'),
    ('query_error_timeout_503', 503, 'timeout', 'query timed out in expression evaluation'),
])
def test_prometheus_errors_keep_type_text_status_and_query(name, status, error_type, text):
    server = fixture_server(name, status)
    try:
        with pytest.raises(PromError) as info:
            PromClient(server.url, timeout=5).instant('sum(rate(x[5m]', NOW)
    finally:
        server.stop()
    error = info.value
    assert (error.kind, error.status, error.error_type, error.query) == ('prometheus', status, error_type, 'sum(rate(x[5m]')
    message = str(error)
    assert text in message and error_type in message and 'HTTP %d' % status in message and "'sum(rate(x[5m]'" in message


@pytest.mark.parametrize('answer, expected', [
    ({'status': 'ok', 'data': {}}, '"success" or "error"'),
    ({'status': 'success', 'data': {'resultType': 'histogram', 'result': []}}, 'vector, matrix, scalar, string'),
    ({'status': 'success', 'data': {'resultType': 'vector', 'result': {}}}, 'a list of series'),
    ({'status': 'success', 'data': {'resultType': 'vector', 'result': [{'metric': {}, 'value': [1, 2]}]}}, 'sample value string'),
    ({'status': 'success', 'data': {'resultType': 'vector', 'result': [{'metric': {'a': 1}, 'value': [1, '2']}]}}, 'label names'),
    ({'status': 'success', 'data': {'resultType': 'vector', 'result': [{'metric': {}, 'value': ['1', '2']}]}}, 'timestamp'),
    ({'status': 'success', 'data': {'resultType': 'matrix', 'result': [{'metric': {}, 'value': [1, '2']}]}}, 'list of [timestamp'),
    ({'status': 'success', 'data': {'resultType': 'scalar', 'result': [1]}}, '[timestamp, "value"] pair'),
    ({'status': 'success'}, '"resultType" and "result"'),
    ([1, 2], 'JSON object'),
])
def test_an_answer_of_another_shape_is_refused_saying_what_was_expected(answer, expected):
    with pytest.raises(PromError) as info:
        parse_answer(answer, 'up')
    assert info.value.kind == 'shape'
    assert 'unknown answer shape' in str(info.value) and expected in str(info.value) and "'up'" in str(info.value)


def test_queries_are_get_requests_with_urlencoded_parameters_and_the_token():
    server = fixture_server('query_range_matrix_running')
    try:
        client = PromClient(server.url + '/', token='s3cret-token', timeout=5)
        client.range('vllm:num_requests_running{model_name="a b"}', NOW - 10, NOW, 2)
        client.instant('up', NOW + 0.25)
    finally:
        server.stop()
    first, second = server.requests
    assert first['path'] == '/api/v1/query_range' and first['method'] == 'GET'
    assert first['params'] == {'query': 'vllm:num_requests_running{model_name="a b"}', 'start': str(NOW - 10),
                               'end': str(NOW), 'step': '2'}
    assert first['headers']['Authorization'] == 'Bearer s3cret-token'
    assert second['path'] == '/api/v1/query' and second['params'] == {'query': 'up', 'time': '%d.25' % NOW}


def test_an_http_error_without_a_prometheus_body_keeps_the_status_and_an_excerpt():
    server = FakePrometheus(lambda path, params: (502, '<html>bad gateway</html>'))
    try:
        with pytest.raises(PromError) as info:
            PromClient(server.url, timeout=5).instant('up', NOW)
    finally:
        server.stop()
    assert info.value.status == 502 and 'HTTP 502' in str(info.value) and 'bad gateway' in str(info.value)
    assert not info.value.connection


def test_a_body_that_is_not_json_is_an_unknown_answer_shape():
    server = FakePrometheus(lambda path, params: (200, 'up 1\n'))
    try:
        with pytest.raises(PromError) as info:
            PromClient(server.url, timeout=5).instant('up', NOW)
    finally:
        server.stop()
    assert info.value.kind == 'shape' and 'unknown answer shape' in str(info.value)


def test_connection_refused_keeps_the_http_message_and_marks_prometheus_unreachable():
    url = 'http://127.0.0.1:%d' % free_port()
    with pytest.raises(PromError) as info:
        PromClient(url, timeout=5).instant('up', NOW)
    assert info.value.connection and 'refused' in str(info.value).lower() and url in str(info.value)


def test_a_timeout_keeps_the_http_message():
    def slow(path, params):
        time.sleep(1.0)
        return 200, read_fixture('prometheus_api_query_scalar.json')
    server = FakePrometheus(slow)
    try:
        with pytest.raises(PromError) as info:
            PromClient(server.url, timeout=0.3).instant('up', NOW)
    finally:
        server.stop()
    assert info.value.connection and 'timeout=0.3' in str(info.value)


def test_the_url_is_shown_without_its_password():
    assert PromClient('http://user:pw@127.0.0.1:9090').shown_url == 'http://user:********@127.0.0.1:9090'


def test_format_value_keeps_json_valid():
    assert [_prom_api.format_value(v) for v in (math.nan, math.inf, -math.inf, 1.5)] == ['NaN', '+Inf', '-Inf', 1.5]
