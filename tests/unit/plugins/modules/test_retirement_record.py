# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retirement_record: main() writes, updates and refuses records; every record it writes matches the schema."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.modelops.shutdown.plugins.modules import retirement_record

try:
    import jsonschema
except ImportError:  # pragma: no cover - jsonschema is a test requirement
    jsonschema = None

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'docs',
                           'retirement-record.schema.json')
EPOCH = 1764614400.0   # 2025-12-01T18:40:00Z
DIGEST = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
RID = 'llama3-1.2-20251201T184000Z'


def schema_check(record):
    if jsonschema is None:
        return
    with open(SCHEMA_PATH) as handle:
        jsonschema.Draft202012Validator(json.load(handle)).validate(record)


class Clock(object):
    """Stands in for the module's C(time): C(time()) answers C(now)."""

    def __init__(self, now):
        self.now = now

    def time(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(EPOCH)
    monkeypatch.setattr(retirement_record, 'time', fake)
    return fake


def retire_args(directory, **changes):
    args = dict(
        state='retired', dir=directory,
        model={'name': 'llama3', 'version': '1.2', 'hosts': ['gpu-01']},
        policy={'name': 'retire-90d', 'version': '3', 'rollback_window_seconds': 3600},
        eligibility={'digest': DIGEST, 'evaluated_at': EPOCH - 60},
        shutdown={'status': 'done', 'hosts': {'gpu-01': {'units_stopped': ['vllm@llama3.service'], 'outcome': 'done'}}},
        dependencies=[{'host': 'lb1', 'kind': 'haproxy', 'name': 'models/gpu-01', 'changed': True,
                       'previous': 'ready', 'new': 'maint', 'failed': False}],
        detail='weekly rollout',
    )
    args.update(changes)
    return args


def on_disk(path):
    with open(path) as handle:
        record = json.load(handle)
    schema_check(record)
    return record


def retire(run_module, directory, **changes):
    result = run_module(retirement_record, retire_args(directory, **changes), expect_failed=False)
    return result


def test_retired_writes_the_record(run_module, clock, tmp_path):
    directory = str(tmp_path / 'records')
    result = retire(run_module, directory)
    path = os.path.join(directory, RID + '.json')
    assert result['changed'] is True and result['path'] == path
    assert on_disk(path) == result['record']
    record = result['record']
    assert record['status'] == 'retired' and record['model']['key'] == 'llama3@1.2'
    assert record['retired_at'] == EPOCH and record['window_end'] == EPOCH + 3600
    assert record['history'] == [{'event': 'retired', 'at': EPOCH, 'at_iso': '2025-12-01T18:40:00.000+00:00',
                                  'detail': 'weekly rollout'}]
    assert record['dependencies'][0]['where'] == '' and 'failed' not in record['dependencies'][0]
    assert result['window'] == {'end': EPOCH + 3600, 'end_iso': '2025-12-01T19:40:00.000+00:00', 'open': True,
                                'remaining_seconds': 3600.0, 'now': EPOCH}
    assert result['msg'] == 'retired %s: the rollback window is open until 2025-12-01T19:40:00.000+00:00' % RID
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_retired_in_check_mode_writes_nothing(run_module, clock, tmp_path):
    directory = str(tmp_path / 'records')
    result = run_module(retirement_record, retire_args(directory), check_mode=True, diff=True, expect_failed=False)
    assert result['changed'] is True and result['path'] == os.path.join(directory, RID + '.json')
    schema_check(result['record'])
    assert not os.path.exists(directory)
    assert result['diff']['before'] == {'status': 'absent'} and result['diff']['after'] == {'status': 'retired'}


def test_retired_twice_in_the_same_second_is_refused(run_module, clock, tmp_path):
    retire(run_module, str(tmp_path))
    result = run_module(retirement_record, retire_args(str(tmp_path)), expect_failed=True)
    assert 'exists already' in result['msg'] and result['changed'] is False


@pytest.mark.parametrize('changes, field', [
    (dict(policy={'name': 'p', 'version': '1', 'rollback_window_seconds': -1}), 'policy.rollback_window_seconds'),
    (dict(policy={'name': 'p', 'version': '1', 'rollback_window_seconds': 'nan'}), 'policy.rollback_window_seconds'),
    (dict(eligibility={'digest': 'sha256:abc', 'evaluated_at': EPOCH}), 'eligibility.digest'),
    (dict(dependencies=[{'kind': 'haproxy'}]), 'dependencies[0].host'),
    (dict(shutdown={'hosts': {'gpu-01': {'units_stopped': 'vllm'}}}), 'shutdown.hosts["gpu-01"].units_stopped'),
])
def test_retired_names_the_wrong_input(run_module, clock, tmp_path, changes, field):
    result = run_module(retirement_record, retire_args(str(tmp_path), **changes), expect_failed=True)
    assert result['field'] == field
    assert result['msg'].startswith('the input is not valid: ' + field)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('args, words', [
    (dict(state='retired'), 'state is retired but all of the following are missing: dir, model, policy, eligibility'),
    (dict(state='rolled_back'), 'state is rolled_back but all of the following are missing: path'),
    (dict(state='finalized', path='/x.json', dir='/d'), 'dir: only taken with state=retired'),
    (dict(state='finalized', path='/x.json', dependencies=[{'host': 'h'}]), 'dependencies: only taken with state=retired'),
])
def test_required_and_misplaced_options(run_module, clock, args, words):
    result = run_module(retirement_record, args, expect_failed=True)
    assert words in result['msg']


def test_path_is_refused_with_retired(run_module, clock, tmp_path):
    result = run_module(retirement_record, retire_args(str(tmp_path), path=str(tmp_path / 'x.json')), expect_failed=True)
    assert 'path: only taken with state=rolled_back or state=finalized' in result['msg']


def test_roll_back_within_the_window(run_module, clock, tmp_path):
    path = retire(run_module, str(tmp_path))['path']
    clock.now = EPOCH + 100
    result = run_module(retirement_record, {'state': 'rolled_back', 'path': path, 'detail': 'latency'}, diff=True,
                        expect_failed=False)
    assert result['changed'] is True and result['path'] == path
    assert result['record'] == on_disk(path)
    assert result['record']['status'] == 'rolled_back' and result['record']['rolled_back_at'] == EPOCH + 100
    assert [e['event'] for e in result['record']['history']] == ['retired', 'rolled_back']
    assert result['window']['open'] is True and result['window']['remaining_seconds'] == 3500.0
    assert result['diff']['before'] == {'status': 'retired'} and result['diff']['after'] == {'status': 'rolled_back'}
    assert result['msg'] == '%s rolled back at 2025-12-01T18:41:40.000+00:00' % RID
    again = run_module(retirement_record, {'state': 'rolled_back', 'path': path, 'force': True}, expect_failed=True)
    assert 'is already rolled_back' in again['msg'] and again['record'] == on_disk(path)
    final = run_module(retirement_record, {'state': 'finalized', 'path': path, 'force': True}, expect_failed=True)
    assert 'nothing to finalize, the model was brought back' in final['msg']


def test_roll_back_after_the_window_is_refused_unless_forced(run_module, clock, tmp_path):
    path = retire(run_module, str(tmp_path))['path']
    clock.now = EPOCH + 3600
    result = run_module(retirement_record, {'state': 'rolled_back', 'path': path}, expect_failed=True)
    assert result['msg'] == ('the rollback window of %s closed at 2025-12-01T19:40:00.000+00:00 (0 s ago): rolling back '
                             'now needs -e rollback_force=true' % RID)
    assert result['changed'] is False and result['window']['open'] is False
    assert on_disk(path)['status'] == 'retired'
    result = run_module(retirement_record, {'state': 'rolled_back', 'path': path, 'force': True}, expect_failed=False)
    assert [e['event'] for e in on_disk(path)['history']] == ['retired', 'forced', 'rolled_back']
    assert result['msg'] == '%s rolled back (forced) at 2025-12-01T19:40:00.000+00:00' % RID


def test_finalize_only_after_the_window_unless_forced(run_module, clock, tmp_path):
    path = retire(run_module, str(tmp_path))['path']
    clock.now = EPOCH + 1800
    result = run_module(retirement_record, {'state': 'finalized', 'path': path}, expect_failed=True)
    assert result['msg'] == ('the rollback window of %s is open until 2025-12-01T19:40:00.000+00:00 (1800 s left); '
                             'finalize after it, or force' % RID)
    clock.now = EPOCH + 7200
    result = run_module(retirement_record, {'state': 'finalized', 'path': path, 'detail': 'done'}, expect_failed=False)
    record = on_disk(path)
    assert record == result['record'] and record['status'] == 'final' and record['finalized_at'] == EPOCH + 7200
    assert result['window'] == {'end': EPOCH + 3600, 'end_iso': '2025-12-01T19:40:00.000+00:00', 'open': False,
                                'remaining_seconds': 0.0, 'now': EPOCH + 7200}
    for state in ('finalized', 'rolled_back'):
        again = run_module(retirement_record, {'state': state, 'path': path, 'force': True}, expect_failed=True)
        assert 'final' in again['msg'] and again['record']['status'] == 'final'


def test_forced_finalize_within_the_window(run_module, clock, tmp_path):
    path = retire(run_module, str(tmp_path))['path']
    clock.now = EPOCH + 10
    run_module(retirement_record, {'state': 'finalized', 'path': path, 'force': True}, expect_failed=False)
    assert [e['event'] for e in on_disk(path)['history']] == ['retired', 'forced', 'finalized']


def test_update_in_check_mode_writes_nothing(run_module, clock, tmp_path):
    path = retire(run_module, str(tmp_path))['path']
    with open(path, 'rb') as handle:
        content = handle.read()
    clock.now = EPOCH + 10
    result = run_module(retirement_record, {'state': 'rolled_back', 'path': path}, check_mode=True, diff=True,
                        expect_failed=False)
    assert result['changed'] is True and result['record']['status'] == 'rolled_back'
    schema_check(result['record'])
    with open(path, 'rb') as handle:
        assert handle.read() == content


def test_update_of_what_is_no_record(run_module, clock, tmp_path):
    result = run_module(retirement_record, {'state': 'rolled_back', 'path': str(tmp_path / 'nope.json')}, expect_failed=True)
    assert result['msg'].startswith('cannot read the retirement record') and result['record'] is None
    bad = tmp_path / 'bad.json'
    bad.write_text('{"schema_version": "1.0"}')
    result = run_module(retirement_record, {'state': 'finalized', 'path': str(bad)}, expect_failed=True)
    assert result['msg'] == 'the retirement record %s is not valid: kind is missing' % bad
    assert result['field'] == 'kind'
    bad.write_text('not json')
    result = run_module(retirement_record, {'state': 'finalized', 'path': str(bad)}, expect_failed=True)
    assert 'is not JSON' in result['msg']
