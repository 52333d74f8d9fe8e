# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_drain's main() on generated options and sources (Prometheus scrapes, the HAProxy runtime API, /proc/net/tcp).

Properties: it ends in exit_json/fail_json; it sleeps no longer than timeout + one poll_interval (nothing at all when
its timing options are invalid); it reports drained only when every configured source was read and showed zero; it
never changes anything (no HAProxy set command, no HTTP method but GET).
"""

from __future__ import annotations

import ipaddress

from hypothesis import event, given, note
from hypothesis import strategies as st

from ansible_collections.modelops.shutdown.plugins.module_utils import _inflight
from ansible_collections.modelops.shutdown.plugins.modules import model_drain
from ansible_collections.modelops.shutdown.tests.unit.property import fakes, hosts
from ansible_collections.modelops.shutdown.tests.unit.property.scenarios import Machine, budget, tcp_text
from ansible_collections.modelops.shutdown.tests.unit.property.strategies import (
    absent_or_null,
    garbage_text,
    metrics_body,
    mutated,
    seconds,
    tampered,
    timing,
)

GENERIC_NAMES = ('my_requests_in_flight', 'queue.depth', 'vllm:num_requests_running')
SERVER_LABELS = {'model_name': 'facebook/opt-125m'}
PORT = 18080
PEERS = ('127.0.0.1', '10.0.0.5', '10.0.1.3', '::1', '::ffff:10.0.0.5')


@st.composite
def source_options(draw, sources):
    """Valid-looking options of the C(sources) (a subset of metrics, haproxy, connections)."""
    args = {}
    if 'metrics' in sources:
        preset = draw(st.sampled_from(_inflight.PRESET_CHOICES))
        metrics = {'url': hosts.METRICS_URL, 'preset': preset, 'timeout': draw(seconds(0.1, 5))}
        if preset == 'generic':
            metrics['metrics'] = draw(st.lists(st.fixed_dictionaries(
                {'name': st.sampled_from(GENERIC_NAMES)},
                optional={'labels': st.dictionaries(st.sampled_from(('model_name', 'route')), st.sampled_from(('facebook/opt-125m', '/v1')), max_size=1)}),
                min_size=1, max_size=2))
        if draw(st.booleans()):
            metrics['labels'] = draw(st.dictionaries(st.sampled_from(('model_name',)), st.sampled_from(('facebook/opt-125m', 'other')), max_size=1))
        if draw(st.booleans()):
            metrics['token'] = 'sEcReT-token'
        args['metrics'] = metrics
    if 'haproxy' in sources:
        haproxy = {'backend': 'models', 'server': draw(st.sampled_from(hosts.SERVERS + ('nope',)))}
        if draw(st.booleans()):
            haproxy['socket'] = '/run/haproxy/admin.sock'
        else:
            haproxy.update(host=draw(st.sampled_from(('127.0.0.1', 'lb1.example.net'))), port=9999)
        args['haproxy'] = haproxy
    if 'connections' in sources:
        args['connections'] = {'port': PORT, 'exclude_peers': draw(st.lists(st.sampled_from(('10.0.0.5', '10.0.1.0/28', '::1')), max_size=2))}
    return args


SOURCES = st.lists(st.sampled_from(('metrics', 'haproxy', 'connections')), min_size=1, max_size=3, unique=True)


@st.composite
def drain_options(draw):
    """Valid-looking model_drain options with hostile timings now and then, then tampered with."""
    args = draw(source_options(draw(SOURCES)))
    for name, strategy in (('timeout', timing(0, 5)), ('poll_interval', timing(0.1, 2)), ('quiet_period', timing(0, 2)),
                           ('on_timeout', st.sampled_from(('fail', 'proceed'))), ('max_samples', st.integers(-1, 60)),
                           ('since', timing(0, 10).map(lambda v: fakes.FakeClock.WALL0 - v if isinstance(v, (int, float)) and not isinstance(v, bool) else v))):
        if draw(st.booleans()):
            args[name] = draw(strategy)
    return draw(tampered(args, max_changes=1))


def selectors_of(args):
    """The (name, labels) pairs the metrics source sums, as model_drain documents its presets."""
    metrics = args.get('metrics') if isinstance(args.get('metrics'), dict) else {}
    preset = metrics.get('preset', 'generic')
    labels = metrics.get('labels') if isinstance(metrics.get('labels'), dict) else {}
    if isinstance(preset, str) and preset in _inflight.PRESETS:
        return [(name, dict(labels)) for name in _inflight.PRESETS[preset]]
    selected = []
    for item in metrics.get('metrics') or []:
        if isinstance(item, dict) and isinstance(item.get('name'), str):
            merged = dict(labels)
            merged.update(item.get('labels') if isinstance(item.get('labels'), dict) else {})
            selected.append((item['name'], merged))
    return selected or [('my_requests_in_flight', {})]


@st.composite
def scrape(draw, selectors):
    """One /metrics body with its label: C(zero) (every selected gauge 0), C(busy), or C(maybe) (an edit or garbage
    that mentions a selected name: it could read as anything)."""
    kind = draw(st.sampled_from(('clean', 'clean', 'clean', 'edited', 'garbage')))
    values = draw(st.lists(st.sampled_from((0, 0, 0, 1, 3, 0.5)), min_size=len(selectors), max_size=len(selectors)))
    text = metrics_body([(name, dict(labels, **SERVER_LABELS)) for name, labels in selectors], values)
    if kind == 'clean':
        return text, 'zero' if not any(values) else 'busy'
    text = draw(mutated(text, ' ')) if kind == 'edited' else draw(garbage_text())
    return text, 'maybe' if kind == 'edited' or any(name in text for name, dummy in selectors) else 'junk'


@st.composite
def drain_world(draw, args, zero_behind_faults=False):
    """What the sources will read: scrapes, HAProxy answers and faults, and the connections in /proc/net/tcp. With
    C(zero_behind_faults), HAProxy always shows nothing in flight but most of its answers are cut off, reset, timed out
    or garbage, and scrapes showing zero often come with an error status: only a module that takes a failed read for a
    read says drained."""
    selectors = selectors_of(args)
    bodies = draw(st.lists(scrape(selectors), min_size=1, max_size=4))
    http_fault = st.one_of(st.sampled_from(('timeout', 'refused')), st.tuples(st.just('status'), st.sampled_from((500, 503, 404, 401))),
                           st.tuples(st.just('slow'), st.floats(0, 3)))
    http_faults = draw(st.lists(st.one_of(st.none(), http_fault) if zero_behind_faults else
                                st.one_of(st.none(), st.none(), st.none(), http_fault), max_size=4))
    flight = st.just((0, 0)) if zero_behind_faults else st.tuples(st.integers(0, 3), st.integers(0, 2))
    flights = draw(st.lists(flight, min_size=1, max_size=4))
    haproxy_fault = st.one_of(st.tuples(st.sampled_from(('cut', 'timeout', 'reset')), st.floats(0, 1)),
                              st.tuples(st.just('junk'), garbage_text()), st.sampled_from(('denied', 'unknown')))
    haproxy_faults = draw(st.lists(haproxy_fault if zero_behind_faults else st.one_of(st.none(), st.none(), st.none(), haproxy_fault),
                                   min_size=1 if zero_behind_faults else 0, max_size=4))
    if zero_behind_faults and draw(st.booleans()):
        haproxy_faults.append(None)  # in the end a complete answer, which may then count
    refuse = draw(st.sampled_from((None, None, None, ConnectionRefusedError(111, 'Connection refused'),
                                   FileNotFoundError(2, 'No such file or directory'), fakes.real_socket.timeout('timed out'))))
    connections = draw(st.lists(st.tuples(st.sampled_from(PEERS), st.sampled_from(('01', '01', '06', '0A')),
                                          st.sampled_from((PORT, PORT, 9000))), max_size=4))
    tcp_edit = draw(st.one_of(st.none(), st.none(), st.none(), st.just('garbage')))
    return dict(bodies=bodies, http_faults=http_faults, flights=flights, haproxy_faults=haproxy_faults, refuse=refuse,
                connections=connections, tcp_edit=tcp_edit, tcp_garbage=draw(garbage_text()))


def established_count(connections, exclude):
    """How many connections the connections source must count: ESTABLISHED, to the port, from a peer not excluded."""
    networks = []
    for peer in exclude:
        net = ipaddress.ip_network(peer, strict=False)
        networks.append(net)
    count = 0
    for peer, state, port in connections:
        address = ipaddress.ip_address(peer)
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        if state == '01' and port == PORT and not any(address.version == n.version and address in n for n in networks):
            count += 1
    return count


def build(sandbox, args, plan):
    haproxy_args = args.get('haproxy') if isinstance(args.get('haproxy'), dict) else {}
    server = haproxy_args.get('server') if isinstance(haproxy_args.get('server'), str) else 'm1'
    machine = Machine(sandbox, http=hosts.FakeHttp(metrics_bodies=plan['bodies'], faults=plan['http_faults']),
                      haproxy=hosts.FakeHAProxy(in_flight={server: plan['flights']}, faults=plan['haproxy_faults'],
                                                refuse=plan['refuse']))
    v4, v6 = [], []
    for number, (peer, state, port) in enumerate(plan['connections']):
        (v6 if ':' in peer else v4).append(('::' if ':' in peer else '127.0.0.1', port, peer, 50000 + number, state))
    if plan['tcp_edit'] == 'garbage':
        sandbox.write('proc/net/tcp', plan['tcp_garbage'])
    else:
        sandbox.write('proc/net/tcp', tcp_text(v4))
        sandbox.write('proc/net/tcp6', tcp_text(v6))
    return machine


def zero_reads(args, plan, machine):
    """Per configured source, whether some read of it showed zero (C(maybe) for an edited scrape)."""
    reads = {}
    if isinstance(args.get('metrics'), dict):
        reads['metrics'] = any(label in ('zero', 'maybe') for label in machine.http.served['metrics'])
    if isinstance(args.get('haproxy'), dict):
        server = args['haproxy'].get('server')
        reads['haproxy'] = isinstance(server, str) and machine.haproxy.zero_reads(server) > 0
    if isinstance(args.get('connections'), dict):
        exclude = args['connections'].get('exclude_peers') or []
        try:
            count = established_count(plan['connections'], exclude)
        except (TypeError, ValueError):
            count = None
        reads['connections'] = plan['tcp_edit'] is None and count == 0
    return reads


def run_drain(args, plan, check_mode):
    with fakes.sandboxed() as sandbox:
        machine = build(sandbox, args, plan)
        allowed = budget(0.0) if check_mode else budget((args.get('timeout', 300), args.get('poll_interval', 0.5)))
        outcome = machine.run(model_drain, args, check_mode=check_mode, allowed_seconds=allowed)
        reads = zero_reads(args, plan, machine)
    note('zero reads per source: %r' % (reads,))
    return machine, outcome, reads


@given(args=drain_options(), data=st.data(), check_mode=st.booleans())
def test_model_drain_any_options_end_cleanly_in_time_and_change_nothing(args, data, check_mode):
    """model_drain on any options (hostile timings, tampered sources): exit_json/fail_json only; it sleeps at most
    timeout + poll_interval (nothing when those are invalid); it never changes the load balancer or anything else."""
    machine, outcome, reads = run_drain(args, data.draw(drain_world(args)), check_mode)
    if outcome.cut_short:
        return
    assert not any(outcome.world.mutations.values()), outcome.world.mutations
    assert not outcome.result.get('changed'), 'model_drain only reads, yet reported changed'


@given(sources=SOURCES, data=st.data(), check_mode=st.booleans(),
       timeout=seconds(0, 2), poll_interval=seconds(0.1, 1))
def test_model_drain_reports_drained_only_after_every_source_read_zero(sources, data, check_mode, timeout, poll_interval):
    """model_drain: drained: true only when every configured source was read completely and showed nothing in flight;
    a cut-off, reset, timed-out or garbage HAProxy answer, or a scrape with an error status, is not a read of zero."""
    args = data.draw(source_options(sources))
    args.update(timeout=timeout, poll_interval=poll_interval)
    machine, outcome, reads = run_drain(args, data.draw(drain_world(args, zero_behind_faults=True)), check_mode)
    if outcome.cut_short:
        return
    if outcome.result.get('drained'):
        event('drained')
        assert reads and all(reads.values()), (
            'drained: true without a read showing zero from every configured source (%r); scrapes served %r, '
            'HAProxy answers %r' % (reads, machine.http.served['metrics'], [(c, l) for c, l, f in machine.haproxy.served]))


@given(null_sources=st.dictionaries(st.sampled_from(('metrics', 'haproxy', 'connections')), absent_or_null(), min_size=1),
       timeout=seconds(0, 2), check_mode=st.booleans())
def test_model_drain_with_only_null_sources_never_drains(null_sources, timeout, check_mode):
    """model_drain: sources given as null, {} , [] or "" are no source; with nothing else to read the module must not
    report drained (it has counted nothing)."""
    args = dict(null_sources, timeout=timeout, poll_interval=0.1)
    plan = dict(bodies=[('', 'junk')], http_faults=[], flights=[(0, 0)], haproxy_faults=[], refuse=None, connections=[],
                tcp_edit=None, tcp_garbage='')
    machine, outcome, reads = run_drain(args, plan, check_mode)
    assert not outcome.result.get('drained'), 'drained: true with no configured source: %r' % (outcome.result,)
