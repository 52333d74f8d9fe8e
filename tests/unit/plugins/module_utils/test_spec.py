# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_spec.validate (nested option dicts checked with another module's argument spec) and _spec.finite."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import (
    MAX_SECONDS,
    SpecError,
    finite,
    guard_scalar_dicts,
    number_problems,
    seconds_problem,
    validate,
)

SPEC = dict(
    url=dict(type='str', required=True),
    timeout=dict(type='float', default=10.0),
    retries=dict(type='int', default=3),
    method=dict(type='str', default='POST', choices=['POST', 'PUT']),
    headers=dict(type='dict', default={}),
    token=dict(type='str', no_log=True),
    socket=dict(type='path'),
    host=dict(type='str'),
    port=dict(type='int'),
)


def test_defaults_and_conversions():
    assert validate(SPEC, {'url': 'http://x/', 'retries': '5', 'timeout': 2}, 'drain') == {
        'url': 'http://x/', 'timeout': 2.0, 'retries': 5, 'method': 'POST', 'headers': {}, 'token': None,
        'socket': None, 'host': None, 'port': None}


def test_none_values_are_dropped_so_defaults_apply():
    value = {'url': 'http://x/', 'timeout': None, 'method': None, 'retries': None}
    before = copy.deepcopy(value)
    validated = validate(SPEC, value, 'drain')
    assert (validated['timeout'], validated['method'], validated['retries']) == (10.0, 'POST', 3)
    assert value == before   # the input is not modified


def test_none_value_is_an_empty_dict():
    assert validate(dict(a=dict(type='int', default=1)), None, 'stop') == {'a': 1}
    with pytest.raises(SpecError, match=r'^stop: missing required arguments: url$'):
        validate(SPEC, None, 'stop')


@pytest.mark.parametrize('value, kind', [(['url'], 'list'), ('url=http://x/', 'str'), (3, 'int')])
def test_not_a_dict(value, kind):
    with pytest.raises(SpecError) as err:
        validate(SPEC, value, 'verify.gpu')
    assert str(err.value) == 'verify.gpu must be a dict, got %s' % kind


@pytest.mark.parametrize('value, message', [
    ({}, 'drain: missing required arguments: url'),
    ({'url': 'u', 'method': 'GET'}, 'drain: value of method must be one of: POST, PUT, got: GET'),
    ({'url': 'u', 'retries': 'many'}, "drain: argument 'retries' is of type"),
    ({'url': 'u', 'bogus': 1}, 'drain: bogus. Supported parameters include: '),
])
def test_errors_are_prefixed_with_where(value, message):
    with pytest.raises(SpecError) as err:
        validate(SPEC, value, 'drain')
    assert str(err.value).startswith(message)


def test_several_errors_in_one_message():
    with pytest.raises(SpecError) as err:
        validate(SPEC, {'method': 'GET'}, 'drain')
    text = str(err.value)
    assert text.startswith('drain: ') and 'missing required arguments: url' in text and 'method' in text
    assert '; ' in text


@pytest.mark.parametrize('value, constraints, message', [
    ({'url': 'u', 'socket': '/s', 'host': 'h'}, {'mutually_exclusive': [('socket', 'host')]},
     'haproxy: parameters are mutually exclusive: socket|host'),
    ({'url': 'u'}, {'required_one_of': [('socket', 'host')]},
     'haproxy: one of the following is required: socket, host'),
    ({'url': 'u', 'host': 'h'}, {'required_together': [('host', 'port')]},
     'haproxy: parameters are required together: host, port'),
    ({'url': 'u', 'host': 'h'}, {'required_by': {'host': 'port'}},
     'haproxy: missing parameter(s) required by \'host\': port'),
    ({'url': 'u', 'method': 'PUT'}, {'required_if': [('method', 'PUT', ('token',))]},
     'haproxy: method is PUT but all of the following are missing: token'),
])
def test_constraints(value, constraints, message):
    with pytest.raises(SpecError) as err:
        validate(SPEC, value, 'haproxy', **constraints)
    assert str(err.value) == message


def test_constraints_satisfied_and_null_does_not_count_as_given():
    # host given as null is not given: socket alone satisfies mutually_exclusive and required_one_of.
    validated = validate(SPEC, {'url': 'u', 'socket': '/s', 'host': None}, 'haproxy',
                         mutually_exclusive=[('socket', 'host')], required_one_of=[('socket', 'host')])
    assert validated['socket'] == '/s' and validated['host'] is None


def test_nested_options_validated_too():
    spec = dict(gpu=dict(type='dict', options=dict(kill=dict(type='bool', default=False),
                                                   grace=dict(type='float', default=5.0))))
    assert validate(spec, {'gpu': {'kill': 'yes'}}, 'verify') == {'gpu': {'kill': True, 'grace': 5.0}}
    with pytest.raises(SpecError, match=r'^verify: .*grace'):
        validate(spec, {'gpu': {'grace': 'soon'}}, 'verify')


@pytest.mark.parametrize('value, expected', [
    (0, True), (1, True), (-3, True), (0.5, True), (1e308, True), (10 ** 30, True),
    (float('nan'), False), (float('inf'), False), (float('-inf'), False),
    (True, False), (False, False), (None, False), ('1', False), ('nan', False), ([1], False),
])
def test_finite(value, expected):
    assert finite(value) is expected


# --- numbers: NaN, infinities, negatives and absurd durations ------------------------------------

@pytest.mark.parametrize('value, kwargs, problem', [
    (5, {}, None),
    (0, {}, None),
    (None, {}, None),
    (None, {'allow_none': False}, 'timeout must be a finite number of seconds, got None'),
    (float('nan'), {}, 'timeout must be a finite number of seconds, got nan'),
    (float('-inf'), {}, 'timeout must be a finite number of seconds, got -inf'),
    (True, {}, 'timeout must be a finite number of seconds, got True'),
    (-1, {}, 'timeout must be at least 0.0 seconds, got -1'),
    (0, {'above': True}, 'timeout must be more than 0.0 seconds, got 0'),
    (0.05, {'minimum': 0.1}, 'timeout must be at least 0.1 seconds, got 0.05'),
    (MAX_SECONDS, {}, None),
    (1e300, {}, 'timeout must be at most 604800 seconds (7 days), got 1e+300'),
])
def test_seconds_problem(value, kwargs, problem):
    assert seconds_problem('timeout', value, **kwargs) == problem


NESTED = dict(
    retries=dict(type='int'),
    haproxy=dict(type='dict', options=dict(timeout=dict(type='float'), port=dict(type='int'), socket=dict(type='path'))),
    metrics=dict(type='list', elements='dict', options=dict(weight=dict(type='float'))),
)


def test_number_problems_walks_nested_options():
    params = {'retries': -1, 'haproxy': {'timeout': float('nan'), 'port': 80, 'socket': None},
              'metrics': [{'weight': 1.0}, {'weight': float('inf')}]}
    assert number_problems(NESTED, params, 'members[0].') == [
        'members[0].retries must not be negative, got -1',
        'members[0].haproxy.timeout must be a finite number, got nan',
        'members[0].metrics[1].weight must be a finite number, got inf',
    ]


def test_number_problems_applies_duration_rules():
    rules = {'haproxy.timeout': dict(minimum=0.0, above=True)}
    assert number_problems(NESTED, {'haproxy': {'timeout': 0.0}}, seconds=rules) == [
        'haproxy.timeout must be more than 0.0 seconds, got 0.0']
    assert number_problems(NESTED, {'haproxy': {'timeout': 1e300}}, seconds=rules) == [
        'haproxy.timeout must be at most 604800 seconds (7 days), got 1e+300']
    assert number_problems(NESTED, {'haproxy': None, 'retries': 3}) == []


# --- a scalar where nested options are expected (ansible-core would raise a TypeError) -------------

SUBSPEC = dict(
    haproxy=dict(type='dict', options=dict(socket=dict(type='path'), timeout=dict(type='float')),
                 required_one_of=[('socket',)]),
    metrics=dict(type='dict', options=dict(url=dict(type='str'), metrics=dict(type='list', elements='dict', options=dict(
        name=dict(type='str'))))),
)


@pytest.mark.parametrize('value, words', [
    ({'haproxy': 0}, "argument 'haproxy' is of type int and we were unable to convert to dict"),
    ({'haproxy': True}, "argument 'haproxy' is of type bool and we were unable to convert to dict"),
    ({'haproxy': 1.5}, "argument 'haproxy' is of type float and we were unable to convert to dict"),
    ({'metrics': {'url': 'u', 'metrics': [0]}}, 'metrics'),
])
def test_scalar_for_nested_options_is_a_spec_error(value, words):
    with pytest.raises(SpecError) as err:
        validate(SUBSPEC, value, 'drain')
    assert str(err.value).startswith('drain: ') and words in str(err.value)


def test_guard_keeps_the_spec_when_nothing_is_scalar():
    params = {'haproxy': {'socket': '/s'}, 'metrics': {'url': 'u', 'metrics': [{'name': 'x'}]}}
    assert guard_scalar_dicts(SUBSPEC, params) is SUBSPEC
    guarded = guard_scalar_dicts(SUBSPEC, {'haproxy': 0})
    assert 'options' not in guarded['haproxy'] and 'required_one_of' not in guarded['haproxy']
    assert guarded['metrics'] is SUBSPEC['metrics'] and 'options' in SUBSPEC['haproxy']   # the input is not modified
    nested = guard_scalar_dicts(SUBSPEC, {'metrics': {'metrics': [{'name': 'x'}, 7]}})
    assert 'options' not in nested['metrics']['options']['metrics'] and 'options' in SUBSPEC['metrics']['options']['metrics']
