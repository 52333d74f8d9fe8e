# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GPU release check of C(gpu_release_check), usable by any module.

Private to this collection. C(argument_spec()) and C(MODULE_KWARGS) are the module's options and
C(AnsibleModule) constraints; C(GpuReleaseChecker(...).run(params)) does the whole check and
returns C((result, failure_msg)) instead of calling C(exit_json)/C(fail_json)::

    checker = GpuReleaseChecker(module.run_command, module.get_bin_path, module.check_mode, module.warn)
    result, failure_msg = checker.run(module.params)

Every nvidia-smi, amd-smi and rocm-smi command has a deadline (C(TOOL_TIMEOUT) seconds):
C(AnsibleModule.run_command) has no timeout of its own (ansible-core 2.19), so the command runs under
coreutils C(timeout) when that is on the PATH, and otherwise a watchdog thread, handed the process
through run_command's C(before_communicate_callback), terminates it (then kills it) at the deadline.
Either way a command that ran past it raises C(GpuError(kind='tool_timeout')).

Whatever cannot be known (a tool that failed, hung or printed something unreadable, a C(/proc) that
cannot be listed) makes the result's C(state) V(unknown): never V(released).
"""

from __future__ import annotations

import math
import os
import re
import socket
import threading
import time

from ansible_collections.modelops.shutdown.plugins.module_utils import _gpu
from ansible_collections.modelops.shutdown.plugins.module_utils import _procs
from ansible_collections.modelops.shutdown.plugins.module_utils import _systemd
from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until

# Seconds one nvidia-smi / rocm-smi call may take; a GPU falling off the bus can hang them for minutes.
TOOL_TIMEOUT = 60.0
# Seconds timeout(1) waits after SIGTERM before SIGKILL.
TOOL_KILL_AFTER = 5
# Exit codes of timeout(1) for a command it stopped: SIGTERM worked (124), SIGKILL was needed (137).
_TIMED_OUT_RC = (124, 137)

MODULE_KWARGS = dict(
    required_if=[
        ('kill_orphans', True, ('unit',)),
        ('no_processes', False, ('max_memory_used_mib',)),
    ],
)


def argument_spec():
    """The options of C(gpu_release_check)."""
    return dict(
        backend=dict(type='str', default='auto', choices=['auto'] + list(_gpu.BACKENDS)),
        nvidia_smi_path=dict(type='path'),
        amd_smi_path=dict(type='path'),
        rocm_smi_path=dict(type='path'),
        pids=dict(type='list', elements='int'),
        unit=dict(type='str'),
        process_name=dict(type='str'),
        gpus=dict(type='list', elements='str'),
        no_processes=dict(type='bool', default=True),
        max_memory_used_mib=dict(type='int'),
        timeout=dict(type='float', default=30),
        poll_interval=dict(type='float', default=1),
        kill_orphans=dict(type='bool', default=False),
    )


def _with_defaults(params):
    """C(params) with every option present, missing ones set to their default (or C(None))."""
    full = dict((name, spec.get('default')) for name, spec in argument_spec().items())
    full.update(params or {})
    return full


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The command-line tools, in the order O(backend=auto) prefers them when their path is given: backend name,
# its path option, and the name of its query function in _gpu (looked up at call time).
TOOLS = (
    ('nvidia-smi', 'nvidia_smi_path', 'query_nvidia_smi'),
    ('amd-smi', 'amd_smi_path', 'query_amd_smi'),
    ('rocm-smi', 'rocm_smi_path', 'query_rocm_smi'),
)


def _validate(params):
    """The first problem with C(params) that C(AnsibleModule) does not catch itself, or C(None)."""
    for key, value, requirements in MODULE_KWARGS['required_if']:
        if params.get(key) == value:
            missing = [name for name in requirements if params.get(name) is None]
            if missing:
                return '%s is %s but all of the following are missing: %s' % (key, value, ', '.join(missing))
    for tool, name, _query in TOOLS:
        value = params.get(name)
        if value is not None and (not isinstance(value, str) or '\x00' in value):
            return '%s must be a path without NUL bytes, got %r' % (name, value)
        if value is not None and not value.startswith('/'):
            # A relative name would run whatever the PATH (or the working directory) holds under that name.
            return ('%s must be the absolute path of the %s executable (e.g. /usr/bin/%s), got %r'
                    % (name, tool, tool, value))
    if params.get('unit'):
        problem = _systemd.unit_name_problem(params['unit'])
        if problem:
            return 'unit %r %s; give a systemd unit name such as model-server@llama.service' % (params['unit'], problem)
    for name in ('timeout', 'poll_interval'):
        value = params[name]
        if not _is_number(value) or not math.isfinite(value):
            return '%s must be a finite number of seconds, got %s' % (name, value)
    if params['timeout'] < 0:
        return 'timeout must be 0 or more seconds, got %s' % params['timeout']
    if params['poll_interval'] <= 0:
        return 'poll_interval must be more than 0 seconds, got %s' % params['poll_interval']
    limit = params['max_memory_used_mib']
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        return 'max_memory_used_mib must be an integer, got %r' % (limit,)
    if limit is not None and limit < 0:
        return 'max_memory_used_mib must be 0 or more, got %s' % limit
    return None


def _exec_main_pid(run_command, get_bin_path, unit, warn=None):
    """The unit's last main PID (C(ExecMainPID)), with its active state; C((None, None)) if unknown."""
    warn = warn or (lambda msg: None)
    systemctl = get_bin_path('systemctl')
    if not systemctl:
        return None, None
    try:
        props = _systemd.Systemctl(run_command, systemctl).show(unit)
    except _systemd.SystemctlError as exc:
        warn('Could not read the last main PID of %s: %s' % (unit, exc))
        return None, None
    if props.get('LoadState') == 'not-found':
        warn('Unit %s is not loaded (LoadState=not-found); only processes still in a cgroup of that name count' % unit)
    pid = _systemd.unit_record(props)['exec_main_pid']
    return pid, props.get('ActiveState')


def _timed_out(argv, seconds, how):
    return _gpu.GpuError('%s did not finish within %gs and was stopped (%s). What to do: check dmesg for GPU errors (Xid) '
                         'and whether the driver hangs, or use backend: proc' % (argv[0], seconds, how), kind='tool_timeout')


def _watchdog(run_command, seconds):
    """C(run_command) with a watchdog: at the deadline the process gets SIGTERM, C(TOOL_KILL_AFTER) s later SIGKILL.

    The process comes from C(run_command)'s C(before_communicate_callback) (C(AnsibleModule.run_command)
    passes its C(Popen) object), so this needs no coreutils.
    """
    def run(argv):
        done = threading.Event()
        fired = []

        def watch(proc):
            if done.wait(seconds):
                return
            fired.append(True)
            for stop, grace in ((proc.terminate, TOOL_KILL_AFTER), (proc.kill, None)):
                try:
                    stop()
                except OSError:
                    return
                if grace is None or done.wait(grace):
                    return

        def arm(proc):
            threading.Thread(target=watch, args=(proc,), name='gpu-tool-deadline', daemon=True).start()

        try:
            rc, out, err = run_command(list(argv), before_communicate_callback=arm)
        finally:
            done.set()
        if fired:
            raise _timed_out(argv, seconds, 'SIGTERM, then SIGKILL, from this module; rc %s' % rc)
        return rc, out, err
    return run


def _with_deadline(run_command, get_bin_path, seconds):
    """C(run_command) running each argv with a deadline of C(seconds): under C(timeout <seconds>) when
    coreutils timeout is found, else under C(_watchdog()).

    A command stopped at its deadline raises C(GpuError(kind='tool_timeout')).
    """
    timeout_bin = get_bin_path('timeout')
    if not timeout_bin:
        return _watchdog(run_command, seconds)

    def run(argv):
        rc, out, err = run_command([timeout_bin, '-k', str(TOOL_KILL_AFTER), '%g' % seconds] + list(argv))
        if rc in _TIMED_OUT_RC:
            raise _timed_out(argv, seconds, 'rc %s from timeout' % rc)
        return rc, out, err
    return run


def _make_query(run_command, get_bin_path, backend, params, tool_timeout=TOOL_TIMEOUT):
    """A callable returning one snapshot of C(backend); raises C(GpuError) when the tool is missing."""
    for tool, option, query_name in TOOLS:
        if backend == tool:
            path = params.get(option) or get_bin_path(tool)
            if not path:
                raise _gpu.GpuError('%s is not on the PATH; set %s, or choose another backend' % (tool, option),
                                    kind='tool_missing')
            run = _with_deadline(run_command, get_bin_path, tool_timeout)
            query = getattr(_gpu, query_name)
            return lambda: query(run, path)
    if backend == 'nvml':
        nvml = _gpu.import_pynvml()
        return lambda: _gpu.query_nvml(nvml)
    return lambda: _gpu.query_proc(skip_pids=(os.getpid(),))


def _now():
    return round(time.time(), 3)


class GpuReleaseChecker(object):
    """Waits until the GPUs are released, optionally killing a unit's leftovers (see C(gpu_release_check)).

    C(run_command(argv)) returns C((rc, stdout, stderr)) and C(get_bin_path(name)) a path or C(None),
    as C(AnsibleModule)'s do. C(warn(msg)) receives warnings (ignored when C(None)). C(host) names the
    host in messages (default: this machine's hostname). C(tool_timeout) is the deadline of each GPU
    tool call, in seconds.
    """

    tool_timeout = TOOL_TIMEOUT

    def __init__(self, run_command, get_bin_path, check_mode=False, warn=None, host=None):
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.check_mode = check_mode
        self.warn = warn or (lambda msg: None)
        self.host = host

    def run(self, params):
        """Do the check. Returns C((result, failure_msg)): C(result) is what C(gpu_release_check) returns
        (C(msg) included, C(error_kind) when a GPU tool failed), plus C(started_at) and C(finished_at)
        (epoch seconds); C(failure_msg) is C(None) when the module would succeed, else its C(msg)."""
        result = dict(changed=False, released=False, state='unknown', gpus=[], holders=[], killed=[], unreadable_pids=[],
                      backend=None, waited_seconds=0.0, msg='', started_at=_now())
        failed = self._check(_with_defaults(params), result)
        result['finished_at'] = _now()
        state = result.pop('_state', None)
        if result.pop('argument_error', False) or result.get('error_kind'):
            state = 'unknown'
        result['state'] = 'released' if result['released'] else (state or 'held')
        return result, (result['msg'] if failed else None)

    def _check(self, params, result):
        """Fill C(result); return whether the check failed."""
        problem = _validate(params)
        if problem:
            result['msg'] = problem
            result['argument_error'] = True
            return True
        name_regex = None
        if params['process_name']:
            try:
                name_regex = re.compile(params['process_name'])
            except re.error as exc:
                result['msg'] = 'process_name %r is not a valid regular expression: %s' % (params['process_name'], exc)
                result['argument_error'] = True
                return True

        host = self.host or socket.gethostname()
        unit = _systemd.normalize_unit_name(params['unit']) if params['unit'] else None
        exec_main_pid, unit_active = (_exec_main_pid(self.run_command, self.get_bin_path, unit, self.warn)
                                      if unit else (None, None))

        requested = params['backend']
        if requested == 'auto':
            # A given tool path picks its tool.
            requested = next((tool for tool, option, _query in TOOLS if params[option]), 'auto')
        backend = _gpu.choose_backend(requested, self.get_bin_path, _gpu.import_pynvml() if requested == 'auto' else None)
        result['backend'] = backend

        holder_filter = _gpu.HolderFilter(pids=params['pids'], unit=unit, exec_main_pid=exec_main_pid,
                                          name_regex=name_regex, gpus=params['gpus'])

        def probe():
            return _gpu.evaluate(query(), holder_filter, params['no_processes'], params['max_memory_used_mib'])

        def done(value):
            # A GPU filter naming a GPU that is not there will not fix itself: stop waiting.
            return value['ok'] or bool(value['missing_gpus'])

        try:
            query = _make_query(self.run_command, self.get_bin_path, backend, params, self.tool_timeout)
            polled = poll_until(probe, done, params['timeout'], params['poll_interval'])
        except _gpu.GpuError as exc:
            result['msg'] = 'GPU check on %s failed (backend %s): %s' % (host, backend, exc)
            result['error_kind'] = exc.kind
            return True
        waited = polled.waited_seconds
        last = polled.last_value

        def fill(value):
            result.update(gpus=value['gpus'], holders=value['holders'], unreadable_pids=value['unreadable_pids'],
                          waited_seconds=round(waited, 3))

        fill(last)
        if not last['all_gpus'] and not last['holders']:
            result['released'] = True
            result['unreadable_pids'] = []
            result['msg'] = 'No GPU found on %s (backend %s)%s' % (host, backend, ': %s' % last['message'] if last['message'] else '')
            return False

        if last['missing_gpus']:
            result['msg'] = ('GPU(s) %s given in gpus are not on %s (present: %s). What to do: fix the gpus option'
                             % (', '.join(last['missing_gpus']), host,
                                ', '.join('%s (%s)' % (g['index'], g['uuid'] or g['name']) for g in last['all_gpus'])))
            result['argument_error'] = True
            return True

        if polled.satisfied:
            result['released'] = True
            result['msg'] = 'GPUs released on %s after %.1fs (%d GPU%s checked)' % (
                host, waited, len(last['gpus']), '' if len(last['gpus']) == 1 else 's')
            return False

        killed = []
        if params['kill_orphans']:
            pids = sorted(set(h['pid'] for h in last['holders'] if h.get('unit')))
            if pids and self.check_mode:
                result.update(killed=pids, changed=True)
                remaining = [h for h in last['holders'] if not h.get('unit')]
                if not remaining and not last['over_memory'] and not last['unreadable_pids']:
                    result['msg'] = ('Check mode: would send SIGKILL to PIDs %s left over in unit %s on %s, then check again'
                                     % (', '.join(str(p) for p in pids), unit, host))
                    return False
            elif pids:
                for pid in pids:
                    try:
                        outcome = _procs.kill_in_unit(pid, unit)
                    except OSError as exc:
                        result.update(killed=killed, changed=bool(killed))
                        result['msg'] = ('Could not SIGKILL PID %s of unit %s on %s: %s. What to do: run the task with become: true'
                                         % (pid, unit, host, exc))
                        return True
                    if outcome == 'killed':
                        killed.append(pid)
                result.update(killed=killed, changed=bool(killed))
                try:
                    again = poll_until(probe, done, params['timeout'], params['poll_interval'])
                except _gpu.GpuError as exc:
                    result['msg'] = 'GPU check on %s failed after killing PIDs %s (backend %s): %s' % (host, killed, backend, exc)
                    result['error_kind'] = exc.kind
                    return True
                waited += again.waited_seconds
                last = again.last_value
                fill(last)
                if again.satisfied:
                    result['released'] = True
                    result['msg'] = 'GPUs released on %s after SIGKILL of PIDs %s left over in unit %s (%.1fs)' % (
                        host, ', '.join(str(p) for p in killed), unit, waited)
                    return False

        # Held when a holder (or a GPU's memory over the limit) was seen; unknown when only unreadable
        # processes or unreported memory stand in the way.
        seen = bool(last['holders']) or any(g.get('memory_used_mib') is not None for g in last['over_memory'])
        result['_state'] = 'held' if seen else 'unknown'
        why = _gpu.describe_blockers(last, params['max_memory_used_mib'], unit, params['kill_orphans'])
        msg = 'GPUs on %s not released after %.1fs (backend %s)%s: %s' % (
            host, waited, backend, ', even after SIGKILL of PIDs %s' % ', '.join(str(p) for p in killed) if killed else '', why)
        if unit and unit_active in _systemd.ACTIVE_STATES:
            msg += '. Note: unit %s was still %s; stop it first (modelops.shutdown.unit_stop)' % (unit, unit_active)
        result['msg'] = msg
        return True
