# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retirement_eligibility's main(), against a local HTTP server answering with captured Prometheus 2.42 bodies."""

from __future__ import annotations

import json
import os

from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.modelops.shutdown.plugins.modules import retirement_eligibility
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import (
    LocalHTTPServer, QuietHandler, free_port, read_fixture, send_reply)

NOW = 1796187733.0
IDLE = 'sum(rate(vllm:request_success_total{model_name="embed"}[10s])) or vector(0)'
BUSY = 'sum by (model_name) (rate(vllm:request_success_total{model_name="chat"}[10s]))'
UP = {'up{instance=~"127\\\\.0\\\\.0\\\\.1:18102"}', 'up{instance=~"127\\\\.0\\\\.0\\\\.1:18101"}',
      'up{instance=~"127\\\\.0\\\\.0\\\\.1:18109"}'}


class Prometheus(LocalHTTPServer):
    """Serves the captured bodies: the up capture for any up query, C(routes) by query, else the empty vector."""

    def __init__(self, routes):
        self.requests = []
        owner = self

        class Handler(QuietHandler):
            def do_GET(self):
                params = dict((k, v[0]) for k, v in parse_qs(urlsplit(self.path).query).items())
                owner.requests.append((self.command, urlsplit(self.path).path, params))
                query = params.get('query', '')
                status, name = (200, 'query_vector_up_one_down') if query in UP else routes.get(query, (200, 'query_vector_empty_absent'))
                send_reply(self, status, read_fixture('prometheus_api_%s.json' % name).encode(), 'application/json')

            def do_POST(self):
                owner.requests.append((self.command, self.path, {}))
                send_reply(self, 405, b'', 'text/plain')

        super(Prometheus, self).__init__(Handler)
        self.url = 'http://127.0.0.1:%d' % self.httpd.server_address[1]


@pytest.fixture
def prometheus():
    server = Prometheus({IDLE: (200, 'query_vector_idle_qps_or_zero'), BUSY: (200, 'query_vector_busy_qps'),
                         'sum(rate(x[5m]': (400, 'query_error_bad_data_syntax')})
    yield server
    server.stop()


def args(url, tmp_path=None, **extra):
    value = dict(
        prometheus={'url': url, 'timeout': 5},
        models=[{'name': 'embed', 'version': '2', 'hosts': ['rt-b1'], 'targets': ['127.0.0.1:18102']},
                {'name': 'chat', 'labels': {'model_name': 'chat'}, 'targets': ['127.0.0.1:18101']},
                {'name': 'gone', 'targets': ['127.0.0.1:18109']}],
        policies=[{'name': 'idle', 'version': 1, 'action': 'retire', 'rollback_window': '7d', 'owner': 'ml',
                   'conditions': [{'name': 'no traffic', 'compare': '<=', 'threshold': 0,
                                   'query': 'sum(rate(vllm:request_success_total{${selector}}[10s])) or vector(0)'}]},
                  {'name': 'busy', 'version': '2', 'action': 'notify', 'applies_to': {'models': ['chat']},
                   'conditions': [{'name': 'serving', 'compare': '>', 'threshold': 1,
                                   'query': 'sum by (model_name) (rate(vllm:request_success_total{${selector}}[10s]))'}]}])
    if tmp_path is not None:
        value['report_dir'] = str(tmp_path / 'reports')
    value.update(extra)
    return value


def run(run_module, params, now=NOW, **kwargs):
    with mock.patch.object(retirement_eligibility, 'time', mock.Mock(time=lambda: now)):
        return run_module(retirement_eligibility, params, **kwargs)


def test_evaluation_writes_the_report_and_returns_the_decisions(run_module, prometheus, tmp_path):
    result = run(run_module, args(prometheus.url, tmp_path), expect_failed=False)
    assert result['changed'] and not result['from_report']
    assert result['eligible'] == ['embed@2'] and result['inconclusive'] == ['chat', 'gone']
    assert 'no data: the query returned no series' in result['models']['chat']['reason']
    assert result['models']['chat']['actions'] == [{'action': 'notify', 'policy': 'busy', 'version': '2', 'owner': None}]
    assert '127.0.0.1:18109 is down' in result['models']['gone']['reason']
    assert result['models']['embed@2'] == {
        'name': 'embed', 'version': '2', 'hosts': ['rt-b1'], 'retire': 'eligible', 'reason': 'policy idle version 1 is met',
        'deciding_policy': {'name': 'idle', 'version': '1', 'rollback_window': 604800.0},
        'actions': [{'action': 'retire', 'policy': 'idle', 'version': '1', 'owner': 'ml'}]}
    assert result['report_path'].endswith('eligibility-20261202T050213Z.json') and os.path.exists(result['report_md_path'])
    with open(result['report_path']) as handle:
        assert json.load(handle)['digest'] == result['digest'] == result['report']['digest']
    assert result['evaluated_at'] == NOW and result['evaluated_at_iso'] == '2026-12-02T05:02:13Z'
    assert all(method == 'GET' for method, _path, _params in prometheus.requests)
    assert set(params['time'] for _m, _p, params in prometheus.requests) == {str(int(NOW))}
    # Verify mode: reads the report, sends nothing.
    sent = len(prometheus.requests)
    verified = run(run_module, {'report': result['report_path']}, now=NOW + 60, expect_failed=False)
    assert verified['from_report'] and not verified['changed'] and verified['eligible'] == ['embed@2']
    assert verified['models'] == result['models'] and len(prometheus.requests) == sent


def test_check_mode_sends_reads_only_and_writes_nothing(run_module, prometheus, tmp_path):
    result = run(run_module, args(prometheus.url, tmp_path), check_mode=True, expect_failed=False)
    assert not result['changed'] and result['report_path'] is None and result['eligible'] == ['embed@2']
    assert not os.path.exists(str(tmp_path / 'reports'))


def test_prometheus_down_succeeds_with_everything_inconclusive(run_module, tmp_path):
    result = run(run_module, args('http://127.0.0.1:%d' % free_port(), tmp_path), expect_failed=False)
    assert result['eligible'] == [] and sorted(result['inconclusive']) == ['chat', 'embed@2', 'gone']
    assert 'could not be reached' in result['msg'] and 'no model is eligible' in result['msg']


def test_a_prometheus_error_is_inconclusive_with_its_text(run_module, prometheus):
    params = args(prometheus.url)
    params['policies'][0]['conditions'][0]['query'] = 'sum(rate(x[5m]'
    result = run(run_module, params, expect_failed=False)
    assert result['models']['embed@2']['retire'] == 'inconclusive'
    assert 'bad_data' in result['models']['embed@2']['reason'] and 'HTTP 400' in result['models']['embed@2']['reason']


def test_a_tampered_report_fails_verification(run_module, prometheus, tmp_path):
    result = run(run_module, args(prometheus.url, tmp_path), expect_failed=False)
    with open(result['report_path']) as handle:
        report = json.load(handle)
    report['models'][2]['retire'] = 'eligible'
    tampered = tmp_path / 'tampered.json'
    tampered.write_text(json.dumps(report))
    failed = run(run_module, {'report': str(tampered)}, expect_failed=True)
    assert 'the report was changed after it was made: digest %s' % result['digest'] in failed['msg']
    old = run(run_module, {'report': result['report_path'], 'max_report_age': 60}, now=NOW + 61, expect_failed=True)
    assert 'max_report_age=60' in old['msg']


@pytest.mark.parametrize('change, words', [
    (dict(report='/x.json'), 'mutually exclusive'),
    (dict(policies=None), 'one of the following is required'),
    (dict(prometheus=None), 'prometheus'),
    (dict(prometheus={'url': 'ftp://x'}), 'the scheme must be http or https'),
    (dict(prometheus={'url': 'http://127.0.0.1:9', 'timeout': 0}), 'timeout'),
    (dict(state_file=None, policies=[{'name': 'p', 'version': 1, 'action': 'notify', 'conditions': [
        {'name': 'c', 'query': 'q', 'compare': '<', 'threshold': 1, 'consecutive': 2}]}]), 'state_file is required'),
    (dict(policies=[{'name': 'p', 'version': 1, 'action': 'notify', 'conditions': [
        {'name': 'c', 'query': 'q', 'compare': '<', 'threshold': 1}, {'name': 'd', 'query': 'q', 'compare': '~', 'threshold': 1}]}]),
     'policies[0].conditions[1]: value of compare must be one of'),
    (dict(models=[{'version': '1'}]), 'name'),
])
def test_bad_input_fails_with_the_path(run_module, change, words):
    params = args('http://127.0.0.1:9')
    for key, value in change.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    assert words in run(run_module, params, expect_failed=True)['msg']


def test_an_unwritable_report_dir_fails(run_module, prometheus, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    params = args(prometheus.url, report_dir=str(blocker / 'reports'))
    assert 'Cannot create report_dir' in run(run_module, params, expect_failed=True)['msg']
