"""The rollout's HTML report as headless Chromium renders it: one visible row per host with visible bars, the
batch lines and a marker for each load balancer's mark."""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tests', 'unit', 'plugins', 'plugin_utils'))
import report_browser  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://ro-lb']
RESULTS = pathlib.Path(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'))
RETIRED = ['ro-m1', 'ro-m2', 'ro-m3']


def _first_run():
    """The first (real) run's JSON report and its HTML page."""
    for path in sorted((RESULTS / 'reports').glob('shutdown-*.json')):
        report = json.loads(path.read_text())
        if report['mode'] == 'run':
            page = path.with_suffix('.html')
            assert page.exists(), 'no HTML report next to %s' % path
            return report, str(page)
    raise AssertionError('no report of a real run')


@pytest.fixture(scope='module')
def rendered():
    if report_browser.chromium() is None:
        pytest.skip('chromium is not installed (make bootstrap)')
    report, page = _first_run()
    return report, report_browser.measure(page)


def test_one_visible_row_per_host_with_visible_bars(rendered):
    report, measured = rendered
    rows = dict((r['host'], r) for r in measured['rows'])
    assert sorted(rows) == sorted(h['host'] for h in report['hosts']) and len(measured['rows']) == len(report['hosts'])
    for name in RETIRED:
        row = rows[name]
        assert row['visible'] and row['width'] > 0 and row['label'] == name
        assert [b['phase'] for b in row['bars']] == ['drain', 'stop', 'policy', 'verify']
        assert all(b['visible'] and b['width'] > 0 and b['height'] > 0 for b in row['bars'])
    assert measured['failures'] == []


def test_batches_and_load_balancer_marks_render(rendered):
    report, measured = rendered
    assert [line['batch'] for line in measured['batch_lines']] == [str(b['number']) for b in report['batches']]
    assert sorted(m['host'] for m in measured['lb_markers']) == RETIRED
    assert all(m['visible'] and m['lb'] == 'ro-lb' for m in measured['lb_markers'])
