# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of bench/task_floor.py (run order, medians) and its timing callback."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
import types

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


def _load(name, path):
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tf = _load("task_floor", REPO / "bench" / "task_floor.py")
timer = _load("task_timer", REPO / "bench" / "callback_plugins" / "task_timer.py")


def test_size_order_alternates_direction():
    assert tf.size_order(2, [5, 1, 2]) == [(1, 1), (1, 2), (1, 5), (2, 5), (2, 2), (2, 1)]


def _run(size, seconds, rc=0):
    return {"size": size, "rc": rc, "tasks": [{"name": t, "seconds": s} for t, s in zip(tf.TASKS, seconds)]}


def test_summarize_takes_medians_and_growth_over_the_smallest_size():
    runs = [_run(1, [0.1, 0.3, 0.5]), _run(1, [0.2, 0.4, 0.7]), _run(1, [0.3, 0.5, 0.6]),
            _run(9, [0.4, 1.5, 2.2]), _run(9, [0.5, 1.4, 2.4]), _run(9, [9.0, 9.0, 9.0], rc=2)]
    summary = tf.summarize(runs, [1, 9])
    assert summary["medians"][1] == {"raw": 0.2, "ping": 0.4, "host_shutdown": 0.6}
    assert summary["medians"][9] == {"raw": 0.45, "ping": 1.45, "host_shutdown": 2.3}  # the failed run left out
    assert summary["growth_over_smallest"][9] == {"raw": 0.25, "ping": 1.05, "host_shutdown": 1.7}
    assert summary["growth_over_smallest"][1] == {"raw": 0.0, "ping": 0.0, "host_shutdown": 0.0}


def test_summarize_says_none_where_no_run_succeeded():
    summary = tf.summarize([_run(1, [0.1, 0.2, 0.3]), _run(5, [1, 1, 1], rc=4)], [1, 5])
    assert summary["medians"][5] == {"raw": None, "ping": None, "host_shutdown": None}
    assert summary["growth_over_smallest"][5]["ping"] is None


@pytest.mark.parametrize("argv", [["--sizes", "0,2"], ["--sizes", "1,12"], ["--sizes", "a"], ["--rounds", "0"]])
def test_parse_args_refuses(argv):
    with pytest.raises(SystemExit):
        tf.parse_args(argv)


def test_parse_args_forks_cover_the_largest_size():
    args = tf.parse_args(["--sizes", "2,1,5", "--hosts", "6"])
    assert args.sizes == [1, 2, 5] and args.forks == 5


def test_timer_writes_each_task_until_its_last_result(tmp_path, monkeypatch):
    out = tmp_path / "t.json"
    monkeypatch.setenv("TASK_TIMER_FILE", str(out))
    clock = iter([10.0, 10.5, 11.25, 20.0])
    monkeypatch.setattr(timer.time, "monotonic", lambda: next(clock))
    callback = timer.CallbackModule()
    callback.v2_playbook_on_task_start(types.SimpleNamespace(get_name=lambda: "ping"), False)  # 10.0
    callback.v2_runner_on_ok(object())  # 10.5
    callback.v2_runner_on_failed(object())  # 11.25
    callback.v2_playbook_on_task_start(types.SimpleNamespace(get_name=lambda: "never answered"), False)  # 20.0
    callback.v2_playbook_on_stats(object())
    assert json.loads(out.read_text()) == [{"name": "ping", "results": 2, "seconds": 1.25},
                                           {"name": "never answered", "results": 0, "seconds": None}]
