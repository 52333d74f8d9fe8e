# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PolicyTakeBack against a fake host whose tools answer as the real ones do, and its parsers on real captures.

There is no SELinux kernel here: the exact argv of every SELinux step is what proves those parts (the
outputs are those the tools print, seobject.py's formats). ufw 0.36.2 and firewalld 1.3.3 were run in a
fleet container: their answers are replayed from tests/unit/fixtures/*_capture.txt (see SOURCES.md), and
molecule/policy applies and takes back real ufw rules, masks and drop-ins.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _policy
from ansible_collections.modelops.shutdown.plugins.module_utils._policy import PolicyTakeBack, argument_spec, check_params
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError, validate
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import read_fixture

BINS = {
    'systemctl': '/usr/bin/systemctl',
    'firewall-cmd': '/usr/bin/firewall-cmd',
    'ufw': '/usr/sbin/ufw',
    'selinuxenabled': '/usr/sbin/selinuxenabled',
    'semanage': '/usr/sbin/semanage',
    'getsebool': '/usr/sbin/getsebool',
    'setsebool': '/usr/sbin/setsebool',
    'restorecon': '/usr/sbin/restorecon',
    'getenforce': '/usr/sbin/getenforce',
    'setenforce': '/usr/sbin/setenforce',
}
SYSTEMCTL = BINS['systemctl']
FIREWALL_CMD = BINS['firewall-cmd']
UFW = BINS['ufw']
SEMANAGE = BINS['semanage']

UNIT = 'model-server@llama.service'
MODELS = '/srv/models(/.*)?'
HTTPD_CONTENT = 'system_u:object_r:httpd_sys_content_t:s0'
UFW_CAPTURE = 'ufw_0.36.2_bookworm_capture.txt'
FIREWALLD_CAPTURE = 'firewall-cmd_1.3.3_bookworm_capture.txt'
AS_ROOT = ('What to do: run the task as root (become: true); in a container ufw and firewalld also need '
           'CAP_NET_ADMIN')


def capture(name):
    """C({label: (argv, rc, stdout, stderr)}) of a capture file: sections C(==== label), C($ argv), C(rc=N),
    C(--stdout), the exact stdout, C(--stderr), the exact stderr (tests/unit/fixtures/SOURCES.md)."""
    sections = {}
    for chunk in read_fixture(name).split('==== ')[1:]:
        label, rest = chunk.split('\n', 1)
        command, rest = rest.split('\n', 1)
        status, rest = rest.split('\n', 1)
        assert command.startswith('$ ') and status.startswith('rc=') and rest.startswith('--stdout\n'), chunk
        out, err = rest[len('--stdout\n'):].split('--stderr\n', 1)
        sections[label] = (command[2:].split(' '), int(status[3:]), out, err)
    return sections


def answer(name, label):
    """C((rc, stdout, stderr)) of one section of a capture."""
    return capture(name)[label][1:]


@pytest.fixture(autouse=True)
def no_ufw_conf(tmp_path, monkeypatch):
    """No ufw.conf unless a test writes one (C(_policy.UFW_CONF)): the dev machine's own must not count."""
    monkeypatch.setattr(_policy, 'UFW_CONF', str(tmp_path / 'no-ufw.conf'))


def is_read(argv):
    """Whether C(argv) only reads (check mode runs nothing else)."""
    name, args = os.path.basename(argv[0]), argv[1:]
    if name in ('selinuxenabled', 'getenforce', 'getsebool'):
        return True
    if name == 'semanage':
        return '--list' in args
    if name == 'firewall-cmd':
        return args == ['--state'] or '--query-port' in args
    if name == 'ufw':
        return args in (['status'], ['show', 'added'])
    if name == 'systemctl':
        return args[:1] == ['show']
    return False


class FakePolicyHost(object):
    """Replays the policy tools of one host and keeps their state, so a second run sees what the first left.

    C(selinux): None (SELinux disabled) or the mode (C(enforcing)/C(permissive)). C(ports): the local
    SELinux port labels, C({(setype, proto): [ports]}). C(booleans): C({name: bool}). C(fcontexts):
    the local file contexts, C({target: setype}) (all files) or C({target: (setype, ftype)}). C(firewalld):
    None (not running) or the open ports, C({(zone, permanent): set}). C(ufw): None (inactive) or the added
    rules as C(ufw show added) prints them without C(ufw ) (C(allow 8000/tcp comment 'model')).
    C(units): C({unit: (LoadState, UnitFileState)}). C(fail): C({argv words prefix: (rc, out, err)}), the
    words being the program's name and its arguments. Every argv is recorded in C(calls).
    """

    def __init__(self, selinux=None, ports=None, booleans=None, fcontexts=None, firewalld=None, ufw=None, units=None,
                 fail=None):
        self.selinux = selinux
        self.ports = dict((key, list(value)) for key, value in (ports or {}).items())
        self.booleans = dict(booleans or {})
        self.fcontexts = dict((target, value if isinstance(value, tuple) else (value, 'a'))
                              for target, value in (fcontexts or {}).items())
        self.firewalld = None if firewalld is None else dict((k, set(v)) for k, v in firewalld.items())
        self.ufw = None if ufw is None else list(ufw)
        self.units = dict(units or {})
        self.fail = dict(fail or {})
        self.calls = []
        self.relabelled = []

    def __call__(self, argv, *args, **kwargs):
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        self.calls.append(argv)
        words = [os.path.basename(argv[0])] + argv[1:]
        for prefix, answer in self.fail.items():
            if tuple(words[:len(prefix)]) == prefix:
                return answer
        handler = getattr(self, '_' + words[0].replace('-', '_'), None)
        if handler is None:
            raise AssertionError('unexpected command %r' % (argv,))
        return handler(words[1:])

    @property
    def mutations(self):
        return [argv for argv in self.calls if not is_read(argv)]

    # -- SELinux --------------------------------------------------------------------------------
    def _selinuxenabled(self, args):
        assert args == []
        return (0, '', '') if self.selinux else (1, '', '')

    def _getenforce(self, args):
        assert args == []
        return 0, (self.selinux or 'disabled').capitalize() + '\n', ''

    def _setenforce(self, args):
        assert args in (['0'], ['1'])
        self.selinux = 'permissive' if args == ['0'] else 'enforcing'
        return 0, '', ''

    def _semanage(self, args):
        if args == ['port', '--list', '--locallist']:
            lines = ['%-30s %-8s %s' % (setype, proto, ', '.join(ports)) for (setype, proto), ports in sorted(self.ports.items()) if ports]
            return 0, 'SELinux Port Type              Proto    Port Number\n\n' + ''.join(l + '\n' for l in lines), ''
        if args[:2] == ['port', '--delete']:
            assert args[2::2][:2] == ['--type', '--proto'] and len(args) == 7, args
            setype, proto, port = args[3], args[5], args[6]
            if port not in self.ports.get((setype, proto), []):
                return 1, '', 'ValueError: Port %s/%s is not defined\n' % (proto, port)
            self.ports[(setype, proto)].remove(port)
            return 0, '', ''
        if args == ['fcontext', '--list', '--locallist']:
            # seobject.fcontextRecords.list: "%-50s %-18s %s:%s:%s:%s " (target, file type in words, context).
            lines = ['%-50s %-18s system_u:object_r:%s:s0 ' % (target, _policy.FCONTEXT_FTYPES[ftype], setype)
                     for target, (setype, ftype) in sorted(self.fcontexts.items())]
            return 0, 'SELinux fcontext                                   type               Context\n\n' + ''.join(l + '\n' for l in lines), ''
        if args[:2] == ['fcontext', '--delete']:
            assert args[2] == '--type' and args[4] == '--ftype' and args[6] == '--' and len(args) == 8, args
            setype, ftype, target = args[3], args[5], args[7]
            # Without --ftype (or another one) semanage looks for the rule of that file type only.
            if self.fcontexts.get(target, (None, None))[1] != ftype:
                return 1, '', 'ValueError: File context for %s is not defined\n' % target
            del self.fcontexts[target]
            return 0, '', ''
        raise AssertionError('unexpected semanage %r' % (args,))

    def _getsebool(self, args):
        assert args[0] == '--' and len(args) == 2, args
        if args[1] not in self.booleans:
            return 1, '', 'Error getting active value for %s\n' % args[1]
        return 0, '%s --> %s\n' % (args[1], 'on' if self.booleans[args[1]] else 'off'), ''

    def _setsebool(self, args):
        assert args[0] == '-P' and args[2] in ('on', 'off') and len(args) == 3, args
        self.booleans[args[1]] = args[2] == 'on'
        return 0, '', ''

    def _restorecon(self, args):
        assert args[:2] == ['-R', '--'] and len(args) == 3, args
        self.relabelled.append(args[2])
        return 0, '', ''

    # -- firewall -------------------------------------------------------------------------------
    def _firewall_cmd(self, args):
        if args == ['--state']:
            return (0, 'running\n', '') if self.firewalld is not None else (252, '', 'not running\n')
        permanent = args[0] == '--permanent'
        if permanent:
            args = args[1:]
        assert args[0] == '--zone' and len(args) == 4, args
        zone, verb, port = args[1], args[2], args[3]
        if zone not in ('public', 'internal'):
            return 112, '', 'Error: INVALID_ZONE: %s\n' % zone
        ports = self.firewalld.setdefault((zone, permanent), set())
        if verb == '--query-port':
            return (0, 'yes\n', '') if port in ports else (1, 'no\n', '')
        if verb == '--remove-port':
            ports.discard(port)
            return 0, 'success\n', ''
        raise AssertionError('unexpected firewall-cmd %r' % (args,))

    def _ufw(self, args):
        # The formats of ufw 0.36.2 (tests/unit/fixtures/ufw_0.36.2_bookworm_capture.txt).
        if args == ['status']:
            if self.ufw is None:
                return 0, 'Status: inactive\n', ''
            table = ''
            for rule in self.ufw:
                words, comment = rule.split(" comment '")[0].split(), rule.partition(" comment '")[2].rstrip("'")
                table += '%-26s %-11s %-26s%s\n' % (words[-1], words[0].upper(), 'Anywhere', (' # ' + comment) if comment else '')
            return 0, 'Status: active\n\nTo                         Action      From\n--                         ------      ----\n' + table + '\n', ''
        if args == ['show', 'added']:
            rules = ''.join('ufw %s\n' % rule for rule in self.ufw) or '(None)\n'
            return 0, "Added user rules (see 'ufw status' for running firewall):\n" + rules, ''
        if args[:2] == ['delete', 'allow'] and len(args) == 3:
            if ':' in args[2] and '/' not in args[2] or '-' in args[2] or args[2].endswith(('/sctp', '/dccp')):
                return 1, '', 'ERROR: Bad port\n'
            found = [rule for rule in self.ufw if rule.split(" comment '")[0] == 'allow %s' % args[2]]
            if not found:
                return 0, 'Could not delete non-existent rule\nCould not delete non-existent rule (v6)\n', ''
            self.ufw.remove(found[0])
            return 0, 'Rule deleted\nRule deleted (v6)\n', ''
        raise AssertionError('unexpected ufw %r' % (args,))

    # -- systemd --------------------------------------------------------------------------------
    def _systemctl(self, args):
        if args[:3] == ['show', '--property', 'LoadState,UnitFileState']:
            assert args[3] == '--' and len(args) == 5, args
            load, file_state = self.units.get(args[4], ('not-found', ''))
            return 0, 'LoadState=%s\nUnitFileState=%s\n' % (load, file_state), ''
        if args[:2] == ['mask', '--'] and len(args) == 3:
            self.units[args[2]] = ('masked', 'masked')
            return 0, '', 'Created symlink /etc/systemd/system/%s \u2192 /dev/null.\n' % args[2]
        if args == ['daemon-reload']:
            return 0, '', ''
        raise AssertionError('unexpected systemctl %r' % (args,))


def params(**options):
    """The policy options validated and defaulted by their own spec, as host_shutdown does."""
    validated = validate(argument_spec(), options, 'policy')
    assert check_params(validated) == []
    return validated


def run(host, check_mode=False, bins=None, **options):
    found = BINS if bins is None else bins
    result, failure = PolicyTakeBack(host, found.get, check_mode=check_mode).run(params(**options))
    return result, failure, dict((s['step'], s) for s in result['steps'])


def without(*names):
    return dict((k, v) for k, v in BINS.items() if k not in names)


# --- nothing listed, subsystem absent ---------------------------------------------------------------

def test_nothing_listed_runs_nothing_and_says_why():
    host = FakePolicyHost(selinux='enforcing', firewalld={}, units={UNIT: ('loaded', 'enabled')})

    def no_lookup(name):
        raise AssertionError('looked up %s although nothing is listed' % name)

    result, failure = PolicyTakeBack(host, no_lookup).run(params())
    assert failure is None and result['ok'] and not result['changed']
    assert [s['step'] for s in result['steps']] == ['selinux', 'firewall', 'units']
    assert all(s['status'] == 'skipped' and s['items'] == [] and not s['changed'] for s in result['steps'])
    reasons = dict((s['step'], s['reason']) for s in result['steps'])
    assert reasons == {'selinux': 'no SELinux ports, booleans, file contexts or mode listed',
                       'firewall': 'no firewall ports listed',
                       'units': 'no units to mask and no drop-ins listed'}
    assert host.calls == []


@pytest.mark.parametrize('bins', [BINS, without('selinuxenabled')], ids=['selinuxenabled-rc1', 'no-selinuxenabled'])
def test_selinux_absent_is_skipped_and_the_mode_left_alone(bins):
    host = FakePolicyHost(selinux=None)
    result, failure, steps = run(host, bins=bins, selinux_ports=[{'port': '8000', 'setype': 'http_port_t'}],
                                 selinux_booleans=[{'name': 'httpd_can_network_connect'}], selinux_mode='permissive')
    assert failure is None and result['ok'] and not result['changed']
    assert steps['selinux']['status'] == 'skipped' and steps['selinux']['reason'] == 'SELinux is not enabled on this host'
    assert host.calls == ([['/usr/sbin/selinuxenabled']] if 'selinuxenabled' in bins else [])


@pytest.mark.parametrize('bins,calls', [
    (BINS, [[FIREWALL_CMD, '--state'], [UFW, 'status']]),
    (without('firewall-cmd'), [[UFW, 'status']]),
    (without('firewall-cmd', 'ufw'), []),
], ids=['both-inactive', 'ufw-inactive', 'neither-installed'])
def test_no_active_firewall_is_skipped(bins, calls):
    host = FakePolicyHost(firewalld=None, ufw=None)
    result, failure, steps = run(host, bins=bins, firewall_ports=['8000/tcp'])
    assert failure is None and not result['changed']
    assert steps['firewall']['status'] == 'skipped'
    assert steps['firewall']['reason'] == 'neither firewalld nor ufw is active on this host'
    assert host.calls == calls


# --- SELinux -----------------------------------------------------------------------------------------

def test_selinux_ports_present_removed_absent_unchanged():
    host = FakePolicyHost(selinux='enforcing', ports={('http_port_t', 'tcp'): ['8000', '8443'], ('http_port_t', 'udp'): ['8000']})
    result, failure, steps = run(host, selinux_ports=[{'port': '8000', 'setype': 'http_port_t'},
                                                      {'port': '9000', 'setype': 'http_port_t'},
                                                      {'port': '8443', 'proto': 'udp', 'setype': 'http_port_t'}])
    assert failure is None and result['ok'] and result['changed']
    assert host.calls == [
        ['/usr/sbin/selinuxenabled'],
        [SEMANAGE, 'port', '--list', '--locallist'],
        [SEMANAGE, 'port', '--delete', '--type', 'http_port_t', '--proto', 'tcp', '8000'],
    ]
    step = steps['selinux']
    assert step['status'] == 'done' and step['changed'] and step['reason'] == ''
    assert step['items'] == [
        {'port': '8000', 'proto': 'tcp', 'setype': 'http_port_t', 'previous': 'labelled', 'new': 'absent', 'changed': True},
        {'port': '9000', 'proto': 'tcp', 'setype': 'http_port_t', 'previous': 'absent', 'new': 'absent', 'changed': False},
        {'port': '8443', 'proto': 'udp', 'setype': 'http_port_t', 'previous': 'absent', 'new': 'absent', 'changed': False},
    ]
    assert host.ports == {('http_port_t', 'tcp'): ['8443'], ('http_port_t', 'udp'): ['8000']}


def test_selinux_port_range_and_listing_parse():
    listing = ('SELinux Port Type              Proto    Port Number\n\n'
               'http_port_t                    tcp      8000-8010, 8443\n'
               'ssh_port_t                     tcp      2222\n')
    item = {'port': '8000-8010', 'proto': 'tcp', 'setype': 'http_port_t'}
    assert _policy.port_labelled(listing, item)
    assert _policy.port_labelled(listing, dict(item, port='8443'))
    assert not _policy.port_labelled(listing, dict(item, port='8000'))
    assert not _policy.port_labelled(listing, dict(item, port='2222'))
    assert _policy.port_labelled(listing, dict(item, port='2222', setype='ssh_port_t'))
    assert not _policy.port_labelled(listing, dict(item, port='8443', proto='udp'))


def test_selinux_booleans_set_back_only_where_they_differ():
    host = FakePolicyHost(selinux='enforcing', booleans={'httpd_can_network_connect': True, 'httpd_use_nfs': False,
                                                         'httpd_execmem': False})
    result, failure, steps = run(host, selinux_booleans=[{'name': 'httpd_can_network_connect'},
                                                         {'name': 'httpd_use_nfs'},
                                                         {'name': 'httpd_execmem', 'state': True}])
    assert failure is None and result['changed']
    assert host.calls == [
        ['/usr/sbin/selinuxenabled'],
        ['/usr/sbin/getsebool', '--', 'httpd_can_network_connect'],
        ['/usr/sbin/setsebool', '-P', 'httpd_can_network_connect', 'off'],
        ['/usr/sbin/getsebool', '--', 'httpd_use_nfs'],
        ['/usr/sbin/getsebool', '--', 'httpd_execmem'],
        ['/usr/sbin/setsebool', '-P', 'httpd_execmem', 'on'],
    ]
    assert steps['selinux']['items'] == [
        {'boolean': 'httpd_can_network_connect', 'previous': 'on', 'new': 'off', 'changed': True},
        {'boolean': 'httpd_use_nfs', 'previous': 'off', 'new': 'off', 'changed': False},
        {'boolean': 'httpd_execmem', 'previous': 'off', 'new': 'on', 'changed': True},
    ]
    assert host.booleans == {'httpd_can_network_connect': False, 'httpd_use_nfs': False, 'httpd_execmem': True}
    assert not [c for c in host.calls if os.path.basename(c[0]) in ('getenforce', 'setenforce', 'semanage')]


@pytest.mark.parametrize('out,previous,changed', [
    ('httpd_can_network_connect --> on\n', 'on', True),
    ('httpd_can_network_connect --> off\n', 'off', False),
    # getsebool prints the pending value after the active one when they differ: the active one counts.
    ('httpd_can_network_connect --> off pending: on\n', 'off', False),
    ('httpd_can_network_connect --> on pending: off\n', 'on', True),
])
def test_getsebool_output_is_read_for_the_active_value(out, previous, changed):
    host = FakePolicyHost(selinux='enforcing', fail={('getsebool',): (0, out, '')})
    dummy, failure, steps = run(host, check_mode=True, selinux_booleans=[{'name': 'httpd_can_network_connect'}])
    assert failure is None
    assert steps['selinux']['items'] == [{'boolean': 'httpd_can_network_connect', 'previous': previous, 'new': 'off',
                                          'changed': changed}]


def test_selinux_fcontexts_deleted_and_relabelled():
    host = FakePolicyHost(selinux='enforcing', fcontexts={MODELS: 'httpd_sys_content_t', '/srv/cache(/.*)?': 'httpd_sys_rw_content_t'})
    result, failure, steps = run(host, selinux_fcontexts=[
        {'target': MODELS, 'setype': 'httpd_sys_content_t', 'path': '/srv/models'},
        {'target': '/srv/cache(/.*)?', 'setype': 'httpd_sys_rw_content_t'},
        {'target': '/srv/other(/.*)?', 'setype': 'httpd_sys_content_t', 'path': '/srv/other'},
        # The right target with another type is not this label.
        {'target': MODELS, 'setype': 'container_file_t'},
    ])
    assert failure is None and result['changed']
    assert host.calls == [
        ['/usr/sbin/selinuxenabled'],
        [SEMANAGE, 'fcontext', '--list', '--locallist'],
        [SEMANAGE, 'fcontext', '--delete', '--type', 'httpd_sys_content_t', '--ftype', 'a', '--', MODELS],
        ['/usr/sbin/restorecon', '-R', '--', '/srv/models'],
        [SEMANAGE, 'fcontext', '--delete', '--type', 'httpd_sys_rw_content_t', '--ftype', 'a', '--', '/srv/cache(/.*)?'],
    ]
    assert [(i['target'], i['setype'], i['previous'], i['changed']) for i in steps['selinux']['items']] == [
        (MODELS, 'httpd_sys_content_t', 'present', True),
        ('/srv/cache(/.*)?', 'httpd_sys_rw_content_t', 'present', True),
        ('/srv/other(/.*)?', 'httpd_sys_content_t', 'absent', False),
        (MODELS, 'container_file_t', 'absent', False),
    ]
    assert host.fcontexts == {} and host.relabelled == ['/srv/models']


def test_fcontext_of_one_file_type_is_deleted_with_its_ftype():
    # A rule for directories only ("directory" in the listing) is deleted with --ftype d; the "all files"
    # rule of another target, and a rule asked for with the wrong file type, are left alone.
    host = FakePolicyHost(selinux='enforcing', fcontexts={'/srv/models': ('httpd_sys_content_t', 'd'),
                                                          '/srv/cache': ('httpd_sys_content_t', 'a')})
    result, failure, steps = run(host, selinux_fcontexts=[
        {'target': '/srv/models', 'setype': 'httpd_sys_content_t', 'ftype': 'd', 'path': '/srv/models'},
        {'target': '/srv/cache', 'setype': 'httpd_sys_content_t', 'ftype': 'f'},
    ])
    assert failure is None and result['changed']
    assert host.mutations == [
        [SEMANAGE, 'fcontext', '--delete', '--type', 'httpd_sys_content_t', '--ftype', 'd', '--', '/srv/models'],
        ['/usr/sbin/restorecon', '-R', '--', '/srv/models'],
    ]
    assert steps['selinux']['items'] == [
        {'target': '/srv/models', 'ftype': 'd', 'setype': 'httpd_sys_content_t', 'previous': 'present', 'new': 'absent',
         'changed': True},
        {'target': '/srv/cache', 'ftype': 'f', 'setype': 'httpd_sys_content_t', 'previous': 'absent', 'new': 'absent',
         'changed': False},
    ]
    assert host.fcontexts == {'/srv/cache': ('httpd_sys_content_t', 'a')}


@pytest.mark.parametrize('ftype,words', sorted(_policy.FCONTEXT_FTYPES.items()))
def test_fcontext_listing_file_type_words(ftype, words):
    # seobject.py prints the file type in words (file_type_str_to_option), padded to 18 characters.
    listing = '%-50s %-18s system_u:object_r:httpd_sys_content_t:s0 \n' % ('/srv/models(/.*)?', words)
    item = {'target': MODELS, 'setype': 'httpd_sys_content_t', 'ftype': ftype}
    assert _policy.fcontext_listed(listing, item)
    others = [other for other in _policy.FCONTEXT_FTYPES if other != ftype]
    assert not any(_policy.fcontext_listed(listing, dict(item, ftype=other)) for other in others)
    assert not _policy.fcontext_listed(listing, dict(item, setype='container_file_t'))


def test_fcontext_listing_line_as_semanage_prints_it():
    # What `semanage fcontext -l -C` prints, header included.
    listing = ('SELinux fcontext                                   type               Context\n\n'
               '/srv/models(/.*)?    all files    %s\n' % HTTPD_CONTENT)
    host = FakePolicyHost(selinux='enforcing', fail={('semanage', 'fcontext', '--list'): (0, listing, '')})
    fcontexts = [{'target': MODELS, 'setype': 'httpd_sys_content_t'}, {'target': 'SELinux', 'setype': 'type'}]
    dummy, failure, steps = run(host, check_mode=True, selinux_fcontexts=fcontexts)
    assert failure is None
    assert [i['previous'] for i in steps['selinux']['items']] == ['present', 'absent']


@pytest.fixture
def selinux_config(tmp_path, monkeypatch):
    path = tmp_path / 'config'
    path.write_text('# This file controls the state of SELinux on the system.\n'
                    '#SELINUX=enforcing\nSELINUX=enforcing\nSELINUXTYPE=targeted\n')
    monkeypatch.setattr(_policy, 'SELINUX_CONFIG', str(path))
    return path


@pytest.mark.parametrize('current,mode,calls,config', [
    ('enforcing', 'permissive', [['/usr/sbin/setenforce', '0']], 'permissive'),
    ('enforcing', 'disabled', [['/usr/sbin/setenforce', '0']], 'disabled'),
    ('permissive', 'disabled', [], 'disabled'),
    ('permissive', 'permissive', [], None),
])
def test_selinux_mode_when_asked(selinux_config, current, mode, calls, config):
    before = selinux_config.read_text()
    host = FakePolicyHost(selinux=current)
    result, failure, steps = run(host, selinux_mode=mode)
    assert failure is None and result['changed'] is (config is not None)
    assert host.calls == [['/usr/sbin/selinuxenabled'], ['/usr/sbin/getenforce']] + calls
    step = steps['selinux']
    assert step['items'] == [{'mode': mode, 'previous': current, 'new': mode if config else current,
                              'changed': config is not None}]
    assert step['status'] == ('done' if config else 'unchanged')
    assert step['reason'] == 'requested: SELinux mode %s for the whole host' % mode
    if config is None:
        assert selinux_config.read_text() == before
    else:
        assert selinux_config.read_text() == before.replace('\nSELINUX=enforcing\n', '\nSELINUX=%s\n' % config)
        assert '#SELINUX=enforcing' in selinux_config.read_text()
        assert oct(selinux_config.stat().st_mode & 0o777) == oct(0o644)
        assert not os.path.exists(str(selinux_config) + '.modelops')


def test_selinux_mode_is_never_touched_unless_asked(selinux_config):
    before = selinux_config.read_text()
    host = FakePolicyHost(selinux='enforcing', booleans={'httpd_can_network_connect': True},
                          ports={('http_port_t', 'tcp'): ['8000']}, fcontexts={MODELS: 'httpd_sys_content_t'})
    result, failure, steps = run(host, selinux_ports=[{'port': '8000', 'setype': 'http_port_t'}],
                                 selinux_booleans=[{'name': 'httpd_can_network_connect'}],
                                 selinux_fcontexts=[{'target': MODELS, 'setype': 'httpd_sys_content_t'}])
    assert failure is None and result['changed']
    assert not [c for c in host.calls if os.path.basename(c[0]) in ('getenforce', 'setenforce')]
    assert host.selinux == 'enforcing' and selinux_config.read_text() == before
    assert steps['selinux']['reason'] == ''


def test_selinux_config_not_writable_fails_the_step(tmp_path, monkeypatch):
    monkeypatch.setattr(_policy, 'SELINUX_CONFIG', str(tmp_path / 'missing' / 'config'))
    result, failure, steps = run(FakePolicyHost(selinux='enforcing'), selinux_mode='permissive')
    assert not result['ok'] and steps['selinux']['status'] == 'failed'
    assert failure.startswith('selinux: could not write %s' % tmp_path)


def test_semanage_missing_fails_the_step_and_says_what_to_install():
    host = FakePolicyHost(selinux='enforcing')
    result, failure, steps = run(host, bins=without('semanage'), selinux_ports=[{'port': '8000', 'setype': 'http_port_t'}])
    assert not result['ok'] and steps['selinux']['status'] == 'failed'
    assert failure == ('selinux: semanage not found; SELinux labels cannot be removed. '
                       'What to do: install policycoreutils-python-utils')
    assert host.calls == [['/usr/sbin/selinuxenabled']]


# --- firewall ----------------------------------------------------------------------------------------

def test_firewalld_runtime_and_permanent():
    host = FakePolicyHost(firewalld={('public', False): {'8000/tcp'}, ('public', True): {'8000/tcp', '9000/tcp'}}, ufw=['allow 8000/tcp'])
    result, failure, steps = run(host, firewall_ports=['8000/tcp', '9000', '9100/udp'])
    assert failure is None and result['changed']
    fw = [FIREWALL_CMD]
    assert host.calls == [
        fw + ['--state'],
        fw + ['--zone', 'public', '--query-port', '8000/tcp'],
        fw + ['--zone', 'public', '--remove-port', '8000/tcp'],
        fw + ['--permanent', '--zone', 'public', '--query-port', '8000/tcp'],
        fw + ['--permanent', '--zone', 'public', '--remove-port', '8000/tcp'],
        fw + ['--zone', 'public', '--query-port', '9000/tcp'],
        fw + ['--permanent', '--zone', 'public', '--query-port', '9000/tcp'],
        fw + ['--permanent', '--zone', 'public', '--remove-port', '9000/tcp'],
        fw + ['--zone', 'public', '--query-port', '9100/udp'],
        fw + ['--permanent', '--zone', 'public', '--query-port', '9100/udp'],
    ]
    step = steps['firewall']
    assert step['status'] == 'done' and step['reason'] == 'firewalld'
    assert [(i['port'], i['zone'], i['permanent'], i['previous'], i['changed']) for i in step['items']] == [
        ('8000/tcp', 'public', False, 'open', True), ('8000/tcp', 'public', True, 'open', True),
        ('9000/tcp', 'public', False, 'closed', False), ('9000/tcp', 'public', True, 'open', True),
        ('9100/udp', 'public', False, 'closed', False), ('9100/udp', 'public', True, 'closed', False),
    ]
    assert host.firewalld[('public', False)] == set() and host.firewalld[('public', True)] == set()
    assert host.ufw == ['allow 8000/tcp']  # firewalld is active: ufw is not touched


def test_firewalld_zone_option():
    host = FakePolicyHost(firewalld={('internal', True): {'8000-8010/tcp'}})
    result, failure, dummy = run(host, firewall_ports=['8000-8010/tcp'], firewall_zone='internal')
    assert failure is None and result['changed']
    assert host.calls[-1] == [FIREWALL_CMD, '--permanent', '--zone', 'internal', '--remove-port', '8000-8010/tcp']
    assert all(c[c.index('--zone') + 1] == 'internal' for c in host.calls[1:])


def test_firewalld_error_is_not_read_as_closed():
    # firewall-cmd --query-port answers rc 0 (yes) or 1 (no); INVALID_ZONE (112) is an error, not "closed".
    host = FakePolicyHost(firewalld={('public', False): {'8000/tcp'}})
    result, failure, steps = run(host, firewall_ports=['8000/tcp'], firewall_zone='pubic')
    assert not result['ok'] and steps['firewall']['status'] == 'failed'
    assert failure == ('firewall: /usr/bin/firewall-cmd --zone pubic --query-port 8000/tcp failed (rc 112): '
                       'Error: INVALID_ZONE: pubic. What to do: list the zones with firewall-cmd --get-zones')
    assert host.mutations == []


def test_ufw_present_rules_deleted_absent_unchanged():
    host = FakePolicyHost(firewalld=None, ufw=['allow 8000/tcp', 'allow 22/tcp'])
    result, failure, steps = run(host, firewall_ports=['8000/tcp', '9000/tcp'])
    assert failure is None and result['changed']
    assert host.calls == [
        [FIREWALL_CMD, '--state'],
        [UFW, 'status'],
        [UFW, 'show', 'added'],
        [UFW, 'delete', 'allow', '8000/tcp'],
    ]
    step = steps['firewall']
    assert step['status'] == 'done' and step['reason'] == 'ufw'
    assert step['items'] == [
        {'port': '8000/tcp', 'rule': 'allow 8000/tcp', 'previous': 'allowed', 'new': 'absent', 'changed': True},
        {'port': '9000/tcp', 'rule': None, 'previous': 'absent', 'new': 'absent', 'changed': False},
    ]
    assert host.ufw == ['allow 22/tcp']


def test_ufw_rule_with_a_comment_is_matched_and_kept_in_the_record():
    host = FakePolicyHost(ufw=["allow 8000/tcp comment 'model-server llama'", "allow 5353/udp comment 'mdns'"])
    result, failure, steps = run(host, bins=without('firewall-cmd'), firewall_ports=['8000/tcp'])
    assert failure is None and result['changed']
    assert host.mutations == [[UFW, 'delete', 'allow', '8000/tcp']]
    assert steps['firewall']['items'] == [{'port': '8000/tcp', 'rule': "allow 8000/tcp comment 'model-server llama'",
                                           'previous': 'allowed', 'new': 'absent', 'changed': True}]
    assert host.ufw == ["allow 5353/udp comment 'mdns'"]


def test_ufw_range_is_written_as_ufw_writes_it():
    host = FakePolicyHost(ufw=['allow 9000:9010/tcp'])
    dummy, failure, steps = run(host, bins=without('firewall-cmd'), firewall_ports=['9000-9010/tcp', '8000-8000/tcp'])
    assert failure is None and host.ufw == []
    assert host.mutations == [[UFW, 'delete', 'allow', '9000:9010/tcp']]
    rules = [(i['port'], i['rule']) for i in steps['firewall']['items']]
    assert rules == [('9000-9010/tcp', 'allow 9000:9010/tcp'), ('8000-8000/tcp', None)]


@pytest.mark.parametrize('port,spec', [('8000', '8000'), ('8000/tcp', '8000/tcp'), ('9000-9010/udp', '9000:9010/udp'),
                                       ('8000-8000/tcp', '8000/tcp'), ('1-65535/tcp', '1:65535/tcp')])
def test_ufw_port(port, spec):
    assert _policy.ufw_port(port) == spec


# --- ufw and firewalld: their real answers (fixtures *_capture.txt) -------------------------------

def test_ufw_show_added_capture_is_parsed_with_comments():
    argv, rc, out, err = capture(UFW_CAPTURE)['show-added']
    assert argv == ['ufw', 'show', 'added'] and rc == 0 and err == ''
    assert _policy.ufw_added(out) == {
        'allow 22/tcp': 'allow 22/tcp',
        'allow 8000/tcp': "allow 8000/tcp comment 'model-server llama'",
        'allow 9000:9010/tcp': 'allow 9000:9010/tcp',
        # added as "ufw allow in 8443/tcp": in is the default direction, and not printed
        'allow 8443/tcp': 'allow 8443/tcp',
        'allow 7000': 'allow 7000',
        'deny 6000/tcp': 'deny 6000/tcp',
        'allow from 10.0.0.0/8 to any port 8001 proto tcp': 'allow from 10.0.0.0/8 to any port 8001 proto tcp',
        'allow 5353/udp': "allow 5353/udp comment 'mdns'",
    }
    assert _policy.ufw_added(answer(UFW_CAPTURE, 'show-added-none')[1]) == {}


def ufw_replay(conf_label=None, **labels):
    """C((run_command, calls)) answering C(ufw status) and C(ufw show added) from the ufw capture."""
    sections = capture(UFW_CAPTURE)
    calls = []

    def run_command(argv):
        calls.append(argv)
        key = {('status',): 'status', ('show', 'added'): 'show-added'}.get(tuple(argv[1:]))
        if key is None or key not in labels:
            raise AssertionError('unexpected %r' % (argv,))
        return sections[labels[key]][1:]
    return run_command, calls


@pytest.mark.parametrize('conf,status,ports,previous', [
    (None, 'status-active', ['8000/tcp', '9000-9010/tcp', '7000', '7000/tcp', '6000/tcp', '8001/tcp', '5353/udp', '5353'],
     ['allowed', 'allowed', 'allowed', 'absent', 'absent', 'absent', 'allowed', 'absent']),
    ('conf-enabled', 'status-active', ['8000/tcp'], ['allowed']),
])
def test_ufw_active_read_from_the_captures(tmp_path, monkeypatch, conf, status, ports, previous):
    if conf:
        path = tmp_path / 'ufw.conf'
        path.write_text(answer(UFW_CAPTURE, conf)[1])
        monkeypatch.setattr(_policy, 'UFW_CONF', str(path))
    run_command, calls = ufw_replay(status=status, **{'show-added': 'show-added'})
    result, failure = PolicyTakeBack(run_command, without('firewall-cmd').get, check_mode=True).run(
        params(firewall_ports=ports))
    assert failure is None and result['changed']
    step = result['steps'][1]
    assert step['reason'] == 'ufw' and [i['previous'] for i in step['items']] == previous
    assert calls == [[UFW, 'status'], [UFW, 'show', 'added']]
    assert [[os.path.basename(c[0])] + c[1:] for c in calls] == [capture(UFW_CAPTURE)[label][0] for label in (status, 'show-added')]


def test_ufw_disabled_in_its_conf_is_skipped_without_running_ufw(tmp_path, monkeypatch):
    # Without CAP_NET_ADMIN (a container), `ufw status` fails even as root, even when ufw is disabled; ufw.conf
    # says ENABLED=no, which is what "Status: inactive" means, and reading it needs neither.
    sections = capture(UFW_CAPTURE)
    assert sections['status-no-net-admin'][1] == 1 and 'Permission denied' in sections['status-no-net-admin'][3]
    path = tmp_path / 'ufw.conf'
    path.write_text(sections['conf-no-net-admin'][2])
    monkeypatch.setattr(_policy, 'UFW_CONF', str(path))
    run_command, calls = ufw_replay()
    result, failure = PolicyTakeBack(run_command, without('firewall-cmd').get).run(params(firewall_ports=['8000/tcp']))
    assert failure is None and not result['changed'] and calls == []
    assert result['steps'][1]['status'] == 'skipped'
    assert result['steps'][1]['reason'] == 'neither firewalld nor ufw is active on this host'


@pytest.mark.parametrize('status', ['status-not-root', 'status-no-net-admin'])
def test_ufw_status_that_fails_is_not_read_as_inactive(tmp_path, monkeypatch, status):
    path = tmp_path / 'ufw.conf'
    path.write_text(answer(UFW_CAPTURE, 'conf-enabled')[1])
    monkeypatch.setattr(_policy, 'UFW_CONF', str(path))
    run_command, calls = ufw_replay(status=status)
    result, failure = PolicyTakeBack(run_command, without('firewall-cmd').get).run(params(firewall_ports=['8000/tcp']))
    cause = answer(UFW_CAPTURE, status)[2].strip()
    assert failure == 'firewall: /usr/sbin/ufw status failed (rc 1): %s. %s' % (cause, AS_ROOT)
    assert not result['ok'] and result['steps'][1]['status'] == 'failed' and calls == [[UFW, 'status']]


def test_ufw_without_a_conf_runs_status_and_its_failure_counts(tmp_path):
    # No ufw.conf to read (the autouse fixture): `ufw status` decides, and "You need to be root" fails the step.
    run_command, calls = ufw_replay(status='status-not-root')
    dummy, failure = PolicyTakeBack(run_command, without('firewall-cmd').get).run(params(firewall_ports=['8000/tcp']))
    assert failure == ('firewall: /usr/sbin/ufw status failed (rc 1): ERROR: You need to be root to run this script. '
                       + AS_ROOT)


@pytest.mark.parametrize('label,enabled', [('conf', False), ('conf-enabled', True)])
def test_ufw_conf_enabled_capture(label, enabled):
    assert _policy.ufw_conf_enabled(answer(UFW_CAPTURE, label)[1]) is enabled


@pytest.mark.parametrize('text,enabled', [('ENABLED="yes"\n', True), ("ENABLED='no'\n", False), (' ENABLED=YES\n', True),
                                          ('# ENABLED=yes\nLOGLEVEL=low\n', None), ('', None)])
def test_ufw_conf_enabled_forms(text, enabled):
    assert _policy.ufw_conf_enabled(text) is enabled


def test_ufw_inactive_status_capture():
    argv, rc, out, err = capture(UFW_CAPTURE)['status-inactive']
    run_command, calls = ufw_replay(status='status-inactive')
    result, failure = PolicyTakeBack(run_command, without('firewall-cmd').get).run(params(firewall_ports=['8000/tcp']))
    assert (rc, out) == (0, 'Status: inactive\n') and failure is None
    assert result['steps'][1]['reason'] == 'neither firewalld nor ufw is active on this host'


def firewalld_replay(**state):
    """C((run_command, calls)): firewall-cmd answering from the firewalld capture; C(state) maps C(--state) and each
    query (C(runtime), C(permanent)) to a section label."""
    sections = capture(FIREWALLD_CAPTURE)
    calls = []

    def run_command(argv):
        calls.append(argv)
        args = argv[1:]
        if args == ['--state']:
            return sections[state['state']][1:]
        if '--query-port' in args:
            return sections[state['permanent' if args[0] == '--permanent' else 'runtime']][1:]
        if '--remove-port' in args:
            return sections['remove-open-permanent' if args[0] == '--permanent' else 'remove-open'][1:]
        raise AssertionError('unexpected %r' % (argv,))
    return run_command, calls


def test_firewalld_capture_open_in_both_then_removed():
    run_command, calls = firewalld_replay(state='state', runtime='query-open', permanent='query-open-permanent')
    result, failure = PolicyTakeBack(run_command, BINS.get).run(params(firewall_ports=['8000/tcp']))
    assert failure is None and result['changed']
    assert calls[-1] == [FIREWALL_CMD, '--permanent', '--zone', 'public', '--remove-port', '8000/tcp']
    assert [(i['permanent'], i['previous'], i['new']) for i in result['steps'][1]['items']] == [
        (False, 'open', 'closed'), (True, 'open', 'closed')]
    # The argv that was captured is the argv run here.
    sections = capture(FIREWALLD_CAPTURE)
    assert [[os.path.basename(c[0])] + c[1:] for c in calls] == [
        sections[label][0] for label in ('state', 'query-open', 'remove-open', 'query-open-permanent', 'remove-open-permanent')]


def test_firewalld_capture_closed_is_unchanged():
    run_command, calls = firewalld_replay(state='state', runtime='query-closed', permanent='query-after')
    result, failure = PolicyTakeBack(run_command, BINS.get).run(params(firewall_ports=['9000-9010/udp']))
    assert failure is None and not result['changed'] and result['steps'][1]['status'] == 'unchanged'
    assert all('--remove-port' not in c for c in calls)


@pytest.mark.parametrize('runtime,words', [
    ('query-invalid-zone', 'failed (rc 112): Error: INVALID_ZONE: pubic. What to do: list the zones with firewall-cmd --get-zones'),
    ('query-invalid-port', 'failed (rc 102): Error: INVALID_PORT: 99999'),
    ('query-invalid-protocol', "failed (rc 103): Error: INVALID_PROTOCOL: 'icmp' not in {'tcp'|'udp'|'sctp'|'dccp'}"),
    ('query-not-root', 'failed (rc 253): Authorization failed.\n    Make sure polkit agent is running or run the application '
                       'as superuser'),
    ('query-stopped', 'failed (rc 252): FirewallD is not running'),
])
def test_firewalld_capture_errors_are_not_read_as_closed(runtime, words):
    run_command, calls = firewalld_replay(state='state', runtime=runtime, permanent=runtime)
    result, failure = PolicyTakeBack(run_command, BINS.get).run(params(firewall_ports=['8000/tcp']))
    assert not result['ok'] and words in failure and not result['changed']
    assert calls == [[FIREWALL_CMD, '--state'], [FIREWALL_CMD, '--zone', 'public', '--query-port', '8000/tcp']]


def test_firewalld_stopped_falls_back_to_ufw():
    run_command, calls = firewalld_replay(state='state-stopped')
    result, failure = PolicyTakeBack(run_command, without('ufw').get).run(params(firewall_ports=['8000/tcp']))
    assert failure is None and result['steps'][1]['reason'] == 'neither firewalld nor ufw is active on this host'
    assert calls == [[FIREWALL_CMD, '--state']]


def test_firewalld_state_not_root_fails_with_its_cause():
    run_command, calls = firewalld_replay(state='state-not-root')
    result, failure = PolicyTakeBack(run_command, BINS.get).run(params(firewall_ports=['8000/tcp']))
    assert failure == ('firewall: /usr/bin/firewall-cmd --state failed (rc 253): Authorization failed.\n'
                       '    Make sure polkit agent is running or run the application as superuser. ' + AS_ROOT)
    assert calls == [[FIREWALL_CMD, '--state']]


# --- units -------------------------------------------------------------------------------------------

def test_mask_units_records_the_previous_state():
    host = FakePolicyHost(units={UNIT: ('loaded', 'enabled'), 'model-sidecar.service': ('masked', 'masked'),
                                 'model-timer.timer': ('loaded', 'static')})
    result, failure, steps = run(host, mask_units=[UNIT, 'model-sidecar.service', 'model-timer.timer'])
    assert failure is None and result['changed']
    show = [SYSTEMCTL, 'show', '--property', 'LoadState,UnitFileState', '--']
    assert host.calls == [
        show + [UNIT], [SYSTEMCTL, 'mask', '--', UNIT],
        show + ['model-sidecar.service'],
        show + ['model-timer.timer'], [SYSTEMCTL, 'mask', '--', 'model-timer.timer'],
    ]
    assert steps['units']['items'] == [
        {'unit': UNIT, 'previous': 'enabled', 'new': 'masked', 'changed': True},
        {'unit': 'model-sidecar.service', 'previous': 'masked', 'new': 'masked', 'changed': False},
        {'unit': 'model-timer.timer', 'previous': 'static', 'new': 'masked', 'changed': True},
    ]
    assert steps['units']['status'] == 'done'


def test_not_found_unit_records_its_load_state():
    host = FakePolicyHost()
    dummy, failure, steps = run(host, mask_units=['gone.service'])
    assert failure is None
    assert steps['units']['items'] == [{'unit': 'gone.service', 'previous': 'not-found', 'new': 'masked', 'changed': True}]


def test_dropin_removed_with_its_content_kept_then_reload(tmp_path):
    dropin = tmp_path / 'model-server@llama.service.d' / '50-gpu.conf'
    dropin.parent.mkdir()
    content = '[Service]\nDeviceAllow=/dev/nvidia0 rw\nEnvironment=CUDA_VISIBLE_DEVICES=0\n'
    dropin.write_text(content)
    missing = str(tmp_path / 'model-server@llama.service.d' / '60-absent.conf')
    host = FakePolicyHost()
    result, failure, steps = run(host, remove_dropins=[str(dropin), missing])
    assert failure is None and result['changed']
    assert not dropin.exists()
    assert steps['units']['items'] == [{'path': str(dropin), 'changed': True, 'previous': content, 'new': None},
                                       {'path': missing, 'changed': False, 'previous': None, 'new': None}]
    assert host.calls == [[SYSTEMCTL, 'daemon-reload']]


def test_no_dropin_present_means_no_reload(tmp_path):
    host = FakePolicyHost()
    result, failure, steps = run(host, remove_dropins=[str(tmp_path / 'absent.conf')])
    assert failure is None and not result['changed'] and steps['units']['status'] == 'unchanged'
    assert host.calls == []


def test_large_dropin_previous_is_bounded(tmp_path):
    dropin = tmp_path / 'big.conf'
    dropin.write_bytes(b'#' * (_policy.MAX_SAVED_BYTES + 10))
    dummy, failure, steps = run(FakePolicyHost(), remove_dropins=[str(dropin)])
    assert failure is None and len(steps['units']['items'][0]['previous']) == _policy.MAX_SAVED_BYTES


def test_systemctl_missing_fails_the_units_step():
    dummy, failure, steps = run(FakePolicyHost(), bins=without('systemctl'), mask_units=[UNIT])
    assert steps['units']['status'] == 'failed' and failure == 'units: systemctl not found; units cannot be masked'


# --- everything at once: check mode, failures, a second run -----------------------------------------

def everything(tmp_path):
    dropin = tmp_path / '50-gpu.conf'
    dropin.write_text('[Service]\nDeviceAllow=/dev/nvidia0 rw\n')
    host = FakePolicyHost(selinux='enforcing', ports={('http_port_t', 'tcp'): ['8000']}, booleans={'httpd_can_network_connect': True},
                          fcontexts={MODELS: 'httpd_sys_content_t'}, firewalld={('public', False): {'8000/tcp'}, ('public', True): {'8000/tcp'}},
                          units={UNIT: ('loaded', 'enabled')})
    options = dict(selinux_ports=[{'port': '8000', 'setype': 'http_port_t'}],
                   selinux_booleans=[{'name': 'httpd_can_network_connect'}],
                   selinux_fcontexts=[{'target': MODELS, 'setype': 'httpd_sys_content_t', 'path': '/srv/models'}],
                   firewall_ports=['8000/tcp'], mask_units=[UNIT], remove_dropins=[str(dropin)])
    return host, options, dropin


def test_check_mode_runs_only_the_read_commands(tmp_path, selinux_config):
    host, options, dropin = everything(tmp_path)
    config = selinux_config.read_text()
    result, failure, steps = run(host, check_mode=True, selinux_mode='permissive', **options)
    assert failure is None and result['ok'] and result['changed']
    assert host.mutations == []
    assert host.calls == [
        ['/usr/sbin/selinuxenabled'],
        [SEMANAGE, 'port', '--list', '--locallist'],
        ['/usr/sbin/getsebool', '--', 'httpd_can_network_connect'],
        [SEMANAGE, 'fcontext', '--list', '--locallist'],
        ['/usr/sbin/getenforce'],
        [FIREWALL_CMD, '--state'],
        [FIREWALL_CMD, '--zone', 'public', '--query-port', '8000/tcp'],
        [FIREWALL_CMD, '--permanent', '--zone', 'public', '--query-port', '8000/tcp'],
        [SYSTEMCTL, 'show', '--property', 'LoadState,UnitFileState', '--', UNIT],
    ]
    # What would change, with what is there now.
    assert all(s['status'] == 'done' and s['changed'] for s in result['steps'])
    assert all(i['changed'] for s in result['steps'] for i in s['items'])
    assert [i['previous'] for i in steps['selinux']['items']] == ['labelled', 'on', 'present', 'enforcing']
    assert steps['units']['items'][1]['previous'] == dropin.read_text()
    # Nothing changed on the host.
    assert dropin.exists() and selinux_config.read_text() == config and host.selinux == 'enforcing'
    assert host.ports == {('http_port_t', 'tcp'): ['8000']} and host.booleans == {'httpd_can_network_connect': True}


def test_everything_then_a_second_run_changes_nothing(tmp_path):
    host, options, dropin = everything(tmp_path)
    result, failure, dummy = run(host, **options)
    assert failure is None and result['changed']
    assert host.mutations == [
        [SEMANAGE, 'port', '--delete', '--type', 'http_port_t', '--proto', 'tcp', '8000'],
        ['/usr/sbin/setsebool', '-P', 'httpd_can_network_connect', 'off'],
        [SEMANAGE, 'fcontext', '--delete', '--type', 'httpd_sys_content_t', '--ftype', 'a', '--', MODELS],
        ['/usr/sbin/restorecon', '-R', '--', '/srv/models'],
        [FIREWALL_CMD, '--zone', 'public', '--remove-port', '8000/tcp'],
        [FIREWALL_CMD, '--permanent', '--zone', 'public', '--remove-port', '8000/tcp'],
        [SYSTEMCTL, 'mask', '--', UNIT],
        [SYSTEMCTL, 'daemon-reload'],
    ]
    assert not dropin.exists()
    host.calls = []
    result, failure, steps = run(host, **options)
    assert failure is None and result['ok'] and not result['changed']
    assert host.mutations == []
    assert all(s['status'] == 'unchanged' for s in result['steps'])
    assert steps['units']['items'] == [{'unit': UNIT, 'previous': 'masked', 'new': 'masked', 'changed': False},
                                       {'path': str(dropin), 'changed': False, 'previous': None, 'new': None}]


@pytest.mark.parametrize('fail,answer,step,message', [
    (('semanage', 'fcontext', '--delete'), (1, '', 'ValueError: File context for %s is defined in policy, cannot be deleted\n' % MODELS),
     'selinux', '/usr/sbin/semanage fcontext --delete --type httpd_sys_content_t --ftype a -- %s failed (rc 1): '
     'ValueError: File context for %s is defined in policy, cannot be deleted' % (MODELS, MODELS)),
    (('setsebool',), (1, '', 'Could not change active booleans: Permission denied\n'),
     'selinux', '/usr/sbin/setsebool -P httpd_can_network_connect off failed (rc 1): '
     'Could not change active booleans: Permission denied'),
    (('firewall-cmd', '--zone', 'public', '--remove-port'), (252, '', 'FirewallD is not running\n'),
     'firewall', '/usr/bin/firewall-cmd --zone public --remove-port 8000/tcp failed (rc 252): FirewallD is not running'),
    (('systemctl', 'mask'), (1, '', 'Failed to mask unit: Access denied\n'),
     'units', '/usr/bin/systemctl mask -- %s failed (rc 1): Failed to mask unit: Access denied' % UNIT),
], ids=['semanage', 'setsebool', 'firewall-cmd', 'systemctl'])
def test_failing_tool_fails_its_step_with_the_command_and_stderr(tmp_path, fail, answer, step, message):
    host, options, dummy = everything(tmp_path)
    host.fail[fail] = answer
    result, failure, steps = run(host, **options)
    assert not result['ok'] and result['changed']
    assert steps[step]['status'] == 'failed' and steps[step]['reason'] == message
    assert failure == '%s: %s' % (step, message)
    # The other steps still ran.
    assert all(s['status'] == 'done' for name, s in steps.items() if name != step)


def test_failing_read_with_output_on_stdout_only():
    host = FakePolicyHost(selinux='enforcing', fail={('getsebool',): (1, 'Error getting active value for nosuch_bool\n', '')})
    dummy, failure, dummy = run(host, selinux_booleans=[{'name': 'nosuch_bool'}])
    assert failure == 'selinux: /usr/sbin/getsebool -- nosuch_bool failed (rc 1): Error getting active value for nosuch_bool'
    assert host.mutations == []


def test_failing_tool_without_output():
    host = FakePolicyHost(ufw=[], fail={('ufw', 'status'): (0, 'Status: active\n', ''), ('ufw', 'show'): (1, '', '')})
    dummy, failure, dummy = run(host, bins=without('firewall-cmd'), firewall_ports=['8000/tcp'])
    assert failure == 'firewall: /usr/sbin/ufw show added failed (rc 1): no output'


# --- check_params ------------------------------------------------------------------------------------

def problems(**options):
    return check_params(validate(argument_spec(), options, 'policy'))


def test_check_params_accepts_the_usual_names():
    assert problems(mask_units=['model-server@llama.service', 'vllm.service', 'a:b.mount'],
                    firewall_ports=['8000', '8000/tcp', '9000-9010/udp', '5000/sctp', '1/dccp', '65535', '1-65535/tcp',
                                    '8000-8000/tcp'],
                    selinux_ports=[{'port': '8000', 'setype': 'http_port_t'}, {'port': '8000-8010', 'setype': 'http_port_t'},
                                   {'port': '65535', 'proto': 'sctp', 'setype': 'http_port_t'}],
                    selinux_booleans=[{'name': 'httpd_can_network_connect'}],
                    selinux_fcontexts=[{'target': '-x', 'setype': 'httpd_sys_content_t'}],
                    remove_dropins=['/etc/systemd/system/x.service.d/50-gpu.conf']) == []


@pytest.mark.parametrize('options,words', [
    (dict(mask_units=['--now']), "mask_units: '--now' is not a valid name"),
    (dict(mask_units=['-x.service']), "mask_units: '-x.service' is not a valid name"),
    (dict(mask_units=['a b.service']), "mask_units: 'a b.service' is not a valid name"),
    (dict(mask_units=['x;reboot']), "mask_units: 'x;reboot' is not a valid name"),
    (dict(selinux_booleans=[{'name': '-P'}]), "selinux_booleans: '-P' is not a valid name"),
    (dict(selinux_ports=[{'port': '8000', 'setype': '--delete'}]), "setype: '--delete' is not a valid name"),
    (dict(selinux_fcontexts=[{'target': '/srv', 'setype': '-t'}]), "setype: '-t' is not a valid name"),
    (dict(firewall_ports=['http']), "firewall_ports: 'http' is not PORT[-PORT][/tcp|udp|sctp|dccp]"),
    (dict(firewall_ports=['8000/icmp']), "firewall_ports: '8000/icmp' is not PORT[-PORT][/tcp|udp|sctp|dccp]"),
    (dict(firewall_ports=['--add-port=1/tcp']), "firewall_ports: '--add-port=1/tcp' is not"),
    (dict(firewall_ports=['8000:8010/tcp']), "firewall_ports: '8000:8010/tcp' is not"),
    (dict(firewall_ports=['8000/tcp ']), "firewall_ports: '8000/tcp ' is not"),
    (dict(firewall_ports=['']), "firewall_ports: '' is not"),
    (dict(firewall_ports=['99999']), "firewall_ports: '99999' is not PORT[-PORT][/tcp|udp|sctp|dccp] with ports 1-65535"),
    (dict(firewall_ports=['65536/tcp']), "firewall_ports: '65536/tcp' is not"),
    (dict(firewall_ports=['0/tcp']), "firewall_ports: '0/tcp' is not"),
    (dict(firewall_ports=['8010-8000/tcp']), "firewall_ports: '8010-8000/tcp' is not"),
    (dict(firewall_ports=['8000-70000/tcp']), "firewall_ports: '8000-70000/tcp' is not"),
    (dict(firewall_ports=['08000/tcp']), "firewall_ports: '08000/tcp' is not"),
    (dict(firewall_ports=['8000/tcp\n']), "firewall_ports: '8000/tcp\\n' is not"),
    (dict(firewall_ports=['8000/TCP']), "firewall_ports: '8000/TCP' is not"),
    (dict(firewall_ports=['8000-/tcp']), "firewall_ports: '8000-/tcp' is not"),
    (dict(mask_units=['x.service\n']), "mask_units: 'x.service\\n' is not a valid name"),
    (dict(selinux_ports=[{'port': '8000/tcp', 'setype': 'http_port_t'}]), "selinux_ports: port '8000/tcp' is not PORT or PORT-PORT"),
    (dict(selinux_ports=[{'port': '-1', 'setype': 'http_port_t'}]), "selinux_ports: port '-1' is not PORT or PORT-PORT"),
    (dict(selinux_ports=[{'port': '99999', 'setype': 'http_port_t'}]), "selinux_ports: port '99999' is not PORT or PORT-PORT"),
    (dict(selinux_ports=[{'port': '9000-8000', 'setype': 'http_port_t'}]), "selinux_ports: port '9000-8000' is not"),
    (dict(remove_dropins=['relative.conf']), "remove_dropins: 'relative.conf' is not an absolute path"),
])
def test_check_params_rejects(options, words):
    found = problems(**options)
    assert len(found) == 1 and found[0].startswith(words), found


@pytest.mark.parametrize('zone', ['public', 'internal', 'model-zone_1', 'model-zone_17char', 'public/extra', 'a/b',
                                  'abcdefghijklmnopq/' + 'x' * 40])
def test_firewalld_zone_names_firewalld_accepts(zone):
    assert problems(firewall_zone=zone) == []


@pytest.mark.parametrize('zone,words', [
    # firewall-cmd --new-zone refuses these (tests/unit/fixtures/firewall-cmd_1.3.3_bookworm_capture.txt)
    ('abcdefghijklmnopqr', "firewall_zone: 'abcdefghijklmnopqr' has more than the 17 characters firewalld allows"),
    ('abc.def', "firewall_zone: 'abc.def' is not a firewalld zone name"),
    # firewall.core.io.zone.Zone.check_name: no / first or last, at most one
    ('/public', "firewall_zone: '/public' is not a firewalld zone name"),
    ('public/', "firewall_zone: 'public/' is not a firewalld zone name"),
    ('a/b/c', "firewall_zone: 'a/b/c' is not a firewalld zone name"),
    ('abcdefghijklmnopqr/x', "firewall_zone: 'abcdefghijklmnopqr/x' has more than the 17"),
    # would reach firewall-cmd as an option, or as two words
    ('--permanent', "firewall_zone: '--permanent' is not a firewalld zone name"),
    ('my zone', "firewall_zone: 'my zone' is not a firewalld zone name"),
    ('', "firewall_zone: '' is not a firewalld zone name"),
    ('public\n', "firewall_zone: 'public\\n' is not a firewalld zone name"),
])
def test_firewalld_zone_names_refused(zone, words):
    found = problems(firewall_zone=zone)
    assert len(found) == 1 and found[0].startswith(words), found


def test_check_params_lists_every_problem():
    assert len(problems(mask_units=['-a', '-b'], firewall_ports=['x'], selinux_booleans=[{'name': '--'}])) == 4


def test_spec_refuses_bad_choices():
    with pytest.raises(SpecError, match='selinux_mode'):
        validate(argument_spec(), {'selinux_mode': 'enforcing'}, 'policy')
    with pytest.raises(SpecError, match='proto'):
        validate(argument_spec(), {'selinux_ports': [{'port': '80', 'proto': 'icmp', 'setype': 'http_port_t'}]}, 'policy')
    with pytest.raises(SpecError, match='ftype'):
        validate(argument_spec(), {'selinux_fcontexts': [{'target': MODELS, 'setype': 'x_t', 'ftype': 'all files'}]}, 'policy')


def test_validated_is_spec_and_checks_together():
    assert _policy.validated(None, 'policy')['firewall_zone'] == 'public'
    assert _policy.validated({'selinux_fcontexts': [{'target': MODELS, 'setype': 'x_t'}]}, 'policy')['selinux_fcontexts'][0]['ftype'] == 'a'
    with pytest.raises(SpecError) as raised:
        _policy.validated({'firewall_ports': ['99999'], 'firewall_zone': 'a.b'}, 'policy')
    assert str(raised.value).startswith("policy: firewall_ports: '99999' is not") and "firewall_zone: 'a.b'" in str(raised.value)
