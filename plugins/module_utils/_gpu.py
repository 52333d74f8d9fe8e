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

* C(nvidia-smi): C(--query-gpu) and C(--query-compute-apps) in CSV with a header line
  (C(--format=csv,nounits)). The header names the fields, so columns are mapped by name and a
  process name that contains commas is kept whole; an output whose header lacks a queried field, or
  a line with fewer fields than the header, is unreadable (C(GpuError(kind='unparseable'))), never
  guessed. The C(noheader) form is read too, when it has exactly the queried number of fields.
* C(nvml): the C(pynvml) bindings (package C(nvidia-ml-py)), imported only when used.
* C(amd-smi) (ROCm 6.4 and later; it replaces rocm-smi): C(amd-smi metric --mem-usage --json) for
  each GPU's VRAM and C(amd-smi process --json) for the processes, with VRAM per process
  (C(memory_usage.vram_mem)) and the index of the GPU amd-smi lists it under.
* C(rocm-smi): C(rocm-smi --showmeminfo vram --showproductname --showuniqueid --json) for the GPUs
  and the text table of C(rocm-smi --showpids) for the processes: rocm-smi's JSON has no way to say
  "no process" (it leaves the message out), so JSON without process entries is unknown, never
  "released". rocm-smi reports per process the number of GPUs it uses, not which, so C(gpu_index)
  is C(None).
* C(proc): a scan of C(/proc/*/fd) for open device nodes (C(/dev/nvidia*), C(/dev/kfd)). Needs no
  vendor tool; root is needed to read other users' fds, and processes it could not read are
  reported, never guessed. A C(/proc) that cannot be listed is an error.

A backend that cannot tell which processes hold a GPU raises C(GpuError); callers report that as
unknown, never as released.
"""

from __future__ import annotations

import json
import math
import os
import re

from ansible_collections.modelops.shutdown.plugins.module_utils import _procs

BACKENDS = ('nvidia-smi', 'nvml', 'amd-smi', 'rocm-smi', 'proc')

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

# ASCII digits only: str.isdigit() also accepts '\u00b2' and the like, which int() refuses.
_DECIMAL = re.compile(r'^[0-9]+$')

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
        except (ValueError, OverflowError):
            raise GpuError('%s printed an unreadable %s %r in line %r' % (source, what, value, line), kind='unparseable')


def _normalize_header(field):
    """C(memory.used [MiB]) -> C(memory.used)."""
    return re.sub(r'\s*\[[^\]]*\]\s*$', '', field.strip()).lower()


def parse_nvidia_csv(text, columns, free_column, source='nvidia-smi'):
    """Rows of an nvidia-smi CSV table as dicts keyed by C(columns).

    With a header line (C(--format=csv)), the header names the fields: columns are found by name,
    so a table with other columns as well is read right, and a header without one of C(columns) is
    an error. nvidia-smi does not quote, so a row with more fields than the header is a
    C(free_column) value (a process name) containing commas: the surplus is joined back into it; a
    row with fewer is an error. Without a header (C(noheader)) nothing says which field is which, so
    every row must have exactly C(len(columns)) fields, in that order: more or fewer is an error (a
    different field list cannot be told from commas in a name). Raises C(GpuError(kind='unparseable')).
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
        has_header = True
    elif any(col in header for col in columns) or not _DECIMAL.match(header[0].strip()):
        raise GpuError('%s printed %r where the CSV header of the query (%s) was expected: the queried field(s) %s are not '
                       'in it. The output does not match the query, so it is not read'
                       % (source, lines[0][:300], ','.join(columns), ', '.join(c for c in columns if c not in header)),
                       kind='unparseable')
    else:
        positions = dict((col, i) for i, col in enumerate(columns))
        width = len(columns)
        free_pos = columns.index(free_column)
        has_header = False
    rows = []
    for line in lines:
        fields = line.split(',')
        if len(fields) < width or (len(fields) > width and not has_header):
            raise GpuError('%s printed a line with %d fields where the %s has %d (%s): %r'
                           % (source, len(fields), 'header' if has_header else 'query', width,
                              ','.join(header if has_header else columns)[:300], line[:300]), kind='unparseable')
        if len(fields) > width:
            extra = len(fields) - width
            fields = fields[:free_pos] + [','.join(fields[free_pos:free_pos + extra + 1])] + fields[free_pos + extra + 1:]
        fields = [f.strip() for f in fields]
        row = dict((col, fields[pos]) for col, pos in positions.items())
        row['_line'] = line
        rows.append(row)
    return rows


def parse_nvidia_smi_gpus(text):
    """GPU records from C(nvidia-smi --query-gpu=index,uuid,name,memory.used,memory.total --format=csv[,nounits])."""
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


NVIDIA_SMI_FORMAT = '--format=csv,nounits'


def query_nvidia_smi(run, nvidia_smi):
    """GPUs and compute-process holders via nvidia-smi. C(run(argv)) returns C((rc, stdout, stderr)).

    Both queries ask for a header line (C(NVIDIA_SMI_FORMAT)), so the output's fields are checked
    against the query by name.
    """
    try:
        executable = os.access(nvidia_smi, os.X_OK)
    except (ValueError, TypeError) as exc:  # a NUL byte in the path
        raise GpuError('%r cannot be a path to nvidia-smi: %s' % (nvidia_smi, exc), kind='tool_missing')
    if not executable:
        raise GpuError('%s is not executable by this user (or does not exist); run the task with become: true, fix its '
                       'mode, or set nvidia_smi_path' % nvidia_smi, kind='permission')
    rc, out, err = run([nvidia_smi, '--query-gpu=%s' % ','.join(NVIDIA_SMI_GPU_FIELDS), NVIDIA_SMI_FORMAT])
    if rc != 0 or 'no devices were found' in (out or '').lower():
        if _no_devices(rc, out, err):
            return {'gpus': [], 'holders': [], 'denied': [],
                    'message': 'nvidia-smi found no NVIDIA GPU (rc %s: %s)' % (rc, ' '.join((out or err or '').split())[:200])}
        raise nvidia_smi_error(rc, out, err, nvidia_smi)
    gpus = parse_nvidia_smi_gpus(out)
    rc, out, err = run([nvidia_smi, '--query-compute-apps=%s' % ','.join(NVIDIA_SMI_APP_FIELDS), NVIDIA_SMI_FORMAT])
    if rc != 0:
        raise nvidia_smi_error(rc, out, err, nvidia_smi)
    if (out or '').strip().lower().rstrip('.') == 'no running processes found':
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

# The GPUs (JSON) and the processes (text: only the text form says "No KFD PIDs currently running").
ROCM_SMI_ARGS = ('--showmeminfo', 'vram', '--showproductname', '--showuniqueid', '--json')
ROCM_SMI_PIDS_ARGS = ('--showpids',)
ROCM_SMI_NO_PIDS = 'No KFD PIDs currently running'


def _bytes_to_mib(value):
    value = _na_to_none(value)
    if value is None:
        return None
    try:
        return int(round(int(value) / float(MIB)))
    except (ValueError, OverflowError):
        return None


def _first(card, keys):
    for key in keys:
        if key in card:
            return _na_to_none(str(card[key]))
    return None


def _load_json(text, source):
    """The JSON value in C(text) (text before the first C({) or C([), such as warnings, is skipped)."""
    text = text or ''
    starts = [i for i in (text.find('{'), text.find('[')) if i >= 0]
    if not starts:
        raise GpuError('%s printed no JSON: %r' % (source, text.strip()[:300]), kind='unparseable')
    start = min(starts)
    try:
        data, dummy = json.JSONDecoder().raw_decode(text[start:])
    except ValueError as exc:
        raise GpuError('%s printed JSON that does not parse (%s): %r' % (source, exc, text[start:start + 300]),
                       kind='unparseable')
    except RecursionError:
        raise GpuError('%s printed JSON nested too deeply to read: %r' % (source, text[start:start + 100]), kind='unparseable')
    return data


def parse_rocm_smi_json(text, strict=False):
    """GPU and holder records from C(rocm-smi ... --json) output: C((gpus, holders)).

    Cards are C(cardN) objects (C(VRAM Total Memory (B)), C(VRAM Total Used Memory (B)),
    C(Card series)/C(Card Series)/C(Device Name), C(Unique ID)); processes are C(system) keys
    C(PID<n>) with value C("name, gpu count, vram bytes, sdma, cu occupancy") (C(--showpids)). Text
    before the JSON object (warnings) is skipped.

    An empty C(holders) does not mean "no process": rocm-smi prints nothing in JSON for "No KFD PIDs
    currently running" (and nothing at all without C(--showpids)), so such JSON cannot tell "no
    process" from "process information missing". With C(strict=True), C(holders) is C(None) then.
    C(query_rocm_smi) takes the processes from C(parse_rocm_smi_showpids) instead.
    """
    data = _load_json(text, 'rocm-smi')
    if not isinstance(data, dict):
        raise GpuError('rocm-smi printed JSON that is not an object: %r' % (text or '').strip()[:300], kind='unparseable')
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
                'memory_used_mib': _bytes_to_mib(str(card.get('VRAM Total Used Memory (B)', ''))),
                'memory_total_mib': _bytes_to_mib(str(card.get('VRAM Total Memory (B)', ''))),
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
    return gpus, (holders or None) if strict else holders


def parse_rocm_smi_showpids(text):
    """Holder records from the text table of C(rocm-smi --showpids) (KFD processes).

    An output with neither the C(PID ... PROCESS NAME ...) table nor C(No KFD PIDs currently
    running) is unreadable (C(GpuError(kind='unparseable'))): it never reads as "no process".
    """
    holders = []
    in_table = False
    said_none = False
    for line in (text or '').splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if ROCM_SMI_NO_PIDS.lower() in stripped.lower():
            said_none = True
            continue
        if stripped.startswith('PID') and 'PROCESS NAME' in stripped:
            in_table = True
            continue
        if not in_table:
            continue
        if stripped.startswith('='):
            break
        fields = stripped.split()
        if len(fields) < 6 or not _DECIMAL.match(fields[0]):
            raise GpuError('rocm-smi --showpids printed an unreadable process line: %r' % stripped[:300], kind='unparseable')
        holders.append({
            'pid': int(fields[0]),
            'name': ' '.join(fields[1:-4]),
            'used_mib': _bytes_to_mib(fields[-3]) if _DECIMAL.match(fields[-3]) else None,
            'gpu_uuid': None,
            'gpu_index': None,
        })
    if not in_table and not said_none:
        raise GpuError('rocm-smi --showpids printed neither a KFD process table nor %r, so which processes hold a GPU is '
                       'unknown (it said: %s)' % (ROCM_SMI_NO_PIDS, ' '.join((text or '').split())[:300] or 'nothing'),
                       kind='unparseable')
    return holders


def _amd_tool_error(tool, rc, out, err):
    said = ' '.join(('%s %s' % (err or '', out or '')).split())
    low = said.lower()
    if 'driver not initialized' in low or 'amdgpu not found' in low or 'driver_not_loaded' in low \
            or 'driver not loaded' in low:
        return GpuError('%s: the amdgpu driver is not loaded (it said: %s). What to do: load the amdgpu module, '
                        'or use backend: proc if this host has no usable AMD GPU' % (tool, said[:300]),
                        kind='driver_not_loaded', rc=rc)
    if rc != 0:
        kind = 'permission' if 'permission' in low else 'tool_failed'
        return GpuError('%s exited with rc %s (it said: %s). What to do: %s'
                        % (tool, rc, said[:300] or 'nothing', 'run the task with become: true' if kind == 'permission'
                           else 'check the ROCm installation, or use backend: proc'), kind=kind, rc=rc)
    return None


def query_rocm_smi(run, rocm_smi):
    """GPUs (C(rocm-smi ... --json)) and KFD processes (C(rocm-smi --showpids), text) via rocm-smi."""
    rc, out, err = run([rocm_smi] + list(ROCM_SMI_ARGS))
    error = _amd_tool_error(rocm_smi, rc, out, err)
    if error:
        raise error
    gpus, dummy = parse_rocm_smi_json(out)
    rc, out, err = run([rocm_smi] + list(ROCM_SMI_PIDS_ARGS))
    error = _amd_tool_error(rocm_smi, rc, out, err)
    if error:
        raise error
    holders = parse_rocm_smi_showpids(out)
    return {'gpus': gpus, 'holders': holders, 'denied': [], 'message': None}


# ------------------------------------------------------------------------------------------- amd-smi

AMD_SMI_METRIC_ARGS = ('metric', '--mem-usage', '--json')
AMD_SMI_PROCESS_ARGS = ('process', '--json')
# What amd-smi puts in place of a process when a GPU has none (older versions: N/A).
AMD_SMI_NO_PROCESS = ('no running processes detected', 'n/a')
_UNIT_BYTES = {'': 1, 'b': 1, 'kb': 1024, 'kib': 1024, 'mb': MIB, 'mib': MIB, 'gb': 1024 * MIB, 'gib': 1024 * MIB,
               'tb': 1024 * 1024 * MIB, 'tib': 1024 * 1024 * MIB}


def _amd_bytes(value, what, source):
    """Bytes from an amd-smi memory value: C({"value": N, "unit": "B"|"KB"|"MB"|"GB"}), a number (bytes),
    or a string C("N MB"). C(None) for C(N/A). amd-smi's C(MB) are MiB (it divides by 1024 twice)."""
    if isinstance(value, dict):
        number = value.get('value')
        unit = value.get('unit')
    else:
        number, unit = value, ''
    if number is None or (isinstance(number, str) and _is_na(number)):
        return None
    if isinstance(number, str):
        parts = number.split()
        if len(parts) == 2 and not unit:
            number, unit = parts
        else:
            number = number.strip()
    if isinstance(unit, str) and _is_na(unit) and unit.strip():
        unit = ''
    factor = _UNIT_BYTES.get(str(unit or '').strip().lower())
    if isinstance(number, bool) or factor is None:
        raise GpuError('%s printed an unreadable %s %r' % (source, what, value), kind='unparseable')
    try:
        amount = float(number)
    except (TypeError, ValueError, OverflowError):
        raise GpuError('%s printed an unreadable %s %r' % (source, what, value), kind='unparseable')
    if not math.isfinite(amount) or amount < 0 or amount * factor >= 2 ** 63:
        raise GpuError('%s printed an unreadable %s %r' % (source, what, value), kind='unparseable')
    return int(amount * factor)


def _to_mib(amount):
    return None if amount is None else int(round(amount / float(MIB)))


def _amd_entries(data, source):
    """The per-GPU objects of an amd-smi JSON answer: a list, or an object with a C(gpu_data) list."""
    if isinstance(data, dict) and isinstance(data.get('gpu_data'), list):
        data = data['gpu_data']
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise GpuError('%s printed JSON that is not a list of per-GPU objects: %r' % (source, json.dumps(data)[:300]),
                       kind='unparseable')
    entries = []
    for entry in data:
        gpu = entry.get('gpu')
        if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
            raise GpuError('%s printed a GPU entry without a GPU index: %r' % (source, json.dumps(entry)[:300]),
                           kind='unparseable')
        entries.append(entry)
    return entries


def parse_amd_smi_metric(text):
    """GPU records from C(amd-smi metric --mem-usage --json) (also the full C(amd-smi metric --json)).

    Memory comes from C(mem_usage.used_vram) and C(total_vram); C(uuid) and C(name) are C(None)
    (this command does not print them); the PCI address (C(bus.bdf)) is kept when printed.
    """
    source = 'amd-smi metric'
    gpus = []
    for entry in _amd_entries(_load_json(text, source), source):
        mem = entry.get('mem_usage')
        mem = mem if isinstance(mem, dict) else {}
        bus = entry.get('bus') if isinstance(entry.get('bus'), dict) else {}
        gpus.append({
            'index': entry['gpu'],
            'uuid': None,
            'name': _na_to_none(str(bus['bdf'])) if bus.get('bdf') else None,
            'memory_used_mib': _to_mib(_amd_bytes(mem.get('used_vram'), 'used_vram', source)),
            'memory_total_mib': _to_mib(_amd_bytes(mem.get('total_vram'), 'total_vram', source)),
        })
    gpus.sort(key=lambda g: g['index'])
    return gpus


def parse_amd_smi_process(text):
    """Holder records from C(amd-smi process --json): C((holders, gpu_indices)).

    The answer is a list of C({"gpu": N, "process_list": [{"process_info": {...}}]}); a GPU without
    a process has the one entry C({"process_info": "No running processes detected"}) (C("N/A") in
    older versions) or an empty list. Each process gives C(pid), C(name) (C(N/A), a name amd-smi
    could not read, is C(None)) and its VRAM, C(memory_usage.vram_mem) (else C(mem_usage)); the GPU
    is the one it is listed under. amd-smi may list a process under every GPU (it reports the
    process's total, not a per-GPU share). Anything else, such as a process without a pid or
    another message in place of a process, raises C(GpuError(kind='unparseable')).
    """
    source = 'amd-smi process'
    holders = []
    indices = []
    seen = set()
    for entry in _amd_entries(_load_json(text, source), source):
        gpu = entry['gpu']
        indices.append(gpu)
        plist = entry.get('process_list')
        if not isinstance(plist, list):
            raise GpuError('%s printed GPU %s without a process_list: %r' % (source, gpu, json.dumps(entry)[:300]),
                           kind='unparseable')
        for item in plist:
            info = item.get('process_info') if isinstance(item, dict) else None
            if isinstance(info, str) and info.strip().lower() in AMD_SMI_NO_PROCESS:
                continue
            if not isinstance(info, dict):
                raise GpuError('%s printed %r for GPU %s where a process or %r was expected, so its processes are unknown'
                               % (source, json.dumps(item)[:300], gpu, 'No running processes detected'),
                               kind='unparseable')
            pid = info.get('pid')
            if isinstance(pid, str) and _DECIMAL.match(pid.strip()):
                pid = int(pid)
            if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
                raise GpuError('%s printed a process on GPU %s without a usable pid: %r' % (source, gpu, json.dumps(info)[:300]),
                               kind='unparseable')
            usage = info.get('memory_usage') if isinstance(info.get('memory_usage'), dict) else {}
            if 'vram_mem' in usage:
                vram = _amd_bytes(usage['vram_mem'], 'vram_mem', source)
            else:
                vram = _amd_bytes(info.get('mem_usage'), 'mem_usage', source)
            name = info.get('name')
            name = _na_to_none(name) if isinstance(name, str) else None
            if (pid, gpu) in seen:
                continue
            seen.add((pid, gpu))
            holders.append({'pid': pid, 'name': name, 'used_mib': _to_mib(vram), 'gpu_uuid': None, 'gpu_index': gpu})
    holders.sort(key=lambda h: (h['pid'], h['gpu_index']))
    return holders, sorted(set(indices))


def query_amd_smi(run, amd_smi, euid=None):
    """GPUs (C(amd-smi metric --mem-usage --json)) and processes (C(amd-smi process --json)) via amd-smi.

    amd-smi run by another user than root may list no process although other users' processes hold
    the GPUs (it cannot read their C(/proc/<pid>/fd); ROCm/rocm-systems#8396): an empty list is then
    unknown (C(GpuError(kind='permission'))), not "released". C(euid) defaults to this process's.
    """
    rc, out, err = run([amd_smi] + list(AMD_SMI_METRIC_ARGS))
    error = _amd_tool_error(amd_smi, rc, out, err)
    if error:
        raise error
    gpus = parse_amd_smi_metric(out)
    rc, out, err = run([amd_smi] + list(AMD_SMI_PROCESS_ARGS))
    error = _amd_tool_error(amd_smi, rc, out, err)
    if error:
        raise error
    holders, listed = parse_amd_smi_process(out)
    known = set(g['index'] for g in gpus)
    for index in listed:
        if index not in known:
            gpus.append({'index': index, 'uuid': None, 'name': None, 'memory_used_mib': None, 'memory_total_mib': None})
    gpus.sort(key=lambda g: g['index'])
    if euid is None:
        euid = os.geteuid()
    if gpus and not holders and euid != 0:
        raise GpuError('%s lists no process on GPU(s) %s, but run by a user other than root it cannot see other users\' '
                       'processes and lists none for them either, so whether the GPUs are free is unknown. What to do: '
                       'run the task with become: true' % (amd_smi, ', '.join(str(g['index']) for g in gpus)),
                       kind='permission')
    message = None if gpus else 'amd-smi found no AMD GPU'
    return {'gpus': gpus, 'holders': holders, 'denied': [], 'message': message}


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
    root = proc_root or _procs.PROC_ROOT
    try:
        pids = _procs.list_pids(root, strict=True)
    except OSError as exc:
        raise GpuError('cannot list the processes in %s (%s), so which processes hold a GPU is unknown. What to do: '
                       'run where /proc is mounted and readable, or use a vendor backend' % (root, exc), kind='permission')
    for pid in pids:
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
    amd-smi on PATH (it replaces rocm-smi from ROCm 6.4), else rocm-smi on PATH, else the /proc scan.
    C(which(name)) returns a path or C(None)."""
    if requested != 'auto':
        return requested
    if which('nvidia-smi'):
        return 'nvidia-smi'
    if nvml_usable(nvml):
        return 'nvml'
    if which('amd-smi'):
        return 'amd-smi'
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
        """Read the unit's cgroup members again; a C(/proc) that cannot be listed is C(GpuError) (unknown)."""
        if not self.unit:
            self.unit_pids = set()
            return
        try:
            self.unit_pids = set(_procs.unit_pids(self.unit, self.proc_root, strict=True))
        except OSError as exc:
            raise GpuError('cannot list the processes in %s (%s), so which processes are in unit %s is unknown'
                           % (self.proc_root or _procs.PROC_ROOT, exc, self.unit), kind='permission')

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
            pids = sorted(set(h['pid'] for h in others))
            parts.append('What to do for PIDs %s: find their owner (ps -o pid,user,args -p PID; systemctl status PID) '
                         'and stop it' % ', '.join(str(p) for p in pids[:limit]))
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
