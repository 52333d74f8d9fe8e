#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Webhook receiver for the modelops.shutdown test fleet (stdlib only): stands for whatever an
operator's hooks call (a model registry, a feature store, a chat webhook).

    python3 hook_receiver.py [--port 8099] [--log /var/log/hook-receiver/requests.jsonl]

Every request except GET /requests is answered 200 {"ok": true, "seq": N} and appended to the log as
one JSON line: seq, ts, method, path, headers (Authorization masked), body (text), json (the body
parsed, or null). A path starting /status/<code> is answered with that status instead (a hook that
fails). GET /requests returns every line so far as a JSON list (what a test reads).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "hook-receiver/1"
    log_path = "/var/log/hook-receiver/requests.jsonl"
    seq = 0

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass

    def _answer(self, status, payload):
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _record(self):
        length = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        headers = {k: ("********" if k.lower() == "authorization" else v) for k, v in self.headers.items()}
        with LOCK:
            Handler.seq += 1
            line = {"seq": Handler.seq, "ts": time.time(), "method": self.command, "path": self.path,
                    "headers": headers, "body": text, "json": parsed}
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(line) + "\n")
        status = 200
        if self.path.startswith("/status/"):
            try:
                status = int(self.path.split("/")[2])
            except ValueError:
                status = 400
        self._answer(status, {"ok": 200 <= status < 300, "seq": line["seq"]})

    def do_GET(self):  # pylint: disable=invalid-name
        if self.path == "/requests":
            lines = []
            if os.path.exists(self.log_path):
                with open(self.log_path, encoding="utf-8") as log:
                    lines = [json.loads(text) for text in log if text.strip()]
            self._answer(200, lines)
        else:
            self._record()

    do_POST = do_PUT = do_DELETE = do_PATCH = _record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--log", default=Handler.log_path)
    args = parser.parse_args()
    os.makedirs(os.path.dirname(args.log), mode=0o755, exist_ok=True)
    Handler.log_path = args.log
    ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
