#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reference model server for the modelops.shutdown test fleet (stdlib only, Python 3.11).

It behaves, for a shutdown orchestrator, like a small vLLM OpenAI-compatible server:
requests take a fixed service time, /health turns 503 while draining or in maintenance,
/metrics publishes vLLM's gauge names, SIGTERM drains in-flight work, and the process
registers a fake GPU allocation that the fake ``nvidia-smi`` (tests/fleet/nvidia-smi) lists.

Run:  python3 model_server.py --instance NAME     (systemd: model-server@NAME.service)

Configuration (environment variables, default in brackets):
  MODEL_SERVER_PORT      TCP port [8000]
  MODEL_SERVER_BIND      bind address [0.0.0.0]
  MODEL_NAME             served model name, label of every vllm:* metric [demo-model]
  SERVICE_TIME           seconds each completion takes [3.0]; a request body's
                         "service_time" overrides it for that request; "hold_until_scraped":
                         true keeps it in flight until a later GET /metrics has counted it
                         (at most 120 s), so that a test knows a drain's first read sees it
  MAX_CONCURRENCY        requests served at once; the rest queue and count as
                         vllm:num_requests_waiting [0 = unlimited]
  DRAIN_TIMEOUT          seconds SIGTERM waits for in-flight requests before giving
                         up and exiting 3 [30]
  TASK_LOG               JSON-lines task log [/var/log/model-server/<instance>.tasks.jsonl]
  MAINTENANCE_FLAG       while this file exists /health is 503 "maintenance"
                         [/run/model-server/<instance>.maintenance]
  ADMIN_TOKEN            bearer token POST /admin/state requires [unset = open]
  GPU_UUID               GPU the fake allocation is on
                         [GPU-5c1a6f3e-2b7d-4c9a-8e41-93d0f2a7b6c8, the fake nvidia-smi's
                         default GPU 0]
  GPU_MEMORY_MIB         MiB the fake allocation reports [4096; 0 = register nothing]
  GPU_PROCESS_NAME       process_name in the allocation [sys.executable]
  FAKE_NVIDIA_STATE_DIR  where allocations are registered [/var/lib/fake-nvidia]
  FAULT_IGNORE_SIGTERM   1: ignore SIGTERM entirely (systemd has to SIGKILL) [0]
  FAULT_ORPHAN_CHILD     1: at start fork a child "model-worker" (own session, own signal
                         handling, comm set to model-worker) that registers its own
                         allocation and sleeps until SIGTERM/SIGKILL, so that with
                         KillMode=process it outlives the main process [0]
  ORPHAN_MEMORY_MIB      the child's allocation [GPU_MEMORY_MIB // 2]
  FAULT_EXIT_CODE        exit with this code after a successful drain [0]
  QUALITY_SCORE          initial value of the model_quality_score gauge, standing for an
                         evaluation job's accuracy metric [unset = not exported until
                         POST /admin/quality sets it, as a job that never ran exports nothing]

Endpoints (one request per connection; every response carries "Connection: close"):
  POST /v1/completions   OpenAI-like completion after the service time. Request id =
                         X-Request-Id header or a uuid4; echoed in the X-Request-Id
                         response header and the JSON "id". Body "stream": true answers
                         with server-sent events (headers first, "data: [DONE]" last).
  GET  /v1/models        OpenAI-like model list
  GET  /health           200 {"status":"ok"}; 503 {"status":"draining"} or
                         {"status":"maintenance"}
  GET  /metrics          Prometheus text: vllm:num_requests_running / _waiting /
                         _swapped, vllm:gpu_cache_usage_perc, vllm:request_success_total,
                         vllm:prompt_tokens_total, vllm:generation_tokens_total,
                         vllm:e2e_request_latency_seconds (histogram, vLLM 0.5's buckets),
                         model_quality_score (when set). Labelled model_name=MODEL_NAME;
                         like prometheus_client, a labelled counter or histogram has no
                         sample before its first request.
  POST /admin/quality    {"value": 0.83}: set model_quality_score (0..1); same token
                         rule as /admin/state
  GET  /admin/state      {"state":"ready|draining|maintenance", ...} (effective state)
  POST /admin/state      {"state": "ready|draining|maintenance"}; needs
                         "Authorization: Bearer <ADMIN_TOKEN>" when ADMIN_TOKEN is set.
                         Admin draining only flips /health; requests are still served.

Task log lines (appended, one write per line):
  {"event":"started","id":..,"ts":..,"instance":..,"model":..}     request accepted
  {"event":"completed","id":..,"ts":..,"status":200,"duration":..,"instance":..}
  {"event":"aborted","id":..,"ts":..,"error":..,"duration":..,"instance":..}
                                                                  client went away

SIGTERM (and SIGINT): close the listening socket, mark draining, finish every request
in flight, remove the GPU allocation and exit 0 (or FAULT_EXIT_CODE). If requests are
still running after DRAIN_TIMEOUT, say so on stderr and exit 3 (their "started" lines
have no "completed"). Lifecycle events are logged one line each on stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_GPU_UUID = "GPU-5c1a6f3e-2b7d-4c9a-8e41-93d0f2a7b6c8"
HOLD_TIMEOUT = 120.0
STATES = ("ready", "draining", "maintenance")
DRAIN_TIMEOUT_EXIT = 3
# vllm:e2e_request_latency_seconds's buckets as vLLM 0.5 exports them (tests/unit/fixtures/
# vllm_metrics_v0.5_opt125m_datadog.txt); +Inf is implied.
LATENCY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)
CONFIG_ERROR_EXIT = 2
WORDS = ("the", "model", "is", "serving", "a", "reference", "completion", "for", "fleet", "tests")

_LOG_PREFIX = ["model-server"]


def log(message: str) -> None:
    """Write one lifecycle line to stderr (journald adds the timestamp)."""
    try:
        sys.stderr.write("%s: %s\n" % (_LOG_PREFIX[0], message))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class ConfigError(Exception):
    """A configuration value is invalid."""


def _env_float(env, name, default, minimum=0.0):
    raw = env.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError("%s=%r is not a number" % (name, raw)) from None
    if value < minimum:
        raise ConfigError("%s=%r must be >= %s" % (name, raw, minimum))
    return value


def _env_int(env, name, default, minimum=0):
    raw = env.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError("%s=%r is not an integer" % (name, raw)) from None
    if value < minimum:
        raise ConfigError("%s=%r must be >= %s" % (name, raw, minimum))
    return value


def _env_flag(env, name):
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Config:
    """Settings read from the environment (see the module docstring)."""

    def __init__(self, instance: str, env=None):
        env = os.environ if env is None else env
        self.instance = instance
        self.port = _env_int(env, "MODEL_SERVER_PORT", 8000)
        if self.port > 65535:
            raise ConfigError("MODEL_SERVER_PORT=%r is not a port" % self.port)
        self.bind = env.get("MODEL_SERVER_BIND") or "0.0.0.0"
        self.model = env.get("MODEL_NAME") or "demo-model"
        self.service_time = _env_float(env, "SERVICE_TIME", 3.0)
        self.max_concurrency = _env_int(env, "MAX_CONCURRENCY", 0)
        self.drain_timeout = _env_float(env, "DRAIN_TIMEOUT", 30.0)
        self.task_log = env.get("TASK_LOG") or "/var/log/model-server/%s.tasks.jsonl" % instance
        self.maintenance_flag = env.get("MAINTENANCE_FLAG") or "/run/model-server/%s.maintenance" % instance
        self.admin_token = env.get("ADMIN_TOKEN") or None
        self.gpu_uuid = env.get("GPU_UUID") or DEFAULT_GPU_UUID
        self.gpu_memory_mib = _env_int(env, "GPU_MEMORY_MIB", 4096)
        self.gpu_process_name = env.get("GPU_PROCESS_NAME") or sys.executable or "python3"
        self.state_dir = env.get("FAKE_NVIDIA_STATE_DIR") or "/var/lib/fake-nvidia"
        self.fault_ignore_sigterm = _env_flag(env, "FAULT_IGNORE_SIGTERM")
        self.fault_orphan_child = _env_flag(env, "FAULT_ORPHAN_CHILD")
        self.orphan_memory_mib = _env_int(env, "ORPHAN_MEMORY_MIB", self.gpu_memory_mib // 2)
        self.fault_exit_code = _env_int(env, "FAULT_EXIT_CODE", 0)
        quality = env.get("QUALITY_SCORE")
        self.quality_score = None if quality in (None, "") else _env_float(env, "QUALITY_SCORE", 0.0)
        if self.fault_exit_code > 255:
            raise ConfigError("FAULT_EXIT_CODE=%r must be 0..255" % self.fault_exit_code)


# --- fake GPU allocations -------------------------------------------------------------

def _proc_starttime(pid: int):
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None."""
    try:
        with open("/proc/%d/stat" % pid, "r", encoding="ascii", errors="replace") as handle:
            data = handle.read()
        return int(data[data.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def register_allocation(state_dir, process_name, used_mib, gpu_uuid, instance):
    """Atomically write <state_dir>/allocations/<pid>.json (mode 0644); return its path."""
    pid = os.getpid()
    directory = os.path.join(state_dir, "allocations")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    record = {
        "pid": pid,
        "process_name": process_name,
        "used_mib": int(used_mib),
        "gpu_uuid": gpu_uuid,
        "instance": instance,
        "starttime": _proc_starttime(pid),
    }
    path = os.path.join(directory, "%d.json" % pid)
    tmp = os.path.join(directory, ".%d.json.tmp" % pid)
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def unregister_allocation(path):
    """Remove an allocation file written by register_allocation (missing is fine)."""
    if not path:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log("could not remove GPU allocation %s: %s" % (path, exc))


def set_process_name(name: str) -> None:
    """Best effort: set /proc/self/comm (what ps, pgrep and top show)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def spawn_orphan_child(cfg: Config) -> int:
    """FAULT_ORPHAN_CHILD: fork a GPU-holding worker that does not follow the parent."""
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    # Child: never return into the parent's code, never run its atexit handlers.
    code = 0
    try:
        _LOG_PREFIX[0] = "model-worker[%s]" % cfg.instance
        os.setsid()
        set_process_name("model-worker")
        holder = {}

        def _on_term(signum, frame):  # pylint: disable=unused-argument
            unregister_allocation(holder.get("path"))
            log("worker pid %d got signal %d, released its GPU memory" % (os.getpid(), signum))
            os._exit(0)  # pylint: disable=protected-access

        signal.signal(signal.SIGTERM, _on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if cfg.orphan_memory_mib > 0:
            holder["path"] = register_allocation(cfg.state_dir, "model-worker", cfg.orphan_memory_mib,
                                                 cfg.gpu_uuid, cfg.instance)
        log("worker pid %d holds %d MiB on %s" % (os.getpid(), cfg.orphan_memory_mib, cfg.gpu_uuid))
        while True:
            signal.pause()
    except BaseException as exc:  # pylint: disable=broad-exception-caught
        log("worker failed: %s" % exc)
        code = 1
    os._exit(code)  # pylint: disable=protected-access


# --- task log -------------------------------------------------------------------------

class TaskLog:
    """Append-only JSON lines; every line is one os.write on an O_APPEND descriptor."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755, exist_ok=True)
            try:
                os.chmod(parent, 0o755)
            except OSError:
                pass
        existed = os.path.exists(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        if not existed:
            try:
                os.fchmod(self._fd, 0o644)
            except OSError:
                pass

    def write(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            try:
                os.close(self._fd)
            except OSError:
                pass


# --- shared state ---------------------------------------------------------------------

class ServerState:
    """Counters and readiness shared between the request threads and the main thread."""

    def __init__(self, cfg: Config, task_log: TaskLog):
        self.cfg = cfg
        self.task_log = task_log
        self.started_at = time.time()
        self._cond = threading.Condition()
        self.connections = 0
        self.running = 0
        self.waiting = 0
        self.success = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.latency_buckets = [0] * len(LATENCY_BUCKETS)  # cumulative counts, le=LATENCY_BUCKETS[i]
        self.latency_count = 0
        self.latency_sum = 0.0
        self.quality_score = cfg.quality_score
        self.admin_state = "ready"
        self.shutting_down = False
        self.scrapes = 0  # /metrics answers so far; a held request waits for one that counted it
        self._slots = threading.BoundedSemaphore(cfg.max_concurrency) if cfg.max_concurrency > 0 else None

    # connections (what a drain waits for)
    def connection_opened(self):
        with self._cond:
            self.connections += 1

    def connection_closed(self):
        with self._cond:
            self.connections -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.connections > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    # completions
    def enter_queue(self):
        """Count the request as waiting; return the scrape count at that moment."""
        with self._cond:
            self.waiting += 1
            return self.scrapes

    def scraped(self):
        with self._cond:
            self.scrapes += 1
            self._cond.notify_all()

    def wait_scraped_after(self, count: int, timeout: float) -> bool:
        """Wait until a /metrics scrape later than C(count) has happened, i.e. one that counted the request."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.scrapes <= count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def acquire_slot(self):
        if self._slots is not None:
            self._slots.acquire()  # pylint: disable=consider-using-with
        with self._cond:
            self.waiting -= 1
            self.running += 1

    def release_slot(self, ok: bool, prompt_tokens: int, generation_tokens: int, latency: float = 0.0):
        with self._cond:
            self.running -= 1
            if ok:
                self.success += 1
                self.latency_count += 1
                self.latency_sum += latency
                for index, bound in enumerate(LATENCY_BUCKETS):
                    if latency <= bound:
                        self.latency_buckets[index] += 1
                self.prompt_tokens += prompt_tokens
                self.generation_tokens += generation_tokens
        if self._slots is not None:
            self._slots.release()

    def snapshot(self):
        with self._cond:
            return {
                "running": self.running,
                "waiting": self.waiting,
                "success": self.success,
                "prompt_tokens": self.prompt_tokens,
                "generation_tokens": self.generation_tokens,
                "connections": self.connections,
                "latency_buckets": list(self.latency_buckets),
                "latency_count": self.latency_count,
                "latency_sum": self.latency_sum,
                "quality_score": self.quality_score,
            }

    # readiness
    def maintenance_flag_present(self) -> bool:
        return os.path.exists(self.cfg.maintenance_flag)

    def effective_state(self) -> str:
        if self.shutting_down:
            return "draining"
        if self.admin_state == "maintenance" or self.maintenance_flag_present():
            return "maintenance"
        return self.admin_state


# --- HTTP -----------------------------------------------------------------------------

def _fmt(value) -> str:
    """A sample value as prometheus_client prints it: 1 -> 1.0, 1718140558.3 -> 1.7181405583e+09."""
    text = repr(float(value))
    dot = text.find(".")
    if float(value) > 0 and dot > 6 and "e" not in text:  # Go switches to exponents sooner than Python
        mantissa = ("%s.%s%s" % (text[0], text[1:dot], text[dot + 1:])).rstrip("0.")
        return "%se+0%d" % (mantissa, dot - 1)
    return text


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(state: ServerState) -> str:
    snap = state.snapshot()
    model = 'model_name="%s"' % _label(state.cfg.model)
    lines = [
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
        "# TYPE process_start_time_seconds gauge",
        "process_start_time_seconds %s" % _fmt(round(state.started_at, 2)),
        "# HELP vllm:num_requests_running Number of requests currently running on GPU.",
        "# TYPE vllm:num_requests_running gauge",
        "vllm:num_requests_running{%s} %s" % (model, _fmt(snap["running"])),
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        "vllm:num_requests_waiting{%s} %s" % (model, _fmt(snap["waiting"])),
        "# HELP vllm:num_requests_swapped Number of requests swapped to CPU.",
        "# TYPE vllm:num_requests_swapped gauge",
        "vllm:num_requests_swapped{%s} %s" % (model, _fmt(0)),
        "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.",
        "# TYPE vllm:gpu_cache_usage_perc gauge",
        "vllm:gpu_cache_usage_perc{%s} %s" % (model, _fmt(min(1.0, snap["running"] * 0.01))),
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
        "vllm:prompt_tokens_total{%s} %s" % (model, _fmt(snap["prompt_tokens"])),
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
        "# TYPE vllm:generation_tokens_total counter",
        "vllm:generation_tokens_total{%s} %s" % (model, _fmt(snap["generation_tokens"])),
        "# HELP vllm:request_success_total Count of successfully processed requests.",
        "# TYPE vllm:request_success_total counter",
    ]
    # prometheus_client prints a labelled counter's sample only once it has one.
    if snap["success"]:
        lines.append('vllm:request_success_total{finished_reason="length",%s} %s' % (model, _fmt(snap["success"])))
    lines += [
        "# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.",
        "# TYPE vllm:e2e_request_latency_seconds histogram",
    ]
    if snap["latency_count"]:
        for bound, count in zip(LATENCY_BUCKETS, snap["latency_buckets"]):
            lines.append('vllm:e2e_request_latency_seconds_bucket{le="%s",%s} %s' % (bound, model, _fmt(count)))
        lines.append('vllm:e2e_request_latency_seconds_bucket{le="+Inf",%s} %s' % (model, _fmt(snap["latency_count"])))
        lines.append('vllm:e2e_request_latency_seconds_count{%s} %s' % (model, _fmt(snap["latency_count"])))
        lines.append('vllm:e2e_request_latency_seconds_sum{%s} %s' % (model, _fmt(snap["latency_sum"])))
    if snap["quality_score"] is not None:
        lines += [
            "# HELP model_quality_score Accuracy of the model's latest evaluation run (0..1).",
            "# TYPE model_quality_score gauge",
            "model_quality_score{%s} %s" % (model, _fmt(snap["quality_score"])),
        ]
    return "\n".join(lines) + "\n"


class ModelHTTPServer(ThreadingHTTPServer):
    """One thread per connection; counts connections so a drain knows what is in flight."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, state: ServerState):
        self.state = state
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind() resolves the bind address with getfqdn(), which can hang
        # for seconds in a container without DNS; the name is only cosmetic.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]

    def handle_error(self, request, client_address):
        # One line instead of socketserver's traceback (clients that hang up are routine).
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            log("error serving %s: %s: %s" % (client_address[0], type(exc).__name__, exc))

    def process_request(self, request, client_address):
        self.state.connection_opened()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.state.connection_closed()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.state.connection_closed()


class Handler(BaseHTTPRequestHandler):
    """Request handler; self.server is a ModelHTTPServer."""

    protocol_version = "HTTP/1.0"
    server_version = "model-server/1.0"
    sys_version = ""
    timeout = 15  # a connection that never sends its request does not hold a drain forever

    def version_string(self):
        return self.server_version

    # quiet access log: lifecycle lines only
    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        return

    @property
    def state(self) -> ServerState:
        return self.server.state

    # helpers
    def _send_json(self, status: int, payload: dict, extra_headers=None):
        body = (json.dumps(payload) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _read_json(self):
        """Return (object, error message)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None, "invalid Content-Length"
        if length < 0 or length > 10 * 1024 * 1024:
            return None, "invalid Content-Length"
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}, None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return None, "invalid JSON body: %s" % exc
        if not isinstance(data, dict):
            return None, "JSON body must be an object"
        return data, None

    def _authorized(self) -> bool:
        token = self.state.cfg.admin_token
        if not token:
            return True
        return self.headers.get("Authorization", "") == "Bearer %s" % token

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    # routes
    def do_GET(self):  # pylint: disable=invalid-name
        path = self._path()
        if path == "/health":
            state = self.state.effective_state()
            if state == "ready":
                self._send_json(200, {"status": "ok"})
            else:
                self._send_json(503, {"status": state})
        elif path == "/metrics":
            body = render_metrics(self.state).encode("utf-8")
            self.state.scraped()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        elif path == "/admin/state":
            self._send_json(200, self._state_payload())
        elif path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{
                "id": self.state.cfg.model, "object": "model", "created": int(self.state.started_at),
                "owned_by": "modelops", "root": self.state.cfg.model, "parent": None}]})
        else:
            self._send_json(404, {"error": "not found", "path": path})

    def do_POST(self):  # pylint: disable=invalid-name
        path = self._path()
        if path == "/v1/completions":
            self._completions()
        elif path == "/admin/state":
            self._set_state()
        elif path == "/admin/quality":
            self._set_quality()
        else:
            self._send_json(404, {"error": "not found", "path": path})

    def _state_payload(self):
        snap = self.state.snapshot()
        return {
            "state": self.state.effective_state(),
            "admin_state": self.state.admin_state,
            "maintenance_flag": self.state.maintenance_flag_present(),
            "shutting_down": self.state.shutting_down,
            "running": snap["running"],
            "waiting": snap["waiting"],
            "instance": self.state.cfg.instance,
            "model": self.state.cfg.model,
            "pid": os.getpid(),
        }

    def _admin_body(self):
        """The JSON body of an admin POST, or None once a 401/400 has been answered."""
        if not self._authorized():
            self._send_json(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})
            return None
        data, error = self._read_json()
        if error:
            self._send_json(400, {"error": error})
            return None
        return data

    def _set_state(self):
        data = self._admin_body()
        if data is None:
            return
        new = data.get("state")
        if new not in STATES:
            self._send_json(400, {"error": "state must be one of %s" % ", ".join(STATES)})
            return
        old = self.state.admin_state
        self.state.admin_state = new
        if old != new:
            log("admin state %s -> %s (from %s)" % (old, new, self.client_address[0]))
        self._send_json(200, self._state_payload())

    def _set_quality(self):
        data = self._admin_body()
        if data is None:
            return
        value = data.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            self._send_json(400, {"error": "value must be a number from 0 to 1"})
            return
        self.state.quality_score = float(value)
        log("quality score set to %s (from %s)" % (value, self.client_address[0]))
        self._send_json(200, {"model": self.state.cfg.model, "quality_score": self.state.quality_score})

    def _completions(self):
        t0 = time.time()
        cfg = self.state.cfg
        request_id = self.headers.get("X-Request-Id") or str(uuid.uuid4())
        data, error = self._read_json()
        if error:
            self._send_json(400, {"error": error}, {"X-Request-Id": request_id})
            return
        service_time = cfg.service_time
        if data.get("service_time") is not None:
            try:
                service_time = float(data["service_time"])
            except (TypeError, ValueError):
                service_time = -1.0
            if service_time < 0:
                self._send_json(400, {"error": "service_time must be a number >= 0"}, {"X-Request-Id": request_id})
                return
        try:
            max_tokens = max(1, min(int(data.get("max_tokens") or 16), 4096))
        except (TypeError, ValueError):
            max_tokens = 16
        prompt_tokens = max(1, len(str(data.get("prompt", "")).split()))
        stream = bool(data.get("stream"))
        hold = bool(data.get("hold_until_scraped"))

        # Counted as waiting before the task log says "started", so any scrape after that line counts it.
        scrapes_at_start = self.state.enter_queue()
        self.state.task_log.write({"event": "started", "id": request_id, "ts": t0,
                                   "instance": cfg.instance, "model": cfg.model})
        self.state.acquire_slot()
        ok = False
        try:
            if stream:
                self._stream_completion(request_id, t0, service_time, max_tokens)
            else:
                time.sleep(service_time)
                if hold:
                    # A test's guaranteed in-flight request: it ends only after a /metrics scrape saw it.
                    self.state.wait_scraped_after(scrapes_at_start, HOLD_TIMEOUT)
                text = " ".join(WORDS[i % len(WORDS)] for i in range(max_tokens))
                self._send_json(200, {
                    "id": request_id,
                    "object": "text_completion",
                    "created": int(t0),
                    "model": cfg.model,
                    "choices": [{"index": 0, "text": text, "logprobs": None,
                                 "finish_reason": "length", "stop_reason": None}],
                    "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + max_tokens,
                              "completion_tokens": max_tokens},
                }, {"X-Request-Id": request_id})
            ok = True
        except OSError as exc:
            self.state.task_log.write({"event": "aborted", "id": request_id, "ts": time.time(),
                                       "error": "%s: %s" % (type(exc).__name__, exc),
                                       "duration": round(time.time() - t0, 6), "instance": cfg.instance})
            self.close_connection = True
        finally:
            self.state.release_slot(ok, prompt_tokens, max_tokens, time.time() - t0)
        if ok:
            now = time.time()
            self.state.task_log.write({"event": "completed", "id": request_id, "ts": now, "status": 200,
                                       "duration": round(now - t0, 6), "instance": cfg.instance})

    def _stream_completion(self, request_id, t0, service_time, max_tokens):
        cfg = self.state.cfg
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("X-Request-Id", request_id)
        self.end_headers()
        self.wfile.flush()
        chunks = min(max_tokens, 8)
        for i in range(chunks):
            time.sleep(service_time / chunks)
            last = i == chunks - 1
            event = {"id": request_id, "object": "text_completion", "created": int(t0), "model": cfg.model,
                     "choices": [{"index": 0, "text": " " + WORDS[i % len(WORDS)], "logprobs": None,
                                  "finish_reason": "length" if last else None, "stop_reason": None}]}
            self.wfile.write(("data: %s\n\n" % json.dumps(event)).encode("utf-8"))
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


# --- main -----------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Reference model server for the modelops.shutdown test fleet.")
    parser.add_argument("--instance", default=os.environ.get("MODEL_SERVER_INSTANCE") or "default",
                        help="instance name (the systemd %%i); used in default paths and logs")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    instance = args.instance
    _LOG_PREFIX[0] = "model-server[%s]" % instance
    try:
        cfg = Config(instance)
    except ConfigError as exc:
        log("configuration error: %s" % exc)
        return CONFIG_ERROR_EXIT

    stop = threading.Event()
    received = []

    def _on_signal(signum, frame):  # pylint: disable=unused-argument
        received.append(signum)
        stop.set()

    if cfg.fault_ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    # Fork before any thread, socket or log descriptor exists in this process.
    child_pid = spawn_orphan_child(cfg) if cfg.fault_orphan_child else None

    try:
        task_log = TaskLog(cfg.task_log)
    except OSError as exc:
        log("cannot open task log %s: %s" % (cfg.task_log, exc))
        return 1
    state = ServerState(cfg, task_log)
    try:
        httpd = ModelHTTPServer((cfg.bind, cfg.port), Handler, state)
    except OSError as exc:
        log("cannot listen on %s:%d: %s" % (cfg.bind, cfg.port, exc))
        return 1

    allocation = None
    if cfg.gpu_memory_mib > 0:
        try:
            allocation = register_allocation(cfg.state_dir, cfg.gpu_process_name, cfg.gpu_memory_mib,
                                             cfg.gpu_uuid, instance)
        except OSError as exc:
            log("GPU registration failed (continuing without it): %s" % exc)

    faults = [name for name, on in (("ignore-sigterm", cfg.fault_ignore_sigterm),
                                    ("orphan-child", cfg.fault_orphan_child)) if on]
    if cfg.fault_exit_code:
        faults.append("exit-code=%d" % cfg.fault_exit_code)
    log("started pid %d model %s on %s:%d (service_time %.3gs, max_concurrency %d, drain_timeout %.3gs, "
        "gpu %s %d MiB%s%s)" % (
            os.getpid(), cfg.model, cfg.bind, httpd.server_address[1], cfg.service_time, cfg.max_concurrency,
            cfg.drain_timeout, cfg.gpu_uuid, cfg.gpu_memory_mib,
            ", faults: " + ",".join(faults) if faults else "",
            ", orphan worker pid %d" % child_pid if child_pid else ""))

    server_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                     name="http-accept", daemon=True)
    server_thread.start()
    log("ready")

    while not stop.wait(1.0):
        pass

    # Drain.
    state.shutting_down = True
    signame = signal.Signals(received[0]).name if received else "stop"
    log("%s received: closing listener and draining %d in-flight connection(s) (timeout %.3gs)"
        % (signame, state.snapshot()["connections"], cfg.drain_timeout))
    httpd.shutdown()
    httpd.server_close()
    log("listener closed")
    drained = state.wait_idle(cfg.drain_timeout)
    snap = state.snapshot()
    if drained:
        code = cfg.fault_exit_code
        log("drained: all in-flight requests completed (%d served in total)" % snap["success"])
    else:
        code = DRAIN_TIMEOUT_EXIT
        log("drain timeout after %.3gs: %d request(s) still running, %d waiting; exiting %d"
            % (cfg.drain_timeout, snap["running"], snap["waiting"], code))
    unregister_allocation(allocation)
    task_log.close()
    log("exiting with code %d" % code)
    return code


if __name__ == "__main__":
    EXIT_CODE = main()
    for _stream in (sys.stdout, sys.stderr):
        try:
            _stream.flush()
        except (OSError, ValueError):
            pass
    # Request threads that outlived a drain are daemon threads: end without joining them.
    os._exit(EXIT_CODE)  # pylint: disable=protected-access
