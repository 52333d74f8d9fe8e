# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU and GPU-memory-holder discovery: one backend per tool, each returning the same records.

Private to this collection.

Records:

* GPU: C({index, uuid, name, memory_used_mib, memory_total_mib}); a value the tool reports as
  C([N/A]) / C([Not Supported]) (or cannot report) is C(None).
* holder: C({pid, name, used_mib, gpu_uuid, gpu_index}); C(used_mib) is C(None) when the tool
  reports C([N/A]) (Windows/WDDM) or cannot attribute memory (rocm-smi, the /proc scan).

Backends:

* C(nvidia-smi): C(--query-gpu) and C(--query-compute-apps) in CSV. The parser takes the
  C(noheader,nounits) form this module asks for and the header/units form (C(memory.used [MiB]),
  C(2296 MiB)) found in captures, maps header-bearing tables by column name, and keeps a process
  name that contains commas whole.
* C(nvml): the C(pynvml) bindings (package C(nvidia-ml-py)), imported only when used.
* C(rocm-smi): C(rocm-smi --showmeminfo vram --showpids --showproductname --showuniqueid --json).
  rocm-smi reports per process the number of GPUs it uses, not which, so C(gpu_index) is C(None).
* C(proc): a scan of C(/proc/*/fd) for open device nodes (C(/dev/nvidia*), C(/dev/kfd)). Needs no
  vendor tool; root is needed to read other users' fds, and processes it could not read are
  reported, never guessed.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.modelops.shutdown.plugins.module_utils import _procs

BACKENDS = ('nvidia-smi', 'nvml', 'rocm-smi', 'proc')

MIB = 1024 * 1024

NVIDIA_SMI_GPU_FIELDS = ('index', 'uuid', 'name', 'memory.used', 'memory.total')
NVIDIA_SMI_APP_FIELDS = ('pid', 'process_name', 'used_gpu_memory', 'gpu_uuid')

# Where device nodes are; tests point it elsewhere. Read at call time.
DEV_ROOT = '/dev'

# Device nodes whose holders the /proc scan reports. Tests replace it to watch a temporary file.
DEVICE_PATTERN = r'^/dev/(nvidia[^/]*|kfd)$'
_NVIDIA_MINOR = re.compile(r'^/dev/nvidia([0-9]+)$')

# Daemons that keep /dev/nvidia* open without holding a model's memory. The /proc scan skips them;
# nvidia-smi and NVML do not list them as compute processes anyway.
PROC_SCAN_IGNORED = frozenset(('nvidia-persistenced', 'nvidia-smi', 'nv-hostengine', 'nvidia-powerd',
                               'nv-fabricmanager'))

# nvidia-smi(1) RETURN VALUE, and NVML's nvmlReturn_t for 18.
NVIDIA_SMI_RC = {
    2: ('invalid_argument', 'a supplied argument or flag is invalid',
        'this nvidia-smi does not know one of the queried fields (driver too old?); use backend: nvml or proc'),
    3: ('not_supported', 'the requested operation is not available on the target device',
        'use backend: nvml or proc'),
    4: ('permission', 'the current user does not have permission to access this device or perform this operation',
        'run the task with become: true'),
    6: ('not_found', 'a query to find an object was unsuccessful', ''),
    8: ('power', "a device's external power cables are not properly attached",
        'fix the GPU power cabling; GPU memory cannot be verified on this host until then'),
    9: ('driver_not_loaded', 'the NVIDIA driver is not loaded',
        'load the driver (modprobe nvidia; check dmesg and that the driver matches the running kernel), '
        'or use backend: proc if this host has no usable NVIDIA GPU'),
    10: ('irq_issue', 'the NVIDIA kernel module detected an interrupt issue with a GPU',
         'check dmesg for Xid errors; the host needs attention before its GPUs can be verified'),
    12: ('library_not_found', 'the NVML shared library (libnvidia-ml.so) could not be found or loaded',
         'install the NVIDIA utilities/NVML package matching the loaded driver, or use backend: proc'),
    13: ('function_not_found', "the local version of NVML doesn't implement this function",
         'upgrade the NVIDIA driver utilities, or use backend: proc'),
    14: ('inforom_corrupted', 'the infoROM is corrupted', 'replace or service the GPU; use backend: proc meanwhile'),
    15: ('gpu_lost', 'a GPU has fallen off the bus or has otherwise become inaccessible',
         'check dmesg for Xid 79; the GPU needs a reset or the host a reboot before its memory can be verified'),
    18: ('version_mismatch', 'the NVIDIA driver and library versions do not match',
         'reload the nvidia kernel module or reboot after the driver upgrade'),
    255: ('internal_error', 'other error or internal driver error', 'check dmesg and the driver installation'),
}

_NA_WORDS = ('n/a', 'not supported', 'unknown error', 'insufficient permissions', 'unknown')


class GpuError(Exception):
    """A backend failed. C(kind) names the failure (C(driver_not_loaded), C(library_not_found),
    C(gpu_lost), C(permission), C(unparseable), C(tool_missing), C(tool_failed), ...)."""

    def __init__(self, message, kind='tool_failed', rc=None):
        super(GpuError, self).__init__(message)
        self.kind = kind
        self.rc = rc


def _is_na(value):
    text = value.strip().strip('[]').strip().lower()
    return not text or text in _NA_WORDS or text.startswith('requested functionality')


def _na_to_none(value):
    """C(None) for C([N/A])-like values, else the stripped text."""
    if value is None or _is_na(value):
        return None
    return value.strip()


def _to_int(value, what, line, source):
    value = _na_to_none(value)
    if value is None:
        return None
    text = value
    for unit in (' MiB', 'MiB'):
        if text.endswith(unit):
            text = text[:-len(unit)].strip()
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            raise GpuError('%s printed an unreadable %s %r in line %r' % (source, what, value, line), kind='unparseable')


def _normalize_header(field):
    """C(memory.used [MiB]) -> C(memory.used)."""
    return re.sub(r'\s*\[[^\]]*\]\s*$', '', field.strip()).lower()


def parse_nvidia_csv(text, columns, free_column, source='nvidia-smi'):
    """Rows of an nvidia-smi CSV table as dicts keyed by C(columns).

    With a header line (C(--format=csv)), columns are found by name, so extra columns are fine.
    Without one (C(noheader)), the fields are C(columns) in order. nvidia-smi does not quote, so a
    row with more fields than the table has is a C(free_column) value (a process name) containing
    commas: the surplus is joined back into it. Raises C(GpuError(kind='unparseable')).
    """
    lines = [line.rstrip('\r') for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = [_normalize_header(f) for f in lines[0].split(',')]
    if all(col in header for col in columns):
        positions = dict((col, header.index(col)) for col in columns)
        width = len(header)
        free_pos = header.index(free_column)
        lines = lines[1:]
    elif any(col in header for col in columns) and not header[0].isdigit():
        raise GpuError('%s printed a CSV header without the columns %s: %r'
                       % (source, ', '.join(c for c in columns if c not in header), lines[0][:300]), kind='unparseable')
    else:
        positions = dict((col, i) for i, col in enumerate(columns))
        width = len(columns)
        free_pos = columns.index(free_column)
    rows = []
    for line in lines:
        fields = line.split(',')
        if len(fields) < width:
            raise GpuError('%s printed a line with %d fields where %d were expected: %r'
                           % (source, len(fields), width, line[:300]), kind='unparseable')
        if len(fields) > width:
            extra = len(fields) - width
            fields = fields[:free_pos] + [','.join(fields[free_pos:free_pos + extra + 1])] + fields[free_pos + extra + 1:]
        fields = [f.strip() for f in fields]
        row = dict((col, fields[pos]) for col, pos in positions.items())
        row['_line'] = line
        rows.append(row)
    return rows


def parse_nvidia_smi_gpus(text):
    """GPU records from C(nvidia-smi --query-gpu=index,uuid,name,memory.used,memory.total --format=csv...)."""
    gpus = []
    for row in parse_nvidia_csv(text, NVIDIA_SMI_GPU_FIELDS, 'name', 'nvidia-smi --query-gpu'):
        line = row['_line']
        index = _to_int(row['index'], 'GPU index', line, 'nvidia-smi --query-gpu')
        if index is None:
            raise GpuError('nvidia-smi --query-gpu printed no GPU index in line %r' % line, kind='unparseable')
        gpus.append({
            'index': index,
            'uuid': _na_to_none(row['uuid']),
            'name': _na_to_none(row['name']),
            'memory_used_mib': _to_int(row['memory.used'], 'memory.used', line, 'nvidia-smi --query-gpu'),
            'memory_total_mib': _to_int(row['memory.total'], 'memory.total', line, 'nvidia-smi --query-gpu'),
        })
    return gpus


def parse_nvidia_smi_apps(text):
    """Holder records from C(nvidia-smi --query-compute-apps=pid,process_name,used_gpu_memory,gpu_uuid ...).

    C(gpu_index) is left C(None); C(attach_gpu_index()) fills it.
    """
    holders = []
    for row in parse_nvidia_csv(text, NVIDIA_SMI_APP_FIELDS, 'process_name', 'nvidia-smi --query-compute-apps'):
        line = row['_line']
        pid = _to_int(row['pid'], 'pid', line, 'nvidia-smi --query-compute-apps')
        if pid is None:
            raise GpuError('nvidia-smi --query-compute-apps printed no pid in line %r' % line, kind='unparseable')
        holders.append({
            'pid': pid,
            'name': _na_to_none(row['process_name']),
            'used_mib': _to_int(row['used_gpu_memory'], 'used_gpu_memory', line, 'nvidia-smi --query-compute-apps'),
            'gpu_uuid': _na_to_none(row['gpu_uuid']),
            'gpu_index': None,
        })
    return holders


_L_GPU = re.compile(r'^GPU\s+(\d+):\s*(.*?)\s*\(UUID:\s*([^)]+)\)\s*$')
_L_MIG = re.compile(r'^\s+MIG\s+(\S+)\s+Device\s+(\d+):\s*\(UUID:\s*([^)]+)\)\s*$')


def parse_nvidia_smi_list(text):
    """C(nvidia-smi -L): C([{index, name, uuid, mig: [{profile, device, uuid}]}]).

    Used to map MIG device UUIDs (C(MIG-...)) that a compute-apps row may carry to their GPU.
    """
    gpus = []
    for line in text.splitlines():
        match = _L_GPU.match(line)
        if match:
            gpus.append({'index': int(match.group(1)), 'name': match.group(2), 'uuid': match.group(3).strip(), 'mig': []})
            continue
        match = _L_MIG.match(line)
        if match and gpus:
            gpus[-1]['mig'].append({'profile': match.group(1), 'device': int(match.group(2)), 'uuid': match.group(3).strip()})
    return gpus


def attach_gpu_index(gpus, holders, mig_map=None):
    """Fill each holder's C(gpu_index) from its C(gpu_uuid) (or a MIG UUID via C(mig_map))."""
    by_uuid = dict((g['uuid'], g['index']) for g in gpus if g.get('uuid'))
    mig_map = mig_map or {}
    for holder in holders:
        if holder.get('gpu_index') is None and holder.get('gpu_uuid'):
            uuid = holder['gpu_uuid']
            if uuid in by_uuid:
                holder['gpu_index'] = by_uuid[uuid]
            elif uuid in mig_map:
                holder['gpu_index'] = mig_map[uuid]
    return holders


def nvidia_smi_error(rc, out, err, path='nvidia-smi'):
    """A C(GpuError) for a non-zero nvidia-smi exit, with what the code means and what to do."""
    said = ' '.join((err or '').split() + (out or '').split())[:400]
    kind, meaning, advice = NVIDIA_SMI_RC.get(rc, ('tool_failed', 'nvidia-smi failed', 'check the NVIDIA driver installation'))
    msg = '%s exited with rc %s: %s' % (path, rc, meaning)
    if said:
        msg += ' (it said: %s)' % said
    if advice:
        msg += '. What to do: %s' % advice
    return GpuError(msg, kind=kind, rc=rc)


def _no_devices(rc, out, err):
    return rc == 6 or 'no devices were found' in ('%s %s' % (out, err)).lower()


def query_nvidia_smi(run, nvidia_smi):
    """GPUs and compute-process holders via nvidia-smi. C(run(argv)) returns C((rc, stdout, stderr))."""
    if not os.access(nvidia_smi, os.X_OK):
        raise GpuError('%s is not executable by this user; run the task with become: true or fix its mode' % nvidia_smi,
                       kind='permission')
    rc, out, err = run([nvidia_smi, '--query-gpu=%s' % ','.join(NVIDIA_SMI_GPU_FIELDS), '--format=csv,noheader,nounits'])
    if rc != 0 or 'no devices were found' in (out or '').lower():
        if _no_devices(rc, out, err):
            return {'gpus': [], 'holders': [], 'denied': [],
                    'message': 'nvidia-smi found no NVIDIA GPU (rc %s: %s)' % (rc, ' '.join((out or err or '').split())[:200])}
        raise nvidia_smi_error(rc, out, err, nvidia_smi)
    gpus = parse_nvidia_smi_gpus(out)
    rc, out, err = run([nvidia_smi, '--query-compute-apps=%s' % ','.join(NVIDIA_SMI_APP_FIELDS), '--format=csv,noheader,nounits'])
    if rc != 0:
        raise nvidia_smi_error(rc, out, err, nvidia_smi)
    if 'no running processes found' in (out or '').lower():
        out = ''
    holders = parse_nvidia_smi_apps(out)
    known = set(g['uuid'] for g in gpus)
    if any(h['gpu_uuid'] and h['gpu_uuid'] not in known for h in holders):
        mig_map = {}
        rc, lout, lerr = run([nvidia_smi, '-L'])
        if rc == 0:
            for gpu in parse_nvidia_smi_list(lout):
                for mig in gpu['mig']:
                    mig_map[mig['uuid']] = gpu['index']
        attach_gpu_index(gpus, holders, mig_map)
    else:
        attach_gpu_index(gpus, holders)
    return {'gpus': gpus, 'holders': holders, 'denied': [], 'message': None}


# ---------------------------------------------------------------------------------------------- NVML

def import_pynvml():
    """The C(pynvml) module, or C(None) when it is not installed."""
    try:
        import pynvml  # pylint: disable=import-error
    except ImportError:
        return None
    return pynvml


def _text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value


def _nvml_error(nvml, exc):
    code = getattr(exc, 'value', None)
    kind, meaning, advice = NVIDIA_SMI_RC.get(code, ('tool_failed', 'NVML call failed', 'check the NVIDIA driver installation'))
    msg = 'NVML error %s: %s (%s)' % (code, meaning, exc)
    if advice:
        msg += '. What to do: %s' % advice
    return GpuError(msg, kind=kind, rc=code)


def nvml_usable(nvml):
    """Whether NVML initialises on this host (used by backend auto-detection)."""
    if nvml is None:
        return False
    try:
        nvml.nvmlInit()
    except Exception:  # pylint: disable=broad-except
        return False
    try:
        nvml.nvmlShutdown()
    except Exception:  # pylint: disable=broad-except
        pass
    return True


def query_nvml(nvml, proc_root=None):
    """GPUs and compute-process holders through NVML (C(pynvml) module passed in)."""
    if nvml is None:
        raise GpuError('backend nvml needs the Python package nvidia-ml-py (module pynvml) on the target; '
                       'install it or use backend: nvidia-smi or proc', kind='tool_missing')
    error_cls = getattr(nvml, 'NVMLError', Exception)
    not_available = getattr(nvml, 'NVML_VALUE_NOT_AVAILABLE', None)
    try:
        nvml.nvmlInit()
    except error_cls as exc:
        raise _nvml_error(nvml, exc)
    gpus = []
    holders = []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append({
                'index': index,
                'uuid': uuid,
                'name': _text(nvml.nvmlDeviceGetName(handle)),
                'memory_used_mib': int(mem.used // MIB),
                'memory_total_mib': int(mem.total // MIB),
            })
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = getattr(proc, 'usedGpuMemory', None)
                if used is None or (not_available is not None and used == not_available) or used < 0:
                    used_mib = None
                else:
                    used_mib = int(used // MIB)
                name = _procs.process_name(proc.pid, proc_root)
                if name is None:
                    try:
                        name = _text(nvml.nvmlSystemGetProcessName(proc.pid))
                    except error_cls:
                        name = None
                holders.append({'pid': int(proc.pid), 'name': name, 'used_mib': used_mib,
                                'gpu_uuid': uuid, 'gpu_index': index})
    except error_cls as exc:
        raise _nvml_error(nvml, exc)
    except (AttributeError, TypeError) as exc:
        raise GpuError('the installed pynvml does not offer what this module uses (%s); install a current nvidia-ml-py, '
                       'or use backend: nvidia-smi or proc' % exc, kind='tool_failed')
    finally:
        try:
            nvml.nvmlShutdown()
        except error_cls:
            pass
    return {'gpus': gpus, 'holders': holders, 'denied': [], 'message': None}


# ------------------------------------------------------------------------------------------ rocm-smi

ROCM_SMI_ARGS = ('--showmeminfo', 'vram', '--showpids', '--showproductname', '--showuniqueid', '--json')


def _bytes_to_mib(value):
    value = _na_to_none(value)
    if value is None:
        return None
    try:
        return int(round(int(value) / float(MIB)))
    except ValueError:
        return None


def _first(card, keys):
    for key in keys:
        if key in card:
            return _na_to_none(str(card[key]))
    return None


def parse_rocm_smi_json(text):
    """GPU and holder records from C(rocm-smi ... --json) output.

    Cards are C(cardN) objects (C(VRAM Total Memory (B)), C(VRAM Total Used Memory (B)),
    C(Card series)/C(Card Series)/C(Device Name), C(Unique ID)); processes are C(system) keys
    C(PID<n>) with value C("name, gpu count, vram bytes, sdma, cu occupancy"). Text before the
    JSON object (warnings) is skipped.
    """
    start = text.find('{')
    if start < 0:
        raise GpuError('rocm-smi printed no JSON: %r' % text.strip()[:300], kind='unparseable')
    try:
        data, dummy = json.JSONDecoder().raw_decode(text[start:])
    except ValueError as exc:
        raise GpuError('rocm-smi printed JSON that does not parse (%s): %r' % (exc, text[start:start + 300]), kind='unparseable')
    if not isinstance(data, dict):
        raise GpuError('rocm-smi printed JSON that is not an object: %r' % text[start:start + 300], kind='unparseable')
    gpus = []
    holders = []
    for key in sorted(data, key=lambda k: (len(k), k)):
        card = data[key]
        match = re.match(r'^card(\d+)$', key)
        if match and isinstance(card, dict):
            gpus.append({
                'index': int(match.group(1)),
                'uuid': _first(card, ('Unique ID', 'UUID')),
                'name': _first(card, ('Card series', 'Card Series', 'Device Name', 'Card model', 'Card Model')),
                'memory_used_mib': _bytes_to_mib(card.get('VRAM Total Used Memory (B)')),
                'memory_total_mib': _bytes_to_mib(card.get('VRAM Total Memory (B)')),
            })
    system = data.get('system')
    if isinstance(system, dict):
        for key, value in system.items():
            match = re.match(r'^PID(\d+)$', key)
            if not match:
                continue
            parts = [p.strip() for p in str(value).rsplit(',', 4)]
            holders.append({
                'pid': int(match.group(1)),
                'name': parts[0] if parts and parts[0] else None,
                'used_mib': _bytes_to_mib(parts[2]) if len(parts) == 5 else None,
                'gpu_uuid': None,
                'gpu_index': None,
            })
    holders.sort(key=lambda h: h['pid'])
    return gpus, holders


def parse_rocm_smi_showpids(text):
    """Holder records from the text table of C(rocm-smi --showpids) (KFD processes)."""
    holders = []
    in_table = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith('PID') and 'PROCESS NAME' in stripped:
            in_table = True
            continue
        if not in_table:
            continue
        if stripped.startswith('=') or 'No KFD PIDs' in stripped:
            break
        fields = stripped.split()
        if len(fields) < 6 or not fields[0].isdigit():
            raise GpuError('rocm-smi --showpids printed an unreadable process line: %r' % stripped[:300], kind='unparseable')
        holders.append({
            'pid': int(fields[0]),
            'name': ' '.join(fields[1:-4]),
            'used_mib': _bytes_to_mib(fields[-3]) if fields[-3].isdigit() else None,
            'gpu_uuid': None,
            'gpu_index': None,
        })
    return holders


def query_rocm_smi(run, rocm_smi):
    rc, out, err = run([rocm_smi] + list(ROCM_SMI_ARGS))
    said = ' '.join(('%s %s' % (err or '', out or '')).split())
    if 'driver not initialized' in said.lower() or 'amdgpu not found' in said.lower():
        raise GpuError('%s: the amdgpu driver is not loaded (it said: %s). What to do: load the amdgpu module, '
                       'or use backend: proc if this host has no usable AMD GPU' % (rocm_smi, said[:300]),
                       kind='driver_not_loaded', rc=rc)
    if rc != 0:
        kind = 'permission' if 'permission' in said.lower() else 'tool_failed'
        raise GpuError('%s exited with rc %s (it said: %s). What to do: %s'
                       % (rocm_smi, rc, said[:300], 'run the task with become: true' if kind == 'permission'
                          else 'check the ROCm installation, or use backend: proc'), kind=kind, rc=rc)
    gpus, holders = parse_rocm_smi_json(out)
    return {'gpus': gpus, 'holders': holders, 'denied': [], 'message': None}


# ------------------------------------------------------------------------------------------ /proc scan

def device_nodes(dev_root=None):
    """GPU records for the device nodes present: C(/dev/nvidia<N>) (C(index) N, the device minor
    number), and C(/dev/kfd) (AMD, C(index) None). C(name) is the device path."""
    gpus = []
    try:
        names = os.listdir(dev_root or DEV_ROOT)
    except OSError:
        names = []
    for name in sorted(names):
        match = re.match(r'^nvidia([0-9]+)$', name)
        if match:
            gpus.append({'index': int(match.group(1)), 'uuid': None, 'name': os.path.join('/dev', name),
                         'memory_used_mib': None, 'memory_total_mib': None})
    gpus.sort(key=lambda g: g['index'])
    if 'kfd' in names:
        gpus.append({'index': None, 'uuid': None, 'name': '/dev/kfd', 'memory_used_mib': None, 'memory_total_mib': None})
    return gpus


def scan_proc_fds(proc_root=None, device_pattern=None, ignored=PROC_SCAN_IGNORED, skip_pids=()):
    """Holders of open device nodes matching C(device_pattern) (default C(DEVICE_PATTERN)).

    One holder per process and GPU: C(/dev/nvidia<N>) gives C(gpu_index) N; a process holding only
    C(/dev/nvidiactl), C(/dev/nvidia-uvm) or C(/dev/kfd) gets C(gpu_index) None. Returns
    C((holders, denied)): C(denied) lists PIDs whose fds could not be read (not root).
    """
    pattern = re.compile(device_pattern or DEVICE_PATTERN)
    holders = []
    denied = []
    for pid in _procs.list_pids(proc_root):
        if pid in skip_pids:
            continue
        fd_dir = os.path.join(proc_root or _procs.PROC_ROOT, str(pid), 'fd')
        try:
            fds = os.listdir(fd_dir)
        except OSError as exc:
            if getattr(exc, 'errno', None) in (1, 13):  # EPERM, EACCES
                denied.append(pid)
            continue  # gone, or a kernel thread
        indices = set()
        matched = False
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if pattern.search(target):
                matched = True
                minor = _NVIDIA_MINOR.match(target)
                if minor:
                    indices.add(int(minor.group(1)))
        if not matched:
            continue
        name = _procs.process_name(pid, proc_root)
        if name in ignored:
            continue
        for index in sorted(indices) or [None]:
            holders.append({'pid': pid, 'name': name, 'used_mib': None, 'gpu_uuid': None, 'gpu_index': index})
    return holders, denied


def query_proc(proc_root=None, dev_root=None, device_pattern=None, skip_pids=()):
    gpus = device_nodes(dev_root)
    holders, denied = scan_proc_fds(proc_root, device_pattern, skip_pids=skip_pids)
    message = None
    if not gpus and not holders:
        message = 'no GPU found: no /dev/nvidia<N> or /dev/kfd device node on this host'
    return {'gpus': gpus, 'holders': holders, 'denied': denied, 'message': message}


# --------------------------------------------------------------------------------- backend selection

def choose_backend(requested, which, nvml=None):
    """Resolve C(auto) to a backend name: nvidia-smi on PATH, else NVML if it initialises, else
    rocm-smi on PATH, else the /proc scan. C(which(name)) returns a path or C(None)."""
    if requested != 'auto':
        return requested
    if which('nvidia-smi'):
        return 'nvidia-smi'
    if nvml_usable(nvml):
        return 'nvml'
    if which('rocm-smi'):
        return 'rocm-smi'
    return 'proc'


# ---------------------------------------------------------------------------------- release check

class HolderFilter(object):
    """Which holders count, and on which GPUs.

    C(pids), C(unit) (its cgroup's processes, rescanned on every probe, plus C(exec_main_pid)) and
    C(name_regex) (searched in the tool's process name, C(/proc/<pid>/comm) and the command line)
    are alternatives: a holder matching any of them counts. With none given every holder counts.
    C(gpus) (indices or UUIDs) restricts the GPUs looked at; a holder whose GPU is unknown
    (rocm-smi, C(/dev/nvidiactl) in the /proc scan) is never excluded by it.
    """

    def __init__(self, pids=None, unit=None, exec_main_pid=None, name_regex=None, gpus=None, proc_root=None):
        self.pids = set(pids or ())
        self.unit = unit
        self.exec_main_pid = exec_main_pid if exec_main_pid and exec_main_pid > 0 else None
        self.name_regex = name_regex
        self.gpus = [str(g).strip() for g in (gpus or ())]
        self.proc_root = proc_root
        self.unit_pids = set()

    @property
    def has_process_filter(self):
        return bool(self.pids or self.unit or self.name_regex)

    def refresh(self):
        self.unit_pids = set(_procs.unit_pids(self.unit, self.proc_root)) if self.unit else set()

    def pid_matches(self, pid, name=None):
        if not self.has_process_filter:
            return True
        if pid in self.pids or pid in self.unit_pids or pid == self.exec_main_pid:
            return True
        if self.name_regex is not None:
            if name and self.name_regex.search(name):
                return True
            info = _procs.process_info(pid, self.proc_root)
            for text in (info['comm'], info['cmdline']):
                if text and self.name_regex.search(text):
                    return True
        return False

    @staticmethod
    def _item_matches(item, index, uuid):
        return (index is not None and item == str(index)) or bool(uuid and item.lower() == uuid.lower())

    def _gpu_key_matches(self, index, uuid):
        return any(self._item_matches(item, index, uuid) for item in self.gpus)

    def gpu_selected(self, gpu):
        return not self.gpus or self._gpu_key_matches(gpu.get('index'), gpu.get('uuid'))

    def holder_selected(self, holder, gpus):
        if not self.gpus:
            return True
        if holder.get('gpu_index') is None and not holder.get('gpu_uuid'):
            return True
        if self._gpu_key_matches(holder.get('gpu_index'), holder.get('gpu_uuid')):
            return True
        for gpu in gpus:
            if gpu.get('index') == holder.get('gpu_index') and gpu.get('index') is not None:
                return self.gpu_selected(gpu)
        return False

    def missing_gpus(self, gpus):
        """Items of C(gpus) naming no GPU present."""
        return [item for item in self.gpus
                if not any(self._item_matches(item, g.get('index'), g.get('uuid')) for g in gpus)]


def evaluate(snapshot, holder_filter, no_processes=True, max_memory_used_mib=None):
    """Judge one snapshot (from a C(query_*) backend): C(ok) when released.

    Returns C({ok, gpus, holders, over_memory, unreadable_pids, message, all_gpus, missing_gpus}):
    C(gpus) are the selected GPUs, each with all its holders (C(matched) says which count);
    C(holders) the matching holders on selected GPUs; C(over_memory) the GPUs over
    C(max_memory_used_mib) or whose memory is unknown; C(unreadable_pids) processes that match but
    whose fds could not be read; C(all_gpus) every GPU present (index, uuid, name);
    C(missing_gpus) the items of the GPU filter naming no GPU present (empty on a GPU-less host).
    """
    holder_filter.refresh()
    gpus = snapshot['gpus']
    annotated = []
    for holder in snapshot['holders']:
        item = dict(holder)
        item['unit'] = holder_filter.unit if holder['pid'] in holder_filter.unit_pids else None
        item['matched'] = holder_filter.pid_matches(holder['pid'], holder.get('name')) and \
            holder_filter.holder_selected(holder, gpus)
        annotated.append(item)
    out_gpus = []
    over = []
    for gpu in gpus:
        if not holder_filter.gpu_selected(gpu):
            continue
        record = dict(gpu)
        record['holders'] = [dict((k, h[k]) for k in ('pid', 'name', 'used_mib', 'unit', 'matched'))
                             for h in annotated
                             if h.get('gpu_index') is not None and h.get('gpu_index') == gpu.get('index')]
        out_gpus.append(record)
        if max_memory_used_mib is not None:
            used = gpu.get('memory_used_mib')
            if used is None or used > max_memory_used_mib:
                over.append(record)
    matched = [dict((k, h[k]) for k in ('pid', 'name', 'used_mib', 'gpu_uuid', 'gpu_index', 'unit'))
               for h in annotated if h['matched']]
    unreadable = [pid for pid in snapshot.get('denied', ()) if holder_filter.pid_matches(pid)]
    ok = not (no_processes and matched) and not over and not unreadable
    return {'ok': ok, 'gpus': out_gpus, 'holders': matched, 'over_memory': over,
            'unreadable_pids': unreadable, 'message': snapshot.get('message'),
            'all_gpus': [dict((k, g.get(k)) for k in ('index', 'uuid', 'name')) for g in gpus],
            'missing_gpus': holder_filter.missing_gpus(gpus) if gpus else []}


def _holder_text(holder):
    where = 'GPU %s' % holder['gpu_index'] if holder.get('gpu_index') is not None else 'an unidentified GPU'
    if holder.get('gpu_uuid'):
        where += ' (%s)' % holder['gpu_uuid']
    mem = '%s MiB' % holder['used_mib'] if holder.get('used_mib') is not None else 'an unknown amount of memory'
    owner = ', in unit %s' % holder['unit'] if holder.get('unit') else ''
    return 'PID %s (%s%s) holds %s on %s' % (holder['pid'], holder.get('name') or 'unknown name', owner, mem, where)


def describe_blockers(result, max_memory_used_mib=None, unit=None, kill_orphans=False, limit=10):
    """Why a check is not released, naming every holder and saying what to do."""
    parts = []
    holders = result['holders']
    if holders:
        parts.append('; '.join(_holder_text(h) for h in holders[:limit]))
        if len(holders) > limit:
            parts.append('and %d more holders' % (len(holders) - limit))
        in_unit = [h for h in holders if h.get('unit')]
        others = [h for h in holders if not h.get('unit')]
        if in_unit and not kill_orphans:
            parts.append('What to do: these are left over in unit %s\'s cgroup; set kill_orphans: true to SIGKILL them, '
                         'or stop them yourself' % unit)
        if others:
            parts.append('What to do for PIDs %s: find their owner (ps -o pid,user,args -p PID; systemctl status PID) '
                         'and stop it' % ', '.join(str(h['pid']) for h in others[:limit]))
    for gpu in result['over_memory']:
        used = gpu.get('memory_used_mib')
        parts.append('GPU %s (%s) %s' % (
            gpu.get('index'), gpu.get('uuid') or gpu.get('name'),
            'reports no memory usage, so max_memory_used_mib cannot be checked' if used is None
            else 'uses %s MiB, over max_memory_used_mib %s' % (used, max_memory_used_mib)))
    if result['unreadable_pids']:
        pids = result['unreadable_pids']
        parts.append('the open files of %d processes (PIDs %s%s) could not be read, so they may hold a GPU: '
                     'run the task with become: true' % (len(pids), ', '.join(str(p) for p in pids[:limit]),
                                                         ', ...' if len(pids) > limit else ''))
    return '. '.join(parts)
