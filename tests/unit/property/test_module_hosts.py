# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules that act on the model host itself: unit_stop, unit_processes, task_log_reconcile, policy_revoke and
host_shutdown (all of them in one call), on generated options against a fake systemd, firewall, SELinux, GPU tools,
/proc and task logs.

Properties: exit_json/fail_json only (names starting with "-", NUL bytes, "/" in unit names, NaN and huge timeouts,
deeply nested or undecodable task-log lines included); host_shutdown sleeps no longer than its phases' timeouts;
check mode runs no mutating command and leaves files alone; a name starting with "-" only ever reaches a tool after
"--"; the stop-timeout drop-in stays in the runtime unit folder and is gone afterwards; a stop reported done left the
unit stopped; drained: true only on a read of zero.
"""

from __future__ import annotations

import gzip
import importlib
import json

from hypothesis import event, given
from hypothesis import strategies as st

from ansible_collections.modelops.shutdown.plugins.modules import host_shutdown, task_log_reconcile, unit_processes, unit_stop
from ansible_collections.modelops.shutdown.tests.unit.property import fakes, hosts
from ansible_collections.modelops.shutdown.tests.unit.property.scenarios import Machine, budget, sandbox_changes, tcp_text
from ansible_collections.modelops.shutdown.tests.unit.property.strategies import garbage_text, hostile, tampered, timing
from ansible_collections.modelops.shutdown.tests.unit.property.test_module_model_drain import source_options, zero_reads

UNIT = 'model-server@llama.service'
UNIT_NAMES = (UNIT, 'model-server@llama', 'vllm.service', '-.mount', '--help', 'nope.service', 'a/b.service',
              '../../../../tmp/x.service', 'a\x00b.service', ' ', 'x' * 300)
FAIL_ON = ('clean', 'timeout_killed', 'failed', 'signal', 'not_found', 'running', 'bogus')
ACTIVE = ('active', 'activating', 'deactivating', 'reloading', 'refreshing')


def dash_values_reach_tools_only_after_separator(calls, values):
    """The argv in C(calls) where a value of C(values) that starts with "-" is passed but not after a "--"."""
    bad = []
    for argv in calls:
        for value in values:
            if isinstance(value, str) and value.startswith('-') and value in argv[1:]:
                position = len(argv) - 1 - argv[::-1].index(value)
                if '--' not in argv[1:position]:
                    bad.append(argv)
    return bad


def systemd_from(data, units, sandbox):
    states = dict((name, data.draw(st.sampled_from(('running', 'running', 'inactive', 'failed', 'masked')), label='state of %s' % name))
                  for name in units)
    return hosts.FakeSystemd(
        states, endings=data.draw(st.lists(st.sampled_from(tuple(hosts.STOP_ENDINGS)), min_size=1, max_size=3), label='endings'),
        faults=data.draw(st.lists(st.one_of(st.none(), st.none(), st.none(), st.tuples(st.just('rc'), st.sampled_from((1, 4, 5))),
                                            st.tuples(st.just('junk'), garbage_text())), max_size=4), label='systemd faults'),
        dropin_dir=sandbox.path('run', 'systemd', 'system'), override_wins=data.draw(st.booleans(), label='override wins'),
        stop_seconds=data.draw(st.floats(0, 5), label='stop seconds'))


# --------------------------------------------------------------------------------------------- unit_stop

@st.composite
def stop_options(draw):
    args = {'units': draw(st.lists(st.sampled_from(UNIT_NAMES), min_size=1, max_size=3))}
    for name, strategy in (('timeout_stop_sec', timing(0.5, 120)), ('disable', st.booleans()), ('mask', st.booleans()),
                           ('mask_runtime', st.booleans()),
                           ('fail_on', st.lists(st.sampled_from(FAIL_ON), max_size=3))):
        if draw(st.booleans()):
            args[name] = draw(strategy)
    return draw(tampered(args, max_changes=1))


@given(args=stop_options(), data=st.data(), check_mode=st.booleans(), diff=st.booleans())
def test_unit_stop_stops_only_outside_check_mode_and_keeps_its_drop_in_in_place(args, data, check_mode, diff):
    """unit_stop: exit_json/fail_json only; check mode runs no stop/disable/mask/daemon-reload and writes nothing; a
    unit starting with "-" reaches systemctl after "--"; the stop-timeout drop-in is written only under the runtime unit
    folder and removed afterwards; a run that did not fail left every unit it stopped inactive."""
    units = [u for u in (args.get('units') or []) if isinstance(u, str)]
    with fakes.sandboxed() as sandbox:
        machine = Machine(sandbox, systemd=systemd_from(data, [hosts_name(u) for u in units], sandbox))
        before = sandbox.snapshot()
        outcome = machine.run(unit_stop, args, check_mode=check_mode, allowed_seconds=budget(0.0), diff=diff)
        changes = sandbox_changes(before, sandbox.snapshot())
    calls = machine.world.commands.calls
    assert not dash_values_reach_tools_only_after_separator(calls, units), calls
    assert all(path.startswith('run/systemd/system') for path in changes), 'files written outside the drop-in folder: %r' % changes
    assert not [p for p in changes if p.endswith('.conf')], 'a stop-timeout drop-in was left behind: %r' % changes
    if outcome.failed or check_mode:
        return
    event('stopped')
    for record in outcome.result.get('units', []):
        if record.get('stopped'):
            props = machine.systemd.units.get(record['unit'], {})
            assert props.get('ActiveState') not in ACTIVE, '%s reported stopped but is %s' % (record['unit'], props.get('ActiveState'))


@given(units=st.lists(st.sampled_from(('../../../../tmp/x.service', 'a/b.service', 'a\x00b.service', 'a\nb.service', '-.service',
                                       '--help.service', UNIT)), min_size=1, max_size=2),
       stop_timeout=st.sampled_from((5, 90, 0.5)), check_mode=st.booleans())
def test_unit_stop_timeout_override_stays_in_the_runtime_unit_folder(units, stop_timeout, check_mode):
    """unit_stop with timeout_stop_sec on running units with odd names ("/", "..", NUL, newline, leading "-"): exit_json/
    fail_json only, and the drop-in is written under the runtime unit folder only (never outside it) and removed."""
    with fakes.sandboxed() as sandbox:
        systemd = hosts.FakeSystemd(dict((u, 'running') for u in units), dropin_dir=sandbox.path('run', 'systemd', 'system'))
        machine = Machine(sandbox, systemd=systemd)
        before = sandbox.snapshot()
        machine.run(unit_stop, {'units': units, 'timeout_stop_sec': stop_timeout}, check_mode=check_mode, allowed_seconds=budget(0.0))
        changes = sandbox_changes(before, sandbox.snapshot())
    assert all(path.startswith('run/systemd/system') for path in changes), 'files written outside the drop-in folder: %r' % changes
    assert not [p for p in changes if p.endswith('.conf')], 'a stop-timeout drop-in was left behind: %r' % changes


def hosts_name(unit):
    """The name systemctl sees for a unit as given (C(.service) added when it has no suffix)."""
    unit = unit.strip()
    suffixes = ('service', 'socket', 'mount', 'target', 'timer', 'slice', 'scope', 'path', 'swap', 'device', 'automount')
    if '.' in unit and unit.rsplit('.', 1)[1] in suffixes:
        return unit
    return unit + '.service'


# --------------------------------------------------------------------------------------------- unit_processes

@given(units=st.lists(st.one_of(st.sampled_from(UNIT_NAMES), hostile()), min_size=1, max_size=3), expect_empty=st.booleans(),
       processes=st.lists(st.tuples(st.booleans(), st.binary(max_size=30), st.binary(max_size=16)), max_size=3), check_mode=st.booleans())
def test_unit_processes_lists_every_process_of_the_unit(units, expect_empty, processes, check_mode):
    """unit_processes: exit_json/fail_json only, whatever the unit names and /proc contents (undecodable comm and
    cmdline); every process whose cgroup file names model-server@llama.service is listed under that unit."""
    with fakes.sandboxed() as sandbox:
        members = set()
        for offset, (member, comm, cmdline) in enumerate(processes):
            cgroup = (b'0::/system.slice/%s\n' % UNIT.encode()) if member else b'0::/user.slice\n'
            sandbox.add_process(300 + offset, cgroup=cgroup, comm=comm, cmdline=cmdline)
            if member:
                members.add(300 + offset)
        outcome = Machine(sandbox).run(unit_processes, {'units': units, 'expect_empty': expect_empty}, check_mode=check_mode,
                                       allowed_seconds=budget(0.0))
    records = [r for r in (outcome.result.get('units') or []) if r.get('unit') == UNIT]
    if records and isinstance(units, list) and any(u in (UNIT, 'model-server@llama') for u in units):
        assert set(p['pid'] for p in records[0]['processes']) == members, records


# --------------------------------------------------------------------------------------------- task_log_reconcile

LINE = st.one_of(
    st.fixed_dictionaries({'event': st.sampled_from(('started', 'completed', 'aborted', 'x')), 'id': st.sampled_from(('a', 'b', 7, '7')),
                           'ts': st.one_of(st.floats(1.7e9, 1.8e9), st.sampled_from(('2024-05-01T12:00:00Z', 'NaN', 1e300)))}).map(
        lambda r: json.dumps(r).encode()),
    st.binary(max_size=30),
    st.integers(1, 100000).map(lambda d: b'{"event":"started","id":"d","ts":1714564800,"x":' + b'[' * d + b']' * d + b'}'),
    st.integers(1, 100000).map(lambda d: b'[' * d + b']' * d),
    st.sampled_from((b'\x00' * 10, b'{"event":"started","id":"n\\u0000","ts":1714564800}', b'\xff\xfe\xfd')),
)


@st.composite
def reconcile_options(draw):
    paths = ('@SANDBOX@/files/tasks.jsonl', '@SANDBOX@/files/tasks.jsonl.1.gz', '@SANDBOX@/files/missing.jsonl', '@SANDBOX@/files',
             '@SANDBOX@/files/a\x00b')
    args = {'paths': draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3))}
    for name, strategy in (('missing_ok', st.booleans()), ('since', timing(0, 2e9)), ('max_listed', st.integers(-1, 5)),
                           ('max_malformed', st.integers(-1, 3)), ('fail_on_malformed', st.booleans()),
                           ('resubmit', st.fixed_dictionaries({'url': st.sampled_from((hosts.REQUEUE_URL, 'http://a..b/x'))},
                                                              optional={'batch': st.booleans(), 'on_error': st.sampled_from(('fail', 'warn')),
                                                                        'timeout': timing(0.1, 5)}))):
        if draw(st.booleans()):
            args[name] = draw(strategy)
    return draw(tampered(args, max_changes=1))


@given(args=reconcile_options(), lines=st.lists(LINE, max_size=6), cut_gzip=st.booleans(), data=st.data(), check_mode=st.booleans())
def test_task_log_reconcile_reads_any_log_and_resubmits_only_outside_check_mode(args, lines, cut_gzip, data, check_mode):
    """task_log_reconcile: exit_json/fail_json only, whatever the lines (deeply nested JSON, NUL, undecodable bytes, a
    gzip cut short); check mode sends nothing to the resubmission endpoint; when it read a log,
    started_count == completed_count + ended_count + incomplete_count."""
    http = hosts.FakeHttp(requeue_status=data.draw(st.lists(st.sampled_from((202, 500, 404)), min_size=1, max_size=2), label='requeue'))
    with fakes.sandboxed() as sandbox:
        args = fakes.substitute(args, '@SANDBOX@', sandbox.root)
        text = b'\n'.join(lines) + b'\n'
        sandbox.write('files/tasks.jsonl', text)
        packed = gzip.compress(text)
        sandbox.write('files/tasks.jsonl.1.gz', packed[:len(packed) // 2] if cut_gzip else packed)
        outcome = Machine(sandbox, http=http).run(task_log_reconcile, args, check_mode=check_mode,
                                                  allowed_seconds=budget(0.0))
    result = outcome.result
    if check_mode:
        assert not outcome.world.http.mutating, outcome.world.http.mutating
    if result.get('incomplete_count') is not None and 'started_count' in result:
        assert result['started_count'] == result['completed_count'] + result['ended_count'] + result['incomplete_count'], result


# --------------------------------------------------------------------------------------------- policy_revoke

POLICY_NAMES = ('model-server@llama.service', '-.mount', '--now', 'vllm', 'a b', '')


@st.composite
def policy_options(draw):
    args = {}
    for name, strategy in (
            ('mask_units', st.lists(st.sampled_from(POLICY_NAMES), max_size=2)),
            ('remove_dropins', st.lists(st.sampled_from(('@SANDBOX@/files/dropin.conf', '@SANDBOX@/files/nope.conf', 'relative.conf',
                                                         '@SANDBOX@/files/a\x00b')), max_size=2)),
            ('firewall_ports', st.lists(st.sampled_from(('8000/tcp', '8000', '9000-9010/udp', '-1', '8000/icmp', '99999', '--panic-on')), max_size=2)),
            ('firewall_zone', st.sampled_from(('public', 'internal', '-x', 'nope', 'a/b'))),
            ('selinux_ports', st.lists(st.fixed_dictionaries({'port': st.sampled_from(('8000', '8000-8010', '-1')),
                                                              'setype': st.sampled_from(('http_port_t', '-t'))}), max_size=1)),
            ('selinux_booleans', st.lists(st.fixed_dictionaries({'name': st.sampled_from(('httpd_can_network_connect', '-P', 'x y'))},
                                                                optional={'state': st.booleans()}), max_size=1)),
            ('selinux_fcontexts', st.lists(st.fixed_dictionaries({'target': st.sampled_from(('/srv/models(/.*)?', '-x')),
                                                                  'setype': st.sampled_from(('httpd_sys_content_t', '-t'))},
                                                                 optional={'path': st.just('@SANDBOX@/files')}), max_size=1)),
            ('selinux_mode', st.sampled_from(('permissive', 'disabled')))):
        if draw(st.booleans()):
            args[name] = draw(strategy)
    return draw(tampered(args, max_changes=1))


def policy_tools(data):
    return hosts.FakePolicyTools(
        firewalld=data.draw(st.sampled_from((None, {('public', False): {'8000/tcp'}, ('public', True): {'8000/tcp'}})), label='firewalld'),
        ufw=data.draw(st.sampled_from((None, {'8000/tcp', '8000'})), label='ufw'),
        selinux=data.draw(st.sampled_from((None, {'mode': 'Enforcing', 'ports': [('http_port_t', 'tcp', '8000')],
                                                  'booleans': {'httpd_can_network_connect': True},
                                                  'fcontexts': [('/srv/models(/.*)?', 'httpd_sys_content_t')]})), label='selinux'),
        faults=data.draw(st.lists(st.one_of(st.none(), st.none(), st.none(), st.tuples(st.just('rc'), st.sampled_from((1, 2, 253))),
                                            st.tuples(st.just('junk'), garbage_text())), max_size=4), label='policy faults'))


def policy_values(args):
    values = []
    for key in ('mask_units', 'firewall_ports'):
        values.extend(v for v in args.get(key) or [] if isinstance(v, str)) if isinstance(args.get(key), list) else None
    for key, field in (('selinux_ports', 'port'), ('selinux_ports', 'setype'), ('selinux_booleans', 'name'),
                       ('selinux_fcontexts', 'target'), ('selinux_fcontexts', 'setype')):
        if isinstance(args.get(key), list):
            values.extend(item.get(field) for item in args[key] if isinstance(item, dict) and isinstance(item.get(field), str))
    if isinstance(args.get('firewall_zone'), str):
        values.append(args['firewall_zone'])
    return values


@given(args=policy_options(), data=st.data(), check_mode=st.booleans(), diff=st.booleans())
def test_policy_revoke_changes_only_outside_check_mode_and_never_passes_a_name_as_an_option(args, data, check_mode, diff):
    """policy_revoke: exit_json/fail_json only; check mode runs no mask, firewall removal, semanage delete, setsebool,
    setenforce or restorecon and removes no drop-in; a unit, port, SELinux type or boolean starting with "-" reaches a
    tool only after "--" (or is refused)."""
    policy_revoke = importlib.import_module('ansible_collections.modelops.shutdown.plugins.modules.policy_revoke')
    with fakes.sandboxed() as sandbox:
        args = fakes.substitute(args, '@SANDBOX@', sandbox.root)
        sandbox.write('files/dropin.conf', '[Service]\nEnvironment=A=1\n')
        machine = Machine(sandbox, systemd=systemd_from(data, ['model-server@llama.service', 'vllm.service'], sandbox),
                          policy=policy_tools(data))
        outcome = machine.run(policy_revoke, args, check_mode=check_mode, allowed_seconds=budget(0.0), diff=diff)
    calls = machine.world.commands.calls
    assert not dash_values_reach_tools_only_after_separator(calls, policy_values(args)), calls


# --------------------------------------------------------------------------------------------- host_shutdown

@st.composite
def host_options(draw):
    args = {'stop': {'units': draw(st.lists(st.sampled_from((UNIT, 'vllm.service', '-.mount')), min_size=1, max_size=2))}}
    if draw(st.booleans()):
        drain = draw(source_options(draw(st.lists(st.sampled_from(('metrics', 'haproxy', 'connections')), min_size=1, max_size=2, unique=True))))
        drain.update(timeout=draw(timing(0, 3)), poll_interval=draw(timing(0.1, 1)))
        args['drain'] = drain
    if draw(st.booleans()):
        args['since'] = draw(timing(0, 30).map(lambda v: fakes.FakeClock.WALL0 - v if isinstance(v, float) else v))
    if draw(st.booleans()):
        args['policy'] = {'firewall_ports': ['8000/tcp'], 'remove_dropins': ['@SANDBOX@/files/dropin.conf'],
                          'mask_units': draw(st.lists(st.sampled_from((UNIT, '-.mount')), max_size=1))}
    if draw(st.booleans()):
        verify = {'ports': draw(st.lists(st.sampled_from((8000, 0, 70000)), max_size=1)), 'port_timeout': draw(timing(0, 2)),
                  'processes': draw(st.booleans()), 'fail_on_incomplete': draw(st.booleans())}
        if draw(st.booleans()):
            verify['gpu'] = {'backend': 'nvidia-smi', 'timeout': draw(timing(0, 2)), 'poll_interval': draw(timing(0.05, 1)),
                             'kill_orphans': draw(st.booleans())}
        if draw(st.booleans()):
            verify['task_log'] = {'paths': ['@SANDBOX@/files/tasks.jsonl'], 'missing_ok': True}
        args['verify'] = verify
    return draw(tampered(args, max_changes=2))


HOST_APPS = ((0, '', 'zero'), (0, hosts.app_rows([(4101, 'vllm', 2296, hosts.ZERO_UUID)]), 'busy'), (4, '', 'error'))


def host_budget(args):
    """What host_shutdown may sleep: the drain's timeout and interval, the port wait, and one GPU wait per verified unit
    (two with kill_orphans), each at its documented default when not given; an invalid one counts nothing."""
    def opt(section, key, default):
        value = args.get(section)
        if value is None:
            return None
        if not isinstance(value, dict):
            return 0.0
        return value.get(key, default)
    parts = []
    drain = args.get('drain')
    if isinstance(drain, dict):
        parts.append((drain.get('timeout', 300), drain.get('poll_interval', 0.5)))
    verify = args.get('verify') if isinstance(args.get('verify'), dict) else {}
    if verify.get('ports'):
        parts.append((verify.get('port_timeout', 10.0), 0.2))
    gpu = verify.get('gpu')
    if isinstance(gpu, dict):
        stop = args.get('stop') if isinstance(args.get('stop'), dict) else {}
        units = verify.get('units') if isinstance(verify.get('units'), list) else stop.get('units') if isinstance(stop.get('units'), list) else [None]
        waits = max(1, len(units)) * (2 if gpu.get('kill_orphans') else 1)
        parts.extend([(gpu.get('timeout', 30), gpu.get('poll_interval', 1))] * waits)
    return budget(*parts)


@given(args=host_options(), data=st.data(), check_mode=st.booleans())
def test_host_shutdown_waits_within_its_phases_and_changes_nothing_in_check_mode(args, data, check_mode):
    """host_shutdown: exit_json/fail_json only (hostile values anywhere in its phases); it sleeps no longer than the
    drain, port and GPU timeouts it was given (or defaults to); check mode stops no unit, closes no port, removes no
    file; a drain reported drained had a read of zero from every source."""
    with fakes.sandboxed() as sandbox:
        args = fakes.substitute(args, '@SANDBOX@', sandbox.root)
        sandbox.write('files/dropin.conf', '[Service]\nEnvironment=A=1\n')
        sandbox.write('files/tasks.jsonl', b'{"event":"started","id":"a","ts":1714564800}\n{"event":"completed","id":"a","ts":1714564801}\n')
        sandbox.write('proc/net/tcp', tcp_text([('0.0.0.0', 8000, '0.0.0.0', 0, '0A')] if data.draw(st.booleans(), label='listening') else []))
        sandbox.add_process(4101, cgroup=b'0::/system.slice/%s\n' % UNIT.encode(), fds=('/dev/nvidia0',))
        flights = data.draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1)), min_size=1, max_size=3), label='flights')
        machine = Machine(
            sandbox, systemd=systemd_from(data, [UNIT, 'vllm.service', '-.mount'], sandbox), policy=policy_tools(data),
            gpu=hosts.FakeGpuTools(gpu=[(0, hosts.gpu_rows([(0, hosts.ZERO_UUID, 'NVIDIA H100', 59, 81559)]), 59)],
                                   apps=data.draw(st.lists(st.sampled_from(HOST_APPS), min_size=1, max_size=2), label='apps')),
            http=hosts.FakeHttp(metrics_bodies=[('vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n', 'maybe'),
                                                ('vllm:num_requests_running 2\nvllm:num_requests_waiting 0\n', 'busy')]),
            haproxy=hosts.FakeHAProxy(in_flight=dict((s, flights) for s in hosts.SERVERS),
                                      faults=data.draw(st.lists(st.one_of(st.none(), st.tuples(st.sampled_from(('cut', 'reset')), st.floats(0, 1))),
                                                                max_size=3), label='haproxy faults')))
        outcome = machine.run(host_shutdown, args, check_mode=check_mode, allowed_seconds=budget(0.0) if check_mode else host_budget(args))
    drain = outcome.result.get('drain') if isinstance(outcome.result, dict) else None
    if isinstance(drain, dict) and drain.get('drained') and isinstance(args.get('drain'), dict):
        event('drained')
        plan = {'connections': [], 'tcp_edit': None}
        reads = zero_reads(args['drain'], plan, machine)
        assert reads and all(reads.values()), 'drained without a zero read from every source: %r' % (reads,)
