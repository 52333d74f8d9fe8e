"""The run's HTML report (written next to its JSON on the controller): one timeline row per host, and every host the
JSON report lists as failed marked on its row and explained in the failures table - in its markup, and as headless
Chromium renders it."""

from __future__ import annotations

import html
import os
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tests', 'unit', 'plugins', 'plugin_utils'))
import faultcheck  # noqa: E402  pylint: disable=wrong-import-position
import report_browser  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://fs-lb']
RESULTS = pathlib.Path(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'))
SVG = '{http://www.w3.org/2000/svg}'


def _page_path():
    pages = sorted((RESULTS / 'reports').glob('shutdown-*.html'))
    assert pages, 'no HTML report was written'
    latest = sorted((RESULTS / 'reports').glob('shutdown-*.json'))[-1]
    assert pages[-1].stem == latest.stem, 'the HTML report of the latest run is missing'
    return pages[-1]


def _page():
    return _page_path().read_text(encoding='utf-8')


def _timeline(page):
    return ET.fromstring(re.search(r'<svg id="timeline".*?</svg>', page, re.S).group(0))


def _groups(root, cls):
    return [g for g in root.iter(SVG + 'g') if cls in (g.get('class') or '').split()]


def test_one_timeline_row_per_host():
    report = faultcheck.report()
    rows = _groups(_timeline(_page()), 'host-row')
    assert [(r.get('data-host'), r.get('data-status')) for r in rows] == [
        (h['host'], h['status']) for h in report['hosts']]
    assert sorted(r.get('data-host') for r in rows) == ['fs-m1', 'fs-m2', 'fs-m3']


def test_every_failed_host_is_marked_and_explained():
    report = faultcheck.report()
    failed = [h for h in report['hosts'] if h['status'] == 'failed']
    assert [h['host'] for h in failed] == ['fs-m1'], 'the stubborn host is the failure of this scenario'
    page = _page()
    marks = dict((m.get('data-host'), m) for m in _groups(_timeline(page), 'failure-mark'))
    table = dict(re.findall(r'<tr class="failure-row" data-host="([^"]*)">(.*?)</tr>', page, re.S))
    for host in failed:
        mark = marks[host['host']]
        assert mark.get('data-step') == host['failed_step'] == 'stop'
        # The tooltip is the whole explanation, the table row has the message.
        assert mark.find(SVG + 'title').text == '%s: %s' % (host['failed_step'], host['msg'])
        assert html.escape(host['msg'], quote=True) in table[host['host']]
        # Its row shows how far it got: the drain wait and the stop that failed.
        row = [r for r in _groups(_timeline(page), 'host-row') if r.get('data-host') == host['host']][0]
        assert [b.get('data-phase') for b in row.iter(SVG + 'rect') if 'bar' in (b.get('class') or '').split()] == [
            'drain', 'stop']
    assert sorted(marks) == sorted(h['host'] for h in report['hosts'] if h['status'] in ('failed', 'refused'))


def test_chromium_renders_a_visible_mark_on_the_failed_host_row_and_its_explanation():
    if report_browser.chromium() is None:
        pytest.skip('chromium is not installed (make bootstrap)')
    report = faultcheck.report()
    measured = report_browser.measure(str(_page_path()))
    rows = dict((r['host'], r) for r in measured['rows'])
    assert sorted(rows) == sorted(h['host'] for h in report['hosts'])
    assert all(row['visible'] and row['height'] > 0 for row in rows.values())
    [mark] = [m for m in measured['failures'] if m['host'] == 'fs-m1']
    assert mark['visible'] and mark['width'] > 0 and mark['height'] > 0
    # The mark sits on its host's row.
    row = rows['fs-m1']
    assert row['y'] <= mark['y'] + mark['height'] / 2 <= row['y'] + row['height']
    assert 'stop' in mark['text']
    [explained] = [r for r in measured['failure_rows'] if r['host'] == 'fs-m1']
    assert explained['visible'] and faultcheck.host_records()['fs-m1']['msg'] in explained['text']
