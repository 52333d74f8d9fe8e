# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Remove, put back or make final what depended on a retired model, each item with its previous state.

Private to this collection; the module C(model_dependencies) is its front end. One handler class per kind
(C(haproxy_server), C(haproxy_map), C(systemd_timer), C(systemd_unit), C(prometheus_rules), C(http_hook)),
all behind one interface (C(absent()), C(present(previous)), C(final(previous)), C(where()),
C(next_command())); C(DependencyManager.run()) dispatches each item to its handler, times it and turns a
C(DependencyError) (or any other exception) into a failed item, so that every item is tried.

Text files are edited as a list of the pieces between C("\\n") characters (C(text.split("\\n"))), joined back
with C("\\n"): whatever the line endings and whether the file ends with a newline, removing lines and putting
them back at their indices gives the original bytes. Files are replaced atomically (a temporary file in the same
folder, the mode and owner of the original, C(os.replace)).

Tools are called with argv lists only (C(haproxy -c -f), C(systemctl)); HTTP goes through C(_http.request) and
the HAProxy runtime API through C(_haproxy.HAProxyRuntime). In check mode only reads happen.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import tempfile
import time

from ansible_collections.modelops.shutdown.plugins.module_utils import _haproxy
from ansible_collections.modelops.shutdown.plugins.module_utils._http import (
    HttpError, check_url, display_url, is_sensitive_header, make_masker, request)
from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import number_problems
from ansible_collections.modelops.shutdown.plugins.module_utils._systemd import (
    ACTIVE_STATES, Systemctl, SystemctlError, SystemdParseError, parse_show_one, unit_args, unit_name_problem)

KINDS = ('haproxy_server', 'haproxy_map', 'systemd_timer', 'systemd_unit', 'prometheus_rules', 'http_hook')
STATES = ('absent', 'present', 'final')
STATUSES = ('done', 'unchanged', 'failed', 'skipped')

HAPROXY_CFG = '/etc/haproxy/haproxy.cfg'
# Where systemd drop-in folders of a unit live (C(<dir>/<unit>.d)); removed by systemd_unit at state final.
DROPIN_DIRS = ('/etc/systemd/system', '/run/systemd/system')
SECTION_KEYWORDS = ('global', 'defaults', 'frontend', 'backend', 'listen', 'peers', 'resolvers', 'userlist',
                    'program', 'http-errors', 'ring', 'cache', 'mailers')
HTTP_METHODS = ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')
DEFAULT_EXPECT_STATUS = [200, 201, 202, 204]
POLL_INTERVAL = 0.5
MAX_SAVED_BYTES = 65536
RESPONSE_CHARS = 2000
# srv_check_state bit of `show servers state`: a health check is configured (include/haproxy/check-t.h).
CHK_ST_CONFIGURED = 0x02
ENABLED_STATES = ('enabled', 'enabled-runtime')
MASKED_STATES = ('masked', 'masked-runtime')

_TIMEOUTS = dict(minimum=0.0, above=True, allow_none=False)
SECONDS = {
    'haproxy_server.timeout': _TIMEOUTS, 'haproxy_server.haproxy.timeout': _TIMEOUTS,
    'haproxy_map.haproxy.timeout': _TIMEOUTS, 'prometheus_rules.timeout': _TIMEOUTS, 'http_hook.timeout': _TIMEOUTS,
}


class DependencyError(Exception):
    """One item failed; the message says what was found, what was expected, and C(next) the command to look with."""

    def __init__(self, message, next_command=None):
        super(DependencyError, self).__init__(message)
        self.next_command = next_command


# --------------------------------------------------------------------------------------------- argument spec

def _request_spec():
    return dict(type='dict', options=dict(
        url=dict(type='str'),
        method=dict(type='str', default='POST', choices=list(HTTP_METHODS)),
        body=dict(type='raw'),
        headers=dict(type='dict'),
    ))


def item_options():
    """The options of one item of C(dependencies) (a new dict on every call)."""
    return dict(
        name=dict(type='str'),
        previous=dict(type='raw'),
        haproxy_server=dict(type='dict', options=dict(
            backend=dict(type='str', required=True),
            server=dict(type='str', required=True),
            method=dict(type='str', default='config', choices=['config', 'runtime']),
            config=dict(type='path', default=HAPROXY_CFG),
            unit=dict(type='str', default='haproxy.service'),
            haproxy=_haproxy.runtime_api_spec(),
            timeout=dict(type='float', default=30.0),
        ), required_if=[('method', 'runtime', ['haproxy'])]),
        haproxy_map=dict(type='dict', options=dict(
            path=dict(type='path', required=True),
            key=dict(type='str', required=True, no_log=False),
            haproxy=_haproxy.runtime_api_spec(),
        )),
        systemd_timer=dict(type='dict', options=dict(
            unit=dict(type='str', required=True),
        )),
        systemd_unit=dict(type='dict', options=dict(
            unit=dict(type='str', required=True),
            files=dict(type='list', elements='path', default=[]),
            dropins=dict(type='bool', default=True),
        )),
        prometheus_rules=dict(type='dict', options=dict(
            path=dict(type='path', required=True),
            url=dict(type='str', default='http://127.0.0.1:9090'),
            reload=dict(type='str', default='systemd', choices=['systemd', 'http']),
            unit=dict(type='str', default='prometheus.service'),
            timeout=dict(type='float', default=30.0),
            validate_certs=dict(type='bool', default=True),
            token=dict(type='str', no_log=True),
        )),
        http_hook=dict(type='dict', options=dict(
            url=dict(type='str', required=True),
            method=dict(type='str', default='POST', choices=list(HTTP_METHODS)),
            body=dict(type='raw'),
            headers=dict(type='dict'),
            token=dict(type='str', no_log=True),
            validate_certs=dict(type='bool', default=True),
            timeout=dict(type='float', default=10.0),
            expect_status=dict(type='list', elements='int', default=list(DEFAULT_EXPECT_STATUS)),
            undo=_request_spec(),
            final=_request_spec(),
        )),
    )


def argument_spec():
    """The C(model_dependencies) module's argument spec (a new dict on every call)."""
    return dict(
        state=dict(type='str', default='absent', choices=list(STATES)),
        dependencies=dict(type='list', elements='dict', required=True, options=item_options(),
                          mutually_exclusive=[list(KINDS)], required_one_of=[list(KINDS)]),
    )


def kind_of(item):
    for kind in KINDS:
        if item.get(kind) is not None:
            return kind
    return None


def _absolute(path):
    return isinstance(path, str) and os.path.isabs(path) and '\x00' not in path


def _runtime_word(value):
    """Whether C(value) can be one word of a runtime API command (no whitespace, C(;), C(#) or control character)."""
    return isinstance(value, str) and value != '' and not any(
        c.isspace() or c in ';#\\' or not c.isprintable() for c in value)


def check_params(params):
    """Problems the argument spec cannot express (a list of sentences): numbers, names, paths, URLs, C(previous)."""
    problems = []
    options = item_options()
    for index, item in enumerate(params.get('dependencies') or []):
        where = 'dependencies[%d].' % index
        problems.extend(number_problems(options, item, where, SECONDS))
        kind = kind_of(item)
        opts = item.get(kind) or {}
        if params.get('state') == 'present' and item.get('previous') is None:
            problems.append('%sprevious is required with state=%s: give what state=absent returned as previous for this '
                            'item (its dependencies[].previous)' % (where, params['state']))
        for name in ('unit',):
            if kind in ('haproxy_server', 'systemd_timer', 'systemd_unit', 'prometheus_rules') and opts.get(name) is not None:
                if kind == 'prometheus_rules' and opts.get('reload') != 'systemd':
                    continue
                problem = unit_name_problem(opts[name])
                if problem:
                    problems.append('%s%s.unit %r %s' % (where, kind, opts[name], problem))
        if kind == 'haproxy_server':
            for name in ('backend', 'server'):
                try:
                    _haproxy.validate_name(name, opts.get(name))
                except _haproxy.HAProxyError as exc:
                    problems.append('%s%s.%s: %s' % (where, kind, name, exc))
            if not _absolute(opts.get('config')):
                problems.append('%s%s.config must be an absolute path, got %r' % (where, kind, opts.get('config')))
        elif kind == 'haproxy_map':
            if not _absolute(opts.get('path')):
                problems.append('%shaproxy_map.path must be an absolute path, got %r' % (where, opts.get('path')))
            elif opts.get('haproxy') and not _runtime_word(opts['path']):
                problems.append('%shaproxy_map.path %r cannot be named in a runtime API command (whitespace, ";" or "#")'
                                % (where, opts['path']))
            if not _runtime_word(opts.get('key')):
                problems.append('%shaproxy_map.key must be one map key: not empty, without whitespace, ";", "#", "\\" '
                                'or control characters, got %r' % (where, opts.get('key')))
        elif kind == 'systemd_unit':
            for path in opts.get('files') or []:
                if not _absolute(path):
                    problems.append('%ssystemd_unit.files: %r is not an absolute path' % (where, path))
        elif kind == 'prometheus_rules':
            if not _absolute(opts.get('path')):
                problems.append('%sprometheus_rules.path must be an absolute path, got %r' % (where, opts.get('path')))
            try:
                check_url(opts.get('url'), 'prometheus_rules.url')
            except HttpError as exc:
                problems.append('%s%s' % (where, exc))
        elif kind == 'http_hook':
            for label, url in (('url', opts.get('url')), ('undo.url', (opts.get('undo') or {}).get('url')),
                               ('final.url', (opts.get('final') or {}).get('url'))):
                if url is None and label != 'url':
                    continue
                try:
                    check_url(url, 'http_hook.%s' % label)
                except HttpError as exc:
                    problems.append('%s%s' % (where, exc))
            for status in opts.get('expect_status') or []:
                if not 100 <= status <= 599:
                    problems.append('%shttp_hook.expect_status: %s is not an HTTP status (100 to 599)' % (where, status))
            if opts.get('expect_status') == []:
                problems.append('%shttp_hook.expect_status must list at least one status' % where)
    return problems


# --------------------------------------------------------------------------------------------- text editing

def split_text(text):
    """The pieces of C(text) between C("\\n") characters; C("\\n".join()) gives C(text) back exactly."""
    return text.split('\n')


def join_text(pieces):
    return '\n'.join(pieces)


def content_length(pieces):
    """The number of pieces that are lines (the empty piece after a final newline is not one)."""
    return len(pieces) - 1 if pieces and pieces[-1] == '' else len(pieces)


def _words(line):
    return line.split()


def find_sections(pieces, names, keywords=('backend', 'listen')):
    """C([(start, end)]) of each section C(<keyword> <name>) (C(keyword) in C(keywords)): C(start) the index of its
    header line, C(end) the index of the next section's header (or the end of the text)."""
    found = []
    starts = [i for i, line in enumerate(pieces) if _words(line)[:1] and _words(line)[0] in SECTION_KEYWORDS]
    for number, start in enumerate(starts):
        words = _words(pieces[start])
        if words[0] in keywords and len(words) > 1 and words[1] in names:
            end = starts[number + 1] if number + 1 < len(starts) else content_length(pieces)
            found.append((start, max(end, start + 1)))
    return found


def backend_section(pieces, backend):
    """C((start, end)) of the one C(backend <backend>) (or C(listen <backend>)) section; raises C(DependencyError)."""
    sections = find_sections(pieces, (backend,))
    if not sections:
        raise DependencyError('no "backend %s" section in the configuration, expected exactly one' % backend)
    if len(sections) > 1:
        raise DependencyError('%d sections named %s in the configuration (lines %s), expected exactly one' % (
            len(sections), backend, ', '.join(str(section[0] + 1) for section in sections)))
    return sections[0]


def server_lines(pieces, section, server):
    """Indices (in C(pieces)) of the C(server <server> ...) lines of C(section)."""
    start, end = section
    return [i for i in range(start + 1, end) if _words(pieces[i])[:2] == ['server', server]]


def remove_server(text, backend, server):
    """C((new_text, record)) without the one C(server <server>) line of C(backend); C(record) is None (no such
    line: C(new_text) is C(text)) or C({line, index}), C(index) relative to the section's header line.
    Several such lines raise C(DependencyError)."""
    pieces = split_text(text)
    section = backend_section(pieces, backend)
    found = server_lines(pieces, section, server)
    if not found:
        return text, None
    if len(found) > 1:
        raise DependencyError('backend %s has %d "server %s" lines (lines %s), expected at most one' % (
            backend, len(found), server, ', '.join(str(i + 1) for i in found)))
    line = pieces.pop(found[0])
    return join_text(pieces), {'line': line, 'index': found[0] - section[0]}


def insert_server(text, backend, server, line, index):
    """C(new_text) with C(line) put back at C(index) of C(backend)'s section (clamped to the section), or C(text)
    when the section already has a C(server <server>) line."""
    pieces = split_text(text)
    section = backend_section(pieces, backend)
    if server_lines(pieces, section, server):
        return text
    start, end = section
    if int(index) <= end - start:
        position = start + max(1, int(index))
    else:
        # Past the section (it has fewer lines now): after its last line that is not blank.
        position = end
        while position - 1 > start and not pieces[position - 1].strip():
            position -= 1
    pieces.insert(position, line)
    return join_text(pieces)


def _map_key(line):
    words = _words(line)
    if not words or words[0].startswith('#'):
        return None
    return words[0]


def remove_map_entries(text, key):
    """C((new_text, entries)): C(text) without every line whose first field is C(key); C(entries) the removed
    C({index, line}) in order (indices in the original text). Blank and comment lines are never touched."""
    pieces = split_text(text)
    entries = [{'index': i, 'line': line} for i, line in enumerate(pieces) if _map_key(line) == key]
    if not entries:
        return text, []
    gone = set(e['index'] for e in entries)
    return join_text([line for i, line in enumerate(pieces) if i not in gone]), entries


def insert_map_entries(text, entries, final_newline=True):
    """C(text) with C(entries) (C({index, line})) put back at their indices (in ascending order, clamped to the end).

    C(final_newline) says whether the original ended with a newline; it only matters when C(text) is empty (every
    line was removed), which is the one case where the text alone cannot tell.
    """
    pieces = split_text(text) if text else ([''] if final_newline else [])
    for entry in sorted(entries, key=lambda e: e['index']):
        pieces.insert(max(0, min(int(entry['index']), content_length(pieces))), entry['line'])
    return join_text(pieces)


# --------------------------------------------------------------------------------------------- files

def read_file(path):
    """C((text, st)) of C(path), or C((None, None)) when it does not exist. Raises C(DependencyError)."""
    try:
        with open(path, 'rb') as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise DependencyError('%s is not a regular file' % path)
            raw = handle.read()
    except (IOError, OSError) as exc:
        if getattr(exc, 'errno', None) == 2:
            return None, None
        raise DependencyError('cannot read %s: %s' % (path, exc.strerror or exc))
    try:
        return raw.decode('utf-8'), st
    except UnicodeDecodeError as exc:
        raise DependencyError('%s is not UTF-8 text (%s); it is left as it is' % (path, exc))


def mode_text(st):
    return None if st is None else '%04o' % stat.S_IMODE(st.st_mode)


def parse_mode(value, default=0o644):
    if value is None:
        return default
    try:
        mode = int(str(value), 8)
    except ValueError:
        raise DependencyError('previous mode %r is not an octal file mode such as "0644"' % (value,))
    if not 0 <= mode <= 0o7777:
        raise DependencyError('previous mode %r is not a file mode' % (value,))
    return mode


def write_temp(path, text, mode, st=None):
    """Write C(text) to a new temporary file in C(path)'s folder with C(mode) (and C(st)'s owner); return its path."""
    folder = os.path.dirname(path) or '.'
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix='.%s.modelops-' % os.path.basename(path))
    except (IOError, OSError) as exc:
        raise DependencyError('cannot create a temporary file in %s: %s' % (folder, exc.strerror or exc))
    try:
        try:
            os.write(fd, text.encode('utf-8'))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(temp, mode)
        if st is not None:
            mine = os.stat(temp)
            if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                os.chown(temp, st.st_uid, st.st_gid)
    except (IOError, OSError) as exc:
        remove_quietly(temp)
        raise DependencyError('cannot write %s (mode %04o, owner of the original kept): %s' % (
            temp, mode, exc.strerror or exc))
    return temp


def replace(temp, path):
    try:
        os.replace(temp, path)
    except (IOError, OSError) as exc:
        remove_quietly(temp)
        raise DependencyError('cannot replace %s: %s' % (path, exc.strerror or exc))


def write_atomic(path, text, mode, st=None):
    replace(write_temp(path, text, mode, st), path)


def remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def saved_content(path):
    """C({path, content, mode, truncated}) of a file about to be removed (the first 64 KiB, as text)."""
    try:
        with open(path, 'rb') as handle:
            st = os.fstat(handle.fileno())
            raw = handle.read(MAX_SAVED_BYTES + 1)
    except (IOError, OSError) as exc:
        raise DependencyError('cannot read %s before removing it: %s' % (path, exc.strerror or exc))
    return {'path': path, 'content': raw[:MAX_SAVED_BYTES].decode('utf-8', 'replace'), 'mode': mode_text(st),
            'truncated': len(raw) > MAX_SAVED_BYTES}


# --------------------------------------------------------------------------------------------- handlers

class Handler(object):
    """One item of one kind. C(absent()), C(present(previous)) and C(final(previous)) return
    C({changed, previous, new, msg}) or raise C(DependencyError)."""

    kind = ''

    def __init__(self, manager, options):
        self.manager = manager
        self.options = options
        self.check_mode = manager.check_mode
        # What was changed before a failure: C({changed, previous, new}), so that the result still says it.
        self.partial = None

    def where(self):
        raise NotImplementedError

    def next_command(self):
        return None

    def absent(self):
        raise NotImplementedError

    def present(self, previous):
        raise NotImplementedError

    def final(self, previous):
        return self.absent()

    @staticmethod
    def outcome(changed, previous, new, msg=''):
        return {'changed': bool(changed), 'previous': previous, 'new': new, 'msg': msg}

    def begin(self, previous, new):
        """Record that the host is about to change: a failure from here on still returns C(previous)."""
        self.partial = {'changed': True, 'previous': previous, 'new': new}

    def need(self, previous, *keys):
        """C(previous) as a dict with C(keys); raises C(DependencyError) saying what was expected."""
        if not isinstance(previous, dict) or any(key not in previous for key in keys):
            raise DependencyError('previous is not what state=absent returned for a %s item: expected a dict with %s, '
                                  'got %s' % (self.kind, ', '.join(keys), _short(previous)))
        return previous

    def systemctl(self):
        path = self.manager.get_bin_path('systemctl')
        if not path:
            raise DependencyError('systemctl not found on this host', 'command -v systemctl')
        return Systemctl(self.manager.run_command, path)

    def wait(self, probe, done, timeout):
        """C(poll_until) over C(probe) (exceptions become C(('error', message)) values); returns the C(PollResult)."""
        def safe_probe():
            try:
                return probe()
            except (DependencyError, HttpError, _haproxy.HAProxyError) as exc:
                return ('error', str(exc))
        return poll_until(safe_probe, lambda value: not _is_error(value) and done(value), timeout, POLL_INTERVAL)


def _is_error(value):
    return isinstance(value, tuple) and len(value) == 2 and value[0] == 'error'


def _short(value, limit=160):
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _runtime(options):
    """The C(HAProxyRuntime) of C(options) (the C(haproxy) suboptions), or None."""
    if not options:
        return None
    try:
        return _haproxy.HAProxyRuntime(options.get('socket'), options.get('host'), options.get('port'),
                                       options.get('timeout') if options.get('timeout') is not None else 5.0)
    except _haproxy.HAProxyError as exc:
        raise DependencyError(str(exc))


class HAProxyServer(Handler):
    kind = 'haproxy_server'

    def __init__(self, manager, options):
        super(HAProxyServer, self).__init__(manager, options)
        self.backend = options['backend']
        self.server = options['server']
        self.runtime = _runtime(options.get('haproxy'))

    def where(self):
        if self.options['method'] == 'runtime':
            return 'haproxy_server %s/%s (%s)' % (self.backend, self.server, self.runtime.describe())
        return 'haproxy_server %s/%s (%s)' % (self.backend, self.server, self.options['config'])

    def next_command(self):
        if self.options['method'] == 'config':
            return 'haproxy -c -f %s' % self.options['config']
        return self._show_hint()

    def _show_hint(self):
        if self.runtime is None:
            return None
        target = self.runtime.socket_path and 'socat stdio %s' % self.runtime.socket_path or 'socat stdio tcp4:%s:%s' % (
            self.runtime.host, self.runtime.port)
        return 'echo "show servers state %s" | %s' % (self.backend, target)

    # -- runtime state
    def _row(self):
        """The C(show servers state) row of the server, or None when the backend does not list it."""
        for row in self.runtime.servers_state(self.backend):
            if row.get('srv_name') == self.server:
                return row
        return None

    @staticmethod
    def _row_state(row):
        try:
            admin = _haproxy.admin_state_name(int(row.get('srv_admin_state', '0')))
        except ValueError:
            admin = None
        try:
            checks = bool(int(row.get('srv_check_state', '0')) & CHK_ST_CONFIGURED)
        except ValueError:
            checks = False
        port = row.get('srv_port')
        return {'addr': row.get('srv_addr'), 'port': int(port) if port and port.isdigit() else port,
                'admin_state': admin, 'checks': checks}

    def _wait_listed(self, listed):
        want = 'listed again' if listed else 'no longer listed'
        result = self.wait(self._row, lambda row: (row is not None) == listed, self.options['timeout'])
        if not result.satisfied:
            seen = result.last_value[1] if _is_error(result.last_value) else (
                'still listed' if result.last_value is not None else 'not listed')
            raise DependencyError('%s/%s was expected to be %s in "show servers state %s" within %s s (timeout); last '
                                  'seen: %s' % (self.backend, self.server, want, self.backend, self.options['timeout'], seen),
                                  self._show_hint())
        return result.waited_seconds

    # -- dispatch
    def absent(self):
        if self.options['method'] == 'runtime':
            return self._runtime_absent()
        return self._config_absent()

    def present(self, previous):
        previous = self.need(previous, 'present')
        if not previous['present']:
            return self.outcome(False, previous, previous, 'state=absent had found no server to remove; nothing to put back')
        if self.options['method'] == 'runtime':
            return self._runtime_present(previous)
        return self._config_present(previous)

    # -- config
    def _read_config(self):
        text, st = read_file(self.options['config'])
        if text is None:
            raise DependencyError('%s does not exist; expected the HAProxy configuration' % self.options['config'],
                                  'ls -l %s' % self.options['config'])
        return text, st

    @staticmethod
    def _after(done, check, *args):
        """C(check(*args)); its failure says what was already C(done)."""
        try:
            return check(*args)
        except DependencyError as exc:
            raise DependencyError('%s, but %s' % (done, exc), exc.next_command)

    def _apply(self, text, st, previous, new):
        """Validate C(text) with C(haproxy -c -f <temp>), replace the configuration with it, reload HAProxy."""
        haproxy = self.manager.get_bin_path('haproxy')
        if not haproxy:
            raise DependencyError('haproxy not found on this host: the new configuration cannot be validated, so %s is '
                                  'left untouched' % self.options['config'], 'command -v haproxy')
        temp = write_temp(self.options['config'], text, stat.S_IMODE(st.st_mode), st)
        try:
            rc, out, err = self.manager.run_command([haproxy, '-c', '-f', temp])
        except Exception:
            remove_quietly(temp)
            raise
        if rc != 0:
            remove_quietly(temp)
            said = ' '.join(((err or '') + ' ' + (out or '')).split())[:1500] or 'no output'
            raise DependencyError('haproxy -c rejected the edited configuration (rc %s), so %s is left untouched: %s' % (
                rc, self.options['config'], said), 'haproxy -c -f %s' % self.options['config'])
        self.begin(previous, new)
        replace(temp, self.options['config'])
        try:
            self.systemctl()._call(['reload'] + unit_args(self.options['unit']), self.options['unit'], 'Reloading')
        except SystemctlError as exc:
            raise DependencyError('%s was written but %s' % (self.options['config'], exc),
                                  'systemctl status %s' % self.options['unit'])

    # -- what a reload forgets
    def _admin_states(self):
        """C({(backend, server): ready|drain|maint}) of every server HAProxy lists, or None (unreadable)."""
        try:
            rows = self.runtime.servers_state()
        except _haproxy.HAProxyError:
            return None
        return dict(((row.get('be_name'), row.get('srv_name')), self._row_state(row)['admin_state']) for row in rows)

    def _keep_admin_states(self, before):
        """Set again every other server's drain or maintenance that the reload put back to ready.

        Without a server-state file a reload starts every server ready: a host another rollout drained would get
        traffic again. A server the new configuration no longer lists has nothing to keep. Returns the sentence the
        result message gets (empty when nothing needed it)."""
        out_of_service = dict((key, state) for key, state in (before or {}).items() if state in ('drain', 'maint'))
        if not out_of_service:
            return ''
        after = self._admin_states()  # None (unreadable): set every one again, as if each had been forgotten
        kept, failed = [], []
        for (backend, server), state in sorted(out_of_service.items()):
            if (backend, server) == (self.backend, self.server):
                continue
            if after is not None and after.get((backend, server), state) == state:
                continue  # kept, or gone from the new configuration
            try:
                self.runtime.set_server_state(backend, server, state)
                kept.append('%s/%s %s' % (backend, server, state))
            except _haproxy.HAProxyError as exc:
                failed.append('%s/%s %s (%s)' % (backend, server, state, exc))
        if failed:
            raise DependencyError('the reload put servers back in service that were out of it, and setting them back '
                                  'failed: %s' % '; '.join(failed), self._show_hint())
        return ('; states the reload forgot set again: %s' % ', '.join(kept)) if kept else ''

    def _config_absent(self):
        text, st = self._read_config()
        new_text, record = remove_server(text, self.backend, self.server)
        if record is None:
            previous = {'present': False}
            return self.outcome(False, previous, previous, 'no "server %s" line in backend %s' % (self.server, self.backend))
        runtime = None
        note = ''
        if self.runtime is not None:
            try:
                row = self._row()
                runtime = self._row_state(row) if row is not None else None
            except _haproxy.HAProxyError as exc:
                note = ' (its runtime state could not be read: %s)' % exc
        previous = {'present': True, 'line': record['line'], 'index': record['index'], 'mode': mode_text(st),
                    'runtime': runtime}
        new = {'present': False}
        if self.check_mode:
            return self.outcome(True, previous, new, 'would remove "%s" and reload %s%s' % (
                record['line'].strip(), self.options['unit'], note))
        before = self._admin_states() if self.runtime is not None else None
        self._apply(new_text, st, previous, new)
        msg = 'removed "%s", validated, reloaded %s' % (record['line'].strip(), self.options['unit'])
        if self.runtime is not None:
            self._after(msg, self._wait_listed, False)
            msg += '; no longer listed by HAProxy'
            msg += self._after(msg, self._keep_admin_states, before)
        else:
            msg += '; not checked at run time (no haproxy runtime API given)'
        return self.outcome(True, previous, new, msg + note)

    def _config_present(self, previous):
        self.need(previous, 'line', 'index')
        line, index = previous['line'], previous['index']
        if not isinstance(line, str) or '\n' in line or _words(line)[:2] != ['server', self.server]:
            raise DependencyError('previous line %s is not one "server %s ..." line' % (_short(line), self.server))
        if isinstance(index, bool) or not isinstance(index, int):
            raise DependencyError('previous index %s is not a line number' % _short(index))
        text, st = self._read_config()
        new_text = insert_server(text, self.backend, self.server, line, index)
        new = {'present': True, 'line': line, 'index': index}
        current = {'present': False}
        if new_text == text:
            return self.outcome(False, new, new, 'backend %s already has a "server %s" line' % (self.backend, self.server))
        if self.check_mode:
            return self.outcome(True, current, new, 'would put back "%s" and reload %s' % (line.strip(), self.options['unit']))
        before = self._admin_states() if self.runtime is not None else None
        self._apply(new_text, st, current, new)
        msg = 'put back "%s", validated, reloaded %s' % (line.strip(), self.options['unit'])
        if self.runtime is not None:
            self._after(msg, self._wait_listed, True)
            msg += '; listed by HAProxy again'
            msg += self._after(msg, self._keep_admin_states, before)
        return self.outcome(True, current, new, msg)

    # -- runtime (dynamic servers)
    def _command(self, cmd, success):
        answer = self.runtime.command(cmd).strip()
        if answer and not any(word in answer.lower() for word in success):
            raise DependencyError('%s refused "%s": %s' % (self.runtime.describe(), cmd, answer[:300]), self._show_hint())
        return answer

    def _runtime_absent(self):
        try:
            row = self._row()
        except _haproxy.HAProxyError as exc:
            raise DependencyError(str(exc), self._show_hint())
        if row is None:
            previous = {'present': False}
            return self.outcome(False, previous, previous, 'HAProxy does not list %s/%s' % (self.backend, self.server))
        previous = dict(self._row_state(row), present=True)
        new = {'present': False}
        if self.check_mode:
            return self.outcome(True, previous, new, 'would put %s/%s in maintenance and delete it' % (self.backend, self.server))
        name = '%s/%s' % (self.backend, self.server)
        self.begin(previous, new)
        try:
            self.runtime.set_server_state(self.backend, self.server, 'maint')
            self._command('del server %s' % name, ('deleted',))
        except _haproxy.HAProxyError as exc:
            raise DependencyError(str(exc), self._show_hint())
        self._wait_listed(False)
        return self.outcome(True, previous, new, 'set %s to maint and deleted it (del server)' % name)

    def _runtime_present(self, previous):
        self.need(previous, 'addr', 'port')
        addr, port = previous['addr'], previous['port']
        if not _runtime_word(addr) or isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise DependencyError('previous addr/port %s:%s is not an address and a port from 1 to 65535' % (
                _short(addr), _short(port)))
        try:
            row = self._row()
        except _haproxy.HAProxyError as exc:
            raise DependencyError(str(exc), self._show_hint())
        new = {'present': True, 'addr': addr, 'port': port, 'admin_state': previous.get('admin_state') or 'ready',
               'checks': bool(previous.get('checks'))}
        if row is not None:
            return self.outcome(False, dict(self._row_state(row), present=True), new,
                                'HAProxy already lists %s/%s' % (self.backend, self.server))
        current = {'present': False}
        if self.check_mode:
            return self.outcome(True, current, new, 'would add %s/%s at %s:%s' % (self.backend, self.server, addr, port))
        name = '%s/%s' % (self.backend, self.server)
        self.begin(current, new)
        try:
            self._command('add server %s %s:%s%s' % (name, addr, port, ' check' if new['checks'] else ''),
                          ('registered', 'added'))
            state = new['admin_state']
            if state == 'drain':
                self.runtime.set_server_state(self.backend, self.server, 'drain')
            elif state != 'maint':
                self._command('enable server %s' % name, ('enabled',))
            if new['checks']:
                self._command('enable health %s' % name, ('enabled',))
        except _haproxy.HAProxyError as exc:
            raise DependencyError(str(exc), self._show_hint())
        self._wait_listed(True)
        return self.outcome(True, current, new, 'added %s at %s:%s (%s%s)' % (
            name, addr, port, new['admin_state'], ', health checks enabled' if new['checks'] else ''))


class HAProxyMap(Handler):
    kind = 'haproxy_map'

    def __init__(self, manager, options):
        super(HAProxyMap, self).__init__(manager, options)
        self.path = options['path']
        self.key = options['key']
        self.runtime = _runtime(options.get('haproxy'))

    def where(self):
        return 'haproxy_map %s (%s)' % (self.key, self.path)

    def next_command(self):
        if self.runtime is not None:
            return 'echo "show map %s" | socat stdio %s' % (self.path, self.runtime.socket_path or 'tcp4:%s:%s' % (
                self.runtime.host, self.runtime.port))
        return 'grep -n -- %s %s' % (self.key, self.path)

    def _running_values(self):
        """The values the running HAProxy maps C(key) to (C(show map <path>)), or None without a runtime API."""
        if self.runtime is None:
            return None
        try:
            text = self.runtime.command('show map %s' % self.path)
        except _haproxy.HAProxyError as exc:
            raise DependencyError(str(exc), self.next_command())
        values = []
        for line in text.splitlines():
            words = line.split(None, 2)
            if line.lower().startswith(('unknown map', 'unknown command', 'permission denied')):
                raise DependencyError('%s: "show map %s" answered: %s' % (self.runtime.describe(), self.path, line.strip()),
                                      self.next_command())
            if len(words) >= 2 and words[0].startswith('0x') and words[1] == self.key:
                values.append(words[2].strip() if len(words) > 2 else '')
        return values

    def _runtime(self, cmd):
        try:
            answer = self.runtime.command(cmd).strip()
        except _haproxy.HAProxyError as exc:
            raise DependencyError(str(exc), self.next_command())
        if answer and answer.lower() not in ('done.', 'ok'):
            raise DependencyError('%s refused "%s": %s' % (self.runtime.describe(), cmd, answer[:300]), self.next_command())

    def absent(self):
        text, st = read_file(self.path)
        new_text, entries = remove_map_entries(text, self.key) if text is not None else (None, [])
        running = self._running_values()
        previous = {'present': bool(entries), 'entries': entries, 'mode': mode_text(st), 'runtime': running,
                    'final_newline': text is None or text == '' or text.endswith('\n')}
        new = {'present': False, 'entries': [], 'mode': mode_text(st), 'runtime': [] if running is not None else None}
        changed = bool(entries) or bool(running)
        if not changed:
            return self.outcome(False, previous, new, 'no entry for %s' % self.key)
        if self.check_mode:
            return self.outcome(True, previous, new, 'would remove %d line(s)%s' % (
                len(entries), ' and the running map entry' if running else ''))
        self.begin(previous, new)
        if entries:
            write_atomic(self.path, new_text, stat.S_IMODE(st.st_mode), st)
        if running:
            for _value in running:
                self._runtime('del map %s %s' % (self.path, self.key))
            left = self._running_values()
            if left:
                raise DependencyError('the running map %s still maps %s after "del map" (values %s); expected none' % (
                    self.path, self.key, ', '.join(left)), self.next_command())
        return self.outcome(True, previous, new, 'removed %d line(s) of %s%s' % (
            len(entries), self.path, ' and its running map entry' if running else ''))

    def present(self, previous):
        previous = self.need(previous, 'entries')
        entries = previous['entries']
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get('line'), str) and '\n' not in e['line'] and
                isinstance(e.get('index'), int) and not isinstance(e.get('index'), bool) and _map_key(e['line']) == self.key
                for e in entries):
            raise DependencyError('previous entries %s are not [{index, line}] lines of key %s' % (_short(entries), self.key))
        runtime_wanted = previous.get('runtime')
        if runtime_wanted is not None and (not isinstance(runtime_wanted, list) or
                                           not all(isinstance(v, str) and '\n' not in v and ';' not in v for v in runtime_wanted)):
            raise DependencyError('previous runtime %s is not a list of map values' % _short(runtime_wanted))
        text, st = read_file(self.path)
        current_entries = remove_map_entries(text, self.key)[1] if text is not None else []
        running = self._running_values()
        new = {'present': bool(entries), 'entries': entries, 'mode': previous.get('mode') or mode_text(st),
               'runtime': runtime_wanted if running is not None else None}
        current = {'present': bool(current_entries), 'entries': current_entries, 'mode': mode_text(st), 'runtime': running}
        file_todo = bool(entries) and not current_entries
        runtime_todo = bool(runtime_wanted) and running is not None and not running
        if not file_todo and not runtime_todo:
            return self.outcome(False, current, current, 'nothing to put back' if not entries and not runtime_wanted
                                else 'the entries for %s are already there' % self.key)
        if self.check_mode:
            return self.outcome(True, current, new, 'would put back %d line(s)' % (len(entries) if file_todo else 0))
        self.begin(current, new)
        if file_todo:
            mode = stat.S_IMODE(st.st_mode) if st is not None else parse_mode(previous.get('mode'))
            write_atomic(self.path, insert_map_entries(text or '', entries, previous.get('final_newline', True) is not False),
                         mode, st)
        if runtime_todo:
            for value in runtime_wanted:
                if not all(_runtime_word(word) for word in value.split()) and value:
                    raise DependencyError('map value %r cannot be sent in a runtime API command' % value)
                self._runtime(('add map %s %s %s' % (self.path, self.key, value)).rstrip())
            if not self._running_values():
                raise DependencyError('the running map %s does not map %s after "add map"' % (self.path, self.key),
                                      self.next_command())
        return self.outcome(True, current, new, 'put back %d line(s)%s' % (
            len(entries) if file_todo else 0, ' and the running map entry' if runtime_todo else ''))


class SystemdTimer(Handler):
    kind = 'systemd_timer'

    def __init__(self, manager, options):
        super(SystemdTimer, self).__init__(manager, options)
        self.unit = options['unit']

    def where(self):
        return '%s %s (systemd)' % (self.kind, self.unit)

    def next_command(self):
        return 'systemctl status %s' % self.unit

    def state(self, systemctl):
        """C({enabled, active, load}) from C(systemctl is-enabled) and C(systemctl show)."""
        argv = [systemctl.path, 'show', '--no-pager', '--property=Id,LoadState,ActiveState,UnitFileState'] + unit_args(self.unit)
        rc, out, err = self.manager.run_command(argv)
        if rc != 0:
            raise DependencyError('%s failed (rc %s): %s' % (' '.join(argv), rc, (err or out or 'no output').strip()[:300]),
                                  self.next_command())
        try:
            props = parse_show_one(out or '', self.unit)
        except SystemdParseError as exc:
            raise DependencyError(str(exc), self.next_command())
        argv = [systemctl.path, 'is-enabled'] + unit_args(self.unit)
        rc, out, err = self.manager.run_command(argv)
        words = (out or '').split()
        if words:
            enabled = words[0]
        elif props.get('LoadState') == 'not-found':
            enabled = 'not-found'
        else:
            raise DependencyError('%s printed nothing (rc %s%s); expected enabled, disabled, static, masked ...' % (
                ' '.join(argv), rc, (', it said: %s' % ' '.join((err or '').split())[:300]) if err else ''), self.next_command())
        return {'enabled': enabled, 'active': props.get('ActiveState') or 'unknown', 'load': props.get('LoadState')}

    def _stop_disable(self, systemctl, found, extra=None):
        record = {'enabled': found['enabled'], 'active': found['active']}
        if extra:
            record.update(extra)
        will_stop = found['active'] in ACTIVE_STATES
        will_disable = found['enabled'] in ENABLED_STATES
        new = dict(record, enabled='disabled' if will_disable else found['enabled'],
                   active='inactive' if will_stop else found['active'])
        done = []
        if not self.check_mode and (will_stop or will_disable):
            self.begin(record, new)
            try:
                if will_stop:
                    systemctl.stop(self.unit)
                    done.append('stopped')
                if will_disable:
                    systemctl.disable(self.unit, runtime=found['enabled'] == 'enabled-runtime')
                    done.append('disabled')
            except SystemctlError as exc:
                raise DependencyError('%s%s' % (('after %s: ' % ', '.join(done)) if done else '', exc), self.next_command())
        else:
            done = [w for w, todo in (('stop', will_stop), ('disable', will_disable)) if todo]
        return record, new, done

    def absent(self):
        systemctl = self.systemctl()
        found = self.state(systemctl)
        previous, new, done = self._stop_disable(systemctl, found)
        if not done:
            return self.outcome(False, previous, new, '%s is %s and %s already' % (self.unit, found['active'], found['enabled']))
        return self.outcome(True, previous, new, ('would ' if self.check_mode else '') + ' and '.join(done))

    def present(self, previous):
        previous = self.need(previous, 'enabled', 'active')
        if previous.get('stage') == 'final':
            raise DependencyError('%s was made final (its drop-ins and files removed); putting it back after state=final '
                                  'is not supported: restore its files from your configuration management' % self.unit)
        systemctl = self.systemctl()
        found = self.state(systemctl)
        current = {'enabled': found['enabled'], 'active': found['active']}
        want_enable = previous['enabled'] in ENABLED_STATES and found['enabled'] not in ENABLED_STATES
        want_start = previous['active'] in ACTIVE_STATES and found['active'] not in ACTIVE_STATES
        new = dict(current, enabled=previous['enabled'] if want_enable else found['enabled'],
                   active='active' if want_start else found['active'])
        if not want_enable and not want_start:
            return self.outcome(False, current, new, 'nothing to put back: %s is %s and %s' % (
                self.unit, found['active'], found['enabled']))
        done = [w for w, todo in (('enable', want_enable), ('start', want_start)) if todo]
        if self.check_mode:
            return self.outcome(True, current, new, 'would ' + ' and '.join(done))
        self.begin(current, new)
        try:
            if want_enable:
                systemctl._call(['enable'] + (['--runtime'] if previous['enabled'] == 'enabled-runtime' else [])
                                + unit_args(self.unit), self.unit, 'Enabling')
            if want_start:
                systemctl._call(['start'] + unit_args(self.unit), self.unit, 'Starting')
        except SystemctlError as exc:
            raise DependencyError(str(exc), self.next_command())
        return self.outcome(True, current, new, ' and '.join(w + 'd' if w.endswith('e') else w + 'ed' for w in done))


class SystemdUnit(SystemdTimer):
    kind = 'systemd_unit'

    def absent(self):
        systemctl = self.systemctl()
        found = self.state(systemctl)
        previous, new, done = self._stop_disable(systemctl, found, {'stage': 'absent'})
        if not done:
            return self.outcome(False, previous, new, '%s is %s and %s already' % (self.unit, found['active'], found['enabled']))
        return self.outcome(True, previous, new, ('would ' if self.check_mode else '') + ' and '.join(done))

    def _dropin_dirs(self):
        if not self.options['dropins']:
            return []
        return [os.path.join(folder, self.unit + '.d') for folder in DROPIN_DIRS]

    def final(self, previous):
        systemctl = self.systemctl()
        found = self.state(systemctl)
        masked = found['enabled'] in MASKED_STATES
        dropins = []
        for folder in self._dropin_dirs():
            if os.path.islink(folder) or os.path.isfile(folder):
                dropins.append({'path': folder, 'content': None, 'mode': None, 'truncated': False, 'folder': True})
                continue
            if not os.path.isdir(folder):
                continue
            try:
                names = sorted(os.listdir(folder))
            except OSError as exc:
                raise DependencyError('cannot list %s: %s' % (folder, exc.strerror or exc), 'ls -la %s' % folder)
            dropins.append({'path': folder, 'content': None, 'mode': None, 'truncated': False, 'folder': True})
            for name in names:
                full = os.path.join(folder, name)
                if os.path.isfile(full):
                    dropins.append(saved_content(full))
        files = []
        for path in self.options['files']:
            if os.path.isdir(path) and not os.path.islink(path):
                raise DependencyError('%s is a folder; systemd_unit.files lists unit files only' % path, 'ls -la %s' % path)
            if os.path.lexists(path):
                files.append(saved_content(path) if not os.path.islink(path) else
                             {'path': path, 'content': None, 'mode': None, 'truncated': False, 'link': os.readlink(path)})
        record = {'stage': 'final', 'enabled': found['enabled'], 'active': found['active'], 'masked': masked,
                  'dropins': dropins, 'files': files}
        will_stop = found['active'] in ACTIVE_STATES
        will_disable = found['enabled'] in ENABLED_STATES
        todo = [w for w, flag in (('stop', will_stop), ('unmask', masked), ('disable', will_disable),
                                  ('remove drop-ins', bool(dropins)), ('remove files', bool(files))) if flag]
        new = {'stage': 'final', 'enabled': 'disabled' if (will_disable or masked) else found['enabled'],
               'active': 'inactive' if will_stop else found['active'], 'masked': False, 'dropins': [], 'files': []}
        if not todo:
            return self.outcome(False, record, new, 'nothing left of %s to remove' % self.unit)
        if self.check_mode:
            return self.outcome(True, record, new, 'would ' + ', '.join(todo) + ', then daemon-reload')
        self.begin(record, new)
        done = []
        try:
            if will_stop:
                systemctl.stop(self.unit)
                done.append('stopped')
            if masked:
                systemctl._call(['unmask'] + (['--runtime'] if found['enabled'] == 'masked-runtime' else [])
                                + unit_args(self.unit), self.unit, 'Unmasking')
                done.append('unmasked')
            if will_disable:
                systemctl.disable(self.unit, runtime=found['enabled'] == 'enabled-runtime')
                done.append('disabled')
            for entry in dropins:
                if entry.get('folder'):
                    _remove_path(entry['path'])
            if dropins:
                done.append('removed %d drop-in folder(s)' % len([e for e in dropins if e.get('folder')]))
            for entry in files:
                _remove_path(entry['path'])
            if files:
                done.append('removed %d file(s)' % len(files))
            systemctl.daemon_reload(self.unit)
            done.append('reloaded systemd')
        except SystemctlError as exc:
            raise DependencyError('%s%s' % (('after %s: ' % ', '.join(done)) if done else '', exc), self.next_command())
        return self.outcome(True, record, new, ', '.join(done))


def _remove_path(path):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        if getattr(exc, 'errno', None) != 2:
            raise DependencyError('cannot remove %s: %s' % (path, exc.strerror or exc), 'ls -la %s' % path)


class PrometheusRules(Handler):
    kind = 'prometheus_rules'

    def __init__(self, manager, options):
        super(PrometheusRules, self).__init__(manager, options)
        self.path = options['path']
        self.base = options['url'].rstrip('/')

    def where(self):
        return 'prometheus_rules %s (%s)' % (self.path, display_url(self.base))

    def next_command(self):
        return 'curl -s %s/api/v1/rules' % display_url(self.base)

    def groups(self):
        """Names of the rule groups Prometheus reports as loaded from C(path) (C(GET /api/v1/rules))."""
        url = self.base + '/api/v1/rules'
        timeout = min(10.0, self.options['timeout'])
        try:
            response = request(url, timeout=timeout, token=self.options.get('token'),
                               validate_certs=self.options['validate_certs'], expect_status=(200,))
            data = response.json(url)
        except HttpError as exc:
            raise DependencyError(str(exc), self.next_command())
        groups = None
        if isinstance(data, dict) and data.get('status') == 'success' and isinstance(data.get('data'), dict):
            groups = data['data'].get('groups')
        if not isinstance(groups, list):
            raise DependencyError('GET %s did not answer {"status": "success", "data": {"groups": [...]}}: %s' % (
                display_url(url), _short(data)), self.next_command())
        wanted = os.path.normpath(self.path)
        return [g.get('name') for g in groups if isinstance(g, dict) and isinstance(g.get('file'), str) and
                os.path.normpath(g['file']) == wanted]

    def reload(self):
        if self.options['reload'] == 'http':
            url = self.base + '/-/reload'
            try:
                request(url, method='POST', timeout=min(10.0, self.options['timeout']), token=self.options.get('token'),
                        validate_certs=self.options['validate_certs'], expect_status=(200,))
            except HttpError as exc:
                raise DependencyError('%s (POST /-/reload needs Prometheus started with --web.enable-lifecycle)' % exc,
                                      self.next_command())
            return 'POST /-/reload'
        try:
            self.systemctl()._call(['reload'] + unit_args(self.options['unit']), self.options['unit'], 'Reloading')
        except SystemctlError as exc:
            raise DependencyError(str(exc), 'systemctl status %s' % self.options['unit'])
        return 'systemctl reload %s' % self.options['unit']

    def _wait(self, done, expected):
        result = self.wait(self.groups, done, self.options['timeout'])
        if not result.satisfied:
            last = result.last_value
            seen = last[1] if _is_error(last) else 'groups loaded from %s: %s' % (self.path, ', '.join(last) or 'none')
            raise DependencyError('expected %s within %s s (timeout) after the reload; last seen: %s' % (
                expected, self.options['timeout'], seen), self.next_command())

    def absent(self):
        text, st = read_file(self.path)
        groups = self.groups()
        previous = {'present': text is not None, 'content': text, 'mode': mode_text(st), 'groups': groups}
        new = {'present': False, 'content': None, 'mode': None, 'groups': []}
        if text is None and not groups:
            return self.outcome(False, previous, new, '%s does not exist and no group is loaded from it' % self.path)
        if self.check_mode:
            return self.outcome(True, previous, new, 'would remove %s (groups %s) and reload Prometheus' % (
                self.path, ', '.join(groups) or 'none loaded'))
        self.begin(previous, new)
        if text is not None:
            _remove_path(self.path)
        how = self.reload()
        self._wait(lambda names: not names, 'no rule group loaded from %s' % self.path)
        return self.outcome(True, previous, new, 'removed %s, %s; its groups (%s) are unloaded' % (
            self.path, how, ', '.join(groups) or 'none'))

    def present(self, previous):
        previous = self.need(previous, 'present', 'content', 'groups')
        if not previous['present']:
            return self.outcome(False, previous, previous, 'state=absent had found no rule file; nothing to put back')
        content, groups_wanted = previous['content'], previous['groups']
        if not isinstance(content, str) or not isinstance(groups_wanted, list) or not all(
                isinstance(g, str) for g in groups_wanted):
            raise DependencyError('previous content must be text and groups a list of names, got %s' % _short(previous))
        text, st = read_file(self.path)
        loaded = self.groups()
        current = {'present': text is not None, 'content': text, 'mode': mode_text(st), 'groups': loaded}
        mode = parse_mode(previous.get('mode'))
        new = {'present': True, 'content': content, 'mode': '%04o' % mode, 'groups': groups_wanted}
        missing = [g for g in groups_wanted if g not in loaded]
        same_file = text == content and (st is None or stat.S_IMODE(st.st_mode) == mode)
        if same_file and not missing:
            return self.outcome(False, current, new, '%s is in place and its groups are loaded' % self.path)
        if self.check_mode:
            return self.outcome(True, current, new, 'would write %s back and reload Prometheus' % self.path)
        self.begin(current, new)
        if not same_file:
            write_atomic(self.path, content, mode)
        how = self.reload()
        self._wait(lambda names: all(g in names for g in groups_wanted),
                   'the groups %s loaded from %s' % (', '.join(groups_wanted) or '(none)', self.path))
        return self.outcome(True, current, new, 'wrote %s back, %s; groups loaded: %s' % (
            self.path, how, ', '.join(groups_wanted) or 'none recorded'))


class HttpHook(Handler):
    kind = 'http_hook'

    def __init__(self, manager, options):
        super(HttpHook, self).__init__(manager, options)
        secrets = [options.get('token')] if options.get('token') else []
        for headers in (options.get('headers'), (options.get('undo') or {}).get('headers'),
                        (options.get('final') or {}).get('headers')):
            for name, value in (headers or {}).items():
                if value is not None and is_sensitive_header(name):
                    secrets.append(str(value))
        self.secrets = secrets
        self.mask = make_masker(secrets)

    def where(self):
        return 'http_hook %s (%s)' % (self.options['method'], self.mask(display_url(self.options['url'])))

    def next_command(self):
        return 'curl -s -i -X %s %s' % (self.options['method'], self.mask(display_url(self.options['url'])))

    def _masked(self, value):
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return dict((self._masked(k), self._masked(v)) for k, v in value.items())
        if isinstance(value, list):
            return [self._masked(v) for v in value]
        return value

    def _send(self, req):
        url = req.get('url') or self.options['url']
        method = req.get('method') or 'POST'
        body = req.get('body')
        headers = req.get('headers') if req.get('headers') is not None else self.options.get('headers')
        record = {'method': method, 'url': self.mask(display_url(url)), 'body': self._masked(copy.deepcopy(body))}
        if body is not None and not isinstance(body, (str, dict, list)):
            body = json.dumps(body)
        if self.check_mode:
            return record, None
        try:
            response = request(url, method=method, body=body, headers=headers, token=self.options.get('token'),
                               timeout=self.options['timeout'], validate_certs=self.options['validate_certs'],
                               expect_status=self.options['expect_status'], secrets=self.secrets)
        except HttpError as exc:
            raise DependencyError('%s; expected HTTP %s' % (self.mask(str(exc)), ' or '.join(
                str(s) for s in self.options['expect_status'])), self.next_command())
        return record, {'status': response.status, 'body': self.mask(response.mask(response.body))[:RESPONSE_CHARS]}

    def _hook(self, req, what):
        record, response = self._send(req)
        previous = {'request': record, 'response': response}
        if self.check_mode:
            return self.outcome(True, previous, {'sent': False}, 'would send %s %s (%s)' % (record['method'], record['url'], what))
        return self.outcome(True, previous, {'sent': True, 'status': response['status']},
                            'sent %s %s (%s): HTTP %s' % (record['method'], record['url'], what, response['status']))

    def absent(self):
        return self._hook({'url': self.options['url'], 'method': self.options['method'], 'body': self.options.get('body'),
                           'headers': self.options.get('headers')}, 'the hook')

    def present(self, previous):
        if not self.options.get('undo'):
            return self.outcome(False, previous if isinstance(previous, dict) else None, {'sent': False},
                                'no undo request declared')
        return self._hook(self.options['undo'], 'undo')

    def final(self, previous):
        if not self.options.get('final'):
            return self.outcome(False, previous if isinstance(previous, dict) else None, {'sent': False},
                                'no final request declared')
        return self._hook(self.options['final'], 'final')


HANDLERS = {'haproxy_server': HAProxyServer, 'haproxy_map': HAProxyMap, 'systemd_timer': SystemdTimer,
            'systemd_unit': SystemdUnit, 'prometheus_rules': PrometheusRules, 'http_hook': HttpHook}


# --------------------------------------------------------------------------------------------- manager

def unwrap_previous(previous):
    """C(previous) as given: the C(previous) of a whole result item (C({kind, previous, ...})) is taken from it."""
    if isinstance(previous, dict) and 'kind' in previous and 'previous' in previous and 'status' in previous:
        return previous['previous']
    return previous


def diff(result):
    """C({before, after}): one key per item (its C(where)), its previous and its new state."""
    before, after = {}, {}
    for item in result['dependencies']:
        key = item['where'] if item['where'] not in before else '%s #%d' % (item['where'], len(before) + 1)
        before[key] = item['previous']
        after[key] = item['new'] if item['status'] != 'failed' else item['previous']
    return {'before': before, 'after': after}


class DependencyManager(object):
    """Runs every item of C(dependencies) for C(state); C(run(params)) returns C((result, failure message or None))."""

    def __init__(self, run_command, get_bin_path, check_mode=False, warn=None, clock=time.monotonic):
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.check_mode = check_mode
        self.warn = warn
        self.clock = clock

    def handle(self, state, item):
        """The result record of one item (never raises but for C(BaseException)s that are not C(Exception)s)."""
        started = self.clock()
        kind = kind_of(item)
        record = {'kind': kind, 'name': item.get('name') or '', 'where': kind or 'unknown', 'status': 'failed',
                  'changed': False, 'previous': None, 'new': None, 'msg': '', 'seconds': 0.0}
        handler = None
        try:
            handler = HANDLERS[kind](self, item[kind])
            record['where'] = handler.where()
            previous = unwrap_previous(item.get('previous'))
            if state == 'absent':
                outcome = handler.absent()
            elif state == 'present':
                outcome = handler.present(previous)
            else:
                outcome = handler.final(previous)
            record.update(outcome)
            skipped = state == 'present' and isinstance(previous, dict) and previous.get('present') is False
            record['status'] = 'done' if outcome['changed'] else ('skipped' if skipped else 'unchanged')
        except DependencyError as exc:
            record['msg'] = str(exc)
            record['next'] = exc.next_command or (handler.next_command() if handler else None)
        except Exception as exc:  # a bug or an unexpected answer must still leave every other item's result
            record['msg'] = 'unexpected %s: %s' % (type(exc).__name__, exc)
            record['next'] = handler.next_command() if handler else None
        if record['status'] == 'failed' and handler is not None and handler.partial:
            record.update(handler.partial)
        record['seconds'] = round(self.clock() - started, 3)
        if isinstance(handler, HttpHook):
            record['msg'] = handler.mask(record['msg'])
        return record

    def run(self, params):
        state = params['state']
        items = [self.handle(state, item) for item in params['dependencies']]
        failures = []
        for index, item in enumerate(items):
            hint = item.pop('next', None)
            if item['status'] == 'failed':
                text = 'dependencies[%d] %s%s failed: %s' % (index, item['where'], (' "%s"' % item['name']) if item['name'] else '',
                                                             item['msg'])
                if hint:
                    text += ' Next: %s' % hint
                failures.append(text)
        counts = dict((status, len([i for i in items if i['status'] == status])) for status in STATUSES)
        result = {'changed': any(i['changed'] for i in items), 'state': state, 'dependencies': items,
                  'failed_items': counts['failed']}
        tally = ', '.join('%d %s' % (counts[s], s) for s in STATUSES if counts[s]) or 'none'
        summary = '%d item(s) for state=%s%s: %s' % (len(items), state, ' (check mode)' if self.check_mode else '', tally)
        if failures:
            result['msg'] = '%s. %s' % (summary, ' | '.join(failures))
            return result, result['msg']
        result['msg'] = summary
        return result, None
