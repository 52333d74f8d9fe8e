# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Policies, durations, placeholders, evaluation, hysteresis and reports of _retire_policy, on captured answers."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_policy as rp
from ansible_collections.modelops.shutdown.plugins.module_utils._prom_api import PromError, parse_answer
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import read_fixture

NOW = 1796187733.0
CHAT = '127.0.0.1:18101'
EMBED = '127.0.0.1:18102'
DEAD = '127.0.0.1:18109'


def answer(name):
    return parse_answer(json.loads(read_fixture('prometheus_api_%s.json' % name)), 'q')


class FakeClient(object):
    """Answers each query from C(answers) (query -> fixture name, or a C(PromError)); records every call."""

    shown_url = 'http://prometheus.test:9090'

    def __init__(self, answers, up='query_vector_up_one_down'):
        self.answers = answers
        self.up = up
        self.calls = []

    def _answer(self, query):
        if query.startswith('up{'):
            found = self.up
        else:
            found = self.answers.get(query, 'query_vector_empty_absent')
        if isinstance(found, Exception):
            raise found
        return answer(found)

    def instant(self, query, time):
        self.calls.append(('instant', query, time))
        return self._answer(query)

    def range(self, query, start, end, step):
        self.calls.append(('range', query, start, end, step))
        return self._answer(query)


def policy(conditions, **extra):
    value = dict(name='idle', version=1, action='retire', rollback_window='7d', owner='ml')
    value['conditions'] = conditions
    value.update(extra)
    return value


def model(name='embed', targets=(EMBED,), **extra):
    value = dict(name=name, targets=list(targets))
    value.update(extra)
    return value


def evaluate(policies, models, client, streaks=None):
    return rp.evaluate(client, rp.check_policies(policies), rp.check_models(models), NOW, streaks)


# --------------------------------------------------------------------------------------------- durations

@pytest.mark.parametrize('text, seconds', [
    (90, 90.0), (1.5, 1.5), ('90', 90.0), ('90s', 90.0), ('5m', 300.0), ('24h', 86400.0), ('3d', 259200.0),
    ('1h30m', 5400.0), ('500ms', 0.5), ('2w', 1209600.0), ('1d12h', 129600.0), ('400d', 400 * 86400.0),
])
def test_durations(text, seconds):
    assert rp.parse_duration(text, 'for') == seconds


@pytest.mark.parametrize('text, words', [
    ('5 minutes', 'expected a number of seconds'), ('5M', 'expected'), ('30m1h', 'larger unit after a smaller'),
    ('5m5m', 'repeats a unit'), ('', 'expected'), (True, 'expected'), (None, 'expected'), ([5], 'list'),
    (0, 'more than 0'), (-5, 'more than 0'), ('401d', 'at most 400 days'), (float('nan'), 'not finite'),
    (float('inf'), 'not finite'), ('1e3s', 'expected'),
])
def test_bad_durations_are_refused_naming_the_option(text, words):
    with pytest.raises(rp.PolicyError) as info:
        rp.parse_duration(text, 'policies[0].conditions[0].for')
    assert str(info.value).startswith('policies[0].conditions[0].for') and words in str(info.value)


# --------------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize('change, words', [
    (dict(name='-bad'), 'policies[0].name must match'),
    (dict(action='delete'), 'policies[0]: value of action must be one or more of: retire, freeze, notify'),
    (dict(rollback_window=None), 'action is retire but rollback_window is missing'),
    (dict(rollback_window='soon'), 'policies[0].rollback_window: expected'),
    (dict(conditions=[]), 'policies[0].conditions must list at least one condition'),
    (dict(conditions=[{'name': 'a', 'query': 'x', 'compare': '=', 'threshold': 1}]),
     'policies[0].conditions[0]: value of compare must be one of: <, <=, >, >=, ==, !='),
    (dict(conditions=[{'name': 'a', 'query': 'x{${selectr}}', 'compare': '<', 'threshold': 1}]),
     'policies[0].conditions[0].query: unknown placeholder ${selectr}'),
    (dict(conditions=[{'name': 'a', 'query': 'x{${selector', 'compare': '<', 'threshold': 1}]), 'is not closed'),
    (dict(conditions=[{'name': 'a', 'query': 'x', 'compare': '<', 'threshold': float('nan')}]), 'threshold must be a finite'),
    (dict(conditions=[{'name': 'a', 'query': 'x', 'compare': '<', 'threshold': 1, 'consecutive': 0}]), 'consecutive must be at least 1'),
    (dict(conditions=[{'name': 'a', 'query': 'x', 'compare': '<', 'threshold': 1, 'step': '1m'}]), 'step is given without "for"'),
    (dict(conditions=[{'name': 'a', 'query': 'x', 'compare': '<', 'threshold': 1, 'for': '30d', 'step': '1s'}]), 'give a larger step'),
    (dict(conditions=[{'name': 'a', 'query': 'x', 'compare': '<', 'threshold': 1}] * 2), 'is used twice'),
    (dict(conditions=[{'name': 'a', 'query': 'x', 'compare': '<', 'threshold': 1, 'bogus': 1}]), 'bogus'),
    (dict(applies_to={'models': []}), 'applies_to.models must list at least one glob'),
    (dict(applies_to='embed'), "policies[0]: argument 'applies_to' is of type str"),
    (dict(conditions='x'), 'policies[0]'),
])
def test_policy_errors_name_their_path(change, words):
    with pytest.raises(rp.PolicyError) as info:
        value = policy([{'name': 'low', 'query': 'x', 'compare': '<', 'threshold': 1}])
        value.update(change)
        rp.check_policies([value])
    assert words in str(info.value)


def test_policy_defaults_and_version_as_text():
    checked = rp.check_policies([policy([{'name': 'low', 'query': 'x', 'compare': '<', 'threshold': 1, 'for': '2h'}],
                                        version=3, action='notify', rollback_window=None)])[0]
    assert checked['version'] == '3' and checked['applies_to'] == {'models': ['*']} and checked['no_data'] == 'inconclusive'
    condition = checked['conditions'][0]
    assert (condition['for_seconds'], condition['step_seconds'], condition['consecutive'], condition['no_data']) == (7200.0, 120.0, 1, 'inconclusive')
    short = rp.check_condition({'name': 'a', 'query': 'x', 'compare': '<', 'threshold': 1, 'for': '30s'}, 'c', 'met')
    assert short['step_seconds'] == 1.0 and short['no_data'] == 'met'


def test_models_are_validated_and_keyed():
    models = rp.check_models([model(), model(name='chat', version='2', labels={'model_name': 'chat', 'pool': 'a"b'})])
    assert [m['key'] for m in models] == ['embed', 'chat@2']
    assert models[0]['labels'] == {'model_name': 'embed'}
    with pytest.raises(rp.PolicyError, match='models\\[1\\]: model embed is listed twice'):
        rp.check_models([model(), model()])
    with pytest.raises(rp.PolicyError, match='not a Prometheus label name'):
        rp.check_models([model(labels={'model-name': 'x'})])
    with pytest.raises(rp.PolicyError, match='models\\[0\\].labels.n must be a string'):
        rp.check_models([model(labels={'n': 1})])


# --------------------------------------------------------------------------------------------- placeholders

def test_placeholders_are_replaced_and_escaped_and_a_lone_dollar_is_left_alone():
    checked = rp.check_models([model(name='em"bed', version='v\\1', labels={'model_name': 'em"bed', 'a': 'x'},
                                     targets=['rt-b1:8000', '10.0.0.1:8000'])])[0]
    rendered = rp.render('rate(x{${selector}}[5m]) and on() y{n="${model_name}",v="${model_version}",instance=~"${targets}"} '
                         'and z{p=~"^a$"}', checked)
    assert rendered == ('rate(x{a="x",model_name="em\\"bed"}[5m]) and on() y{n="em\\"bed",v="v\\\\1",'
                        'instance=~"rt-b1:8000|10\\\\.0\\\\.0\\\\.1:8000"} and z{p=~"^a$"}')
    assert rp.up_query(checked) == 'up{instance=~"rt-b1:8000|10\\\\.0\\\\.0\\\\.1:8000"}'


# --------------------------------------------------------------------------------------------- evaluation

QPS = 'sum(rate(vllm:request_success_total{model_name="embed"}[10s])) or vector(0)'
QPS_TEMPLATE = 'sum(rate(vllm:request_success_total{${selector}}[10s])) or vector(0)'


def test_an_idle_model_with_zero_traffic_is_eligible():
    report, streaks, _breaker = evaluate([policy([{'name': 'idle', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0}])],
                                         [model()], FakeClient({QPS: 'query_vector_idle_qps_or_zero'}))
    embed = report['models'][0]
    assert streaks is None
    assert embed['retire'] == 'eligible' and embed['targets'] == [{'instance': EMBED, 'state': 'up', 'value': 1.0}]
    assert embed['deciding_policy'] == {'name': 'idle', 'version': '1', 'rollback_window': 604800.0}
    assert embed['actions'] == [{'action': 'retire', 'policy': 'idle', 'version': '1', 'owner': 'ml'}]
    condition = embed['policies'][0]['conditions'][0]
    assert condition['query'] == QPS and condition['type'] == 'instant' and condition['time'] == NOW
    assert condition['series'] == [{'labels': {}, 'value': 0.0}] and condition['result'] == 'met'


def test_no_data_is_never_zero():
    query = 'sum(rate(vllm:request_success_total{${selector}}[10s]))'
    report, _streaks, _breaker = evaluate([policy([{'name': 'idle', 'query': query, 'compare': '<=', 'threshold': 0}])], [model()],
                                          FakeClient({}))
    embed = report['models'][0]
    assert embed['retire'] == 'inconclusive'
    assert embed['policies'][0]['conditions'][0]['reason'] == 'no data: the query returned no series'
    met, _streaks, _breaker = evaluate([policy([{'name': 'idle', 'query': query, 'compare': '<=', 'threshold': 0, 'no_data': 'met'}])],
                                       [model()], FakeClient({}))
    assert met['models'][0]['retire'] == 'eligible'


def test_a_busy_model_is_not_eligible_naming_the_series_and_value():
    query = 'sum by (model_name) (rate(vllm:request_success_total{${selector}}[10s]))'
    rendered = query.replace('${selector}', 'model_name="chat"')
    report, _streaks, _breaker = evaluate([policy([{'name': 'idle', 'query': query, 'compare': '<=', 'threshold': 0}])],
                                          [model('chat', targets=[CHAT])], FakeClient({rendered: 'query_vector_busy_qps'}))
    chat = report['models'][0]
    assert chat['retire'] == 'not_eligible'
    assert 'series {model_name="chat"} is 1.4444444444444446, not <= 0.0' in chat['reason']


@pytest.mark.parametrize('fixture', ['query_vector_nan_quantile_idle', 'query_scalar_inf'])
def test_nan_and_inf_are_inconclusive_and_stored_as_strings(fixture):
    report, _streaks, _breaker = evaluate([policy([{'name': 'p99', 'query': 'q', 'compare': '<', 'threshold': 5}])], [model()],
                                          FakeClient({'q': fixture}))
    condition = report['models'][0]['policies'][0]['conditions'][0]
    assert condition['result'] == 'inconclusive' and 'no evidence either way' in condition['reason']
    assert condition['series'][0]['value'] in ('NaN', '+Inf')
    json.dumps(report, allow_nan=False)


def test_targets_down_or_not_scraped_make_every_condition_inconclusive_without_querying():
    client = FakeClient({'q': 'query_vector_idle_qps_or_zero'})
    report, _streaks, _breaker = evaluate([policy([{'name': 'a', 'query': 'q', 'compare': '<=', 'threshold': 0}]),
                                          policy([{'name': 'b', 'query': 'q', 'compare': '<=', 'threshold': 0}], name='other', action='notify')],
                                          [model(targets=[EMBED, DEAD]), model('ghost', targets=['rt-c1:8000']), model('none', targets=[])],
                                          client)
    down, ghost, none = report['models']
    assert down['targets'][1] == {'instance': DEAD, 'state': 'down', 'value': 0.0}
    assert '127.0.0.1:18109 is down: up is 0.0' in down['reason']
    assert ghost['targets'] == [{'instance': 'rt-c1:8000', 'state': 'not_scraped', 'value': None}]
    assert 'rt-c1:8000 is not scraped by Prometheus: no up series' in ghost['reason']
    assert 'declares no targets' in none['reason']
    for record in report['models']:
        assert record['retire'] == 'inconclusive' and record['actions'] == []
        assert all(c['result'] == 'inconclusive' for p in record['policies'] for c in p['conditions'])
    assert [call[0] for call in client.calls] == ['instant', 'instant']  # the two up queries only


def test_query_errors_are_inconclusive_with_their_text_and_unreachable_prometheus_stops_the_rest():
    refused = PromError('query \'q\' to Prometheus x: GET x failed: [Errno 111] Connection refused', connection=True)
    client = FakeClient({}, up=None)
    client._answer = lambda query: (item for item in ()).throw(refused)
    report, _streaks, breaker = evaluate([policy([{'name': 'a', 'query': 'q', 'compare': '<=', 'threshold': 0}])],
                                         [model(), model('chat', targets=[CHAT])], client)
    assert breaker.down and len(client.calls) == 1
    assert 'Connection refused' in report['models'][0]['reason']
    assert 'not sent: Prometheus http://prometheus.test:9090 did not answer an earlier query' in report['models'][1]['reason']
    bad = PromError("Prometheus refused query 'q' (HTTP 400): bad_data: parse error", kind='prometheus', status=400)
    report, _streaks, breaker = evaluate([policy([{'name': 'a', 'query': 'q', 'compare': '<=', 'threshold': 0}])], [model()],
                                         FakeClient({'q': bad}))
    assert breaker.down is None and 'bad_data: parse error' in report['models'][0]['reason']


def test_range_conditions_cover_the_window_and_every_sample_counts():
    running = 'vllm:num_requests_running'
    ok, _streaks, _breaker = evaluate([policy([{'name': 'idle', 'query': running, 'compare': '<=', 'threshold': 1, 'for': 10, 'step': 2}])],
                                      [model()], FakeClient({running: 'query_range_matrix_running'}))
    condition = ok['models'][0]['policies'][0]['conditions'][0]
    assert (condition['type'], condition['start'], condition['end'], condition['step']) == ('range', NOW - 10, NOW, 2.0)
    assert condition['result'] == 'met' and condition['series'][0]['count'] == 6
    busy, _streaks, _breaker = evaluate([policy([{'name': 'idle', 'query': running, 'compare': '<', 'threshold': 1, 'for': 10, 'step': 2}])],
                                        [model()], FakeClient({running: 'query_range_matrix_running'}))
    assert 'is 1.0 at %d, not < 1.0' % (NOW - 6) in busy['models'][0]['reason']
    quality = 'model_quality_score{model_name="embed"}'
    short, _streaks, _breaker = evaluate([policy([{'name': 'q', 'query': 'model_quality_score{${selector}}', 'compare': '<', 'threshold': 1,
                                                  'for': 600, 'step': 10}])], [model()], FakeClient({quality: 'query_range_matrix_quality_short'}))
    assert 'data covers 30 s of the 600 s window' in short['models'][0]['reason']
    assert short['models'][0]['retire'] == 'inconclusive'


def test_an_instant_condition_answered_with_a_string_is_inconclusive():
    report, _streaks, _breaker = evaluate([policy([{'name': 'a', 'query': 'q', 'compare': '<', 'threshold': 1}])], [model()],
                                          FakeClient({'q': 'query_string'}))
    assert 'returned a string, expected a vector or a scalar' in report['models'][0]['reason']


def test_applies_to_globs_decide_which_models_and_first_met_retire_policy_decides():
    policies = [policy([{'name': 'a', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0}], name='freeze-it', action='freeze'),
                policy([{'name': 'a', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0}], name='first', rollback_window='1d'),
                policy([{'name': 'a', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0}], name='second'),
                policy([{'name': 'a', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0}], name='chat-only',
                       applies_to={'models': ['chat@*']})]
    report, _streaks, _breaker = evaluate(policies, [model(), model('chat', version='3', targets=[CHAT])],
                                          FakeClient({QPS: 'query_vector_idle_qps_or_zero'}))
    embed, chat = report['models']
    assert [p['name'] for p in embed['policies']] == ['freeze-it', 'first', 'second']
    assert embed['deciding_policy'] == {'name': 'first', 'version': '1', 'rollback_window': 86400.0}
    assert [a['policy'] for a in embed['actions']] == ['freeze-it', 'first', 'second']
    assert [p['name'] for p in chat['policies']] == ['freeze-it', 'first', 'second', 'chat-only']
    notify_only, _streaks, _breaker = evaluate([policies[0]], [model()], FakeClient({QPS: 'query_vector_idle_qps_or_zero'}))
    assert notify_only['models'][0]['retire'] == 'not_eligible'
    assert notify_only['models'][0]['reason'] == 'no retire policy applies to model embed'


def test_decision_order():
    assert rp.decide([{'result': 'met'}, {'result': 'inconclusive'}, {'result': 'not_met'}]) == 'not_met'
    assert rp.decide([{'result': 'met'}, {'result': 'inconclusive'}]) == 'inconclusive'
    assert rp.decide([{'result': 'met'}]) == 'met'


# --------------------------------------------------------------------------------------------- hysteresis

def test_consecutive_evaluations_are_counted_in_the_state_file(tmp_path):
    state = str(tmp_path / 'state.json')
    params = dict(prometheus={'url': 'x'}, models=[model()], state_file=state,
                  policies=[policy([{'name': 'idle', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0, 'consecutive': 3}])])
    client = FakeClient({QPS: 'query_vector_idle_qps_or_zero'})
    results = [rp.run(params, False, NOW + n, lambda prometheus: client) for n in range(3)]
    assert [r['models']['embed']['retire'] for r in results] == ['not_eligible', 'not_eligible', 'eligible']
    condition = results[0]['report']['models'][0]['policies'][0]['conditions'][0]
    assert condition['streak'] == 1 and condition['reason'].startswith('held 1 of 3 consecutive evaluations')
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600 and results[0]['changed']
    with open(state) as handle:
        saved = json.load(handle)
    assert saved['streaks']['idle@1/embed/idle']['streak'] == 3
    # Check mode reads the streak and reports what it would be, writing nothing.
    before = open(state).read()
    checked = rp.run(params, True, NOW + 10, lambda prometheus: client)
    assert checked['report']['models'][0]['policies'][0]['conditions'][0]['streak'] == 4 and not checked['changed']
    assert open(state).read() == before
    # A run without data resets the streak.
    rp.run(params, False, NOW + 20, lambda prometheus: FakeClient({}))
    with open(state) as handle:
        assert json.load(handle)['streaks']['idle@1/embed/idle']['streak'] == 0


def test_a_policy_with_several_actions_lists_each_when_met():
    params = dict(prometheus={'url': 'x'}, models=[model()],
                  policies=[dict(policy([{'name': 'idle', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0}]),
                                 name='degraded', action=['notify', 'freeze', 'notify'], rollback_window=None)])
    result = rp.run(params, False, NOW, lambda prometheus: FakeClient({QPS: 'query_vector_idle_qps_or_zero'}))
    summary = result['models']['embed']
    assert [a['action'] for a in summary['actions']] == ['notify', 'freeze']  # each once, in the order given
    assert summary['retire'] == 'not_eligible'  # neither action retires
    assert result['report']['policies'][0]['action'] == ['notify', 'freeze']


def test_the_first_evaluation_creates_the_state_files_folder(tmp_path):
    state = str(tmp_path / 'retire' / 'state.json')  # a fresh controller: no folder yet
    params = dict(prometheus={'url': 'x'}, models=[model()], state_file=state,
                  policies=[policy([{'name': 'idle', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0, 'consecutive': 2}])])
    result = rp.run(params, False, NOW, lambda prometheus: FakeClient({QPS: 'query_vector_idle_qps_or_zero'}))
    assert result['report']['models'][0]['policies'][0]['conditions'][0]['streak'] == 1
    assert stat.S_IMODE(os.stat(str(tmp_path / 'retire')).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600


def test_state_file_required_and_a_corrupt_one_is_refused(tmp_path):
    params = dict(prometheus={'url': 'x'}, models=[model()], state_file=None,
                  policies=[policy([{'name': 'idle', 'query': 'q', 'compare': '<=', 'threshold': 0, 'consecutive': 2}])])
    with pytest.raises(rp.PolicyError, match='state_file is required'):
        rp.run(params, False, NOW, lambda prometheus: FakeClient({}))
    bad = tmp_path / 'state.json'
    bad.write_text('{"streaks": [1]}')
    params['state_file'] = str(bad)
    with pytest.raises(rp.PolicyError, match='is not a state file of this module'):
        rp.run(params, False, NOW, lambda prometheus: FakeClient({}))
    bad.write_text('{nope')
    with pytest.raises(rp.PolicyError, match='is not JSON'):
        rp.run(params, False, NOW, lambda prometheus: FakeClient({}))


# --------------------------------------------------------------------------------------------- reports

def made_report():
    report, _streaks, _breaker = evaluate([policy([{'name': 'idle', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0}]),
                                          policy([{'name': 'p99', 'query': 'q', 'compare': '<', 'threshold': 1}], name='lat')],
                                          [model(), model('chat', targets=[CHAT])],
                                          FakeClient({QPS: 'query_vector_idle_qps_or_zero', 'q': 'query_vector_nan_quantile_idle'}))
    return report


def test_report_digest_markdown_and_files(tmp_path):
    report = made_report()
    assert report['kind'] == 'modelops.shutdown/eligibility' and report['schema_version'] == 1
    assert report['evaluated_at_iso'] == '2026-12-02T05:02:13Z'
    assert report['digest'] == rp.digest_of(report) and len(report['digest']) == 64
    assert report['policies'][0]['digest'] == rp.policy_digest(rp.check_policies([report and policy(
        [{'name': 'idle', 'query': QPS_TEMPLATE, 'compare': '<=', 'threshold': 0}])])[0])
    json_path, md_path = rp.write_report(report, str(tmp_path / 'reports'))
    assert os.path.basename(json_path) == 'eligibility-20261202T050213Z.json'
    assert stat.S_IMODE(os.stat(str(tmp_path / 'reports')).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(json_path).st_mode) == 0o600 and stat.S_IMODE(os.stat(md_path).st_mode) == 0o600
    with open(json_path) as handle:
        assert json.load(handle) == report
    text = open(md_path).read()
    assert text.startswith('# Retirement eligibility report') and report['digest'] in text
    assert '**Retire: inconclusive**' in text and '| lat@1 (retire: inconclusive) | p99 | inconclusive | NaN |' in text


def test_verify_a_report(tmp_path):
    report = made_report()
    json_path, _md_path = rp.write_report(report, str(tmp_path))
    assert rp.verify_report(json_path, NOW + 60, 3600) == report
    with pytest.raises(rp.PolicyError, match='more than max_report_age=600 s'):
        rp.verify_report(json_path, NOW + 601, 600)
    with pytest.raises(rp.PolicyError, match='in the future'):
        rp.verify_report(json_path, NOW - 301, 600)
    tampered = dict(report)
    tampered['models'] = [dict(report['models'][0], retire='not_eligible')] + report['models'][1:]
    path = tmp_path / 'tampered.json'
    path.write_text(json.dumps(tampered))
    with pytest.raises(rp.PolicyError) as info:
        rp.verify_report(str(path), NOW, 3600)
    assert 'the report was changed after it was made: digest %s, content hashes to %s' % (
        report['digest'], rp.digest_of(tampered)) in str(info.value)
    for change, words in ((dict(kind='other'), 'of kind'), (dict(schema_version=2), 'schema_version 2')):
        path.write_text(json.dumps(dict(report, **change)))
        with pytest.raises(rp.PolicyError, match=words):
            rp.verify_report(str(path), NOW, 3600)
    path.write_text('[]')
    with pytest.raises(rp.PolicyError, match='expected a JSON object'):
        rp.verify_report(str(path), NOW, 3600)
    with pytest.raises(rp.PolicyError, match='Cannot read report'):
        rp.verify_report(str(tmp_path / 'missing.json'), NOW, 3600)


def test_long_ranges_keep_200_samples_first_and_last():
    samples = [(float(n), float(n)) for n in range(500)]
    kept = rp._kept_samples(samples)
    assert len(kept) == 200 and kept[0] == [0.0, 0.0] and kept[-1] == [499.0, 499.0]


def test_a_report_handed_over_as_data_gets_the_checks_of_a_file():
    """What an AWX workflow's eligibility job publishes (set_stats) is checked like a file: digest and age."""
    report = made_report()
    params = dict(report=None, report_data=json.loads(json.dumps(report)), policies=None, prometheus=None, models=None,
                  state_file=None, report_dir=None, max_report_age=3600.0)
    result = rp.run(params, False, NOW + 60)
    assert result['from_report'] is True and result['report_path'] is None and result['digest'] == report['digest']
    assert 'passed as report_data' in result['msg']
    with pytest.raises(rp.PolicyError, match='passed as report_data was made at .* more than max_report_age=600'):
        rp.run(dict(params, max_report_age=600.0), False, NOW + 601)
    tampered = json.loads(json.dumps(report))
    tampered['models'][0]['retire'] = 'eligible' if tampered['models'][0]['retire'] != 'eligible' else 'not_eligible'
    with pytest.raises(rp.PolicyError, match='the report was changed after it was made'):
        rp.run(dict(params, report_data=tampered), False, NOW)
