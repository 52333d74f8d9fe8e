# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTML report's renderer, without a browser: its SVG parsed with xml.etree."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.modelops.shutdown.plugins.filter.rollout_report import rollout_report
from ansible_collections.modelops.shutdown.plugins.plugin_utils import _report_html
from ansible_collections.modelops.shutdown.tests.unit.plugins.filter.test_rollout_report import at, done, mark, server
from ansible_collections.modelops.shutdown.tests.unit.plugins.plugin_utils import report_fleet

SVG = '{http://www.w3.org/2000/svg}'


def svgs(page):
    """Every inline <svg> of the page, parsed."""
    roots = [ET.fromstring(text) for text in re.findall(r'<svg .*?</svg>', page, re.S)]
    return dict((root.get('id'), root) for root in roots)


def by_class(root, tag, cls):
    return [el for el in root.iter(SVG + tag) if cls in (el.get('class') or '').split()]


def rows(root):
    return by_class(root, 'g', 'host-row')


def test_one_row_per_host_in_report_order_with_its_bars():
    report = report_fleet.report()
    timeline = svgs(_report_html.render(report))['timeline']
    found = rows(timeline)
    assert [r.get('data-host') for r in found] == [h['host'] for h in report['hosts']] == ['gpu-1', 'gpu-2', 'gpu-3',
                                                                                           'gpu-4']
    bars = dict((r.get('data-host'), [b.get('data-phase') for b in by_class(r, 'rect', 'bar')]) for r in found)
    assert bars == {'gpu-1': ['drain', 'stop', 'policy', 'verify'], 'gpu-2': ['drain', 'stop', 'policy', 'verify'],
                    'gpu-3': ['drain'], 'gpu-4': []}
    # The drain bar starts where lb2's mark was (the later one) and is drawn to scale with the stop bar.
    gpu1 = dict((b.get('data-phase'), b) for b in by_class(found[0], 'rect', 'bar'))
    assert float(gpu1['drain'].get('width')) / float(gpu1['stop'].get('width')) == pytest.approx((5.3 - 0.5) / 2.0, rel=0.01)
    assert all(float(b.get('width')) > 0 for r in found for b in by_class(r, 'rect', 'bar'))


def test_failures_are_marked_and_explained_in_the_table():
    page = _report_html.render(report_fleet.report())
    marks = by_class(svgs(page)['timeline'], 'g', 'failure-mark')
    assert [(m.get('data-host'), m.get('data-step')) for m in marks] == [('gpu-3', 'drain'), ('gpu-4', 'unreachable')]
    # The tooltip holds the whole explanation; the table has the message, escaped.
    assert marks[1].find(SVG + 'title').text == ('unreachable: %s; put back into service' % report_fleet.UNREACHABLE)
    assert marks[0].find(SVG + 'title').text.startswith('drain: 3 request(s) still in flight')
    assert page.count('<tr class="failure-row"') == 2
    assert 're-run to retry &lt;gpu-3&gt; &amp; co.' in page and '<gpu-3>' not in page


def test_batch_lines_and_a_marker_per_load_balancer():
    report = report_fleet.report()
    timeline = svgs(_report_html.render(report))['timeline']
    lines = by_class(timeline, 'line', 'batch-line')
    assert [line.get('data-batch') for line in lines] == ['1', '2']
    assert [t.text for t in by_class(timeline, 'text', 'batch-label')] == ['batch 1', 'batch 2']
    markers = by_class(timeline, 'g', 'lb-marker')
    assert sorted((m.get('data-host'), m.get('data-lb')) for m in markers) == [
        ('gpu-1', 'lb1'), ('gpu-1', 'lb2'), ('gpu-2', 'lb1'), ('gpu-2', 'lb2'),
        ('gpu-3', 'lb1'), ('gpu-3', 'lb2'), ('gpu-4', 'lb1'), ('gpu-4', 'lb2')]
    assert markers[1].find(SVG + 'title').text == 'lb2 stopped sending to gpu-1 at +0.5 s (ready to draining)'
    # Batch 2 starts 20 s after batch 1, on the same axis as the marks.
    x1, x2 = (float(line.get('x1')) for line in lines)
    lb1_gpu3 = [m for m in markers if (m.get('data-host'), m.get('data-lb')) == ('gpu-3', 'lb1')][0]
    assert x1 < float(lb1_gpu3.find(SVG + 'line').get('x1')) and x2 < float(lb1_gpu3.find(SVG + 'line').get('x1'))


def test_load_panel_counts_requests_and_errors_per_second():
    page = _report_html.render(report_fleet.report(), load=report_fleet.load_records())
    panel = svgs(page)['load']
    series = dict((s.get('data-series'), s) for s in by_class(panel, 'polyline', 'load-series'))
    assert sorted(series) == ['errors', 'sent']
    assert series['sent'].get('data-total') == '160' and series['sent'].get('data-peak') == '4'
    errors = sum(1 for r in report_fleet.load_records() if r['outcome'] != 'ok')
    assert series['errors'].get('data-total') == str(errors) and errors == 4
    buckets = _report_html.load_buckets(report_fleet.load_records(), at(0))
    assert buckets[0] == (-5, 4, 0) and buckets[-1] == (34, 4, 0)
    assert [(second, failed) for second, dummy, failed in buckets if failed] == [(26, 2), (27, 2)]


def test_without_load_there_is_no_load_panel():
    page = _report_html.render(report_fleet.report())
    assert 'load' not in svgs(page) and 'load-series' not in page
    empty = _report_html.render(report_fleet.report(), load=[])
    assert 'id="no-load"' in empty and 'load-series' not in empty


def test_the_page_is_self_contained():
    page = _report_html.render(report_fleet.report(), load=report_fleet.load_records())
    assert '<script' not in page and not re.search(r'(src|href)=', page) and 'url(' not in page
    assert page.startswith('<!DOCTYPE html>') and page.rstrip().endswith('</html>')


def test_host_with_no_record_is_an_empty_row_with_its_status():
    batch = [mark('lb1', 0.0, 0.2, [server('gpu-1', 1), server('gpu-2', 0)])]
    report = rollout_report({'gpu-1': {'marks': batch, 'record': done('gpu-1', 0.8, 1.0, 1.0)},
                             'gpu-2': {'marks': batch, 'record': None}, 'gpu-9': {}})
    timeline = svgs(_report_html.render(report))['timeline']
    found = dict((r.get('data-host'), r) for r in rows(timeline))
    assert sorted(found) == ['gpu-1', 'gpu-2', 'gpu-9']
    for name in ('gpu-2', 'gpu-9'):
        assert by_class(found[name], 'rect', 'bar') == [] and found[name].get('data-status') == 'not_reached'
        assert [t.text for t in by_class(found[name], 'text', 'empty-note')] == ['not_reached']
    assert by_class(timeline, 'g', 'failure-mark') == []
    # gpu-1's call has no phases (a record from before they were measured): no bars, but its row is there.
    assert by_class(found['gpu-1'], 'rect', 'bar') == []


def test_missing_phases_and_missing_ends_are_drawn_as_far_as_known():
    report = report_fleet.report()
    gpu1 = report['hosts'][0]
    gpu1['phases']['policy'] = None
    gpu1['phases']['verify'] = {'start': gpu1['phases']['verify']['start'], 'end': None}
    timeline = svgs(_report_html.render(report))['timeline']
    bars = by_class(rows(timeline)[0], 'rect', 'bar')
    assert [b.get('data-phase') for b in bars] == ['drain', 'stop', 'verify']
    assert float(bars[-1].get('width')) == 2.0   # a moment, still visible


def test_every_text_is_escaped():
    report = copy.deepcopy(report_fleet.report())
    report['run_id'] = '<b>run</b>'
    report['halt_reason'] = '"quoted" & <tag>'
    report['hosts'][0]['host'] = 'gpu-"1"<x>'
    report['hosts'][0]['load_balancers'][0]['lb'] = "lb'1&"
    page = _report_html.render(report)
    assert '<b>run</b>' not in page and '&lt;b&gt;run&lt;/b&gt;' in page
    assert '&quot;quoted&quot; &amp; &lt;tag&gt;' in page
    timeline = svgs(page)['timeline']   # still well-formed XML
    assert rows(timeline)[0].get('data-host') == 'gpu-"1"<x>'
    assert by_class(timeline, 'g', 'lb-marker')[0].get('data-lb') == "lb'1&"


def test_an_empty_report_renders():
    page = _report_html.render(rollout_report({}))
    timeline = svgs(page)['timeline']
    assert rows(timeline) == [] and 'no host' in page and 'id="no-failures"' in page
    assert _report_html.run_status(rollout_report({})) == 'ok'


def test_load_records_skip_lines_that_are_not_records(tmp_path):
    path = tmp_path / 'records.jsonl'
    path.write_text('{"id": "a", "start": 1.0, "outcome": "ok"}\n\nnot json\n[1, 2]\n{"id": "b", "start": 2.5, '
                    '"outcome": "cut"}\n')
    records = _report_html.load_records(str(path))
    assert [r['id'] for r in records] == ['a', 'b']
    assert _report_html.load_buckets(records + [{'start': None}, {'start': 'x'}], 0.0) == [(1, 1, 0), (2, 1, 1)]
