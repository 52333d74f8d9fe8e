# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/fleet/model_server.py as a real process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import sys
import threading
import time

import pytest

MODEL = "demo-model"
RUNNING = 'vllm:num_requests_running{model_name="%s"}' % MODEL
WAITING = 'vllm:num_requests_waiting{model_name="%s"}' % MODEL
SUCCESS = 'vllm:request_success_total{finished_reason="length",model_name="%s"}' % MODEL


def fire(server, count, body=None, prefix="req"):
    """Send `count` completions concurrently; return (threads, results dict id -> (status, headers, body))."""
    results = {}

    def one(rid):
        try:
            results[rid] = server.request("POST", "/v1/completions", body or {"prompt": "hi"},
                                          {"X-Request-Id": rid, "Content-Type": "application/json"}, timeout=30)
        except OSError as exc:
            results[rid] = exc

    threads = [threading.Thread(target=one, args=("%s-%d" % (prefix, i),), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def join(threads, timeout=30):
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive()


def gauge(helpers, server, key):
    return helpers.parse_metrics(server.metrics()).get(key)


def test_health_follows_the_maintenance_flag(fleet):
    server = fleet.start_server()
    assert server.get_json("/health") == (200, {"status": "ok"})
    pathlib.Path(server.flag).touch()
    assert server.get_json("/health") == (503, {"status": "maintenance"})
    assert server.get_json("/admin/state")[1]["state"] == "maintenance"
    os.unlink(server.flag)
    assert server.get_json("/health") == (200, {"status": "ok"})


def test_admin_state_needs_the_token_and_only_flips_health(fleet):
    server = fleet.start_server(ADMIN_TOKEN="s3cret", SERVICE_TIME="0.05")
    auth = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
    status, headers, _body = server.request("POST", "/admin/state", {"state": "draining"})
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    status, _headers, _body = server.request("POST", "/admin/state", {"state": "draining"}, {"Authorization": "Bearer nope"})
    assert status == 401
    assert server.get_json("/health") == (200, {"status": "ok"})

    status, _headers, body = server.request("POST", "/admin/state", {"state": "draining"}, auth)
    assert status == 200 and json.loads(body)["state"] == "draining"
    assert server.get_json("/health") == (503, {"status": "draining"})
    assert server.get_json("/admin/state")[1]["state"] == "draining"
    # Admin draining keeps serving what still arrives.
    status, _headers, body = server.request("POST", "/v1/completions", {"prompt": "x"})
    assert status == 200 and json.loads(body)["object"] == "text_completion"

    assert server.request("POST", "/admin/state", {"state": "maintenance"}, auth)[0] == 200
    assert server.get_json("/health") == (503, {"status": "maintenance"})
    assert server.request("POST", "/admin/state", {"state": "bogus"}, auth)[0] == 400
    assert server.request("POST", "/admin/state", {"state": "ready"}, auth)[0] == 200
    assert server.get_json("/health") == (200, {"status": "ok"})
    assert "admin state ready -> draining" in server.stderr()


def test_completion_echoes_request_id_and_honours_body_service_time(fleet):
    server = fleet.start_server(SERVICE_TIME="5")
    started = time.monotonic()
    status, headers, body = server.request("POST", "/v1/completions", {"prompt": "a b c", "max_tokens": 4, "service_time": 0.05},
                                           {"X-Request-Id": "abc-123"})
    assert time.monotonic() - started < 3
    data = json.loads(body)
    assert status == 200 and headers["x-request-id"] == "abc-123" and headers["connection"] == "close"
    assert data["id"] == "abc-123" and data["model"] == MODEL
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}

    status, headers, body = server.request("POST", "/v1/completions", {"service_time": 0})
    generated = headers["x-request-id"]
    assert status == 200 and json.loads(body)["id"] == generated and len(generated) == 36  # uuid4

    assert server.request("POST", "/v1/completions", b"{not json", {"Content-Type": "application/json"})[0] == 400
    assert server.request("POST", "/v1/completions", {"service_time": -1})[0] == 400
    assert server.request("GET", "/nope")[0] == 404
    status, _headers, body = server.request("GET", "/v1/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == MODEL


def test_metrics_count_running_requests_in_vllm_format(fleet, helpers):
    server = fleet.start_server(SERVICE_TIME="1.5")
    text = server.metrics()
    # Every HELP/TYPE line exactly as vLLM prints it (real capture).
    capture = (helpers.FIXTURES / "vllm_metrics_v0.5_opt125m_datadog.txt").read_text().splitlines()
    ours = [line for line in text.splitlines() if line.startswith("# ") and "vllm:" in line]
    assert len(ours) == 16 and all(line in capture for line in ours)
    assert "%s 0.0\n" % RUNNING in text and "%s 0.0\n" % WAITING in text
    assert "vllm:request_success_total{" not in text  # no sample before the first success, like prometheus_client
    assert re.search(r"^process_start_time_seconds \d\.\d+e\+09$", text, re.M)  # Go-style float, as in the capture

    threads, results = fire(server, 3)
    helpers.wait_for(lambda: gauge(helpers, server, RUNNING) == 3.0, 2.0, message="running == 3")
    assert gauge(helpers, server, WAITING) == 0.0
    join(threads)
    assert [r[0] for r in results.values()] == [200, 200, 200]
    # The server counts a request done just after its response is sent: wait for that, not for a margin.
    helpers.wait_for(lambda: gauge(helpers, server, SUCCESS) == 3.0, 30.0, message="success == 3")
    samples = helpers.parse_metrics(server.metrics())
    assert samples[RUNNING] == 0.0 and samples[SUCCESS] == 3.0
    assert "%s 3.0\n" % SUCCESS in server.metrics()


def test_latency_histogram_and_quality_gauge_as_vllm_and_an_evaluation_job_export_them(fleet, helpers):
    server = fleet.start_server(SERVICE_TIME="0.2")
    text = server.metrics()
    assert "vllm:e2e_request_latency_seconds_bucket" not in text  # no sample before the first request
    assert "model_quality_score" not in text  # no evaluation job has run
    threads, results = fire(server, 2)
    join(threads)
    assert [r[0] for r in results.values()] == [200, 200]
    count = 'vllm:e2e_request_latency_seconds_count{model_name="%s"}' % MODEL
    helpers.wait_for(lambda: gauge(helpers, server, count) == 2.0, 30.0, message="latency count == 2")
    assert server.request("POST", "/admin/quality", {"value": 1.5})[0] == 400
    assert server.request("POST", "/admin/quality", {"value": 0.8})[0] == 200
    samples = helpers.parse_metrics(server.metrics())
    capture = (helpers.FIXTURES / "vllm_metrics_v0.5_opt125m_datadog.txt").read_text()
    bounds = re.findall(r'^vllm:e2e_request_latency_seconds_bucket\{le="([^"]+)"', capture, re.M)
    ours = [key for key in samples if key.startswith("vllm:e2e_request_latency_seconds_bucket")]
    assert [re.search(r'le="([^"]+)"', key).group(1) for key in ours] == bounds  # vLLM's bounds, in its order
    assert samples['vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="%s"}' % MODEL] == 2.0
    assert samples['vllm:e2e_request_latency_seconds_count{model_name="%s"}' % MODEL] == 2.0
    assert 0.4 <= samples['vllm:e2e_request_latency_seconds_sum{model_name="%s"}' % MODEL] < 2.0
    assert samples['model_quality_score{model_name="%s"}' % MODEL] == 0.8


def test_metrics_count_waiting_requests_beyond_max_concurrency(fleet, helpers):
    server = fleet.start_server(SERVICE_TIME="0.8", MAX_CONCURRENCY="1")
    threads, results = fire(server, 3)
    helpers.wait_for(lambda: helpers.parse_metrics(server.metrics()).get(WAITING) == 2.0, 2.0, message="waiting == 2")
    assert gauge(helpers, server, RUNNING) == 1.0
    join(threads)
    assert sorted(r[0] for r in results.values()) == [200, 200, 200]
    samples = helpers.parse_metrics(server.metrics())
    assert samples[RUNNING] == 0.0 and samples[WAITING] == 0.0


def test_sigterm_drains_in_flight_requests(fleet, helpers):
    server = fleet.start_server(SERVICE_TIME="1.0")
    allocation = "%d.json" % server.pid
    assert server.allocation_files() == [allocation]
    with open(os.path.join(server.state_dir, "allocations", allocation), encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["pid"] == server.pid and record["used_mib"] == 4096
    assert os.stat(os.path.join(server.state_dir, "allocations", allocation)).st_mode & 0o777 == 0o644

    threads, results = fire(server, 3, prefix="drain")
    helpers.wait_for(lambda: gauge(helpers, server, RUNNING) == 3.0, 2.0, message="3 in flight")
    os.kill(server.pid, signal.SIGTERM)
    # The listener closes at once: new connections are refused while the 3 finish.
    helpers.wait_for(lambda: _refused(server.port), 1.0, message="listener closed")
    assert server.wait(10) == 0
    join(threads)
    assert {rid: r[0] for rid, r in results.items()} == {"drain-0": 200, "drain-1": 200, "drain-2": 200}
    assert all(json.loads(r[2])["id"] == rid for rid, r in results.items())
    log = helpers.read_task_log(server.task_log)
    assert {rid: log[rid] for rid in results} == {rid: ["started", "completed"] for rid in results}
    assert os.stat(server.task_log).st_mode & 0o777 == 0o644
    assert os.stat(os.path.dirname(server.task_log)).st_mode & 0o777 == 0o755
    assert server.allocation_files() == []
    stderr = server.stderr()
    assert "SIGTERM received" in stderr and "drained" in stderr and "exiting with code 0" in stderr


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_drain_timeout_exits_3_and_leaves_started_without_completed(fleet, helpers):
    server = fleet.start_server(SERVICE_TIME="5", DRAIN_TIMEOUT="0.5")
    threads, results = fire(server, 1, prefix="slow")
    helpers.wait_for(lambda: gauge(helpers, server, RUNNING) == 1.0, 2.0, message="1 in flight")
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait(5) == 3
    join(threads)
    assert isinstance(results["slow-0"], OSError)  # the client lost its request
    assert helpers.read_task_log(server.task_log)["slow-0"] == ["started"]
    assert "drain timeout" in server.stderr()
    assert server.allocation_files() == []


def test_fault_ignore_sigterm_survives_sigterm(fleet):
    server = fleet.start_server(FAULT_IGNORE_SIGTERM="1")
    os.kill(server.pid, signal.SIGTERM)
    time.sleep(0.5)
    assert server.proc.poll() is None
    assert server.get_json("/health") == (200, {"status": "ok"})
    apps = fleet.nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    assert apps.stdout == "%d, 4096\n" % server.pid
    server.proc.kill()
    assert server.wait(5) == -signal.SIGKILL
    # The stale allocation file stays, but a dead PID is not listed.
    assert server.allocation_files() == ["%d.json" % server.pid]
    assert fleet.nvidia_smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader").stdout == ""
    assert "ignore-sigterm" in server.stderr()


def test_fault_exit_code_after_graceful_drain(fleet, helpers):
    server = fleet.start_server(FAULT_EXIT_CODE="7", SERVICE_TIME="0.5")
    threads, results = fire(server, 1, prefix="x")
    helpers.wait_for(lambda: gauge(helpers, server, RUNNING) == 1.0, 2.0, message="1 in flight")
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait(10) == 7
    join(threads)
    assert results["x-0"][0] == 200


def test_fault_orphan_child_outlives_the_server_holding_gpu_memory(fleet, helpers):
    server = fleet.start_server(FAULT_ORPHAN_CHILD="1", GPU_MEMORY_MIB="6000")
    helpers.wait_for(lambda: len(server.allocation_files()) == 2, 5.0, message="worker registered")
    child = [int(name.split(".")[0]) for name in server.allocation_files() if name != "%d.json" % server.pid][0]
    with open("/proc/%d/comm" % child, encoding="utf-8") as handle:
        assert handle.read().strip() == "model-worker"
    apps = fleet.nvidia_smi("--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader")
    assert sorted(apps.stdout.splitlines()) == sorted(["%d, model-worker, 3000 MiB" % child,
                                                       "%d, %s, 6000 MiB" % (server.pid, sys.executable)])

    os.kill(server.pid, signal.SIGTERM)
    assert server.wait(10) == 0
    assert helpers.pid_running(child)
    apps = fleet.nvidia_smi("--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader")
    assert apps.stdout == "%d, model-worker, 3000 MiB\n" % child
    used = fleet.nvidia_smi("--query-gpu=memory.used", "--format=csv,noheader,nounits")
    assert used.stdout == "3000\n"

    # The worker releases its memory on SIGTERM (what KillMode=control-group would send).
    os.kill(child, signal.SIGTERM)
    helpers.wait_for(lambda: not helpers.pid_running(child), 5.0, message="worker gone")
    helpers.wait_for(lambda: fleet.nvidia_smi("--query-gpu=memory.used", "--format=csv,noheader,nounits").stdout == "0\n",
                     5.0, message="memory released")


def test_stream_sends_headers_first_and_ends_with_done(fleet):
    server = fleet.start_server(SERVICE_TIME="0.2")
    status, headers, body = server.request("POST", "/v1/completions", {"stream": True, "max_tokens": 4}, {"X-Request-Id": "s-1"})
    assert status == 200 and headers["content-type"] == "text/event-stream" and headers["x-request-id"] == "s-1"
    events = [chunk for chunk in body.decode().split("\n\n") if chunk]
    assert events[-1] == "data: [DONE]" and len(events) == 5
    assert json.loads(events[0][len("data: "):])["id"] == "s-1"


@pytest.mark.parametrize("setting", [{"SERVICE_TIME": "abc"}, {"MODEL_SERVER_PORT": "70000"}, {"FAULT_EXIT_CODE": "-1"}])
def test_bad_configuration_exits_2(fleet, setting):
    server = fleet.start_server(ready=False, **setting)
    assert server.wait(10) == 2
    assert "configuration error" in server.stderr()


def test_held_request_ends_only_after_a_scrape_counted_it(fleet, helpers):
    server = fleet.start_server(SERVICE_TIME="0")
    results = {}

    def held():
        results["held"] = server.request("POST", "/v1/completions", {"hold_until_scraped": True},
                                         {"X-Request-Id": "held-1"}, timeout=30)

    thread = threading.Thread(target=held)
    thread.start()
    # The task log says "started" only once the request is counted, and nothing has scraped yet.
    helpers.wait_for(lambda: "held-1" in helpers.read_task_log(server.task_log),
                     10.0, message="held request started")
    thread.join(0.3)
    assert thread.is_alive(), "a held request must not end before a scrape counted it"
    samples = helpers.parse_metrics(server.metrics())
    assert samples[RUNNING] + samples[WAITING] == 1.0
    thread.join(10)
    assert not thread.is_alive() and results["held"][0] == 200
