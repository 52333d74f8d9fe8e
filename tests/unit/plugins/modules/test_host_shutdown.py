# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_shutdown's main() through the shared run_module fixture (the phases are covered in
module_utils/test_host_shutdown.py): one whole run with every tool faked, and input that must fail cleanly."""

from __future__ import annotations

import functools
import json
import time

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _netstat
from ansible_collections.modelops.shutdown.plugins.modules import host_shutdown
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import MetricsServer, fixture_path
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_host_shutdown import ModelHost
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_drain import FakeTime
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_policy import FIREWALL_CMD, FakePolicyHost
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_gpu_release_check import (  # pylint: disable=unused-import
    APPS_IDLE,
    GPU_H100,
    FakeHost,
    isolated,
    tools,
)
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_unit_stop import AFTER, LLAMA, RUNNING, SYSTEMCTL, FakeSystemd


@pytest.fixture
def metrics():
    with MetricsServer() as srv:
        yield srv


@pytest.fixture
def host(isolated, monkeypatch):
    """A model host with llama running, port 8000 open in firewalld and an idle GPU; /proc/net/tcp from a capture."""
    monkeypatch.setattr(_netstat, 'listening', functools.partial(_netstat.listening,
                                                                 paths=(fixture_path('proc_net_tcp_dev_established_timewait.txt'),),
                                                                 byteorder='little'))
    # Only systemctl stop moves this clock; main() itself runs on the real one, which nothing here waits on.
    return ModelHost(FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}), FakeTime(), stop_seconds=0.0,
                     gpu=FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')]),
                     policy=FakePolicyHost(firewalld={('public', False): {'8000/tcp'}, ('public', True): {'8000/tcp'}}))


@pytest.fixture
def run(run_module, host, tools):
    """Run host_shutdown.main() on C(host); return the result."""
    def runner(args, check_mode=False, expect_failed=None, bin_paths=None):
        found = {'systemctl': SYSTEMCTL, 'nvidia-smi': tools['nvidia-smi'], 'firewall-cmd': FIREWALL_CMD}
        return run_module(host_shutdown, args, check_mode=check_mode, expect_failed=expect_failed, run_command=host,
                          bin_paths=found if bin_paths is None else bin_paths)
    return runner


def test_whole_host(run, host, metrics, tmp_path):
    log = tmp_path / 'tasks.jsonl'
    log.write_text(json.dumps({'event': 'started', 'id': 'a', 'ts': 1714564800.25}) + '\n'
                   + json.dumps({'event': 'completed', 'id': 'a', 'ts': 1714564801.25}) + '\n')
    metrics.body = host.scrape([0])
    since = round(time.time() - 3.0, 3)
    result = run({'since': since,
                  'drain': {'metrics': {'url': metrics.url, 'preset': 'vllm'}, 'timeout': 30},
                  'stop': {'units': ['model-server@llama']},
                  'policy': {'firewall_ports': ['8000/tcp']},
                  'verify': {'ports': [8000], 'gpu': {'timeout': 0}, 'task_log': {'paths': [str(log)]}}},
                 expect_failed=False)
    assert result['changed'] and result['ok'] and result['status'] == 'done' and result['failed_step'] is None
    assert result['msg'] == '' and result['warnings'] == [] and result['already_down'] is False
    assert result['since'] == since and result['drain']['drained'] and metrics.scrapes == 1
    assert result['timings']['drain_seconds'] >= 3.0
    assert result['timings']['floor_seconds'] == round(result['timings']['drain_seconds'] + result['timings']['stop_seconds'], 3)
    assert [(u['unit'], u['classification']) for u in result['stop']['units']] == [(LLAMA, 'clean')]
    assert host.policy.mutations == [[FIREWALL_CMD, '--zone', 'public', '--remove-port', '8000/tcp'],
                                     [FIREWALL_CMD, '--permanent', '--zone', 'public', '--remove-port', '8000/tcp']]
    assert result['verify']['ok'] and result['verify']['gpu']['released'] and result['verify']['incomplete_count'] == 0


def test_check_mode(run, host, metrics):
    metrics.body = host.scrape([2])
    result = run({'drain': {'metrics': {'url': metrics.url, 'preset': 'vllm'}}, 'stop': {'units': [LLAMA]},
                  'policy': {'firewall_ports': ['8000/tcp']}}, check_mode=True, expect_failed=False)
    assert result['status'] == 'would_shut_down' and metrics.scrapes == 1
    assert host.verbs() == ['show', 'show'] and host.policy.mutations == []


def test_a_failed_phase_fails_with_the_record(run, host):
    host.systemd.units[LLAMA]['after'] = AFTER['timeout']
    result = run({'stop': {'units': [LLAMA]}, 'policy': {'firewall_ports': ['8000/tcp']}}, expect_failed=True)
    assert result['failed_step'] == 'stop' and result['status'] == 'failed' and not result['ok']
    assert 'SIGKILL' in result['msg'] and result['stop']['failed_units'] == [LLAMA] and result['policy'] is None


@pytest.mark.parametrize('args,words', [
    ({'since': 'nan', 'stop': {'units': [LLAMA]}}, 'since must be a finite epoch time, got nan'),
    ({'since': 'inf', 'stop': {'units': [LLAMA]}}, 'since must be a finite epoch time, got inf'),
    ({'since': 'yesterday', 'stop': {'units': [LLAMA]}}, "argument 'since' is of type str"),
    ({}, 'missing required arguments: stop'),
    ({'drain': {'connections': {'port': 8000}}}, 'missing required arguments: stop'),
    ({'stop': {}}, 'stop: missing required arguments: units'),
    ({'stop': {'units': [LLAMA]}, 'drain': {'metrics': None, 'haproxy': None, 'connections': None}},
     'drain: one of the following is required: metrics, haproxy, connections'),
    ({'stop': {'units': [LLAMA]}, 'policy': {'mask_units': ['--now']}}, "policy: mask_units: '--now' is not a valid name"),
    ({'stop': {'units': [LLAMA]}, 'verify': {'gpu': {'backend': 'cuda'}}}, 'verify.gpu: value of backend must be one of'),
    ({'stop': {'units': [LLAMA]}, 'verify': {'port_timeout': 'nan'}}, 'verify.port_timeout must be a finite number'),
    ({'stop': {'units': [LLAMA]}, 'bogus': True}, 'Unsupported parameters'),
])
def test_input_errors_fail_cleanly(run, host, metrics, args, words):
    result = run(args, expect_failed=True)
    assert words in result['msg'], result['msg']
    # Nothing ran: no unit read, no metric scraped.
    assert host.events == [] and metrics.scrapes == 0


def test_input_error_result_says_input(run):
    result = run({'stop': {'units': [LLAMA]}, 'drain': {'connections': {'port': 0}}}, expect_failed=True)
    assert result['failed_step'] == 'input' and result['status'] == 'failed' and result['ok'] is False
    assert result['msg'] == 'drain: connections.port must be between 1 and 65535, got 0'


def test_no_systemd_fails_cleanly(run, host):
    result = run({'stop': {'units': [LLAMA]}}, bin_paths={}, expect_failed=True)
    assert 'systemctl not found on ' in result['msg'] and 'host_shutdown needs systemd' in result['msg']
    assert host.events == []
