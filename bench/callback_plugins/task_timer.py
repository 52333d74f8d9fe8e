# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bench-only callback: each task's wall-clock time, from its start to its last host's result."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_timer
type: aggregate
short_description: Write each task's wall-clock duration as JSON (bench/task_floor.py)
description:
  - Records, per task, the time from the task's start to the last result of any of its hosts,
    and the number of results, and writes the list as JSON to E(TASK_TIMER_FILE) at the end of
    the playbook.
  - Used by C(bench/task_floor.py) only; not part of the collection's plugins.
requirements:
  - E(TASK_TIMER_FILE) set to a writable path.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'task_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._tasks = []
        self._current = None

    def _result(self, *_args, **_kwargs):
        if self._current is not None:
            self._current['last_result'] = time.monotonic()
            self._current['results'] += 1

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_unreachable = v2_runner_on_skipped = _result

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._current = {'name': task.get_name(), 'start': time.monotonic(), 'last_result': None, 'results': 0}
        self._tasks.append(self._current)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('TASK_TIMER_FILE')
        if not path:
            return
        tasks = [{'name': t['name'], 'results': t['results'],
                  'seconds': round(t['last_result'] - t['start'], 4) if t['last_result'] is not None else None}
                 for t in self._tasks]
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump(tasks, handle, indent=2)
            handle.write('\n')
