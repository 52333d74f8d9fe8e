# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML report as headless Chromium renders it: what is visible, measured in the browser, and a screenshot.
Skipped only where chromium is not installed (make bootstrap installs Debian's chromium package)."""

from __future__ import annotations

import pytest

from ansible_collections.modelops.shutdown.plugins.plugin_utils import _report_html
from ansible_collections.modelops.shutdown.tests.unit.plugins.plugin_utils import report_browser, report_fleet

pytestmark = pytest.mark.skipif(report_browser.chromium() is None,
                                reason='chromium is not installed (make bootstrap, or apt-get install chromium)')


@pytest.fixture(scope='module')
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp('report') / 'shutdown-test.html'
    path.write_text(_report_html.render(report_fleet.report(), load=report_fleet.load_records()), encoding='utf-8')
    return str(path)


@pytest.fixture(scope='module')
def rendered(page):
    return report_browser.measure(page)


def test_one_visible_row_per_host_with_visible_bars(rendered):
    report = report_fleet.report()
    assert [r['host'] for r in rendered['rows']] == [h['host'] for h in report['hosts']]
    assert all(r['visible'] and r['label'] == r['host'] and r['height'] > 0 and r['width'] > 0 for r in rendered['rows'])
    # Rows are stacked, not drawn over each other.
    tops = [r['y'] for r in rendered['rows']]
    assert tops == sorted(tops) and len(set(tops)) == len(tops)
    bars = dict((r['host'], r['bars']) for r in rendered['rows'])
    assert [b['phase'] for b in bars['gpu-1']] == ['drain', 'stop', 'policy', 'verify']
    assert all(b['visible'] and b['width'] > 0 and b['height'] > 0 for host in bars.values() for b in host)
    assert [b['phase'] for b in bars['gpu-3']] == ['drain'] and bars['gpu-4'] == []


def test_every_failure_is_marked_with_its_explanation(rendered):
    failed = [h for h in report_fleet.report()['hosts'] if h['status'] == 'failed']
    assert [h['host'] for h in failed] == ['gpu-3', 'gpu-4']
    marks = dict((m['host'], m) for m in rendered['failures'])
    table = dict((r['host'], r) for r in rendered['failure_rows'])
    for host in failed:
        assert marks[host['host']]['visible'] and table[host['host']]['visible']
        assert host['msg'] in table[host['host']]['text'] and host['failed_step'] in marks[host['host']]['text']
    # The mark is on its host's row.
    rows = dict((r['host'], r) for r in rendered['rows'])
    for name, mark in marks.items():
        assert rows[name]['y'] <= mark['y'] and mark['y'] + mark['height'] <= rows[name]['y'] + rows[name]['height']


def test_batch_lines_and_load_balancer_markers_render(rendered):
    assert [line['batch'] for line in rendered['batch_lines']] == ['1', '2']
    assert all(line['height'] > 0 for line in rendered['batch_lines'])
    assert rendered['batch_lines'][0]['x'] < rendered['batch_lines'][1]['x']
    assert [label['text'] for label in rendered['batch_labels']] == ['batch 1', 'batch 2']
    assert len(rendered['lb_markers']) == 8 and all(m['visible'] for m in rendered['lb_markers'])
    assert all('stopped sending to' in m['title'] for m in rendered['lb_markers'])


def test_load_series_render_on_the_same_axis(rendered):
    series = dict((s['series'], s) for s in rendered['load_series'])
    assert sorted(series) == ['errors', 'sent'] and all(s['visible'] for s in series.values())
    assert series['errors']['total'] == '4'
    # The same axis: both panels span the same x range.
    timeline = rendered['timeline'][0]
    assert series['sent']['x'] >= timeline['x'] and series['sent']['x'] + series['sent']['width'] <= (
        timeline['x'] + timeline['width'])


def test_screenshot_is_a_real_picture(page, tmp_path):
    png = report_browser.screenshot(page, str(tmp_path / 'shot.png'), window=(1400, 900))
    summary = report_browser.png_summary(png)
    assert (summary['width'], summary['height']) == (1400, 900)
    # Not one flat colour: the bars, text and lines are there.
    assert summary['colours'] > 20
