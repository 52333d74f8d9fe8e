# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy adapter: one server of one backend, through the runtime API.

Private to this collection. The admin state (what this adapter sets) is read from the
C(srv_admin_state) bits of C(show servers state), because C(show stat)'s C(status) column mixes
admin and operational state: a stopped server in drain shows C(DOWN), not C(DRAIN). The operational
status, the health check result and the session counts come from C(show stat). On HAProxy
versions without C(show servers state) the C(status) column is the fallback.
"""

from __future__ import annotations

from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import (
    ADMF_DRAIN,
    ADMF_FDRAIN,
    ADMF_FMAINT,
    ADMF_IDRAIN,
    ADMF_IMAINT,
    ADMF_RMAINT,
    OP_STATES,
    HAProxyError,
    HAProxyRuntime,
    HAProxyUnsupportedError,
    admin_state_name,
    status_admin_state,
    validate_name,
)
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import Adapter, LBError

TO_HAPROXY = {'ready': 'ready', 'draining': 'drain', 'maintenance': 'maint'}
FROM_HAPROXY = {'ready': 'ready', 'drain': 'draining', 'maint': 'maintenance', 'unknown': 'unknown'}


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class HAProxyAdapter(Adapter):
    kind = 'haproxy'

    def __init__(self, params):
        super(HAProxyAdapter, self).__init__()
        # Names are checked before anything is sent to the socket.
        self.backend = validate_name('backend', params.get('backend'))
        self.server = validate_name('server', params.get('server'))
        self.runtime = HAProxyRuntime(socket_path=params.get('socket'), host=params.get('host'), port=params.get('port'),
                                      timeout=5.0 if params.get('timeout') is None else params.get('timeout'))

    def describe(self):
        return 'HAProxy server %s/%s (%s)' % (self.backend, self.server, self.runtime.describe())

    def _server_state_row(self):
        """The C(show servers state) row, or None when this HAProxy cannot give it (fallback to C(show stat))."""
        try:
            rows = self.runtime.servers_state(self.backend)
        except HAProxyUnsupportedError as exc:
            # An HAProxy older than 1.6, without the command: fall back to the status column.
            return None, str(exc)
        for row in rows:
            if row.get('be_name') == self.backend and row.get('srv_name') == self.server:
                return row, None
        return None, 'no row for %s/%s in "show servers state"' % (self.backend, self.server)

    def _get_state(self):
        stat = self.runtime.server_stat(self.backend, self.server)
        status = stat.get('status', '')
        row, why_not = self._server_state_row()
        raw = {
            'backend': self.backend,
            'server': self.server,
            'status': status,
            'check_status': stat.get('check_status', ''),
            'check_desc': stat.get('check_desc', ''),
            'weight': _int(stat.get('weight')),
            'scur': _int(stat.get('scur')),
            'qcur': _int(stat.get('qcur')),
            'addr': stat.get('addr', ''),
        }
        if row is not None:
            admin = _int(row.get('srv_admin_state'))
            op_state = _int(row.get('srv_op_state'))
            # A value that is not a number is not guessed at: the state is unknown.
            haproxy_state = 'unknown' if admin is None else admin_state_name(admin)
            raw.update({
                'admin_source': 'show servers state',
                'admin_state': admin,
                'admin_state_name': haproxy_state,
                'op_state': op_state,
                'op_state_name': OP_STATES.get(op_state, 'unknown'),
                'admin_flags': [] if admin is None else self._flags(admin),
            })
        else:
            haproxy_state = status_admin_state(status)
            raw.update({'admin_source': 'show stat status', 'admin_state_name': haproxy_state,
                        'admin_fallback_reason': why_not})
        in_flight = None
        if raw['scur'] is not None or raw['qcur'] is not None:
            in_flight = (raw['scur'] or 0) + (raw['qcur'] or 0)
        return {
            'state': FROM_HAPROXY[haproxy_state],
            'operational_status': status,
            'raw': raw,
            'in_flight': in_flight,
        }

    @staticmethod
    def _flags(admin):
        names = []
        for bit, name in ((ADMF_FMAINT, 'forced maintenance'), (ADMF_IMAINT, 'maintenance inherited from a tracked server'),
                          (ADMF_RMAINT, 'maintenance after a name resolution failure'), (ADMF_FDRAIN, 'forced drain'),
                          (ADMF_IDRAIN, 'drain inherited from a tracked server')):
            if admin & bit:
                names.append(name)
        return names

    def set_state(self, state):
        if state not in TO_HAPROXY:
            raise LBError('%s: unknown state %r.' % (self.describe(), state))
        self.runtime.set_server_state(self.backend, self.server, TO_HAPROXY[state])

    def verify(self, state):
        info = self.get_state()
        raw = info['raw']
        ok = info['state'] == state
        detail = '%s: admin state %s (from %s), status %s' % (
            self.describe(), raw.get('admin_state_name'), raw.get('admin_source'), raw.get('status'))
        if not ok:
            admin = raw.get('admin_state') or 0
            if state == 'ready' and admin & (ADMF_IMAINT | ADMF_IDRAIN):
                detail += '; the state is inherited from the server this one tracks: change that one instead'
            elif state == 'ready' and admin & ADMF_RMAINT:
                detail += '; HAProxy cannot resolve the server address, fix DNS first'
            elif state == 'draining' and admin & ADMF_DRAIN == 0 and admin & (ADMF_IMAINT | ADMF_RMAINT):
                detail += '; maintenance is not forced by this module (inherited or DNS) and overrides drain'
        return ok, detail

    def in_flight(self):
        stat = self.runtime.server_stat(self.backend, self.server)
        scur, qcur = _int(stat.get('scur')), _int(stat.get('qcur'))
        if scur is None and qcur is None:
            return None
        return (scur or 0) + (qcur or 0)


def read_pool(runtime, backends=None):
    """Every server of the given backends (all backends when None) from one C(show stat) and one
    C(show servers state): C({backend, server, state, status, available, in_flight}), sorted.

    C(available) means admin state ready and operationally serving (C(status) C(UP...) or C(no check)).
    """
    wanted = None if backends is None else set(validate_name('backend', name) for name in backends)
    stats = {}
    known = set()
    for row in runtime.show_stat():
        if row.get('svname') == 'BACKEND':
            known.add(row.get('pxname'))
        if row.get('svname') in ('FRONTEND', 'BACKEND'):
            continue
        if wanted is not None and row.get('pxname') not in wanted:
            continue
        stats[(row.get('pxname'), row.get('svname'))] = row
    admin = {}
    legacy = False
    try:
        for row in runtime.servers_state():
            value = _int(row.get('srv_admin_state'))
            admin[(row.get('be_name'), row.get('srv_name'))] = 'unknown' if value is None else admin_state_name(value)
    except HAProxyUnsupportedError:
        legacy = True  # an HAProxy older than 1.6: the status column has to do
    missing = sorted((wanted or set()) - set(backend for backend, dummy in stats))
    if missing:
        raise HAProxyError('%s has no backend %s with servers (backends in "show stat": %s)' % (
            runtime.describe(), ', '.join(missing), ', '.join(sorted(known)) or 'none'))
    servers = []
    for (backend, server), row in sorted(stats.items()):
        status = row.get('status', '')
        if legacy:
            state = FROM_HAPROXY[status_admin_state(status)]
        else:
            # A server "show stat" lists but "show servers state" does not (added between the two reads): not guessed.
            state = FROM_HAPROXY[admin.get((backend, server), 'unknown')]
        scur, qcur = _int(row.get('scur')), _int(row.get('qcur'))
        servers.append({
            'backend': backend,
            'server': server,
            'state': state,
            'status': status,
            'available': state == 'ready' and (status.upper().startswith('UP') or status == 'no check'),
            'in_flight': None if scur is None and qcur is None else (scur or 0) + (qcur or 0),
        })
    return servers


# HAProxy keeps admin states set through the runtime API (drain, maint) in memory only: a reload or
# restart starts every server from the configuration (UP) unless the state was dumped to a file
# (`show servers state > <file>`, e.g. in the unit's ExecReload) and the configuration loads it back.
SERVER_STATE_DIRECTIVES = ('server-state-file', 'server-state-base')


SECTIONS = ('global', 'defaults', 'frontend', 'backend', 'listen', 'peers', 'resolvers', 'userlist', 'program',
            'cache', 'ring', 'mailers', 'http-errors')


def backend_algorithms(runtime, backends):
    """C({backend: algo}) from the C(algo) column of C(show stat)'s BACKEND rows (None where this HAProxy has no
    such column; C(unknown) is what 2.6 says for C(random))."""
    wanted = set(validate_name('backend', name) for name in backends)
    found = dict((name, None) for name in wanted)
    for row in runtime.show_stat():
        if row.get('svname') == 'BACKEND' and row.get('pxname') in wanted:
            found[row['pxname']] = row.get('algo') or None
    return found


def server_state_persistence(text, path):
    """What an HAProxy configuration says about keeping runtime states across a reload.

    Returns C({config, server_state_file, load_from_file: [sections], persists}). C(persists) is True when
    a C(defaults), C(backend) or C(listen) section loads states with C(load-server-state-from-file global)
    and C(global) names the file, or with C(local) (a file per backend, under C(server-state-base)).
    """
    section = None
    state_file = None
    loaded = []
    for raw in text.splitlines():
        words = raw.split('#', 1)[0].split()
        if not words:
            continue
        if words[0] in SECTIONS:
            # HAProxy accepts section keywords indented too.
            section = ' '.join(words[:2])
            continue
        kind = (section or '').split(' ', 1)[0]
        if kind == 'global' and words[0] == 'server-state-file' and len(words) >= 2:
            state_file = words[1]
        elif kind in ('defaults', 'backend', 'listen') and words[0] == 'load-server-state-from-file' and len(words) >= 2:
            loaded.append((section, words[1]))
    persists = any(mode == 'local' or (mode == 'global' and state_file) for _section, mode in loaded)
    return {'config': path, 'server_state_file': state_file,
            'load_from_file': [section for section, mode in loaded if mode in ('global', 'local')],
            'persists': bool(persists)}


def server_state_warning(found):
    """The pre-flight warning for C(server_state_persistence()) output, or None when states persist."""
    if found['persists']:
        return None
    missing = []
    if not found['server_state_file']:
        missing.append('no server-state-file in its global section')
    if not found['load_from_file']:
        missing.append('no load-server-state-from-file in a defaults or backend section')
    return ('%s has %s: a reload or restart of HAProxy forgets every drain and maintenance set through the runtime '
            'API, so a draining server comes back UP and gets new requests. The rollout watches each host on every '
            'load balancer while it drains and right before its stop, and drains it again when it came back; to keep '
            'the states across reloads, add both directives and dump the states before each reload (ExecReload: echo '
            '"show servers state" | socat stdio <admin socket> > <state file>).' % (found['config'], ' and '.join(missing)))
