# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
import types

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _gpu
from ansible_collections.modelops.shutdown.plugins.module_utils import _gpu_check
from ansible_collections.modelops.shutdown.plugins.module_utils import _procs
from ansible_collections.modelops.shutdown.plugins.modules import gpu_release_check
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import CommandReplay, add_proc, option_key, read_fixture

HAS_PROC = os.path.isdir('/proc/self/fd')
SYSTEMCTL = '/usr/bin/systemctl'
ZERO_UUID = 'GPU-00000000-0000-0000-0000-000000000000'
UNIT = 'model-server@llama.service'


GPU_H100 = read_fixture('nvidia-smi_query-gpu_allfields_csv_h100-mig_drv590.48.01_idle.csv')
APPS_LOAD = read_fixture('nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_load.csv')
APPS_IDLE = read_fixture('nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_idle_empty.csv')
APPS_WIN = read_fixture('nvidia-smi_query-compute-apps_csv_windows-rtx2080super_drv591.86_load_NA.csv')
GPU_WIN = read_fixture('nvidia-smi_query-gpu_allfields_csv_windows-rtx2080super_drv591.86_load.csv')
ROCM_MI100X6 = read_fixture('rocm-smi_json_allinfo_mi100x6_rocm5.7.1_with_pid.json')
ROCM_PIDS = read_fixture('rocm-smi_showpids_8procs_ROC-smi-issue60.txt')
ROCM_MI100X4 = read_fixture('rocm-smi_json_allinfo_mi100x4_rocm6.0.2.json')
# What rocm_smi.py's showPids() prints when no KFD process runs (a literal from its source, not a capture).
ROCM_NO_PIDS = 'No KFD PIDs currently running\n'
SHOW_INACTIVE = read_fixture('systemctl_show_oneshot_inactive_dead_systemd249plus.txt')
SHOW_RUNNING = read_fixture('systemctl_show_apache2_active_running_ubuntu20.04_systemd245.txt')
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.\n")


def show_with_exec_main_pid(text, pid):
    return re.sub(r'(?m)^ExecMainPID=.*$', 'ExecMainPID=%d' % pid, text)


class FakeHost(CommandReplay):
    """Replays nvidia-smi / amd-smi / rocm-smi / systemctl. Each query answer is a list consumed one per call
    (the last one repeats), so a test can script a GPU that frees up after a few polls.

    C(rocm) answers rocm-smi's JSON call, C(rocm_pids) its C(--showpids) call; C(amd_metric) and
    C(amd_process) answer C(amd-smi metric ...) and C(amd-smi process ...)."""

    TOOL_KEYS = {'systemctl': 'show'}

    def __init__(self, gpus=None, apps=None, rocm=None, show=None, listing=None, rocm_pids=None, amd_metric=None,
                 amd_process=None):
        super(FakeHost, self).__init__({'--query-gpu': list(gpus or []), '--query-compute-apps': list(apps or []),
                                        'rocm': list(rocm or []), 'rocm-pids': list(rocm_pids or []),
                                        'amd-metric': list(amd_metric or []), 'amd-process': list(amd_process or []),
                                        'show': list(show or []), '-L': list(listing or [])},
                                       key=self.tool_key)

    def tool_key(self, argv):
        tool = os.path.basename(argv[0])
        if tool == 'nvidia-smi':
            return option_key(argv)
        if tool == 'rocm-smi':
            return 'rocm-pids' if argv[1:] == ['--showpids'] else 'rocm'
        if tool == 'amd-smi':
            return 'amd-%s' % argv[1]
        return self.TOOL_KEYS.get(tool)


@pytest.fixture
def tools(tmp_path):
    """Executable stand-ins so the os.access check passes; their paths are what get_bin_path returns."""
    paths = {}
    for name in ('nvidia-smi', 'rocm-smi', 'amd-smi'):
        path = tmp_path / 'bin' / name
        path.parent.mkdir(exist_ok=True)
        path.write_text('#!/bin/sh\nexit 0\n')
        path.chmod(0o755)
        paths[name] = str(path)
    paths['systemctl'] = SYSTEMCTL
    return paths


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point /proc and /dev at empty folders and hide pynvml, so no test depends on this machine."""
    proc = tmp_path / 'proc'
    dev = tmp_path / 'dev'
    proc.mkdir()
    dev.mkdir()
    monkeypatch.setattr(_procs, 'PROC_ROOT', str(proc))
    monkeypatch.setattr(_gpu, 'DEV_ROOT', str(dev))
    monkeypatch.setattr(_gpu, 'import_pynvml', lambda: None)
    return types.SimpleNamespace(proc=proc, dev=dev)


@pytest.fixture
def run(run_module):
    """Run gpu_release_check.main() against C(fake), a FakeHost, with C(on_path) the programs found; return C((failed, result))."""
    def runner(fake, args, on_path=None, check_mode=False):
        args = dict(args)
        args.setdefault('poll_interval', 0.01)
        result = run_module(gpu_release_check, args, check_mode=check_mode, run_command=fake, bin_paths=on_path or {})
        return result['failed'], result
    return runner


def nvsmi(tools):
    return {'nvidia-smi': tools['nvidia-smi']}


# --- nvidia-smi, no filter ------------------------------------------------------------------------

def test_released_when_no_compute_process(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')])
    failed, result = run(fake, {}, nvsmi(tools))
    assert not failed and result['released'] and not result['changed']
    assert result['backend'] == 'nvidia-smi'
    assert result['gpus'] == [{'index': 0, 'uuid': ZERO_UUID, 'name': 'NVIDIA H100 80GB HBM3', 'memory_used_mib': 59,
                               'memory_total_mib': 81559, 'holders': []}]
    assert result['holders'] == [] and result['killed'] == []
    assert 'GPUs released' in result['msg'] and '1 GPU checked' in result['msg']


def test_not_released_names_every_holder(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')])
    failed, result = run(fake, {'timeout': 0}, nvsmi(tools))
    assert failed and not result['released']
    assert [h['pid'] for h in result['holders']] == [21180, 21181, 21198]
    assert result['holders'][2] == {'pid': 21198, 'name': './gpu_burn', 'used_mib': 7484, 'gpu_uuid': ZERO_UUID,
                                    'gpu_index': 0, 'unit': None}
    for text in ('PID 21180 (/root/tools/memhog) holds 2296 MiB on GPU 0', 'PID 21198 (./gpu_burn) holds 7484 MiB',
                 'find their owner', 'not released after'):
        assert text in result['msg']
    assert [c[1].split('=')[0] for c in fake.calls] == ['--query-gpu', '--query-compute-apps']


def test_waits_until_released(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, ''), (0, APPS_LOAD, ''), (0, APPS_IDLE, '')])
    failed, result = run(fake, {'timeout': 5}, nvsmi(tools))
    assert not failed and result['released']
    assert len([c for c in fake.calls if c[1].startswith('--query-compute-apps')]) == 3
    assert result['waited_seconds'] > 0


def test_windows_na_memory_is_reported_as_unknown(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_WIN, '')], apps=[(0, APPS_WIN, '')])
    failed, result = run(fake, {'timeout': 0, 'process_name': 'dwm'}, nvsmi(tools))
    assert failed and [h['pid'] for h in result['holders']] == [2056]
    assert result['holders'][0]['used_mib'] is None
    assert 'an unknown amount of memory' in result['msg']
    assert len(result['gpus'][0]['holders']) == len(APPS_WIN.splitlines()) - 1


# --- nvidia-smi failures ---------------------------------------------------------------------------

@pytest.mark.parametrize('rc,out,kind,words', [
    (9, NO_DRIVER, 'driver_not_loaded', ['rc 9', 'NVIDIA driver is not loaded', "couldn't communicate", 'modprobe nvidia']),
    (12, 'NVML Shared Library Not Found\n', 'library_not_found', ['rc 12', 'libnvidia-ml.so']),
    (15, 'Unable to determine the device handle for GPU0000:17:00.0: GPU is lost.  Reboot the system to recover this GPU\n',
     'gpu_lost', ['rc 15', 'fallen off the bus', 'GPU is lost', 'reboot']),
    (4, 'Insufficient Permissions\n', 'permission', ['rc 4', 'become: true']),
])
def test_nvidia_smi_exit_codes(run, tools, isolated, rc, out, kind, words):
    failed, result = run(FakeHost(gpus=[(rc, out, '')]), {}, nvsmi(tools))
    assert failed and result['error_kind'] == kind and not result['released']
    assert 'Traceback' not in result['msg']
    for word in words:
        assert word in result['msg']


def test_unparseable_output_fails_clearly(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, 'Failed to initialize NVML: Unknown Error\n', '')])
    failed, result = run(fake, {}, nvsmi(tools))
    assert failed and result['error_kind'] == 'unparseable' and 'Unknown Error' in result['msg']


def test_explicit_nvidia_smi_backend_missing(run, isolated):
    failed, result = run(FakeHost(), {'backend': 'nvidia-smi'})
    assert failed and result['error_kind'] == 'tool_missing' and 'nvidia_smi_path' in result['msg']


def test_nvidia_smi_path_option_selects_backend(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')])
    failed, result = run(fake, {'nvidia_smi_path': tools['nvidia-smi']})
    assert not failed and result['backend'] == 'nvidia-smi' and fake.calls[0][0] == tools['nvidia-smi']


# --- no GPU --------------------------------------------------------------------------------------

def test_host_without_gpu_is_released(run, isolated):
    failed, result = run(FakeHost(), {'unit': 'model-server@llama'})
    assert not failed and result['released'] and result['gpus'] == [] and result['holders'] == []
    assert result['backend'] == 'proc'
    assert 'No GPU found' in result['msg'] and '/dev/nvidia' in result['msg']


def test_nvidia_smi_without_devices_is_released(run, tools, isolated):
    failed, result = run(FakeHost(gpus=[(6, 'No devices were found\n', '')]), {}, nvsmi(tools))
    assert not failed and result['released'] and result['gpus'] == [] and 'No GPU found' in result['msg']


# --- filters -------------------------------------------------------------------------------------

def test_pids_filter(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')])
    failed, result = run(fake, {'pids': [1, 2]}, nvsmi(tools))
    assert not failed and result['released'] and result['holders'] == []
    assert [h['matched'] for h in result['gpus'][0]['holders']] == [False, False, False]


def test_process_name_regex_on_cmdline(run, tools, isolated):
    add_proc(isolated.proc, 21181, cmdline=('python3', '-m', 'vllm.entrypoints.openai.api_server'))
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')])
    failed, result = run(fake, {'process_name': 'vllm', 'timeout': 0}, nvsmi(tools))
    assert failed and [h['pid'] for h in result['holders']] == [21181]


def test_unit_filter_cgroup_and_exec_main_pid(run, tools, isolated):
    add_proc(isolated.proc, 21198, cgroup='1:name=systemd:/docker/4f1c/system.slice/%s\n0::/docker/4f1c/system.slice/%s\n' % (UNIT, UNIT))
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')],
                    show=[(0, show_with_exec_main_pid(SHOW_INACTIVE, 21181), '')])
    on_path = dict(nvsmi(tools), systemctl=SYSTEMCTL)
    failed, result = run(fake, {'unit': 'model-server@llama', 'timeout': 0}, on_path)
    assert failed
    assert [(h['pid'], h['unit']) for h in result['holders']] == [(21181, None), (21198, UNIT)]
    assert 'kill_orphans: true' in result['msg'] and 'What to do for PIDs 21181' in result['msg']
    assert fake.calls[0][:2] == [SYSTEMCTL, 'show'] and fake.calls[0][-2:] == ['--', UNIT]


def test_unit_still_active_is_pointed_out(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')],
                    show=[(0, show_with_exec_main_pid(SHOW_RUNNING, 21180), '')])
    failed, result = run(fake, {'unit': UNIT, 'timeout': 0}, dict(nvsmi(tools), systemctl=SYSTEMCTL))
    assert failed and 'was still active' in result['msg'] and 'unit_stop' in result['msg']


def test_gpu_filter_and_memory_threshold(run, tools, isolated):
    two = '0, GPU-aaaa, NVIDIA H200, 30000, 143771\n1, GPU-bbbb, NVIDIA H200, 20, 143771\n'
    apps = '500, python3, 29000, GPU-aaaa\n'
    fake = FakeHost(gpus=[(0, two, '')], apps=[(0, apps, '')])
    failed, result = run(fake, {'gpus': ['1'], 'max_memory_used_mib': 100}, nvsmi(tools))
    assert not failed and [g['index'] for g in result['gpus']] == [1]
    failed, result = run(fake, {'gpus': ['GPU-aaaa'], 'no_processes': False,
                                'max_memory_used_mib': 100, 'timeout': 0}, nvsmi(tools))
    assert failed and 'uses 30000 MiB, over max_memory_used_mib 100' in result['msg']


def test_unknown_gpu_in_filter_fails_without_waiting(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')])
    failed, result = run(fake, {'gpus': ['3'], 'timeout': 600}, nvsmi(tools))
    assert failed and "GPU(s) 3 given in gpus are not on" in result['msg'] and ZERO_UUID in result['msg']
    assert result['waited_seconds'] < 5


@pytest.mark.parametrize('args,words', [
    ({'kill_orphans': True}, 'unit'),
    ({'no_processes': False}, 'max_memory_used_mib'),
    ({'process_name': '(['}, 'not a valid regular expression'),
    ({'timeout': -1}, 'timeout must be'),
    ({'poll_interval': 0}, 'poll_interval must be'),
    ({'max_memory_used_mib': -5}, 'max_memory_used_mib must be'),
    ({'backend': 'cuda'}, 'backend'),
])
def test_argument_errors(run, isolated, args, words):
    failed, result = run(FakeHost(), args)
    assert failed and words in result['msg']


# --- kill_orphans ----------------------------------------------------------------------------------

def unit_setup(isolated, tools):
    add_proc(isolated.proc, 21198, cgroup='0::/system.slice/%s\n' % UNIT, comm='gpu_burn')
    add_proc(isolated.proc, 21181, cgroup='0::/system.slice/other.service\n', comm='memhog')
    return dict(nvsmi(tools), systemctl=SYSTEMCTL)


def test_kill_orphans_kills_only_the_units_leftovers(monkeypatch, run, tools, isolated):
    on_path = unit_setup(isolated, tools)
    only_other = '\n'.join(l for l in APPS_LOAD.splitlines() if ' 21198,' not in l) + '\n'
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, ''), (0, only_other, '')],
                    show=[(0, show_with_exec_main_pid(SHOW_INACTIVE, 21181), '')])
    sent = []
    monkeypatch.setattr(_procs.os, 'kill', lambda pid, sig: sent.append((pid, sig)))
    failed, result = run(fake, {'unit': UNIT, 'kill_orphans': True, 'timeout': 0}, on_path)
    # 21181 (ExecMainPID, other cgroup) is never signalled; it still holds memory, so the task fails.
    assert sent == [(21198, signal.SIGKILL)]
    assert failed and result['changed'] and result['killed'] == [21198]
    assert [h['pid'] for h in result['holders']] == [21181]
    assert 'What to do for PIDs 21181' in result['msg'] and 'even after SIGKILL of PIDs 21198' in result['msg']


def test_kill_orphans_then_released(monkeypatch, run, tools, isolated):
    on_path = unit_setup(isolated, tools)
    unit_only = '\n'.join(l for i, l in enumerate(APPS_LOAD.splitlines()) if i == 0 or ' 21198,' in l) + '\n'
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, unit_only, ''), (0, '', '')], show=[(0, SHOW_INACTIVE, '')])
    sent = []
    monkeypatch.setattr(_procs.os, 'kill', lambda pid, sig: sent.append((pid, sig)))
    failed, result = run(fake, {'unit': UNIT, 'kill_orphans': True, 'timeout': 0}, on_path)
    assert not failed and result['released'] and result['changed'] and result['killed'] == [21198]
    assert sent == [(21198, signal.SIGKILL)]
    assert 'after SIGKILL of PIDs 21198' in result['msg']


def test_kill_orphans_check_mode_kills_nothing(monkeypatch, run, tools, isolated):
    on_path = unit_setup(isolated, tools)
    unit_only = '\n'.join(l for i, l in enumerate(APPS_LOAD.splitlines()) if i == 0 or ' 21198,' in l) + '\n'
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, unit_only, '')], show=[(0, SHOW_INACTIVE, '')])
    sent = []
    monkeypatch.setattr(_procs.os, 'kill', lambda pid, sig: sent.append((pid, sig)))
    failed, result = run(fake, {'unit': UNIT, 'kill_orphans': True, 'timeout': 0}, on_path,
                         check_mode=True)
    assert not failed and result['changed'] and result['killed'] == [21198] and sent == []
    assert not result['released'] and 'Check mode: would send SIGKILL to PIDs 21198' in result['msg']


def test_kill_orphans_permission_error(monkeypatch, run, tools, isolated):
    on_path = unit_setup(isolated, tools)
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_LOAD, '')], show=[(0, SHOW_INACTIVE, '')])

    def denied(pid, sig):
        raise OSError(errno.EPERM, 'Operation not permitted')

    monkeypatch.setattr(_procs.os, 'kill', denied)
    failed, result = run(fake, {'unit': UNIT, 'kill_orphans': True, 'timeout': 0}, on_path)
    assert failed and 'Could not SIGKILL PID 21198' in result['msg'] and 'become: true' in result['msg']
    assert result['killed'] == []


# --- other backends --------------------------------------------------------------------------------

def test_rocm_smi_backend_auto(run, tools, isolated):
    fake = FakeHost(rocm=[(0, ROCM_MI100X6, '')], rocm_pids=[(0, ROCM_PIDS, '')])
    failed, result = run(fake, {'timeout': 0, 'pids': [1168514]}, {'rocm-smi': tools['rocm-smi']})
    assert result['backend'] == 'rocm-smi'
    assert failed and len(result['gpus']) == 6 and result['state'] == 'held'
    assert result['holders'] == [{'pid': 1168514, 'name': 'pt_main_thread', 'used_mib': 169169, 'gpu_uuid': None,
                                  'gpu_index': None, 'unit': None}]
    assert 'an unidentified GPU' in result['msg']
    assert [c[1:] for c in fake.calls] == [
        ['--showmeminfo', 'vram', '--showproductname', '--showuniqueid', '--json'], ['--showpids']]


def test_nvml_backend(monkeypatch, run, isolated):
    mib = 1024 * 1024
    nvml = types.ModuleType('pynvml')

    class NVMLError(Exception):
        value = 0

    nvml.NVMLError = NVMLError
    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetUUID = lambda h: 'GPU-nvml'
    nvml.nvmlDeviceGetName = lambda h: 'NVIDIA H200'
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=500 * mib, total=143771 * mib)
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda h: []
    nvml.nvmlSystemGetProcessName = lambda pid: 'x'
    monkeypatch.setattr(_gpu, 'import_pynvml', lambda: nvml)
    failed, result = run(FakeHost(), {'max_memory_used_mib': 1024})
    assert not failed and result['backend'] == 'nvml' and result['released']
    assert result['gpus'][0]['memory_used_mib'] == 500


@pytest.mark.skipif(not HAS_PROC, reason='needs Linux /proc')
def test_proc_backend_finds_a_real_process(monkeypatch, run, tmp_path):
    """The /proc scan on this machine's real /proc, with the device pattern pointed at a temp file."""
    dev = tmp_path / 'dev'
    dev.mkdir()
    (dev / 'nvidia0').write_text('')
    held = tmp_path / 'nvidia0-held'
    held.write_text('')
    monkeypatch.setattr(_gpu, 'DEV_ROOT', str(dev))
    monkeypatch.setattr(_gpu, 'DEVICE_PATTERN', '^%s$' % re.escape(str(held)))
    monkeypatch.setattr(_gpu, 'import_pynvml', lambda: None)
    script = 'import sys; f = open(sys.argv[1]); print("ready", flush=True); sys.stdin.read()'
    proc = subprocess.Popen([sys.executable, '-c', script, str(held)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            universal_newlines=True)
    try:
        assert proc.stdout.readline().strip() == 'ready'
        failed, result = run(FakeHost(), {'pids': [proc.pid], 'timeout': 0})
        assert failed and result['backend'] == 'proc'
        assert [h['pid'] for h in result['holders']] == [proc.pid]
        assert result['gpus'] == [{'index': 0, 'uuid': None, 'name': '/dev/nvidia0', 'memory_used_mib': None,
                                   'memory_total_mib': None, 'holders': []}]
        assert 'PID %d' % proc.pid in result['msg']
    finally:
        proc.kill()
        proc.wait()
    failed, result = run(FakeHost(), {'pids': [proc.pid], 'timeout': 0})
    assert not failed and result['released']


def test_proc_backend_unreadable_processes_fail(monkeypatch, run, isolated):
    (isolated.dev / 'nvidia0').write_text('')
    add_proc(isolated.proc, 4321)
    (isolated.proc / '4321' / 'fd').mkdir()
    real_listdir = os.listdir

    def listdir(path):
        if path.endswith(os.path.join('4321', 'fd')):
            raise OSError(errno.EACCES, 'Permission denied', path)
        return real_listdir(path)

    monkeypatch.setattr(_gpu.os, 'listdir', listdir)
    failed, result = run(FakeHost(), {'backend': 'proc', 'timeout': 0})
    assert failed and result['unreadable_pids'] == [4321] and 'become: true' in result['msg']


# --- bad input from the sweep: refused, never a traceback, unknown is never released ----------------

@pytest.mark.parametrize('args,words', [
    ({'timeout': 'nan'}, 'timeout must be a finite number of seconds, got nan'),
    ({'timeout': float('nan')}, 'timeout must be a finite number of seconds, got nan'),
    ({'timeout': 'inf'}, 'timeout must be a finite number of seconds, got inf'),
    ({'poll_interval': 'nan'}, 'poll_interval must be a finite number of seconds, got nan'),
    ({'poll_interval': -1}, 'poll_interval must be more than 0 seconds, got -1'),
    ({'nvidia_smi_path': '/usr/bin/nvidia-smi\x00'}, "nvidia_smi_path must be a path without NUL bytes, got '/usr/bin/nvidia-smi\\x00'"),
    ({'amd_smi_path': '/opt/rocm/bin/amd-smi\x00'}, 'amd_smi_path must be a path without NUL bytes'),
    ({'unit': 'model\x00server'}, "unit 'model\\x00server' contains a NUL byte, which no systemd unit name contains"),
    ({'unit': '../../x.service'}, "unit '../../x.service' contains '/'"),
])
def test_bad_options_are_refused_before_anything_runs(run, tools, isolated, args, words):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')])
    failed, result = run(fake, args, dict(nvsmi(tools), systemctl=SYSTEMCTL))
    assert failed and result['msg'].startswith(words) and fake.calls == []
    assert result['state'] == 'unknown' and not result['released']


def test_unit_starting_with_dash_reaches_systemctl_after_double_dash(run, tools, isolated):
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, APPS_IDLE, '')], show=[(0, SHOW_INACTIVE, '')])
    failed, result = run(fake, {'unit': '--now'}, dict(nvsmi(tools), systemctl=SYSTEMCTL))
    assert not failed and result['released'] and result['state'] == 'released'
    assert fake.calls[0][:2] == [SYSTEMCTL, 'show'] and fake.calls[0][-2:] == ['--', '--now.service']


def test_nvidia_smi_answer_with_other_columns_is_unknown(run, tools, isolated):
    # The real all-fields query-gpu capture given as the answer to the compute-apps query: none of its fields.
    fake = FakeHost(gpus=[(0, GPU_H100, '')], apps=[(0, GPU_H100, '')])
    failed, result = run(fake, {}, nvsmi(tools))
    assert failed and not result['released'] and result['state'] == 'unknown' and result['error_kind'] == 'unparseable'
    assert 'the queried field(s) pid, process_name, used_gpu_memory, gpu_uuid are not in it' in result['msg']


def test_rocm_smi_json_without_processes_and_no_pid_table_is_unknown(run, tools, isolated):
    fake = FakeHost(rocm=[(0, ROCM_MI100X4, '')], rocm_pids=[(0, '', '')])
    failed, result = run(fake, {'backend': 'rocm-smi'}, {'rocm-smi': tools['rocm-smi']})
    assert failed and not result['released'] and result['state'] == 'unknown' and result['error_kind'] == 'unparseable'
    assert "neither a KFD process table nor 'No KFD PIDs currently running'" in result['msg']


def test_rocm_smi_idle_needs_its_explicit_message(run, tools, isolated):
    fake = FakeHost(rocm=[(0, ROCM_MI100X4, '')], rocm_pids=[(0, ROCM_NO_PIDS, '')])
    failed, result = run(fake, {'backend': 'rocm-smi'}, {'rocm-smi': tools['rocm-smi']})
    assert not failed and result['released'] and result['state'] == 'released' and len(result['gpus']) == 4


# amd-smi: real captures (tests/unit/fixtures/SOURCES.md); the idle answer is built from amd-smi's source.
AMD_PROCESS = read_fixture('amd-smi_process_json_r9700x4_amdsmi26.2.1_rocm7.2_vllm.json')
AMD_METRIC = read_fixture('amd-smi_metric_json_r9700_amdsmi26.2.1_rocm7.2_vllm.json')
AMD_IDLE = '[{"gpu": 0, "process_list": [{"process_info": "No running processes detected"}]}]\n'


def amd_on_path(tools):
    return {'amd-smi': tools['amd-smi']}


def test_amd_smi_backend_auto_names_the_holders(run, tools, isolated, monkeypatch):
    monkeypatch.setattr(_gpu.os, 'geteuid', lambda: 0)
    fake = FakeHost(amd_metric=[(0, AMD_METRIC, '')], amd_process=[(0, AMD_PROCESS, '')])
    failed, result = run(fake, {'timeout': 0, 'gpus': ['0']}, dict(amd_on_path(tools), **{'rocm-smi': tools['rocm-smi']}))
    assert failed and result['backend'] == 'amd-smi' and result['state'] == 'held'
    assert [c[1:] for c in fake.calls] == [['metric', '--mem-usage', '--json'], ['process', '--json']]
    assert sorted(h['pid'] for h in result['holders']) == [1882331, 1883200, 1883505, 1883506, 1883507, 1883508]
    assert all(h['gpu_index'] == 0 for h in result['holders'])
    assert 'PID 1883505 (/usr/bin/python3.12) holds 28066 MiB on GPU 0' in result['msg']
    assert result['gpus'][0]['memory_used_mib'] == 28123 and result['gpus'][0]['name'] == '0000:03:00.0'


def test_amd_smi_path_option_and_idle_as_root(run, tools, isolated, monkeypatch):
    monkeypatch.setattr(_gpu.os, 'geteuid', lambda: 0)
    fake = FakeHost(amd_metric=[(0, AMD_METRIC, '')], amd_process=[(0, AMD_IDLE, '')])
    failed, result = run(fake, {'amd_smi_path': tools['amd-smi']})
    assert not failed and result['backend'] == 'amd-smi' and result['released'] and result['state'] == 'released'
    assert fake.calls[0][0] == tools['amd-smi']


def test_amd_smi_idle_as_another_user_is_unknown(run, tools, isolated, monkeypatch):
    monkeypatch.setattr(_gpu.os, 'geteuid', lambda: 1000)
    fake = FakeHost(amd_metric=[(0, AMD_METRIC, '')], amd_process=[(0, AMD_IDLE, '')])
    failed, result = run(fake, {'backend': 'amd-smi'}, amd_on_path(tools))
    assert failed and not result['released'] and result['state'] == 'unknown' and result['error_kind'] == 'permission'
    assert 'become: true' in result['msg']


def test_amd_smi_missing_and_unreadable(run, tools, isolated, monkeypatch):
    monkeypatch.setattr(_gpu.os, 'geteuid', lambda: 0)
    failed, result = run(FakeHost(), {'backend': 'amd-smi'})
    assert failed and result['error_kind'] == 'tool_missing' and 'amd_smi_path' in result['msg']
    fake = FakeHost(amd_metric=[(0, AMD_METRIC, '')], amd_process=[(0, '[{"gpu": 0, "process_list": [{"process_info": '
                                                                   '"Permission denied"}]}]', '')])
    failed, result = run(fake, {'backend': 'amd-smi'}, amd_on_path(tools))
    assert failed and result['state'] == 'unknown' and result['error_kind'] == 'unparseable'


@pytest.mark.skipif(not HAS_PROC, reason='needs Linux /proc')
@pytest.mark.parametrize('script', ['exec sleep 60', "trap '' TERM; exec sleep 60"])
def test_hung_nvidia_smi_without_coreutils_timeout_is_stopped(monkeypatch, run_module, tmp_path, isolated, script):
    """The real AnsibleModule.run_command runs a hanging stand-in; no timeout(1) is found, so the module's own
    watchdog stops it (SIGTERM, then SIGKILL for one that ignores SIGTERM)."""
    hang = tmp_path / 'nvidia-smi'
    hang.write_text('#!/bin/sh\n%s\n' % script)
    hang.chmod(0o755)
    monkeypatch.setattr(_gpu_check.GpuReleaseChecker, 'tool_timeout', 0.5)
    monkeypatch.setattr(_gpu_check, 'TOOL_KILL_AFTER', 0.5)
    start = time.monotonic()
    result = run_module(gpu_release_check, {'timeout': 30}, bin_paths={'nvidia-smi': str(hang)})
    assert time.monotonic() - start < 15
    assert result['failed'] and result['error_kind'] == 'tool_timeout' and result['state'] == 'unknown'
    assert 'did not finish within 0.5s and was stopped' in result['msg']
