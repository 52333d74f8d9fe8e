# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Properties of the retirement record (module_utils/_retire_record.py and the filter retirement_record).

* Any record built from valid inputs validates against docs/retirement-record.schema.json, validates by hand, and
  round-trips through the filter (as JSON text and as a dict) with its window computed.
* Rolling back or finalizing it, at any time, forced or not, is refused with a message or gives a record that
  again matches the schema and round-trips.
* A record of another shape (a field removed, added, or replaced by a hostile value) raises C(RecordError) naming
  a field, and the filter C(AnsibleFilterError); never another exception. Whatever the schema refuses, the hand
  validator refuses too.
* Any text given to the filter is a record or an C(AnsibleFilterError).
"""

from __future__ import annotations

import copy
import json
import os

import pytest

from hypothesis import given, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.modelops.shutdown.plugins.filter.retirement_record import retirement_record
from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_record as rr
from ansible_collections.modelops.shutdown.tests.unit.property.strategies import garbage_text, hostile

try:
    import jsonschema
except ImportError:  # pragma: no cover - jsonschema is a test requirement
    jsonschema = None

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'docs',
                           'retirement-record.schema.json')


def _validator():
    if jsonschema is None:
        return None
    with open(SCHEMA_PATH) as handle:
        return jsonschema.Draft202012Validator(json.load(handle))


VALIDATOR = _validator()
needs_jsonschema = pytest.mark.skipif(VALIDATOR is None, reason='jsonschema is not importable')

LATEST_NOW = rr.EPOCH_MAX - rr.MAX_WINDOW_SECONDS - 1
text = st.text(max_size=20)
name = st.text(min_size=1, max_size=rr.MAX_NAME)
times = st.floats(min_value=0, max_value=LATEST_NOW, allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2 ** 53, 2 ** 53), st.floats(allow_nan=False, allow_infinity=False), text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)), max_leaves=8)


def maybe_missing(draw, item, key, strategy):
    choice = draw(st.sampled_from(('given', 'given', 'missing', 'null')))
    if choice == 'given':
        item[key] = draw(strategy)
    elif choice == 'null':
        item[key] = None


@st.composite
def dependency(draw):
    item = {'host': draw(st.text(min_size=1, max_size=20)), 'kind': draw(st.text(min_size=1, max_size=20))}
    for key, strategy in (('name', text), ('where', text), ('status', text), ('changed', st.booleans()),
                          ('previous', json_values), ('new', json_values), ('msg', text), ('failed', st.booleans())):
        maybe_missing(draw, item, key, strategy)
    return item


@st.composite
def shutdown_host(draw):
    item = {}
    maybe_missing(draw, item, 'units_stopped', st.lists(text, max_size=3))
    maybe_missing(draw, item, 'outcome', text)
    return draw(st.one_of(st.just(item), st.none()))


@st.composite
def valid_inputs(draw):
    model = {'name': draw(name), 'version': draw(st.text(min_size=1, max_size=rr.MAX_VERSION))}
    maybe_missing(draw, model, 'hosts', st.lists(text, max_size=3))
    maybe_missing(draw, model, 'key', st.text(min_size=1, max_size=20))
    policy = {'name': draw(st.text(min_size=1, max_size=20)), 'version': draw(st.text(min_size=1, max_size=8)),
              'rollback_window_seconds': draw(st.one_of(st.floats(min_value=0, max_value=rr.MAX_WINDOW_SECONDS),
                                                        st.integers(0, 86400 * 30)))}
    eligibility = {'digest': draw(st.text(alphabet='0123456789abcdefABCDEF', min_size=64, max_size=64)),
                   'evaluated_at': draw(times)}
    maybe_missing(draw, eligibility, 'path', text)
    maybe_missing(draw, eligibility, 'from_report', st.booleans())
    shutdown = draw(st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        'journal': st.one_of(st.none(), text), 'report': st.one_of(st.none(), text),
        'status': st.one_of(st.none(), text),
        'hosts': st.one_of(st.none(), st.dictionaries(text, shutdown_host(), max_size=3))})))
    return dict(model=model, policy=policy, eligibility=eligibility, shutdown=shutdown,
                dependencies=draw(st.one_of(st.none(), st.lists(dependency(), max_size=3))),
                now=draw(times), detail=draw(text))


def build(args):
    return rr.build(**args)


def assert_round_trips(record, now):
    if VALIDATOR is not None:
        VALIDATOR.validate(json.loads(rr.dumps(record)))
    assert rr.validate(record) == record
    for form in (rr.dumps(record), copy.deepcopy(record)):
        result = retirement_record(form, now=now)
        window = result.pop('window')
        assert result == record
        assert window == rr.window(record, now)
        assert window['open'] == (now < record['window_end'])
        assert window['remaining_seconds'] >= 0


@given(args=valid_inputs(), later=st.floats(min_value=0, max_value=rr.MAX_WINDOW_SECONDS * 1.5))
def test_any_record_built_from_valid_inputs_matches_the_schema_and_round_trips(args, later):
    record = build(args)
    assert record['status'] == 'retired' and record['retired_at'] == args['now']
    assert record['window_end'] == args['now'] + args['policy']['rollback_window_seconds']
    assert rr.ID_RE.match(record['id'])
    assert_round_trips(record, args['now'] + later)


@given(args=valid_inputs(), steps=st.lists(st.tuples(st.sampled_from(('rolled_back', 'finalized')),
                                                     st.floats(min_value=-10, max_value=rr.MAX_WINDOW_SECONDS * 1.5),
                                                     st.booleans(), text), max_size=3))
def test_updates_are_refused_or_give_a_valid_record(args, steps):
    record = build(args)
    for state, offset, force, detail in steps:
        now = max(0.0, record['retired_at'] + offset)
        try:
            after = rr.transition(record, state, now, force=force, detail=detail)
        except rr.Refused as exc:
            assert record['id'] in str(exc)
            continue
        assert after['status'] == ('rolled_back' if state == 'rolled_back' else 'final')
        assert after['history'][:len(record['history'])] == record['history']
        assert after['history'][-1]['event'] == state
        assert_round_trips(after, now)
        record = after


def paths(value, prefix=()):
    """Every path into C(value) (dict keys and list indexes), the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key in value:
            yield from paths(value[key], prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, prefix + (index,))


@given(args=valid_inputs(), data=st.data())
def test_invalid_shapes_raise_naming_a_field_never_a_traceback(args, data):
    record = json.loads(rr.dumps(build(args)))
    broken = copy.deepcopy(record)
    for dummy in range(data.draw(st.integers(1, 3), label='changes')):
        path = data.draw(st.sampled_from(list(paths(broken))), label='path')
        action = data.draw(st.sampled_from(('replace', 'replace', 'delete', 'add')), label='action')
        parent = broken
        for key in path[:-1]:
            parent = parent[key]
        if not path:
            broken = data.draw(hostile(), label='record')
            break
        if action == 'add' and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(('extra', '', 'x' * 40)), label='key')] = data.draw(hostile())
        elif action == 'delete' and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(hostile(), label='value')
    try:
        checked = rr.validate(broken)
    except rr.RecordError as exc:
        assert exc.field and str(exc).startswith(exc.field)
        with pytest.raises(AnsibleFilterError) as caught:
            retirement_record(broken, now=0.0)
        assert exc.field in str(caught.value)
        refused = True
    else:
        assert retirement_record(broken, now=0.0)['id'] == checked['id']
        refused = False
    if VALIDATOR is not None and not refused:
        try:
            serialized = json.loads(json.dumps(broken, allow_nan=False))
        except (TypeError, ValueError):
            return
        # Whatever the schema refuses, the hand validator refused.
        assert VALIDATOR.is_valid(serialized), 'the schema refuses what validate() accepted: %r' % (broken,)


@given(data=st.one_of(garbage_text(), hostile(), json_values.map(json.dumps)))
def test_any_input_to_the_filter_is_a_record_or_a_filter_error(data):
    try:
        retirement_record(data, now=0.0)
    except AnsibleFilterError:
        pass
