# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools/report_html.py renders a run's HTML page again from its JSON report, with load records added."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from ansible_collections.modelops.shutdown.tests.unit.plugins.plugin_utils import report_fleet

REPO = pathlib.Path(__file__).resolve().parents[3]
TOOL = REPO / 'tools' / 'report_html.py'


def run(*args):
    env = dict(os.environ)
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)   # by path from this checkout
    return subprocess.run([sys.executable, str(TOOL)] + [str(a) for a in args], capture_output=True, text=True,
                          env=env, check=False)


def test_renders_next_to_the_json_with_the_load(tmp_path):
    report = tmp_path / 'shutdown-x.json'
    report.write_text(json.dumps(report_fleet.report()))
    records = tmp_path / 'records.jsonl'
    records.write_text(''.join(json.dumps(r) + '\n' for r in report_fleet.load_records()))
    done = run(report, '--load', records)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / 'shutdown-x.html').read_text()
    assert done.stdout.strip() == str(tmp_path / 'shutdown-x.html')
    assert page.count('class="host-row"') == 4 and 'data-series="errors" data-total="4"' in page


def test_missing_load_is_a_warning_and_output_goes_where_asked(tmp_path):
    report = tmp_path / 'r.json'
    report.write_text(json.dumps(report_fleet.report()))
    done = run(report, '--load', tmp_path / 'none.jsonl', '-o', tmp_path / 'page.html')
    assert done.returncode == 0 and 'warning' in done.stderr and 'none.jsonl' in done.stderr
    assert 'load-series' not in (tmp_path / 'page.html').read_text()


def test_unreadable_report_says_so(tmp_path):
    (tmp_path / 'bad.json').write_text('[1]')
    done = run(tmp_path / 'bad.json')
    assert done.returncode == 2 and 'is not a shutdown report' in done.stderr
    done = run(tmp_path / 'missing.json')
    assert done.returncode == 2 and 'cannot read the report' in done.stderr
