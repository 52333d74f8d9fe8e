# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take back the system policy granted to a model: only what is listed, each step with its previous state.

Private to this collection; the modules C(policy_revoke) and C(host_shutdown) (its C(policy) option) are
its front ends, both validating with C(argument_spec()) and C(check_params()). The tools are called
with argv, no shell: C(systemctl) for masks and drop-ins, C(firewall-cmd) or C(ufw) for ports,
C(semanage), C(setsebool), C(restorecon) and C(setenforce) for SELinux. A subsystem that is absent
is skipped with its reason; one that cannot be read (not root) fails its step with the tool's own
words; the SELinux mode is only touched when asked for, never as a side effect.

Every item of a step records C(previous) (the state found), C(new) (the state left, in check mode
the state it would be left in) and C(changed).
"""

from __future__ import annotations

import os
import re

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError, validate

SELINUX_CONFIG = '/etc/selinux/config'
UFW_CONF = '/etc/ufw/ufw.conf'
MAX_SAVED_BYTES = 65536

# semanage fcontext --ftype letters, and the words `semanage fcontext --list` prints for them
# (seobject.file_type_str_to_option).
FCONTEXT_FTYPES = {'a': 'all files', 'f': 'regular file', 'd': 'directory', 'c': 'character device',
                   'b': 'block device', 's': 'socket', 'l': 'symbolic link', 'p': 'named pipe'}
PROTOCOLS = ('tcp', 'udp', 'sctp', 'dccp')
# firewalld: the part of a zone name before a "/" fits netfilter's chain names (firewall.functions.max_zone_name_len).
MAX_ZONE_NAME = 17
# firewall-cmd exit codes: 252 NOT_RUNNING; anything but 0 and 1 from --query-port is an error.
FIREWALLD_NOT_RUNNING = 252
AS_ROOT = 'What to do: run the task as root (become: true); in a container ufw and firewalld also need CAP_NET_ADMIN'


def argument_spec():
    """The C(policy_revoke) module's argument spec, also C(host_shutdown)'s C(policy) option (a new dict on every call)."""
    return dict(
        mask_units=dict(type='list', elements='str', default=[]),
        remove_dropins=dict(type='list', elements='path', default=[]),
        firewall_ports=dict(type='list', elements='str', default=[]),
        firewall_zone=dict(type='str', default='public'),
        selinux_ports=dict(type='list', elements='dict', default=[], options=dict(
            port=dict(type='str', required=True),
            proto=dict(type='str', default='tcp', choices=list(PROTOCOLS)),
            setype=dict(type='str', required=True),
        )),
        selinux_booleans=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            state=dict(type='bool', default=False),
        )),
        selinux_fcontexts=dict(type='list', elements='dict', default=[], options=dict(
            target=dict(type='str', required=True),
            setype=dict(type='str', required=True),
            ftype=dict(type='str', default='a', choices=list(FCONTEXT_FTYPES)),
            path=dict(type='path'),
        )),
        selinux_mode=dict(type='str', choices=['permissive', 'disabled']),
    )


_PORT_RE = re.compile(r'([0-9]{1,5})(?:-([0-9]{1,5}))?(?:/([a-z]+))?\Z')
_NAME_RE = re.compile(r'[A-Za-z0-9_.@:-]+\Z')
_ZONE_RE = re.compile(r'[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)?\Z')


def parse_port(text, with_proto=True):
    """C((low, high or None, proto or None)) of C(PORT[-PORT][/PROTO]), ports 1-65535 and low <= high; else None."""
    match = _PORT_RE.match(text)
    if not match or (match.group(3) and (not with_proto or match.group(3) not in PROTOCOLS)):
        return None
    low, high = match.group(1), match.group(2)
    if any(part.startswith('0') for part in (low, high) if part):
        return None
    low, high = int(low), (int(high) if high else None)
    if not 1 <= low <= 65535 or (high is not None and not low <= high <= 65535):
        return None
    return low, high, match.group(3)


def zone_problem(zone):
    """Why firewalld would refuse C(zone) as a zone name (firewall.core.io.zone.Zone.check_name), or None."""
    if not _ZONE_RE.match(zone) or zone.startswith('-'):
        return ('firewall_zone: %r is not a firewalld zone name (letters, digits, _ and -, not first, '
                'and at most one / inside)' % zone)
    if len(zone.split('/')[0]) > MAX_ZONE_NAME:
        return 'firewall_zone: %r has more than the %d characters firewalld allows' % (zone, MAX_ZONE_NAME)
    return None


def check_params(params):
    """Problems the spec cannot express: names and ports that would reach a tool as something else."""
    problems = []
    for port in params['firewall_ports']:
        if parse_port(port) is None:
            problems.append('firewall_ports: %r is not PORT[-PORT][/tcp|udp|sctp|dccp] with ports 1-65535, '
                            'the first not above the second' % port)
    zone = zone_problem(params['firewall_zone'])
    if zone:
        problems.append(zone)
    for item in params['selinux_ports']:
        if parse_port(item['port'], with_proto=False) is None:
            problems.append('selinux_ports: port %r is not PORT or PORT-PORT with ports 1-65535, '
                            'the first not above the second' % item['port'])
    for what, names in (('mask_units', params['mask_units']),
                        ('selinux_booleans', [b['name'] for b in params['selinux_booleans']]),
                        ('setype', [p['setype'] for p in params['selinux_ports'] + params['selinux_fcontexts']])):
        for name in names:
            if not _NAME_RE.match(name) or name.startswith('-'):
                problems.append('%s: %r is not a valid name' % (what, name))
    for path in params['remove_dropins']:
        if not os.path.isabs(path) or '\x00' in path:
            problems.append('remove_dropins: %r is not an absolute path' % path)
    return problems


def validated(value, where):
    """C(value) (the options, a dict or None) validated by C(argument_spec()) and C(check_params()); raises C(SpecError).

    What C(host_shutdown) does with its C(policy) option: the same spec and checks as the C(policy_revoke) module.
    """
    params = validate(argument_spec(), value, where)
    problems = check_params(params)
    if problems:
        raise SpecError('%s: %s' % (where, '; '.join(problems)))
    return params


def ufw_port(port):
    """C(port) (C(8000-8010/tcp)) as ufw writes it (C(8000:8010/tcp)); no protocol is ufw's rule for any."""
    low, high, proto = parse_port(port)
    text = str(low) if high is None or high == low else '%d:%d' % (low, high)
    return text + ('/' + proto if proto else '')


_UFW_ADDED_RE = re.compile(r"ufw (.+?)(?: comment '(.*)')?\Z")


def ufw_added(text):
    """C({rule: line}) from C(ufw show added): the rule without its comment (C(allow 8000/tcp)) and the whole rule."""
    rules = {}
    for line in text.splitlines():
        match = _UFW_ADDED_RE.match(line.strip())
        if match:
            rules.setdefault(match.group(1), line.strip()[len('ufw '):])
    return rules


def ufw_conf_enabled(text):
    """C(ENABLED=) of ufw.conf as ufw reads it (C(yes) is on), or None when the file does not say."""
    for line in text.splitlines():
        key, sep, value = line.strip().partition('=')
        if sep and key.strip().upper() == 'ENABLED':
            return value.strip().strip('"\'').lower() == 'yes'
    return None


def fcontext_listed(listing, item):
    """Whether C(semanage fcontext --list --locallist) has C(item)'s rule: target, file type and SELinux type."""
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] != item['target']:
            continue
        context = fields[-1].split(':')
        if ' '.join(fields[1:-1]) == FCONTEXT_FTYPES[item['ftype']] and len(context) >= 3 and context[2] == item['setype']:
            return True
    return False


def port_labelled(listing, item):
    """Whether C(semanage port --list --locallist) labels C(item)'s port (or range) with its type for its protocol."""
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == item['setype'] and fields[1] == item['proto']:
            if item['port'] in ''.join(fields[2:]).split(','):
                return True
    return False


def item_name(step, item):
    """A short name for one item of a step, the key of the diff."""
    if 'unit' in item:
        return 'mask %s' % item['unit']
    if 'path' in item:
        return 'drop-in %s' % item['path']
    if 'zone' in item:
        return 'firewalld %s %s (%s)' % (item['zone'], item['port'], 'permanent' if item['permanent'] else 'runtime')
    if step == 'firewall':
        return 'ufw allow %s' % item['port']
    if 'boolean' in item:
        return 'SELinux boolean %s' % item['boolean']
    if 'target' in item:
        return 'SELinux file context %s (%s) %s' % (item['target'], FCONTEXT_FTYPES[item['ftype']], item['setype'])
    if 'mode' in item:
        return 'SELinux mode'
    return 'SELinux port %s/%s %s' % (item['port'], item['proto'], item['setype'])


def diff(result):
    """C({before, after}) of every item of every step: its previous state, and the state it was left in."""
    before, after = {}, {}
    for step in result['steps']:
        for item in step['items']:
            name = item_name(step['step'], item)
            before[name] = item['previous']
            after[name] = item['new']
    return {'before': before, 'after': after}


class PolicyTakeBack(object):
    """Runs the listed steps; C(run(params)) returns C((result, failure message or None))."""

    def __init__(self, run_command, get_bin_path, check_mode=False, warn=None):
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.check_mode = check_mode
        self.warn = warn

    def _run(self, argv):
        rc, out, err = self.run_command(argv)
        return rc, out or '', err or ''

    @staticmethod
    def _failed(argv, rc, out, err, advice=''):
        cause = (err or out).strip() or 'no output'
        if advice:
            cause += ('' if cause.endswith('.') else '.') + ' ' + advice
        return PolicyError('%s failed (rc %s): %s' % (' '.join(argv), rc, cause))

    def _must(self, argv):
        rc, out, err = self._run(argv)
        if rc != 0:
            raise self._failed(argv, rc, out, err)
        return out

    def run(self, params):
        steps = []
        failures = []
        for name, step in (('selinux', self._selinux), ('firewall', self._firewall), ('units', self._units)):
            record = {'step': name, 'status': 'skipped', 'changed': False, 'reason': '', 'items': []}
            try:
                step(params, record)
            except PolicyError as exc:
                record['status'] = 'failed'
                record['reason'] = str(exc)
                failures.append('%s: %s' % (name, exc))
            steps.append(record)
        result = {'changed': any(s['changed'] for s in steps), 'steps': steps, 'ok': not failures}
        return result, ('; '.join(failures) or None)

    @staticmethod
    def _close(record, changed_items, reason=''):
        record['changed'] = bool(changed_items)
        record['status'] = 'done' if changed_items else 'unchanged'
        record['reason'] = reason

    # -- units --------------------------------------------------------------------------------
    def _units(self, params, record):
        if not params['mask_units'] and not params['remove_dropins']:
            record['reason'] = 'no units to mask and no drop-ins listed'
            return
        systemctl = self.get_bin_path('systemctl')
        if not systemctl:
            raise PolicyError('systemctl not found; units cannot be masked')
        changed = []
        for unit in params['mask_units']:
            out = self._must([systemctl, 'show', '--property', 'LoadState,UnitFileState', '--', unit])
            props = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
            previous = props.get('UnitFileState') or props.get('LoadState') or 'unknown'
            item = {'unit': unit, 'previous': previous, 'new': 'masked', 'changed': previous != 'masked'}
            if item['changed']:
                changed.append(unit)
                if not self.check_mode:
                    self._must([systemctl, 'mask', '--', unit])
            record['items'].append(item)
        removed = False
        for path in params['remove_dropins']:
            # A drop-in's state is its content; None is no file.
            item = {'path': path, 'changed': os.path.lexists(path), 'previous': None, 'new': None}
            if item['changed']:
                # Keep what was there, so a rollback can write it back.
                try:
                    with open(path, 'rb') as handle:
                        item['previous'] = handle.read(MAX_SAVED_BYTES).decode('utf-8', 'replace')
                    if not self.check_mode:
                        os.remove(path)
                        removed = True
                except OSError as exc:
                    raise PolicyError('could not remove drop-in %s: %s' % (path, exc))
                changed.append(path)
            record['items'].append(item)
        if removed:
            self._must([systemctl, 'daemon-reload'])
        self._close(record, changed)

    # -- firewall -----------------------------------------------------------------------------
    def _firewall(self, params, record):
        ports = params['firewall_ports']
        if not ports:
            record['reason'] = 'no firewall ports listed'
            return
        firewall_cmd = self.get_bin_path('firewall-cmd')
        if firewall_cmd and self._firewalld_running(firewall_cmd):
            return self._firewalld(firewall_cmd, ports, params['firewall_zone'], record)
        ufw = self.get_bin_path('ufw')
        if ufw and self._ufw_active(ufw):
            return self._ufw(ufw, ports, record)
        record['reason'] = 'neither firewalld nor ufw is active on this host'

    def _firewalld_running(self, firewall_cmd):
        argv = [firewall_cmd, '--state']
        rc, out, err = self._run(argv)
        if rc in (0, FIREWALLD_NOT_RUNNING):
            return rc == 0
        # Not root: "Authorization failed." (rc 253). Whether it runs is unknown, not "no".
        raise self._failed(argv, rc, out, err, AS_ROOT)

    def _ufw_active(self, ufw):
        # ufw's own test for "Status: inactive" is ENABLED=yes in ufw.conf; reading it needs no root, where
        # `ufw status` does (and CAP_NET_ADMIN: it reads the rules first).
        try:
            with open(UFW_CONF) as handle:
                enabled = ufw_conf_enabled(handle.read())
        except (OSError, UnicodeDecodeError):
            enabled = None
        if enabled is False:
            return False
        argv = [ufw, 'status']
        rc, out, err = self._run(argv)
        if rc != 0:
            # "ERROR: You need to be root to run this script" is not "inactive".
            raise self._failed(argv, rc, out, err, AS_ROOT)
        return out.strip().splitlines()[:1] == ['Status: active']

    def _firewalld(self, firewall_cmd, ports, zone, record):
        changed = []
        for port in ports:
            spec = port if '/' in port else port + '/tcp'
            for scope in ([], ['--permanent']):
                base = [firewall_cmd] + scope + ['--zone', zone]
                rc, out, err = self._run(base + ['--query-port', spec])
                if rc not in (0, 1):  # 0 yes, 1 no; anything else is an error (INVALID_ZONE is 112)
                    advice = 'What to do: list the zones with firewall-cmd --get-zones' if rc == 112 else ''
                    raise self._failed(base + ['--query-port', spec], rc, out, err, advice)
                is_open = rc == 0
                record['items'].append({'port': spec, 'zone': zone, 'permanent': bool(scope),
                                        'previous': 'open' if is_open else 'closed', 'new': 'closed', 'changed': is_open})
                if is_open:
                    changed.append(spec)
                    if not self.check_mode:
                        self._must(base + ['--remove-port', spec])
        self._close(record, changed, 'firewalld')

    def _ufw(self, ufw, ports, record):
        rules = ufw_added(self._must([ufw, 'show', 'added']))
        changed = []
        for port in ports:
            spec = ufw_port(port)
            rule = rules.get('allow %s' % spec)
            # The rule as it was, comment included, so that it can be added back.
            record['items'].append({'port': port, 'rule': rule, 'previous': 'allowed' if rule else 'absent',
                                    'new': 'absent', 'changed': bool(rule)})
            if rule:
                changed.append(port)
                if not self.check_mode:
                    self._must([ufw, 'delete', 'allow', spec])
        self._close(record, changed, 'ufw')

    # -- SELinux ------------------------------------------------------------------------------
    def _selinux(self, params, record):
        wanted = params['selinux_ports'] or params['selinux_booleans'] or params['selinux_fcontexts'] or params['selinux_mode']
        if not wanted:
            record['reason'] = 'no SELinux ports, booleans, file contexts or mode listed'
            return
        enabled = self.get_bin_path('selinuxenabled')
        if not enabled or self._run([enabled])[0] != 0:
            record['reason'] = 'SELinux is not enabled on this host'
            return
        semanage = self.get_bin_path('semanage')
        if (params['selinux_ports'] or params['selinux_fcontexts']) and not semanage:
            raise PolicyError('semanage not found; SELinux labels cannot be removed. '
                              'What to do: install policycoreutils-python-utils')
        changed = []
        if params['selinux_ports']:
            local = self._must([semanage, 'port', '--list', '--locallist'])
            for item in params['selinux_ports']:
                present = port_labelled(local, item)
                record['items'].append({'port': item['port'], 'proto': item['proto'], 'setype': item['setype'],
                                        'previous': 'labelled' if present else 'absent', 'new': 'absent', 'changed': present})
                if present:
                    changed.append(item['port'])
                    if not self.check_mode:
                        self._must([semanage, 'port', '--delete', '--type', item['setype'], '--proto', item['proto'], item['port']])
        for item in params['selinux_booleans']:
            getsebool = self.get_bin_path('getsebool')
            out = self._must([getsebool or 'getsebool', '--', item['name']])
            # "NAME --> on", or "NAME --> off pending: on" while a change is pending: the active value follows "-->".
            current = out.partition('-->')[2].split()[:1] == ['on']
            want = bool(item['state'])
            record['items'].append({'boolean': item['name'], 'previous': 'on' if current else 'off',
                                    'new': 'on' if want else 'off', 'changed': current != want})
            if current != want:
                changed.append(item['name'])
                if not self.check_mode:
                    self._must([self.get_bin_path('setsebool') or 'setsebool', '-P', item['name'], 'on' if want else 'off'])
        if params['selinux_fcontexts']:
            local = self._must([semanage, 'fcontext', '--list', '--locallist'])
            for item in params['selinux_fcontexts']:
                present = fcontext_listed(local, item)
                record['items'].append({'target': item['target'], 'ftype': item['ftype'], 'setype': item['setype'],
                                        'previous': 'present' if present else 'absent', 'new': 'absent', 'changed': present})
                if present:
                    changed.append(item['target'])
                    if not self.check_mode:
                        # Without --ftype semanage deletes the "all files" rule, not this one.
                        self._must([semanage, 'fcontext', '--delete', '--type', item['setype'], '--ftype', item['ftype'],
                                    '--', item['target']])
                        if item['path']:
                            self._must([self.get_bin_path('restorecon') or 'restorecon', '-R', '--', item['path']])
        if params['selinux_mode']:
            changed.extend(self._selinux_mode(params['selinux_mode'], record))
        self._close(record, changed, 'requested: SELinux mode %s for the whole host' % params['selinux_mode']
                    if params['selinux_mode'] else '')

    def _selinux_mode(self, mode, record):
        getenforce = self.get_bin_path('getenforce')
        current = self._must([getenforce or 'getenforce']).strip().lower()
        # A disabled host asked for permissive stays disabled (enabling SELinux needs a relabel and a reboot).
        unchanged = current == mode or (mode == 'permissive' and current == 'disabled')
        record['items'].append({'mode': mode, 'previous': current, 'new': current if unchanged else mode,
                                'changed': not unchanged})
        if unchanged:
            return []
        if self.warn:
            self.warn('selinux_mode=%s %s the SELinux mode of the whole host (%s now), not only what the model was '
                      'granted' % (mode, 'would change' if self.check_mode else 'changes', current))
        if not self.check_mode:
            if current == 'enforcing':
                self._must([self.get_bin_path('setenforce') or 'setenforce', '0'])
            self._write_config_mode(mode)
        return ['mode']

    @staticmethod
    def _write_config_mode(mode):
        try:
            with open(SELINUX_CONFIG) as handle:
                lines = handle.read().splitlines()
            lines = ['SELINUX=%s' % mode if line.startswith('SELINUX=') else line for line in lines]
            temp = SELINUX_CONFIG + '.modelops'
            with open(temp, 'w') as handle:
                handle.write('\n'.join(lines) + '\n')
            os.chmod(temp, 0o644)
            os.rename(temp, SELINUX_CONFIG)
        except OSError as exc:
            raise PolicyError('could not write %s: %s' % (SELINUX_CONFIG, exc))


class PolicyError(Exception):
    """A policy tool failed; the message has the command and its output."""
