# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retirement_record filter: reads the JSON text or the dict, validates it, computes the rollback window."""

from __future__ import annotations

import json

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.modelops.shutdown.plugins.filter.retirement_record import FilterModule, retirement_record
from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_record as rr

EPOCH = 1764614400.0
DIGEST = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'


def record():
    return rr.build({'name': 'llama3', 'version': '1.2'}, {'name': 'p', 'version': '1', 'rollback_window_seconds': 60},
                    {'digest': DIGEST, 'evaluated_at': EPOCH}, now=EPOCH)


def test_registered():
    assert FilterModule().filters() == {'retirement_record': retirement_record}


@pytest.mark.parametrize('form', [rr.dumps, lambda r: rr.dumps(r).encode('utf-8'), lambda r: r])
def test_reads_text_bytes_or_dict_and_adds_the_window(form):
    original = record()
    result = retirement_record(form(original), now=EPOCH + 20)
    window = result.pop('window')
    assert result == original
    assert window == {'end': EPOCH + 60, 'end_iso': '2025-12-01T18:41:00.000+00:00', 'open': True,
                      'remaining_seconds': 40.0, 'now': EPOCH + 20}


def test_closed_window_and_default_now():
    assert retirement_record(record(), now=EPOCH + 60)['window']['open'] is False
    assert retirement_record(record(), now=EPOCH + 600)['window']['remaining_seconds'] == 0.0
    window = retirement_record(record())['window']  # now: this machine's clock, long after 2025-12-01
    assert window['now'] > EPOCH and window['open'] is False


def test_the_input_dict_is_left_alone():
    original = record()
    retirement_record(original, now=EPOCH)
    assert 'window' not in original


@pytest.mark.parametrize('data, words', [
    ('{"schema_version": "1.0"}', 'kind is missing'),
    ('[]', 'the record must be an object'),
    ('{', 'the record is not JSON'),
    (None, 'the input must be the JSON text of a retirement record or the record as a dict, got null'),
    (5, 'got int'),
])
def test_invalid_input_names_the_field(data, words):
    with pytest.raises(AnsibleFilterError) as caught:
        retirement_record(data, now=EPOCH)
    assert words in str(caught.value)
    assert str(caught.value).startswith('modelops.shutdown.retirement_record: ')


def test_a_wrong_field_is_named():
    broken = json.loads(rr.dumps(record()))
    broken['history'][0]['at'] = 'yesterday'
    with pytest.raises(AnsibleFilterError, match=r'not a valid retirement record \(schema_version 1.0\): history\[0\].at '):
        retirement_record(json.dumps(broken), now=EPOCH)


@pytest.mark.parametrize('now', ['soon', float('nan'), True, [1]])
def test_now_must_be_a_number(now):
    with pytest.raises(AnsibleFilterError, match='now must be epoch seconds'):
        retirement_record(record(), now=now)
