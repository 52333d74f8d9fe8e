# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import math

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _prometheus as prom
from ansible_collections.modelops.shutdown.plugins.module_utils._prometheus import PrometheusError, Sample
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import read_fixture


# --- real captures ----------------------------------------------------------------------------

def test_vllm_capture():
    samples, meta = prom.parse_text(read_fixture('vllm_metrics_v0.5_opt125m_datadog.txt'))
    running = prom.select(samples, 'vllm:num_requests_running')
    assert running == [Sample('vllm:num_requests_running', {'model_name': 'facebook/opt-125m'}, 0.0)]
    assert prom.sum_of(samples, 'vllm:num_requests_waiting', {'model_name': 'facebook/opt-125m'}) == 0.0
    assert meta['vllm:num_requests_running'] == {'type': 'gauge', 'help': 'Number of requests currently running on GPU.'}
    # histogram buckets keep their le label, +Inf included
    inf_buckets = [s for s in samples if s.name == 'vllm:e2e_request_latency_seconds_bucket' and s.labels.get('le') == '+Inf']
    assert len(inf_buckets) == 1
    # every non-comment, non-blank line became a sample
    lines = [ln for ln in read_fixture('vllm_metrics_v0.5_opt125m_datadog.txt').splitlines() if ln.strip() and not ln.startswith('#')]
    assert len(samples) == len(lines)


def test_vllm_cache_config_info_labels():
    samples = prom.parse(read_fixture('vllm_metrics_v0.5_opt125m_datadog.txt'))
    info = prom.select(samples, 'vllm:cache_config_info')
    assert len(info) == 1
    assert info[0].labels['block_size'] == '16'


def test_sglang_capture_loaded():
    samples = prom.parse(read_fixture('sglang_metrics_docs_v0.4_loaded.txt'))
    model = {'model_name': 'meta-llama/Llama-3.1-8B-Instruct'}
    assert prom.sum_of(samples, 'sglang:num_running_reqs', model) == 162.0
    assert prom.sum_of(samples, 'sglang:num_queue_reqs') == 2826.0
    # scientific notation
    assert prom.sum_of(samples, 'sglang:prompt_tokens_total') == 8.128902e+06
    # labels in a different order than the family's other samples (le before model_name)
    bucket = prom.select(samples, 'sglang:time_to_first_token_seconds_bucket', {'le': '+Inf'})
    assert bucket[0].value == 11008.0 and bucket[0].labels['model_name'] == model['model_name']


def test_tgi_capture_blank_lines_between_families():
    text = read_fixture('tgi_metrics_datadog_payload_head.txt')
    assert '\n\n# HELP tgi_queue_size' in text
    samples, meta = prom.parse_text(text)
    assert prom.select(samples, 'tgi_queue_size') == [Sample('tgi_queue_size', {}, 0.0)]
    assert prom.sum_of(samples, 'tgi_batch_current_size') == 0.0
    assert prom.sum_of(samples, 'tgi_request_count') == 111
    assert meta['tgi_batch_concat'] == {'type': 'counter', 'help': None}


def test_triton_capture_per_model():
    samples = prom.parse(read_fixture('triton_metrics_datadog_head.txt'))
    pending = prom.select(samples, 'nv_inference_pending_request_count')
    assert len(pending) == 8
    assert prom.select(samples, 'nv_inference_pending_request_count', {'model': 'densenet_onnx', 'version': '1'})[0].value == 0
    assert prom.sum_of(samples, 'nv_inference_request_success', {'model': 'densenet_onnx'}) == 3
    assert prom.select(samples, 'nv_inference_pending_request_count', {'model': 'nope'}) == []


# --- format details -----------------------------------------------------------------------------

def test_escaped_label_values():
    text = 'm{path="C:\\\\dir\\\\f",msg="say \\"hi\\"\\nbye",odd="a\\tb"} 1\n'
    sample = prom.parse(text)[0]
    assert sample.labels == {'path': 'C:\\dir\\f', 'msg': 'say "hi"\nbye', 'odd': 'a\\tb'}


def test_braces_commas_and_hash_inside_label_values():
    sample = prom.parse('m{a="x}y",b="1,2",c="#not a comment"} 3\n')[0]
    assert sample.labels == {'a': 'x}y', 'b': '1,2', 'c': '#not a comment'}
    assert sample.value == 3


def test_special_values_and_timestamps():
    samples = prom.parse('a NaN\nb +Inf\nc -Inf 1712345678901\nd 1.5e-3 -5\ne 7 1.5\n')
    assert math.isnan(samples[0].value)
    assert samples[1].value == float('inf')
    assert samples[2].value == float('-inf') and samples[2].timestamp == 1712345678901
    assert samples[3].value == 0.0015 and samples[3].timestamp == -5
    assert samples[4].timestamp == 1.5


def test_exemplar_ignored_and_eof_stops():
    text = ('# TYPE r counter\nr_total{code="200"} 10 # {trace_id="abc"} 0.5 1.6e9\n'
            '# EOF\nthis is not parsed\n')
    samples = prom.parse(text)
    assert samples == [Sample('r_total', {'code': '200'}, 10.0)]


def test_whitespace_crlf_trailing_comma_empty_braces():
    samples = prom.parse('  m { a = "1" , } \t 2\r\nn{} 3\r\n\r\n')
    assert samples == [Sample('m', {'a': '1'}, 2.0), Sample('n', {}, 3.0)]


def test_quoted_utf8_names():
    sample = prom.parse('{"my.metric", "my.label"="v", plain="w"} 4\n')[0]
    assert sample.name == 'my.metric'
    assert sample.labels == {'my.label': 'v', 'plain': 'w'}


def test_comments_and_empty_input():
    assert prom.parse('') == []
    assert prom.parse('\n\n   \n') == []
    assert prom.parse('# just a comment\n#\n# HELP x some help\n') == []
    assert prom.parse_text('# HELP x\n')[1] == {'x': {'type': None, 'help': ''}}


def test_bytes_input():
    assert prom.parse(b'm 1\n') == [Sample('m', {}, 1.0)]


def test_select_sum_and_names():
    samples = prom.parse('a{x="1",y="2"} 1\na{x="1",y="3"} 2\na{x="2"} 4\nb 8\n')
    assert prom.sum_of(samples, 'a') == 7
    assert prom.sum_of(samples, 'a', {'x': '1'}) == 3
    assert prom.sum_of(samples, 'a', {'x': '1', 'y': '3'}) == 2
    assert prom.sum_of(samples, 'a', {'z': '1'}) == 0
    assert prom.sum_of(samples, 'missing') == 0
    assert [s.value for s in prom.select(samples, 'a', {})] == [1, 2, 4]
    assert prom.names(samples) == ['a', 'b']
    assert samples[3].to_dict() == {'name': 'b', 'labels': {}, 'value': 8.0}


# --- garbage ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('text, line, words', [
    ('<!DOCTYPE html>\n<html><body>Not Found</body></html>\n', 1, 'metric name'),
    ('ok 1\n\n{"status": "ok"}\n', 3, 'expected "," or "}"'),
    ('ok 1\nm{a="1"\n', 2, 'unterminated'),
    ('m{a="unterminated} 1\n', 1, 'unterminated quoted string'),
    ('m{a=1} 1\n', 1, 'quoted value'),
    ('m{a="1",a="2"} 1\n', 1, 'given twice'),
    ('m\n', 1, 'no value'),
    ('m{a="1"}\n', 1, 'no value'),
    ('m one\n', 1, 'not a number'),
    ('m 1_000\n', 1, 'not a number'),
    ('m 1 2 3\n', 1, 'unexpected text'),
    ('m 1 soon\n', 1, 'timestamp'),
    ('m{a="1" b="2"} 1\n', 1, 'expected "," or "}"'),
    ('# TYPE m\nm 1\n', 1, '# TYPE needs'),
    ('# TYPE m gauge extra\n', 1, '# TYPE needs'),
    ('# HELP\n', 1, 'without a metric name'),
    ('{} 1\n', 1, 'no metric name'),
    ('m{a="\\', 1, 'unterminated'),
])
def test_garbage_names_the_line(text, line, words):
    with pytest.raises(PrometheusError) as err:
        prom.parse(text)
    assert err.value.line_number == line
    assert str(err.value).startswith('line %d: ' % line)
    assert words in str(err.value)


def test_garbage_in_the_middle_of_a_real_capture():
    lines = read_fixture('tgi_metrics_datadog_payload_head.txt').split('\n')
    lines.insert(26, 'tgi_queue_size{ 0')
    with pytest.raises(PrometheusError, match=r'^line 27: '):
        prom.parse('\n'.join(lines))


def test_long_garbage_line_is_shortened():
    with pytest.raises(PrometheusError) as err:
        prom.parse('<' + 'x' * 500)
    assert len(str(err.value)) < 250
