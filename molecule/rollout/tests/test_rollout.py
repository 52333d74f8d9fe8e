"""The rollout retired 3 of 4 hosts in batches [1, 2] under load: nothing lost, the 4th host still serves."""

from __future__ import annotations

import json
import os
import pathlib
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://ro-lb']
RESULTS = pathlib.Path(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'))
RETIRED = ['ro-m1', 'ro-m2', 'ro-m3']


def _reports():
    reports = [json.loads(path.read_text()) for path in sorted((RESULTS / 'reports').glob('shutdown-*.json'))]
    assert reports, 'no report was written'
    return reports


def test_load_during_rollout_lost_nothing():
    summary = json.loads((RESULTS / 'load' / 'summary.json').read_text())
    assert summary['sent'] > 50
    assert summary['failed'] == 0, summary
    assert summary['cut'] == 0, summary


def test_first_report_lists_every_host_in_its_batch():
    report = _reports()[0]
    assert report['mode'] == 'run'
    assert report['halted'] is False
    hosts = {record['host']: record for record in report['hosts']}
    assert sorted(hosts) == RETIRED
    assert [batch['hosts'] for batch in report['batches']] == [['ro-m1'], ['ro-m2', 'ro-m3']]
    for name in RETIRED:
        assert hosts[name]['status'] == 'done', hosts[name]
        assert hosts[name]['drained'] is True
        assert [(u['unit'], u['classification']) for u in hosts[name]['units']] == [('model-server@llama.service', 'clean')]
        assert hosts[name]['gpu_released'] is True
        assert hosts[name]['incomplete_count'] == 0
        # The drain is counted from the mark: the request a host had in flight then took ~3 s.
        assert hosts[name]['drain_seconds'] > 0 and hosts[name]['floor_seconds'] >= hosts[name]['drain_seconds']
    for batch in report['batches']:
        assert batch['duration_seconds'] >= batch['floor_seconds'] > 0


def test_markdown_report_written():
    markdown = sorted((RESULTS / 'reports').glob('shutdown-*.md'))
    assert markdown
    text = markdown[0].read_text()
    for name in RETIRED:
        assert name in text


def test_retired_hosts_are_down_and_out_of_rotation(host):
    servers = fleetcheck.haproxy_servers(host)
    for name in RETIRED:
        assert servers[name] in ('DOWN', 'DRAIN', 'MAINT'), servers
        retired = fleetcheck.other_host(host, name)
        assert not retired.service('model-server@llama.service').is_running
        gpu = retired.check_output('nvidia-smi --query-compute-apps=pid --format=csv,noheader')
        assert gpu.strip() == ''


def test_fourth_host_still_serves(host):
    assert fleetcheck.haproxy_servers(host)['ro-m4'] == 'UP'
    spare = fleetcheck.other_host(host, 'ro-m4')
    assert spare.service('model-server@llama.service').is_running
    summary = fleetcheck.run_load(seconds=4, rate=5)
    assert summary['failed'] == 0
    assert summary['ok'] == summary['sent']


def test_check_mode_run_changed_nothing(host):
    log = (RESULTS / 'check-run.log').read_text()
    recap = re.search(r'ro-m4\s+:\s+ok=\d+\s+changed=(\d+)', log)
    assert recap, log[-2000:]
    check_reports = [report for report in _reports() if report['mode'] == 'check']
    assert check_reports, 'the check-mode run wrote no report'
    record = {r['host']: r for r in check_reports[-1]['hosts']}['ro-m4']
    assert record['status'] == 'would_shut_down'
    assert fleetcheck.haproxy_servers(host)['ro-m4'] == 'UP'
    assert fleetcheck.other_host(host, 'ro-m4').service('model-server@llama.service').is_running
