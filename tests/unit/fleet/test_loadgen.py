# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/fleet/loadgen.py against the model server and against misbehaving servers."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest


def records(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


class HeadersThenClose:
    """Answers every request with a status line, headers and part of the body, then closes."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _sep, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(body) < length:  # read it all, so close() sends FIN, not RST
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\": \"par")
                conn.shutdown(socket.SHUT_WR)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


class HeaderRecorder:
    """Answers every POST with 200 after `delay` seconds and records its X-Request-Id and Cookie headers."""

    def __init__(self, delay=0.0):
        self.seen = []  # (X-Request-Id, Cookie or None), in arrival order
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # pylint: disable=invalid-name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.seen.append((self.headers.get("X-Request-Id"), self.headers.get("Cookie")))
                time.sleep(delay)
                body = b'{"id": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return "http://127.0.0.1:%d/v1/completions" % self.port

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_no_failures_against_a_healthy_server(fleet, helpers, tmp_path):
    server = fleet.start_server(SERVICE_TIME="0.3")
    summary_path, records_path = tmp_path / "summary.json", tmp_path / "records.jsonl"
    result, summary = fleet.loadgen("--url", server.url(), "--rate", 10, "--duration", 1.2,
                                    "--summary", summary_path, "--records", records_path, "--timeout", 10)
    assert result.returncode == 0, result.stderr
    assert json.loads(summary_path.read_text()) == summary
    assert 10 <= summary["sent"] <= 14
    assert summary["ok"] == summary["sent"] and summary["failed"] == 0
    assert summary["http_errors"] == {} and summary["connection_errors"] == 0 and summary["cut"] == 0
    assert 0.3 <= summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["max"] < 2
    assert summary["rate"] == 10.0 and 1.1 <= summary["duration"] <= 1.6
    rows = records(records_path)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) == summary["sent"]
    assert {row["outcome"] for row in rows} == {"ok"}
    # The server logs "completed" right after the last byte is written, so it may trail the client a moment.
    helpers.wait_for(lambda: all(helpers.read_task_log(server.task_log).get(rid) == ["started", "completed"] for rid in ids),
                     3.0, message="every request logged as completed")


def test_http_errors_are_counted_by_status(fleet):
    server = fleet.start_server()
    result, summary = fleet.loadgen("--url", server.url("/v1/unknown"), "--rate", 10, "--duration", 0.35)
    assert result.returncode == 0
    assert summary["http_errors"] == {"404": summary["sent"]} and summary["failed"] == summary["sent"] >= 3
    assert summary["p50"] is None


def test_cut_when_the_body_stops_after_the_headers(fleet):
    peer = HeadersThenClose()
    try:
        result, summary = fleet.loadgen("--url", "http://127.0.0.1:%d/v1/completions" % peer.port, "--rate", 10,
                                        "--duration", 0.35, "--timeout", 10)
    finally:
        peer.close()
    assert result.returncode == 0
    assert summary["sent"] >= 3 and summary["cut"] == summary["sent"] == summary["failed"]
    assert summary["connection_errors"] == 0 and summary["ok"] == 0
    assert list(summary["error_kinds"]) == ["cut:IncompleteRead"]


def test_connection_errors_against_a_closed_port(fleet, helpers):
    port = helpers.free_port()
    result, summary = fleet.loadgen("--url", "http://127.0.0.1:%d/v1/completions" % port, "--rate", 20, "--duration", 0.3)
    assert result.returncode == 0
    assert summary["sent"] >= 5 and summary["connection_errors"] == summary["sent"] == summary["failed"]
    assert summary["cut"] == 0 and summary["ok"] == 0


def test_stream_cut_when_the_server_is_killed_mid_response(fleet, helpers, tmp_path):
    server = fleet.start_server()
    records_path = tmp_path / "records.jsonl"
    proc = fleet.popen([sys.executable, str(helpers.LOADGEN), "--url", server.url(), "--rate", "5", "--duration", "0.5",
                        "--stream", "--service-time", "3", "--timeout", "10", "--records", str(records_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    helpers.wait_for(lambda: len(helpers.read_task_log(server.task_log)) >= 3, 3.0, message="3 requests accepted")
    time.sleep(0.3)  # headers and a first event are out
    server.proc.kill()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["sent"] == 3 and summary["cut"] == 3 and summary["connection_errors"] == 0
    assert {row["status"] for row in records(records_path)} == {200}


def test_sigterm_to_the_server_under_load_loses_no_accepted_request(fleet, helpers, tmp_path):
    server = fleet.start_server(SERVICE_TIME="0.6")
    records_path = tmp_path / "records.jsonl"
    proc = fleet.popen([sys.executable, str(helpers.LOADGEN), "--url", server.url(), "--rate", "10", "--duration", "1.6",
                        "--timeout", "10", "--records", str(records_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.9)
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait(10) == 0
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    rows = {row["id"]: row for row in records(records_path)}
    log = helpers.read_task_log(server.task_log)
    # Everything the server accepted completed and reached the client; the rest was refused.
    assert log and all(events == ["started", "completed"] for events in log.values())
    assert all(rows[rid]["outcome"] == "ok" for rid in log)
    assert summary["ok"] == len(log) >= 5
    assert summary["cut"] == 0 and summary["connection_errors"] == summary["sent"] - summary["ok"] > 0


def test_stop_file_ends_sending(fleet, helpers, tmp_path):
    server = fleet.start_server(SERVICE_TIME="0.1")
    stop_file = tmp_path / "stop"
    proc = fleet.popen([sys.executable, str(helpers.LOADGEN), "--url", server.url(), "--rate", "10",
                        "--stop-file", str(stop_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)
    stop_file.touch()
    started = time.monotonic()
    out, _err = proc.communicate(timeout=10)
    assert time.monotonic() - started < 2
    summary = json.loads(out)
    assert proc.returncode == 0 and 3 <= summary["sent"] <= 10 and summary["failed"] == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_sending_and_still_summarizes(fleet, helpers, signum):
    server = fleet.start_server(SERVICE_TIME="0.1")
    proc = fleet.popen([sys.executable, str(helpers.LOADGEN), "--url", server.url(), "--rate", "10", "--duration", "30"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)
    proc.send_signal(signum)
    out, _err = proc.communicate(timeout=10)
    summary = json.loads(out)
    assert proc.returncode == 0 and summary["sent"] >= 2 and summary["failed"] == 0 and summary["duration"] < 5


def test_cookies_are_sent_on_every_request_in_the_order_given(fleet):
    peer = HeaderRecorder()
    try:
        result, summary = fleet.loadgen("--url", peer.url(), "--rate", 20, "--count", 4,
                                        "--cookie", "SERVERID=fu-m1", "--cookie", "lang=en-GB", "--timeout", 10)
    finally:
        peer.close()
    assert result.returncode == 0, result.stderr
    assert summary["sent"] == summary["ok"] == 4
    assert [cookie for _rid, cookie in peer.seen] == ["SERVERID=fu-m1; lang=en-GB"] * 4


def test_no_cookie_header_without_the_option(fleet):
    peer = HeaderRecorder()
    try:
        result, summary = fleet.loadgen("--url", peer.url(), "--rate", 20, "--count", 2, "--timeout", 10)
    finally:
        peer.close()
    assert result.returncode == 0 and summary["ok"] == 2
    assert [cookie for _rid, cookie in peer.seen] == [None, None]


def test_count_sends_exactly_n_at_the_rate_and_waits_for_them(fleet, helpers, tmp_path):
    server = fleet.start_server(SERVICE_TIME="0.6")
    records_path = tmp_path / "records.jsonl"
    started = time.monotonic()
    result, summary = fleet.loadgen("--url", server.url(), "--rate", 10, "--count", 3, "--timeout", 10,
                                    "--records", records_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert summary["sent"] == summary["ok"] == 3 and summary["unfinished"] == 0 and summary["failed"] == 0
    # Three 0.1 s slots, then the wait for the last request (sent at 0.2 s, done at about 0.8 s).
    assert 0.29 <= summary["duration"] <= 0.6 and 5 <= summary["achieved_rate"] <= 10.5
    assert 0.8 <= elapsed < 5
    ids = [row["id"] for row in records(records_path)]
    assert sorted(helpers.read_task_log(server.task_log)) == sorted(ids) and len(ids) == 3


def test_count_one_reports_a_sane_rate(fleet):
    peer = HeaderRecorder()
    try:
        result, summary = fleet.loadgen("--url", peer.url(), "--rate", 5, "--count", 1, "--timeout", 10)
    finally:
        peer.close()
    assert result.returncode == 0 and summary["sent"] == summary["ok"] == 1 and len(peer.seen) == 1
    assert 0.19 <= summary["duration"] <= 0.5 and summary["achieved_rate"] <= 5.5


def test_duration_ends_sending_before_count_is_reached(fleet):
    peer = HeaderRecorder()
    try:
        result, summary = fleet.loadgen("--url", peer.url(), "--rate", 10, "--count", 1000, "--duration", 0.35,
                                        "--timeout", 10)
    finally:
        peer.close()
    assert result.returncode == 0 and 3 <= summary["sent"] <= 5 and summary["ok"] == summary["sent"] == len(peer.seen)


@pytest.mark.parametrize("args", [
    [],
    ["--url", "http://127.0.0.1:1/v1/completions"],
    ["--url", "http://127.0.0.1:1/", "--rate", "0"],
    ["--url", "http://127.0.0.1:1/", "--rate", "x"],
    ["--url", "ftp://127.0.0.1/", "--rate", "1"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--duration", "-3"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--bogus"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--count", "0"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--count", "-2"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--count", "1.5"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--count", "many"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--cookie", "SERVERID"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--cookie", "=fu-m1"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--cookie", "SERVERID="],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--cookie", "SERVERID=a;b=c"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--cookie", "SERVER ID=a"],
    ["--url", "http://127.0.0.1:1/", "--rate", "1", "--cookie", "SERVERID=a b"],
])
def test_bad_arguments_exit_2(fleet, args):
    result, summary = fleet.loadgen(*args, timeout=20)
    assert result.returncode == 2 and summary is None and "usage:" in result.stderr
