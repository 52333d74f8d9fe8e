# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stateful stand-ins for what the modules talk to, built on the real captures of C(tests/unit/fixtures).

Not a test module. Each one answers in the form C(fakes.World) expects and keeps a record of what it
served, labelled, so that a property can ask whether a module's confident answer was backed by a read:

* C(FakeSystemd): C(systemctl show/stop/disable/mask/daemon-reload) over a set of units.
* C(FakeHAProxy): the runtime API of the HAProxy 2.6.12 capture (backend C(models), servers C(m1)-C(m5)):
  C(show stat), C(show servers state), C(set server); C(served) labels each answer C(ok), C(cut), C(timeout),
  C(reset), C(junk), C(denied) or C(unknown).
* C(FakeHttp): URL routes for Prometheus metrics, a Consul agent, an HTTP admin endpoint, a health URL and
  a resubmission endpoint.
* C(FakePolicyTools): firewall-cmd, ufw and the SELinux tools.
* C(FakeGpuTools): nvidia-smi and rocm-smi.

C(Faults) hands out the fault of each call in turn (drawn by the test), the last one repeating.
"""

from __future__ import annotations

import json
import os
import re
import socket

from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import read_fixture


class Faults(object):
    """The fault of each call in turn (C(None): no fault); the last one repeats."""

    def __init__(self, faults=()):
        self.faults = list(faults) or [None]

    def next(self):
        return self.faults.pop(0) if len(self.faults) > 1 else self.faults[0]


def cut_point(text, fraction):
    """A position at which cutting C(text) loses some of its content (not only trailing whitespace), or None."""
    last = len(text.rstrip())
    if last == 0:
        return None
    return min(int(fraction * last), last - 1)


# --------------------------------------------------------------------------------------------- systemd

SHOW_RUNNING = read_fixture('systemctl_show_apache2_active_running_ubuntu20.04_systemd245.txt')


def _props(text):
    props = {}
    order = []
    for line in text.splitlines():
        if '=' in line:
            key, value = line.split('=', 1)
            if key not in props:
                order.append(key)
            props[key] = value
    return props, order


BASE_PROPS, PROP_ORDER = _props(SHOW_RUNNING)
for _key in ('Id', 'LoadState', 'ActiveState', 'SubState', 'UnitFileState', 'ControlGroup', 'FragmentPath',
             'SuccessExitStatus', 'NeedDaemonReload', 'KillMode'):
    if _key not in PROP_ORDER:
        PROP_ORDER.append(_key)

UNIT_STATES = {
    'running': dict(LoadState='loaded', ActiveState='active', SubState='running', Result='success', MainPID='679',
                    ExecMainPID='679', ExecMainCode='0', ExecMainStatus='0', UnitFileState='enabled'),
    'inactive': dict(LoadState='loaded', ActiveState='inactive', SubState='dead', Result='success', MainPID='0',
                     ExecMainPID='679', ExecMainCode='2', ExecMainStatus='15', UnitFileState='enabled'),
    'failed': dict(LoadState='loaded', ActiveState='failed', SubState='failed', Result='exit-code', MainPID='0',
                   ExecMainPID='679', ExecMainCode='1', ExecMainStatus='1', UnitFileState='disabled'),
    'not-found': dict(LoadState='not-found', ActiveState='inactive', SubState='dead', Result='success', MainPID='0',
                      ExecMainPID='0', ExecMainCode='0', ExecMainStatus='0', UnitFileState=''),
    'masked': dict(LoadState='masked', ActiveState='inactive', SubState='dead', Result='success', MainPID='0',
                   ExecMainPID='0', ExecMainCode='0', ExecMainStatus='0', UnitFileState='masked'),
}

# How a stop ends: the properties systemctl show reports afterwards.
STOP_ENDINGS = {
    'clean': dict(ActiveState='inactive', SubState='dead', Result='success', MainPID='0', ExecMainCode='2', ExecMainStatus='15'),
    'timeout': dict(ActiveState='failed', SubState='failed', Result='timeout', MainPID='0', ExecMainCode='2', ExecMainStatus='9'),
    'signal': dict(ActiveState='failed', SubState='failed', Result='signal', MainPID='0', ExecMainCode='3', ExecMainStatus='11'),
    'exit-code': dict(ActiveState='failed', SubState='failed', Result='exit-code', MainPID='0', ExecMainCode='1', ExecMainStatus='1'),
    'restarted': dict(ActiveState='active', SubState='running', Result='success', MainPID='4242', ExecMainCode='0', ExecMainStatus='0'),
}


class FakeSystemd(object):
    """systemctl over C(units) (name -> one of C(UNIT_STATES) or a props dict). A stop ends as C(endings) say, in
    turn. C(faults) per call: C(None), C(('rc', n)) (the command fails), C(('junk', text)) (show prints it)."""

    def __init__(self, units, endings=('clean',), faults=(), dropin_dir=None, override_wins=False, stop_seconds=0.0):
        self.units = {}
        for name, state in units.items():
            props = dict(BASE_PROPS)
            props.update(UNIT_STATES[state] if isinstance(state, str) else state)
            props['Id'] = name
            props['ControlGroup'] = '/system.slice/%s' % name
            self.units[name] = props
        self.endings = Faults(endings)
        self.faults = Faults(faults)
        self.dropin_dir = dropin_dir
        self.override_wins = override_wins
        self.stop_seconds = stop_seconds

    def _unit(self, name):
        if name not in self.units:
            props = dict(BASE_PROPS)
            props.update(UNIT_STATES['not-found'])
            props['Id'] = name
            self.units[name] = props
        return self.units[name]

    @staticmethod
    def _names(args):
        names = []
        after_dashes = False
        skip = False
        for arg in args:
            if skip:
                skip = False
                continue
            if after_dashes or not arg.startswith('-'):
                names.append(arg)
            elif arg == '--':
                after_dashes = True
            elif arg in ('--property', '-p'):
                skip = True
        return names

    @staticmethod
    def _wanted(args):
        for index, arg in enumerate(args):
            if arg.startswith('--property='):
                return arg.split('=', 1)[1].split(',')
            if arg in ('--property', '-p') and index + 1 < len(args):
                return args[index + 1].split(',')
        return None

    def render(self, props, wanted=None):
        keys = [k for k in PROP_ORDER if wanted is None or k in wanted]
        return ''.join('%s=%s\n' % (k, props.get(k, '')) for k in keys)

    def __call__(self, argv):
        args = [str(a) for a in argv[1:]]
        names = self._names(args)
        verb = names[0] if names else ''
        units = names[1:]
        fault = self.faults.next()
        if isinstance(fault, tuple) and fault[0] == 'rc':
            return fault[1], '', 'Failed to %s %s: Access denied' % (verb, ' '.join(units))
        if verb == 'show':
            if isinstance(fault, tuple) and fault[0] == 'junk':
                return 0, fault[1], ''
            if not units:
                return 0, self.render({'Version': '245'}, None), ''
            return 0, '\n'.join(self.render(self._unit(u), self._wanted(args)) for u in units), ''
        if verb == 'stop':
            for unit in units:
                props = self._unit(unit)
                if props['LoadState'] == 'not-found':
                    return 5, '', 'Failed to stop %s: Unit %s not loaded.' % (unit, unit)
                if props['ActiveState'] in ('active', 'activating', 'deactivating', 'reloading'):
                    props.update(STOP_ENDINGS[self.endings.next()])
            return 0, '', '', self.stop_seconds
        if verb == 'disable':
            for unit in units:
                if self._unit(unit)['UnitFileState'] in ('enabled', 'enabled-runtime'):
                    self._unit(unit)['UnitFileState'] = 'disabled'
            return 0, '', ''
        if verb == 'mask':
            for unit in units:
                props = self._unit(unit)
                props['UnitFileState'] = 'masked-runtime' if '--runtime' in args else 'masked'
                props['LoadState'] = 'masked'
            return 0, '', ''
        if verb == 'daemon-reload':
            self._reload()
            return 0, '', ''
        return 1, '', 'Unknown command verb %s.' % verb

    def _reload(self):
        """Apply the stop-timeout drop-ins of the sandbox (unless another drop-in wins)."""
        if not self.dropin_dir or self.override_wins:
            return
        for name, props in self.units.items():
            path = os.path.join(self.dropin_dir, name + '.d', 'zz-modelops-stop-timeout.conf')
            try:
                with open(path) as handle:
                    text = handle.read()
            except (IOError, OSError, ValueError):
                continue
            match = re.search(r'^TimeoutStopSec=(.*)$', text, re.M)
            if match:
                props['TimeoutStopUSec'] = match.group(1).strip()


# --------------------------------------------------------------------------------------------- HAProxy

STAT_CSV = read_fixture('haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv')
SERVERS_STATE = read_fixture('haproxy_show_servers_state_v2.6.12_drain_maint_down.txt')
UNKNOWN_COMMAND = read_fixture('haproxy_unknown_command_v2.6.12.txt')

_STAT_HEADER = STAT_CSV.split('\n', 1)[0].lstrip('# ').split(',')
_STATE_HEADER = SERVERS_STATE.splitlines()[1].lstrip('# ').split()
COL = dict((name, index) for index, name in enumerate(_STAT_HEADER))
SCOL = dict((name, index) for index, name in enumerate(_STATE_HEADER))
ADMIN_BITS = {'ready': 0, 'drain': 8, 'maint': 1}
# Servers whose health check fails in the capture (m4): HAProxy shows DOWN whatever the admin state but maint.
DOWN_SERVERS = ('m4',)
NO_CHECK = ('m2',)
SERVERS = ('m1', 'm2', 'm3', 'm4', 'm5')
TRUTH = {'m1': 'draining', 'm2': 'ready', 'm3': 'maintenance', 'm4': 'draining', 'm5': 'ready'}


class FakeHAProxy(object):
    """The runtime API of the 2.6.12 capture, stateful: C(set server models/mN state X) changes what the show
    commands answer. C(in_flight) maps a server to C((scur, qcur)) (answers in turn when a list). C(faults) per
    command: C(None), C(('cut', fraction)), C(('timeout', fraction)), C(('reset', fraction)), C(('junk', text)),
    C('denied'), C('unknown'), C('ignore_set') (a set that answers OK and changes nothing)."""

    def __init__(self, in_flight=None, faults=(), refuse=None, seconds=0.0):
        self.admin = {}
        for line in SERVERS_STATE.splitlines()[2:]:
            fields = line.split()
            if fields:
                self.admin[fields[SCOL['srv_name']]] = int(fields[SCOL['srv_admin_state']])
        self.in_flight = dict((k, list(v) if isinstance(v, list) else [v]) for k, v in (in_flight or {}).items())
        self.faults = Faults(faults)
        self.refuse = refuse
        self.seconds = seconds
        self.served = []  # (command, label, {server: (scur, qcur)} for show stat)
        self._flights = None

    def _flight(self, server):
        queue = self.in_flight.get(server)
        if not queue:
            return 0, 0
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def _status(self, server):
        admin = self.admin[server]
        if admin & 0x23:
            return 'MAINT'
        if server in DOWN_SERVERS:
            return 'DOWN'
        if admin & 0x18:
            return 'DRAIN'
        return 'no check' if server in NO_CHECK else 'UP'

    def show_stat(self):
        self._flights = {}
        lines = []
        for line in STAT_CSV.split('\n'):
            fields = line.split(',')
            if len(fields) > COL['status'] and fields[0] == 'models' and fields[1] in self.admin:
                server = fields[1]
                scur, qcur = self._flight(server)
                self._flights[server] = (scur, qcur)
                fields[COL['scur']] = str(scur)
                fields[COL['qcur']] = str(qcur)
                fields[COL['status']] = self._status(server)
            lines.append(','.join(fields))
        return '\n'.join(lines)

    def servers_state(self, backend=None):
        if backend not in (None, 'models'):
            return "Can't find backend.\n\n"
        lines = SERVERS_STATE.splitlines()
        out = lines[:2]
        for line in lines[2:]:
            fields = line.split()
            if fields:
                fields[SCOL['srv_admin_state']] = str(self.admin[fields[SCOL['srv_name']]])
                out.append(' '.join(fields))
        return '\n'.join(out) + '\n\n'

    def set_server(self, command):
        match = re.match(r'^set server ([^/ ]+)/(\S+) state (\S+)$', command)
        if not match:
            return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
        backend, server, state = match.groups()
        if backend != 'models':
            return 'No such backend.\n\n'
        if server not in self.admin:
            return 'No such server.\n\n'
        if state not in ADMIN_BITS:
            return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
        self.admin[server] = (self.admin[server] & ~0x19) | ADMIN_BITS[state]
        return '\n'

    def answer(self, command):
        if command == 'show stat':
            return self.show_stat()
        if command.startswith('show servers state'):
            rest = command[len('show servers state'):].strip()
            return self.servers_state(rest or None)
        if command == 'show info':
            return read_fixture('haproxy_show_info_v2.7.1_otel.txt') + '\n'
        if command.startswith('set server '):
            return self.set_server(command)
        return UNKNOWN_COMMAND

    def respond(self, command, address):
        """The C(HAProxyWorld) responder."""
        self._flights = None
        answer = self._respond(command)
        label = self._label
        self.served.append((command, label, self._flights))
        return answer

    def _respond(self, command):
        fault = self.faults.next()
        if fault == 'ignore_set' and command.startswith('set server '):
            self._label = 'ok'
            return '\n'
        if fault == 'denied':
            self._label = 'denied'
            return 'Permission denied\n\n'
        if fault == 'unknown':
            self._label = 'unknown'
            return UNKNOWN_COMMAND
        if isinstance(fault, tuple) and fault[0] == 'junk':
            self._label = 'junk'
            return fault[1]
        text = self.answer(command)
        if not text.endswith('\n\n'):
            text = text.rstrip('\n') + '\n\n'  # every runtime API answer ends with an empty line
        if isinstance(fault, tuple) and fault[0] in ('cut', 'timeout', 'reset'):
            point = cut_point(text, fault[1])
            if point is not None:
                self._label = fault[0]
                tail = {'cut': [], 'timeout': [socket.timeout('timed out')],
                        'reset': [ConnectionResetError(104, 'Connection reset by peer')]}[fault[0]]
                return [text[:point]] + tail
        self._label = 'ok'
        return text

    def connect(self, address):
        """The C(HAProxyWorld) connect hook: C(refuse) is None or an exception instance."""
        return self.refuse

    def labels(self, prefix):
        return [label for command, label, flights in self.served if command.startswith(prefix)]

    def zero_reads(self, server):
        """How many complete show stat answers showed C(server) with nothing in flight (scur and qcur 0)."""
        return sum(1 for command, label, flights in self.served
                   if command == 'show stat' and label == 'ok' and flights and flights.get(server) == (0, 0))


# --------------------------------------------------------------------------------------------- HTTP

METRICS_URL = 'http://127.0.0.1:8000/metrics'
HEALTH_URL = 'http://127.0.0.1:8000/health'
CONSUL_URL = 'http://127.0.0.1:8500'
ADMIN_URL = 'http://127.0.0.1:8000/admin/state'
REQUEUE_URL = 'https://requeue.internal/v1/requeue'
KNOWN_URLS = (METRICS_URL, HEALTH_URL, CONSUL_URL, ADMIN_URL, REQUEUE_URL)

CONSUL_CHECKS = json.loads(read_fixture('consul_v1_agent_checks_service_maintenance_consul0.5.json'))


def deep_json(depth):
    return '[' * depth + ']' * depth


class FakeHttp(object):
    """Routes of the HTTP stand-in. Each route keeps its state; C(faults) per request: C(None), C(('status', n)),
    C(('body', text)) (200 with that body), C('timeout'), C('refused'), C(('slow', seconds)).

    * metrics: C(metrics_bodies), a list of C((text, label)) served in turn (the last repeats); C(served['metrics'])
      records the label of each body served with status 200.
    * consul: one service C(consul_service) in maintenance or not.
    * admin: C({"state": ...}) at C(ADMIN_URL) (nested under C(state_key) when dotted); POST/PUT/PATCH sets it.
    * health: C(health_status) in turn.
    * requeue: C(requeue_status) in turn.
    """

    def __init__(self, metrics_bodies=(), consul_service='vllm-1', consul_maint=False, admin_state='ready',
                 admin_key='state', health_status=(200,), requeue_status=(202,), faults=(), honour_sets=True):
        self.metrics_bodies = list(metrics_bodies) or [('', 'junk')]
        self.consul_service = consul_service
        self.consul_maint = consul_maint
        self.admin_state = admin_state
        self.admin_key = admin_key or 'state'
        self.health_status = list(health_status)
        self.requeue_status = list(requeue_status)
        self.faults = Faults(faults)
        self.honour_sets = honour_sets
        self.served = {'metrics': [], 'consul': [], 'admin': [], 'health': [], 'requeue': []}

    @staticmethod
    def _take(queue):
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def respond(self, method, url, body, headers, timeout):
        """The C(HttpWorld) responder. A fault replaces the route's answer; the route's record then says C(error)."""
        from urllib.error import URLError
        fault = self.faults.next()
        route, answer = self._route(method, url, body)
        if fault is None:
            return answer
        if isinstance(fault, tuple) and fault[0] == 'slow':
            return answer[:2] + (fault[1],) if isinstance(answer, tuple) else answer
        if route and self.served[route]:
            self.served[route][-1] = 'error'
        if fault == 'timeout':
            return socket.timeout('timed out')
        if fault == 'refused':
            return URLError(ConnectionRefusedError(111, 'Connection refused'))
        if isinstance(fault, tuple) and fault[0] == 'status':
            # The route's own body (a scrape showing zero, say) with an error status.
            body = answer[1] if isinstance(answer, tuple) else b'{"error": "injected"}'
            return (fault[1], body)
        if isinstance(fault, tuple) and fault[0] == 'body':
            return (200, fault[1])
        return answer

    def _route(self, method, url, body):
        from urllib.error import URLError
        if url == METRICS_URL and method == 'GET':
            text, label = self._take(self.metrics_bodies)
            self.served['metrics'].append(label)
            return 'metrics', (200, text)
        if url == HEALTH_URL and method == 'GET':
            return 'health', (self._take(self.health_status), b'ok')
        if url.startswith(CONSUL_URL + '/'):
            return 'consul', self._consul(method, url[len(CONSUL_URL):])
        if url == ADMIN_URL:
            return 'admin', self._admin(method, body)
        if url == REQUEUE_URL and method in ('POST', 'PUT'):
            status = self._take(self.requeue_status)
            self.served['requeue'].append(status)
            return 'requeue', (status, json.dumps({'queued': status < 300}))
        if url.startswith(('http://127.0.0.1', 'https://requeue.internal')):
            return None, (404, b'404 page not found')
        return None, URLError(OSError(-2, 'Name or service not known'))

    def _consul(self, method, path):
        service = self.consul_service
        if method == 'GET' and path == '/v1/agent/services':
            return (200, json.dumps({service: {'ID': service, 'Service': 'model', 'Port': 8000}}))
        if method == 'GET' and path == '/v1/agent/checks':
            checks = {'service:%s' % service: dict(CONSUL_CHECKS['service:test'], ServiceID=service, CheckID='service:%s' % service)}
            if self.consul_maint:
                checks['_service_maintenance:%s' % service] = dict(
                    CONSUL_CHECKS['_service_maintenance:test'], ServiceID=service, CheckID='_service_maintenance:%s' % service)
            return (200, json.dumps(checks))
        if method == 'PUT' and path.startswith('/v1/agent/service/maintenance/'):
            if not path[len('/v1/agent/service/maintenance/'):].startswith(service + '?'):
                return (404, 'Unknown service ID')
            if self.honour_sets:
                self.consul_maint = 'enable=true' in path
            return (200, '')
        return (404, '')

    def _admin(self, method, body):
        if method == 'GET':
            data = self.admin_state
            for part in reversed(self.admin_key.split('.')):
                data = {part: data}
            return (200, json.dumps(data))
        try:
            sent = json.loads(body)
            state = sent.get('state') if isinstance(sent, dict) else None
        except (TypeError, ValueError):
            state = None
        if state is None:
            return (400, '{"error": "no state"}')
        if self.honour_sets:
            self.admin_state = state
        return (200, '{"ok": true}')


# --------------------------------------------------------------------------------------------- policy

class FakePolicyTools(object):
    """firewall-cmd, ufw and the SELinux tools: C(firewalld) maps C((zone, permanent)) to open ports (None: not
    running), C(ufw) the allowed ports (None: inactive), C(selinux) None (disabled) or a dict of C(ports) (list of
    (setype, proto, port)), C(booleans) (name -> on), C(fcontexts) (list of (target, setype)), C(mode). C(faults) per
    call: None or C(('rc', n)) or C(('junk', text))."""

    def __init__(self, firewalld=None, ufw=None, selinux=None, faults=()):
        self.firewalld = firewalld
        self.ufw = ufw
        # What /etc/ufw/ufw.conf says (the sandbox copy is written by Machine).
        self.ufw_conf = 'ENABLED=%s\nLOGLEVEL=low\n' % ('yes' if ufw is not None else 'no')
        self.selinux = selinux
        self.faults = Faults(faults)

    def __call__(self, argv):
        tool = os.path.basename(argv[0])
        args = [str(a) for a in argv[1:]]
        fault = self.faults.next()
        if isinstance(fault, tuple) and fault[0] == 'rc':
            return fault[1], '', '%s: injected failure' % tool
        junk = fault[1] if isinstance(fault, tuple) and fault[0] == 'junk' else None
        answer = getattr(self, '_' + tool.replace('-', '_'), None)
        if answer is None:
            return 127, '', '%s: command not found' % tool
        rc, out, err = answer(args)
        return rc, (junk if junk is not None else out), err

    def _firewall_cmd(self, args):
        if self.firewalld is None:
            return 252, 'not running', ''
        if args == ['--state']:
            return 0, 'running', ''
        permanent = '--permanent' in args
        zone = args[args.index('--zone') + 1] if '--zone' in args and args.index('--zone') + 1 < len(args) else 'public'
        if zone not in ('public', 'internal'):
            return 112, '', 'Error: INVALID_ZONE: %s' % zone
        ports = self.firewalld.setdefault((zone, permanent), set())
        if '--query-port' in args:
            return (0, 'yes', '') if args[-1] in ports else (1, 'no', '')
        if '--remove-port' in args:
            ports.discard(args[-1])
            return 0, 'success', ''
        return 2, '', 'usage'

    def _ufw(self, args):
        if args[:1] == ['status']:
            return 0, 'Status: active\n' if self.ufw is not None else 'Status: inactive\n', ''
        if args[:2] == ['show', 'added']:
            rules = ''.join('ufw allow %s\n' % p for p in sorted(self.ufw or ()))
            return 0, 'Added user rules (see \'ufw status\' for running firewall):\n' + (rules or '(None)\n'), ''
        if args[:2] == ['delete', 'allow'] and self.ufw is not None:
            self.ufw.discard(args[2] if len(args) > 2 else '')
            return 0, 'Rule deleted\n', ''
        return 1, '', 'ERROR: Invalid syntax'

    def _selinuxenabled(self, args):
        return (0 if self.selinux is not None else 1), '', ''

    def _semanage(self, args):
        sel = self.selinux or {}
        if args[:1] == ['port'] and '--list' in args:
            lines = ['%-30s %-8s %s' % (setype, proto, port) for setype, proto, port in sel.get('ports', [])]
            return 0, '\n'.join(lines) + '\n', ''
        if args[:1] == ['fcontext'] and '--list' in args:
            lines = ['%s    all files    system_u:object_r:%s:s0' % (target, setype) for target, setype in sel.get('fcontexts', [])]
            return 0, '\n'.join(lines) + '\n', ''
        if '--delete' in args:
            return 0, '', ''
        return 1, '', 'ValueError: bad arguments'

    def _getsebool(self, args):
        name = args[-1] if args else ''
        booleans = (self.selinux or {}).get('booleans', {})
        if name not in booleans:
            return 1, '', 'Error getting active value for %s' % name
        return 0, '%s --> %s\n' % (name, 'on' if booleans[name] else 'off'), ''

    def _setsebool(self, args):
        return 0, '', ''

    def _getenforce(self, args):
        return 0, (self.selinux or {}).get('mode', 'Enforcing') + '\n', ''

    def _setenforce(self, args):
        return 0, '', ''

    def _restorecon(self, args):
        return 0, '', ''


# --------------------------------------------------------------------------------------------- GPU tools

GPU_ALLFIELDS = read_fixture('nvidia-smi_query-gpu_allfields_csv_h100-mig_drv590.48.01_idle.csv')
APPS_LOAD = read_fixture('nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_load.csv')
APPS_IDLE = read_fixture('nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_idle_empty.csv')
APPS_WIN = read_fixture('nvidia-smi_query-compute-apps_csv_windows-rtx2080super_drv591.86_load_NA.csv')
NVSMI_L = read_fixture('nvidia-smi_L_h100-mig_drv590.48.01.txt')
ROCM_WITH_PID = read_fixture('rocm-smi_json_allinfo_mi100x6_rocm5.7.1_with_pid.json')
ROCM_NO_PID = read_fixture('rocm-smi_json_allinfo_mi100x4_rocm6.0.2.json')
ROCM_NO_SYSTEM = read_fixture('rocm-smi_json_showproductname_showuse_showmeminfo_vram_rx7900xt_marimo-issue9237.json')
ZERO_UUID = 'GPU-00000000-0000-0000-0000-000000000000'


def gpu_rows(gpus):
    """C(--query-gpu ... --format=csv,noheader,nounits) text for C([(index, uuid, name, used, total)])."""
    return ''.join('%s, %s, %s, %s, %s\n' % g for g in gpus)


def app_rows(apps):
    """C(--query-compute-apps ... --format=csv,noheader,nounits) text for C([(pid, name, used, uuid)])."""
    return ''.join('%s, %s, %s, %s\n' % a for a in apps)


class FakeGpuTools(object):
    """nvidia-smi and rocm-smi. C(gpu), C(apps), C(listing), C(rocm): answers in turn, each C((rc, text, label)). The
    labels of the answers served are kept in C(served) (C(gpu), C(apps), C(rocm)): for C(apps) and C(rocm), C(zero)
    (a read showing no process), C(busy) (a read showing one), C(none) (no process information), C(error) (a failed
    or unreadable answer); for C(gpu), the largest memory used of a clean table, C(nodevices), or C(error).
    C(hang) answers rc 124 after C(seconds) when run under coreutils timeout."""

    def __init__(self, gpu=(), apps=(), listing=(), rocm=(), hang_after=None):
        self.answers = {'gpu': list(gpu) or [(0, '', 'error')], 'apps': list(apps) or [(0, '', 'zero')],
                        'listing': list(listing) or [(0, NVSMI_L, 'ok')], 'rocm': list(rocm) or [(0, ROCM_NO_PID, 'zero')]}
        self.served = {'gpu': [], 'apps': [], 'listing': [], 'rocm': []}
        self.hang_after = hang_after
        self.calls = 0

    def __call__(self, argv, wrapped_seconds=None):
        tool = os.path.basename(argv[0])
        args = [str(a) for a in argv[1:]]
        self.calls += 1
        if self.hang_after is not None and self.calls > self.hang_after and wrapped_seconds is not None:
            kind = {'nvidia-smi': 'gpu' if any(a.startswith('--query-gpu') for a in args) else 'apps'}.get(tool, 'rocm')
            self.served[kind].append('error')
            return 124, '', '', wrapped_seconds
        if tool == 'nvidia-smi':
            if any(a.startswith('--query-gpu') for a in args):
                kind = 'gpu'
            elif any(a.startswith('--query-compute-apps') for a in args):
                kind = 'apps'
            elif '-L' in args:
                kind = 'listing'
            else:
                return 2, '', 'Invalid combination of input arguments.'
        elif tool == 'rocm-smi':
            kind = 'rocm'
        else:
            return 127, '', 'command not found'
        queue = self.answers[kind]
        rc, text, label = queue.pop(0) if len(queue) > 1 else queue[0]
        self.served[kind].append(label if rc == 0 or label in ('nodevices',) else 'error')
        return rc, text, ''
