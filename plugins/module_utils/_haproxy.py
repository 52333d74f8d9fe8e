# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy runtime API client and output parsers.

Private to this collection. One connection per command (the runtime API's non-interactive mode):
the command is sent with a trailing newline and HAProxy closes the connection after its answer.
Names that end up in a command are checked first by C(validate_name), so a backend or server
name can never smuggle a second command (C(;) or a newline) into the socket.

Answers are checked, not trusted: the timeout bounds the whole exchange, every answer must end with
the empty line HAProxy ends each answer with (else it was cut off), and the parsers check the shape
of C(show stat) and C(show servers state) (header, field count of every row) instead of padding or
guessing.
"""

from __future__ import annotations

import csv
import errno
import socket
import time

from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._http import host_problem
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import seconds_problem

SERVER_STATES = ('ready', 'drain', 'maint')

# srv_admin_state bits of `show servers state` (HAProxy 1.6 and later, include/haproxy/server-t.h).
ADMF_FMAINT = 0x01   # forced into maintenance (CLI / API / config "disabled")
ADMF_IMAINT = 0x02   # maintenance inherited from a tracked server
ADMF_CMAINT = 0x04   # config said "disabled"; informative only once FMAINT is cleared
ADMF_FDRAIN = 0x08   # forced into drain (CLI / API)
ADMF_IDRAIN = 0x10   # drain inherited from a tracked server
ADMF_RMAINT = 0x20   # maintenance because the server address could not be resolved
ADMF_MAINT = ADMF_FMAINT | ADMF_IMAINT | ADMF_RMAINT
ADMF_DRAIN = ADMF_FDRAIN | ADMF_IDRAIN

# srv_op_state of `show servers state`.
OP_STATES = {0: 'stopped', 1: 'starting', 2: 'running', 3: 'stopping'}

# The largest answer read from the socket; `show stat` of a very large configuration stays far below.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class HAProxyError(Exception):
    """A runtime API call failed; the message names the socket or address and what to do."""


class HAProxyConnectionError(HAProxyError):
    """The runtime API could not be reached or did not answer in time (as opposed to an answer that says no)."""


class HAProxyIncompleteError(HAProxyConnectionError):
    """The answer is empty or lacks the empty line HAProxy ends every answer with: the connection closed early."""


class HAProxyUnsupportedError(HAProxyError):
    """This HAProxy does not know the command (it answered C(Unknown command...))."""


def validate_name(kind, value):
    """Refuse a backend or server name that could inject a runtime API command.

    Raises C(HAProxyError) if C(value) is empty or contains C(;), whitespace (newlines included),
    C(#), a backslash, C(/) (the backend/server separator) or a non-printable character.
    HAProxy itself only accepts letters, digits and C(-_.:) in these names.
    """
    if not isinstance(value, str) or value == '':
        raise HAProxyError('The HAProxy %s name must be a non-empty string, got %r.' % (kind, value))
    for char in value:
        if char in ';#\\/' or char.isspace() or not char.isprintable():
            raise HAProxyError(
                'Refusing HAProxy %s name %r: it contains %r, which could change the runtime API command. '
                'HAProxy %s names only use letters, digits and "-_.:".' % (kind, value, char, kind))
    return value


def _first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ''


def _excerpt(line, limit=120):
    return line if len(line) <= limit else line[:limit - 3] + '...'


def _content_lines(text, what, expected):
    """The lines of an answer without the blank lines around it; raises C(HAProxyError) if there are none
    or if a blank line sits in the middle (two answers, or a garbled one)."""
    lines = to_text(text, errors='surrogate_or_replace').splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise HAProxyError('got an empty answer to "%s", expected %s' % (what, expected))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise HAProxyError('the answer to "%s" has an empty line in the middle (line %d), expected %s without one'
                               % (what, number, expected))
    return lines


def parse_stat_csv(text):
    """Parse C(show stat) CSV output into a list of dicts keyed by the header names.

    The shape is checked, not guessed: a C(# pxname,svname,...) header line, then rows with exactly as
    many fields as the header (HAProxy ends both with a comma). Blank lines before the header (older
    versions) and after the last row (the CLI's terminating empty line) are ignored. Empty column
    names (the trailing comma) and C(-) are dropped from the rows. An empty answer, a missing header
    (HAProxy prints errors such as C(Permission denied) in place of the CSV, quoted in the message),
    or a row with another number of fields (a cut-off answer) raises C(HAProxyError).
    """
    expected = 'CSV starting with a "# pxname,svname,..." header line'
    lines = _content_lines(text, 'show stat', expected)
    header_line = lines[0]
    if not header_line.startswith('#'):
        raise HAProxyError('expected "show stat" %s, got: %s' % (expected, _excerpt(header_line, 200)))
    header = [name.strip() for name in next(csv.reader([header_line.lstrip('#').strip()]))]
    if 'pxname' not in header or 'svname' not in header:
        raise HAProxyError('the "show stat" header has no pxname/svname column: %s' % _excerpt(header_line, 200))
    rows = []
    for number, values in enumerate(csv.reader(lines[1:]), 2):
        if len(values) != len(header):
            raise HAProxyError('line %d of the "show stat" answer has %d fields where the header has %d (a cut-off or '
                               'garbled answer): %s' % (number, len(values), len(header), _excerpt(lines[number - 1])))
        rows.append(dict((name, value) for name, value in zip(header, values) if name and name != '-'))
    return rows


SERVERS_STATE_COLUMNS = ('be_name', 'srv_name', 'srv_op_state', 'srv_admin_state')


def parse_servers_state(text):
    """Parse C(show servers state) output (a version line, a C(#) header, space separated rows).

    Returns a list of dicts keyed by the header names (C(be_name), C(srv_name), C(srv_op_state),
    C(srv_admin_state), ...); values stay strings. The shape is checked: the version line C(1), a
    C(# be_id be_name ...) header with the columns this collection reads, and rows with exactly as many
    fields as the header. A backend without servers gives the header alone, so an empty list. Anything
    else (an empty answer, HAProxy's C(Can't find backend.), a cut-off row) raises C(HAProxyError);
    an HAProxy without the command (C(Unknown command...)) raises C(HAProxyUnsupportedError).
    """
    expected = 'a version line "1" and a "# be_id be_name ..." header'
    lines = _content_lines(text, 'show servers state', expected)
    version = lines[0].strip()
    if lines[0].startswith('Unknown command'):
        raise HAProxyUnsupportedError('this HAProxy has no "show servers state" (older than 1.6): %s' % _excerpt(version, 200))
    if not version.isdigit():
        raise HAProxyError('expected "show servers state" output starting with %s, got: %s' % (expected, _excerpt(version, 200)))
    if version != '1':
        raise HAProxyError('unsupported "show servers state" format version %s (this collection reads version 1)' % version)
    if len(lines) < 2 or not lines[1].startswith('#'):
        raise HAProxyError('the "show servers state" output has no "# be_id be_name ..." header line after the version line')
    header = lines[1].lstrip('#').split()
    missing = [name for name in SERVERS_STATE_COLUMNS if name not in header]
    if missing:
        raise HAProxyError('the "show servers state" header lacks the column(s) %s: %s' % (', '.join(missing), _excerpt(lines[1], 200)))
    rows = []
    for number, line in enumerate(lines[2:], 3):
        if line.startswith('#'):
            continue
        values = line.split()
        if len(values) != len(header):
            raise HAProxyError('line %d of the "show servers state" answer has %d fields where the header has %d (a cut-off '
                               'or garbled answer): %s' % (number, len(values), len(header), _excerpt(line)))
        rows.append(dict(zip(header, values)))
    return rows


def parse_info(text):
    """Parse C(show info) output (C(Name: value) lines) into a dict of strings; anything else raises C(HAProxyError)."""
    lines = _content_lines(text, 'show info', '"Name: value" lines')
    info = {}
    for number, line in enumerate(lines, 1):
        if ':' not in line:
            raise HAProxyError('line %d of the "show info" answer is not a "Name: value" line: %s' % (number, _excerpt(line)))
        key, value = line.split(':', 1)
        info[key.strip()] = value.strip()
    return info


def runtime_api_spec(server=False, timeout=True, required=False):
    """Argument spec of a module's C(haproxy) option: the runtime API as a unix C(socket), or C(host) and
    C(port); with C(server), also the C(backend) and C(server) it is about."""
    options = dict(socket=dict(type='path'), host=dict(type='str'), port=dict(type='int'))
    if server:
        options.update(backend=dict(type='str', required=True), server=dict(type='str', required=True))
    if timeout:
        options['timeout'] = dict(type='float', default=5.0)
    spec = dict(type='dict', options=options, mutually_exclusive=[('socket', 'host')],
                required_one_of=[('socket', 'host')], required_together=[('host', 'port')])
    if required:
        spec['required'] = True
    return spec


def admin_state_name(admin_state):
    """C(ready), C(drain) or C(maint) for a C(srv_admin_state) bit field, as HAProxy itself names it."""
    if admin_state & ADMF_MAINT:
        return 'maint'
    if admin_state & ADMF_DRAIN:
        return 'drain'
    return 'ready'


def status_admin_state(status):
    """The admin state implied by a C(show stat) C(status) value (C(MAINT*), C(DRAIN*) or anything else).

    Only a fallback: HAProxy shows C(DOWN) for a stopped server even when it is in drain.
    """
    status = (status or '').strip().upper()
    if status.startswith('MAINT'):
        return 'maint'
    if status.startswith('DRAIN'):
        return 'drain'
    return 'ready'


class HAProxyRuntime(object):
    """One HAProxy runtime API endpoint: a unix socket or a TCP address."""

    def __init__(self, socket_path=None, host=None, port=None, timeout=5.0):
        if socket_path is not None and not isinstance(socket_path, str):
            raise HAProxyError('haproxy.socket must be a path, got %r.' % (socket_path,))
        if socket_path == '' and not host:
            raise HAProxyError('haproxy.socket is empty: give the path of the runtime API socket (the "stats socket" '
                               'line of the global section of haproxy.cfg), or haproxy.host and haproxy.port.')
        if bool(socket_path) == bool(host):
            raise HAProxyError('Give exactly one of an HAProxy runtime socket path (haproxy.socket) or a host and port '
                               '(haproxy.host, haproxy.port).')
        if socket_path and '\x00' in socket_path:
            raise HAProxyError('Refusing haproxy.socket %r: it contains a NUL character.' % socket_path)
        if host:
            problem = host_problem(host)
            if problem:
                raise HAProxyError('Invalid haproxy.host: %s.' % problem)
            if port is None:
                raise HAProxyError('The HAProxy runtime API at host %s needs a port (haproxy.port).' % host)
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise HAProxyError('haproxy.port must be between 1 and 65535, got %s.' % (port,))
        problem = seconds_problem('haproxy.timeout', timeout, minimum=0.0, above=True, allow_none=False)
        if problem:
            raise HAProxyError('%s.' % problem)
        self.socket_path = socket_path or None
        self.host = host or None
        self.port = port if host else None
        self.timeout = float(timeout)

    def describe(self):
        if self.socket_path:
            return 'HAProxy runtime socket %s' % self.socket_path
        return 'HAProxy runtime API at %s:%s' % (self.host, self.port)

    def _connect(self, deadline):
        where = self.describe()
        try:
            if self.socket_path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    sock.connect(self.socket_path)
                except Exception:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((self.host, self.port), timeout=max(0.001, deadline - time.monotonic()))
        except socket.timeout:
            raise HAProxyConnectionError('%s: no connection within %s seconds (haproxy.timeout); is HAProxy overloaded or '
                                         'the address wrong?' % (where, self.timeout))
        except (IOError, OSError) as exc:
            code = getattr(exc, 'errno', None)
            if code == errno.ENOENT:
                hint = ('the socket does not exist; is HAProxy running, and does its global section have '
                        '"stats socket %s level admin"?' % self.socket_path)
            elif code in (errno.EACCES, errno.EPERM):
                hint = 'permission denied; run the task with become (or as a user allowed on the socket)'
            elif code == errno.ECONNREFUSED:
                hint = 'connection refused; nothing is listening (HAProxy stopped, or a stale socket file)'
            else:
                hint = to_text(exc, errors='surrogate_or_replace')
            raise HAProxyConnectionError('Cannot connect to %s: %s.' % (where, hint))
        return sock

    def command(self, cmd):
        """Send one command and return HAProxy's complete answer as text.

        C(timeout) bounds the whole exchange (connection, command, answer), not each read. The answer
        must end with the empty line HAProxy ends every answer with (C(set server) success is that
        line alone); an empty or cut-off answer raises C(HAProxyIncompleteError).
        """
        if not cmd or '\n' in cmd or '\r' in cmd or ';' in cmd:
            raise HAProxyError('Refusing to send %r to HAProxy: one command per call, without ";" or newlines.' % cmd)
        where = self.describe()
        deadline = time.monotonic() + self.timeout
        sock = self._connect(deadline)
        chunks = []
        total = 0
        try:
            sock.sendall(to_bytes(cmd) + b'\n')
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout()
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                total += len(data)
                if total > MAX_RESPONSE_BYTES:
                    raise HAProxyError('%s: the answer to "%s" is larger than %d bytes; giving up.' % (where, cmd, MAX_RESPONSE_BYTES))
        except socket.timeout:
            raise HAProxyConnectionError('%s: no complete answer to "%s" within %s seconds (haproxy.timeout bounds the whole '
                                         'exchange; %d bytes had arrived).' % (where, cmd, self.timeout, total))
        except (IOError, OSError) as exc:
            raise HAProxyConnectionError('%s: "%s" failed: %s.' % (where, cmd, to_text(exc, errors='surrogate_or_replace')))
        finally:
            sock.close()
        raw = b''.join(chunks)
        text = raw.decode('utf-8', 'replace')
        if not raw:
            raise HAProxyIncompleteError('%s: empty answer to "%s": HAProxy closed the connection without answering, not even '
                                         'with the empty line that ends every answer. Re-run; if it persists, check the '
                                         'HAProxy log (a reload or a crash closes CLI connections).' % (where, cmd))
        if raw != b'\n' and not raw.endswith(b'\n\n'):
            raise HAProxyIncompleteError('%s: the answer to "%s" is cut off: %d bytes without the empty line that ends every '
                                         'HAProxy answer (it begins: %s). Re-run; if it persists, check the HAProxy log '
                                         '(a reload or a crash closes CLI connections).'
                                         % (where, cmd, len(raw), _excerpt(_first_line(text), 80)))
        return text

    def show_stat(self):
        text = self.command('show stat')
        try:
            return parse_stat_csv(text)
        except HAProxyError as exc:
            raise HAProxyError('%s: %s' % (self.describe(), exc))

    def show_info(self):
        text = self.command('show info')
        try:
            return parse_info(text)
        except HAProxyError as exc:
            raise HAProxyError('%s: %s' % (self.describe(), exc))

    def servers_state(self, backend=None):
        """Rows of C(show servers state), for one backend if given."""
        cmd = 'show servers state'
        if backend is not None:
            cmd += ' ' + validate_name('backend', backend)
        text = self.command(cmd)
        try:
            return parse_servers_state(text)
        except HAProxyError as exc:
            raise type(exc)('%s: "%s" failed: %s' % (self.describe(), cmd, exc))

    def server_stat(self, backend, server):
        """The C(show stat) row of C(backend)/C(server)."""
        validate_name('backend', backend)
        validate_name('server', server)
        rows = self.show_stat()
        for row in rows:
            if row.get('pxname') == backend and row.get('svname') == server and server not in ('FRONTEND', 'BACKEND'):
                return row
        raise self._unknown(rows, backend, server)

    def _unknown(self, rows, backend, server):
        backends = sorted(set(r['pxname'] for r in rows if r.get('svname') == 'BACKEND'))
        servers = [r['svname'] for r in rows if r.get('pxname') == backend and r.get('svname') not in ('FRONTEND', 'BACKEND')]
        if backend not in backends and not servers:
            return HAProxyError('%s has no backend %r (so no server %s/%s). Known backends: %s.' % (
                self.describe(), backend, backend, server, ', '.join(backends) or 'none'))
        return HAProxyError('%s has no server %r in backend %r. Servers of %s: %s.' % (
            self.describe(), server, backend, backend, ', '.join(servers) or 'none'))

    def set_server_state(self, backend, server, state):
        """C(set server backend/server state ready|drain|maint); HAProxy answers nothing on success."""
        validate_name('backend', backend)
        validate_name('server', server)
        if state not in SERVER_STATES:
            raise HAProxyError('Unknown HAProxy server state %r; expected one of %s.' % (state, ', '.join(SERVER_STATES)))
        cmd = 'set server %s/%s state %s' % (backend, server, state)
        answer = self.command(cmd).strip()
        if answer and answer.upper() != 'OK':
            hint = ''
            if 'permission denied' in answer.lower():
                hint = ' The socket needs "level admin" in the HAProxy "stats socket" line.'
            raise HAProxyError('%s refused "%s": %s%s' % (self.describe(), cmd, _first_line(answer)[:300], hint))

    def get_weight(self, backend, server):
        """C((current, initial)) weight of C(backend)/C(server) (C(get weight))."""
        cmd = 'get weight %s/%s' % (validate_name('backend', backend), validate_name('server', server))
        text = self.command(cmd)
        try:
            return parse_weight(text)
        except HAProxyError as exc:
            raise HAProxyError('%s: %s' % (self.describe(), exc))

    def set_weight(self, backend, server, weight):
        """C(set weight backend/server <weight>) (absolute); HAProxy answers nothing on success."""
        validate_name('backend', backend)
        validate_name('server', server)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise HAProxyError('An HAProxy weight must be a whole number from 0 to %d, got %r.' % (MAX_WEIGHT, weight))
        cmd = 'set weight %s/%s %d' % (backend, server, weight)
        answer = self.command(cmd).strip()
        if answer:
            hint = ''
            if 'static' in answer.lower():
                hint = ' (its backend uses a static balancing algorithm)'
            elif 'permission denied' in answer.lower():
                hint = ' The socket needs "level admin" in the HAProxy "stats socket" line.'
            raise HAProxyError('%s refused "%s": %s%s' % (self.describe(), cmd, _first_line(answer)[:300], hint))


# -- server weights (the weight ramp of lb_batch_state) --------------------------------------------

# HAProxy's own limit for an absolute weight (management guide, "set weight").
MAX_WEIGHT = 256

# `balance` algorithms, as the `algo` column of `show stat` (HAProxy 2.6) names them for BACKEND rows.
# Dynamic ones take any weight at run time. A hash-based one is static (HAProxy then accepts only 0 and
# 100 % in `set weight`) unless the backend has `hash-type consistent`; static-rr is always static
# (configuration manual, "balance" and "hash-type"; management guide, "set weight").
DYNAMIC_ALGORITHMS = ('roundrobin', 'leastconn', 'first', 'random')
HASH_ALGORITHMS = ('source', 'uri', 'url_param', 'hdr', 'rdp-cookie', 'hash')
STATIC_ALGORITHMS = ('static-rr',)


def parse_weight(text):
    """C((current, initial)) from a C(get weight <backend>/<server>) answer (C(7 (initial 10))).

    Any other shape (HAProxy's C(No such server.), a cut-off answer) raises C(HAProxyError) quoting it.
    """
    lines = _content_lines(text, 'get weight', 'a "<weight> (initial <weight>)" line')
    words = lines[0].split()
    if (len(lines) != 1 or len(words) != 3 or not words[0].isdigit() or words[1] != '(initial'
            or not words[2].endswith(')') or not words[2][:-1].isdigit()):
        raise HAProxyError('expected "get weight" to answer "<weight> (initial <weight>)", got: %s'
                           % _excerpt(' | '.join(lines), 200))
    return int(words[0]), int(words[2][:-1])


def weight_dynamics(backend, algo=None, config=None):
    """Whether C(set weight) may take any value on C(backend): C((True|False|None, why)).

    C(algo) is the running algorithm (the C(algo) column of C(show stat)'s BACKEND row; None or
    C(unknown) when this HAProxy does not tell), C(config) what C(_haproxy_checks.backend_balancing()) read
    from the configuration (None when it could not be read). False: static, C(set weight) only takes 0 or 100 %.
    None: not known, which a caller must treat as static.
    """
    section = (config or {}).get(backend) if config is not None else None
    if algo in (None, '', 'unknown'):
        if section is None:
            return None, ('the algorithm of backend %s is not known: %s' % (
                backend, 'the configuration could not be read' if config is None else 'the configuration has no such backend'))
        algo = section.get('balance') or 'roundrobin'
        source = 'balance %s in the configuration' % algo
    else:
        source = 'algorithm %s (show stat)' % algo
    if algo in DYNAMIC_ALGORITHMS:
        return True, source
    if algo in STATIC_ALGORITHMS:
        return False, '%s is static' % source
    if algo in HASH_ALGORITHMS:
        if section is None:
            return None, ('%s is static unless the backend has "hash-type consistent", and the configuration %s'
                          % (source, 'could not be read' if config is None else 'has no backend %s' % backend))
        hash_type = section.get('hash_type') or 'map-based'
        if hash_type == 'consistent':
            return True, '%s with hash-type consistent' % source
        return False, '%s with hash-type %s is static' % (source, hash_type)
    return None, '%s is not one this collection knows' % source
