# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Properties of _retire_policy and _prom_api: durations, comparisons, sample values, digests, spec validation."""

from __future__ import annotations

import json
import math
import operator

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_policy as rp
from ansible_collections.modelops.shutdown.plugins.module_utils._prom_api import PromError, format_value, parse_answer, parse_value

UNITS = (('w', 604800), ('d', 86400), ('h', 3600), ('m', 60), ('s', 1), ('ms', 0.001))
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=12)


@given(st.lists(st.tuples(st.integers(0, 9), st.booleans()), min_size=1, max_size=6))
def test_durations_sum_their_parts(parts):
    text = ''
    total = 0.0
    for (unit, seconds), (amount, used) in zip(UNITS, parts + [(0, False)] * 6):
        if used and amount:
            text += '%d%s' % (amount, unit)
            total += amount * seconds
    if not text:
        return
    if 0 < total <= rp.MAX_DURATION_SECONDS:
        assert math.isclose(rp.parse_duration(text, 'for'), total)
    else:
        try:
            rp.parse_duration(text, 'for')
        except rp.PolicyError as exc:
            assert str(exc).startswith('for')
        else:
            raise AssertionError('accepted %r' % text)


@given(JSON)
def test_duration_parser_raises_only_policy_errors(value):
    try:
        seconds = rp.parse_duration(value, 'x')
    except rp.PolicyError as exc:
        assert str(exc).startswith('x')
    else:
        assert 0 < seconds <= rp.MAX_DURATION_SECONDS


@given(st.floats(allow_nan=True), st.sampled_from(rp.COMPARISONS), st.floats(allow_nan=False, allow_infinity=False))
def test_comparison_is_the_operator_and_nan_is_never_met_but_for_not_equal(value, comparison, threshold):
    ops = {'<': operator.lt, '<=': operator.le, '>': operator.gt, '>=': operator.ge, '==': operator.eq, '!=': operator.ne}
    assert rp.compare(value, comparison, threshold) is ops[comparison](value, threshold)


@given(st.floats())
def test_sample_values_round_trip_through_their_strings(value):
    text = format_value(value) if not math.isfinite(value) else repr(value)
    parsed = parse_value(text)
    assert (math.isnan(parsed) and math.isnan(value)) or parsed == value


@given(st.text(max_size=12))
def test_value_parser_raises_only_value_errors(text):
    try:
        parse_value(text)
    except ValueError:
        pass


@given(JSON)
def test_answer_parser_raises_only_prom_errors(body):
    try:
        parse_answer(body, 'q')
    except PromError as exc:
        assert "'q'" in str(exc)


@given(st.dictionaries(st.text(max_size=6), JSON, max_size=5), st.floats(allow_nan=False, allow_infinity=False))
def test_digest_is_stable_and_ignores_its_own_key(report, stamp):
    report = json.loads(json.dumps(dict(report, evaluated_at=stamp), allow_nan=True).replace('NaN', '"NaN"')
                        .replace('-Infinity', '"-Inf"').replace('Infinity', '"+Inf"'))
    digest = rp.digest_of(report)
    assert rp.digest_of(dict(report, digest=digest)) == digest
    assert rp.digest_of(json.loads(json.dumps(report))) == digest
    assert rp.digest_of(dict(report, evaluated_at=stamp + 1.0)) != digest or stamp + 1.0 == stamp


@settings(max_examples=300)
@given(st.lists(JSON | st.fixed_dictionaries({}, optional={
    'name': st.sampled_from(('idle', '-x', '', 5)), 'version': st.sampled_from((1, '2', '', None, [1])),
    'action': st.sampled_from(('retire', 'freeze', 'nope', 1)), 'rollback_window': JSON | st.sampled_from(('7d', '1h30m', 0)),
    'applies_to': JSON | st.just({'models': ['*']}), 'no_data': st.sampled_from(('met', 'x')),
    'conditions': st.lists(JSON | st.fixed_dictionaries({}, optional={
        'name': st.sampled_from(('a', 'b', '', 1)), 'query': st.sampled_from(('up', '${selector}', '${x}', '${', '$a')),
        'compare': st.sampled_from(rp.COMPARISONS + ('~',)), 'threshold': JSON, 'for': JSON | st.just('5m'),
        'step': JSON | st.just('10s'), 'consecutive': JSON, 'no_data': JSON}), max_size=3)}), max_size=3))
def test_policy_validation_never_tracebacks(policies):
    try:
        checked = rp.check_policies(policies)
    except rp.PolicyError as exc:
        assert str(exc).startswith('policies')
    else:
        for policy in checked:
            assert policy['conditions'] and all(math.isfinite(c['threshold']) for c in policy['conditions'])


@given(st.lists(JSON | st.fixed_dictionaries({}, optional={
    'name': st.sampled_from(('embed', '', 1)), 'version': JSON, 'hosts': JSON, 'labels': JSON, 'targets': JSON}), max_size=3))
def test_model_validation_never_tracebacks(models):
    try:
        rp.check_models(models)
    except rp.PolicyError as exc:
        assert str(exc).startswith('models')
