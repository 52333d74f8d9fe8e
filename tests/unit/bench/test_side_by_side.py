# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of bench/side_by_side.py: batches, run order, report reading, summary."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "unit" / "fixtures"


def _load():
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("side_by_side", REPO / "bench" / "side_by_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sbs = _load()


def ansible_batches(count, serial):
    """Ansible's own batching, PlaybookExecutor._get_serialized_batches, on `count` fake hosts."""
    from ansible.executor.playbook_executor import PlaybookExecutor

    hosts = ["h%d" % i for i in range(count)]
    fake = types.SimpleNamespace(_inventory=types.SimpleNamespace(get_hosts=lambda pattern, order=None: list(hosts)))
    play = types.SimpleNamespace(hosts="all", order=None, serial=serial if isinstance(serial, list) else [serial])
    return [len(batch) for batch in PlaybookExecutor._get_serialized_batches(fake, play)]


@pytest.mark.parametrize("count, serial", [
    (3, [1, 2]), (4, [1, 3]), (5, 1), (5, 2), (36, "25%"), (36, [1, "25%"]), (7, ["10%", 3]), (3, "50%"),
    (5, 0), (2, 5), (10, ["30%", "2"]), (1, "1%"),
])
def test_batch_sizes_match_ansible(count, serial):
    assert sbs.batch_sizes(count, serial) == ansible_batches(count, serial)


def test_batch_sizes_of_the_documented_modes():
    assert sbs.batch_sizes(3, [1, 2]) == [1, 2]
    assert sbs.batch_sizes(36, "25%") == [9, 9, 9, 9]


@pytest.mark.parametrize("text, value", [
    ("[1, 2]", [1, 2]), ('"25%"', "25%"), ("25%", "25%"), ("3", 3), ('[1, "25%"]', [1, "25%"]),
])
def test_parse_serial(text, value):
    assert sbs.parse_serial(text) == value


@pytest.mark.parametrize("text", ["[]", "true", "{}", '""', "1.5"])
def test_parse_serial_rejects(text):
    with pytest.raises(ValueError):
        sbs.parse_serial(text)


def test_run_order_alternates_and_filters():
    assert sbs.run_order(3) == [(1, "anchor"), (1, "ours"), (2, "ours"), (2, "anchor"), (3, "anchor"), (3, "ours")]
    assert sbs.run_order(2, "ours") == [(1, "ours"), (2, "ours")]
    assert sbs.run_order(1, "anchor") == [(1, "anchor")]


def test_report_batches_reads_what_is_there():
    report = {"batches": [
        {"number": 1, "hosts": ["bench-m1"], "duration_seconds": 12.5, "floor_seconds": 3.1, "overhead_seconds": 9.4},
        {"hosts": [{"host": "bench-m2"}, "bench-m3"], "duration_seconds": "n/a", "floor_seconds": True},
        "not a batch",
    ]}
    assert sbs.report_batches(report) == [
        {"number": 1, "hosts": ["bench-m1"], "duration_seconds": 12.5, "floor_seconds": 3.1, "overhead_seconds": 9.4},
        {"number": 2, "hosts": ["bench-m2", "bench-m3"], "duration_seconds": None, "floor_seconds": None,
         "overhead_seconds": None},
        {"number": 3, "hosts": [], "duration_seconds": None, "floor_seconds": None, "overhead_seconds": None},
    ]


@pytest.mark.parametrize("report", [None, [], {}, {"batches": None}, {"batches": {"1": {}}}, "text"])
def test_report_batches_without_batches(report):
    assert sbs.report_batches(report) == []


def test_load_lost():
    assert not sbs.load_lost({"failed": 0, "cut": 0, "sent": 10})
    assert sbs.load_lost({"failed": 1, "cut": 0})
    assert sbs.load_lost({"failed": 0, "cut": 2})
    assert sbs.load_lost({"failed": 0})
    assert sbs.load_lost(None)


def test_all_up_reads_fleetchecks_parse_of_a_real_capture():
    text = (FIXTURES / "haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv").read_text()
    statuses = sbs.fleetcheck.haproxy_servers(types.SimpleNamespace(check_output=lambda command: text))
    assert sbs.all_up(statuses, ["m5"])
    assert not sbs.all_up(statuses, ["m1", "m5"])  # DRAIN
    assert not sbs.all_up(statuses, ["m5", "m9"])  # missing
    assert not sbs.all_up({}, ["m5"])


def _run(side, wall, rc=0, ratio=None):
    return {"side": side, "rc": rc, "wall_seconds": wall, "ratio": ratio}


def test_summarize_medians_over_successful_runs():
    runs = [_run("anchor", 20.0, ratio=2.22), _run("ours", 30.0, ratio=3.33), _run("ours", 34.0, ratio=3.78),
            _run("anchor", 22.0, ratio=2.44), _run("ours", 2.0, rc=2, ratio=0.22)]
    summary = sbs.summarize(runs)
    assert summary["anchor"] == {"runs": 2, "succeeded": 2, "median_wall_seconds": 21.0, "median_ratio": 2.33}
    assert summary["ours"] == {"runs": 3, "succeeded": 2, "median_wall_seconds": 32.0, "median_ratio": 3.555}
    assert summary["ours_over_anchor"] == round(32.0 / 21.0, 3)


def test_summarize_one_side_only():
    summary = sbs.summarize([_run("anchor", 20.0, ratio=2.0)])
    assert summary["ours"]["median_wall_seconds"] is None
    assert summary["ours_over_anchor"] is None


def test_parse_args_defaults_and_the_large_mode():
    args = sbs.parse_args([])
    assert (args.hosts, args.retire, args.serial, args.service_time, args.rate, args.rounds, args.only) == (
        5, 3, [1, 2], 3.0, 5.0, 2, "both")
    assert args.forks == 5
    large = sbs.parse_args(["--hosts", "48", "--retire", "36", "--serial", '"25%"', "--service-time", "10"])
    assert large.serial == "25%" and large.forks == 9 and large.service_time == 10.0
    assert large.boot_timeout >= 60 + 5 * 49


def test_run_line_shows_dashes_for_missing_figures():
    run = {"side": "ours", "round": 1, "rc": 2, "wall_seconds": 5.0, "batches": 2, "floor_seconds": 6.0,
           "ratio": 0.83, "failed": None, "cut": None, "load": None, "report": None, "report_batches": []}
    run["ok"] = False
    line = sbs.run_line(run)
    assert "FAILED (exit 2)" in line and " - " in line
    assert sbs.batch_lines(run) == ["         report: none written"]


def test_inotify_limit_raised_only_when_the_fleet_needs_more(tmp_path):
    limit = tmp_path / 'max_user_instances'
    limit.write_text('8192\n')
    assert sbs.ensure_inotify_instances(49, path=str(limit)) == 8192
    limit.write_text('128\n')
    assert sbs.ensure_inotify_instances(49, path=str(limit)) == 49 * 16 + 128
    assert int(limit.read_text()) == 49 * 16 + 128
