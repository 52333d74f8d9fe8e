# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local stand-ins for the load balancers and registries, used by the unit tests.

Not a test module (pytest does not collect it). Import it as
C(ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes).

* C(FakeHAProxy): a unix-socket (or TCP) runtime API that answers with real captured output
  (fixtures C(haproxy_show_stat_csv_*), C(haproxy_show_servers_state_*), C(haproxy_show_info_*)),
  changing only the status column / admin state of the servers that C(set server) touched, the way
  HAProxy 2.6 does (see the captures in SOURCES.md). It records every command it received.
* C(FakeConsul): the three Consul agent endpoints the adapter uses, starting from the captured
  C(/v1/agent/checks) answer.
* C(FakeModelServer): the reference model server's C(/admin/state) and C(/health).

Each is started with C(start()) and stopped with C(stop()), or used as a context manager
(C(with FakeConsul() as consul: ...)). Helpers for other stand-ins are in C(tests/unit/plugins/helpers.py).
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from urllib.parse import parse_qs, urlparse

from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import QuietHandler, read_fixture, send_reply, serve_http, stop_http

ADMF_FMAINT = 0x01
ADMF_FDRAIN = 0x08


# --------------------------------------------------------------------------------------------- HAProxy

# Answers captured from HAProxy 2.6.12 (see SOURCES.md).
NO_SUCH_SERVER = 'No such server.\n\n'
NO_SUCH_BACKEND = 'No such backend.\n\n'
CANT_FIND_BACKEND = "Can't find backend.\n\n"
PERMISSION_DENIED = 'Permission denied\n\n'


class FakeHAProxy(object):
    """A runtime API replaying the captured C(show stat) CSV of HAProxy 2.6.12 (backend C(models), m1..m5).

    C(admin) holds the C(srv_admin_state) of every server; it starts from the captured
    C(show servers state) and C(set server) changes it like HAProxy does. Options:
    C(level='user') answers C(Permission denied) to C(set server); C(ignore_sets) accepts but does
    not apply (a target that never shows the effect); C(legacy) behaves like an HAProxy without
    C(show servers state).
    """

    STAT_FIXTURE = 'haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv'
    STATE_FIXTURE = 'haproxy_show_servers_state_v2.6.12_drain_maint_down.txt'

    def __init__(self, path=None, tcp=False, level='admin', ignore_sets=False, legacy=False, stat_fixture=None):
        self.path = path
        self.tcp = tcp
        self.level = level
        self.ignore_sets = ignore_sets
        self.legacy = legacy
        self.commands = []
        self.stat_text = read_fixture(stat_fixture or self.STAT_FIXTURE)
        state_text = read_fixture(self.STATE_FIXTURE)
        lines = state_text.splitlines()
        self.state_version, self.state_header = lines[0], lines[1]
        self.state_rows = [line.split(' ') for line in lines[2:] if line.strip()]
        self.header = self.state_header.lstrip('# ').split(' ')
        self.admin = {}
        self.op = {}
        for row in self.state_rows:
            rec = dict(zip(self.header, row))
            self.admin[(rec['be_name'], rec['srv_name'])] = int(rec['srv_admin_state'])
            self.op[(rec['be_name'], rec['srv_name'])] = int(rec['srv_op_state'])
        self.captured_admin = dict(self.admin)
        self.server = None
        self.thread = None
        self.address = None

    # -- answers

    def _status(self, key, captured_status):
        admin = self.admin[key]
        if admin == self.captured_admin[key]:
            return captured_status
        if admin & ADMF_FMAINT or admin & 0x22:
            return 'MAINT'
        base = captured_status
        if captured_status in ('DRAIN', 'MAINT'):
            base = 'UP' if self.op[key] == 2 else 'DOWN'
        if admin & 0x18 and self.op[key] in (1, 2):
            return 'DRAIN'
        return base

    def show_stat(self):
        lines = self.stat_text.split('\n')
        header = lines[0].lstrip('# ').split(',')
        if 'status' not in header:
            return self.stat_text
        status_idx = header.index('status')
        out = []
        for line in lines:
            if line.startswith('#') or not line:
                out.append(line)
                continue
            values = line.split(',')
            key = (values[0], values[1])
            if key in self.admin:
                values[status_idx] = self._status(key, values[status_idx])
            out.append(','.join(values))
        return '\n'.join(out)

    def show_servers_state(self, backend):
        rows = []
        idx_admin = self.header.index('srv_admin_state')
        for row in self.state_rows:
            rec = dict(zip(self.header, row))
            if backend and rec['be_name'] != backend:
                continue
            row = list(row)
            row[idx_admin] = str(self.admin[(rec['be_name'], rec['srv_name'])])
            rows.append(' '.join(row))
        if backend and not rows:
            return CANT_FIND_BACKEND
        return '\n'.join([self.state_version, self.state_header] + rows) + '\n\n'

    def set_server(self, target, state):
        if '/' not in target:
            return "Require 'backend/server'.\n\n"
        backend, server = target.split('/', 1)
        if not any(b == backend for b, dummy in self.admin):
            return NO_SUCH_BACKEND
        key = (backend, server)
        if key not in self.admin:
            return NO_SUCH_SERVER
        if self.level != 'admin':
            return PERMISSION_DENIED
        if state not in ('ready', 'drain', 'maint'):
            return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
        if self.ignore_sets:
            return '\n'
        admin = self.admin[key]
        if state == 'ready':
            admin &= ~(ADMF_FMAINT | ADMF_FDRAIN)
        elif state == 'drain':
            admin = (admin | ADMF_FDRAIN) & ~ADMF_FMAINT
        else:
            admin = (admin | ADMF_FMAINT) & ~ADMF_FDRAIN
        self.admin[key] = admin
        return '\n'

    def answer(self, cmd):
        self.commands.append(cmd)
        words = cmd.split()
        if words == ['show', 'stat']:
            return self.show_stat()
        if words[:3] == ['show', 'servers', 'state'] and not self.legacy:
            return self.show_servers_state(words[3] if len(words) > 3 else None)
        if words == ['show', 'info']:
            return read_fixture('haproxy_show_info_v2.7.1_otel.txt')
        if len(words) == 5 and words[:2] == ['set', 'server'] and words[3] == 'state':
            return self.set_server(words[2], words[4])
        return read_fixture('haproxy_unknown_command_v2.6.12.txt')

    # -- server

    def start(self):
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline().decode('utf-8', 'replace').rstrip('\r\n')
                self.wfile.write(fake.answer(line).encode('utf-8'))

        if self.tcp:
            self.server = socketserver.ThreadingTCPServer(('127.0.0.1', 0), Handler)
            self.address = self.server.server_address
        else:
            self.server = socketserver.ThreadingUnixStreamServer(self.path, Handler)
            self.address = self.path
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.05})
        self.thread.daemon = True
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def sets(self):
        return [c for c in self.commands if c.startswith('set ')]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SilentSocket(object):
    """A unix socket that accepts connections and never answers (for timeouts)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(5)

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------------------------- HTTP

class _FakeHTTP(object):
    """A ThreadingHTTPServer on 127.0.0.1 with a per-instance route function and a request log."""

    def __init__(self):
        self.requests = []
        self.httpd = None

    def route(self, method, path, query, headers, body):  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def base_url(self):
        return 'http://127.0.0.1:%d' % self.httpd.server_address[1]

    def start(self):
        fake = self

        class Handler(QuietHandler):
            def _handle(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                parsed = urlparse(self.path)
                fake.requests.append({'method': self.command, 'path': parsed.path, 'query': parsed.query,
                                      'headers': dict(self.headers.items()), 'body': body.decode('utf-8', 'replace')})
                status, payload, content_type = fake.route(self.command, parsed.path, parse_qs(parsed.query),
                                                           self.headers, body)
                send_reply(self, status, payload if isinstance(payload, bytes) else payload.encode('utf-8'), content_type)

            do_GET = do_PUT = do_POST = do_PATCH = _handle

        self.httpd = serve_http(Handler)
        return self

    def stop(self):
        if self.httpd is not None:
            stop_http(self.httpd)
            self.httpd = None

    def mutations(self):
        return [r for r in self.requests if r['method'] != 'GET']

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class FakeConsul(_FakeHTTP):
    """Consul agent: C(/v1/agent/services), C(/v1/agent/checks), C(PUT /v1/agent/service/maintenance/<id>).

    Starts from the captured checks of service C(test) (fixture, maintenance enabled) and removes
    or re-adds the maintenance check as the API is called. C(token) makes every call require
    C(X-Consul-Token) (403 C(Permission denied) otherwise, like Consul's ACL answer).
    """

    def __init__(self, maintenance=False, token=None, ignore_sets=False):
        super(FakeConsul, self).__init__()
        self.captured = json.loads(read_fixture('consul_v1_agent_checks_service_maintenance_consul0.5.json'))
        self.maint_check = self.captured['_service_maintenance:test']
        self.maintenance = maintenance
        self.token = token
        self.ignore_sets = ignore_sets
        self.reason = None

    def route(self, method, path, query, headers, body):
        if self.token and headers.get('X-Consul-Token') != self.token:
            return 403, 'Permission denied', 'text/plain'
        if method == 'GET' and path == '/v1/agent/services':
            return 200, json.dumps({'test': {'ID': 'test', 'Service': 'test', 'Tags': [], 'Port': 8080}}), 'application/json'
        if method == 'GET' and path == '/v1/agent/checks':
            checks = dict(self.captured)
            if self.maintenance:
                check = dict(self.maint_check)
                if self.reason:
                    check['Notes'] = self.reason
                checks['_service_maintenance:test'] = check
            else:
                del checks['_service_maintenance:test']
            return 200, json.dumps(checks), 'application/json'
        prefix = '/v1/agent/service/maintenance/'
        if method == 'PUT' and path.startswith(prefix):
            if path[len(prefix):] != 'test':
                return 404, 'Unknown service "%s"' % path[len(prefix):], 'text/plain'
            enable = query.get('enable', [''])[0]
            if enable not in ('true', 'false'):
                return 400, 'Missing value for enable', 'text/plain'
            if not self.ignore_sets:
                self.maintenance = enable == 'true'
                self.reason = query.get('reason', [None])[0]
            return 200, '', 'text/plain'
        return 404, 'not found', 'text/plain'


class FakeModelServer(_FakeHTTP):
    """The reference model server's admin API: C(GET/POST /admin/state), C(GET /health) (503 unless ready)."""

    def __init__(self, state='ready', token=None, ignore_sets=False, health_follows=True):
        super(FakeModelServer, self).__init__()
        self.state = state
        self.token = token
        self.ignore_sets = ignore_sets
        self.health_follows = health_follows

    def route(self, method, path, query, headers, body):
        if path == '/health':
            ok = self.state == 'ready' or not self.health_follows
            return (200 if ok else 503), json.dumps({'status': 'ok' if ok else self.state}), 'application/json'
        if self.token and headers.get('Authorization') != 'Bearer %s' % self.token:
            return 401, json.dumps({'error': 'unauthorized'}), 'application/json'
        if path == '/admin/state' and method == 'GET':
            return 200, json.dumps({'state': self.state}), 'application/json'
        if path == '/admin/state' and method == 'POST':
            try:
                wanted = json.loads(body.decode('utf-8'))['state']
            except (ValueError, KeyError, TypeError):
                return 400, json.dumps({'error': 'body must be {"state": ...}'}), 'application/json'
            if wanted not in ('ready', 'draining', 'maintenance'):
                return 400, json.dumps({'error': 'bad state'}), 'application/json'
            if not self.ignore_sets:
                self.state = wanted
            return 200, json.dumps({'state': self.state}), 'application/json'
        return 404, json.dumps({'error': 'not found'}), 'application/json'
