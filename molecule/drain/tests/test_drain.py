"""Drain under load: nothing failed or cut, model_drain returned promptly, check mode and restore behave."""

from __future__ import annotations

import json
import os
import pathlib
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://drn-lb']
RESULTS = pathlib.Path(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'))


def _json(name):
    return json.loads((RESULTS / name).read_text())


def _task_log(host, name):
    return fleetcheck.task_log(fleetcheck.other_host(host, name))


def test_load_during_drain_lost_nothing():
    summary = _json('load/summary.json')
    assert summary['sent'] > 20
    assert summary['failed'] == 0, summary
    assert summary['cut'] == 0, summary
    assert summary['ok'] == summary['sent']


def test_drain_waited_for_requests_in_flight():
    drain = _json('drain-result.json')
    record = drain['result']['drain']
    assert record['drained'] is True
    # converge sent a request the server holds until a scrape counted it: the first read must see it.
    assert record['in_flight_initial'] >= 1, 'the host had no request in flight when the drain began'
    assert record['in_flight_final'] == 0
    # The wait's clock started at the mark, not when the wait's task began.
    assert drain['wait']['started_at'] == record['marked_at']
    assert record['drained_at'] >= record['marked_at']
    assert [lb['state'] for lb in record['load_balancers']] == ['draining']


def test_model_drain_returned_promptly_after_last_request(host):
    drain = _json('drain-result.json')
    wait = drain['wait']
    completed = [entry['ts'] for entry in _task_log(host, 'drn-m1') if entry['event'] == 'completed']
    last_completed = max(ts for ts in completed if ts <= wait['finished_at'])
    lag = wait['finished_at'] - last_completed
    assert 0 <= lag <= 0.5 + 0.5, 'model_drain returned %.3f s after the last request completed' % lag


def test_check_mode_drain_changed_nothing(host):
    check = _json('check-result.json')
    assert check['marked'] == [True], 'check mode should report the change it would make'
    assert fleetcheck.haproxy_servers(host)['drn-m2'] == 'UP'


def test_restored_host_serves_again(host):
    assert fleetcheck.haproxy_servers(host)['drn-m1'] == 'UP'
    restored = _json('restore-result.json')['restore']
    before = len([e for e in _task_log(host, 'drn-m1') if e['event'] == 'started'])
    summary = fleetcheck.run_load(seconds=6, rate=5)
    assert summary['failed'] == 0
    after = len([e for e in _task_log(host, 'drn-m1') if e['event'] == 'started'])
    assert after > before, 'the restored host took no new request (restored at %s)' % restored['finished_at']
