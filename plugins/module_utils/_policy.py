# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take back the system policy granted to a model: only what is listed, each step with its previous state.

Private to this collection. The tools are called the way the usual modules call them (argv, no shell):
C(systemctl) for masks and drop-ins, C(firewall-cmd) or C(ufw) for ports, C(semanage), C(setsebool),
C(restorecon) and C(setenforce) for SELinux. A subsystem that is absent is skipped with its reason;
the SELinux mode is only touched when asked for, never as a side effect.
"""

from __future__ import annotations

import os
import re

SELINUX_CONFIG = '/etc/selinux/config'
MAX_SAVED_BYTES = 65536


def argument_spec():
    return dict(
        mask_units=dict(type='list', elements='str', default=[]),
        remove_dropins=dict(type='list', elements='path', default=[]),
        firewall_ports=dict(type='list', elements='str', default=[]),
        firewall_zone=dict(type='str', default='public'),
        selinux_ports=dict(type='list', elements='dict', default=[], options=dict(
            port=dict(type='str', required=True),
            proto=dict(type='str', default='tcp', choices=['tcp', 'udp', 'sctp', 'dccp']),
            setype=dict(type='str', required=True),
        )),
        selinux_booleans=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            state=dict(type='bool', default=False),
        )),
        selinux_fcontexts=dict(type='list', elements='dict', default=[], options=dict(
            target=dict(type='str', required=True),
            setype=dict(type='str', required=True),
            path=dict(type='path'),
        )),
        selinux_mode=dict(type='str', choices=['permissive', 'disabled']),
    )


_PORT_RE = re.compile(r'^[0-9]{1,5}(-[0-9]{1,5})?(/(tcp|udp|sctp|dccp))?$')
_NAME_RE = re.compile(r'^[A-Za-z0-9_.@:-]+$')


def check_params(params):
    """Problems the spec cannot express: names and ports that would reach a tool as something else."""
    problems = []
    for port in params['firewall_ports']:
        if not _PORT_RE.match(port):
            problems.append('firewall_ports: %r is not PORT[-PORT][/tcp|udp|sctp|dccp]' % port)
    for item in params['selinux_ports']:
        if not re.match(r'^[0-9]{1,5}(-[0-9]{1,5})?$', item['port']):
            problems.append('selinux_ports: port %r is not PORT or PORT-PORT' % item['port'])
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


class PolicyTakeBack(object):
    """Runs the listed steps; C(run(params)) returns C((result, failure message or None))."""

    def __init__(self, run_command, get_bin_path, check_mode=False):
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.check_mode = check_mode

    def _run(self, argv):
        rc, out, err = self.run_command(argv)
        return rc, out or '', err or ''

    def _must(self, argv):
        rc, out, err = self._run(argv)
        if rc != 0:
            raise PolicyError('%s failed (rc %s): %s' % (' '.join(argv), rc, (err or out).strip() or 'no output'))
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
            item = {'unit': unit, 'previous': previous, 'changed': previous != 'masked'}
            if item['changed']:
                changed.append(unit)
                if not self.check_mode:
                    self._must([systemctl, 'mask', '--', unit])
            record['items'].append(item)
        removed = False
        for path in params['remove_dropins']:
            item = {'path': path, 'changed': os.path.lexists(path), 'previous': None}
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
        if firewall_cmd and self._run([firewall_cmd, '--state'])[0] == 0:
            return self._firewalld(firewall_cmd, ports, params['firewall_zone'], record)
        ufw = self.get_bin_path('ufw')
        if ufw and 'Status: active' in self._run([ufw, 'status'])[1]:
            return self._ufw(ufw, ports, record)
        record['reason'] = 'neither firewalld nor ufw is active on this host'

    def _firewalld(self, firewall_cmd, ports, zone, record):
        changed = []
        for port in ports:
            spec = port if '/' in port else port + '/tcp'
            for scope in ([], ['--permanent']):
                base = [firewall_cmd] + scope + ['--zone', zone]
                rc, out, err = self._run(base + ['--query-port', spec])
                if rc not in (0, 1):  # 0 yes, 1 no; anything else is an error (INVALID_ZONE is 112)
                    raise PolicyError('%s failed (rc %s): %s' % (' '.join(base + ['--query-port', spec]), rc,
                                                                 (err or out).strip() or 'no output'))
                is_open = rc == 0
                record['items'].append({'port': spec, 'zone': zone, 'permanent': bool(scope), 'previous': 'open' if is_open else 'closed',
                                        'changed': is_open})
                if is_open:
                    changed.append(spec)
                    if not self.check_mode:
                        self._must(base + ['--remove-port', spec])
        self._close(record, changed, 'firewalld')

    def _ufw(self, ufw, ports, record):
        added = self._must([ufw, 'show', 'added'])
        rules = set(line.strip() for line in added.splitlines())
        changed = []
        for port in ports:
            present = ('ufw allow %s' % port) in rules
            record['items'].append({'port': port, 'previous': 'allowed' if present else 'absent', 'changed': present})
            if present:
                changed.append(port)
                if not self.check_mode:
                    self._must([ufw, 'delete', 'allow', port])
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
            raise PolicyError('semanage not found (policycoreutils-python-utils); SELinux labels cannot be removed')
        changed = []
        if params['selinux_ports']:
            local = self._must([semanage, 'port', '--list', '--locallist'])
            for item in params['selinux_ports']:
                present = self._port_labelled(local, item)
                record['items'].append({'port': item['port'], 'proto': item['proto'], 'setype': item['setype'],
                                        'previous': 'labelled' if present else 'absent', 'changed': present})
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
            record['items'].append({'boolean': item['name'], 'previous': 'on' if current else 'off', 'changed': current != want})
            if current != want:
                changed.append(item['name'])
                if not self.check_mode:
                    self._must([self.get_bin_path('setsebool') or 'setsebool', '-P', item['name'], 'on' if want else 'off'])
        if params['selinux_fcontexts']:
            local = self._must([semanage, 'fcontext', '--list', '--locallist'])
            for item in params['selinux_fcontexts']:
                present = any(line.split()[:1] == [item['target']] and (':%s:' % item['setype']) in line
                              for line in local.splitlines() if line.strip())
                record['items'].append({'target': item['target'], 'setype': item['setype'],
                                        'previous': 'present' if present else 'absent', 'changed': present})
                if present:
                    changed.append(item['target'])
                    if not self.check_mode:
                        self._must([semanage, 'fcontext', '--delete', '--type', item['setype'], '--', item['target']])
                        if item['path']:
                            self._must([self.get_bin_path('restorecon') or 'restorecon', '-R', '--', item['path']])
        if params['selinux_mode']:
            changed.extend(self._selinux_mode(params['selinux_mode'], record))
        self._close(record, changed, 'requested: SELinux mode %s for the whole host' % params['selinux_mode']
                    if params['selinux_mode'] else '')

    @staticmethod
    def _port_labelled(listing, item):
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == item['setype'] and fields[1] == item['proto']:
                ports = ''.join(fields[2:]).split(',')
                if item['port'] in ports:
                    return True
        return False

    def _selinux_mode(self, mode, record):
        getenforce = self.get_bin_path('getenforce')
        current = self._must([getenforce or 'getenforce']).strip().lower()
        record['items'].append({'mode': mode, 'previous': current, 'changed': current != mode})
        if current == mode or (mode == 'permissive' and current == 'disabled'):
            return []
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
