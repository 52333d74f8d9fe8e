# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/shutdown.yml refuses bad run inputs before any host is contacted.

Each case runs the real playbook with ansible-playbook against a local inventory whose one host
would fail on contact (ansible_connection=local, but no play may reach it): the run must fail in
the first play, on localhost, with the message below, and never start a later play.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
PLAYBOOK = REPO / "playbooks" / "shutdown.yml"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"

pytestmark = pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook is not next to this Python")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "hosts.yml"
    path.write_text(json.dumps({"model_servers": {"hosts": {
        "m1": {"ansible_connection": "local", "stop_units": ["model-server@x.service"],
               "drain_load_balancers": [{"name": "lb", "file": {"path": "/nonexistent/flag"}}]},
        "m2": {"ansible_connection": "local"},
    }}}))
    return path


def run(inventory, *extra):
    # The run's journal goes next to the inventory, never into this machine's ~/.ansible.
    extra = ("-e", "shutdown_journal_dir=%s" % (inventory.parent / "journal")) + tuple(extra)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(PLAYBOOK)] + list(extra),
                          cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("extra, message", [
    ([], "shutdown_targets is required: the group or host pattern to shut down"),
    (["-e", "shutdown_target=model_servers"], "Unknown variable(s) shutdown_target"),
    (["-e", "shutdown_targets=llama_servers"], "shutdown_targets=llama_servers matches no host of the inventory"),
    (["-e", "shutdown_targets=m1", "-e", "shutdown_serial=0"], "shutdown_serial: 0 is not a batch size"),
    (["-e", "shutdown_targets=m1", "-e", '{"shutdown_serial": [0, -1]}'], "shutdown_serial[0]: 0 is not a batch size"),
    (["-e", "shutdown_targets=m1", "-e", '{"shutdown_serial": ["abc"]}'], "shutdown_serial: 'abc' is not a batch size"),
    (["-e", "shutdown_targets=m1", "-e", "shutdown_max_fail_percentage=150"],
     "shutdown_max_fail_percentage must be a whole number from 0 to 100 (got 150)"),
])
def test_refused_in_the_first_play(inventory, extra, message):
    rc, out = run(inventory, *extra)
    assert rc != 0, out
    assert message in out, out
    assert "PLAY [Pre-flight" not in out and "PLAY [Shut down" not in out, out


def test_a_host_without_stop_units_is_refused_in_pre_flight_by_name(inventory):
    rc, out = run(inventory, "-e", "shutdown_targets=m2", "-e", "shutdown_serial=1,25%")
    assert rc != 0, out
    assert "m2: no stop_units: each target needs the systemd units to stop" in out, out
    assert "PLAY [Shut down" not in out, out


def test_a_misspelt_adapter_key_is_refused_by_the_role_spec(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps({"model_servers": {"hosts": {"m1": {
        "ansible_connection": "local", "stop_units": ["x.service"], "verify_ports": "abc",
        "drain_load_balancers": [{"name": "lb", "hapoxy": {"socket": "/run/x.sock", "backend": "b", "server": "m1"}}],
    }}}}))
    rc, out = run(path, "-e", "shutdown_targets=m1")
    assert rc != 0, out
    assert "m1: " in out and "drain_load_balancers.hapoxy" in out and "verify_ports" in out, out
    assert "nothing was touched" in out and "PLAY [Shut down" not in out, out


def test_a_load_balancer_the_host_cannot_re_check_is_refused_by_name(tmp_path):
    # lb1 is reached through delegate_to and a socket on lb1: the host itself cannot read it before its stop.
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps({"model_servers": {"hosts": {"m1": {
        "ansible_connection": "local", "stop_units": ["x.service"],
        "drain_load_balancers": [{"name": "lb1", "delegate_to": "lb1",
                                  "haproxy": {"socket": "/run/x.sock", "backend": "b", "server": "m1"}}],
    }}}, "load_balancers": {"hosts": {"lb1": {"ansible_connection": "local"}}}}))
    rc, out = run(path, "-e", "shutdown_targets=m1")
    text = " ".join(out.split())
    assert rc != 0, out
    assert "m1: it cannot reach lb1 itself (reached through delegate_to and a local socket)" in text, out
    assert "give that entry of drain_load_balancers a from_host" in text and "drain_recheck: false" in text, out
    assert "PLAY [Shut down" not in out, out
