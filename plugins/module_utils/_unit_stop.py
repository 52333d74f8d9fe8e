# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The workflow of the C(unit_stop) module: stop systemd units in order and classify how each ended.

Private to this collection. C(UnitStopper(run_command, systemctl_path, ...).run(params)) returns
C((result, failure_msg)): C(result) is the module's result (C(diff) always included), C(failure_msg)
is C(None) or the message to fail with (also in C(result['msg'])). Expected errors never raise.
"""

from __future__ import annotations

import math
import socket
import time

from ansible_collections.modelops.shutdown.plugins.module_utils import _systemd

DEFAULT_FAIL_ON = ('timeout_killed', 'timeout', 'failed', 'signal')

ADVICE = {
    'timeout_killed': ('%(explanation)s, so requests in flight may have been lost. What to do: drain it first, '
                       'raise timeout_stop_sec, or make the server exit on SIGTERM once drained'),
    'timeout': ('%(explanation)s. What to do: read journalctl -u %(unit)s to see which job or command timed out, and '
                'check its TimeoutStartSec=/TimeoutStopSec= and ExecStop='),
    'failed': ('ended with Result=%(result)s (%(exit)s). What to do: read journalctl -u %(unit)s'),
    'signal': ('was killed by a signal it did not handle (Result=%(result)s, %(exit)s) outside a stop timeout. '
               'What to do: read journalctl -u %(unit)s and coredumpctl list'),
    'not_found': ('is not loaded (LoadState=not-found). What to do: check the name; a templated unit needs its '
                  'instance, e.g. name@instance.service'),
    'running': ('is still %(active_state)s. What to do: stop it first, or look for what starts it '
                '(systemctl list-dependencies --reverse -- %(unit)s)'),
    'clean': ('ended cleanly (Result=success), and clean is listed in fail_on'),
}

# The smallest stop timeout a drop-in can carry: systemd reads TimeoutStopSec=0 as "no timeout".
MIN_TIMEOUT_STOP_SEC = 0.001


def argument_spec():
    """The C(unit_stop) module's argument spec (a new dict on every call)."""
    return dict(
        units=dict(type='list', elements='str', required=True),
        timeout_stop_sec=dict(type='float'),
        disable=dict(type='bool', default=False),
        mask=dict(type='bool', default=False),
        mask_runtime=dict(type='bool', default=False),
        fail_on=dict(type='list', elements='str', choices=list(_systemd.CLASSIFICATIONS),
                     default=list(DEFAULT_FAIL_ON)),
    )


def _options(params):
    """C(params) with missing or None options set to their defaults."""
    opts = dict((name, spec.get('default')) for name, spec in argument_spec().items())
    opts.update((name, value) for name, value in params.items() if name in opts and value is not None)
    return opts


def _state(props):
    return {'active_state': props.get('ActiveState'), 'unit_file_state': props.get('UnitFileState'),
            'masked': _systemd.is_masked(props)}


def _record(unit, props, was_active, stopped, timeout_stop_sec, stop_seconds, disabled, masked, error):
    rec = _systemd.unit_record(props)
    return {
        'unit': unit, 'was_active': was_active, 'stopped': stopped,
        'classification': rec['classification'], 'result': rec['result'], 'load_state': rec['load_state'],
        'active_state': rec['active_state'], 'sub_state': rec['sub_state'], 'unit_file_state': rec['unit_file_state'],
        'exec_main_code': rec['exec_main_code'], 'exec_main_status': rec['exec_main_status'],
        'exec_main_pid': rec['exec_main_pid'], 'exit': _systemd.describe_exit(props),
        'explanation': _systemd.explain(props, stopped=bool(stopped and stop_seconds is not None)),
        'timeout_stop_sec': timeout_stop_sec if stopped else rec['timeout_stop_sec'],
        'stop_seconds': stop_seconds, 'disabled': disabled, 'masked': masked,
        'changed': bool(stopped or disabled or masked), 'error': error,
    }


def _error_record(unit, error):
    """The record of a unit whose state could not be read."""
    return {'unit': unit, 'was_active': None, 'stopped': False, 'classification': None, 'result': None,
            'load_state': None, 'active_state': None, 'sub_state': None, 'unit_file_state': None,
            'exec_main_code': None, 'exec_main_status': None, 'exec_main_pid': None, 'exit': None,
            'explanation': None, 'timeout_stop_sec': None, 'stop_seconds': None, 'disabled': False, 'masked': False,
            'changed': False, 'error': error}


def _summary(rec):
    if rec['stopped'] and rec['stop_seconds'] is not None:
        head = 'stopped in %.1fs' % rec['stop_seconds']
    elif rec['stopped']:
        head = 'would be stopped'
    else:
        head = 'already %s' % rec['active_state']
    extra = [w for w, flag in (('disabled', rec['disabled']), ('masked', rec['masked'])) if flag]
    return '%s: %s, %s%s' % (rec['unit'], head, rec['classification'], (', ' + ', '.join(extra)) if extra else '')


def _join(*errors):
    return '; '.join(e for e in errors if e)


def _validate(names, units, opts):
    """The message for options C(run()) cannot work with, or None. C(names) are the names as given."""
    for index, name in enumerate(names):
        problem = _systemd.unit_name_problem(name) if name and name.strip() else None
        if problem:
            return 'units[%d] (%r) %s; give systemd unit names such as model-server@llama.service' % (index, name, problem)
    if not units:
        return 'units is empty: name at least one systemd unit'
    timeout = opts['timeout_stop_sec']
    if timeout is not None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not math.isfinite(timeout):
            return 'timeout_stop_sec must be a finite number of seconds, got %s' % (timeout,)
        if timeout <= 0:
            return 'timeout_stop_sec must be more than 0 seconds, got %s' % timeout
        if timeout < MIN_TIMEOUT_STOP_SEC:
            return ('timeout_stop_sec must be at least %s seconds (systemd reads a shorter one as 0, which means no '
                    'timeout), got %s' % (MIN_TIMEOUT_STOP_SEC, timeout))
        odd = [u for u in units if not u.endswith('.service')]
        if odd:
            return 'timeout_stop_sec applies to .service units only; not to %s' % ', '.join(odd)
    return None


class UnitStopper(object):
    """Stops units one after the other with C(systemctl) and reports how each ended.

    C(run_command(argv)) returns C((rc, stdout, stderr)); C(warn(msg)) (or None) receives warnings;
    C(host) names the host in failure messages (default: this host's name); C(clock) times the stops
    (monotonic seconds) and C(wall) stamps C(started_at)/C(finished_at) (epoch seconds).
    """

    def __init__(self, run_command, systemctl_path, check_mode=False, warn=None, host=None,
                 clock=time.monotonic, wall=time.time):
        self.ctl = _systemd.Systemctl(run_command, systemctl_path)
        self.check_mode = check_mode
        self.warn = warn
        self.host = host
        self.clock = clock
        self.wall = wall

    def _warn(self, msg):
        if self.warn is not None:
            self.warn(msg)

    def run(self, params):
        """Stop C(params['units']) (the module's options); return C((result, failure_msg))."""
        started_at = self.wall()
        start = self.clock()
        opts = _options(params)
        names = list(opts['units'] or [])
        failure = None
        units = []
        if all(isinstance(u, str) for u in names):
            units = [_systemd.normalize_unit_name(u) for u in names if u and u.strip()]
        else:
            failure = 'units must be a list of unit names (strings), got %r' % (names,)
        result = dict(changed=False, units=[], failed_units=[], msg='', diff={'before': {}, 'after': {}})
        failure = failure or _validate(names, units, opts)
        if failure is None:
            failure = self._stop_all(units, opts, result)
        if failure is not None:
            result['msg'] = failure
        result['started_at'] = round(started_at, 3)
        result['finished_at'] = round(self.wall(), 3)
        result['stop_seconds'] = round(self.clock() - start, 3)
        return result, failure

    def _stop_all(self, units, opts, result):
        """Handle every unit, filling C(result); return the failure message or None."""
        diff = result['diff']
        problems = []
        for unit in units:
            try:
                record, before, after = self._handle(unit, opts)
            except _systemd.SystemctlError as exc:
                record = _error_record(unit, str(exc))
                before = after = {}
            result['units'].append(record)
            diff['before'][unit] = before
            diff['after'][unit] = after
            why = self._problem(record, opts)
            if why:
                problems.append(why)
                result['failed_units'].append(unit)
        result['changed'] = any(r['changed'] for r in result['units'])
        if problems:
            host = self.host if self.host is not None else socket.gethostname()
            return 'unit_stop on %s: %s' % (host, ' | '.join(problems))
        result['msg'] = '; '.join(_summary(r) for r in result['units'])
        return None

    def _problem(self, record, opts):
        """Why C(record) fails the run, or None."""
        unit = record['unit']
        cls = record['classification']
        if record['error']:
            return record['error']
        if record['stopped'] and not self.check_mode and cls == 'running':
            return '%s is still %s after systemctl stop: something started it again. %s' % (
                unit, record['active_state'], 'What to do: look for what starts it (systemctl list-dependencies --reverse -- %s), '
                'or set mask: true' % unit)
        if cls in opts['fail_on'] and not (self.check_mode and record['stopped']):
            return '%s %s' % (unit, ADVICE.get(cls, cls) % record)
        return None

    def _install_timeout(self, unit, seconds):
        """Write the stop-timeout drop-in, reload, and check it took effect. Returns the effective seconds."""
        try:
            _systemd.write_stop_timeout_dropin(unit, seconds)
        except OSError as exc:
            raise _systemd.SystemctlError('Could not write the stop-timeout drop-in %s: %s. The unit was not stopped. '
                                          'What to do: run the task with become: true' % (_systemd.dropin_path(unit), exc))
        self.ctl.daemon_reload(unit)
        effective = _systemd.parse_timespan(self.ctl.show(unit).get('TimeoutStopUSec'))
        if effective is None or abs(effective - float(seconds)) > 0.001:
            raise _systemd.SystemctlError(
                'timeout_stop_sec %s did not take effect for %s (TimeoutStopUSec is %s after daemon-reload): another '
                'drop-in sorting after %s sets TimeoutStopSec. The unit was not stopped. What to do: remove that setting '
                'or drop timeout_stop_sec' % (seconds, unit, effective, _systemd.DROPIN_NAME))
        return effective

    def _remove_timeout(self, unit):
        try:
            if _systemd.remove_stop_timeout_dropin(unit):
                self.ctl.daemon_reload(unit)
        except (OSError, _systemd.SystemctlError) as exc:
            self._warn('Could not remove the stop-timeout drop-in %s: %s. Remove it and run systemctl daemon-reload'
                       % (_systemd.dropin_path(unit), exc))

    def _stop(self, unit, opts):
        """Stop C(unit) (with the timeout override); return C((stopped, timeout, stop_seconds, error))."""
        override = opts['timeout_stop_sec'] is not None
        timeout = None
        stop_seconds = None
        error = None
        try:
            if override:
                timeout = self._install_timeout(unit, opts['timeout_stop_sec'])
            start = self.clock()
            try:
                self.ctl.stop(unit)
            finally:
                stop_seconds = round(self.clock() - start, 3)
        except _systemd.SystemctlError as exc:
            error = str(exc)
        finally:
            if override:
                self._remove_timeout(unit)
        return stop_seconds is not None, timeout, stop_seconds, error

    def _handle(self, unit, opts):
        """Stop, disable and mask one unit; return C((record, diff_before, diff_after))."""
        check = self.check_mode
        ctl = self.ctl
        before = ctl.show(unit)
        was_active = _systemd.is_active(before)
        not_found = before.get('LoadState') == 'not-found'
        stopped = False
        stop_seconds = None
        timeout = _systemd.parse_timespan(before.get('TimeoutStopUSec'))
        error = None

        if was_active and not not_found:
            stopped = True
            if not check:
                stopped, effective, stop_seconds, error = self._stop(unit, opts)
                if effective is not None:
                    timeout = effective
        after = ctl.show(unit) if stopped and not check else before

        disabled = False
        state = after.get('UnitFileState', '')
        if opts['disable'] and not not_found and state in ('enabled', 'enabled-runtime'):
            disabled = True
            if not check:
                try:
                    ctl.disable(unit, runtime=(state == 'enabled-runtime'))
                except _systemd.SystemctlError as exc:
                    disabled = False
                    error = _join(error, str(exc))

        masked = False
        if opts['mask'] and not not_found:
            current = after.get('UnitFileState', '')
            already = (after.get('LoadState') == 'masked' or current == 'masked'
                       or (current == 'masked-runtime' and opts['mask_runtime']))
            if not already:
                masked = True
                if not check:
                    try:
                        ctl.mask(unit, runtime=opts['mask_runtime'])
                    except _systemd.SystemctlError as exc:
                        masked = False
                        error = _join(error, str(exc))

        if (disabled or masked) and not check:
            after = ctl.show(unit)

        predicted = dict(after)
        if check:
            if stopped:
                predicted.update(ActiveState='inactive')
            if disabled:
                predicted.update(UnitFileState='disabled')
            if masked:
                predicted.update(UnitFileState='masked-runtime' if opts['mask_runtime'] else 'masked')
        record = _record(unit, after, was_active, stopped, timeout, stop_seconds, disabled, masked, error)
        return record, _state(before), _state(predicted)
