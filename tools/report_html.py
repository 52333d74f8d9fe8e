#!/usr/bin/env python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render a shutdown run's HTML report again from its JSON report, optionally with a load generator's records.

    python tools/report_html.py REPORT.json [--load records.jsonl] [-o out.html]

Without -o the page is written next to the JSON (REPORT.html). The renderer is the collection's own
(plugins/plugin_utils/_report_html.py), imported from ANSIBLE_COLLECTIONS_PATH, else from this checkout.
Exit status: 0 written; 2 bad arguments or an unreadable report.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RENDERER = os.path.join('plugins', 'plugin_utils', '_report_html.py')


def renderer():
    """The collection's _report_html module: from ANSIBLE_COLLECTIONS_PATH when the collection is there, else by
    path from this checkout (it needs only the standard library)."""
    for root in [p for p in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if p]:
        candidate = os.path.join(root, 'ansible_collections', 'modelops', 'shutdown', RENDERER)
        if os.path.isfile(candidate):
            break
    else:
        candidate = os.path.join(HERE, '..', RENDERER)
    spec = importlib.util.spec_from_file_location('modelops_report_html', candidate)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description="Render a shutdown run's HTML report from its JSON report.")
    parser.add_argument('report', help='the JSON report (shutdown-<run>.json)')
    parser.add_argument('--load', help="a load generator's per-request records (loadgen.py --records)")
    parser.add_argument('-o', '--output', help='where to write the page [REPORT with .html]')
    args = parser.parse_args(argv)
    module = renderer()
    try:
        with open(args.report, encoding='utf-8') as handle:
            report = json.load(handle)
    except (OSError, ValueError) as exc:
        sys.stderr.write('report_html: cannot read the report %s: %s\n' % (args.report, exc))
        return 2
    if not isinstance(report, dict):
        sys.stderr.write('report_html: %s is not a shutdown report (a JSON object)\n' % args.report)
        return 2
    load = None
    if args.load:
        try:
            load = module.load_records(args.load)
        except (OSError, UnicodeDecodeError) as exc:
            sys.stderr.write('report_html: warning: cannot read the load records %s (%s); the page has no load '
                             'panel\n' % (args.load, exc))
    output = args.output or os.path.splitext(args.report)[0] + '.html'
    module.write_atomically(output, module.render(report, load=load))
    print(output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
