# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drain-time sanity on real C(systemctl show) captures (tests/unit/fixtures/SOURCES.md) and a comparison table."""

from __future__ import annotations

import pytest

from hypothesis import given, strategies as st

from ansible_collections.modelops.shutdown.plugins.module_utils import _drain_timing, _haproxy_checks, _systemd
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import read_fixture

REFERENCE = read_fixture('systemctl_show_model-server_dropin_timeout5_debian12_systemd252.txt')
VLLM = read_fixture('systemctl_show_vllm_infinity_env_quoted_debian12_systemd252.txt')
TRITON = read_fixture('systemctl_show_triton_reset_execstart_debian12_systemd252.txt')


def _files(mapping):
    def read(path):
        if path in mapping:
            return mapping[path]
        raise IOError(2, 'No such file or directory')
    return read


def test_exec_start_of_real_capture():
    value = _systemd.parse_show_one(REFERENCE)['ExecStart']
    assert _systemd.parse_exec_command(value) == (
        '/usr/bin/python3', ['/usr/bin/python3', '/opt/model-server/model_server.py', '--instance', 'llama'])


@pytest.mark.parametrize('value', ['', '{ path=/a ; argv[]=/a ; ignore_errors=no }', 'garbage',
                                   '{ path=/a ; argv[]=/a ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; '
                                   'pid=0 ; code=(null) ; status=0/0 } ; { path=/b ; argv[]=/b ; ignore_errors=no ; '
                                   'start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }'])
def test_exec_start_other_shapes_are_unknown(value):
    assert _systemd.parse_exec_command(value) is None


def test_environment_of_real_capture_keeps_quoted_value():
    env = _systemd.parse_environment(_systemd.parse_show_one(VLLM)['Environment'])
    assert env == {'HF_HOME': '/srv/hf cache', 'VLLM_LOGGING_LEVEL': 'INFO'}


def test_reference_server_window_from_its_environment_file():
    record = _drain_timing.read_unit(REFERENCE, _files({'/etc/model-server/llama.env': 'DRAIN_TIMEOUT=20\n'}))
    assert record['timeout_stop_sec'] == 5.0
    assert record['server']['kind'] == 'reference'
    assert record['server']['shutdown_seconds'] == 20.0
    assert record['drop_in_paths'] == ['/etc/systemd/system/model-server@llama.service.d/50-fleet.conf']


def test_vllm_window_and_infinity():
    record = _drain_timing.read_unit(VLLM, _files({}))
    assert record['server']['kind'] == 'vllm'
    assert record['server']['shutdown_seconds'] == 30.0
    findings = _drain_timing.compare(record, [])
    assert [f['kind'] for f in findings] == ['unknown']
    assert 'infinity' in findings[0]['message']


def test_triton_default_when_the_flag_was_reset():
    record = _drain_timing.read_unit(TRITON, _files({}))
    assert record['server'] == {'kind': 'triton', 'shutdown_seconds': 30.0,
                                'source': '--exit-timeout-secs (not given, default 30)', 'note': None}
    assert _drain_timing.status(_drain_timing.compare(record, [])) == 'ok'


@pytest.mark.parametrize('argv,env,kind,window', [
    (['vllm', 'serve', 'm'], {}, 'vllm', 0.0),
    (['vllm', 'serve', 'm', '--shutdown-timeout', '45'], {}, 'vllm', 45.0),
    (['vllm', 'serve', 'm', '--config', 'c.yaml'], {}, 'vllm', None),
    (['/usr/bin/python3', '-u', '-m', 'vllm.entrypoints.openai.api_server', '--shutdown-timeout=10'], {}, 'vllm', 10.0),
    (['tritonserver', '--exit-timeout-secs=5'], {}, 'triton', 5.0),
    (['python3', '-m', 'sglang.launch_server'], {}, 'sglang', float('inf')),
    (['python3', '-m', 'sglang.launch_server'], {'SGL_FORCE_SHUTDOWN': '1'}, 'sglang', 0.0),
    (['text-generation-launcher', '--model-id', 'x'], {}, 'tgi', None),
    (['/usr/bin/env', 'DRAIN_TIMEOUT=7', 'python3', '/opt/model_server.py'], {}, 'reference', 7.0),
    (['python3', '/opt/model_server.py'], {}, 'reference', 30.0),
    (['/bin/sh', '-c', 'exec foo'], {}, None, None),
])
def test_identify_server(argv, env, kind, window):
    found = _drain_timing.identify_server(argv, env)
    assert (found['kind'], found['shutdown_seconds']) == (kind, window)


def _unit(timeout, kind, window, sigkill=True):
    return {'unit': 'm.service', 'timeout_stop_sec': timeout, 'timeout_stop_raw': str(timeout), 'send_sigkill': sigkill,
            'problems': [], 'server': {'kind': kind, 'shutdown_seconds': window, 'source': 'test', 'note': 'n'}}


CHECK = {'backend': 'models', 'server': 'a', 'inter_seconds': 3.0, 'fastinter_seconds': 3.0, 'fall': 3,
         'detection_seconds': 9.0}


@pytest.mark.parametrize('unit,checks,kinds', [
    (_unit(5.0, 'reference', 20.0), [], ['sigkill_before_drain']),
    (_unit(25.0, 'reference', 20.0), [], []),
    (_unit(24.0, 'reference', 20.0), [], ['sigkill_before_drain']),
    (_unit(5.0, 'reference', 20.0, sigkill=False), [], []),
    (_unit(30.0, 'reference', 2.0), [CHECK], ['drain_shorter_than_detection']),
    (_unit(30.0, 'reference', 9.0), [CHECK], []),
    (_unit(90.0, 'vllm', 0.0), [], ['vllm_aborts_in_flight']),
    (_unit(90.0, 'sglang', float('inf')), [CHECK], ['unknown']),
    (_unit(90.0, None, None), [CHECK], ['unknown']),
    (_unit(float('inf'), 'reference', 20.0), [], ['unknown']),
])
def test_compare_table(unit, checks, kinds):
    assert [f['kind'] for f in _drain_timing.compare(unit, checks, margin=5.0)] == kinds


def test_findings_carry_numbers_and_fix():
    (kill,) = _drain_timing.compare(_unit(5.0, 'reference', 20.0), [], margin=5.0)
    assert kill['needed_seconds'] == 25.0
    assert kill['dropin'] == {'path': '/etc/systemd/system/m.service.d/zz-drain-timing.conf',
                              'content': '[Service]\nTimeoutStopSec=25\n'}
    (late,) = _drain_timing.compare(_unit(30.0, 'reference', 2.0), [CHECK], margin=5.0)
    assert (late['window_seconds'], late['detection_seconds']) == (2.0, 9.0)
    assert 'DRAIN_TIMEOUT=9' in late['fix']
    assert '"inter 666ms fastinter 666ms fall 3"' in late['fix']


HAPROXY_CFG = """
defaults
    mode http
    default-server inter 500ms fall 2 rise 2

backend models
    default-server inter 3s
    server a 10.0.0.1:8000 check fall 3
    server b 10.0.0.2:8000 check fastinter 1s
    server c 10.0.0.3:8000
"""


def test_haproxy_checks_inheritance_and_formula():
    found = _haproxy_checks.server_checks(HAPROXY_CFG, 'h.cfg', [('ha', 'models', 'a'), ('hb', 'models', 'b'),
                                                                 ('hc', 'models', 'c'), ('hd', 'models', 'd')])
    a, b, c, d = found
    assert (a['inter_seconds'], a['fall'], a['detection_seconds']) == (3.0, 3, 9.0)
    assert (b['fall'], b['fastinter_seconds'], b['detection_seconds']) == (2, 1.0, 4.0)
    assert c['check'] is False and c['detection_seconds'] is None
    assert d['error'] and d['detection_seconds'] is None


@given(st.integers(min_value=0, max_value=10 ** 6), st.sampled_from(['us', 'ms', 's', 'm', 'h', 'd', '']))
def test_haproxy_time(number, unit):
    factor = {'us': 1e-6, 'ms': 1e-3, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, '': 1e-3}[unit]
    assert _haproxy_checks.parse_time('%d%s' % (number, unit)) == pytest.approx(number * factor)


@given(st.integers(min_value=0, max_value=10 ** 5), st.integers(min_value=0, max_value=59))
def test_timeout_stop_timespan(minutes, seconds):
    text = ('%dmin %ds' % (minutes, seconds)) if minutes else '%ds' % seconds
    assert _systemd.parse_timespan(text) == minutes * 60 + seconds


def test_a_load_balancer_whose_checks_were_not_read_is_unknown_with_why():
    unread = {'lb': 'lb2', 'backend': 'models', 'server': 'gpu-01', 'detection_seconds': None,
              'error': 'its health checks were not read: give this drain_load_balancers entry haproxy_config'}
    (finding,) = _drain_timing.compare(_unit(45.0, 'reference', 30.0), [unread], margin=5.0)
    assert finding['kind'] == 'unknown'
    assert finding['message'] == ('m.service: how long lb2 takes to notice models/gpu-01 is gone is '
                                  'unknown: its health checks were not read: give this drain_load_balancers entry '
                                  'haproxy_config')
    # A server without "check" is another matter: HAProxy never marks it DOWN.
    (finding,) = _drain_timing.compare(_unit(45.0, 'reference', 30.0), [
        {'lb': 'lb2', 'backend': 'models', 'server': 'gpu-01', 'check': False, 'detection_seconds': None, 'error': None}])
    assert 'has no usable health check (lb2): the load balancer never marks it DOWN by itself' in finding['message']
