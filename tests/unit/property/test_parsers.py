# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Properties of every parser of module_utils, on arbitrary text and on edits of the real captures.

Each parser either returns a well-formed result or raises the error type its module documents
(C(PrometheusError), C(HAProxyError), C(SystemdParseError), C(GpuError), C(ValueError) for
C(_netstat.parse_proc_net_tcp) but never a C(UnicodeError), C(NetstatError), C(TaskLogError), C(BudgetError),
C(HttpError), C(LBError), C(SpecError)); an C(IndexError), C(KeyError), C(UnicodeError), C(RecursionError),
C(OverflowError), C(TypeError) or a stray C(ValueError) would reach the user as a traceback. On cut-off
or column-shifted captures a parser does not give a confident wrong answer.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import ipaddress
import json
import math
import os
import pkgutil
import sys
import types

import pytest

from hypothesis import given, note
from hypothesis import strategies as st

from ansible_collections.modelops.shutdown.plugins.module_utils import _budget, _gpu, _haproxy, _http, _netstat, _procs
from ansible_collections.modelops.shutdown.plugins.module_utils import _prometheus, _spec, _systemd, _tasklog
import ansible_collections.modelops.shutdown.plugins.module_utils as utils_package
from ansible_collections.modelops.shutdown.plugins.module_utils import _lb
from ansible_collections.modelops.shutdown.plugins.module_utils import _lb_haproxy
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import FIXTURES, read_fixture
from ansible_collections.modelops.shutdown.tests.unit.property import fakes, hosts
from ansible_collections.modelops.shutdown.tests.unit.property.strategies import (
    apply_edit,
    capture_or_garbage,
    garbage_text,
    hostile,
    metrics_body,
    mutated,
    tool_output,
)

PROMETHEUS_CAPTURES = [read_fixture(name) for name in (
    'vllm_metrics_v0.5_opt125m_datadog.txt', 'sglang_metrics_docs_v0.4_loaded.txt',
    'tgi_metrics_datadog_payload_head.txt', 'triton_metrics_datadog_head.txt')]
STAT_CAPTURES = [read_fixture(name) for name in (
    'haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv', 'haproxy_show_stat_csv_v2.7.1_otel.csv',
    'haproxy_show_stat_csv_telegraf_sample.csv')]
STATE_CAPTURES = [read_fixture(name) for name in (
    'haproxy_show_servers_state_v2.6.12_drain_maint_down.txt', 'haproxy_show_servers_state_go-mysql-sphinx_maint.txt')]
SYSTEMCTL_CAPTURES = [read_fixture(name) for name in (
    'systemctl_show_apache2_active_running_ubuntu20.04_systemd245.txt', 'systemctl_show_oneshot_inactive_dead_systemd249plus.txt',
    'systemctl_show_redis_failed_after_kill_centos7_systemd219.txt', 'systemctl_show_simple_service_active_running_systemd249plus.txt')]
GPU_CAPTURES = [read_fixture(name) for name in (
    'nvidia-smi_query-gpu_allfields_csv_h100-mig_drv590.48.01_idle.csv',
    'nvidia-smi_query-gpu_allfields_csv_windows-rtx2080super_drv591.86_load.csv',
    'nvidia-smi_query-gpu_manyfields_csv_rtx2080super_linux_drv465.27.csv')]
APPS_CAPTURES = [read_fixture(name) for name in (
    'nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_load.csv', 'nvidia-smi_query-compute-apps_csv_h200_drv590.48.01_load.csv',
    'nvidia-smi_query-compute-apps_csv_l40s_drv595.80_load.csv',
    'nvidia-smi_query-compute-apps_csv_windows-rtx2080super_drv591.86_load_NA.csv',
    'nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_idle_empty.csv')]
LIST_CAPTURES = [read_fixture(name) for name in ('nvidia-smi_L_h100-mig_drv590.48.01.txt', 'nvidia-smi_L_h200-mig_drv590.48.01.txt')]
ROCM_CAPTURES = [read_fixture(name) for name in (
    'rocm-smi_json_allinfo_mi100x4_rocm6.0.2.json', 'rocm-smi_json_allinfo_mi100x6_rocm5.7.1_with_pid.json',
    'rocm-smi_json_allinfo_rx6700xt_rocm6.1.2.json',
    'rocm-smi_json_showproductname_showuse_showmeminfo_vram_rx7900xt_marimo-issue9237.json')]
SHOWPIDS = read_fixture('rocm-smi_showpids_8procs_ROC-smi-issue60.txt')
TCP_CAPTURES = [read_fixture(name) for name in ('proc_net_tcp_dev_established_timewait.txt', 'proc_net_tcp6_dev_established_v4mapped.txt')]
CGROUP = read_fixture('proc_pid_cgroup_dev_v1_hybrid.txt')
INFO = read_fixture('haproxy_show_info_v2.7.1_otel.txt')
ODD_URLS = ('http://' + 'a' * 64 + '.example/', 'http://a..b/', 'http://[::1', 'http://h:99999/', 'ftp://x/', 'http://\u00fc' * 30 + '/',
            'http:///x', 'http://-a.example/', 'http://127.0.0.1:0/')
# A number Python 3.11 refuses to convert from text (more than 4300 digits), printed compactly by Hypothesis.
LONG_DIGITS = st.integers(4301, 6000).map(lambda n: '9' * n)

# nvidia-smi --query-gpu=index,uuid,name,memory.used,memory.total --format=csv,noheader,nounits (what the module asks for).
GPU_NOHEADER = hosts.gpu_rows([(0, hosts.ZERO_UUID, 'NVIDIA H100 80GB HBM3', 59, 81559),
                               (1, 'GPU-11111111-1111-1111-1111-111111111111', 'NVIDIA H100 80GB HBM3', 2296, 81559)])
APPS_NOHEADER = hosts.app_rows([(21180, '/root/tools/memhog', 2296, hosts.ZERO_UUID),
                                (21198, './gpu_burn', 7484, hosts.ZERO_UUID)])


def text_or_bytes(strategy):
    return st.one_of(strategy, strategy.map(lambda t: t.encode('utf-8', 'surrogatepass')))


def any_of_captures(captures, sep=','):
    return st.sampled_from(captures).flatmap(lambda text: capture_or_garbage(text, sep))


def assert_text(value):
    assert isinstance(value, str), value


# --------------------------------------------------------------------------------------------- Prometheus

@given(text=text_or_bytes(st.one_of(any_of_captures(PROMETHEUS_CAPTURES, sep=' '), garbage_text(400))))
def test_prometheus_parse_returns_samples_or_prometheus_error(text):
    """_prometheus.parse_text: arbitrary text, bytes and edits of real scrapes give samples and metadata, or PrometheusError."""
    try:
        samples, metadata = _prometheus.parse_text(text)
    except _prometheus.PrometheusError as exc:
        assert exc.line_number is None or exc.line_number >= 1
        return
    for sample in samples:
        assert_text(sample.name)
        assert isinstance(sample.labels, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in sample.labels.items())
        assert isinstance(sample.value, float)
        assert sample.timestamp is None or isinstance(sample.timestamp, (int, float))
    assert all(set(entry) == {'type', 'help'} for entry in metadata.values())


@given(depth=st.integers(min_value=1, max_value=3000), prefix=st.sampled_from(('m{', 'm{a="', '{"', 'm ', '# TYPE ')))
def test_prometheus_deep_or_long_lines_give_prometheus_error(depth, prefix):
    """_prometheus.parse_text: a very long or deeply bracketed line is a PrometheusError, never a RecursionError."""
    line = prefix + '{' * depth + '"x",' * depth
    try:
        samples, metadata = _prometheus.parse_text(line + '\n')
    except _prometheus.PrometheusError:
        return
    assert isinstance(samples, list) and isinstance(metadata, dict)


@given(names=st.lists(st.sampled_from(('vllm:num_requests_running', 'sglang:num_queue_reqs', 'my.metric', 'tgi_queue_size')),
                      min_size=1, max_size=3, unique=True),
       labels=st.dictionaries(st.sampled_from(('model', 'my.label', 'route')), st.text(max_size=8), max_size=2),
       values=st.lists(st.floats(min_value=0, max_value=1e6), min_size=3, max_size=3))
def test_prometheus_reads_back_the_values_it_is_given(names, labels, values):
    """_prometheus: the samples of a well-formed exposition (quoted names and escaped labels included) read back exactly."""
    selectors = [(name, labels) for name in names]
    samples = _prometheus.parse(metrics_body(selectors, values))
    for (name, wanted), value in zip(selectors, values):
        assert [s.value for s in _prometheus.select(samples, name, wanted)] == [value]


# --------------------------------------------------------------------------------------------- HAProxy

def assert_rows(rows):
    assert isinstance(rows, list)
    for row in rows:
        assert isinstance(row, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in row.items())


@given(text=text_or_bytes(st.one_of(any_of_captures(STAT_CAPTURES), garbage_text())))
def test_haproxy_show_stat_parses_or_raises_haproxy_error(text):
    """_haproxy.parse_stat_csv: arbitrary text and edits of real show stat answers give rows of strings, or HAProxyError."""
    try:
        assert_rows(_haproxy.parse_stat_csv(text))
    except _haproxy.HAProxyError:
        pass


@given(text=text_or_bytes(st.one_of(any_of_captures(STATE_CAPTURES, sep=' '), garbage_text())))
def test_haproxy_servers_state_parses_or_raises_haproxy_error(text):
    """_haproxy.parse_servers_state: arbitrary text and edits of real answers give rows of strings, or HAProxyError."""
    try:
        assert_rows(_haproxy.parse_servers_state(text))
    except _haproxy.HAProxyError:
        pass


@given(text=text_or_bytes(st.one_of(capture_or_garbage(INFO, sep=':'), garbage_text())))
def test_haproxy_show_info_parses_or_raises_haproxy_error(text):
    """_haproxy.parse_info: arbitrary text and edits of a real answer give a dict of strings, or HAProxyError."""
    try:
        info = _haproxy.parse_info(text)
    except _haproxy.HAProxyError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())


@given(value=st.one_of(hostile(), garbage_text(30)))
def test_haproxy_validate_name_never_lets_a_command_through(value):
    """_haproxy.validate_name: anything is either refused with HAProxyError or a name without ; # \\ / whitespace or control."""
    try:
        name = _haproxy.validate_name('server', value)
    except _haproxy.HAProxyError:
        return
    assert isinstance(name, str) and name
    assert not any(c in ';#\\/' or c.isspace() or not c.isprintable() for c in name)


def runtime_answering(answer):
    """An HAProxyRuntime on a fake unix socket that answers every command with C(answer) (text or chunks)."""
    world = fakes.HAProxyWorld(responder=lambda command, address: answer)
    return _haproxy.HAProxyRuntime(socket_path='/run/haproxy/admin.sock', timeout=2.0), world


@given(which=st.integers(min_value=0, max_value=1), fraction=st.floats(min_value=0.0, max_value=1.0),
       ending=st.sampled_from(('cut', 'reset', 'timeout')))
def test_haproxy_cut_off_answer_is_not_taken_for_the_whole_pool(which, fraction, ending):
    """HAProxyRuntime.show_stat/servers_state: an answer cut off before HAProxy's closing empty line (the connection
    closed, reset or timed out midway) raises HAProxyError; it is never returned as the complete table."""
    full = [hosts.STAT_CSV, hosts.SERVERS_STATE][which]
    point = hosts.cut_point(full, fraction)
    tail = {'cut': [], 'reset': [ConnectionResetError(104, 'Connection reset by peer')],
            'timeout': [fakes.real_socket.timeout('timed out')]}[ending]
    runtime, world = runtime_answering([full[:point]] + tail)
    note('answer cut at %d of %d characters, then %s: %r' % (point, len(full), ending, full[max(0, point - 40):point]))
    with fakes.sandboxed() as sandbox:
        world_all = fakes.World(sandbox, haproxy=world)
        with fakes.fake_host(world_all, fakes.FakeClock()):
            try:
                rows = runtime.show_stat() if which == 0 else runtime.servers_state('models')
            except _haproxy.HAProxyError:
                return
    raise AssertionError('a cut-off answer (%d of %d characters, %s) was accepted as %d rows' % (
        point, len(full), ending, len(rows)))


@given(text=st.one_of(st.sampled_from(STAT_CAPTURES).flatmap(lambda t: mutated(t, ',')), garbage_text()),
       state_text=st.one_of(st.just(hosts.SERVERS_STATE), st.sampled_from(STATE_CAPTURES).flatmap(lambda t: mutated(t, ' '))),
       backends=st.one_of(st.none(), st.lists(st.sampled_from(('models', 'webservers', 'www', 'nope')), max_size=2)))
def test_haproxy_read_pool_gives_servers_or_haproxy_error(text, state_text, backends):
    """_lb_haproxy.read_pool: edited show stat / show servers state answers give well-formed servers, or HAProxyError."""
    answers = {'show stat': text.rstrip('\n') + '\n\n', 'show servers state': state_text}
    world = fakes.HAProxyWorld(responder=lambda command, address: answers.get(command, hosts.UNKNOWN_COMMAND))
    runtime = _haproxy.HAProxyRuntime(socket_path='/run/haproxy/admin.sock', timeout=2.0)
    with fakes.sandboxed() as sandbox:
        with fakes.fake_host(fakes.World(sandbox, haproxy=world), fakes.FakeClock()):
            try:
                servers = _lb_haproxy.read_pool(runtime, backends)
            except _haproxy.HAProxyError:
                return
    for server in servers:
        assert server['state'] in _lb.STATES
        assert isinstance(server['available'], bool)
        assert server['in_flight'] is None or (isinstance(server['in_flight'], int) and server['in_flight'] >= 0)


# --------------------------------------------------------------------------------------------- systemd

@given(text=st.one_of(any_of_captures(SYSTEMCTL_CAPTURES, sep='='), garbage_text()))
def test_systemctl_show_parses_and_classifies_anything(text):
    """_systemd.parse_show/parse_show_one/classify/unit_record/describe_exit: any text is parsed into units of string
    properties (or SystemdParseError for exactly one unit), and every unit classifies and records without raising."""
    units = _systemd.parse_show(text)
    assert all(isinstance(k, str) and isinstance(v, str) for unit in units for k, v in unit.items())
    try:
        _systemd.parse_show_one(text, 'x.service')
    except _systemd.SystemdParseError:
        pass
    for props in units:
        assert _systemd.classify(props) in _systemd.CLASSIFICATIONS
        record = _systemd.unit_record(props)
        assert record['timeout_stop_sec'] is None or (math.isfinite(record['timeout_stop_sec']) and record['timeout_stop_sec'] >= 0)
        assert_text(_systemd.describe_exit(props))


@given(props=st.dictionaries(st.sampled_from(('Result', 'ExecMainCode', 'ExecMainStatus', 'SuccessExitStatus', 'ActiveState', 'LoadState')),
                             st.one_of(garbage_text(20), st.sampled_from(('', '1', '2', '\u00b2', 'SIGKILL', '1 2 \u00b2')), LONG_DIGITS), max_size=6))
def test_systemd_classify_any_properties(props):
    """_systemd.classify: any property values (unicode digits, numbers of more than 4300 digits) give one of CLASSIFICATIONS."""
    assert _systemd.classify(props) in _systemd.CLASSIFICATIONS


@given(value=st.one_of(garbage_text(40), st.sampled_from(('1min 30s', '90', '\u0661\u0662', '\u00b2', '1e400s', '9' * 400 + 's', 'infinity', '1.5h 2min', '-1s',
                                                          '5 M')), LONG_DIGITS, st.none()))
def test_systemd_timespan_is_none_or_finite_seconds(value):
    """_systemd.parse_timespan: any text gives None (unreadable) or a finite number of seconds, 0 or more."""
    seconds = _systemd.parse_timespan(value)
    assert seconds is None or (isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0), seconds


@given(unit=st.one_of(garbage_text(30), st.sampled_from(('-.mount', '--help', '-rf', '--', 'a b', '-')).map(str)))
def test_systemctl_argv_never_reads_a_unit_as_an_option(unit):
    """_systemd.Systemctl: a unit name starting with "-" is always passed after "--", so systemctl never reads it as an option."""
    calls = []
    ctl = _systemd.Systemctl(lambda argv: calls.append(argv) or (0, 'Id=x\n', ''), '/usr/bin/systemctl')
    for action in (ctl.show, ctl.stop, ctl.disable, ctl.mask):
        try:
            action(unit)
        except _systemd.SystemctlError:
            pass
    assert calls
    for argv in calls:
        assert unit in argv, argv
        position = len(argv) - 1 - argv[::-1].index(unit)
        assert not unit.startswith('-') or argv[position - 1] == '--', argv


# --------------------------------------------------------------------------------------------- GPU

def assert_gpus(gpus):
    for gpu in gpus:
        assert isinstance(gpu['index'], int)
        for key in ('memory_used_mib', 'memory_total_mib'):
            assert gpu[key] is None or isinstance(gpu[key], int)


def assert_holders(holders):
    for holder in holders:
        assert isinstance(holder['pid'], int)
        assert holder['used_mib'] is None or isinstance(holder['used_mib'], int)
        assert holder['name'] is None or isinstance(holder['name'], str)


@given(text=st.one_of(any_of_captures(GPU_CAPTURES + [GPU_NOHEADER]), tool_output(), garbage_text()))
def test_nvidia_smi_gpu_table_parses_or_raises_gpu_error(text):
    """_gpu.parse_nvidia_smi_gpus: arbitrary text and edits of real --query-gpu answers give GPU records, or GpuError."""
    try:
        assert_gpus(_gpu.parse_nvidia_smi_gpus(text))
    except _gpu.GpuError as exc:
        assert exc.kind == 'unparseable'


@given(text=st.one_of(any_of_captures(APPS_CAPTURES + [APPS_NOHEADER]), tool_output(), garbage_text()))
def test_nvidia_smi_apps_table_parses_or_raises_gpu_error(text):
    """_gpu.parse_nvidia_smi_apps: arbitrary text and edits of real --query-compute-apps answers give holders, or GpuError."""
    try:
        assert_holders(_gpu.parse_nvidia_smi_apps(text))
    except _gpu.GpuError as exc:
        assert exc.kind == 'unparseable'


@given(text=st.one_of(any_of_captures(LIST_CAPTURES, sep=' '), garbage_text()))
def test_nvidia_smi_list_parses_anything(text):
    """_gpu.parse_nvidia_smi_list: any text gives a list of GPUs with int indices (it has no error to raise)."""
    for gpu in _gpu.parse_nvidia_smi_list(text):
        assert isinstance(gpu['index'], int) and all(isinstance(m['device'], int) for m in gpu['mig'])


@given(row=st.integers(min_value=0, max_value=1),
       operation=st.sampled_from(('add_field', 'drop_field')).flatmap(
           lambda kind: st.tuples(st.just(kind), st.just(0.5), st.floats(min_value=0, max_value=1),
                                  st.sampled_from(('0', '', ' 0', '[N/A]', 'MiB', '80GB', 'x')), st.just(','))),
       header=st.booleans())
def test_nvidia_smi_shifted_gpu_row_never_reads_as_zero_memory(row, operation, header):
    """_gpu.parse_nvidia_smi_gpus: a --query-gpu row shifted by a field added or dropped anywhere either raises GpuError or
    gives GPUs none of which reports memory.used 0 (both real GPUs use memory): a shift never reads as an idle GPU."""
    gpus = [(0, hosts.ZERO_UUID, 'NVIDIA H100 80GB HBM3', 59, 81559),
            (1, 'GPU-11111111-1111-1111-1111-111111111111', 'NVIDIA H100 80GB HBM3', 2296, 81559)]
    lines = hosts.gpu_rows(gpus).splitlines()
    if header:
        lines.insert(0, 'index, uuid, name, memory.used [MiB], memory.total [MiB]')
    target = row + (1 if header else 0)
    lines[target] = apply_edit(lines[target], operation)
    text = '\n'.join(lines) + '\n'
    note(text)
    try:
        parsed = _gpu.parse_nvidia_smi_gpus(text)
    except _gpu.GpuError:
        return
    for gpu in parsed:
        assert gpu['memory_used_mib'] != 0, 'a shifted row read as memory.used=0 (the GPUs use 59 and 2296 MiB): %r' % (gpu,)


@given(row=st.integers(min_value=0, max_value=1), drop=st.booleans(), position=st.integers(min_value=0, max_value=4),
       piece=st.sampled_from(('0', '', '[N/A]', 'python3', '1234', 'GPU-x')))
def test_nvidia_smi_shifted_apps_row_keeps_every_process(row, drop, position, piece):
    """_gpu.parse_nvidia_smi_apps: with a field dropped from one row, or one added after its pid, every process still comes
    back with its real pid, or GpuError; a process is never silently lost or given another pid."""
    apps = [(21180, '/root/tools/memhog', 2296, hosts.ZERO_UUID), (21198, './gpu_burn', 7484, hosts.ZERO_UUID)]
    lines = hosts.app_rows(apps).splitlines()
    fields = lines[row].split(',')
    if drop:
        del fields[min(position, len(fields) - 1)]
    else:
        fields.insert(max(1, position), piece)
    lines[row] = ','.join(fields)
    text = '\n'.join(lines) + '\n'
    note(text)
    try:
        holders = _gpu.parse_nvidia_smi_apps(text)
    except _gpu.GpuError:
        return
    assert sorted(h['pid'] for h in holders) == [21180, 21198], holders


@given(text=st.one_of(any_of_captures(ROCM_CAPTURES), garbage_text(),
                      st.integers(min_value=1, max_value=100000).map(lambda d: '[' * d + ']' * d),
                      st.integers(min_value=1, max_value=100000).map(lambda d: '{"card0": ' * d + '{}' + '}' * d),
                      st.sampled_from((
                          '{"card0": {"VRAM Total Used Memory (B)": 1234, "VRAM Total Memory (B)": 5}}',
                          '{"card0": {"VRAM Total Used Memory (B)": "1e400"}, "system": {"PID1": 5}}',
                          '{"card0": {"VRAM Total Used Memory (B)": "%s"}}' % ('9' * 400),
                          '{"card0": {"Card series": null, "Unique ID": ["x"]}, "system": {"PID1": "a, 1, %s, 0, 0"}}' % ('9' * 400),
                          '{"system": {"PID1": null}}', '{"system": []}', '[]', '{"card0": []}'))))
def test_rocm_smi_json_parses_or_raises_gpu_error(text):
    """_gpu.parse_rocm_smi_json: arbitrary text, edits of real answers, deeply nested JSON and values of the wrong type give
    GPU and holder records, or GpuError."""
    try:
        gpus, holders = _gpu.parse_rocm_smi_json(text)
    except _gpu.GpuError as exc:
        assert exc.kind == 'unparseable'
        return
    assert_gpus(gpus)
    assert_holders(holders)


@given(text=st.one_of(capture_or_garbage(SHOWPIDS, sep=None), garbage_text()))
def test_rocm_smi_showpids_parses_or_raises_gpu_error(text):
    """_gpu.parse_rocm_smi_showpids: arbitrary text and edits of a real table give holders, or GpuError."""
    try:
        assert_holders(_gpu.parse_rocm_smi_showpids(text))
    except _gpu.GpuError:
        pass


# --------------------------------------------------------------------------------------------- /proc/net/tcp

@given(text=text_or_bytes(st.one_of(any_of_captures(TCP_CAPTURES, sep=None), garbage_text())))
def test_proc_net_tcp_parses_or_raises_a_value_error_naming_the_line(text):
    """_netstat.parse_proc_net_tcp: arbitrary text/bytes and edits of real captures give well-formed entries, or the
    documented ValueError naming the line (never a UnicodeError, IndexError or struct.error)."""
    try:
        entries = _netstat.parse_proc_net_tcp(text, byteorder='little')
    except ValueError as exc:
        assert not isinstance(exc, UnicodeError), exc
        assert str(exc).startswith(('line ', 'empty text')), exc
        return
    for entry in entries:
        assert isinstance(entry['local'], (ipaddress.IPv4Address, ipaddress.IPv6Address))
        assert isinstance(entry['remote'], (ipaddress.IPv4Address, ipaddress.IPv6Address))
        assert 0 <= entry['local_port'] <= 65535 and 0 <= entry['remote_port'] <= 65535, entry
        assert len(entry['state']) == 2


@given(data=st.one_of(st.binary(max_size=300), st.sampled_from(TCP_CAPTURES).flatmap(lambda t: mutated(t, None)).map(
    lambda t: t.encode('utf-8', 'surrogateescape'))))
def test_proc_net_tcp_files_read_or_raise_netstat_error(data):
    """_netstat.read_entries: any bytes in the file give entries, or NetstatError."""
    with fakes.sandboxed() as sandbox:
        path = sandbox.write('files/tcp', data)
        try:
            _netstat.read_entries((path,), byteorder='little')
        except _netstat.NetstatError:
            pass


@given(peers=st.lists(st.one_of(garbage_text(30), hostile(), st.sampled_from(('10.0.0.0/8', '::ffff:10.0.0.1', '[::1]', '::ffff:0:0/90'))),
                      max_size=3))
def test_exclude_peers_parse_or_raise_value_error(peers):
    """_netstat.parse_networks: any list gives networks, or the documented ValueError (not a UnicodeError or TypeError)."""
    try:
        networks = _netstat.parse_networks(peers)
    except ValueError as exc:
        assert not isinstance(exc, UnicodeError), exc
        return
    assert all(isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) for n in networks)


# --------------------------------------------------------------------------------------------- cgroups

@given(text=st.one_of(capture_or_garbage(CGROUP, sep=':'), garbage_text()), unit=st.one_of(garbage_text(20), st.just('docker.service')))
def test_cgroup_text_parses_anything(text, unit):
    """_procs.parse_cgroup/tracking_paths/cgroup_in_unit: any text gives (id, controllers, path) triples of strings and a bool."""
    entries = _procs.parse_cgroup(text)
    assert all(len(e) == 3 and all(isinstance(part, str) for part in e) for e in entries)
    assert all(isinstance(p, str) for p in _procs.tracking_paths(entries))
    assert isinstance(_procs.cgroup_in_unit(text, unit), bool)


UNIT = 'model-server@llama.service'


@given(processes=st.lists(st.tuples(st.booleans(), st.binary(max_size=40), st.binary(max_size=20), st.binary(max_size=30)),
                          min_size=1, max_size=4))
def test_unit_processes_reads_any_proc_files_and_finds_every_member(processes):
    """_procs.check_units: /proc files with arbitrary bytes (undecodable names, cgroup lines, command lines) are read
    without raising, and every process whose cgroup file names the unit is counted; no other process is."""
    with fakes.sandboxed() as sandbox:
        members = set()
        for offset, (member, cgroup, comm, cmdline) in enumerate(processes):
            pid = 100 + offset
            text = cgroup.replace(UNIT.encode(), b'')
            if member:
                text = b'0::/system.slice/' + UNIT.encode() + b'\n' + text
                members.add(pid)
            sandbox.add_process(pid, cgroup=text, comm=comm, cmdline=cmdline)
        result, failure = _procs.check_units([UNIT], expect_empty=True, proc_root=sandbox.proc)
    found = set(p['pid'] for unit in result['units'] for p in unit['processes'])
    assert found == members, (found, members)
    assert result['count'] == len(members) and result['empty'] == (not members)
    assert (failure is None) == (not members)


# --------------------------------------------------------------------------------------------- task logs

ODD_TIMES = (1714564800.25, '2024-05-01T12:00:00Z', '2024-05-01T12:00:00.123456789+02:00', '9999-12-31T23:59:59-23:59',
             '0001-01-01T00:00:00+23:59', 'x', 10 ** 30, True)
RECORD = st.fixed_dictionaries({
    'event': st.sampled_from(('started', 'completed', 'aborted', 'other', 7, None)),
    'id': st.one_of(st.sampled_from(('r1', 'r2', 7, '7', '', True, None, 1.5, [1])), st.text(max_size=4)),
    'ts': st.one_of(st.floats(allow_nan=True), st.sampled_from(ODD_TIMES)),
})


def log_line():
    return st.one_of(
        RECORD.map(lambda r: json.dumps(r).encode()),
        st.binary(max_size=40),
        st.integers(min_value=1, max_value=200000).map(lambda d: (b'[' * d) + (b']' * d)),
        st.integers(min_value=1, max_value=200000).map(lambda d: b'{"event":"started","id":"x","ts":1,"a":' + b'[' * d + b']' * d + b'}'),
        st.integers(4301, 6000).map(lambda n: b'{"event":"started","id":1' + b'0' * n + b',"ts":1}'),
        st.sampled_from((b'{"event":"started","id":"r9","ts":NaN}',
                         b'{"event": "started", "id": "a\\ud800", "ts": 1}', b'\xff\xfe{"event":"started"}', b'null', b'"x"')),
    )


@given(lines=st.lists(log_line(), max_size=8), since=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)))
def test_task_log_lines_never_raise_and_the_counts_add_up(lines, since):
    """_tasklog.Reconciler.read_path: any line (not UTF-8, not JSON, deeply nested, odd ids and times) is counted as
    malformed or paired, never raised, and once a file was read started_count == completed_count + ended_count +
    incomplete_count, as documented."""
    reconciler = _tasklog.Reconciler(since=since)
    with fakes.sandboxed() as sandbox:
        path = sandbox.write('files/tasks.jsonl', b'\n'.join(lines) + b'\n')
        reconciler.read_path(path)
    summary = reconciler.summary()
    json.dumps(summary)
    assert summary['incomplete_count'] is not None, summary
    assert summary['started_count'] == summary['completed_count'] + summary['ended_count'] + summary['incomplete_count'], summary


@given(lines=st.lists(log_line(), max_size=5), compress=st.sampled_from(('plain', 'gzip', 'cut-gzip')))
def test_task_log_files_read_or_raise_task_log_error(lines, compress):
    """_tasklog.Reconciler.read_path: a log file with any lines, gzip-compressed or a gzip cut short, is read, or TaskLogError."""
    data = b'\n'.join(lines) + b'\n'
    if compress != 'plain':
        data = gzip.compress(data)
        if compress == 'cut-gzip':
            data = data[:max(2, len(data) // 2)]
    with fakes.sandboxed() as sandbox:
        path = sandbox.write('files/tasks.jsonl', data)
        try:
            _tasklog.Reconciler().read_path(path)
        except _tasklog.TaskLogError:
            pass


@given(value=st.one_of(hostile(), st.sampled_from(('2024-05-01T12:00:00Z', '2024-13-01', '1e400', '+00:00', 'Z', '')), LONG_DIGITS))
def test_task_log_time_is_in_range_or_value_error(value):
    """_tasklog.parse_time: any JSON value gives epoch seconds between the years 1 and 9999, or ValueError as documented."""
    try:
        seconds = _tasklog.parse_time(value)
    except ValueError:
        return
    assert isinstance(seconds, float) and _tasklog._MIN_TS <= seconds <= _tasklog._MAX_TS


# --------------------------------------------------------------------------------------------- Consul / HTTP admin JSON

CONSUL_BODY = st.one_of(
    st.just(json.dumps({'vllm-1': {'ID': 'vllm-1'}})),
    st.just(json.dumps(hosts.CONSUL_CHECKS).replace('test', 'vllm-1')),
    st.sampled_from(('{"_service_maintenance:vllm-1": "critical", "vllm-1": {}}', '{"_service_maintenance:vllm-1": null, "vllm-1": 1}',
                     '{"_service_maintenance:vllm-1": [1], "vllm-1": {}}', '[]', 'null', '{"vllm-1": {}}', '"x"', '{}')),
    st.integers(min_value=1, max_value=100000).map(lambda d: '[' * d + ']' * d),
    st.integers(min_value=1, max_value=100000).map(lambda d: '{"vllm-1": ' + '[' * d + ']' * d + '}'),
    garbage_text(60),
)


def http_world(bodies):
    queue = list(bodies)

    def respond(method, url, body, headers, timeout):
        return (200, queue.pop(0) if len(queue) > 1 else queue[0])
    return fakes.HttpWorld(responder=respond)


@given(services=CONSUL_BODY, checks=CONSUL_BODY, state=st.sampled_from(('ready', 'draining', 'maintenance')))
def test_consul_answers_give_a_state_or_an_adapter_error(services, checks, state):
    """_lb_consul.ConsulAdapter.get_state/verify: any JSON (or not) from /v1/agent/services and /v1/agent/checks gives a
    state, or one of the adapter errors (LBError, HttpError); maintenance check values of the wrong type included."""
    from ansible_collections.modelops.shutdown.plugins.module_utils._lb_consul import ConsulAdapter
    adapter = ConsulAdapter({'url': hosts.CONSUL_URL, 'service_id': 'vllm-1', 'timeout': 2.0})
    with fakes.sandboxed() as sandbox:
        world = fakes.World(sandbox, http=http_world([services, checks]))
        with fakes.fake_host(world, fakes.FakeClock()):
            try:
                info = adapter.get_state()
                ok, detail = adapter.verify(state)
            except _lb.adapter_errors():
                return
    assert info['state'] in ('ready', 'maintenance') and isinstance(ok, bool) and isinstance(detail, str)


@given(body=CONSUL_BODY, state_key=st.sampled_from(('state', 'a.b', 'vllm-1', '.', '')))
def test_http_admin_answers_give_a_state_or_an_adapter_error(body, state_key):
    """_lb_http.HttpAdapter.get_state: any body of the state URL gives a state (ready, draining, maintenance, unknown), or an
    adapter error."""
    from ansible_collections.modelops.shutdown.plugins.module_utils._lb_http import HttpAdapter
    adapter = HttpAdapter({'url': hosts.ADMIN_URL, 'state_key': state_key, 'timeout': 2.0})
    with fakes.sandboxed() as sandbox:
        with fakes.fake_host(fakes.World(sandbox, http=http_world([body])), fakes.FakeClock()):
            try:
                info = adapter.get_state()
            except _lb.adapter_errors():
                return
    assert info['state'] in _lb.STATES + ('unknown',)


# --------------------------------------------------------------------------------------------- HTTP client

@given(url=st.one_of(st.sampled_from(hosts.KNOWN_URLS + ODD_URLS), garbage_text(40), hostile()),
       token=st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=8).map(
           lambda t: 'sEcReT' + t)),
       timeout=st.one_of(st.sampled_from((0.5, 5.0)), hostile()),
       headers=st.one_of(st.none(), st.dictionaries(st.sampled_from(('X-Token', 'Accept', 'bad name', '')), st.one_of(garbage_text(10), hostile()),
                                                    max_size=2)),
       answer=st.sampled_from(('ok', 'status', 'timeout', 'refused')))
def test_http_request_raises_only_http_error_and_never_shows_the_token(url, token, timeout, headers, answer):
    """_http.request: any URL, timeout, headers and token give a response or HttpError (never ValueError, UnicodeError,
    TypeError, OverflowError), and no error message contains the token."""
    def respond(method, target, body, sent, seconds):
        if answer == 'timeout':
            return fakes.real_socket.timeout('timed out')
        if answer == 'refused':
            return fakes.URLError(ConnectionRefusedError(111, 'Connection refused %s' % (token or '')))
        return (500 if answer == 'status' else 200, 'echo %s' % sent)
    with fakes.sandboxed() as sandbox:
        with fakes.fake_host(fakes.World(sandbox, http=fakes.HttpWorld(responder=respond)), fakes.FakeClock()):
            try:
                _http.request(url, token=token, timeout=timeout, headers=headers, expect_status=(200,))
            except _http.HttpError as exc:
                if token is not None:
                    assert token not in str(exc) and token not in str(exc.body or ''), str(exc)


@given(host=st.one_of(garbage_text(80), st.sampled_from(('a' * 64, 'a..b', '\u00fc' * 70, '-a', 'a' * 300, 'xn--zz', '\udc80'))))
def test_http_host_check_returns_a_sentence_never_an_exception(host):
    """_http.host_problem: any host name gives None or a sentence (IDNA failures, over-long labels and surrogates included)."""
    problem = _http.host_problem(host)
    assert problem is None or isinstance(problem, str)


# --------------------------------------------------------------------------------------------- budget, spec

@given(value=st.one_of(hostile(), st.sampled_from(('50%', '101%', '\u0661\u0662', ' 2 ', '2.5')), LONG_DIGITS,
                       LONG_DIGITS.map(lambda digits: digits + '%')))
def test_min_available_parses_or_raises_budget_error(value):
    """_budget.parse_min_available: any value gives ('count'|'percent', n >= 0), or BudgetError."""
    try:
        kind, number = _budget.parse_min_available(value)
    except _budget.BudgetError:
        return
    assert kind in ('count', 'percent') and isinstance(number, int) and number >= 0


@given(results=st.one_of(hostile(), st.lists(st.one_of(hostile(), st.fixed_dictionaries({
    'item': st.one_of(hostile(), st.tuples(st.one_of(st.just('gpu-01'), hostile()),
                                           st.one_of(hostile(), st.just({'name': 'lb1', 'haproxy': {'backend': 'models', 'server': 'm1'}})))),
    'state': st.one_of(st.sampled_from(('ready', 'draining')), hostile()),
    'raw': st.one_of(hostile(), st.just({'status': 'UP'})),
    'failed': st.booleans()})), max_size=3)),
    batch=st.one_of(hostile(), st.lists(st.sampled_from(('gpu-01', 'gpu-02')), max_size=2)),
    min_available=st.one_of(hostile(), st.sampled_from((1, '50%', {'default': 1}, {'lb1/models': 'x'}))))
def test_disruption_budget_gives_records_or_budget_error(results, batch, min_available):
    """_budget.disruption_budget: any query results, batch and min_available give one record per pool, or BudgetError."""
    try:
        records = _budget.disruption_budget(results, batch, min_available)
    except _budget.BudgetError:
        return
    assert all(isinstance(r['ok'], bool) and r['size'] >= r['available'] >= r['taking'] for r in records)


@given(value=st.one_of(hostile(), st.dictionaries(st.sampled_from(('units', 'timeout_stop_sec', 'fail_on', 'x')), hostile(), max_size=3)))
def test_spec_validation_gives_options_or_spec_error(value):
    """_spec.validate (as host_shutdown and lb_batch_state validate nested options): any value gives options, or SpecError."""
    from ansible_collections.modelops.shutdown.plugins.module_utils import _unit_stop
    try:
        options = _spec.validate(_unit_stop.argument_spec(), value, 'stop')
    except _spec.SpecError:
        return
    assert isinstance(options, dict) and isinstance(options['units'], list)


# --------------------------------------------------------------------------------------------- every parser

TEXT_PARAMETERS = ('text', 'value', 'output', 'data', 'raw', 'line', 'body', 'content', 'answer', 'out')
ALL_CAPTURES = sorted(read_fixture(name) for name in os.listdir(FIXTURES) if not name.endswith('.md'))


def discovered_parsers():
    """C((module name, function name)) of every C(parse*) function of module_utils taking one text argument."""
    found = []
    for info in pkgutil.iter_modules(utils_package.__path__):
        module = importlib.import_module(utils_package.__name__ + '.' + info.name)
        for name, func in sorted(vars(module).items()):
            if not (name.startswith('parse') and isinstance(func, types.FunctionType) and func.__module__ == module.__name__):
                continue
            required = [p for p in inspect.signature(func).parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if len(required) == 1 and required[0].name in TEXT_PARAMETERS:
                found.append((info.name, name))
    return found


def documented_errors(func):
    """The collection's own exception types, and ValueError (but not UnicodeError) when the parser's docstring names it."""
    errors = [cls for name in list(sys.modules) if name.startswith(utils_package.__name__ + '.')
              for cls in vars(sys.modules[name]).values()
              if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__.startswith(utils_package.__name__)]
    if 'ValueError' in (func.__doc__ or ''):
        errors.append(ValueError)
    return tuple(errors)


@pytest.mark.parametrize('module_name,function_name', discovered_parsers())
@given(text=st.one_of(st.sampled_from(ALL_CAPTURES).flatmap(lambda t: st.one_of(st.just(t), mutated(t, ','), mutated(t, None))),
                      garbage_text(300), st.integers(1, 50000).map(lambda d: '[' * d), LONG_DIGITS))
def test_every_parser_returns_or_raises_its_documented_error(module_name, function_name, text):
    """Every parse* function of module_utils (found at collection time, so a new parser is covered): on any capture,
    edited capture, garbage, deep brackets or 4301+ digit numbers it returns, or raises the collection's own error
    type (ValueError only where its docstring documents it, and never a UnicodeError)."""
    func = getattr(importlib.import_module(utils_package.__name__ + '.' + module_name), function_name)
    allowed = documented_errors(func)
    try:
        func(text)
    except Exception as exc:  # pylint: disable=broad-except
        assert isinstance(exc, allowed) and not isinstance(exc, UnicodeError), (
            '%s.%s raised %s, not one of its documented errors: %s' % (module_name, function_name, type(exc).__name__, exc))
