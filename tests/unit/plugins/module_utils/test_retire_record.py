# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_retire_record: building, validating (naming the wrong field), updating and writing the retirement record."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import stat

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_record as rr

try:
    import jsonschema
except ImportError:  # pragma: no cover - jsonschema is a test requirement
    jsonschema = None

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'docs',
                           'retirement-record.schema.json')
EPOCH = 1764614400.0   # 2025-12-01T18:40:00Z
DIGEST = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'


def schema_check(record):
    """Validate C(record) against docs/retirement-record.schema.json (skipped without jsonschema)."""
    if jsonschema is None:
        return
    with open(SCHEMA_PATH) as handle:
        schema = json.load(handle)
    jsonschema.Draft202012Validator(schema).validate(record)


def inputs(**changes):
    args = dict(
        model={'name': 'llama3', 'version': '1.2', 'hosts': ['gpu-01', 'gpu-02']},
        policy={'name': 'retire-90d', 'version': '3', 'rollback_window_seconds': 3600.0},
        eligibility={'digest': DIGEST.upper(), 'path': '/srv/elig.json', 'evaluated_at': EPOCH - 60, 'from_report': True},
        shutdown={'journal': '/j.jsonl', 'report': None, 'status': 'done',
                  'hosts': {'gpu-01': {'units_stopped': ['vllm@llama3.service'], 'outcome': 'done', 'extra': 1},
                            'gpu-02': None}},
        dependencies=[{'host': 'lb1', 'kind': 'haproxy', 'name': 'models/gpu-01', 'changed': True,
                       'previous': {'state': 'ready'}, 'new': 'maint', 'ansible_loop_var': 'x'}],
        now=EPOCH, detail='weekly',
    )
    args.update(changes)
    return args


def new_record(**changes):
    return rr.build(**inputs(**changes))


def test_build_fills_every_field_and_matches_the_schema():
    record = new_record()
    schema_check(record)
    assert record['id'] == 'llama3-1.2-20251201T184000Z'
    assert record['status'] == 'retired'
    assert record['model'] == {'name': 'llama3', 'version': '1.2', 'key': 'llama3@1.2', 'hosts': ['gpu-01', 'gpu-02']}
    assert record['policy']['action'] == 'retire'
    assert record['eligibility']['digest'] == DIGEST
    assert record['shutdown']['hosts'] == {'gpu-01': {'units_stopped': ['vllm@llama3.service'], 'outcome': 'done'},
                                           'gpu-02': {'units_stopped': [], 'outcome': None}}
    assert record['dependencies'] == [{'host': 'lb1', 'kind': 'haproxy', 'name': 'models/gpu-01', 'where': '',
                                       'status': '', 'changed': True, 'previous': {'state': 'ready'}, 'new': 'maint',
                                       'msg': ''}]
    assert record['retired_at'] == EPOCH and record['retired_at_iso'] == '2025-12-01T18:40:00.000+00:00'
    assert record['window_end'] == EPOCH + 3600 and record['window_end_iso'] == '2025-12-01T19:40:00.000+00:00'
    assert record['rolled_back_at'] is None and record['finalized_at'] is None
    assert record['history'] == [{'event': 'retired', 'at': EPOCH, 'at_iso': '2025-12-01T18:40:00.000+00:00',
                                  'detail': 'weekly'}]
    assert rr.validate(record) == record


def test_build_defaults_and_safe_id():
    record = rr.build({'name': 'meta/Llama 3', 'version': '8b:q4', 'key': 'k1'},
                      {'name': 'p', 'version': '1', 'rollback_window_seconds': 0},
                      {'digest': DIGEST, 'evaluated_at': EPOCH}, now=EPOCH)
    schema_check(record)
    assert record['id'] == 'meta_Llama_3-8b_q4-20251201T184000Z'
    assert record['model']['key'] == 'k1' and record['model']['name'] == 'meta/Llama 3'
    assert record['shutdown'] == {'journal': None, 'report': None, 'status': None, 'hosts': {}}
    assert record['dependencies'] == [] and record['eligibility']['from_report'] is False
    assert record['window_end'] == record['retired_at']


@pytest.mark.parametrize('changes, field', [
    (dict(model={'version': '1'}), 'model.name'),
    (dict(model={'name': '', 'version': '1'}), 'model.name'),
    (dict(model={'name': 'x' * 129, 'version': '1'}), 'model.name'),
    (dict(model={'name': 'm', 'version': 1}), 'model.version'),
    (dict(model={'name': 'm', 'version': '1', 'hosts': 'gpu-01'}), 'model.hosts'),
    (dict(model={'name': 'm', 'version': '1', 'hosts': [1]}), 'model.hosts[0]'),
    (dict(model=['m']), 'model'),
    (dict(policy={'name': 'p', 'version': '1', 'rollback_window_seconds': -1}), 'policy.rollback_window_seconds'),
    (dict(policy={'name': 'p', 'version': '1', 'rollback_window_seconds': float('nan')}), 'policy.rollback_window_seconds'),
    (dict(policy={'name': 'p', 'version': '1', 'rollback_window_seconds': True}), 'policy.rollback_window_seconds'),
    (dict(policy={'name': 'p', 'version': '1', 'rollback_window_seconds': 1e12}), 'policy.rollback_window_seconds'),
    (dict(policy={'name': 'p', 'version': '1', 'rollback_window_seconds': 1, 'action': 'keep'}), 'policy.action'),
    (dict(eligibility={'digest': 'abc', 'evaluated_at': EPOCH}), 'eligibility.digest'),
    (dict(eligibility={'digest': DIGEST, 'evaluated_at': -5}), 'eligibility.evaluated_at'),
    (dict(eligibility={'digest': DIGEST, 'evaluated_at': 10 ** 400}), 'eligibility.evaluated_at'),
    (dict(eligibility={'digest': DIGEST, 'evaluated_at': EPOCH, 'from_report': 'yes'}), 'eligibility.from_report'),
    (dict(shutdown={'hosts': []}), 'shutdown.hosts'),
    (dict(shutdown={'hosts': {'h': {'units_stopped': 'u'}}}), 'shutdown.hosts["h"].units_stopped'),
    (dict(shutdown={'hosts': {'h': {'outcome': 3}}}), 'shutdown.hosts["h"].outcome'),
    (dict(shutdown={'status': ['done']}), 'shutdown.status'),
    (dict(dependencies={'host': 'h'}), 'dependencies'),
    (dict(dependencies=['x']), 'dependencies[0]'),
    (dict(dependencies=[{'kind': 'k'}]), 'dependencies[0].host'),
    (dict(dependencies=[{'host': 'h', 'kind': 'k'}, {'host': 'h'}]), 'dependencies[1].kind'),
    (dict(dependencies=[{'host': 'h', 'kind': 'k', 'changed': 'yes'}]), 'dependencies[0].changed'),
    (dict(dependencies=[{'host': 'h', 'kind': 'k', 'new': float('inf')}]), 'dependencies[0].new'),
    (dict(detail=5), 'detail'),
    (dict(now=float('nan')), 'now'),
])
def test_build_names_the_wrong_input(changes, field):
    with pytest.raises(rr.RecordError) as caught:
        new_record(**changes)
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ' ')


def _set(record, path, value):
    node = record
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@pytest.mark.parametrize('path, value, field', [
    (('schema_version',), '2.0', 'schema_version'),
    (('schema_version',), KeyError, 'schema_version'),
    (('kind',), 'other', 'kind'),
    (('id',), 'no stamp', 'id'),
    (('id',), 'x' * 200 + '-' + 'y' * 10 + '-20251201T184000Z', 'id'),
    (('status',), 'gone', 'status'),
    (('model', 'key'), KeyError, 'model.key'),
    (('model', 'extra'), 1, 'model.extra'),
    (('model', 'hosts', 0), None, 'model.hosts[0]'),
    (('policy', 'rollback_window_seconds'), '3600', 'policy.rollback_window_seconds'),
    (('eligibility', 'path'), 3, 'eligibility.path'),
    (('eligibility', 'digest'), DIGEST.upper(), 'eligibility.digest'),
    (('shutdown', 'hosts', 'gpu-01', 'units_stopped'), KeyError, 'shutdown.hosts["gpu-01"].units_stopped'),
    (('shutdown', 'hosts', 'gpu-01', 'extra'), 1, 'shutdown.hosts["gpu-01"].extra'),
    (('dependencies', 0, 'msg'), KeyError, 'dependencies[0].msg'),
    (('dependencies', 0, 'name'), 5, 'dependencies[0].name'),
    (('retired_at',), 'now', 'retired_at'),
    (('retired_at_iso',), 'yesterday', 'retired_at_iso'),
    (('window_end',), EPOCH - 1, 'window_end'),
    (('window_end_iso',), None, 'window_end_iso'),
    (('rolled_back_at',), EPOCH, 'rolled_back_at'),
    (('finalized_at',), 'x', 'finalized_at'),
    (('history',), [], 'history'),
    (('history', 0, 'event'), 'rolled_back', 'history'),
    (('history', 0, 'event'), 'deleted', 'history[0].event'),
    (('history', 0, 'at'), float('inf'), 'history[0].at'),
    (('history', 0, 'detail'), None, 'history[0].detail'),
    (('bogus',), 1, 'bogus'),
])
def test_validate_names_the_wrong_field(path, value, field):
    record = new_record()
    _set(record, path, value)
    with pytest.raises(rr.RecordError) as caught:
        rr.validate(record)
    assert caught.value.field == field, str(caught.value)
    if jsonschema is not None and field not in ('window_end', 'history[0].at', 'dependencies[0].new'):
        with pytest.raises(jsonschema.ValidationError):
            schema_check(json.loads(json.dumps(record)))


@pytest.mark.parametrize('value', [None, [], 'text', 5])
def test_validate_refuses_what_is_no_object(value):
    with pytest.raises(rr.RecordError) as caught:
        rr.validate(value)
    assert caught.value.field == 'the record'


def test_loads_refuses_what_is_not_json():
    for text in ('', '{', '{"a": NaN}', b'\xff'):
        with pytest.raises(rr.RecordError) as caught:
            rr.loads(text)
        assert caught.value.field == 'the record'


def test_window_open_closed_and_at_the_end():
    record = new_record()
    assert rr.window(record, EPOCH + 60) == {'end': EPOCH + 3600, 'end_iso': '2025-12-01T19:40:00.000+00:00',
                                             'open': True, 'remaining_seconds': 3540.0, 'now': EPOCH + 60}
    assert rr.window(record, EPOCH + 3600)['open'] is False
    assert rr.window(record, EPOCH + 9000)['remaining_seconds'] == 0.0


def test_roll_back_within_the_window():
    record = new_record()
    after = rr.transition(record, 'rolled_back', EPOCH + 10, detail='regression')
    schema_check(after)
    assert after['status'] == 'rolled_back' and after['rolled_back_at'] == EPOCH + 10
    assert [e['event'] for e in after['history']] == ['retired', 'rolled_back']
    assert after['history'][-1]['detail'] == 'regression'
    assert record['status'] == 'retired'  # the input is left alone


def test_roll_back_after_the_window_needs_force():
    record = new_record()
    with pytest.raises(rr.Refused) as caught:
        rr.transition(record, 'rolled_back', EPOCH + 3700)
    assert str(caught.value) == ('the rollback window of llama3-1.2-20251201T184000Z closed at '
                                 '2025-12-01T19:40:00.000+00:00 (100 s ago): rolling back now needs -e rollback_force=true')
    after = rr.transition(record, 'rolled_back', EPOCH + 3700, force=True)
    schema_check(after)
    assert [e['event'] for e in after['history']] == ['retired', 'forced', 'rolled_back']
    assert '100 s after' in after['history'][1]['detail']


def test_finalize_before_the_window_needs_force():
    record = new_record()
    with pytest.raises(rr.Refused) as caught:
        rr.transition(record, 'finalized', EPOCH + 3599.5)
    assert str(caught.value) == ('the rollback window of llama3-1.2-20251201T184000Z is open until '
                                 '2025-12-01T19:40:00.000+00:00 (1 s left); finalize after it, or force')
    forced = rr.transition(record, 'finalized', EPOCH + 10, force=True)
    assert [e['event'] for e in forced['history']] == ['retired', 'forced', 'finalized']
    after = rr.transition(record, 'finalized', EPOCH + 3600)
    schema_check(after)
    assert after['status'] == 'final' and after['finalized_at'] == EPOCH + 3600
    assert [e['event'] for e in after['history']] == ['retired', 'finalized']


@pytest.mark.parametrize('first, second, words', [
    ('rolled_back', 'rolled_back', 'is already rolled_back'),
    ('finalized', 'rolled_back', 'is final'),
    ('finalized', 'finalized', 'is already final'),
    ('rolled_back', 'finalized', 'nothing to finalize, the model was brought back'),
])
def test_status_refusals_ignore_force(first, second, words):
    record = rr.transition(new_record(), first, EPOCH + 10, force=True)
    with pytest.raises(rr.Refused) as caught:
        rr.transition(record, second, EPOCH + 10, force=True)
    assert words in str(caught.value)


def test_create_writes_0600_in_a_0700_directory_and_refuses_the_same_id(tmp_path):
    directory = str(tmp_path / 'a' / 'records')
    record = new_record()
    path = rr.create(directory, record)
    assert path == os.path.join(directory, 'llama3-1.2-20251201T184000Z.json')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert sorted(os.listdir(directory)) == ['.retirement-record.lock', 'llama3-1.2-20251201T184000Z.json']
    with open(path) as handle:
        assert json.load(handle) == record
    assert rr.read(path) == record
    with pytest.raises(rr.RecordIOError, match='exists already'):
        rr.create(directory, record)


def test_create_refuses_a_file_as_directory(tmp_path):
    (tmp_path / 'f').write_text('x')
    with pytest.raises(rr.RecordIOError, match='not a directory'):
        rr.create(str(tmp_path / 'f'), new_record())


def test_update_in_place_and_nothing_written_when_refused(tmp_path):
    path = rr.create(str(tmp_path), new_record())
    before, after = rr.update(path, lambda record: rr.transition(record, 'rolled_back', EPOCH + 5))
    assert before['status'] == 'retired' and after['status'] == 'rolled_back'
    assert rr.read(path) == after
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, 'rb') as handle:
        content = handle.read()
    with pytest.raises(rr.Refused):
        rr.update(path, lambda record: rr.transition(record, 'rolled_back', EPOCH + 6))
    with open(path, 'rb') as handle:
        assert handle.read() == content
    assert not [name for name in os.listdir(str(tmp_path)) if name.endswith('.tmp')]


def test_update_through_a_symlink_updates_the_target(tmp_path):
    path = rr.create(str(tmp_path), new_record())
    link = str(tmp_path / 'latest.json')
    os.symlink(path, link)
    rr.update(link, lambda record: rr.transition(record, 'rolled_back', EPOCH + 5))
    assert os.path.islink(link)
    assert rr.read(path)['status'] == 'rolled_back'


def test_update_waits_for_the_lock_then_gives_up(tmp_path, monkeypatch):
    path = rr.create(str(tmp_path), new_record())
    monkeypatch.setattr(rr, 'LOCK_TIMEOUT', 0.2)
    holder = os.open(str(tmp_path / rr.LOCK_NAME), os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(rr.RecordIOError, match='held its lock'):
            rr.update(path, lambda record: rr.transition(record, 'rolled_back', EPOCH + 5))
    finally:
        os.close(holder)
    assert rr.read(path)['status'] == 'retired'


def test_read_refuses_missing_folders_large_and_invalid_files(tmp_path, monkeypatch):
    with pytest.raises(rr.RecordIOError, match='cannot read'):
        rr.read(str(tmp_path / 'nope.json'))
    with pytest.raises(rr.RecordIOError, match='not a regular file'):
        rr.read(str(tmp_path))
    with pytest.raises(rr.RecordIOError, match='cannot read'):
        rr.read(str(tmp_path) + '/a\x00b')
    bad = tmp_path / 'bad.json'
    record = new_record()
    broken = copy.deepcopy(record)
    broken['policy']['rollback_window_seconds'] = 'a day'
    bad.write_text(json.dumps(broken))
    with pytest.raises(rr.RecordError) as caught:
        rr.read(str(bad))
    assert caught.value.field == 'policy.rollback_window_seconds'
    monkeypatch.setattr(rr, 'MAX_RECORD_BYTES', 10)
    with pytest.raises(rr.RecordIOError, match='more than any record'):
        rr.read(str(bad))
