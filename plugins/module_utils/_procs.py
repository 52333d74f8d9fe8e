# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process and cgroup helpers read from C(/proc). Linux only; stdlib only.

Private to this collection. C(check_units()) is the work of the C(unit_processes) module.
Every function that reads C(/proc) takes C(proc_root) (default C(PROC_ROOT), read at call time) so tests can point it at a copy.

A process belongs to a systemd unit when its cgroup path, in the hierarchy systemd tracks processes
with, has the unit's name as a path component. That covers:

* cgroup v2 (C(0::/system.slice/model-server@a.service)) and the v1 C(name=systemd) hierarchy
  (C(1:name=systemd:/system.slice/model-server@a.service));
* systemd inside a container with C(cgroupns=host), where paths carry the container's prefix
  (C(/docker/<id>/system.slice/...), C(/system.slice/docker-<id>.scope/system.slice/...));
* sub-cgroups a unit created under its own (C(Delegate=yes)): C(/system.slice/x.service/worker).

So processes that outlived the unit's main process (forked workers, a CUDA helper left behind) are
found as long as they stay in the unit's cgroup, which is where systemd leaves them.
"""

from __future__ import annotations

import errno
import os
import signal

from ansible_collections.modelops.shutdown.plugins.module_utils import _systemd

# Where /proc is; tests point it elsewhere. Functions read it at call time.
PROC_ROOT = '/proc'

# Hierarchies systemd tracks processes in. When a cgroup file has one of these lines only those are
# read; otherwise (unusual layouts) every line is.
_TRACKING = ('name=systemd',)


def list_pids(proc_root=None, strict=False):
    """All numeric entries of C(proc_root), as ints (processes, not threads).

    A C(proc_root) that cannot be listed gives C([]), or raises the C(OSError) with C(strict=True)
    (for callers to whom "no process" and "could not look" must differ).
    """
    try:
        names = os.listdir(proc_root or PROC_ROOT)
    except OSError:
        if strict:
            raise
        return []
    return sorted(int(name) for name in names if name.isascii() and name.isdigit())


def _read(path, mode='r'):
    """The content of C(path): bytes with C(mode='rb'), else text decoded as UTF-8 with bad bytes replaced
    (a process may give itself any name, and a cgroup any path)."""
    with open(path, 'rb') as handle:
        data = handle.read()
    return data if 'b' in mode else data.decode('utf-8', 'replace')


def parse_cgroup(text):
    """C((hierarchy_id, controllers, path)) tuples from the text of a C(/proc/<pid>/cgroup) file."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        entries.append((parts[0], parts[1], parts[2]))
    return entries


def tracking_paths(entries):
    """The cgroup paths of the hierarchies systemd tracks processes in (see C(_TRACKING))."""
    chosen = [path for hid, controllers, path in entries
              if controllers in _TRACKING or (hid == '0' and controllers == '')]
    if chosen:
        return chosen
    return [path for dummy, dummy2, path in entries]


def path_in_unit(path, unit):
    """Whether the cgroup C(path) lies in C(unit)'s cgroup (the unit name is one of its components)."""
    return unit in path.rstrip('/').split('/')


def cgroup_in_unit(text, unit):
    """Whether the C(/proc/<pid>/cgroup) C(text) puts the process in C(unit)."""
    return any(path_in_unit(path, unit) for path in tracking_paths(parse_cgroup(text)))


def read_cgroup(pid, proc_root=None):
    """The text of C(/proc/<pid>/cgroup), or C(None) if the process is gone or unreadable."""
    try:
        return _read(os.path.join(proc_root or PROC_ROOT, str(pid), 'cgroup'))
    except (IOError, OSError):
        return None


def pid_in_unit(pid, unit, proc_root=None):
    text = read_cgroup(pid, proc_root)
    return text is not None and cgroup_in_unit(text, unit)


def unit_pids(unit, proc_root=None, strict=False):
    """PIDs of every process in C(unit)'s cgroup (main process, workers, survivors), sorted.

    Processes that vanish while scanning are skipped. C(/proc/<pid>/cgroup) is world-readable, so
    this needs no privileges. With C(strict=True) a C(proc_root) that cannot be listed raises C(OSError).
    """
    return [pid for pid in list_pids(proc_root, strict=strict) if pid_in_unit(pid, unit, proc_root)]


def process_info(pid, proc_root=None):
    """C({pid, comm, cmdline}) for a process; C(comm)/C(cmdline) are C(None) when it is gone."""
    base = os.path.join(proc_root or PROC_ROOT, str(pid))
    comm = None
    cmdline = None
    try:
        comm = _read(os.path.join(base, 'comm')).rstrip('\n')
    except (IOError, OSError):
        pass
    try:
        raw = _read(os.path.join(base, 'cmdline'), 'rb')
        cmdline = raw.rstrip(b'\0').replace(b'\0', b' ').decode('utf-8', 'replace') or None
    except (IOError, OSError):
        pass
    return {'pid': int(pid), 'comm': comm, 'cmdline': cmdline}


def process_name(pid, proc_root=None):
    """The best short name of a process: C(comm), else the first word of C(cmdline), else C(None)."""
    info = process_info(pid, proc_root)
    if info['comm']:
        return info['comm']
    if info['cmdline']:
        return info['cmdline'].split(' ', 1)[0]
    return None


def kill_in_unit(pid, unit, proc_root=None, sig=signal.SIGKILL, kill=None):
    """Send C(sig) to C(pid) only if it is (still) in C(unit)'s cgroup.

    The cgroup is read again right before the kill, so a PID reused by an unrelated process is never
    signalled. Returns C('killed'), C('gone') (no such process) or C('not_in_unit'). A permission
    error propagates as C(OSError) for the caller to report.
    """
    if not pid_in_unit(pid, unit, proc_root):
        return 'gone' if read_cgroup(pid, proc_root) is None else 'not_in_unit'
    try:
        (kill or os.kill)(pid, sig)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return 'gone'
        raise
    return 'killed'


# ------------------------------------------------------------------------------------- units

def unit_name(name):
    """C(name) with C(.service) appended when it has no C(.) at all (C(my.app) stays as it is)."""
    return name if '.' in name else name + '.service'


def read_units(units, proc_root=None):
    """One C({unit, processes}) record per unit, in order; each process is C({pid, name, cmdline}).

    Processes that exit while they are read are left out.
    """
    records = []
    for unit in units:
        processes = []
        for pid in unit_pids(unit, proc_root):
            info = process_info(pid, proc_root)
            if info['comm'] is None and info['cmdline'] is None:
                continue  # it exited while we looked
            processes.append({'pid': pid, 'name': process_name(pid, proc_root) or info['comm'], 'cmdline': info['cmdline']})
        records.append({'unit': unit, 'processes': processes})
    return records


def check_units(units, expect_empty, proc_root=None):
    """The C(unit_processes) module's work: return C((result, failure_msg)).

    C(units) are names as the user gave them (normalized with C(unit_name())). C(result) is
    C({changed: False, units: read_units(...), empty, count}); C(failure_msg) is None, or, when
    C(expect_empty) and a process is left, the message naming each one (not put in C(result)).
    A unit name that cannot be one (a NUL byte, a control character, a C(/)) or a C(/proc) that
    cannot be listed is a failure with C(empty) and C(count) null: unknown, never "empty".
    """
    for index, name in enumerate(units or ()):
        problem = _systemd.unit_name_problem(name)
        if problem:
            return (dict(changed=False, units=[], empty=None, count=None),
                    'units[%d] (%r) %s; give systemd unit names such as model-server@llama.service' % (index, name, problem))
    root = proc_root or PROC_ROOT
    try:
        list_pids(root, strict=True)
    except OSError as exc:
        return (dict(changed=False, units=[], empty=None, count=None),
                'cannot list the processes in %s (%s), so whether processes are left in the units is unknown. '
                'What to do: run where /proc is mounted and readable' % (root, exc))
    records = read_units([unit_name(name) for name in units], proc_root)
    count = sum(len(record['processes']) for record in records)
    result = dict(changed=False, units=records, empty=count == 0, count=count)
    if not (count and expect_empty):
        return result, None
    left = '; '.join('%s: %s' % (record['unit'], ', '.join('PID %s (%s)' % (p['pid'], p['name']) for p in record['processes']))
                     for record in records if record['processes'])
    return result, ('%d process(es) are still running in the cgroups of stopped units (%s). '
                    'Find out why they outlived the stop (KillMode=process? a detached worker?) and stop '
                    'or kill them.' % (count, left))
