# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the test fleet's reference parts: real processes on 127.0.0.1.

Every process these tests start carries MODELOPS_FLEET_TEST_TOKEN=<random> in its
environment (a forked child inherits it), and the ``fleet`` fixture's teardown SIGKILLs
every process that carries this run's token: servers, their orphaned workers, sleepers
and load generators, whether the test passed or not.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import types
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
FLEET = REPO / "tests" / "fleet"
SERVER = FLEET / "model_server.py"
NVIDIA_SMI = FLEET / "nvidia-smi"
LOADGEN = FLEET / "loadgen.py"
# Real captures, shared with the other unit tests (provenance: tests/unit/fixtures/SOURCES.md).
FIXTURES = REPO / "tests" / "unit" / "fixtures"

TOKEN_VAR = "MODELOPS_FLEET_TEST_TOKEN"
TOKEN = "fleet-%s" % uuid.uuid4().hex


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(port, method, path, body=None, headers=None, timeout=10.0):
    """Return (status, headers dict with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        conn.request(method, path, body=data, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def parse_metrics(text):
    """{"name{labels}": float} for every sample line."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        samples[key] = float(value)
    return samples


def read_task_log(path):
    """{request id: [event, ...]} in file order."""
    events = {}
    if not os.path.exists(path):
        return events
    with open(path, "r", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            events.setdefault(record["id"], []).append(record["event"])
    return events


def pid_running(pid) -> bool:
    try:
        with open("/proc/%d/stat" % pid, "r", encoding="ascii", errors="replace") as handle:
            data = handle.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2:].split()[0] not in ("Z", "X")


def token_pids():
    """PIDs of live processes (other than this one) that carry this run's token."""
    marker = ("%s=%s" % (TOKEN_VAR, TOKEN)).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if marker in environ and pid_running(int(entry)):
            found.append(int(entry))
    return found


def wait_for(predicate, timeout, interval=0.02, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, message))
        time.sleep(interval)


class Server:
    """A model_server.py subprocess."""

    def __init__(self, proc, port, env, stderr_path):
        self.proc = proc
        self.port = port
        self.env = env
        self.stderr_path = stderr_path
        self.task_log = env["TASK_LOG"]
        self.flag = env["MAINTENANCE_FLAG"]
        self.state_dir = env["FAKE_NVIDIA_STATE_DIR"]

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/v1/completions"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        return http_request(self.port, method, path, body, headers, timeout)

    def get_json(self, path):
        status, _headers, body = self.request("GET", path)
        return status, json.loads(body)

    def metrics(self):
        status, _headers, body = self.request("GET", "/metrics")
        assert status == 200
        return body.decode()

    def stderr(self):
        with open(self.stderr_path, "r", encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("server pid %d still running after %.1fs; stderr:\n%s"
                                 % (self.pid, timeout, self.stderr())) from None

    def allocation_files(self):
        directory = os.path.join(self.state_dir, "allocations")
        if not os.path.isdir(directory):
            return []
        return sorted(name for name in os.listdir(directory) if name.endswith(".json") and not name.startswith("."))


class Fleet:
    """Starts processes for one test and tears all of them down afterwards."""

    def __init__(self, tmp_path: pathlib.Path):
        self.tmp = tmp_path
        self.procs = []
        self.count = 0
        self.state_dir = str(tmp_path / "fake-nvidia-state")
        self.conf_dir = str(tmp_path / "fake-nvidia-conf")
        os.makedirs(self.conf_dir, exist_ok=True)

    def env(self, **extra):
        env = dict(os.environ)
        for name in list(env):
            if name.startswith(("FAULT_", "MODEL_", "GPU_", "FAKE_NVIDIA_")) or name in (
                    "SERVICE_TIME", "DRAIN_TIMEOUT", "TASK_LOG", "MAINTENANCE_FLAG", "ADMIN_TOKEN",
                    "MAX_CONCURRENCY", "ORPHAN_MEMORY_MIB"):
                del env[name]
        env[TOKEN_VAR] = TOKEN
        env["FAKE_NVIDIA_STATE_DIR"] = self.state_dir
        env["FAKE_NVIDIA_CONF_DIR"] = self.conf_dir
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def popen(self, argv, env=None, **kwargs):
        proc = subprocess.Popen(argv, env=env or self.env(), start_new_session=True, **kwargs)  # pylint: disable=consider-using-with
        self.procs.append(proc)
        return proc

    def start_server(self, ready=True, **settings) -> Server:
        """Start model_server.py; settings are environment variables (short defaults)."""
        self.count += 1
        name = "t%d" % self.count
        base = {
            "SERVICE_TIME": "0.5",
            "DRAIN_TIMEOUT": "10",
            "TASK_LOG": str(self.tmp / ("logs-%s" % name) / ("%s.tasks.jsonl" % name)),
            "MAINTENANCE_FLAG": str(self.tmp / ("%s.maintenance" % name)),
            "MODEL_SERVER_BIND": "127.0.0.1",
        }
        base.update(settings)
        for _attempt in range(3):
            port = free_port()
            env = self.env(**dict({"MODEL_SERVER_PORT": port}, **base))
            stderr_path = str(self.tmp / ("%s.stderr" % name))
            with open(stderr_path, "wb") as stderr:
                proc = self.popen([sys.executable, str(SERVER), "--instance", name], env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
            server = Server(proc, port, env, stderr_path)
            if not ready:
                return server
            if self._wait_ready(server):
                return server
            if "cannot listen" not in server.stderr():
                break
        raise AssertionError("model server did not come up; exit %s, stderr:\n%s" % (server.proc.poll(), server.stderr()))

    @staticmethod
    def _wait_ready(server, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                return False
            try:
                server.request("GET", "/health", timeout=1.0)
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def sleeper(self, seconds=60):
        """A live process to own a fake GPU allocation."""
        return self.popen(["sleep", str(seconds)], stdin=subprocess.DEVNULL)

    def nvidia_smi(self, *args, via_sh=False):
        argv = ["/bin/sh", str(NVIDIA_SMI)] if via_sh else [sys.executable, str(NVIDIA_SMI)]
        return subprocess.run(argv + list(args), env=self.env(), capture_output=True, text=True, timeout=20, check=False)

    def write_allocation(self, pid, used_mib, gpu_uuid, process_name="python3", **extra):
        directory = os.path.join(self.state_dir, "allocations")
        os.makedirs(directory, exist_ok=True)
        record = dict({"pid": pid, "process_name": process_name, "used_mib": used_mib, "gpu_uuid": gpu_uuid}, **extra)
        with open(os.path.join(directory, "%d.json" % pid), "w", encoding="utf-8") as handle:
            json.dump(record, handle)

    def write_gpus(self, gpus):
        with open(os.path.join(self.conf_dir, "gpus.json"), "w", encoding="utf-8") as handle:
            json.dump(gpus, handle)

    def loadgen(self, *args, timeout=60):
        """Run loadgen.py to completion; return (CompletedProcess, summary dict or None)."""
        proc = self.popen([sys.executable, str(LOADGEN)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=timeout)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        summary = json.loads(out) if proc.returncode == 0 and out.strip() else None
        return result, summary

    def teardown(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        # Orphans (e.g. FAULT_ORPHAN_CHILD workers) are not our children: find them by token.
        for pid in token_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        while token_pids() and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture
def fleet(tmp_path):
    helper = Fleet(tmp_path)
    try:
        yield helper
    finally:
        helper.teardown()


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_processes():
    """Last line of defence: nothing carrying this run's token survives the session."""
    yield
    for pid in token_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def helpers():
    """Module-level helpers for the test modules (conftest is not importable with --import-mode=importlib)."""
    return types.SimpleNamespace(
        http_request=http_request, parse_metrics=parse_metrics, read_task_log=read_task_log, pid_running=pid_running,
        wait_for=wait_for, free_port=free_port, token_pids=token_pids,
        SERVER=SERVER, NVIDIA_SMI=NVIDIA_SMI, LOADGEN=LOADGEN, FIXTURES=FIXTURES, FLEET=FLEET,
    )
