#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open-loop load generator for the modelops.shutdown test fleet (stdlib only).

    python3 loadgen.py --url http://127.0.0.1:8000/v1/completions [--url ...] --rate 5
                       [--duration 20] [--count N] [--stop-file PATH] [--summary out.json]
                       [--records out.jsonl] [--timeout 60] [--service-time S] [--stream]
                       [--cookie NAME=VALUE ...] [--header NAME=VALUE ...]

Sends one POST every 1/rate seconds, each in its own thread whatever is still outstanding
(open loop), until --count requests are sent, --duration has passed, --stop-file exists, or
SIGTERM/SIGINT arrives (whichever comes first; with none of the first three it runs until a
signal). Then it waits, at most --timeout seconds, for the outstanding requests and prints
the JSON summary on stdout (and writes it to --summary):

  sent               requests started
  ok                 2xx with a complete body (for --stream: ends with "data: [DONE]")
  http_errors        {"<status>": count} for complete non-2xx responses
  connection_errors  no response byte: refused, reset, closed or timed out before the
                     status line
  cut                a response had started (status line received) but the body did not
                     complete: reset, early close, short Content-Length, timeout, or a
                     stream without "data: [DONE]"
  unfinished         still outstanding when the final wait gave up
  failed             sent - ok (= http_errors + connection_errors + cut + unfinished)
  p50, p90, p99, max latency of the ok requests in seconds (nearest rank; null if none)
  duration           seconds from the first request to the end of sending
  rate               the requested rate; achieved_rate = sent / duration
  error_kinds        {"<outcome>:<exception name>": count}, for diagnosis

--records writes one JSON line per request: id, start (epoch), latency, outcome
(ok|http_error|connection_error|cut|unfinished), status, error. Every request carries a
unique X-Request-Id (lg-<run>-<seq>) that the model server logs in its task log.

--cookie NAME=VALUE (repeatable) sends "Cookie: NAME=VALUE[; NAME2=VALUE2 ...]" on every
request, in the order given: with HAProxy cookie persistence, --cookie SERVERID=<server>
pins every request to that server. --count N sends exactly N requests (fewer only if
--duration, --stop-file or a signal ends sending first); sending ends when the last one's
1/rate slot does, so duration is N/rate and achieved_rate the rate achieved.
--header NAME=VALUE (repeatable) sends that header on every request, e.g.
--header X-Model-Version=chat-v3 for an LB that routes on it.

Exit code: 0 whenever it ran (the caller judges the summary), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import signal
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

OUTCOMES = ("ok", "http_error", "connection_error", "cut", "unfinished")
# RFC 6265: a cookie name is an HTTP token; a value is cookie-octets, no quotes needed here.
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
COOKIE_VALUE = re.compile(r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+")


class Request:
    """One request's record."""

    __slots__ = ("rid", "start", "latency", "outcome", "status", "error", "done")

    def __init__(self, rid):
        self.rid = rid
        self.start = None
        self.latency = None
        self.outcome = "unfinished"
        self.status = None
        self.error = None
        self.done = threading.Event()

    def as_dict(self):
        latency = None if self.latency is None else round(self.latency, 6)
        return {"id": self.rid, "start": self.start, "latency": latency, "outcome": self.outcome,
                "status": self.status, "error": self.error}


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise argparse.ArgumentTypeError("%r must be > 0" % text)
    return value


def nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise argparse.ArgumentTypeError("%r must be >= 0" % text)
    return value


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("%r must be >= 1" % text)
    return value


def cookie_pair(text):
    """NAME=VALUE -> (NAME, VALUE), refusing what would corrupt the Cookie header."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError("%r is not NAME=VALUE" % text)
    if not COOKIE_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError("%r: cookie name %r has characters a cookie name cannot have" % (text, name))
    if not COOKIE_VALUE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            "%r: cookie value %r has a space, quote, comma, semicolon, backslash or control character" % (text, value))
    return name, value


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header_pair(text):
    """NAME=VALUE -> (NAME, VALUE), refusing a name that is not an HTTP token or a value with a control character."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError("%r is not NAME=VALUE" % text)
    if not HEADER_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError("%r: header name %r is not an HTTP token" % (text, name))
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise argparse.ArgumentTypeError("%r: header value has a control character" % text)
    return name, value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Open-loop HTTP load generator for the test fleet.")
    parser.add_argument("--url", required=True, action="append", dest="urls",
                        help="http(s)://HOST:PORT/v1/completions (repeatable: requests take the URLs in turn)")
    parser.add_argument("--rate", type=positive_float, required=True, help="requests per second")
    parser.add_argument("--duration", type=positive_float, help="stop sending after this many seconds")
    parser.add_argument("--count", type=positive_int, help="send exactly this many requests, then stop sending")
    parser.add_argument("--stop-file", help="stop sending once this file exists")
    parser.add_argument("--summary", help="write the JSON summary here too")
    parser.add_argument("--records", help="write one JSON line per request here")
    parser.add_argument("--timeout", type=positive_float, default=60.0,
                        help="per-request socket timeout, and the longest final wait for outstanding requests [60]")
    parser.add_argument("--service-time", type=nonnegative_float, help='send "service_time" in each request body')
    parser.add_argument("--stream", action="store_true", help='send "stream": true and expect server-sent events')
    parser.add_argument("--model", help='send "model" in each request body')
    parser.add_argument("--max-tokens", type=int, default=16, help='"max_tokens" in each request body [16]')
    parser.add_argument("--cookie", type=cookie_pair, action="append", default=[], metavar="NAME=VALUE",
                        help="send this cookie on every request (repeatable)")
    parser.add_argument("--header", type=header_pair, action="append", default=[], metavar="NAME=VALUE",
                        help="send this header on every request (repeatable)")
    args = parser.parse_args(argv)
    for url in args.urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            parser.error("--url must be an http:// or https:// URL with a host")
        try:
            parts.port  # pylint: disable=pointless-statement
        except ValueError:
            parser.error("--url has an invalid port")
    args.url = args.urls[0]
    return args


def send_one(req: Request, url, body: bytes, timeout: float, stream: bool, extra_headers=None):
    """Send one request and classify what happened (never raises)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname, parts.port, timeout=timeout)
    req.start = time.time()
    t0 = time.monotonic()
    response = None
    try:
        try:
            conn.request("POST", path, body=body, headers=dict({
                "Content-Type": "application/json",
                "X-Request-Id": req.rid,
                "Connection": "close",
            }, **(extra_headers or {})))
            response = conn.getresponse()
        except http.client.RemoteDisconnected as exc:
            req.outcome, req.error = "connection_error", "%s: %s" % (type(exc).__name__, exc)
            return
        except http.client.HTTPException as exc:
            # Some bytes came but not a full status line and headers.
            req.outcome, req.error = "cut", "%s: %s" % (type(exc).__name__, exc)
            return
        except (OSError, ValueError) as exc:  # refused, reset, timeout, unreachable
            req.outcome, req.error = "connection_error", "%s: %s" % (type(exc).__name__, exc)
            return
        req.status = response.status
        try:
            data = response.read()
        except (http.client.HTTPException, OSError, ValueError) as exc:
            req.outcome, req.error = "cut", "%s: %s" % (type(exc).__name__, exc)
            return
        if stream and 200 <= response.status < 300 and b"data: [DONE]" not in data:
            req.outcome, req.error = "cut", "stream ended without data: [DONE] (%d bytes)" % len(data)
            return
        if 200 <= response.status < 300:
            req.outcome = "ok"
            req.latency = time.monotonic() - t0
        else:
            req.outcome = "http_error"
            req.error = data[:200].decode("utf-8", "replace")
    finally:
        if req.latency is None and req.outcome != "unfinished":
            req.latency = time.monotonic() - t0
        try:
            conn.close()
        except OSError:
            pass
        req.done.set()


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list, or None."""
    if not sorted_values:
        return None
    rank = max(1, int(math.ceil(fraction * len(sorted_values))))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(requests, args, duration):
    counts = {name: 0 for name in OUTCOMES}
    http_errors = {}
    kinds = {}
    for req in requests:
        counts[req.outcome] += 1
        if req.outcome == "http_error":
            http_errors[str(req.status)] = http_errors.get(str(req.status), 0) + 1
        if req.outcome in ("connection_error", "cut") and req.error:
            key = "%s:%s" % (req.outcome, req.error.split(":", 1)[0])
            kinds[key] = kinds.get(key, 0) + 1
    latencies = sorted(r.latency for r in requests if r.outcome == "ok" and r.latency is not None)

    def rounded(value):
        return None if value is None else round(value, 4)

    sent = len(requests)
    return {
        "url": args.url,
        "urls": args.urls,
        "sent": sent,
        "ok": counts["ok"],
        "http_errors": http_errors,
        "connection_errors": counts["connection_error"],
        "cut": counts["cut"],
        "unfinished": counts["unfinished"],
        "failed": sent - counts["ok"],
        "p50": rounded(percentile(latencies, 0.50)),
        "p90": rounded(percentile(latencies, 0.90)),
        "p99": rounded(percentile(latencies, 0.99)),
        "max": rounded(latencies[-1] if latencies else None),
        "duration": round(duration, 3),
        "rate": args.rate,
        "achieved_rate": round(sent / duration, 3) if duration > 0 else None,
        "error_kinds": kinds,
    }


def write_atomic(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum, frame):  # pylint: disable=unused-argument
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    payload = {"prompt": "modelops shutdown load test", "max_tokens": args.max_tokens}
    if args.model:
        payload["model"] = args.model
    if args.service_time is not None:
        payload["service_time"] = args.service_time
    if args.stream:
        payload["stream"] = True
    body = json.dumps(payload).encode("utf-8")
    extra_headers = {}
    if args.cookie:
        extra_headers["Cookie"] = "; ".join("%s=%s" % pair for pair in args.cookie)
    for name, value in args.header:
        extra_headers[name] = value

    run_id = uuid.uuid4().hex[:8]
    interval = 1.0 / args.rate
    requests = []
    begin = time.monotonic()
    deadline = begin + args.duration if args.duration else None
    seq = 0
    while not stop.is_set():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if args.stop_file and os.path.exists(args.stop_file):
            break
        due = begin + seq * interval
        if now < due:
            # Sleep in short steps so a stop file is noticed quickly even at low rates.
            stop.wait(min(due - now, 0.05))
            continue
        if args.count is not None and seq >= args.count:
            # Sending ends with the last request's slot, so N requests span N/rate seconds as with --duration.
            break
        req = Request("lg-%s-%06d" % (run_id, seq))
        requests.append(req)
        thread = threading.Thread(target=send_one, args=(req, args.urls[seq % len(args.urls)], body, args.timeout, args.stream, extra_headers),
                                  name=req.rid, daemon=True)
        thread.start()
        seq += 1
    sending_time = time.monotonic() - begin

    wait_until = time.monotonic() + args.timeout
    for req in requests:
        left = wait_until - time.monotonic()
        if left <= 0 or not req.done.wait(left):
            break

    snapshot = [r if r.done.is_set() else _unfinished_copy(r) for r in requests]
    summary = summarize(snapshot, args, sending_time)
    text = json.dumps(summary, indent=2, sort_keys=False) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    if args.summary:
        write_atomic(args.summary, text)
    if args.records:
        write_atomic(args.records, "".join(json.dumps(r.as_dict()) + "\n" for r in snapshot))
    return 0


def _unfinished_copy(req: Request) -> Request:
    """A still-running request's record as it stands (its thread may yet change the original)."""
    copy = Request(req.rid)
    copy.start = req.start
    return copy


if __name__ == "__main__":
    sys.exit(main())
