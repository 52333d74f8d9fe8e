# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the journaling action plugins (lb_batch_state, host_shutdown, shutdown_journal) without Ansible's executor.

Not a test module (pytest does not collect it). Import it as
C(ansible_collections.modelops.shutdown.tests.unit.plugins.action.journal_harness).

The ActionModule is built like in test_shutdown_report.py (a real Task, mock connection and play context);
C(ActionBase.run) is patched to return {} and C(_execute_module) to C(execute), a callable taking the module
args (a test can assert inside it what the journal holds at the moment the module would run on the host).
"""

from __future__ import annotations

import errno
import json
import os
from unittest import mock

from ansible.playbook.task import Task

from ansible_collections.modelops.shutdown.plugins.plugin_utils import _journal


class ModuleCalls(object):
    """Stands in for C(_execute_module): records each call's module args, runs C(check) (if any) on them first, then
    answers C(result) (a dict, or a callable taking the module args)."""

    def __init__(self, result, check=None):
        self.result = result
        self.check = check
        self.calls = []

    def __call__(self, module_name=None, module_args=None, task_vars=None, **_kwargs):
        self.calls.append(dict(module_args))
        if self.check is not None:
            self.check(module_args)
        result = self.result(module_args) if callable(self.result) else self.result
        return json.loads(json.dumps(result))  # a fresh copy, as a module's JSON answer is


def never_called(*_args, **_kwargs):
    raise AssertionError('the module was run, and must not have been')


def make_action(action_class, args, check_mode=False, delegate_to=None):
    task = Task()
    task.args = dict(args)
    task.check_mode = check_mode
    if delegate_to is not None:
        task.delegate_to = delegate_to
    return action_class(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None, shared_loader_obj=None)


def run_action(action_class, args, execute=None, check_mode=False, task_vars=None, delegate_to=None):
    """C(ActionModule.run()) of C(action_class) with C(args); returns the task result."""
    action = make_action(action_class, args, check_mode=check_mode, delegate_to=delegate_to)
    execute = execute if execute is not None else never_called
    with mock.patch('ansible.plugins.action.ActionBase.run', return_value={}):
        with mock.patch.object(action, '_execute_module', side_effect=execute):
            result = action.run(task_vars=dict(task_vars or {}))
    json.dumps(result)
    return result


def events(path):
    return [event['event'] for event in _journal.read(path)]


def last(path):
    return _journal.read(path)[-1]


def read_only(monkeypatch, path):
    """Make C(_journal) see C(path) on a read-only file system (even as root, which file modes do not stop)."""
    real_open = os.open

    def fake_open(name, flags, *args, **kwargs):
        if os.path.abspath(name) == os.path.abspath(path) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(_journal.os, 'open', fake_open)
