# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import gzip
import json
import os

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._tasklog import (
    MALFORMED_SAMPLES,
    LogFormat,
    Reconciler,
    TaskLogError,
    iso_utc,
    parse_time,
    resubmit,
)
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import RequeueEndpoint, free_port

T0 = 1714564800.25  # 2024-05-01T12:00:00.250Z


def started(rid, ts, **extra):
    record = {'event': 'started', 'id': rid, 'ts': ts}
    record.update(extra)
    return json.dumps(record, separators=(',', ':'))


def completed(rid, ts, **extra):
    record = {'event': 'completed', 'id': rid, 'ts': ts, 'status': 200}
    record.update(extra)
    return json.dumps(record, separators=(',', ':'))


def aborted(rid, ts):
    return json.dumps({'event': 'aborted', 'id': rid, 'ts': ts, 'error': 'BrokenPipeError: [Errno 32] Broken pipe'})


def write(tmp_path, name, lines, opener=open, newline='\n'):
    path = str(tmp_path / name)
    data = ''.join(line + newline for line in lines).encode('utf-8')
    with opener(path, 'wb') as handle:
        handle.write(data)
    return path


def reconcile(*paths, **kwargs):
    missing_ok = kwargs.pop('missing_ok', False)
    max_listed = kwargs.pop('max_listed', 1000)
    rec = Reconciler(**kwargs)
    for path in paths:
        rec.read_path(path, missing_ok=missing_ok)
    return rec, rec.summary(max_listed)


def assert_balanced(summary):
    assert summary['started_count'] == summary['completed_count'] + summary['ended_count'] + summary['incomplete_count']


# ------------------------------------------------------------------------------------------ times

@pytest.mark.parametrize('value,expected', [
    (T0, T0),
    (1714564800, 1714564800.0),
    ('1714564800.25', T0),
    (' 1714564800.25 ', T0),
    ('2024-05-01T12:00:00.250Z', T0),
    ('2024-05-01T12:00:00.250000z', T0),
    ('2024-05-01T14:00:00.250+02:00', T0),
    ('2024-05-01T12:00:00.250', T0),  # no offset: UTC
    ('2024-05-01 12:00:00', 1714564800.0),
    ('2024-05-01T12:00:00.25Z', T0),
    ('2024-05-01T12:00:00.250000001Z', T0),  # nanoseconds, cut to microseconds
    ('2024-05-01T12:00:00,25+00:00', T0),
    (0, 0.0),
])
def test_parse_time_accepts(value, expected):
    assert parse_time(value) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize('value', [
    True, False, None, [T0], {'ts': T0}, float('nan'), float('inf'), -float('inf'), 1e20, -1e20,
    '', 'yesterday', '2024-13-01T00:00:00Z', 'NaN', 'inf',
])
def test_parse_time_rejects(value):
    with pytest.raises(ValueError):
        parse_time(value)


def test_iso_utc():
    assert iso_utc(T0) == '2024-05-01T12:00:00.250Z'
    assert iso_utc(0) == '1970-01-01T00:00:00.000Z'
    assert iso_utc(-1.5) == '1969-12-31T23:59:58.500Z'


# ------------------------------------------------------------------------------------------ format

def test_default_format_is_the_reference_servers():
    fmt = LogFormat()
    assert (fmt.id_key, fmt.event_key, fmt.time_key) == ('id', 'event', 'ts')
    assert (fmt.started_value, fmt.completed_value, fmt.ended_values) == ('started', 'completed', ('aborted',))
    assert fmt.problems() == []


@pytest.mark.parametrize('kwargs,fragment', [
    ({'id_key': ''}, 'id_key must not be empty'),
    ({'time_key': 'id'}, 'three different keys'),
    ({'completed_value': 'started'}, 'must differ'),
    ({'ended_values': ['completed']}, "'completed'"),
    ({'ended_values': ['']}, 'empty value'),
])
def test_format_problems(kwargs, fragment):
    problems = LogFormat(**kwargs).problems()
    assert any(fragment in p for p in problems), problems


# ------------------------------------------------------------------------------------------ pairing

def test_reference_format_pairing(tmp_path):
    path = write(tmp_path, 'gpu-07.tasks.jsonl', [
        started('a', T0, instance='gpu-07', model='demo-model'),
        started('b', T0 + 1, instance='gpu-07', model='demo-model'),
        completed('a', T0 + 3, duration=3.0, instance='gpu-07'),
        started('c', T0 + 2, instance='gpu-07', model='demo-model'),
        aborted('c', T0 + 2.5),
        started('d', T0 + 0.5, instance='gpu-07', model='demo-model'),
    ])
    rec, summary = reconcile(path)
    assert [i['id'] for i in summary['incomplete']] == ['d', 'b']  # oldest first, not file order
    first = summary['incomplete'][0]
    assert first == {'id': 'd', 'started_ts': T0 + 0.5, 'started_at': '2024-05-01T12:00:00.750Z', 'path': path,
                     'line': 6, 'fields': {'instance': 'gpu-07', 'model': 'demo-model'}, 'truncated': False}
    assert summary['incomplete_count'] == 2 and not summary['truncated']
    assert (summary['started_count'], summary['completed_count'], summary['ended_count']) == (4, 1, 1)
    assert summary['unmatched_count'] == 0 and summary['malformed_lines'] == 0
    assert summary['paths'] == [{'path': path, 'exists': True, 'compressed': False, 'lines': 6, 'malformed_lines': 0,
                                 'started': 4, 'completed': 1, 'ended': 1, 'other': 0, 'bytes_read': os.path.getsize(path),
                                 'capped': False, 'duplicate_of': None}]
    assert summary['state'] == 'read'
    assert_balanced(summary)
    assert [s.record['id'] for s in rec.incomplete()] == ['d', 'b']


def test_pairs_across_files_in_any_order(tmp_path):
    # The newest file is read first: its end records come before their starts.
    new = write(tmp_path, 'tasks.jsonl', [completed('x', T0 + 10), completed('y', T0 + 11), started('z', T0 + 12)])
    old = write(tmp_path, 'tasks.jsonl.1', [started('x', T0), started('y', T0 + 1), started('w', T0 + 2)])
    _rec, summary = reconcile(new, old)
    assert [i['id'] for i in summary['incomplete']] == ['w', 'z']
    assert summary['incomplete'][0]['path'] == old and summary['incomplete'][1]['path'] == new
    assert (summary['completed_count'], summary['unmatched_count']) == (2, 0)
    assert_balanced(summary)


def test_reused_ids_close_the_earliest_open_start(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [
        started('dup', T0), started('dup', T0 + 5), completed('dup', T0 + 6), started('dup', T0 + 7),
    ])
    _rec, summary = reconcile(path)
    assert [(i['id'], i['line']) for i in summary['incomplete']] == [('dup', 2), ('dup', 4)]
    assert (summary['started_count'], summary['completed_count']) == (3, 1)


def test_integer_and_string_ids_are_the_same_request(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [started(7, T0), completed('7', T0 + 1), started(8, T0 + 2)])
    _rec, summary = reconcile(path)
    assert [i['id'] for i in summary['incomplete']] == [8]
    assert summary['completed_count'] == 1


def test_ends_without_start_are_unmatched_not_incomplete(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [
        completed('gone', T0), aborted('gone-too', T0 + 1),
        json.dumps({'event': 'completed', 'id': 'no-time'}),  # an end's time is optional
        started('open', T0 + 2),
    ])
    _rec, summary = reconcile(path)
    assert summary['unmatched_count'] == 3 and summary['malformed_lines'] == 0
    assert [i['id'] for i in summary['incomplete']] == ['open']
    assert (summary['completed_count'], summary['ended_count']) == (0, 0)


def test_since_leaves_out_earlier_requests_but_still_pairs_them(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [
        started('old-open', T0 - 100),
        started('old-done', T0 - 50),
        completed('old-done', T0 + 1),       # pairs with a start before since: not unmatched
        completed('rotated-away', T0 - 10),  # its start is gone, and it ended before since
        completed('rotated-recent', T0 + 2),  # its start is gone, ended after since
        started('new-open', T0),             # exactly at since: counted
        started('new-done', T0 + 3), completed('new-done', T0 + 4),
    ])
    _rec, summary = reconcile(path, since=T0)
    assert [i['id'] for i in summary['incomplete']] == ['new-open']
    assert (summary['started_count'], summary['completed_count'], summary['started_before_since']) == (2, 1, 2)
    assert summary['unmatched_count'] == 1
    assert summary['paths'][0]['started'] == 4  # per file counts include the older starts
    assert_balanced(summary)


def test_custom_format_and_other_events(tmp_path):
    lines = [
        json.dumps({'phase': 'accepted', 'request_id': 'q1', 'time': '2024-05-01T12:00:00.250Z', 'tenant': 't1'}),
        json.dumps({'phase': 'progress', 'request_id': 'q1', 'pct': 50}),
        json.dumps({'phase': 'accepted', 'request_id': 'q2', 'time': '2024-05-01T12:00:01Z'}),
        json.dumps({'phase': 'cancelled', 'request_id': 'q2', 'time': '2024-05-01T12:00:02Z'}),
        json.dumps({'phase': 'accepted', 'request_id': 'q3', 'time': 1714564803}),
        json.dumps({'phase': 'finished', 'request_id': 'q3'}),
        json.dumps({'phase': None, 'note': 'server up'}),
        json.dumps({'phase': 'started', 'id': 'ignored', 'ts': T0}),  # the default value means nothing here
    ]
    path = write(tmp_path, 'requests.log', lines)
    fmt = LogFormat(id_key='request_id', event_key='phase', time_key='time', started_value='accepted',
                    completed_value='finished', ended_values=['cancelled', 'rejected'])
    _rec, summary = reconcile(path, log_format=fmt)
    assert summary['incomplete'] == [{'id': 'q1', 'started_ts': T0, 'started_at': '2024-05-01T12:00:00.250Z',
                                      'path': path, 'line': 1, 'fields': {'tenant': 't1'}, 'truncated': False}]
    assert (summary['started_count'], summary['completed_count'], summary['ended_count']) == (3, 1, 1)
    assert summary['other_events'] == 3 and summary['paths'][0]['other'] == 3
    assert summary['malformed_lines'] == 0


def test_no_ended_values_means_aborted_requests_are_incomplete(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [started('c', T0), aborted('c', T0 + 1)])
    _rec, summary = reconcile(path, log_format=LogFormat(ended_values=[]))
    assert [i['id'] for i in summary['incomplete']] == ['c'] and summary['other_events'] == 1


# ------------------------------------------------------------------------------------------ malformed input

MALFORMED = [
    (b'{"event":"started","id":"t1","ts":1714564800.2', 'not JSON'),          # cut mid-write
    (b'\xff\xfe{"event":"started"}', 'not UTF-8'),
    (b'not json at all', 'not JSON'),
    (b'["started","x",1714564800]', 'not a JSON object'),
    (b'"started"', 'not a JSON object'),
    (b'{"id":"x","ts":1714564800}', "no 'event' key"),
    (b'{"event":"started","ts":1714564800}', "started record without 'id' key"),
    (b'{"event":"completed","id":null}', "'id' is not a non-empty string or integer"),
    (b'{"event":"started","id":"","ts":1714564800}', "'id' is not a non-empty string or integer"),
    (b'{"event":"started","id":true,"ts":1714564800}', "'id' is not a non-empty string or integer"),
    (b'{"event":"started","id":1.5,"ts":1714564800}', "'id' is not a non-empty string or integer"),
    (b'{"event":"started","id":{"a":1},"ts":1714564800}', "'id' is not a non-empty string or integer"),
    (b'{"event":"started","id":"x"}', "started record without 'ts' key"),
    (b'{"event":"started","id":"x","ts":"soon"}', "started record with a bad 'ts'"),
    (b'{"event":"started","id":"x","ts":NaN}', "started record with a bad 'ts'"),
    (b'{"event":"started","id":"x","ts":1e300}', "started record with a bad 'ts'"),
    (b'{"event":"completed","id":"x","ts":[1]}', "completed record with a bad 'ts'"),
]


@pytest.mark.parametrize('raw,reason', MALFORMED)
def test_each_malformed_line_is_counted_with_a_reason(tmp_path, raw, reason):
    path = str(tmp_path / 'tasks.jsonl')
    with open(path, 'wb') as handle:
        handle.write(started('good', T0).encode() + b'\n' + raw + b'\n' + completed('good', T0 + 1).encode() + b'\n')
    _rec, summary = reconcile(path)
    assert summary['malformed_lines'] == 1
    assert summary['malformed_samples'][0]['path'] == path and summary['malformed_samples'][0]['line'] == 2
    assert reason in summary['malformed_samples'][0]['reason']
    assert summary['completed_count'] == 1 and summary['incomplete_count'] == 0


def test_malformed_samples_are_bounded_and_blank_lines_skipped(tmp_path):
    lines = ['garbage %d' % i for i in range(MALFORMED_SAMPLES + 5)] + ['', '   ', started('s', T0)]
    path = write(tmp_path, 'tasks.jsonl', lines, newline='\r\n')
    _rec, summary = reconcile(path)
    assert summary['malformed_lines'] == MALFORMED_SAMPLES + 5
    assert len(summary['malformed_samples']) == MALFORMED_SAMPLES
    assert summary['paths'][0]['lines'] == MALFORMED_SAMPLES + 8
    assert [i['id'] for i in summary['incomplete']] == ['s']


def test_last_line_without_newline(tmp_path):
    path = str(tmp_path / 'tasks.jsonl')
    with open(path, 'wb') as handle:
        handle.write((started('a', T0) + '\n' + started('b', T0 + 1) + '\n' + completed('a', T0 + 2)).encode())
    _rec, summary = reconcile(path)
    assert [i['id'] for i in summary['incomplete']] == ['b'] and summary['paths'][0]['lines'] == 3


# ------------------------------------------------------------------------------------------ files

def test_gzip_rotated_log(tmp_path):
    rotated = write(tmp_path, 'tasks.jsonl.1.gz', [started('a', T0), started('b', T0 + 1)], opener=gzip.open)
    current = write(tmp_path, 'tasks.jsonl', [completed('a', T0 + 2)])
    _rec, summary = reconcile(rotated, current)
    assert [i['id'] for i in summary['incomplete']] == ['b']
    assert [p['compressed'] for p in summary['paths']] == [True, False]


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path):
    full = write(tmp_path, 'full.gz', [started('r%d' % i, T0 + i) for i in range(200)], opener=gzip.open)
    with open(full, 'rb') as handle:
        data = handle.read()
    cut = str(tmp_path / 'tasks.jsonl.2.gz')
    with open(cut, 'wb') as handle:
        handle.write(data[:len(data) // 2])
    with pytest.raises(TaskLogError) as err:
        reconcile(cut)
    assert cut in str(err.value) and 'gzip' in str(err.value)


def test_missing_file(tmp_path):
    path = str(tmp_path / 'nope.jsonl')
    with pytest.raises(TaskLogError) as err:
        reconcile(path)
    assert path in str(err.value) and 'missing_ok' in str(err.value)
    _rec, summary = reconcile(path, missing_ok=True)
    assert summary['paths'] == [{'path': path, 'exists': False, 'compressed': False, 'lines': 0, 'malformed_lines': 0,
                                 'started': 0, 'completed': 0, 'ended': 0, 'other': 0, 'bytes_read': 0, 'capped': False,
                                 'duplicate_of': None}]
    # No task log is not "0 incomplete requests".
    assert summary['state'] == 'no_task_log' and summary['incomplete_count'] is None


def test_directory_is_an_error_even_with_missing_ok(tmp_path):
    with pytest.raises(TaskLogError, match='is a directory'):
        reconcile(str(tmp_path), missing_ok=True)


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads files whatever their mode')
def test_unreadable_file(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [started('a', T0)])
    os.chmod(path, 0)
    with pytest.raises(TaskLogError, match='permission denied; run the task with become'):
        reconcile(path)


def test_empty_file(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [])
    _rec, summary = reconcile(path)
    assert summary['incomplete'] == [] and summary['started_count'] == 0 and summary['paths'][0]['lines'] == 0


def test_max_listed_truncates_the_list_only(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [started('r%03d' % i, T0 + 100 - i) for i in range(50)])
    rec, summary = reconcile(path, max_listed=5)
    assert summary['incomplete_count'] == 50 and summary['truncated'] is True
    assert [i['id'] for i in summary['incomplete']] == ['r049', 'r048', 'r047', 'r046', 'r045']
    assert len(rec.incomplete()) == 50
    assert rec.summary(0)['incomplete'] == [] and rec.summary(50)['truncated'] is False


# ------------------------------------------------------------------------------------------ resubmission

@pytest.fixture
def endpoint():
    with RequeueEndpoint() as server:
        yield server


def open_starts(tmp_path, count=3):
    path = write(tmp_path, 'tasks.jsonl', [started('r%d' % i, T0 + i, model='demo-model') for i in range(count)])
    rec, _summary = reconcile(path)
    return rec.incomplete()


def test_resubmit_batch_sends_the_start_records_as_one_list(tmp_path, endpoint):
    starts = open_starts(tmp_path)
    outcomes = resubmit(starts, endpoint.url, token='tok-9', headers={'X-Source': 'gpu-07'})
    assert outcomes == [{'status': 202, 'ok': True, 'error': None, 'ids': ['r0', 'r1', 'r2'], 'count': 3}]
    assert len(endpoint.received) == 1
    got = endpoint.received[0]
    assert got['method'] == 'POST' and got['path'] == '/v1/requeue'
    assert got['body'] == [{'event': 'started', 'id': 'r%d' % i, 'ts': T0 + i, 'model': 'demo-model'} for i in range(3)]
    assert got['headers']['Authorization'] == 'Bearer tok-9' and got['headers']['X-Source'] == 'gpu-07'
    assert got['headers']['Content-Type'] == 'application/json'


def test_resubmit_per_task_stops_at_the_first_failure(tmp_path):
    server = RequeueEndpoint(statuses=[200, 503, 200])
    try:
        starts = open_starts(tmp_path)
        outcomes = resubmit(starts, server.url, method='PUT', batch=False, token='tok-9')
        assert [(o['id'], o['status'], o['ok']) for o in outcomes] == [('r0', 200, True), ('r1', 503, False)]
        assert outcomes[1]['error'].startswith('PUT %s returned HTTP 503' % server.url)
        assert 'tok-9' not in outcomes[1]['error']
        assert [r['body']['id'] for r in server.received] == ['r0', 'r1']
        assert all(r['method'] == 'PUT' for r in server.received)

        server.statuses = [500, 201]
        outcomes = resubmit(starts, server.url, batch=False, stop_on_error=False)
        assert [(o['id'], o['ok']) for o in outcomes] == [('r0', False), ('r1', True), ('r2', True)]
    finally:
        server.stop()


def test_resubmit_unreachable_endpoint(tmp_path):
    url = 'http://127.0.0.1:%d/requeue' % free_port()
    outcomes = resubmit(open_starts(tmp_path, 1), url, token='tok-9', timeout=5)
    assert outcomes[0]['ok'] is False and outcomes[0]['status'] is None
    assert url in outcomes[0]['error'] and 'tok-9' not in outcomes[0]['error']


def test_resubmit_nothing_sends_nothing(endpoint):
    assert resubmit([], endpoint.url) == []
    assert endpoint.received == []


# ------------------------------------------------------------------------------------------ bounded reading (sweep)

def test_read_path_refuses_a_fifo_before_opening_it(tmp_path):
    fifo = str(tmp_path / 'tasks.fifo')
    os.mkfifo(fifo)
    rec = Reconciler()
    with pytest.raises(TaskLogError, match='is a FIFO \\(named pipe\\), not a regular file'):
        rec.read_path(fifo)
    assert rec.files == []


def test_read_path_nul_byte_is_an_error(tmp_path):
    with pytest.raises(TaskLogError, match='contains a NUL byte'):
        Reconciler().read_path(str(tmp_path / 'a\x00b'))


def test_caps_per_file_and_per_line(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [started('a', T0), 'y' * 300, started('b', T0 + 1), completed('a', T0 + 2)])
    rec, summary = reconcile(path, max_line_bytes=100)
    assert summary['state'] == 'read' and [i['id'] for i in summary['incomplete']] == ['b']
    assert summary['malformed_samples'][0]['reason'] == 'longer than max_line_bytes=100 bytes; skipped'
    rec, summary = reconcile(path, max_file_bytes=60)
    assert summary['state'] == 'capped' and summary['paths'][0]['capped'] and summary['paths'][0]['bytes_read'] <= 60
    # A file of exactly max_file_bytes is read whole.
    rec, summary = reconcile(path, max_file_bytes=os.path.getsize(path))
    assert summary['state'] == 'read' and not summary['paths'][0]['capped']


def test_same_file_by_inode_is_read_once(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [started('a', T0)])
    link = str(tmp_path / 'link.jsonl')
    os.symlink(path, link)
    rec, summary = reconcile(path, link)
    assert summary['incomplete_count'] == 1 and summary['paths'][1]['duplicate_of'] == path


def test_describe_cuts_id_and_fields_to_max_chars(tmp_path):
    path = write(tmp_path, 'tasks.jsonl', [started('i' * 50, T0, a='x' * 30, b={'deep': [1, 2, 3]}, c='late')])
    rec, summary = reconcile(path)
    start = rec.incomplete()[0]
    whole = rec.describe(start)
    assert whole['id'] == 'i' * 50 and whole['fields'] == {'a': 'x' * 30, 'b': {'deep': [1, 2, 3]}, 'c': 'late'}
    assert whole['truncated'] is False
    cut = rec.describe(start, max_chars=40)
    assert cut['id'] == 'i' * 40 and cut['truncated'] is True
    assert cut['fields'] == {'a': 'x' * 30, 'b': '{"deep":'}  # 1 + 30 for a, then 9 chars left: "b" plus 8 of its JSON
    assert rec.describe(start, max_chars=1000)['fields'] == whole['fields']
    assert rec.describe(start, max_chars=1000)['truncated'] is False
