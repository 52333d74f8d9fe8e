"""The disruption budget refuses a batch that would leave fewer than min_available servers UP."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import faultcheck  # noqa: E402  pylint: disable=wrong-import-position
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://fb-lb']
MODEL_HOSTS = ['fb-m1', 'fb-m2', 'fb-m3']


def test_batch_refused_naming_pool_and_numbers():
    assert faultcheck.run_rc() != 0
    log = faultcheck.run_log()
    assert 'Batch refused by the disruption budget on fb-lb, nothing was touched' in log
    assert 'pool fb-lb/models' in log
    assert 'would leave 1 UP, below min_available=2' in log


def test_report_says_refused():
    report = faultcheck.report()
    assert report['halted'] is True
    assert 'disruption budget' in report['halt_reason']
    records = faultcheck.host_records()
    for name in ('fb-m1', 'fb-m2'):
        assert records[name]['status'] == 'refused'
        assert records[name]['failed_step'] == 'budget'
        assert records[name]['drained'] in (None, False)


def test_nothing_was_touched(host):
    assert fleetcheck.haproxy_servers(host) == {name: 'UP' for name in MODEL_HOSTS}
    for name in MODEL_HOSTS:
        assert fleetcheck.other_host(host, name).service('model-server@llama.service').is_running


def _preflight_failed(name):
    """The run failed in pre-flight: no batch started, so nothing was marked and no report was written."""
    assert faultcheck.run_rc(name) != 0
    log = faultcheck.run_log(name)
    assert 'PLAY [Shut down model hosts, batch by batch]' not in log, log[-3000:]
    return log


def test_preflight_names_the_missing_lb_socket():
    log = _preflight_failed('preflight-socket')
    assert 'fb-lb' in log and '/run/haproxy/missing.sock' in log
    assert 'the socket does not exist' in log


def test_preflight_names_the_missing_unit():
    log = _preflight_failed('preflight-unit')
    assert 'model-servr@llama.service is not loaded (LoadState=not-found)' in log


def test_preflight_names_the_silent_in_flight_source():
    log = _preflight_failed('preflight-source')
    assert 'http://127.0.0.1:9/metrics' in log
    assert 'Connection refused' in log or 'connection refused' in log
