# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drain-time sanity: does a host stopped outside a rollout (a reboot, a C(systemctl stop) by hand) cut requests?

Private to this collection. Three numbers per unit, the way Kubernetes users check
C(terminationGracePeriodSeconds >= preStop + shutdown timeout):

* C(TimeoutStopSec) of the unit (C(systemctl show -p TimeoutStopUSec)): after it, systemd SIGKILLs;
* the server's own shutdown window, the longest it drains in-flight requests after SIGTERM, read from its
  command line (C(ExecStart=)) and environment (C(Environment=), C(EnvironmentFiles=)):

  - vLLM (C(vllm serve), C(python -m vllm.entrypoints...)): C(--shutdown-timeout) seconds; 0 (the default) aborts
    every in-flight request on SIGTERM (vllm-project/vllm#36666); unknown when a C(--config) file could set it;
  - Triton (C(tritonserver)): C(--exit-timeout-secs), default 30;
  - SGLang (C(python -m sglang.launch_server)): drains until nothing is in flight, with no bound of its own
    (C(TokenizerManager.sigterm_watchdog)); C(SGL_FORCE_SHUTDOWN) set makes it exit at once (window 0);
  - TGI (C(text-generation-launcher)): no flag for it; its window is unknown (a maintainer gave a fixed 90 s in
    huggingface/text-generation-inference#2035, 2024, which is not read here);
  - the collection's reference server (C(model_server.py), C(tests/fleet/model_server.py)): C(DRAIN_TIMEOUT), default 30;
  - anything else: unknown, unless the caller declares the server (C(server: {kind, shutdown_seconds})).

* the load balancer's detection time (HAProxy's C(inter + (fall - 1) * fastinter), from
  C(modelops.shutdown.lb_batch_state)'s C(health_checks)).

Findings (C(kind)), each with the numbers and the fix:

* C(sigkill_before_drain): C(TimeoutStopSec < window + margin): systemd SIGKILLs the server mid-drain;
* C(drain_shorter_than_detection): C(window < detection): the server is gone before the LB marks it C(DOWN),
  so the requests the LB still sends it in between find a closed port;
* C(vllm_aborts_in_flight): vLLM with C(--shutdown-timeout) 0: SIGTERM aborts every in-flight request;
* C(unknown): a number could not be read (C(TimeoutStopSec=infinity) included): reported, not a failure.

Status per unit and host: C(warn) when any of the first three, else C(unknown) when any unknown, else C(ok).
"""

from __future__ import annotations

import math
import os
import re

from ansible_collections.modelops.shutdown.plugins.module_utils import _systemd

DEFAULT_MARGIN = 5.0
SHOW_PROPERTIES = ('Id', 'LoadState', 'TimeoutStopUSec', 'ExecStart', 'KillSignal', 'KillMode', 'SendSIGKILL',
                   'FinalKillSignal', 'Environment', 'EnvironmentFiles', 'FragmentPath', 'DropInPaths')
FINDING_KINDS = ('sigkill_before_drain', 'drain_shorter_than_detection', 'vllm_aborts_in_flight', 'unknown')
WARN_KINDS = ('sigkill_before_drain', 'drain_shorter_than_detection', 'vllm_aborts_in_flight')
DROPIN_NAME = 'zz-drain-timing.conf'
UNIT_DIR = '/etc/systemd/system'
MAX_ENV_FILE_BYTES = 1024 * 1024
# Signals each kind drains on (systemd's KillSignal=); SIGTERM for every kind, SIGINT too for the reference server.
DRAIN_SIGNALS = {'reference': (15, 2), 'vllm': (15, 2)}

_PYTHON = re.compile(r'^python[0-9.]*$')
_NUMBER = re.compile(r'^[0-9]+(?:\.[0-9]+)?$')


def _num(value):
    """A float from C(value) when it is a plain non-negative decimal number, else C(None)."""
    value = (value or '').strip()
    return float(value) if _NUMBER.match(value) else None


def _fmt(seconds):
    if seconds is None:
        return 'unknown'
    if math.isinf(seconds):
        return 'infinity'
    return ('%d' % seconds) if float(seconds) == int(seconds) else ('%g' % seconds)


# --------------------------------------------------------------------------------- the command line

def _strip_wrappers(argv):
    """The program and its arguments under C(env VAR=.. prog ...) and C(python [-opts] (-m mod | script));
    returns C((program, args, env_from_argv)) where program is C('-m <module>') for C(python -m), or C(None)."""
    env = {}
    argv = list(argv)
    if argv and os.path.basename(argv[0]) == 'env':
        argv = argv[1:]
        while argv and '=' in argv[0] and not argv[0].startswith('-'):
            name, value = argv[0].split('=', 1)
            env[name] = value
            argv = argv[1:]
        if argv and argv[0].startswith('-'):
            return None, [], env
    if not argv:
        return None, [], env
    prog = os.path.basename(argv[0])
    if _PYTHON.match(prog):
        rest = argv[1:]
        while rest:
            word = rest[0]
            if word == '-m' and len(rest) > 1:
                return '-m ' + rest[1], rest[2:], env
            if word in ('-X', '-W'):
                rest = rest[2:]
            elif re.match(r'^-[bBdEhiIOqsSuvx]+$', word):
                rest = rest[1:]
            elif word.startswith('-'):
                return None, [], env
            else:
                return os.path.basename(word), rest[1:], env
        return None, [], env
    return prog, argv[1:], env


def _flag(args, name):
    """The value of C(--name V) or C(--name=V) (the last one given), C(None) when absent; C(False) when malformed."""
    value = None
    index = 0
    while index < len(args):
        word = args[index]
        if word == name:
            if index + 1 >= len(args):
                return False
            value = args[index + 1]
            index += 1
        elif word.startswith(name + '='):
            value = word[len(name) + 1:]
        index += 1
    return value


def identify_server(argv, env):
    """What server C(argv) runs and its shutdown window.

    Returns C({kind, shutdown_seconds, source, note}); C(kind) is C(None) for a server this does not know,
    C(shutdown_seconds) C(None) when unknown and C(inf) for a server that drains with no bound of its own.
    """
    prog, args, argv_env = _strip_wrappers(argv)
    env = dict(env or {})
    env.update(argv_env)
    if prog is None:
        return {'kind': None, 'shutdown_seconds': None, 'source': None,
                'note': 'the command line (%s) is not one this check reads' % ' '.join(argv)}
    if (prog == 'vllm' and args[:1] == ['serve']) or prog.startswith('-m vllm.entrypoints'):
        value = _flag(args, '--shutdown-timeout')
        if value is None:
            if _flag(args, '--config') not in (None, False):
                return {'kind': 'vllm', 'shutdown_seconds': None, 'source': '--config',
                        'note': 'vLLM reads --shutdown-timeout from its --config file too, which this check does not read'}
            return {'kind': 'vllm', 'shutdown_seconds': 0.0, 'source': '--shutdown-timeout (not given, default 0)',
                    'note': None}
        seconds = _num(value) if value is not False else None
        if seconds is None:
            return {'kind': 'vllm', 'shutdown_seconds': None, 'source': '--shutdown-timeout',
                    'note': '--shutdown-timeout %r is not a number of seconds' % (value,)}
        return {'kind': 'vllm', 'shutdown_seconds': seconds, 'source': '--shutdown-timeout', 'note': None}
    if prog == 'tritonserver':
        value = _flag(args, '--exit-timeout-secs')
        if value is None:
            return {'kind': 'triton', 'shutdown_seconds': 30.0, 'source': '--exit-timeout-secs (not given, default 30)',
                    'note': None}
        seconds = _num(value) if value is not False else None
        if seconds is None:
            return {'kind': 'triton', 'shutdown_seconds': None, 'source': '--exit-timeout-secs',
                    'note': '--exit-timeout-secs %r is not a number of seconds' % (value,)}
        return {'kind': 'triton', 'shutdown_seconds': seconds, 'source': '--exit-timeout-secs', 'note': None}
    if prog == '-m sglang.launch_server':
        if env.get('SGL_FORCE_SHUTDOWN', '').strip().lower() in ('1', 'true', 'yes', 'on'):
            return {'kind': 'sglang', 'shutdown_seconds': 0.0, 'source': 'SGL_FORCE_SHUTDOWN',
                    'note': 'SGL_FORCE_SHUTDOWN makes SGLang exit at once on SIGTERM'}
        return {'kind': 'sglang', 'shutdown_seconds': float('inf'), 'source': 'SGLang drains until idle',
                'note': 'SGLang drains on SIGTERM until nothing is in flight, with no bound of its own: '
                        'TimeoutStopSec is the only bound'}
    if prog == 'text-generation-launcher':
        return {'kind': 'tgi', 'shutdown_seconds': None, 'source': None,
                'note': 'TGI has no option for its shutdown window; declare it with the server option '
                        '(kind tgi, shutdown_seconds) to have it compared'}
    if prog == 'model_server.py':
        raw = env.get('DRAIN_TIMEOUT')
        if raw is None or not raw.strip():
            return {'kind': 'reference', 'shutdown_seconds': 30.0, 'source': 'DRAIN_TIMEOUT (not set, default 30)',
                    'note': None}
        seconds = _num(raw)
        if seconds is None:
            return {'kind': 'reference', 'shutdown_seconds': None, 'source': 'DRAIN_TIMEOUT',
                    'note': 'DRAIN_TIMEOUT=%r is not a number of seconds' % (raw,)}
        return {'kind': 'reference', 'shutdown_seconds': seconds, 'source': 'DRAIN_TIMEOUT', 'note': None}
    return {'kind': None, 'shutdown_seconds': None, 'source': None,
            'note': '%s is not a server this check knows (vllm, tritonserver, sglang.launch_server, '
                    'text-generation-launcher, model_server.py); declare it with the server option' % prog}


# --------------------------------------------------------------------------------- reading a unit

def unit_environment(show_text, read_file):
    """The environment systemd gives the unit: C(Environment=), then each C(EnvironmentFiles=) entry over it
    (settings from files override C(Environment=)). Returns C((env, problems))."""
    problems = []
    props = _systemd.parse_show_one(show_text)
    env = _systemd.parse_environment(props.get('Environment', ''))
    if env is None:
        problems.append('Environment=%s could not be split' % props.get('Environment'))
        env = {}
    for entry in _systemd.show_values(show_text, 'EnvironmentFiles'):
        if not entry.strip():
            continue
        parsed = _systemd.parse_environment_file_entry(entry)
        if parsed is None:
            problems.append('EnvironmentFiles=%s is not in the form this check reads' % entry)
            continue
        path, ignore_errors = parsed
        try:
            env.update(_systemd.parse_environment_file(read_file(path)))
        except (IOError, OSError) as exc:
            if not ignore_errors:
                problems.append('cannot read %s: %s' % (path, exc))
    return env, problems


def read_unit(show_text, read_file, override=None):
    """The unit's stop settings and its server, from its C(systemctl show) output (C(SHOW_PROPERTIES))."""
    props = _systemd.parse_show_one(show_text)
    timeout_raw = props.get('TimeoutStopUSec')
    timeout = _systemd.parse_timespan(timeout_raw)
    if timeout_raw and timeout_raw.strip() == 'infinity':
        timeout = float('inf')
    record = {
        'unit': props.get('Id'), 'load_state': props.get('LoadState'),
        'timeout_stop_sec': timeout, 'timeout_stop_raw': timeout_raw,
        'kill_signal': _int(props.get('KillSignal')), 'kill_mode': props.get('KillMode'),
        'send_sigkill': props.get('SendSIGKILL', 'yes') != 'no',
        'fragment_path': props.get('FragmentPath') or None,
        'drop_in_paths': (props.get('DropInPaths') or '').split() or [],
        'argv': None, 'server': None, 'problems': [],
    }
    commands = [value for value in _systemd.show_values(show_text, 'ExecStart') if value.strip()]
    parsed = _systemd.parse_exec_command(commands[0]) if len(commands) == 1 else None
    env, problems = unit_environment(show_text, read_file)
    record['problems'].extend(problems)
    if override:
        record['server'] = {'kind': override['kind'], 'shutdown_seconds': float(override['shutdown_seconds']),
                            'source': 'the server option', 'note': None}
        record['argv'] = parsed[1] if parsed else None
        return record
    if parsed is None:
        record['server'] = {'kind': None, 'shutdown_seconds': None, 'source': None,
                            'note': 'ExecStart= (%s) is not one command in the form this check reads'
                                    % ('; '.join(commands) or 'empty')}
        return record
    record['argv'] = parsed[1]
    record['server'] = identify_server(parsed[1], env)
    return record


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------- the comparison

def dropin_path(unit):
    return os.path.join(UNIT_DIR, unit + '.d', DROPIN_NAME)


def _finding(kind, message, fix, **numbers):
    return dict({'kind': kind, 'message': message, 'fix': fix}, **numbers)


def compare(unit, health_checks, margin=DEFAULT_MARGIN):
    """Findings for one unit record (C(read_unit())) against the host's LB C(health_checks) entries."""
    findings = []
    name = unit['unit']
    server = unit['server'] or {}
    window = server.get('shutdown_seconds')
    kind = server.get('kind')
    timeout = unit['timeout_stop_sec']
    label = '%s (%s)' % (name, kind or 'unknown server')
    if window is None:
        findings.append(_finding('unknown', '%s: the server\'s own shutdown window is unknown: %s' % (
            name, server.get('note') or 'it could not be read'), None, window_seconds=None))
    for problem in unit['problems']:
        findings.append(_finding('unknown', '%s: %s' % (name, problem), None))
    # (c) vLLM aborting on SIGTERM.
    if kind == 'vllm' and window == 0:
        findings.append(_finding(
            'vllm_aborts_in_flight',
            '%s: vLLM runs with --shutdown-timeout 0 (%s): SIGTERM aborts every request in flight' % (
                name, server.get('source')),
            'start vLLM with --shutdown-timeout=<seconds of your longest request> (and TimeoutStopSec at least that '
            'plus %s s)' % _fmt(margin),
            window_seconds=0.0))
    # (a) SIGKILL before the drain can end.
    if timeout is None:
        findings.append(_finding('unknown', '%s: TimeoutStopSec=%s could not be read' % (name, unit['timeout_stop_raw']),
                                 None, timeout_stop_sec=None))
    elif math.isinf(timeout):
        findings.append(_finding('unknown', '%s: TimeoutStopSec=infinity: systemd never SIGKILLs it, so a stop waits '
                                            'as long as the server drains' % name, None, timeout_stop_sec=None))
    elif window is not None and unit['send_sigkill']:
        if math.isinf(window):
            findings.append(_finding('unknown', '%s: %s; TimeoutStopSec=%s s ends whatever runs longer' % (
                name, server.get('note'), _fmt(timeout)), None, timeout_stop_sec=timeout))
        elif timeout < window + margin:
            need = window + margin
            path = dropin_path(name)
            findings.append(_finding(
                'sigkill_before_drain',
                '%s: TimeoutStopSec=%s s is shorter than the server\'s own shutdown window %s s (%s) + %s s margin: '
                'a stop outside a rollout SIGKILLs it mid-drain, cutting what is still in flight' % (
                    label, _fmt(timeout), _fmt(window), server.get('source'), _fmt(margin)),
                'raise TimeoutStopSec to %s s: write %s with "[Service]\\nTimeoutStopSec=%s", then run '
                'systemctl daemon-reload' % (_fmt(need), path, _fmt(math.ceil(need))),
                timeout_stop_sec=timeout, window_seconds=window, margin_seconds=margin,
                needed_seconds=need, dropin={'path': path, 'content': '[Service]\nTimeoutStopSec=%s\n' % _fmt(math.ceil(need))}))
    # (b) gone before the LB notices.
    if window is not None and not math.isinf(window):
        for check in health_checks or []:
            detection = check.get('detection_seconds')
            where = '%s/%s' % (check.get('backend'), check.get('server'))
            lb = check.get('lb') or check.get('source') or 'the load balancer'
            if detection is None and check.get('error'):
                findings.append(_finding('unknown', '%s: how long %s takes to notice %s is gone is unknown: %s' % (
                    name, lb, where, check['error']), None, backend=check.get('backend'), server=check.get('server')))
                continue
            if detection is None:
                findings.append(_finding('unknown', '%s: %s has no usable health check (%s): the load balancer never '
                                                    'marks it DOWN by itself' % (name, where, lb),
                                         None, backend=check.get('backend'), server=check.get('server')))
                continue
            if window < detection:
                inter = check.get('inter_seconds')
                fall = check.get('fall')
                fastinter = check.get('fastinter_seconds')
                fits = _lower_checks(window, inter, fall, fastinter)
                findings.append(_finding(
                    'drain_shorter_than_detection',
                    '%s: the server\'s own shutdown ends after at most %s s (%s), but %s needs up to %s s to mark %s '
                    'DOWN (inter %s s, fall %s, fastinter %s s): for %s s after a stop outside a rollout it still '
                    'sends new requests to a closed port' % (
                        label, _fmt(window), server.get('source'), lb, _fmt(detection), where, _fmt(inter), fall,
                        _fmt(fastinter), _fmt(detection - window)),
                    'stop it through the rollout (it drains on the load balancer first); or raise the server\'s window '
                    'to at least %s s (%s); or lower the health check to %s' % (
                        _fmt(math.ceil(detection)), _window_option(kind, detection), fits),
                    window_seconds=window, detection_seconds=detection, backend=check.get('backend'),
                    server=check.get('server'), inter_seconds=inter, fall=fall, fastinter_seconds=fastinter))
    return findings


def _window_option(kind, seconds):
    value = _fmt(math.ceil(seconds))
    return {
        'vllm': '--shutdown-timeout=%s' % value,
        'triton': '--exit-timeout-secs=%s' % value,
        'reference': 'DRAIN_TIMEOUT=%s in the instance\'s environment file' % value,
    }.get(kind, 'the server\'s own shutdown timeout')


def _lower_checks(window, inter, fall, fastinter):
    """Health-check numbers whose detection time fits in C(window): fall kept, inter (and fastinter) lowered."""
    if not fall or window <= 0:
        return 'a detection time under the window (stop through the rollout instead: the window is 0)'
    # inter + (fall - 1) * fastinter <= window, with fastinter = inter: inter <= window / fall
    step = math.floor(window / fall * 1000) / 1000.0
    if step < 0.1:
        return 'a detection time under %s s (inter x fall)' % _fmt(window)
    return '"inter %dms fastinter %dms fall %d" (detection %s s)' % (
        int(step * 1000), int(step * 1000), fall, _fmt(round(step * fall, 3)))


def status(findings):
    kinds = set(f['kind'] for f in findings)
    if kinds & set(WARN_KINDS):
        return 'warn'
    if 'unknown' in kinds:
        return 'unknown'
    return 'ok'


def summary_line(host, units):
    """One line per host: the numbers of each unit and its status."""
    parts = []
    for unit in units:
        server = unit.get('server') or {}
        parts.append('%s: TimeoutStopSec=%s window=%s (%s) detection=%s -> %s' % (
            unit['unit'], unit.get('timeout_stop_raw') if unit.get('timeout_stop_sec') is None else _fmt(unit['timeout_stop_sec']),
            'unbounded' if server.get('unbounded') else _fmt(server.get('shutdown_seconds')),
            server.get('kind') or 'unknown', _fmt(unit.get('detection_seconds')), unit['status']))
    return ('%s ' % host if host else '') + ('; '.join(parts) if parts else 'no units')


class DrainTimingCheck(object):
    """Reads each unit (C(systemctl.show_text(unit)) and files through C(read_file)) and compares."""

    def __init__(self, show_text, read_file, margin=DEFAULT_MARGIN, override=None):
        self.show_text = show_text
        self.read_file = read_file
        self.margin = margin
        self.override = override

    def run(self, units, health_checks, host=''):
        records = []
        for unit in units:
            record = read_unit(self.show_text(unit), self.read_file, self.override)
            record['unit'] = record['unit'] or unit
            detections = [c.get('detection_seconds') for c in health_checks or [] if c.get('detection_seconds') is not None]
            record['detection_seconds'] = max(detections) if detections else None
            if record['load_state'] == 'not-found':
                record['findings'] = [_finding('unknown', '%s: no such unit' % unit, None)]
            else:
                record['findings'] = compare(record, health_checks, self.margin)
            record['status'] = status(record['findings'])
            records.append(record)
        findings = [f for r in records for f in r['findings']]
        records = [_public(r) for r in records]
        return {'units': records, 'findings': findings, 'status': status(findings),
                'summary': summary_line(host, records)}


def _public(record):
    """The record with infinite spans as null (JSON has no infinity): C(timeout_stop_raw) still says
    C(infinity), and C(server.unbounded) is true for a server that drains with no bound of its own."""
    record = dict(record)
    if record.get('timeout_stop_sec') is not None and math.isinf(record['timeout_stop_sec']):
        record['timeout_stop_sec'] = None
    server = dict(record.get('server') or {})
    unbounded = server.get('shutdown_seconds') is not None and math.isinf(server['shutdown_seconds'])
    if unbounded:
        server['shutdown_seconds'] = None
    server['unbounded'] = unbounded
    record['server'] = server
    return record
