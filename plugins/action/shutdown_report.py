# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin C(shutdown_report): build the run's record once and write it on the controller, in one task."""

from __future__ import annotations

import json
import os

import jinja2

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.modelops.shutdown.plugins.filter.rollout_report import rollout_report
from ansible_collections.modelops.shutdown.plugins.modules.shutdown_report import ARGUMENT_SPEC
from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal, _report_html

TEMPLATE = os.path.join(os.path.dirname(__file__), '..', '..', 'roles', 'report', 'templates', 'report.md.j2')


def render_markdown(report):
    with open(TEMPLATE) as handle:
        source = handle.read()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=False, keep_trailing_newline=True, autoescape=False)
    return env.from_string(source).render(shutdown_report=report)


class ActionModule(ActionBase):
    """Runs on the controller only; never transfers anything to a host."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validated = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validated.error_messages:
            return dict(result, failed=True, msg='shutdown_report: %s' % '; '.join(validated.error_messages))
        args = validated.validated_parameters
        try:
            report = rollout_report(args['hosts'], mode='check' if self._task.check_mode else 'run',
                                    halted=args['halted'], halt_reason=args['halt_reason'])
        except AnsibleFilterError as exc:
            return dict(result, failed=True, msg=str(exc))
        report['journal'] = args['journal']
        if args['journal'] and not self._task.check_mode:
            # The report is written once, at the run's end: that end goes into the journal with it.
            try:
                journal = _journal.check_option(args['journal'], 'shutdown_report')
                _journal.append(journal['path'], journal['run'], 'run_finished',
                                status='halted' if args['halted'] else 'done', stranded=args['stranded'])
            except _journal.JournalError as exc:
                return dict(result, failed=True, msg='shutdown_report: %s' % exc, report=report)
        name = args['name'] or 'shutdown-%s' % report['run_id']
        paths = {'json': os.path.join(args['dest'], name + '.json')}
        if args['markdown']:
            paths['md'] = os.path.join(args['dest'], name + '.md')
        load = None
        warnings = []
        if args['html']:
            paths['html'] = os.path.join(args['dest'], name + '.html')
            if args['load_records']:
                try:
                    load = _report_html.load_records(args['load_records'])
                except (OSError, UnicodeDecodeError) as exc:
                    warnings.append('shutdown_report: the load records %s could not be read (%s); the HTML report has '
                                    'no load panel. Re-render it later with: python tools/report_html.py %s --load '
                                    '<records.jsonl>' % (args['load_records'], exc, paths['json']))
        try:
            os.makedirs(args['dest'], mode=0o755, exist_ok=True)
            _report_html.write_atomically(paths['json'], json.dumps(report, indent=4, sort_keys=True) + '\n')
            if args['markdown']:
                _report_html.write_atomically(paths['md'], render_markdown(report))
            if args['html']:
                _report_html.write_atomically(paths['html'], _report_html.render(report, load=load))
        except (OSError, jinja2.TemplateError) as exc:
            return dict(result, failed=True, msg='shutdown_report: could not write the report to %s: %s. Check that '
                        'the directory is writable on the controller, or set report_dir.' % (args['dest'], exc),
                        report=report)
        totals = report['totals']
        summary = '%d host(s): %s; %s' % (
            totals['hosts'], ', '.join('%d %s' % (count, status) for status, count in sorted(totals['by_status'].items())),
            ('HALTED: %s' % report['halt_reason']) if report['halted'] else 'not halted')
        if warnings:
            result['warnings'] = result.get('warnings', []) + warnings
        others = ', '.join('.%s' % kind for kind in ('md', 'html') if kind in paths)
        return dict(result, changed=False, paths=paths, summary=summary, report=report,
                    msg='report: %s%s' % (paths['json'], ' (and %s)' % others if others else ''))
