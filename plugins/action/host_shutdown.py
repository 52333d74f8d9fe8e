# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin C(host_shutdown): journal on the controller that a host is about to be drained and stopped, run the
module on the host, journal its outcome."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal

# Steps that fail before anything is stopped.
NOT_STOPPED_STEPS = ('input', 'lock', 'drain', 'recheck')


def outcome(record):
    """The journal's view of the module's record: what was stopped, what the load balancers did."""
    units = (record.get('stop') or {}).get('units') or []
    stopped_units = [unit.get('unit') for unit in units if unit.get('stopped')]
    step = record.get('failed_step')
    guard = record.get('lb_guard') or {}
    return {
        'ok': bool(record.get('ok')) and not record.get('failed'),
        'status': record.get('status') or ('unreachable' if record.get('unreachable') else 'failed'),
        'failed_step': step,
        'msg': str(record.get('msg') or '')[:2000],
        'stopped': record.get('status') in ('done', 'already_down') or (step is not None and step not in NOT_STOPPED_STEPS),
        'units_stopped': stopped_units,
        'in_flight_at_stop': record.get('in_flight_at_stop'),
        'lb_events': (guard.get('events') or [])[:20],
    }


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        # The host the module runs on: the delegated one in the rollout's one-after-another mode.
        host = self._task.delegate_to or task_vars.get('inventory_hostname')
        try:
            journal = _journal.check_option(args.pop('journal', None), 'host_shutdown on %s' % host)
            if journal:
                args.setdefault('run_id', journal['run'])
            if journal and not self._task.check_mode:
                _journal.append(journal['path'], journal['run'], 'host_intent', host=host,
                                units=list((args.get('stop') or {}).get('units') or []), since=args.get('since'))
        except _journal.JournalError as exc:
            return dict(result, failed=True, changed=False, ok=False, status='failed', failed_step='input', msg=str(exc))
        module_result = self._execute_module(module_args=args, task_vars=task_vars)
        if journal and not self._task.check_mode:
            try:
                _journal.append(journal['path'], journal['run'], 'host_result', host=host, **outcome(module_result))
            except _journal.JournalError as exc:
                module_result.setdefault('warnings', []).append(str(exc))
            module_result['journal_path'] = journal['path']
        result.update(module_result)
        return result
