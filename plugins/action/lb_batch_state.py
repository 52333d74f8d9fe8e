# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin C(lb_batch_state): journal on the controller what is about to change, run the module, journal what changed."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.modelops.shutdown.plugins.module_utils._lb_batch import never_weaker
from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal

MARKS = ('draining', 'maintenance')


def intended(args, summary):
    """C({host: {previous_state, new_state}}) for the batch, from what this run last read or set."""
    hosts = {}
    restore_states = args.get('restore_states') or {}
    for name in args.get('batch') or []:
        known = _journal.known_state(summary, args.get('name'), name)
        state = args.get('state')
        if state == 'restore':
            new_state = restore_states.get(name)
        elif state in MARKS:
            new_state = never_weaker(known, state)  # the module's own rule, on what this run last read
        else:
            new_state = state
        hosts[name] = {'previous_state': known, 'new_state': new_state}
    return hosts


def observed(module_result, check_mode):
    if check_mode:
        return dict((server.get('host'), server.get('previous_state')) for server in module_result.get('servers') or [])
    return dict((server.get('host'), {'previous_state': server.get('previous_state'), 'state': server.get('state'),
                                      'changed': bool(server.get('changed'))})
                for server in module_result.get('servers') or [])


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        try:
            journal = _journal.check_option(args.pop('journal', None), 'lb_batch_state %s' % args.get('name'))
            if journal and not self._task.check_mode:
                summary = _journal.summarize(_journal.read(journal['path']), journal['path'])
                # A weight ramp lowers weights before the state changes: a run that dies mid-ramp leaves them lowered
                # with the state still ready, so its recovery must know to set them back.
                _journal.append(journal['path'], journal['run'], 'lb_intent', lb=args.get('name'), state=args.get('state'),
                                hosts=intended(args, summary),
                                weight_ramp=bool(args.get('weight_ramp')) and args.get('state') in MARKS)
        except _journal.JournalError as exc:
            return dict(result, failed=True, changed=False, msg=str(exc))
        module_result = self._execute_module(module_args=args, task_vars=task_vars)
        if journal:
            try:
                _journal.append(journal['path'], journal['run'], 'lb_read' if self._task.check_mode else 'lb_result',
                                lb=args.get('name'), state=args.get('state'), ok=not module_result.get('failed'),
                                msg=str(module_result.get('msg') or '')[:2000],
                                servers=observed(module_result, self._task.check_mode),
                                # A ramp whose weights could not all be put back leaves them lowered.
                                weights_left_lowered=bool((module_result.get('weight_ramp') or {}).get('weights_back_failed')))
            except _journal.JournalError as exc:
                module_result.setdefault('warnings', []).append(str(exc))
            module_result['journal_path'] = journal['path']
        result.update(module_result)
        return result
