# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the unit tests of module_utils and modules.

Not a test module (pytest does not collect it). Import it as
C(ansible_collections.modelops.shutdown.tests.unit.plugins.helpers).

* C(needs_haproxy): marks a test that needs module_utils/_haproxy.py.
* Captured output: C(read_fixture), C(fixture_path), and edits of captures (C(with_props),
  C(haproxy_csv)).
* Stand-ins on this machine: C(add_proc) (one process in a fake /proc tree), C(CommandReplay)
  (C(run_command) answering scripted output), C(free_port).
* Servers on 127.0.0.1: C(serve_http), C(QuietHandler), C(LocalHTTPServer) and C(send_reply) to build
  them; C(MetricsServer) (a Prometheus endpoint),
  C(RequeueEndpoint) (a resubmission endpoint), C(FakeHAProxySocket) (a runtime API socket that
  answers every command with one text), C(ThreadedServer) and C(read_command) to build socket servers
  that answer each connection in its own thread. The load balancer stand-ins are in C(module_utils/lb_fakes.py).
* Running a module's C(main()): C(module_args) (with the check/diff flags), C(AnsibleExitJson), C(AnsibleFailJson)
  and the C(exit_json) / C(fail_json) stand-ins that raise them (C(tests/unit/plugins/modules/conftest.py) and the property tests use them).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

try:
    from ansible_collections.modelops.shutdown.plugins.module_utils import _haproxy
except ImportError as exc:  # written by another engineer; the users of it are tested against its interface meanwhile
    _haproxy = None
    HAPROXY_SKIP = 'module_utils/_haproxy.py is not importable yet: %s' % exc
else:
    HAPROXY_SKIP = ''

# Marks a test that needs module_utils/_haproxy.py.
needs_haproxy = pytest.mark.skipif(_haproxy is None, reason=HAPROXY_SKIP or 'n/a')

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures')
HAPROXY_STAT_CSV = 'haproxy_show_stat_csv_v2.7.1_otel.csv'


# --------------------------------------------------------------------------------------------- module runs

class AnsibleExitJson(Exception):
    """Raised by the patched C(exit_json); C(result) is what the module returned."""

    def __init__(self, result):
        super(AnsibleExitJson, self).__init__('exit_json')
        self.result = result


class AnsibleFailJson(Exception):
    """Raised by the patched C(fail_json); C(result) is what the module returned, C(msg) included."""

    def __init__(self, result):
        super(AnsibleFailJson, self).__init__(result.get('msg', ''))
        self.result = result


def module_args(args, check_mode=False, diff=False):
    """A copy of C(args) as a module receives them, with the check and diff mode flags Ansible adds."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    return args


def exit_json(_self, **kwargs):
    """Stand-in for C(AnsibleModule.exit_json): raises C(AnsibleExitJson) with the result."""
    kwargs.setdefault('changed', False)
    raise AnsibleExitJson(kwargs)


def fail_json(_self, msg, **kwargs):
    """Stand-in for C(AnsibleModule.fail_json): raises C(AnsibleFailJson) with the result, C(failed) set."""
    kwargs['msg'] = msg
    kwargs['failed'] = True
    raise AnsibleFailJson(kwargs)


# --------------------------------------------------------------------------------------------- captures

def fixture_path(name):
    """The path of C(tests/unit/fixtures/<name>)."""
    return os.path.join(FIXTURES, name)


def read_fixture(name):
    """The text of C(tests/unit/fixtures/<name>), exactly as captured."""
    with open(fixture_path(name), 'r', encoding='utf-8', newline='') as handle:
        return handle.read()


def with_props(text, **changes):
    """A C(systemctl show) capture with some properties replaced (KEY=VALUE lines rewritten, others kept).

    A value of C(None) removes the property; a property the text lacks is appended.
    """
    lines = []
    seen = set()
    for line in text.splitlines():
        key = line.split('=', 1)[0]
        if key in changes:
            seen.add(key)
            if changes[key] is not None:
                lines.append('%s=%s' % (key, changes[key]))
            continue
        lines.append(line)
    for key, value in changes.items():
        if key not in seen and value is not None:
            lines.append('%s=%s' % (key, value))
    return '\n'.join(lines) + '\n'


def haproxy_csv(scur, qcur=0):
    """The real HAProxy 2.7.1 C(show stat) capture with webservers/s1's qcur and scur replaced (columns 3 and 5)."""
    out = []
    for line in read_fixture(HAPROXY_STAT_CSV).split('\n'):
        fields = line.split(',')
        if fields[:2] == ['webservers', 's1']:
            fields[2] = str(qcur)
            fields[4] = str(scur)
        out.append(','.join(fields))
    return '\n'.join(out)


# --------------------------------------------------------------------------------------------- this machine

def add_proc(proc_root, pid, cgroup='0::/\n', comm='python3', cmdline=('python3',)):
    """Add process C(pid) to the fake /proc tree C(proc_root) (a C(pathlib.Path)); return its folder."""
    folder = proc_root / str(pid)
    folder.mkdir()
    (folder / 'cgroup').write_text(cgroup)
    (folder / 'comm').write_text(comm + '\n')
    (folder / 'cmdline').write_bytes(b'\0'.join(arg.encode() for arg in cmdline) + b'\0')
    return folder


def option_key(argv):
    """The name of a command's first argument up to any C(=): C(--query-gpu) for C(--query-gpu=index,...)."""
    return argv[1].split('=', 1)[0]


class CommandReplay(object):
    """Stands in for C(run_command): answers C((rc, out, err)) picked by C(key(argv)), recording every argv in C(calls).

    C(answers) maps a key to one answer, or to a list of answers consumed one a call (the last one
    repeats), so a test can script output that changes between polls. C(key) defaults to
    C(option_key). A command without a scripted answer fails the test.
    """

    def __init__(self, answers, key=option_key):
        self.answers = dict((k, list(v) if isinstance(v, list) else [v]) for k, v in answers.items())
        self.key = key
        self.calls = []

    def __call__(self, argv, *args, **kwargs):
        assert isinstance(argv, list)
        self.calls.append(argv)
        queue = self.answers.get(self.key(argv))
        if not queue:
            raise AssertionError('no scripted answer for %r' % (argv,))
        return queue.pop(0) if len(queue) > 1 else queue[0]


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------- servers

def serve_http(handler_class, ssl_context=None):
    """Start a C(ThreadingHTTPServer) on 127.0.0.1 (a free port; HTTPS with C(ssl_context)) in a daemon thread."""
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), handler_class)
    httpd.daemon_threads = True
    if ssl_context is not None:
        httpd.socket = ssl_context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True).start()
    return httpd


def stop_http(httpd):
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (the test output stays readable)."""

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass


class LocalHTTPServer(object):
    """Serves C(handler_class) with C(serve_http) from construction on; stopped with C(stop()) (or C(close())),
    or used as a context manager."""

    def __init__(self, handler_class, ssl_context=None):
        self.httpd = serve_http(handler_class, ssl_context)

    def stop(self):
        stop_http(self.httpd)

    def close(self):
        self.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def send_reply(handler, status, data, content_type):
    """Answer the request C(handler) (a C(BaseHTTPRequestHandler)) is handling with C(status) and C(data), bytes."""
    handler.send_response(status)
    handler.send_header('Content-Type', content_type)
    handler.send_header('Content-Length', str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class MetricsServer(LocalHTTPServer):
    """Serves C(body) (text, bytes, or a callable returning either) with C(status) and C(content_type) at any path.

    Records every request's path and headers in C(requests); C(scrapes) counts them. The body is
    computed before the status is sent, so a callable body may change C(status).
    """

    def __init__(self, body='', status=200, content_type='text/plain; version=0.0.4; charset=utf-8'):
        self.body = body
        self.status = status
        self.content_type = content_type
        self.requests = []
        owner = self

        class Handler(QuietHandler):
            def do_GET(self):
                owner.requests.append({'path': self.path, 'headers': dict(self.headers.items())})
                body = owner.body() if callable(owner.body) else owner.body
                send_reply(self, owner.status, body.encode('utf-8') if isinstance(body, str) else body, owner.content_type)

        super(MetricsServer, self).__init__(Handler)
        self.url = 'http://127.0.0.1:%d/metrics' % self.httpd.server_address[1]

    @property
    def scrapes(self):
        return len(self.requests)


class RequeueEndpoint(LocalHTTPServer):
    """A resubmission endpoint (C(POST)/C(PUT) C(/v1/requeue)) that records what it received in C(received).

    Answers C(statuses) in turn (the last one repeats) with a JSON body; HTTPS with C(cert), a
    C((certfile, keyfile)) pair.
    """

    def __init__(self, statuses=(202,), cert=None):
        self.statuses = list(statuses)
        self.received = []
        endpoint = self

        class Handler(QuietHandler):
            def _handle(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length).decode('utf-8')
                endpoint.received.append({'method': self.command, 'path': self.path, 'headers': dict(self.headers),
                                          'body': json.loads(body) if body else None})
                status = endpoint.statuses.pop(0) if len(endpoint.statuses) > 1 else endpoint.statuses[0]
                send_reply(self, status, json.dumps({'queued': status < 300}).encode(), 'application/json')

            do_POST = do_PUT = _handle

        context = None
        if cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
        super(RequeueEndpoint, self).__init__(Handler, context)
        self.url = '%s://127.0.0.1:%d/v1/requeue' % ('https' if cert else 'http', self.httpd.server_address[1])


def read_command(conn):
    """Read one runtime-API command from C(conn): bytes up to and including the first newline (or all until EOF)."""
    data = b''
    while not data.endswith(b'\n'):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class ThreadedServer(object):
    """A listening socket (C(sock), bound) whose every connection goes to C(handle(conn)) in its own thread,
    so that a slow or silent answer holds up nothing else. C(handle) closes nothing: the connection is closed
    after it returns; an C(OSError) in it (the client gone) is ignored."""

    def __init__(self, sock, handle):
        self.sock = sock
        self.handle = handle
        self.sock.listen(8)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        with conn:
            try:
                self.handle(conn)
            except OSError:
                pass

    def close(self):
        self.sock.close()


class FakeHAProxySocket(ThreadedServer):
    """A UNIX socket answering every command with C(answer) (text, or a callable returning it), like HAProxy's
    non-interactive mode. Records every command received in C(commands)."""

    def __init__(self, path):
        self.path = path
        self.answer = ''
        self.commands = []
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        super(FakeHAProxySocket, self).__init__(sock, self.reply)

    def reply(self, conn):
        self.commands.append(read_command(conn).decode())
        answer = self.answer() if callable(self.answer) else self.answer  # pylint: disable=not-callable
        conn.sendall(answer.encode())
