# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin C(shutdown_journal): the rollout's journal on the controller (see the module's documentation)."""

from __future__ import annotations

import getpass
import os
import socket

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.modelops.shutdown.plugins.modules.shutdown_journal import ARGUMENT_SPEC, REQUIRED_IF
from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal


def _user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def open_run(directory, targets, playbook, check_mode, now=None):
    directory = os.path.expanduser(directory)
    interrupted = _journal.open_runs(directory) if os.path.isdir(directory) else []
    live = [run for run in interrupted if run.get('live')]
    if live:
        raise _journal.JournalError(
            'run %s (pid %s on this controller, journal %s) is still running: two runs must not shut down the same '
            'fleet at once. Wait for it, or end it (kill %s), then re-run.'
            % (live[0]['run'], live[0]['pid'], live[0]['path'], live[0]['pid']))
    found = [dict((key, run.get(key)) for key in ('run', 'path', 'started', 'finished', 'status', 'targets', 'outstanding'))
             for run in interrupted]
    if check_mode:
        return None, found
    _journal.ensure_dir(directory)
    run_id = _journal.new_run_id(now)
    path = os.path.join(directory, run_id + '.jsonl')
    _journal.append(path, run_id, 'run_started', playbook=playbook, targets=list(targets), controller=socket.gethostname(),
                    pid=os.getppid(), pid_start=_journal.process_start(os.getppid()), user=_user(), interrupted=[run['run'] for run in found])
    return {'path': path, 'run': run_id}, found


class ActionModule(ActionBase):
    """Runs on the controller only; never transfers anything to a host."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        validated = ArgumentSpecValidator(ARGUMENT_SPEC, required_if=REQUIRED_IF).validate(self._task.args)
        if validated.error_messages:
            return dict(result, failed=True, msg='shutdown_journal: %s' % '; '.join(validated.error_messages))
        args = validated.validated_parameters
        state = args['state']
        try:
            if state == 'open':
                journal, interrupted = open_run(args['dir'], args['targets'], args['playbook'], self._task.check_mode)
                return dict(result, changed=False, journal=journal, interrupted=interrupted,
                            msg='journal %s%s; %d interrupted run(s) found' % (
                                journal['path'] if journal else 'not opened', '' if journal else ' (check mode)',
                                len(interrupted)))
            if state == 'read':
                summary = _journal.summarize(_journal.read(args['path']), args['path'])
                summary['outstanding'] = _journal.outstanding(summary)
                return dict(result, changed=False, summary=summary,
                            msg='journal %s of run %s read' % (args['path'], summary['run']))
            journal = _journal.check_option(args['journal'], 'shutdown_journal')
            if self._task.check_mode:
                return dict(result, changed=False, msg='check mode: nothing written')
            if state == 'recovered':
                _journal.append(journal['path'], journal['run'], 'recovered', from_runs=args['runs'],
                                put_back=args['put_back'], carried_on=args['carried_on'])
                for path in args['runs']:
                    old = _journal.summarize(_journal.read(path), path)
                    reason = 'put back: %s; carried on: %s' % (
                        ', '.join(args['put_back']) or 'none', ', '.join(args['carried_on']) or 'none')
                    _journal.append(path, old['run'] or '', 'closed', by=journal['run'], reason=reason)
                return dict(result, changed=False,
                            msg='%d interrupted run(s) closed by run %s' % (len(args['runs']), journal['run']))
            _journal.append(journal['path'], journal['run'], 'run_finished', status=args['status'],
                            stranded=args['stranded'])
            return dict(result, changed=False, msg='run %s %s' % (journal['run'], args['status']))
        except _journal.JournalError as exc:
            return dict(result, failed=True, changed=False, msg=str(exc))
