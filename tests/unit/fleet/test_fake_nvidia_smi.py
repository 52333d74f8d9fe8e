# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/fleet/nvidia-smi against real nvidia-smi captures (tests/unit/fixtures)."""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest

APPS_ALL = "timestamp,gpu_name,gpu_bus_id,gpu_serial,gpu_uuid,pid,process_name,used_gpu_memory"
TIMESTAMP = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
# The H200 of the capture (its UUID and serial are masked upstream).
H200 = {"index": 0, "uuid": "GPU-00000000-0000-0000-0000-000000000000", "name": "NVIDIA H200",
        "pci_bus_id": "00000000:83:00.0", "serial": "0000000000000", "memory_total_mib": 143771}
TWO_GPUS = [
    {"index": 0, "uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3",
     "pci_bus_id": "00000000:18:00.0", "serial": "1650000000001", "memory_total_mib": 81559},
    {"index": 1, "uuid": "GPU-bbbbbbbb-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3",
     "pci_bus_id": "00000000:2A:00.0", "serial": "1650000000002", "memory_total_mib": 81559, "idle_used_mib": 7},
]


def read_fixture(helpers, name):
    return (helpers.FIXTURES / name).read_text()


def test_compute_apps_reproduces_the_h200_capture(fleet, helpers):
    capture = read_fixture(helpers, "nvidia-smi_query-compute-apps_csv_h200_drv590.48.01_load.csv")
    rows = [line.split(", ") for line in capture.splitlines()[1:]]
    fleet.write_gpus([H200])
    pids = sorted(fleet.sleeper().pid for _row in rows)
    for pid, row in zip(pids, rows):
        fleet.write_allocation(pid, int(row[7].split()[0]), H200["uuid"], process_name=row[6])
    result = fleet.nvidia_smi("--query-compute-apps=" + APPS_ALL, "--format=csv")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines(keepends=True)
    stamp = lines[1].split(", ")[0]
    assert TIMESTAMP.match(stamp) and all(line.startswith(stamp + ", ") for line in lines[1:])
    # Only the timestamp and the PIDs differ from the real output.
    normalized = result.stdout.replace(stamp, rows[0][0])
    for pid, row in zip(pids, rows):
        normalized = normalized.replace(", %d, " % pid, ", %s, " % row[5])
    assert normalized == capture


def test_compute_apps_with_no_process_prints_the_header_only(fleet, helpers):
    capture = read_fixture(helpers, "nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_idle_empty.csv")
    result = fleet.nvidia_smi("--query-compute-apps=" + APPS_ALL, "--format=csv")
    assert (result.returncode, result.stdout) == (0, capture)
    result = fleet.nvidia_smi("--query-compute-apps=" + APPS_ALL, "--format=csv,noheader")
    assert (result.returncode, result.stdout) == (0, "")


@pytest.mark.parametrize(("fmt", "expected"), [
    ("csv", "pid, used_gpu_memory [MiB]\n{pid}, 2566 MiB\n"),
    ("csv,noheader", "{pid}, 2566 MiB\n"),
    ("csv,nounits", "pid, used_gpu_memory [MiB]\n{pid}, 2566\n"),
    ("csv,noheader,nounits", "{pid}, 2566\n"),
    ("nounits,noheader,csv", "{pid}, 2566\n"),
])
def test_format_options_and_used_memory_alias(fleet, fmt, expected):
    pid = fleet.sleeper().pid
    fleet.write_allocation(pid, 2566, "GPU-5c1a6f3e-2b7d-4c9a-8e41-93d0f2a7b6c8")  # the default GPU
    for field in ("used_memory", "used_gpu_memory"):
        result = fleet.nvidia_smi("--query-compute-apps=pid,%s" % field, "--format=%s" % fmt)
        assert (result.returncode, result.stdout) == (0, expected.format(pid=pid))
    # "--opt value" spelling too
    result = fleet.nvidia_smi("--query-compute-apps", "pid,used_memory", "--format", fmt)
    assert result.stdout == expected.format(pid=pid)


def test_memory_used_counts_live_allocations_only(fleet, helpers):
    fleet.write_gpus(TWO_GPUS)
    gpu0, gpu1 = TWO_GPUS[0]["uuid"], TWO_GPUS[1]["uuid"]
    live_a, live_b = fleet.sleeper().pid, fleet.sleeper().pid
    dead = fleet.sleeper(0)
    dead.wait()  # exited and reaped
    zombie = fleet.popen(["true"])
    helpers.wait_for(lambda: not helpers.pid_running(zombie.pid), 5.0, message="zombie")  # exited, not reaped
    fleet.write_allocation(live_a, 1000, gpu0, process_name="vllm")
    fleet.write_allocation(live_b, 300, gpu1, process_name="vllm")
    fleet.write_allocation(dead.pid, 5000, gpu0)
    fleet.write_allocation(zombie.pid, 6000, gpu1)
    reused = fleet.sleeper().pid
    fleet.write_allocation(reused, 7000, gpu0, starttime=1)  # PID now belongs to another process

    result = fleet.nvidia_smi("--query-gpu=index,uuid,memory.used,memory.total,memory.free", "--format=csv")
    assert result.stdout == (
        "index, uuid, memory.used [MiB], memory.total [MiB], memory.free [MiB]\n"
        "0, %s, 1000 MiB, 81559 MiB, 80559 MiB\n"
        "1, %s, 307 MiB, 81559 MiB, 81252 MiB\n" % (gpu0, gpu1))
    apps = fleet.nvidia_smi("--query-compute-apps=gpu_uuid,pid,used_memory", "--format=csv,noheader,nounits")
    assert apps.stdout == "%s, %d, 1000\n%s, %d, 300\n" % (gpu0, live_a, gpu1, live_b)

    for selector in ("1", gpu1, TWO_GPUS[1]["pci_bus_id"]):
        one = fleet.nvidia_smi("--query-gpu=index,memory.used", "--format=csv,noheader,nounits", "-i", selector)
        assert one.stdout == "1, 307\n"
    one = fleet.nvidia_smi("--query-compute-apps=pid", "--format=csv,noheader", "--id=0")
    assert one.stdout == "%d\n" % live_a
    missing = fleet.nvidia_smi("--query-gpu=index", "--format=csv", "-i", "5")
    assert (missing.returncode, missing.stdout) == (6, "No devices were found\n")


def test_query_gpu_header_names_and_value_shapes_match_the_capture(fleet, helpers):
    capture = read_fixture(helpers, "nvidia-smi_query-gpu_allfields_csv_h100-mig_drv590.48.01_idle.csv").splitlines()
    real = dict(zip(capture[0].split(", "), capture[1].split(", ")))
    fields = ["timestamp", "driver_version", "count", "name", "serial", "uuid", "pci.bus_id", "pci.domain", "pci.bus",
              "pci.device", "index", "persistence_mode", "pstate", "compute_mode", "memory.total", "memory.reserved",
              "memory.used", "memory.free", "utilization.gpu", "utilization.memory", "temperature.gpu",
              "mig.mode.current", "mig.mode.pending"]
    fleet.write_gpus([{"index": 0, "uuid": "GPU-00000000-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3",
                       "pci_bus_id": "00000000:00:09.0", "serial": "0000000000000", "memory_total_mib": 81559,
                       "memory_reserved_mib": 479, "idle_used_mib": 59}])
    result = fleet.nvidia_smi("--query-gpu=" + ",".join(fields), "--format=csv")
    assert result.returncode == 0
    header, row = result.stdout.splitlines()
    ours = dict(zip(header.split(", "), row.split(", ")))
    assert len(ours) == len(fields)
    for name, value in ours.items():
        assert name in real, name
        if name.endswith(" [MiB]"):
            assert value.endswith(" MiB") and real[name].endswith(" MiB")
    same = ("driver_version", "count", "name", "serial", "uuid", "pci.bus_id", "pci.domain", "pci.bus", "pci.device",
            "index", "memory.total [MiB]", "memory.reserved [MiB]", "memory.used [MiB]", "compute_mode",
            "persistence_mode")
    assert {k: ours[k] for k in same} == {k: real[k] for k in same}
    assert TIMESTAMP.match(ours["timestamp"]) and TIMESTAMP.match(real["timestamp"])
    # aliases print the canonical header
    alias = fleet.nvidia_smi("--query-gpu=gpu_name,gpu_uuid,gpu_bus_id,gpu_serial", "--format=csv")
    assert alias.stdout.splitlines()[0] == "name, uuid, pci.bus_id, serial"


def test_list_gpus_matches_the_capture_line(fleet, helpers):
    capture = read_fixture(helpers, "nvidia-smi_L_h100-mig_drv590.48.01.txt").splitlines(keepends=True)[0]
    fleet.write_gpus([{"index": 0, "uuid": "GPU-00000000-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3",
                       "pci_bus_id": "00000000:00:09.0", "serial": "0000000000000", "memory_total_mib": 81559}])
    assert fleet.nvidia_smi("-L").stdout == capture
    fleet.write_gpus(TWO_GPUS)
    assert fleet.nvidia_smi("--list-gpus").stdout == "".join(
        "GPU %d: %s (UUID: %s)\n" % (g["index"], g["name"], g["uuid"]) for g in TWO_GPUS)
    assert fleet.nvidia_smi("-L", "-i", "1").stdout.startswith("GPU 1: ")


def test_default_inventory_is_one_h100(fleet):
    result = fleet.nvidia_smi("--query-gpu=index,name,memory.total,memory.used,driver_version", "--format=csv,noheader")
    assert result.stdout == "0, NVIDIA H100 80GB HBM3, 81559 MiB, 0 MiB, 590.48.01\n"


@pytest.mark.parametrize("args", [
    ("--query-gpu=index,bogus.field", "--format=csv"),
    ("--query-compute-apps=pid,memory.used", "--format=csv"),
])
def test_invalid_field_is_rejected_like_the_real_cli(fleet, args):
    result = fleet.nvidia_smi(*args)
    bad = args[0].split("=", 1)[1].split(",")[1]
    assert (result.returncode, result.stdout) == (2, 'Field "%s" is not a valid field to query.\n\n' % bad)


def test_driver_not_loaded(fleet):
    pathlib.Path(fleet.conf_dir, "driver-not-loaded").touch()
    for args in (("-L",), ("--query-compute-apps=pid", "--format=csv")):
        result = fleet.nvidia_smi(*args)
        assert result.returncode == 9
        assert result.stdout == ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                                 "Make sure that the latest NVIDIA driver is installed and running.\n\n")


@pytest.mark.skipif(shutil.which("python3") is None, reason="the polyglot execs python3 from PATH")
def test_runs_as_a_shell_script(fleet):
    result = fleet.nvidia_smi("-L", via_sh=True)
    assert result.returncode == 0 and result.stdout.startswith("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-")


def test_shebangs_pass_ansible_test_sanity(helpers):
    # ansible-test's shebang rule: only these are allowed outside modules.
    allowed = {"#!/bin/sh", "#!/usr/bin/env bash", "#!/usr/bin/env python", "#!/bin/bash -eu", "#!/bin/bash -eux"}
    for path in (helpers.NVIDIA_SMI, helpers.SERVER, helpers.LOADGEN):
        with open(path, "rb") as handle:
            assert handle.readline().strip().decode() in allowed, path
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_live_allocation_on_a_gpu_missing_from_the_inventory_fails_loudly(fleet):
    # Leaving it out would let every GPU-release check pass without looking.
    pid = fleet.sleeper().pid
    fleet.write_allocation(pid, 4096, "GPU-5f8a9c1e-0d2b-4c3a-9e7f-000000000001")
    for args in (("--query-compute-apps=pid,used_memory", "--format=csv"), ("--query-gpu=memory.used", "--format=csv")):
        result = fleet.nvidia_smi(*args)
        assert result.returncode == 255 and result.stdout == ""
        assert "GPU-5f8a9c1e-0d2b-4c3a-9e7f-000000000001" in result.stderr and "gpus.json" in result.stderr
    fleet.write_gpus([{"index": 0, "uuid": "GPU-5f8a9c1e-0d2b-4c3a-9e7f-000000000001", "name": "NVIDIA H100 80GB HBM3",
                       "pci_bus_id": "00000000:00:09.0", "serial": "1650000000009", "memory_total_mib": 81559}])
    result = fleet.nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader")
    assert (result.returncode, result.stdout) == (0, "%d, 4096 MiB\n" % pid)
