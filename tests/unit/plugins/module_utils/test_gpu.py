# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import types

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _gpu
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import CommandReplay, add_proc, read_fixture

HAS_PROC = os.path.isdir('/proc/self/fd')
ZERO_UUID = 'GPU-00000000-0000-0000-0000-000000000000'


APPS_H100_MIG = read_fixture('nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_load.csv')
APPS_H100_IDLE = read_fixture('nvidia-smi_query-compute-apps_csv_h100-mig_drv590.48.01_idle_empty.csv')
APPS_H200_MIG = read_fixture('nvidia-smi_query-compute-apps_csv_h200-mig_drv590.48.01_load.csv')
APPS_H200 = read_fixture('nvidia-smi_query-compute-apps_csv_h200_drv590.48.01_load.csv')
APPS_L40S = read_fixture('nvidia-smi_query-compute-apps_csv_l40s_drv595.80_load.csv')
APPS_WIN = read_fixture('nvidia-smi_query-compute-apps_csv_windows-rtx2080super_drv591.86_load_NA.csv')
GPU_H100 = read_fixture('nvidia-smi_query-gpu_allfields_csv_h100-mig_drv590.48.01_idle.csv')
GPU_WIN = read_fixture('nvidia-smi_query-gpu_allfields_csv_windows-rtx2080super_drv591.86_load.csv')
GPU_465 = read_fixture('nvidia-smi_query-gpu_manyfields_csv_rtx2080super_linux_drv465.27.csv')
GPU_466 = read_fixture('nvidia-smi_query-gpu_manyfields_csv_rtx2080super_win10_drv466.63.csv')
LIST_H100 = read_fixture('nvidia-smi_L_h100-mig_drv590.48.01.txt')
LIST_H200 = read_fixture('nvidia-smi_L_h200-mig_drv590.48.01.txt')
ROCM_MI100X4 = read_fixture('rocm-smi_json_allinfo_mi100x4_rocm6.0.2.json')
ROCM_MI100X6 = read_fixture('rocm-smi_json_allinfo_mi100x6_rocm5.7.1_with_pid.json')
ROCM_RX6700 = read_fixture('rocm-smi_json_allinfo_rx6700xt_rocm6.1.2.json')
ROCM_RX7900 = read_fixture('rocm-smi_json_showproductname_showuse_showmeminfo_vram_rx7900xt_marimo-issue9237.json')
ROCM_PIDS = read_fixture('rocm-smi_showpids_8procs_ROC-smi-issue60.txt')

# The real nvidia-smi message printed (on stdout) with return code 9.
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.\n")


def noheader(text, columns):
    """The C(noheader,nounits) form of a real header-bearing capture, built column by column.

    nvidia-smi prints the same values; only the header line and the ' MiB' units go.
    """
    lines = text.splitlines()
    header = [_gpu._normalize_header(f) for f in lines[0].split(',')]
    out = []
    for line in lines[1:]:
        fields = [f.strip() for f in line.split(',')]
        out.append(', '.join(fields[header.index(c)].replace(' MiB', '') for c in columns))
    return '\n'.join(out) + ('\n' if out else '')


# --- nvidia-smi --query-compute-apps ---------------------------------------------------------------

@pytest.mark.parametrize('text,expected', [
    (APPS_H100_MIG, [(21180, '/root/tools/memhog', 2296), (21181, '/root/tools/memhog', 1272), (21198, './gpu_burn', 7484)]),
    (APPS_H200_MIG, [(12249, '/root/tools/memhog', 2194), (12250, '/root/tools/memhog', 1170), (12267, './gpu_burn', 13526)]),
    (APPS_H200, [(10291, '/root/tools/memhog', 2566), (10293, '/root/tools/memhog', 1542), (10309, './gpu_burn', 28234)]),
    (APPS_L40S, [(20037, 'ffmpeg', 538), (20038, 'ffmpeg', 681)]),
])
def test_apps_header_captures(text, expected):
    holders = _gpu.parse_nvidia_smi_apps(text)
    assert [(h['pid'], h['name'], h['used_mib']) for h in holders] == expected
    assert all(h['gpu_uuid'] == ZERO_UUID and h['gpu_index'] is None for h in holders)


@pytest.mark.parametrize('text', [APPS_H100_MIG, APPS_H200, APPS_L40S, APPS_WIN])
def test_apps_noheader_nounits_form_reads_the_same(text):
    converted = noheader(text, _gpu.NVIDIA_SMI_APP_FIELDS)
    assert _gpu.parse_nvidia_smi_apps(converted) == _gpu.parse_nvidia_smi_apps(text)


def test_apps_windows_na_memory_and_paths_with_spaces():
    holders = _gpu.parse_nvidia_smi_apps(APPS_WIN)
    assert len(holders) == APPS_WIN.count('\n') - 1
    assert all(h['used_mib'] is None for h in holders)
    names = [h['name'] for h in holders]
    assert 'C:\\Program Files\\NZXT CAM\\NZXT CAM.exe' in names
    assert 'C:\\Program Files\\NVIDIA Corporation\\NVIDIA GeForce Experience\\NVIDIA Share.exe' in names
    assert holders[2]['pid'] == 2056


def test_apps_idle_header_only_and_empty_output():
    assert _gpu.parse_nvidia_smi_apps(APPS_H100_IDLE) == []
    assert _gpu.parse_nvidia_smi_apps('') == []
    assert _gpu.parse_nvidia_smi_apps('\n\n') == []


def test_apps_not_supported_memory_and_comma_in_name():
    """Built from the header of the module's own query (C(--format=csv,nounits)); the values are made up."""
    text = ('pid, process_name, used_gpu_memory [MiB], gpu_uuid\n'
            '4242, python3 -c import torch, time, [Not Supported], GPU-1\n'
            '4243, /opt/my,odd,app, 17, GPU-2\n')
    holders = _gpu.parse_nvidia_smi_apps(text)
    assert holders[0] == {'pid': 4242, 'name': 'python3 -c import torch, time', 'used_mib': None,
                          'gpu_uuid': 'GPU-1', 'gpu_index': None}
    assert holders[1]['name'] == '/opt/my,odd,app' and holders[1]['used_mib'] == 17


@pytest.mark.parametrize('text,match', [
    ('Failed to initialize NVML: Driver/library version mismatch\n', 'where the CSV header of the query'),
    ('abc, python, 12, GPU-1\n', 'where the CSV header of the query'),
    ('12, python, lots, GPU-1\n', 'used_gpu_memory'),
    ('pid, process_name\n1, x\n', 'used_gpu_memory, gpu_uuid are not in it'),
    ('12, python\n', 'line with 2 fields where the query has 4'),
    # Without a header, a comma in a process name cannot be told from another column: unknown, not guessed.
    ('4243, /opt/my,odd,app, 17, GPU-2\n', 'line with 6 fields where the query has 4'),
])
def test_apps_malformed(text, match):
    with pytest.raises(_gpu.GpuError, match=match) as exc:
        _gpu.parse_nvidia_smi_apps(text)
    assert exc.value.kind == 'unparseable'


# --- nvidia-smi --query-gpu ------------------------------------------------------------------------

@pytest.mark.parametrize('text,expected', [
    (GPU_H100, (0, ZERO_UUID, 'NVIDIA H100 80GB HBM3', 59, 81559)),
    (GPU_WIN, (0, ZERO_UUID, 'NVIDIA GeForce RTX 2080 SUPER', 1296, 8192)),
    (GPU_465, (0, 'GPU-df6e7a7c-7314-46f8-abc4-b88b36dcf3aa', 'NVIDIA GeForce RTX 2080 SUPER', 344, 7979)),
    (GPU_466, (0, 'GPU-df6e7a7c-7314-46f8-abc4-b88b36dcf3aa', 'NVIDIA GeForce RTX 2080 SUPER', 856, 8192)),
])
def test_gpus_from_real_many_field_captures(text, expected):
    gpus = _gpu.parse_nvidia_smi_gpus(text)
    assert [(g['index'], g['uuid'], g['name'], g['memory_used_mib'], g['memory_total_mib']) for g in gpus] == [expected]


@pytest.mark.parametrize('text', [GPU_H100, GPU_WIN, GPU_465])
def test_gpus_noheader_nounits_form_reads_the_same(text):
    assert _gpu.parse_nvidia_smi_gpus(noheader(text, _gpu.NVIDIA_SMI_GPU_FIELDS)) == _gpu.parse_nvidia_smi_gpus(text)


def test_gpus_multi_gpu_and_na_memory():
    text = ('0, GPU-aaaa, NVIDIA H100 80GB HBM3, 70123, 81559\n'
            '1, GPU-bbbb, NVIDIA H100 80GB HBM3, [N/A], [N/A]\n'
            '2, GPU-cccc, NVIDIA H100 80GB HBM3, [Not Supported], 81559\n')
    gpus = _gpu.parse_nvidia_smi_gpus(text)
    assert [g['index'] for g in gpus] == [0, 1, 2]
    assert gpus[1]['memory_used_mib'] is None and gpus[1]['memory_total_mib'] is None
    assert gpus[2]['memory_used_mib'] is None and gpus[2]['memory_total_mib'] == 81559


@pytest.mark.parametrize('text', ['[N/A], GPU-1, x, 1, 2\n', 'zero, GPU-1, x, 1, 2\n', '0, GPU-1\n'])
def test_gpus_malformed(text):
    with pytest.raises(_gpu.GpuError):
        _gpu.parse_nvidia_smi_gpus(text)


def test_na_variants_from_captures():
    # the allfields captures hold [N/A], a bare N/A and "[Requested functionality has been deprecated]"
    assert '[Requested functionality has been deprecated]' in GPU_H100
    for value in ('[N/A]', 'N/A', '[Not Supported]', '[Requested functionality has been deprecated]', '[Unknown Error]', ''):
        assert _gpu._na_to_none(value) is None
    assert _gpu._na_to_none(' 59 MiB ') == '59 MiB'


# --- nvidia-smi -L and MIG -------------------------------------------------------------------------

def test_list_gpus_with_mig_devices():
    gpus = _gpu.parse_nvidia_smi_list(LIST_H100)
    assert len(gpus) == 1
    assert gpus[0]['index'] == 0 and gpus[0]['name'] == 'NVIDIA H100 80GB HBM3' and gpus[0]['uuid'] == ZERO_UUID
    assert [(m['profile'], m['device']) for m in gpus[0]['mig']] == [('3g.40gb', 0), ('2g.20gb', 1), ('1g.10gb', 2), ('1g.10gb', 3)]
    assert gpus[0]['mig'][1]['uuid'] == 'MIG-00000001-0000-0000-0000-000000000001'
    h200 = _gpu.parse_nvidia_smi_list(LIST_H200)
    assert [m['profile'] for m in h200[0]['mig']] == ['1c.3g.71gb', '2c.3g.71gb', '2g.35gb', '1g.18gb', '1g.18gb']
    assert _gpu.parse_nvidia_smi_list('') == []


def test_attach_gpu_index_parent_and_mig_uuid():
    gpus = _gpu.parse_nvidia_smi_gpus(GPU_H100)
    holders = _gpu.parse_nvidia_smi_apps(APPS_H100_MIG)
    holders.append({'pid': 1, 'name': 'x', 'used_mib': 1, 'gpu_uuid': 'MIG-00000002-0000-0000-0000-000000000002', 'gpu_index': None})
    holders.append({'pid': 2, 'name': 'y', 'used_mib': 1, 'gpu_uuid': 'GPU-unknown', 'gpu_index': None})
    mig_map = dict((m['uuid'], g['index']) for g in _gpu.parse_nvidia_smi_list(LIST_H100) for m in g['mig'])
    _gpu.attach_gpu_index(gpus, holders, mig_map)
    assert [h['gpu_index'] for h in holders] == [0, 0, 0, 0, None]


# --- nvidia-smi errors and the query ---------------------------------------------------------------

@pytest.mark.parametrize('rc,out,kind,words', [
    (9, NO_DRIVER, 'driver_not_loaded', ['rc 9', 'NVIDIA driver is not loaded', "couldn't communicate", 'modprobe nvidia']),
    (12, 'NVML Shared Library Not Found\n', 'library_not_found', ['rc 12', 'libnvidia-ml.so', 'backend: proc']),
    (15, 'Unable to determine the device handle for GPU0000:17:00.0: GPU is lost.\n', 'gpu_lost',
     ['rc 15', 'fallen off the bus', 'Xid 79', 'GPU is lost']),
    (4, 'Insufficient Permissions\n', 'permission', ['rc 4', 'become: true']),
    (255, '', 'internal_error', ['rc 255']),
    (77, 'weird\n', 'tool_failed', ['rc 77', 'weird']),
])
def test_nvidia_smi_error(rc, out, kind, words):
    err = _gpu.nvidia_smi_error(rc, out, '', '/usr/bin/nvidia-smi')
    assert err.kind == kind and err.rc == rc
    for word in words:
        assert word in str(err)
    assert str(err).startswith('/usr/bin/nvidia-smi exited with rc %s' % rc)


@pytest.fixture
def fake_smi(tmp_path):
    path = tmp_path / 'nvidia-smi'
    path.write_text('#!/bin/sh\nexit 0\n')
    path.chmod(0o755)
    return str(path)


def test_query_nvidia_smi_success(fake_smi):
    run = CommandReplay({'--query-gpu': (0, GPU_H100, ''), '--query-compute-apps': (0, APPS_H100_MIG, '')})
    snap = _gpu.query_nvidia_smi(run, fake_smi)
    assert [g['index'] for g in snap['gpus']] == [0]
    assert [(h['pid'], h['gpu_index']) for h in snap['holders']] == [(21180, 0), (21181, 0), (21198, 0)]
    assert run.calls[0] == [fake_smi, '--query-gpu=index,uuid,name,memory.used,memory.total', '--format=csv,nounits']
    assert run.calls[1] == [fake_smi, '--query-compute-apps=pid,process_name,used_gpu_memory,gpu_uuid',
                            '--format=csv,nounits']
    assert len(run.calls) == 2


def test_query_nvidia_smi_maps_mig_uuid_with_list(fake_smi):
    apps = '21180, /root/tools/memhog, 2296, MIG-00000001-0000-0000-0000-000000000001\n'
    run = CommandReplay({'--query-gpu': (0, GPU_H100, ''), '--query-compute-apps': (0, apps, ''), '-L': (0, LIST_H100, '')})
    snap = _gpu.query_nvidia_smi(run, fake_smi)
    assert snap['holders'][0]['gpu_index'] == 0
    assert run.calls[-1] == [fake_smi, '-L']


def test_query_nvidia_smi_no_devices_is_not_an_error(fake_smi):
    run = CommandReplay({'--query-gpu': (6, 'No devices were found\n', '')})
    snap = _gpu.query_nvidia_smi(run, fake_smi)
    assert snap['gpus'] == [] and snap['holders'] == [] and 'no NVIDIA GPU' in snap['message']


def test_query_nvidia_smi_no_running_processes_text(fake_smi):
    run = CommandReplay({'--query-gpu': (0, GPU_H100, ''), '--query-compute-apps': (0, 'No running processes found\n', '')})
    assert _gpu.query_nvidia_smi(run, fake_smi)['holders'] == []


@pytest.mark.parametrize('rc,out,kind', [(9, NO_DRIVER, 'driver_not_loaded'), (12, '', 'library_not_found'), (15, '', 'gpu_lost')])
def test_query_nvidia_smi_failures(fake_smi, rc, out, kind):
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_nvidia_smi(CommandReplay({'--query-gpu': (rc, out, '')}), fake_smi)
    assert exc.value.kind == kind


def test_query_nvidia_smi_apps_failure_after_gpus(fake_smi):
    run = CommandReplay({'--query-gpu': (0, GPU_H100, ''), '--query-compute-apps': (15, 'GPU is lost\n', '')})
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_nvidia_smi(run, fake_smi)
    assert exc.value.kind == 'gpu_lost'


def test_query_nvidia_smi_not_executable(tmp_path):
    path = tmp_path / 'nvidia-smi'
    path.write_text('')
    path.chmod(0o644)
    if os.access(str(path), os.X_OK):
        pytest.skip('root can execute anything here')
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_nvidia_smi(CommandReplay({}), str(path))
    assert exc.value.kind == 'permission'


# --- NVML ------------------------------------------------------------------------------------------

def fake_pynvml(devices, init_error=None, process_error=None):
    """A stand-in for the pynvml module: C(devices) is a list of (uuid, name, used, total, [(pid, bytes)])."""
    mod = types.ModuleType('pynvml')

    class NVMLError(Exception):
        def __init__(self, value):
            super(NVMLError, self).__init__('NVML error %s' % value)
            self.value = value

    mod.NVMLError = NVMLError
    mod.NVML_VALUE_NOT_AVAILABLE = 2 ** 64 - 1
    state = {'init': 0, 'shutdown': 0}
    mod.state = state

    def init():
        state['init'] += 1
        if init_error:
            raise NVMLError(init_error)

    def shutdown():
        state['shutdown'] += 1

    mod.nvmlInit = init
    mod.nvmlShutdown = shutdown
    mod.nvmlDeviceGetCount = lambda: len(devices)
    mod.nvmlDeviceGetHandleByIndex = lambda i: devices[i]
    mod.nvmlDeviceGetUUID = lambda h: h[0].encode()  # old bindings return bytes
    mod.nvmlDeviceGetName = lambda h: h[1]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=h[2], total=h[3], free=h[3] - h[2])

    def procs(h):
        if process_error:
            raise NVMLError(process_error)
        return [types.SimpleNamespace(pid=p, usedGpuMemory=b) for p, b in h[4]]

    mod.nvmlDeviceGetComputeRunningProcesses = procs
    mod.nvmlSystemGetProcessName = lambda pid: b'from-nvml'
    return mod


def test_query_nvml(tmp_path):
    mib = 1024 * 1024
    nvml = fake_pynvml([
        ('GPU-a', 'NVIDIA H200', 30000 * mib, 143771 * mib, [(777777, 28234 * mib), (777778, None)]),
        ('GPU-b', 'NVIDIA H200', 0, 143771 * mib, [(777779, 2 ** 64 - 1)]),
    ])
    snap = _gpu.query_nvml(nvml, proc_root=str(tmp_path))
    assert snap['gpus'] == [
        {'index': 0, 'uuid': 'GPU-a', 'name': 'NVIDIA H200', 'memory_used_mib': 30000, 'memory_total_mib': 143771},
        {'index': 1, 'uuid': 'GPU-b', 'name': 'NVIDIA H200', 'memory_used_mib': 0, 'memory_total_mib': 143771},
    ]
    assert [(h['pid'], h['used_mib'], h['gpu_index'], h['name']) for h in snap['holders']] == [
        (777777, 28234, 0, 'from-nvml'), (777778, None, 0, 'from-nvml'), (777779, None, 1, 'from-nvml')]
    assert nvml.state == {'init': 1, 'shutdown': 1}


@pytest.mark.parametrize('code,kind', [(9, 'driver_not_loaded'), (12, 'library_not_found'), (15, 'gpu_lost'), (4, 'permission')])
def test_query_nvml_errors(code, kind):
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_nvml(fake_pynvml([], init_error=code))
    assert exc.value.kind == kind and 'NVML error %s' % code in str(exc.value)
    nvml = fake_pynvml([('GPU-a', 'x', 0, 1, [])], process_error=15)
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_nvml(nvml)
    assert exc.value.kind == 'gpu_lost' and nvml.state['shutdown'] == 1


def test_query_nvml_without_pynvml():
    with pytest.raises(_gpu.GpuError, match='nvidia-ml-py') as exc:
        _gpu.query_nvml(None)
    assert exc.value.kind == 'tool_missing'


def test_nvml_usable():
    assert _gpu.nvml_usable(fake_pynvml([]))
    assert not _gpu.nvml_usable(fake_pynvml([], init_error=12))
    assert not _gpu.nvml_usable(None)


# --- rocm-smi --------------------------------------------------------------------------------------

def test_rocm_json_mi100x4():
    gpus, holders = _gpu.parse_rocm_smi_json(ROCM_MI100X4)
    assert [g['index'] for g in gpus] == [0, 1, 2, 3]
    assert gpus[0] == {'index': 0, 'uuid': '0x79ccd55167a2124a', 'name': 'Arcturus GL-XL [Instinct MI100]',
                       'memory_used_mib': 6, 'memory_total_mib': 32752}
    # Captured with --showpids but no PID entry: rocm-smi's JSON cannot say "no process", so unknown (None) when strict.
    assert holders == [] and _gpu.parse_rocm_smi_json(ROCM_MI100X4, strict=True)[1] is None


def test_rocm_json_with_pid_and_na_unique_id():
    gpus, holders = _gpu.parse_rocm_smi_json(ROCM_MI100X6)
    assert len(gpus) == 6 and all(g['uuid'] is None for g in gpus)
    assert holders == [{'pid': 104225, 'name': 'mlir-cpu-runner', 'used_mib': 0, 'gpu_uuid': None, 'gpu_index': None}]


def test_rocm_json_consumer_cards():
    gpus, dummy = _gpu.parse_rocm_smi_json(ROCM_RX6700)
    assert gpus == [{'index': 0, 'uuid': None, 'name': 'Navi 22 [Radeon RX 6700/6700 XT / 6800M]',
                     'memory_used_mib': 1500, 'memory_total_mib': 12272}]
    gpus, dummy = _gpu.parse_rocm_smi_json(ROCM_RX7900)
    assert gpus[0]['name'] == 'Radeon RX 7900 XT' and gpus[0]['memory_used_mib'] == 27


def test_rocm_json_with_leading_warning_and_card_order():
    text = 'WARNING: AMD GPU device(s) is/are in a low-power state.\n' + ROCM_MI100X6
    gpus, dummy = _gpu.parse_rocm_smi_json(text)
    assert [g['index'] for g in gpus] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize('text', ['', 'ERROR: no JSON here', '{"card0": ', '[1, 2]'])
def test_rocm_json_malformed(text):
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.parse_rocm_smi_json(text)
    assert exc.value.kind == 'unparseable'


def test_rocm_showpids_text():
    holders = _gpu.parse_rocm_smi_showpids(ROCM_PIDS)
    assert len(holders) == 8
    assert holders[2] == {'pid': 1168514, 'name': 'pt_main_thread', 'used_mib': 169169, 'gpu_uuid': None, 'gpu_index': None}
    assert holders[0]['name'] == 'test_ref' and holders[0]['used_mib'] == 0
    with pytest.raises(_gpu.GpuError):
        _gpu.parse_rocm_smi_showpids('PID PROCESS NAME GPU(s)\nxx yy\n')


def test_query_rocm_smi():
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, ROCM_PIDS if argv[1:] == ['--showpids'] else ROCM_MI100X6, ''

    snap = _gpu.query_rocm_smi(run, '/opt/rocm/bin/rocm-smi')
    assert calls == [['/opt/rocm/bin/rocm-smi', '--showmeminfo', 'vram', '--showproductname', '--showuniqueid', '--json'],
                     ['/opt/rocm/bin/rocm-smi', '--showpids']]
    assert len(snap['gpus']) == 6
    # The processes come from the --showpids table, not from the JSON.
    assert [h['pid'] for h in snap['holders']] == [h['pid'] for h in _gpu.parse_rocm_smi_showpids(ROCM_PIDS)]


def test_query_rocm_smi_errors():
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_rocm_smi(lambda argv: (0, '', 'ERROR:root:Driver not initialized (amdgpu not found in modules)\n'), 'rocm-smi')
    assert exc.value.kind == 'driver_not_loaded'
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_rocm_smi(lambda argv: (1, '', 'Permission denied\n'), 'rocm-smi')
    assert exc.value.kind == 'permission' and 'become: true' in str(exc.value)


# --- /proc scan ------------------------------------------------------------------------------------

def fake_proc_with_fds(tmp_path, procs):
    """C(procs): pid -> (comm, [fd link targets])."""
    root = tmp_path / 'proc'
    root.mkdir()
    for pid, (comm, targets) in procs.items():
        d = add_proc(root, pid, comm=comm, cmdline=(comm,))
        (d / 'fd').mkdir()
        for i, target in enumerate(targets):
            os.symlink(target, str(d / 'fd' / str(i)))
    return str(root)


def test_scan_fake_proc(tmp_path):
    root = fake_proc_with_fds(tmp_path, {
        10: ('python3', ['/dev/null', '/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia0', '/dev/nvidia1']),
        11: ('python3', ['/dev/nvidiactl', '/dev/nvidia-uvm']),
        12: ('nvidia-persistenced', ['/dev/nvidiactl', '/dev/nvidia0']),
        13: ('bash', ['/dev/pts/0', 'socket:[1234]']),
        14: ('rocm-app', ['/dev/kfd', '/dev/dri/renderD128']),
        15: ('python3', ['/dev/nvidia3']),
    })
    holders, denied = _gpu.scan_proc_fds(root, skip_pids=(15,))
    assert [(h['pid'], h['name'], h['gpu_index']) for h in holders] == [
        (10, 'python3', 0), (10, 'python3', 1), (11, 'python3', None), (14, 'rocm-app', None)]
    assert denied == []


def test_scan_reports_unreadable_processes(tmp_path, monkeypatch):
    root = fake_proc_with_fds(tmp_path, {20: ('python3', ['/dev/nvidia0']), 21: ('python3', ['/dev/nvidia0'])})
    real_listdir = os.listdir

    def listdir(path):
        if path.endswith(os.path.join('21', 'fd')):
            raise OSError(errno.EACCES, 'Permission denied', path)
        if path.endswith(os.path.join('22', 'fd')):
            raise OSError(errno.ENOENT, 'gone', path)
        return real_listdir(path)

    monkeypatch.setattr(_gpu.os, 'listdir', listdir)
    holders, denied = _gpu.scan_proc_fds(root)
    assert [h['pid'] for h in holders] == [20] and denied == [21]


def test_device_nodes(tmp_path):
    dev = tmp_path / 'dev'
    dev.mkdir()
    for name in ('nvidia0', 'nvidia1', 'nvidia10', 'nvidiactl', 'nvidia-uvm', 'null', 'kfd'):
        (dev / name).write_text('')
    gpus = _gpu.device_nodes(str(dev))
    assert [(g['index'], g['name']) for g in gpus] == [
        (0, '/dev/nvidia0'), (1, '/dev/nvidia1'), (10, '/dev/nvidia10'), (None, '/dev/kfd')]
    assert _gpu.device_nodes(str(tmp_path / 'nothing')) == []


def test_query_proc_without_devices_says_no_gpu(tmp_path):
    (tmp_path / 'dev').mkdir()
    root = fake_proc_with_fds(tmp_path, {13: ('bash', ['/dev/null'])})
    snap = _gpu.query_proc(root, str(tmp_path / 'dev'))
    assert snap['gpus'] == [] and snap['holders'] == [] and 'no GPU found' in snap['message']


@pytest.mark.skipif(not HAS_PROC, reason='needs Linux /proc')
def test_scan_real_proc_finds_a_subprocess_holding_a_device_like_file(tmp_path):
    """A real process keeps a file open; the scan, with the pattern pointed at it, finds it."""
    device = tmp_path / 'nvidia7'
    device.write_text('')
    script = 'import sys; f = open(sys.argv[1]); print("ready", flush=True); sys.stdin.read()'
    proc = subprocess.Popen([sys.executable, '-c', script, str(device)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            universal_newlines=True)
    try:
        assert proc.stdout.readline().strip() == 'ready'
        pattern = '^%s$' % re.escape(str(device))
        holders, denied = _gpu.scan_proc_fds('/proc', pattern)
        mine = [h for h in holders if h['pid'] == proc.pid]
        assert len(mine) == 1
        assert mine[0]['name'].startswith('python') and mine[0]['gpu_index'] is None
        assert proc.pid not in denied
        assert all(h['pid'] == proc.pid for h in holders)
    finally:
        proc.kill()
        proc.wait()
    holders, denied = _gpu.scan_proc_fds('/proc', '^%s$' % re.escape(str(device)))
    assert [h for h in holders if h['pid'] == proc.pid] == []


# --- backend choice, filter and evaluation ---------------------------------------------------------

def test_choose_backend():
    on_path = {'nvidia-smi': '/usr/bin/nvidia-smi', 'rocm-smi': '/opt/rocm/bin/rocm-smi'}
    assert _gpu.choose_backend('auto', on_path.get) == 'nvidia-smi'
    assert _gpu.choose_backend('auto', {}.get, fake_pynvml([])) == 'nvml'
    assert _gpu.choose_backend('auto', {}.get, fake_pynvml([], init_error=12)) == 'proc'
    assert _gpu.choose_backend('auto', {'rocm-smi': '/x'}.get) == 'rocm-smi'
    assert _gpu.choose_backend('auto', {}.get) == 'proc'
    assert _gpu.choose_backend('nvml', on_path.get) == 'nvml'


def snapshot(gpus_text=GPU_H100, apps_text=APPS_H100_MIG):
    gpus = _gpu.parse_nvidia_smi_gpus(gpus_text)
    holders = _gpu.attach_gpu_index(gpus, _gpu.parse_nvidia_smi_apps(apps_text))
    return {'gpus': gpus, 'holders': holders, 'denied': [], 'message': None}


def test_evaluate_without_filter_every_process_counts(tmp_path):
    result = _gpu.evaluate(snapshot(), _gpu.HolderFilter(proc_root=str(tmp_path)))
    assert not result['ok']
    assert [h['pid'] for h in result['holders']] == [21180, 21181, 21198]
    assert result['gpus'][0]['holders'][0] == {'pid': 21180, 'name': '/root/tools/memhog', 'used_mib': 2296,
                                               'unit': None, 'matched': True}
    idle = _gpu.evaluate(snapshot(apps_text=APPS_H100_IDLE), _gpu.HolderFilter(proc_root=str(tmp_path)))
    assert idle['ok'] and idle['holders'] == [] and idle['gpus'][0]['holders'] == []


def test_evaluate_filters_are_alternatives(tmp_path):
    flt = _gpu.HolderFilter(pids=[21198], name_regex=re.compile('nothing'), proc_root=str(tmp_path))
    result = _gpu.evaluate(snapshot(), flt)
    assert [h['pid'] for h in result['holders']] == [21198]
    assert [h['matched'] for h in result['gpus'][0]['holders']] == [False, False, True]
    flt = _gpu.HolderFilter(name_regex=re.compile('memhog'), proc_root=str(tmp_path))
    assert [h['pid'] for h in _gpu.evaluate(snapshot(), flt)['holders']] == [21180, 21181]
    flt = _gpu.HolderFilter(pids=[1], proc_root=str(tmp_path))
    assert _gpu.evaluate(snapshot(), flt)['ok']


def test_evaluate_unit_filter_uses_cgroup_and_exec_main_pid(tmp_path):
    root = tmp_path / 'proc'
    for pid, cg in ((21180, '0::/system.slice/model-server@a.service\n'), (21181, '0::/system.slice/other.service\n')):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / 'cgroup').write_text(cg)
    flt = _gpu.HolderFilter(unit='model-server@a.service', exec_main_pid=21198, proc_root=str(root))
    result = _gpu.evaluate(snapshot(), flt)
    assert [(h['pid'], h['unit']) for h in result['holders']] == [(21180, 'model-server@a.service'), (21198, None)]


def test_evaluate_name_regex_searches_proc_cmdline(tmp_path):
    root = tmp_path / 'proc'
    (root / '21181').mkdir(parents=True)
    (root / '21181' / 'comm').write_text('python3\n')
    (root / '21181' / 'cmdline').write_bytes(b'python3\0-m\0vllm.entrypoints.openai.api_server\0')
    flt = _gpu.HolderFilter(name_regex=re.compile(r'vllm\.entrypoints'), proc_root=str(root))
    assert [h['pid'] for h in _gpu.evaluate(snapshot(), flt)['holders']] == [21181]


def test_evaluate_gpu_selection_and_missing(tmp_path):
    two = ('0, GPU-aaaa, NVIDIA H200, 30000, 143771\n1, GPU-bbbb, NVIDIA H200, 20, 143771\n')
    apps = '500, python3, 29000, GPU-aaaa\n'
    flt = _gpu.HolderFilter(gpus=['1'], proc_root=str(tmp_path))
    result = _gpu.evaluate(snapshot(two, apps), flt, max_memory_used_mib=100)
    assert result['ok'] and [g['index'] for g in result['gpus']] == [1]
    flt = _gpu.HolderFilter(gpus=['gpu-AAAA'], proc_root=str(tmp_path))
    result = _gpu.evaluate(snapshot(two, apps), flt, max_memory_used_mib=100)
    assert not result['ok'] and [h['pid'] for h in result['holders']] == [500]
    assert [g['index'] for g in result['over_memory']] == [0]
    flt = _gpu.HolderFilter(gpus=['0', '7', 'GPU-zzzz'], proc_root=str(tmp_path))
    assert _gpu.evaluate(snapshot(two, apps), flt)['missing_gpus'] == ['7', 'GPU-zzzz']


def test_evaluate_memory_threshold_and_unknown_memory(tmp_path):
    flt = _gpu.HolderFilter(proc_root=str(tmp_path))
    idle = snapshot(apps_text=APPS_H100_IDLE)
    assert _gpu.evaluate(idle, flt, max_memory_used_mib=59)['ok']
    assert not _gpu.evaluate(idle, flt, max_memory_used_mib=58)['ok']
    assert _gpu.evaluate(snapshot(), flt, no_processes=False, max_memory_used_mib=100)['ok']
    unknown = snapshot('0, GPU-a, x, [N/A], [N/A]\n', '')
    result = _gpu.evaluate(unknown, flt, max_memory_used_mib=100)
    assert not result['ok'] and 'cannot be checked' in _gpu.describe_blockers(result, 100)


def test_evaluate_unreadable_processes_block_release(tmp_path):
    gpu0 = {'index': 0, 'uuid': None, 'name': '/dev/nvidia0', 'memory_used_mib': None, 'memory_total_mib': None}
    snap = {'gpus': [gpu0], 'holders': [], 'denied': [1, 2], 'message': None}
    result = _gpu.evaluate(snap, _gpu.HolderFilter(proc_root=str(tmp_path)))
    assert not result['ok'] and result['unreadable_pids'] == [1, 2]
    assert 'become: true' in _gpu.describe_blockers(result)
    result = _gpu.evaluate(snap, _gpu.HolderFilter(pids=[3], proc_root=str(tmp_path)))
    assert result['ok'] and result['unreadable_pids'] == []


def test_describe_blockers_names_pid_name_gpu_mib_and_advice(tmp_path):
    root = tmp_path / 'proc'
    (root / '21198').mkdir(parents=True)
    (root / '21198' / 'cgroup').write_text('0::/system.slice/model-server@a.service\n')
    flt = _gpu.HolderFilter(unit='model-server@a.service', pids=[21180], proc_root=str(root))
    result = _gpu.evaluate(snapshot(), flt)
    text = _gpu.describe_blockers(result, unit='model-server@a.service')
    assert 'PID 21198 (./gpu_burn, in unit model-server@a.service) holds 7484 MiB on GPU 0 (%s)' % ZERO_UUID in text
    assert 'PID 21180 (/root/tools/memhog) holds 2296 MiB on GPU 0' in text
    assert 'kill_orphans: true' in text
    assert 'What to do for PIDs 21180' in text
    win = snapshot(GPU_WIN, APPS_WIN)
    text = _gpu.describe_blockers(_gpu.evaluate(win, _gpu.HolderFilter(proc_root=str(tmp_path))), limit=3)
    assert 'an unknown amount of memory' in text and 'and %d more holders' % (len(win['holders']) - 3) in text


def test_query_nvml_with_an_incompatible_pynvml():
    nvml = fake_pynvml([('GPU-a', 'x', 0, 1, [])])
    del nvml.nvmlDeviceGetComputeRunningProcesses
    with pytest.raises(_gpu.GpuError, match='nvidia-ml-py') as exc:
        _gpu.query_nvml(nvml)
    assert exc.value.kind == 'tool_failed' and nvml.state['shutdown'] == 1


# --- nvidia-smi output that does not match the query (sweep item 6) --------------------------------

@pytest.mark.parametrize('text,parse,missing', [
    # A real query-compute-apps capture read as the answer to --query-gpu, and the other way round.
    (APPS_H100_MIG, _gpu.parse_nvidia_smi_gpus, 'index, uuid, name, memory.used, memory.total'),
    (GPU_465, _gpu.parse_nvidia_smi_apps, 'pid, process_name, used_gpu_memory, gpu_uuid'),
])
def test_header_without_the_queried_fields_is_unknown(text, parse, missing):
    with pytest.raises(_gpu.GpuError) as exc:
        parse(text)
    assert exc.value.kind == 'unparseable'
    assert 'was expected: the queried field(s) %s are not in it' % missing in str(exc.value)


@pytest.mark.parametrize('text', [APPS_H100_MIG, APPS_WIN, APPS_L40S])
def test_noheader_output_with_other_columns_is_refused_not_misread(text):
    # The capture's own 8 columns (pid first, then timestamp, gpu_name, ...) without a header: 8 fields where 4 were asked.
    header = [_gpu._normalize_header(f) for f in text.splitlines()[0].split(',')]
    other = noheader(text, ['pid'] + [c for c in header if c != 'pid'])
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.parse_nvidia_smi_apps(other)
    assert exc.value.kind == 'unparseable'
    assert 'fields where the query has 4 (pid,process_name,used_gpu_memory,gpu_uuid)' in str(exc.value)


def test_row_shorter_than_the_header_is_refused():
    lines = APPS_H100_MIG.splitlines()
    short = '\n'.join([lines[0], lines[1].rsplit(',', 1)[0]]) + '\n'  # a real row without its last field
    with pytest.raises(_gpu.GpuError, match='line with 7 fields where the header has 8') as exc:
        _gpu.parse_nvidia_smi_apps(short)
    assert exc.value.kind == 'unparseable'


def test_many_field_captures_with_na_are_read_by_name():
    # 212 (H100) and 115 (driver 465) columns, [N/A] and "[Requested functionality has been deprecated]" among them.
    assert len(GPU_H100.splitlines()[0].split(',')) > 200 and '[N/A]' in GPU_H100
    assert [g['memory_used_mib'] for g in _gpu.parse_nvidia_smi_gpus(GPU_H100)] == [59]
    assert [g['uuid'] for g in _gpu.parse_nvidia_smi_gpus(GPU_465)] == ['GPU-df6e7a7c-7314-46f8-abc4-b88b36dcf3aa']


def test_query_nvidia_smi_with_an_answer_that_has_other_columns_fails(fake_smi):
    run = CommandReplay({'--query-gpu': (0, GPU_H100, ''), '--query-compute-apps': (0, noheader(APPS_H200, [
        'pid', 'process_name', 'used_gpu_memory', 'gpu_uuid', 'gpu_bus_id']), '')})
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_nvidia_smi(run, fake_smi)
    assert exc.value.kind == 'unparseable' and 'line with 5 fields where the query has 4' in str(exc.value)


def test_query_nvidia_smi_path_with_nul_is_an_error_not_a_traceback():
    with pytest.raises(_gpu.GpuError, match='cannot be a path to nvidia-smi') as exc:
        _gpu.query_nvidia_smi(CommandReplay({}), '/usr/bin/nvidia-smi\x00x')
    assert exc.value.kind == 'tool_missing'


@pytest.mark.parametrize('value', ['inf', 'nan', '1e400'])
def test_non_finite_numbers_are_unreadable(value):
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.parse_nvidia_smi_gpus('0, GPU-1, x, %s, 2\n' % value)
    assert exc.value.kind == 'unparseable'


# --- rocm-smi JSON without process information is unknown (sweep item 7) ----------------------------

ROCM_PIDS_TABS = read_fixture('rocm-smi_showpids_1proc_tabs_mi300a_legacy-rocm-build-issue4411.txt')
ROCM_PIDS_UNKNOWN = read_fixture('rocm-smi_showpids_4procs_vram_unknown_rocm_smi_lib-issue166.txt')
# What rocm_smi.py's showPids() prints when no KFD process runs (a literal from its source, not a capture).
ROCM_NO_PIDS = 'No KFD PIDs currently running\n'


@pytest.mark.parametrize('text', [ROCM_MI100X4, ROCM_RX6700, ROCM_RX7900])
def test_rocm_json_without_pid_entries_gives_no_holder_list(text):
    gpus, holders = _gpu.parse_rocm_smi_json(text, strict=True)
    assert gpus and holders is None
    assert _gpu.parse_rocm_smi_json(text)[1] == []  # the lenient form: [] that does not mean "no process"


def rocm_host(json_text, pids_text, pids_rc=0):
    calls = []

    def run(argv):
        calls.append(argv[1:])
        return (pids_rc, pids_text, '') if argv[1:] == ['--showpids'] else (0, json_text, '')
    run.calls = calls
    return run


@pytest.mark.parametrize('pids_text', ['', ROCM_MI100X4, 'ERROR: something else\n'])
def test_rocm_smi_processes_unknown_is_an_error_never_released(pids_text):
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_rocm_smi(rocm_host(ROCM_MI100X4, pids_text), 'rocm-smi')
    assert exc.value.kind == 'unparseable' and 'which processes hold a GPU is unknown' in str(exc.value)


def test_rocm_smi_idle_only_from_the_explicit_message():
    snap = _gpu.query_rocm_smi(rocm_host(ROCM_MI100X4, ROCM_NO_PIDS), 'rocm-smi')
    assert len(snap['gpus']) == 4 and snap['holders'] == []


def test_rocm_showpids_captures_with_tabs_and_unknown_vram():
    assert _gpu.parse_rocm_smi_showpids(ROCM_PIDS_TABS) == [
        {'pid': 1684258, 'name': 'kfd_open', 'used_mib': 0, 'gpu_uuid': None, 'gpu_index': None}]
    holders = _gpu.parse_rocm_smi_showpids(ROCM_PIDS_UNKNOWN)
    assert [(h['pid'], h['name'], h['used_mib']) for h in holders] == [
        (55573, 'gmx_mpi', None), (55571, 'gmx_mpi', None), (55574, 'gmx_mpi', None), (55572, 'gmx_mpi', None)]


def test_rocm_json_nested_too_deeply_is_unparseable():
    with pytest.raises(_gpu.GpuError, match='nested too deeply') as exc:
        _gpu.parse_rocm_smi_json('[' * 100000 + ']' * 100000)
    assert exc.value.kind == 'unparseable'


# --- amd-smi (sweep item 8) -----------------------------------------------------------------------

AMD_PROCESS = read_fixture('amd-smi_process_json_r9700x4_amdsmi26.2.1_rocm7.2_vllm.json')
AMD_METRIC = read_fixture('amd-smi_metric_json_r9700_amdsmi26.2.1_rocm7.2_vllm.json')
# amd-smi's JSON for GPUs without a process (from amdsmi_cli/amdsmi_commands.py, not a capture): the sentinel
# string, the older "N/A", and an empty list.
AMD_IDLE = json.dumps([{'gpu': 0, 'process_list': [{'process_info': 'No running processes detected'}]},
                       {'gpu': 1, 'process_list': [{'process_info': 'N/A'}]},
                       {'gpu': 2, 'process_list': []}])
VLLM_PIDS = [1882331, 1883200, 1883505, 1883506, 1883507, 1883508]


def test_amd_smi_process_capture():
    holders, listed = _gpu.parse_amd_smi_process(AMD_PROCESS)
    assert listed == [0, 1, 2, 3]
    assert sorted(set(h['pid'] for h in holders)) == VLLM_PIDS
    assert len(holders) == 24  # every process is listed under every GPU
    worker = [h for h in holders if h['pid'] == 1883505]
    assert [h['gpu_index'] for h in worker] == [0, 1, 2, 3]
    # memory_usage.vram_mem (29429556000 B), not mem_usage (30201860096 B)
    assert worker[0] == {'pid': 1883505, 'name': '/usr/bin/python3.12', 'used_mib': 28066, 'gpu_uuid': None, 'gpu_index': 0}


def test_amd_smi_metric_capture():
    assert _gpu.parse_amd_smi_metric(AMD_METRIC) == [
        {'index': 0, 'uuid': None, 'name': '0000:03:00.0', 'memory_used_mib': 28123, 'memory_total_mib': 32624}]


def test_amd_smi_idle_forms():
    assert _gpu.parse_amd_smi_process(AMD_IDLE) == ([], [0, 1, 2])


@pytest.mark.parametrize('text,words', [
    ('', 'printed no JSON'),
    ('amd-smi: command not found', 'printed no JSON'),
    ('[{"gpu": 0, "process_list": [{"process_info": "Permission denied"}]}]', 'where a process or'),
    ('[{"gpu": 0, "process_list": [{"process_info": {"name": "x"}}]}]', 'without a usable pid'),
    ('[{"gpu": 0, "process_list": [{"process_info": {"pid": 7, "memory_usage": {"vram_mem": {"value": NaN, "unit": "B"}}}}]}]',
     'unreadable vram_mem'),
    ('[{"gpu": 0, "process_list": [{"process_info": {"pid": 7, "memory_usage": {"vram_mem": {"value": 1, "unit": "parsecs"}}}}]}]',
     'unreadable vram_mem'),
    ('[{"gpu": 0}]', 'without a process_list'),
    ('[{"process_list": []}]', 'without a GPU index'),
    ('{"gpu": 0}', 'not a list of per-GPU objects'),
    ('[' * 100000, 'nested too deeply'),
])
def test_amd_smi_unreadable_process_output_is_unknown(text, words):
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.parse_amd_smi_process(text)
    assert exc.value.kind == 'unparseable' and words in str(exc.value)


@pytest.mark.parametrize('value,expected', [
    ({'value': 76000, 'unit': 'B'}, 76000), ({'value': 112, 'unit': 'MB'}, 112 * 1024 * 1024), (1048576, 1048576),
    ('2 GB', 2 * 1024 ** 3), ('N/A', None), ({'value': 'N/A', 'unit': 'B'}, None), (None, None),
])
def test_amd_smi_memory_values(value, expected):
    assert _gpu._amd_bytes(value, 'vram_mem', 'amd-smi') == expected


def amd_host(metric=AMD_METRIC, process=AMD_PROCESS, rc=0, err=''):
    calls = []

    def run(argv):
        calls.append(argv)
        return rc, (metric if argv[1] == 'metric' else process), err
    run.calls = calls
    return run


def test_query_amd_smi():
    run = amd_host()
    snap = _gpu.query_amd_smi(run, '/opt/rocm/bin/amd-smi', euid=1000)
    assert run.calls == [['/opt/rocm/bin/amd-smi', 'metric', '--mem-usage', '--json'],
                         ['/opt/rocm/bin/amd-smi', 'process', '--json']]
    # GPU 0 from the metric capture; GPUs 1-3 only appear in the process listing, so their memory is unknown.
    assert [(g['index'], g['memory_used_mib']) for g in snap['gpus']] == [(0, 28123), (1, None), (2, None), (3, None)]
    assert len(snap['holders']) == 24 and snap['message'] is None


def test_query_amd_smi_idle_is_unknown_unless_root():
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_amd_smi(amd_host(process=AMD_IDLE), 'amd-smi', euid=1000)
    assert exc.value.kind == 'permission' and 'become: true' in str(exc.value)
    snap = _gpu.query_amd_smi(amd_host(process=AMD_IDLE), 'amd-smi', euid=0)
    assert snap['holders'] == [] and [g['index'] for g in snap['gpus']] == [0, 1, 2]


@pytest.mark.parametrize('rc,err,kind', [
    (1, 'ERROR:root:Driver not initialized (amdgpu not found in modules)\n', 'driver_not_loaded'),
    (1, 'Permission denied\n', 'permission'),
    (255, 'AMDSMI_STATUS_NOT_SUPPORTED\n', 'tool_failed'),
])
def test_query_amd_smi_failures(rc, err, kind):
    with pytest.raises(_gpu.GpuError) as exc:
        _gpu.query_amd_smi(amd_host(rc=rc, err=err), 'amd-smi', euid=0)
    assert exc.value.kind == kind


def test_choose_backend_prefers_amd_smi_to_rocm_smi():
    assert _gpu.choose_backend('auto', {'amd-smi': '/a', 'rocm-smi': '/r'}.get) == 'amd-smi'
    assert _gpu.choose_backend('auto', {'rocm-smi': '/r'}.get) == 'rocm-smi'
    assert 'amd-smi' in _gpu.BACKENDS


# --- what cannot be read is unknown (sweep item 9) -------------------------------------------------

def test_proc_scan_of_an_unlistable_proc_is_an_error(tmp_path):
    with pytest.raises(_gpu.GpuError, match='cannot list the processes in') as exc:
        _gpu.scan_proc_fds(str(tmp_path / 'no-proc'))
    assert exc.value.kind == 'permission'


def test_unit_filter_on_an_unlistable_proc_is_an_error(tmp_path):
    flt = _gpu.HolderFilter(unit='model-server@a.service', proc_root=str(tmp_path / 'no-proc'))
    with pytest.raises(_gpu.GpuError, match='which processes are in unit model-server@a.service is unknown'):
        _gpu.evaluate(snapshot(), flt)
