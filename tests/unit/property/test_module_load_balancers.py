# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lb_pool_state, lb_batch_state and model_health_state on generated options, against a stateful HAProxy runtime API
(the 2.6.12 capture), a Consul agent, an HTTP admin endpoint and a flag file.

Properties: exit_json/fail_json only (hostile host names, socket paths, ports and timeouts included); they sleep no
longer than verify_timeout (+ available_timeout) + one interval; check mode sends no change and touches no file; a
cut-off, reset or timed-out runtime API answer is never taken for the pool; a change reported done is in effect.
"""

from __future__ import annotations

import os

import pytest

from hypothesis import event, given
from hypothesis import strategies as st

from ansible_collections.modelops.shutdown.plugins.modules import lb_batch_state, lb_pool_state, model_health_state
from ansible_collections.modelops.shutdown.tests.unit.property import fakes, hosts
from ansible_collections.modelops.shutdown.tests.unit.property.scenarios import Machine, budget
from ansible_collections.modelops.shutdown.tests.unit.property.strategies import garbage_text, tampered, timing

SOCKET = '/run/haproxy/admin.sock'
HOSTILE_HOSTS = ('a' * 64 + '.example.net', 'a..b', '.', '\udc80', 'exa mple', 'a\x00b', '-h', 'x' * 300, '[::1', '')
HOSTILE_SOCKETS = ('/run/' + 'x' * 200 + '.sock', '/run/a\x00b.sock', '/run/\udcff.sock', '', 'relative.sock')
STATE_TO_ADMIN = {'ready': 'ready', 'draining': 'drain', 'maintenance': 'maint'}
HOSTS = ['gpu-0%d' % n for n in range(1, 6)]


@st.composite
def runtime_api(draw, server=False):
    """The haproxy option: a unix socket or a TCP address, valid-looking or hostile, with a timeout."""
    if draw(st.booleans()):
        api = {'socket': draw(st.one_of(st.just(SOCKET), st.just(SOCKET), st.sampled_from(HOSTILE_SOCKETS)))}
    else:
        api = {'host': draw(st.one_of(st.sampled_from(('127.0.0.1', 'lb1.example.net')), st.sampled_from(HOSTILE_HOSTS))),
               'port': draw(st.sampled_from((9999, 9999, 0, 70000, -1, 2 ** 40)))}
    if draw(st.booleans()):
        api['timeout'] = draw(timing(0.1, 5))
    if server:
        api['backend'] = draw(st.sampled_from(('models', 'models', 'models', 'nope', 'a;b', '')))
        api['server'] = draw(st.sampled_from(hosts.SERVERS + hosts.SERVERS + ('nope', 'm1\nshow info', '-m1')))
    return api


HAPROXY_FAULT = st.one_of(st.none(), st.none(), st.none(), st.tuples(st.sampled_from(('cut', 'timeout', 'reset')), st.floats(0, 1)),
                          st.tuples(st.just('junk'), garbage_text()), st.sampled_from(('denied', 'unknown', 'ignore_set')))
REFUSALS = st.sampled_from((None, None, None, None, ConnectionRefusedError(111, 'Connection refused'),
                            FileNotFoundError(2, 'No such file or directory'), PermissionError(13, 'Permission denied'),
                            fakes.real_socket.timeout('timed out')))


CUT_OFF = st.one_of(st.none(), st.tuples(st.sampled_from(('cut', 'timeout', 'reset')), st.floats(0, 1)))


def haproxy_from(data, cut_off=False):
    """A FakeHAProxy with faults: C(cut_off) makes most answers cut off, reset or timed out (and no refusal)."""
    flights = dict((server, data.draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1)), min_size=1, max_size=2), label='flight'))
                   for server in hosts.SERVERS)
    faults = data.draw(st.lists(CUT_OFF if cut_off else HAPROXY_FAULT, min_size=1 if cut_off else 0, max_size=5), label='faults')
    return hosts.FakeHAProxy(in_flight=flights, faults=faults, refuse=None if cut_off else data.draw(REFUSALS, label='refuse'))


def complete(labels):
    return all(label == 'ok' for label in labels)


# --------------------------------------------------------------------------------------------- lb_pool_state

@pytest.mark.parametrize('answers', ('hostile-options', 'cut-off'))
@given(api=runtime_api(), backends=st.one_of(st.none(), st.lists(st.sampled_from(('models', 'nope', 'a;b', '-x', '', 'm\x00')), max_size=2)),
       data=st.data(), check_mode=st.booleans())
def test_lb_pool_state_reads_a_whole_pool_or_fails(answers, api, backends, data, check_mode):
    """lb_pool_state: exit_json/fail_json only; never waits; sends only show commands; succeeds only on complete
    answers (a cut-off, reset, timed-out, refused or garbage show stat / show servers state fails the task), and then
    reports each server's real admin state. C(cut-off): a valid socket whose answers are mostly cut short."""
    cut_off = answers == 'cut-off'
    if cut_off:
        api, backends = {'socket': SOCKET}, data.draw(st.sampled_from((None, ['models'])), label='backends')
    args = {'haproxy': api}
    if backends is not None:
        args['backends'] = backends
    if not cut_off:
        args = data.draw(tampered(args, max_changes=1), label='args')
    with fakes.sandboxed() as sandbox:
        machine = Machine(sandbox, haproxy=haproxy_from(data, cut_off))
        outcome = machine.run(lb_pool_state, args, check_mode=check_mode, allowed_seconds=budget(0.0))
    assert not outcome.world.haproxy.mutating, outcome.world.haproxy.mutating
    if outcome.failed:
        return
    event('read a pool')
    stat = machine.haproxy.labels('show stat')
    state = [label for label in machine.haproxy.labels('show servers state') if label != 'unknown']
    assert complete(stat) and complete(state), (
        'the pool was reported from incomplete answers: show stat %r, show servers state %r' % (stat, state))
    if machine.haproxy.labels('show servers state') == ['ok']:
        for server in outcome.result['servers']:
            if server['backend'] == 'models':
                assert server['state'] == hosts.TRUTH[server['server']], server


# --------------------------------------------------------------------------------------------- lb_batch_state

@st.composite
def batch_options(draw, cut_off=False):
    count = draw(st.integers(1, 5))
    api = draw(runtime_api()) if draw(st.integers(0, 3)) == 0 and not cut_off else {'socket': SOCKET}
    members = []
    for index in range(count):
        kind = draw(st.sampled_from(('haproxy', 'haproxy', 'haproxy', 'consul', 'http', 'file')))
        if kind == 'haproxy':
            entry = dict(api, backend='models', server=hosts.SERVERS[index])
        elif kind == 'consul':
            entry = {'url': hosts.CONSUL_URL, 'service_id': 'vllm-1', 'timeout': 1.0}
        elif kind == 'http':
            entry = {'url': hosts.ADMIN_URL, 'timeout': 1.0}
        else:
            entry = {'path': '@SANDBOX@/files/flag-%d' % index}
        members.append({'host': HOSTS[index], kind: entry})
    if cut_off:
        members = [{'host': HOSTS[index], 'haproxy': dict(api, backend='models', server=hosts.SERVERS[index])} for index in range(count)]
    state = draw(st.sampled_from(('draining', 'maintenance', 'ready', 'restore')))
    args = {'name': 'lb1', 'state': state, 'members': members,
            'batch': draw(st.lists(st.sampled_from(HOSTS[:count]), min_size=1, max_size=count, unique=True)),
            'min_available': draw(st.one_of(st.sampled_from((0, 0, 1, 2, '50%', '100%', 'x', -1, {'default': 1})),
                                            st.integers(4301, 6000).map(lambda n: '9' * n))),
            'verify_timeout': draw(timing(0, 2)), 'verify_interval': draw(timing(0.01, 0.5))}
    if draw(st.booleans()):
        args['available_timeout'] = draw(timing(0, 1))
    if state == 'restore':
        args['restore_states'] = dict((host, draw(st.sampled_from(('ready', 'draining', 'maintenance', 'bogus')))) for host in args['batch'])
    return args if cut_off else draw(tampered(args, max_changes=1))


def sets_after_incomplete_read(served):
    """Whether a set server command followed an incomplete show answer read before the first set (the mark's read)."""
    incomplete = False
    for command, label, flights in served:
        if command.startswith('set server '):
            return incomplete
        if command.startswith('show ') and label in ('cut', 'timeout', 'reset', 'junk', 'denied'):
            incomplete = True
    return False


def in_effect(machine, sandbox, member, state):
    kind = [k for k in ('haproxy', 'consul', 'http', 'file') if k in member][0]
    want = 'ready' if state == 'ready' else 'maintenance' if kind in ('consul', 'file') else state
    if kind == 'haproxy':
        admin = machine.haproxy.admin[member['haproxy']['server']]
        now = 'maintenance' if admin & 0x23 else 'draining' if admin & 0x18 else 'ready'
    elif kind == 'consul':
        now = 'maintenance' if machine.http.consul_maint else 'ready'
    elif kind == 'http':
        now = machine.http.admin_state
    else:
        now = 'maintenance' if os.path.exists(member['file']['path']) else 'ready'
    return now == want, now


@pytest.mark.parametrize('answers', ('hostile-options', 'cut-off'))
@given(data=st.data(), check_mode=st.booleans())
def test_lb_batch_state_marks_only_on_a_complete_read_and_only_reports_what_took_effect(answers, data, check_mode):
    """lb_batch_state: exit_json/fail_json only; sleeps at most verify_timeout + available_timeout + verify_interval;
    check mode changes nothing; no server is marked on the strength of an incomplete read; a batch reported marked
    (not failed, not check mode) is in the requested state on the load balancer. C(cut-off): HAProxy members only, on
    a valid socket whose answers are mostly cut short."""
    args = data.draw(batch_options(answers == 'cut-off'), label='args')
    http = hosts.FakeHttp(consul_maint=data.draw(st.booleans()), admin_state=data.draw(st.sampled_from(('ready', 'draining'))),
                          honour_sets=data.draw(st.sampled_from((True, True, False))),
                          faults=data.draw(st.lists(st.one_of(st.none(), st.none(), st.sampled_from(('timeout', 'refused'))), max_size=3)))
    allowed = budget(0.0) if check_mode else budget((args.get('verify_timeout', 10.0), args.get('verify_interval', 0.5)),
                                                    args.get('available_timeout', 0.0))
    with fakes.sandboxed() as sandbox:
        args = fakes.substitute(args, '@SANDBOX@', sandbox.root)
        for index in range(5):
            if data.draw(st.booleans(), label='flag-%d' % index):
                sandbox.write('files/flag-%d' % index, 'reason: earlier\n')
        machine = Machine(sandbox, haproxy=haproxy_from(data, answers == 'cut-off'), http=http)
        outcome = machine.run(lb_batch_state, args, check_mode=check_mode, allowed_seconds=allowed)
        assert not sets_after_incomplete_read(machine.haproxy.served), (
            'servers were marked after an incomplete read: %r' % ([(c, l) for c, l, f in machine.haproxy.served],))
        if outcome.failed or check_mode or outcome.cut_short or args.get('state') == 'restore':
            return
        event('marked')
        for member in args['members']:
            if member['host'] in args['batch']:
                ok, now = in_effect(machine, sandbox, member, args['state'])
                assert ok, '%s reported %s but is %s' % (member['host'], args['state'], now)


# --------------------------------------------------------------------------------------------- model_health_state

@st.composite
def health_options(draw):
    kind = draw(st.sampled_from(('haproxy', 'haproxy', 'consul', 'http', 'file')))
    if kind == 'haproxy':
        target = draw(runtime_api(server=True))
    elif kind == 'consul':
        target = {'url': hosts.CONSUL_URL, 'service_id': draw(st.sampled_from(('vllm-1', 'vllm-1', 'nope', '../x'))),
                  'timeout': draw(timing(0.1, 3))}
    elif kind == 'http':
        target = {'url': hosts.ADMIN_URL, 'state_key': draw(st.sampled_from(('state', 'state', 'a.b', ''))),
                  'method': draw(st.sampled_from(('POST', 'PUT', 'PATCH'))), 'timeout': draw(timing(0.1, 3))}
    else:
        target = {'path': draw(st.sampled_from(('@SANDBOX@/files/flag', '@SANDBOX@/nope/flag', '@SANDBOX@/files'))),
                  'create_parent': draw(st.booleans())}
    args = {'state': draw(st.sampled_from(('ready', 'draining', 'maintenance', 'query'))), kind: target,
            'verify_timeout': draw(timing(0, 2)), 'verify_interval': draw(timing(0.01, 0.5))}
    if draw(st.booleans()):
        args['health_url'] = hosts.HEALTH_URL
    return draw(tampered(args, max_changes=1))


@given(args=health_options(), data=st.data(), check_mode=st.booleans())
def test_model_health_state_changes_only_outside_check_mode_and_reports_only_what_took_effect(args, data, check_mode):
    """model_health_state: exit_json/fail_json only (hostile HAProxy addresses, names and timeouts included); sleeps at
    most verify_timeout + two verify_interval (backend, then health URL); check mode changes nothing; a change reported
    done is in effect on the backend."""
    junk = st.tuples(st.just('body'), st.one_of(st.sampled_from(('{}', 'x')), st.integers(1, 100000).map(lambda d: '[' * d + ']' * d)))
    http = hosts.FakeHttp(consul_maint=data.draw(st.booleans()), admin_state=data.draw(st.sampled_from(('ready', 'draining'))),
                          admin_key=(args.get('http') or {}).get('state_key') if isinstance(args.get('http'), dict) else 'state',
                          honour_sets=data.draw(st.sampled_from((True, True, False))),
                          health_status=data.draw(st.lists(st.sampled_from((200, 503)), min_size=1, max_size=3)),
                          faults=data.draw(st.lists(st.one_of(st.none(), st.none(), st.sampled_from(('timeout', 'refused')), junk), max_size=3)))
    interval = args.get('verify_interval', 0.5)
    allowed = budget(0.0) if check_mode else budget((args.get('verify_timeout', 10.0), interval), interval)
    with fakes.sandboxed() as sandbox:
        args = fakes.substitute(args, '@SANDBOX@', sandbox.root)
        if data.draw(st.booleans(), label='flag exists'):
            sandbox.write('files/flag', 'reason: earlier\n')
        machine = Machine(sandbox, haproxy=haproxy_from(data), http=http)
        outcome = machine.run(model_health_state, args, check_mode=check_mode, allowed_seconds=allowed)
        if outcome.failed or check_mode or outcome.cut_short or args.get('state') not in STATE_TO_ADMIN:
            return
        member = dict((k, v) for k, v in args.items() if k in ('haproxy', 'consul', 'http', 'file'))
        if len(member) != 1 or not isinstance(list(member.values())[0], dict):
            return
        if 'haproxy' in member and member['haproxy'].get('server') not in hosts.SERVERS:
            return
        event('changed and verified')
        ok, now = in_effect(machine, sandbox, member, args['state'])
        assert ok, 'reported %s in effect, but the backend is %s: %r' % (args['state'], now, outcome.result)
