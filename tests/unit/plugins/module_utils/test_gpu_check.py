# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GpuReleaseChecker driven directly, as a composing module would (the module's own tests cover the rest)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.modelops.shutdown.plugins.module_utils import _gpu_check
from ansible_collections.modelops.shutdown.plugins.module_utils import _procs
from ansible_collections.modelops.shutdown.plugins.module_utils._gpu_check import (
    MODULE_KWARGS,
    GpuReleaseChecker,
    argument_spec,
)
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import add_proc
# FakeHost, the captures and the fixtures are those of the module's tests.
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_gpu_release_check import (  # pylint: disable=unused-import
    APPS_IDLE,
    APPS_LOAD,
    GPU_H100,
    SHOW_INACTIVE,
    SYSTEMCTL,
    UNIT,
    FakeHost,
    isolated,
    tools,
)

TIMEOUT_BIN = '/usr/bin/timeout'
MODULE_KEYS = {'changed', 'released', 'state', 'gpus', 'holders', 'killed', 'unreadable_pids', 'backend', 'waited_seconds',
               'msg'}
# The line rocm_smi.py's showPids() prints when no KFD process runs (printLog(None, 'No KFD PIDs currently running'));
# a literal from its source, not a capture.
ROCM_NO_PIDS = 'No KFD PIDs currently running\n'


class DeadlineHost(FakeHost):
    """A FakeHost that also answers commands wrapped in C(timeout -k N SECONDS ...)."""

    def tool_key(self, argv):
        if os.path.basename(argv[0]) == 'timeout':
            argv = argv[4:]
        return super(DeadlineHost, self).tool_key(argv)


def which(found):
    """A get_bin_path finding only the programs in C(found) (name -> path)."""
    return found.get


def params(**options):
    """Options validated and defaulted by the module's own spec, as AnsibleModule would."""
    options.setdefault('poll_interval', 0.01)
    validated = ArgumentSpecValidator(argument_spec(), **MODULE_KWARGS).validate(options)
    assert not validated.error_messages
    return validated.validated_parameters


def test_released_result_and_timestamps(tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')])
    before = time.time()
    result, failure = GpuReleaseChecker(fake, which({'nvidia-smi': tools['nvidia-smi']}), host='gpu-7').run(params())
    after = time.time()
    assert failure is None
    assert set(result) == MODULE_KEYS | {'started_at', 'finished_at'}
    assert result['released'] and result['backend'] == 'nvidia-smi'
    assert result['msg'] == 'GPUs released on gpu-7 after 0.0s (1 GPU checked)'
    assert before - 0.001 <= result['started_at'] <= result['finished_at'] <= after + 0.001
    for key in ('started_at', 'finished_at'):
        assert isinstance(result[key], float) and round(result[key], 3) == result[key]


def test_failure_message_is_the_result_msg(tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')])
    result, failure = GpuReleaseChecker(fake, which({'nvidia-smi': tools['nvidia-smi']})).run(params(timeout=0))
    assert failure == result['msg'] and 'not released after' in failure
    assert [h['pid'] for h in result['holders']] == [21180, 21181, 21198]
    assert 'error_kind' not in result and result['finished_at'] >= result['started_at']


def test_tool_failure_sets_error_kind(tools, isolated):
    fake = FakeHost(gpus=[(9, 'NVIDIA-SMI has failed\n', '')])
    result, failure = GpuReleaseChecker(fake, which({'nvidia-smi': tools['nvidia-smi']})).run(params())
    assert result['error_kind'] == 'driver_not_loaded' and failure == result['msg']
    assert 'finished_at' in result


def test_missing_options_take_the_spec_defaults(isolated):
    result, failure = GpuReleaseChecker(FakeHost(), which({})).run({'timeout': 0})
    assert failure is None and result['released'] and result['backend'] == 'proc'


@pytest.mark.parametrize('options,words', [
    ({'timeout': float('nan')}, 'timeout must be a finite number of seconds, got nan'),
    ({'timeout': float('inf')}, 'timeout must be a finite number of seconds, got inf'),
    ({'timeout': '30'}, 'timeout must be a finite number of seconds'),
    ({'poll_interval': float('nan')}, 'poll_interval must be a finite number of seconds, got nan'),
    ({'poll_interval': float('-inf')}, 'poll_interval must be a finite number of seconds, got -inf'),
    ({'timeout': -1}, 'timeout must be 0 or more seconds'),
    ({'poll_interval': 0}, 'poll_interval must be more than 0 seconds'),
    ({'max_memory_used_mib': -5}, 'max_memory_used_mib must be 0 or more'),
    ({'max_memory_used_mib': 'lots'}, 'max_memory_used_mib must be an integer'),
    ({'process_name': '(['}, 'not a valid regular expression'),
    ({'kill_orphans': True}, 'kill_orphans is True but all of the following are missing: unit'),
    ({'no_processes': False}, 'no_processes is False but all of the following are missing: max_memory_used_mib'),
])
def test_bad_params_are_refused_without_running_anything(isolated, options, words):
    fake = FakeHost()
    result, failure = GpuReleaseChecker(fake, which({'nvidia-smi': '/x/nvidia-smi'})).run(options)
    assert failure == result['msg'] and words in failure
    assert not result['released'] and fake.calls == [] and 'finished_at' in result


@pytest.mark.parametrize('text', ['nan', 'inf', '-inf'])
def test_non_finite_strings_pass_the_float_type_and_are_refused(isolated, text):
    # AnsibleModule's float type turns 'nan' into NaN, which once slipped through `< 0`.
    validated = params(timeout=text)
    result, failure = GpuReleaseChecker(FakeHost(), which({})).run(validated)
    assert failure == 'timeout must be a finite number of seconds, got %s' % text


def test_warn_receives_warnings(tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')], show=[(1, '', 'Failed to connect to bus')])
    found = which({'nvidia-smi': tools['nvidia-smi'], 'systemctl': SYSTEMCTL})
    warnings = []
    result, failure = GpuReleaseChecker(fake, found, warn=warnings.append).run(params(unit=UNIT))
    assert failure is None and result['released']
    assert len(warnings) == 1 and 'Could not read the last main PID of %s' % UNIT in warnings[0]
    # Without warn the warning is dropped, nothing raises.
    result, failure = GpuReleaseChecker(fake, found).run(params(unit=UNIT))
    assert failure is None


def test_check_mode_kills_nothing(monkeypatch, tools, isolated):
    add_proc(isolated.proc, 21198, cgroup='0::/system.slice/%s\n' % UNIT, comm='gpu_burn')
    unit_only = '\n'.join(l for i, l in enumerate(APPS_LOAD.splitlines()) if i == 0 or ' 21198,' in l) + '\n'
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, unit_only, '')], show=[(0, SHOW_INACTIVE, '')])
    sent = []
    monkeypatch.setattr(_procs.os, 'kill', lambda pid, sig: sent.append((pid, sig)))
    found = which({'nvidia-smi': tools['nvidia-smi'], 'systemctl': SYSTEMCTL})
    checker = GpuReleaseChecker(fake, found, check_mode=True, host='gpu-7')
    result, failure = checker.run(params(unit=UNIT, kill_orphans=True, timeout=0))
    assert failure is None and sent == [] and result['changed'] and result['killed'] == [21198]
    assert 'Check mode: would send SIGKILL to PIDs 21198 left over in unit %s on gpu-7' % UNIT in result['msg']

    checker = GpuReleaseChecker(fake, found, host='gpu-7')
    result, failure = checker.run(params(unit=UNIT, kill_orphans=True, timeout=0))
    assert sent == [(21198, signal.SIGKILL)] and result['killed'] == [21198]


# --- deadline of each GPU tool call ------------------------------------------------------------------

def test_gpu_tool_calls_run_under_timeout_when_it_is_found(tools, isolated):
    fake = DeadlineHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')], show=[(0, SHOW_INACTIVE, '')])
    found = which({'nvidia-smi': tools['nvidia-smi'], 'systemctl': SYSTEMCTL, 'timeout': TIMEOUT_BIN})
    result, failure = GpuReleaseChecker(fake, found).run(params(unit=UNIT))
    assert failure is None and result['released']
    show, gpus, apps = fake.calls
    assert show[0] == SYSTEMCTL  # only the GPU tools get the deadline
    for argv in (gpus, apps):
        assert argv[:5] == [TIMEOUT_BIN, '-k', '5', '60', tools['nvidia-smi']]


def test_rocm_smi_runs_under_timeout_too(tools, isolated):
    fake = DeadlineHost(rocm=[(0, '{}', '')], rocm_pids=[(0, ROCM_NO_PIDS, '')])
    checker = GpuReleaseChecker(fake, which({'rocm-smi': tools['rocm-smi'], 'timeout': TIMEOUT_BIN}))
    checker.tool_timeout = 2.5
    result, failure = checker.run(params(timeout=0))
    assert failure is None and result['backend'] == 'rocm-smi'
    assert [argv[:5] for argv in fake.calls] == [[TIMEOUT_BIN, '-k', '5', '2.5', tools['rocm-smi']]] * 2


def test_without_timeout_on_the_path_commands_are_not_wrapped(tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')])
    result, failure = GpuReleaseChecker(fake, which({'nvidia-smi': tools['nvidia-smi']})).run(params())
    assert failure is None and [argv[0] for argv in fake.calls] == [tools['nvidia-smi']] * 2


@pytest.mark.parametrize('rc', [124, 137])
def test_timed_out_tool_fails_with_tool_timeout(tools, isolated, rc):
    fake = DeadlineHost(gpus=[(rc, '', '')])
    found = which({'nvidia-smi': tools['nvidia-smi'], 'timeout': TIMEOUT_BIN})
    result, failure = GpuReleaseChecker(fake, found, host='gpu-7').run(params())
    assert result['error_kind'] == 'tool_timeout' and failure == result['msg']
    assert failure.startswith('GPU check on gpu-7 failed (backend nvidia-smi): %s did not finish within 60s' % tools['nvidia-smi'])
    assert 'rc %d' % rc in failure and len(fake.calls) == 1


def run_command(argv):
    """A real run_command (what AnsibleModule.run_command does, minus its options)."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.skipif(not shutil.which('timeout'), reason='needs timeout(1)')
def test_a_hanging_nvidia_smi_is_stopped(tmp_path, isolated):
    hang = tmp_path / 'nvidia-smi'
    hang.write_text('#!/bin/sh\nexec sleep 60\n')
    hang.chmod(0o755)
    checker = GpuReleaseChecker(run_command, which({'nvidia-smi': str(hang), 'timeout': shutil.which('timeout')}))
    checker.tool_timeout = 0.3
    start = time.monotonic()
    result, failure = checker.run(params(timeout=30))
    assert time.monotonic() - start < 10
    assert result['error_kind'] == 'tool_timeout' and 'did not finish within 0.3s' in failure


def test_module_uses_the_shared_spec():
    from ansible_collections.modelops.shutdown.plugins.modules import gpu_release_check
    assert gpu_release_check.argument_spec is _gpu_check.argument_spec
    assert set(argument_spec()) == {'backend', 'nvidia_smi_path', 'amd_smi_path', 'rocm_smi_path', 'pids', 'unit',
                                    'process_name', 'gpus',
                                    'no_processes', 'max_memory_used_mib', 'timeout', 'poll_interval', 'kill_orphans'}
    assert 'supports_check_mode' not in MODULE_KWARGS


# --- the deadline without coreutils timeout, and the state of what could not be known -------------------

def callback_run_command(argv, before_communicate_callback=None):
    """What AnsibleModule.run_command does with before_communicate_callback: hand over the Popen, then read."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if before_communicate_callback:
        before_communicate_callback(proc)
    out, err = proc.communicate()
    return proc.returncode, out, err


def test_without_timeout_every_call_gets_the_watchdog(tools, isolated):
    seen = []

    def run_command(argv, before_communicate_callback=None):
        seen.append(before_communicate_callback)
        return FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')])(argv)

    result, failure = GpuReleaseChecker(run_command, which({'nvidia-smi': tools['nvidia-smi']})).run(params())
    assert failure is None and result['state'] == 'released'
    assert len(seen) == 2 and all(callable(cb) for cb in seen)


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='needs Linux')
def test_watchdog_stops_a_hanging_tool_and_lets_a_quick_one_finish(tmp_path, isolated):
    hang = tmp_path / 'nvidia-smi'
    hang.write_text('#!/bin/sh\nexec sleep 60\n')
    hang.chmod(0o755)
    checker = GpuReleaseChecker(callback_run_command, which({'nvidia-smi': str(hang)}))
    checker.tool_timeout = 0.3
    start = time.monotonic()
    result, failure = checker.run(params(timeout=30))
    assert time.monotonic() - start < 10
    assert result['error_kind'] == 'tool_timeout' and result['state'] == 'unknown'
    assert failure.startswith('GPU check on ') and 'did not finish within 0.3s and was stopped (SIGTERM' in failure

    quick = _gpu_check._watchdog(callback_run_command, 5)
    assert quick(['sh', '-c', 'echo ok']) == (0, 'ok\n', '')


def test_state_unknown_when_memory_or_processes_cannot_be_read(tools, isolated):
    na = '0, GPU-a, NVIDIA H100 80GB HBM3, [N/A], [N/A]\n'
    fake = FakeHost(gpus=[(0, na, '')], apps=[(0, APPS_IDLE, '')])
    result, failure = GpuReleaseChecker(fake, which({'nvidia-smi': tools['nvidia-smi']})).run(
        params(max_memory_used_mib=100, timeout=0))
    assert failure and result['state'] == 'unknown' and 'cannot be checked' in failure

    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')])
    result, failure = GpuReleaseChecker(fake, which({'nvidia-smi': tools['nvidia-smi']})).run(params(timeout=0))
    assert failure and result['state'] == 'held'


def test_proc_backend_on_an_unlistable_proc_is_unknown(monkeypatch, tmp_path, isolated):
    (isolated.dev / 'nvidia0').write_text('')
    monkeypatch.setattr(_procs, 'PROC_ROOT', str(tmp_path / 'no-proc'))
    result, failure = GpuReleaseChecker(FakeHost(), which({})).run(params(backend='proc', timeout=0))
    assert failure and not result['released'] and result['state'] == 'unknown' and result['error_kind'] == 'permission'
    assert 'cannot list the processes in' in failure
