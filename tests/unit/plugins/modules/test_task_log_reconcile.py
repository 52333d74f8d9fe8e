# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.modelops.shutdown.plugins.modules import task_log_reconcile
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import RequeueEndpoint, free_port

T0 = 1714564800.25  # 2024-05-01T12:00:00.250Z
TOKEN = 'requeue-s3cret'
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
MODEL_SERVER = os.path.join(REPO, 'tests', 'fleet', 'model_server.py')


def rec(event, rid, ts=None, **extra):
    record = {'event': event, 'id': rid}
    if ts is not None:
        record['ts'] = ts
    record.update(extra)
    return json.dumps(record, separators=(',', ':'))


def write_log(tmp_path, lines, name='gpu-07.tasks.jsonl'):
    path = str(tmp_path / name)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(''.join(line + '\n' for line in lines))
    return path


@pytest.fixture
def log_with_two_open(tmp_path):
    """Three requests, one completed, two left open (b started before a)."""
    return write_log(tmp_path, [
        rec('started', 'a', T0 + 1, instance='gpu-07', model='demo-model'),
        rec('started', 'b', T0, instance='gpu-07', model='demo-model'),
        rec('started', 'c', T0 + 2, instance='gpu-07', model='demo-model'),
        rec('completed', 'c', T0 + 3, status=200, duration=1.0, instance='gpu-07'),
    ])


@pytest.fixture
def endpoint():
    with RequeueEndpoint() as server:
        yield server


def closed_port_url():
    return 'http://127.0.0.1:%d/v1/requeue' % free_port()


def assert_balanced(result):
    assert result['started_count'] == result['completed_count'] + result['ended_count'] + result['incomplete_count']


# ------------------------------------------------------------------------------------------ reading and reporting

def test_reports_open_requests_oldest_first(run_module, log_with_two_open):
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open]}, expect_failed=False)
    assert result['changed'] is False and result['warnings'] == []
    assert result['incomplete'] == [
        {'id': 'b', 'started_ts': T0, 'started_at': '2024-05-01T12:00:00.250Z', 'path': log_with_two_open, 'line': 2,
         'fields': {'instance': 'gpu-07', 'model': 'demo-model'}, 'truncated': False},
        {'id': 'a', 'started_ts': T0 + 1, 'started_at': '2024-05-01T12:00:01.250Z', 'path': log_with_two_open, 'line': 1,
         'fields': {'instance': 'gpu-07', 'model': 'demo-model'}, 'truncated': False},
    ]
    assert (result['incomplete_count'], result['started_count'], result['completed_count']) == (2, 3, 1)
    assert result['truncated'] is False and result['malformed_lines'] == 0 and result['unmatched_count'] == 0
    assert result['paths'] == [{'path': log_with_two_open, 'exists': True, 'compressed': False, 'lines': 4,
                                'malformed_lines': 0, 'started': 3, 'completed': 1, 'ended': 0, 'other': 0,
                                'bytes_read': os.path.getsize(log_with_two_open), 'capped': False, 'duplicate_of': None}]
    assert result['state'] == 'read'
    assert result['resubmitted'] == [] and result['would_resubmit'] == 0
    assert_balanced(result)


def test_everything_completed(run_module, tmp_path):
    path = write_log(tmp_path, [rec('started', 'x', T0), rec('aborted', 'y', T0 + 2), rec('started', 'y', T0 + 1),
                                rec('completed', 'x', T0 + 3)])
    result = run_module(task_log_reconcile, {'paths': [path]}, expect_failed=False)
    assert result['incomplete'] == [] and result['incomplete_count'] == 0
    assert (result['completed_count'], result['ended_count']) == (1, 1)


def test_rotated_gzip_plus_current_and_duplicate_paths(run_module, tmp_path):
    rotated = str(tmp_path / 'gpu-07.tasks.jsonl.1.gz')
    with gzip.open(rotated, 'wt', encoding='utf-8') as handle:
        handle.write(rec('started', 'old', T0) + '\n' + rec('started', 'older-done', T0 - 5) + '\n')
    current = write_log(tmp_path, [rec('completed', 'older-done', T0 + 1), rec('completed', 'rotated-away', T0 + 2)])
    result = run_module(task_log_reconcile, {'paths': [current, rotated, current]}, expect_failed=False)
    assert [p['path'] for p in result['paths']] == [current, rotated]
    assert [p['compressed'] for p in result['paths']] == [False, True]
    assert [i['id'] for i in result['incomplete']] == ['old']
    assert result['unmatched_count'] == 1 and result['completed_count'] == 1


def test_since_and_custom_format(run_module, tmp_path):
    path = write_log(tmp_path, [
        json.dumps({'phase': 'accepted', 'request_id': 1, 'time': '2024-05-01T11:00:00Z'}),
        json.dumps({'phase': 'accepted', 'request_id': 2, 'time': '2024-05-01T12:30:00Z', 'tenant': 'blue'}),
        json.dumps({'phase': 'accepted', 'request_id': 3, 'time': '2024-05-01T12:31:00Z'}),
        json.dumps({'phase': 'cancelled', 'request_id': '3', 'time': '2024-05-01T12:32:00Z'}),
        json.dumps({'phase': 'heartbeat'}),
    ])
    result = run_module(task_log_reconcile, {
        'paths': [path], 'id_key': 'request_id', 'event_key': 'phase', 'time_key': 'time', 'started_value': 'accepted',
        'completed_value': 'finished', 'ended_values': ['cancelled'], 'since': T0,
    }, expect_failed=False)
    assert result['incomplete'] == [{'id': 2, 'started_ts': T0 + 1799.75, 'started_at': '2024-05-01T12:30:00.000Z',
                                     'path': path, 'line': 2, 'fields': {'tenant': 'blue'}, 'truncated': False}]
    assert (result['started_count'], result['ended_count'], result['started_before_since']) == (2, 1, 1)
    assert result['other_events'] == 1 and result['malformed_lines'] == 0


def test_max_listed_bounds_the_list_but_not_the_count(run_module, tmp_path):
    path = write_log(tmp_path, [rec('started', 'r%04d' % i, T0 + i) for i in range(1200)])
    result = run_module(task_log_reconcile, {'paths': [path], 'max_listed': 1000}, expect_failed=False)
    assert result['incomplete_count'] == 1200 and len(result['incomplete']) == 1000 and result['truncated'] is True
    assert result['incomplete'][0]['id'] == 'r0000' and result['incomplete'][-1]['id'] == 'r0999'
    # The default is a sample of 100.
    result = run_module(task_log_reconcile, {'paths': [path]}, expect_failed=False)
    assert result['incomplete_count'] == 1200 and len(result['incomplete']) == 100 and result['truncated'] is True
    result = run_module(task_log_reconcile, {'paths': [path], 'max_listed': 0}, expect_failed=False)
    assert result['incomplete'] == [] and result['incomplete_count'] == 1200 and result['truncated'] is True


# ------------------------------------------------------------------------------------------ bad input

def test_missing_file_fails_clearly(run_module, tmp_path, log_with_two_open):
    missing = str(tmp_path / 'never-written.tasks.jsonl')
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open, missing]}, expect_failed=True)
    assert missing in result['msg'] and 'missing_ok=true' in result['msg']
    assert result['paths'][0]['path'] == log_with_two_open  # what was read before is still reported

    result = run_module(task_log_reconcile, {'paths': [log_with_two_open, missing], 'missing_ok': True}, expect_failed=False)
    assert result['paths'][1] == {'path': missing, 'exists': False, 'compressed': False, 'lines': 0, 'malformed_lines': 0,
                                  'started': 0, 'completed': 0, 'ended': 0, 'other': 0, 'bytes_read': 0, 'capped': False,
                                  'duplicate_of': None}
    assert result['incomplete_count'] == 2


def test_directory_and_corrupt_gzip_fail_naming_the_path(run_module, tmp_path):
    result = run_module(task_log_reconcile, {'paths': [str(tmp_path)], 'missing_ok': True}, expect_failed=True)
    assert str(tmp_path) in result['msg'] and 'directory' in result['msg']

    bad = str(tmp_path / 'tasks.jsonl.1.gz')
    with open(bad, 'wb') as handle:
        handle.write(b'\x1f\x8b\x08\x00garbage that is not deflate data' * 4)
    result = run_module(task_log_reconcile, {'paths': [bad]}, expect_failed=True)
    assert bad in result['msg'] and 'cannot read task log' in result['msg']


def test_malformed_lines_warn_by_default(run_module, tmp_path):
    path = write_log(tmp_path, [
        rec('started', 'a', T0),
        '{"event":"completed","id":"a","ts":17145',   # cut mid-write
        'plain text from a misconfigured logger',
        rec('started', 'b'),                           # start without time
        '[1, 2]',
        rec('started', 'c', T0 + 1),
    ])
    result = run_module(task_log_reconcile, {'paths': [path]}, expect_failed=False)
    assert result['malformed_lines'] == 4 and result['paths'][0]['malformed_lines'] == 4
    assert [s['line'] for s in result['malformed_samples']] == [2, 3, 4, 5]
    assert "started record without 'ts' key" in result['malformed_samples'][2]['reason']
    assert [i['id'] for i in result['incomplete']] == ['a', 'c']
    assert len(result['warnings']) == 1
    assert '4 malformed line(s)' in result['warnings'][0] and '%s:2 (not JSON' % path in result['warnings'][0]

    result = run_module(task_log_reconcile, {'paths': [path], 'max_malformed': 4}, expect_failed=False)
    assert result['warnings'] == [] and result['malformed_lines'] == 4


def test_fail_on_malformed_fails_before_resubmitting(run_module, tmp_path, endpoint):
    path = write_log(tmp_path, [rec('started', 'a', T0), '\x00\x01 binary junk', '{"no": "event"}'])
    result = run_module(task_log_reconcile, {
        'paths': [path], 'fail_on_malformed': True, 'max_malformed': 1, 'resubmit': {'url': endpoint.url},
    }, expect_failed=True)
    assert '2 malformed line(s)' in result['msg'] and 'max_malformed=1, so nothing was resubmitted' in result['msg']
    assert path in result['msg']
    assert result['malformed_lines'] == 2 and result['incomplete_count'] == 1
    assert endpoint.received == [] and result['changed'] is False and result['resubmitted'] == []


def test_non_utf8_bytes_are_malformed_not_a_crash(run_module, tmp_path):
    path = str(tmp_path / 'tasks.jsonl')
    with open(path, 'wb') as handle:
        handle.write(rec('started', 'a', T0).encode() + b'\n\xff\xfe\xfa\n' + rec('completed', 'a', T0 + 1).encode())
    result = run_module(task_log_reconcile, {'paths': [path]}, expect_failed=False)
    assert result['malformed_samples'] == [{'path': path, 'line': 2, 'reason': 'not UTF-8'}]
    assert result['incomplete_count'] == 0


@pytest.mark.parametrize('args,fragment', [
    ({'max_listed': -1}, 'max_listed must be 0 or more'),
    ({'max_malformed': -2}, 'max_malformed must be 0 or more'),
    ({'time_key': 'id'}, 'invalid log format: id_key, event_key and time_key must be three different keys'),
    ({'completed_value': 'started'}, 'started_value and completed_value must differ'),
    ({'ended_values': ['completed']}, "ended_values must not contain 'completed'"),
    ({'id_key': ''}, 'id_key must not be empty'),
    ({'since': 'yesterday'}, 'since'),
    ({'resubmit': {'method': 'POST'}}, 'url'),
    ({'resubmit': {'url': 'http://x', 'method': 'GET'}}, 'method'),
    ({'resubmit': {'url': 'http://x', 'on_error': 'ignore'}}, 'on_error'),
])
def test_bad_options_fail(run_module, log_with_two_open, args, fragment):
    result = run_module(task_log_reconcile, dict({'paths': [log_with_two_open]}, **args), expect_failed=True)
    assert fragment in result['msg']


def test_paths_required_and_not_empty(run_module):
    assert 'paths' in run_module(task_log_reconcile, {}, expect_failed=True)['msg']
    assert 'at least one' in run_module(task_log_reconcile, {'paths': []}, expect_failed=True)['msg']


# ------------------------------------------------------------------------------------------ resubmission

def test_resubmit_batch(run_module, log_with_two_open, endpoint):
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {
        'url': endpoint.url, 'token': TOKEN, 'headers': {'X-Source-Host': 'gpu-07'}}}, expect_failed=False)
    assert result['changed'] is True and result['would_resubmit'] == 2
    assert result['resubmitted'] == [{'ids': ['b', 'a'], 'count': 2, 'status': 202, 'ok': True, 'error': None}]
    assert len(endpoint.received) == 1
    got = endpoint.received[0]
    assert got['method'] == 'POST' and got['path'] == '/v1/requeue'
    assert got['body'] == [
        {'event': 'started', 'id': 'b', 'ts': T0, 'instance': 'gpu-07', 'model': 'demo-model'},
        {'event': 'started', 'id': 'a', 'ts': T0 + 1, 'instance': 'gpu-07', 'model': 'demo-model'},
    ]
    assert got['headers']['Authorization'] == 'Bearer ' + TOKEN
    assert got['headers']['X-Source-Host'] == 'gpu-07' and got['headers']['Content-Type'] == 'application/json'


def test_resubmit_sends_every_incomplete_request_even_when_the_list_is_truncated(run_module, tmp_path, endpoint):
    path = write_log(tmp_path, [rec('started', 'r%d' % i, T0 + i) for i in range(5)])
    result = run_module(task_log_reconcile, {'paths': [path], 'max_listed': 2, 'resubmit': {'url': endpoint.url}},
                        expect_failed=False)
    assert len(result['incomplete']) == 2 and result['truncated'] is True
    assert [r['id'] for r in endpoint.received[0]['body']] == ['r0', 'r1', 'r2', 'r3', 'r4']
    assert result['resubmitted'][0]['count'] == 5


def test_resubmit_per_task_with_put(run_module, log_with_two_open, endpoint):
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {
        'url': endpoint.url, 'method': 'PUT', 'batch': False}}, expect_failed=False)
    assert result['changed'] is True
    assert result['resubmitted'] == [{'id': 'b', 'count': 1, 'status': 202, 'ok': True, 'error': None},
                                     {'id': 'a', 'count': 1, 'status': 202, 'ok': True, 'error': None}]
    assert [(r['method'], r['body']['id']) for r in endpoint.received] == [('PUT', 'b'), ('PUT', 'a')]
    assert 'Authorization' not in endpoint.received[0]['headers']


def test_check_mode_sends_nothing(run_module, log_with_two_open, endpoint):
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {'url': endpoint.url}},
                        check_mode=True, expect_failed=False)
    assert endpoint.received == []
    assert result['changed'] is True and result['would_resubmit'] == 2 and result['resubmitted'] == []
    assert result['incomplete_count'] == 2


def test_nothing_incomplete_sends_nothing(run_module, tmp_path, endpoint):
    path = write_log(tmp_path, [rec('started', 'a', T0), rec('completed', 'a', T0 + 1)])
    for check_mode in (False, True):
        result = run_module(task_log_reconcile, {'paths': [path], 'resubmit': {'url': endpoint.url}},
                            check_mode=check_mode, expect_failed=False)
        assert result['changed'] is False and result['would_resubmit'] == 0 and result['resubmitted'] == []
    assert endpoint.received == []


def test_resubmit_error_fails_naming_url_and_status(run_module, log_with_two_open):
    server = RequeueEndpoint(statuses=[503])
    try:
        result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {
            'url': server.url, 'token': TOKEN}}, expect_failed=True)
    finally:
        server.stop()
    assert server.url in result['msg'] and 'HTTP 503' in result['msg'] and TOKEN not in result['msg']
    assert result['changed'] is False
    assert result['resubmitted'][0]['ok'] is False and result['resubmitted'][0]['status'] == 503
    assert result['incomplete_count'] == 2  # the report is still there


def test_resubmit_per_task_stops_at_first_failure_or_warns_and_goes_on(run_module, tmp_path):
    path = write_log(tmp_path, [rec('started', 'r%d' % i, T0 + i) for i in range(4)])
    server = RequeueEndpoint(statuses=[200, 500, 200])
    try:
        result = run_module(task_log_reconcile, {'paths': [path], 'resubmit': {'url': server.url, 'batch': False}},
                            expect_failed=True)
        assert [(o['id'], o['status']) for o in result['resubmitted']] == [('r0', 200), ('r1', 500)]
        assert result['changed'] is True  # r0 was handed over
        assert '1 of 4 request(s), 1 accepted, 2 not sent' in result['msg'] and 'HTTP 500' in result['msg']
        assert len(server.received) == 2

        server.statuses = [200, 500, 200]
        result = run_module(task_log_reconcile, {'paths': [path], 'resubmit': {
            'url': server.url, 'batch': False, 'on_error': 'warn'}}, expect_failed=False)
        assert [o['ok'] for o in result['resubmitted']] == [True, False, True, True]
        assert len(result['warnings']) == 1 and server.url in result['warnings'][0] and 'HTTP 500' in result['warnings'][0]
        assert result['changed'] is True
    finally:
        server.stop()


def test_unreachable_endpoint(run_module, log_with_two_open):
    url = closed_port_url()
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {'url': url, 'token': TOKEN,
                                                                                        'timeout': 5}}, expect_failed=True)
    assert url in result['msg'] and 'failed' in result['msg'] and TOKEN not in result['msg']
    assert result['resubmitted'][0]['status'] is None and result['changed'] is False

    result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {'url': url, 'on_error': 'warn'}},
                        expect_failed=False)
    assert result['changed'] is False and url in result['warnings'][0]


@pytest.fixture(scope='module')
def self_signed(tmp_path_factory):
    if not shutil.which('openssl'):
        pytest.skip('openssl is needed to make a test certificate')
    directory = tmp_path_factory.mktemp('tls')
    cert, key = str(directory / 'cert.pem'), str(directory / 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_is_verified_by_default(run_module, log_with_two_open, self_signed):
    server = RequeueEndpoint(cert=self_signed)
    try:
        result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {'url': server.url}},
                            expect_failed=True)
        assert server.url in result['msg'] and 'CERTIFICATE_VERIFY_FAILED' in result['msg'].upper().replace(' ', '_')
        assert server.received == []

        result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {
            'url': server.url, 'ca_path': self_signed[0]}}, expect_failed=False)
        assert result['resubmitted'][0]['ok'] is True

        result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'resubmit': {
            'url': server.url, 'validate_certs': False}}, expect_failed=False)
        assert result['resubmitted'][0]['ok'] is True
        assert len(server.received) == 2
    finally:
        server.stop()


def test_token_is_no_log():
    spec = task_log_reconcile.argument_spec()
    assert spec['resubmit']['options']['token']['no_log'] is True
    assert spec['resubmit']['options']['validate_certs']['default'] is True


# ------------------------------------------------------------------------------------------ the reference server

def test_log_of_the_reference_server_stopped_with_requests_in_flight(run_module, tmp_path, endpoint):
    """Run tests/fleet/model_server.py, stop it while two requests run, and reconcile its own task log."""
    task_log = str(tmp_path / 'logs' / 'ref.tasks.jsonl')
    port = free_port()
    env = dict(os.environ, MODEL_SERVER_PORT=str(port), MODEL_SERVER_BIND='127.0.0.1', SERVICE_TIME='0',
               DRAIN_TIMEOUT='0.3', TASK_LOG=task_log, MAINTENANCE_FLAG=str(tmp_path / 'ref.maintenance'),
               GPU_MEMORY_MIB='0', FAKE_NVIDIA_STATE_DIR=str(tmp_path / 'fake-nvidia'), MODEL_NAME='demo-model')
    for name in ('ADMIN_TOKEN', 'MAX_CONCURRENCY', 'FAULT_IGNORE_SIGTERM', 'FAULT_ORPHAN_CHILD', 'FAULT_EXIT_CODE'):
        env.pop(name, None)
    stderr_path = str(tmp_path / 'ref.stderr')
    with open(stderr_path, 'wb') as stderr:
        proc = subprocess.Popen([sys.executable, MODEL_SERVER, '--instance', 'ref'], env=env,  # pylint: disable=consider-using-with
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)

    def post(rid, service_time, results):
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        try:
            conn.request('POST', '/v1/completions', body=json.dumps({'prompt': 'hi', 'service_time': service_time}),
                         headers={'X-Request-Id': rid, 'Content-Type': 'application/json'})
            results[rid] = conn.getresponse().status
        except OSError as exc:
            results[rid] = exc
        finally:
            conn.close()

    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, open(stderr_path).read()
                time.sleep(0.05)
        results = {}
        for rid in ('quick-1', 'quick-2'):
            post(rid, 0, results)
        assert results == {'quick-1': 200, 'quick-2': 200}
        slow = [threading.Thread(target=post, args=(rid, 30, results), daemon=True) for rid in ('slow-1', 'slow-2')]
        for thread in slow:
            thread.start()
        while sum(1 for line in open(task_log, encoding='utf-8') if '"started"' in line) < 4:
            assert time.monotonic() < deadline, 'the slow requests were never logged'
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 3, open(stderr_path).read()  # drain timeout: requests left running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    result = run_module(task_log_reconcile, {'paths': [task_log], 'resubmit': {'url': endpoint.url, 'batch': False}},
                        expect_failed=False)
    assert sorted(i['id'] for i in result['incomplete']) == ['slow-1', 'slow-2']
    assert (result['started_count'], result['completed_count'], result['incomplete_count']) == (4, 2, 2)
    assert result['malformed_lines'] == 0 and result['warnings'] == []
    first = result['incomplete'][0]
    assert first['fields'] == {'instance': 'ref', 'model': 'demo-model'}
    assert abs(first['started_ts'] - time.time()) < 60 and first['started_at'].endswith('Z')
    assert sorted(r['body']['id'] for r in endpoint.received) == ['slow-1', 'slow-2']
    assert all(r['body']['event'] == 'started' and r['body']['model'] == 'demo-model' for r in endpoint.received)
    assert result['changed'] is True


# ------------------------------------------------------------------------------------------ the bad-input sweep

def run_with_deadline(run_module, args, seconds=20, **kwargs):
    """run_module in a thread, so a read that blocks (a FIFO) fails the test instead of hanging it."""
    box = {}

    def target():
        try:
            box['result'] = run_module(task_log_reconcile, args, **kwargs)
        except BaseException as exc:  # pylint: disable=broad-except
            box['error'] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), 'task_log_reconcile did not return within %ss' % seconds
    if 'error' in box:
        raise box['error']
    return box['result']


def test_fifo_is_refused_without_blocking(run_module, tmp_path, log_with_two_open):
    fifo = str(tmp_path / 'tasks.fifo')
    os.mkfifo(fifo)
    result = run_with_deadline(run_module, {'paths': [log_with_two_open, fifo]}, expect_failed=True)
    assert result['msg'] == ('task log %s is a FIFO (named pipe), not a regular file, so it is not read (it could block or '
                             'never end); list the log files themselves in paths' % fifo)
    assert result['state'] == 'error' and result['incomplete_count'] is None


@pytest.mark.skipif(not os.path.exists('/dev/zero'), reason='needs /dev/zero')
def test_dev_zero_and_a_symlink_to_it_are_refused(run_module, tmp_path):
    link = str(tmp_path / 'tasks.jsonl')
    os.symlink('/dev/zero', link)
    for path in ('/dev/zero', link):
        result = run_with_deadline(run_module, {'paths': [path]}, expect_failed=True)
        assert result['msg'].startswith('task log %s is a character device, not a regular file' % path)


def test_socket_is_refused(run_module, tmp_path):
    path = str(tmp_path / 'tasks.sock')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        result = run_with_deadline(run_module, {'paths': [path]}, expect_failed=True)
        assert result['msg'].startswith('task log %s is a socket, not a regular file' % path)
    finally:
        sock.close()


def test_file_over_max_file_bytes_is_capped_and_fails(run_module, tmp_path):
    path = write_log(tmp_path, [rec('started', 'r%03d' % i, T0 + i) for i in range(200)])
    size = os.path.getsize(path)
    result = run_module(task_log_reconcile, {'paths': [path], 'max_file_bytes': 1000}, expect_failed=True)
    assert result['state'] == 'capped' and result['paths'][0]['capped'] is True
    assert result['paths'][0]['bytes_read'] <= 1000 < size
    assert result['msg'] == ('task log(s) %s are longer than max_file_bytes=1000: only the first 1000 bytes of each were '
                             'read, so the counts are incomplete and nothing was resubmitted. What to do: raise '
                             'max_file_bytes, or rotate the log and list the rotated files' % path)
    result = run_module(task_log_reconcile, {'paths': [path], 'max_file_bytes': size}, expect_failed=False)
    assert result['state'] == 'read' and result['incomplete_count'] == 200 and not result['paths'][0]['capped']


def test_gzip_that_inflates_past_the_cap_is_capped(run_module, tmp_path):
    path = str(tmp_path / 'tasks.jsonl.1.gz')
    with gzip.open(path, 'wb') as handle:
        handle.write(b' ' * (4 * 1024 * 1024) + b'\n')  # 4 MiB of blanks, a few KiB compressed
    assert os.path.getsize(path) < 64 * 1024
    result = run_module(task_log_reconcile, {'paths': [path], 'max_file_bytes': 1024 * 1024}, expect_failed=True)
    assert result['state'] == 'capped' and result['paths'][0]['bytes_read'] == 1024 * 1024


def test_line_over_max_line_bytes_is_skipped_and_the_rest_read(run_module, tmp_path):
    path = write_log(tmp_path, [rec('started', 'a', T0), 'x' * 5000, rec('started', 'b', T0 + 1), rec('completed', 'a')])
    result = run_module(task_log_reconcile, {'paths': [path], 'max_line_bytes': 1000}, expect_failed=False)
    assert result['malformed_samples'] == [{'path': path, 'line': 2, 'reason': 'longer than max_line_bytes=1000 bytes; skipped'}]
    assert [i['id'] for i in result['incomplete']] == ['b'] and result['paths'][0]['lines'] == 4
    assert result['state'] == 'read'


def test_deeply_nested_line_is_malformed_not_a_traceback(run_module, tmp_path):
    path = write_log(tmp_path, [rec('started', 'a', T0), '[' * 100000 + ']' * 100000, '{"event": ' * 100000])
    result = run_module(task_log_reconcile, {'paths': [path], 'max_malformed': 2}, expect_failed=False)
    assert [s['reason'] for s in result['malformed_samples']][0] == 'JSON nested too deeply to read'
    assert result['malformed_lines'] == 2 and result['incomplete_count'] == 1


@pytest.mark.parametrize('since', ['nan', 'inf', '-inf', float('nan')])
def test_non_finite_since_is_refused(run_module, log_with_two_open, since):
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open], 'since': since}, expect_failed=True)
    assert result['msg'].startswith('since must be a finite number of epoch seconds, got ')
    assert result['incomplete_count'] is None and result['state'] == 'error'


def test_nul_in_a_path_is_refused(run_module, log_with_two_open):
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open, '/var/log/x\x00.jsonl']}, expect_failed=True)
    assert result['msg'] == "paths[1] ('/var/log/x\\x00.jsonl') contains a NUL byte, which no file name can; fix paths"


def test_one_file_under_several_names_is_read_once(run_module, tmp_path, log_with_two_open):
    folder = os.path.dirname(log_with_two_open)
    name = os.path.basename(log_with_two_open)
    doubled = folder + '//' + name
    link = str(tmp_path / 'current.jsonl')
    os.symlink(log_with_two_open, link)
    hard = str(tmp_path / 'hard.jsonl')
    os.link(log_with_two_open, hard)
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open, doubled, link, hard]}, expect_failed=False)
    assert result['incomplete_count'] == 2 and result['started_count'] == 3
    assert [p['path'] for p in result['paths']] == [log_with_two_open, link, hard]
    assert [p['duplicate_of'] for p in result['paths']] == [None, log_with_two_open, log_with_two_open]
    assert [p['lines'] for p in result['paths']] == [4, 0, 0]
    assert_balanced(result)


def test_output_is_a_bounded_sample_of_truncated_records(run_module, tmp_path, endpoint):
    big = 'p' * 50000
    path = write_log(tmp_path, [rec('started', 'r%04d' % i, T0 + i, prompt=big, model='m') for i in range(300)])
    result = run_module(task_log_reconcile, {'paths': [path]}, expect_failed=False)
    assert result['incomplete_count'] == 300 and len(result['incomplete']) == 100 and result['truncated'] is True
    assert all(r['truncated'] for r in result['incomplete'])
    assert all(len(json.dumps(r['fields'])) < 2048 + 100 for r in result['incomplete'])
    assert len(json.dumps(result)) < 400 * 1024  # 300 records of 50 KB would be 15 MB
    assert result['incomplete'][0]['fields']['prompt'] == big[:2048 - len('prompt')]
    # What is resubmitted is the whole start record.
    result = run_module(task_log_reconcile, {'paths': [path], 'max_listed': 1, 'resubmit': {'url': endpoint.url}},
                        expect_failed=False)
    assert len(endpoint.received[0]['body']) == 300 and endpoint.received[0]['body'][0]['prompt'] == big


def test_missing_task_log_is_no_task_log_not_zero_incomplete(run_module, tmp_path):
    missing = str(tmp_path / 'never-written.tasks.jsonl')
    result = run_module(task_log_reconcile, {'paths': [missing, missing + '.1'], 'missing_ok': True}, expect_failed=False)
    assert result['state'] == 'no_task_log' and result['incomplete_count'] is None
    assert result['incomplete'] == [] and [p['exists'] for p in result['paths']] == [False, False]
    assert len(result['warnings']) == 1 and result['warnings'][0].startswith('no task log found: none of %s' % missing)


@pytest.mark.parametrize('name', ['max_record_chars', 'max_file_bytes', 'max_line_bytes'])
def test_bounds_must_be_positive(run_module, log_with_two_open, name):
    result = run_module(task_log_reconcile, {'paths': [log_with_two_open], name: 0}, expect_failed=True)
    assert result['msg'] == '%s must be 1 or more, got 0' % name
