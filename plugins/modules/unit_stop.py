#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: unit_stop
short_description: Stop systemd units in order and report how each one ended
version_added: 0.1.0
description:
  - Stops one or more systemd units, one after the other in the order given, and classifies how each
    ended from C(systemctl show) read B(after) the stop (C(Result), C(ExecMainCode), C(ExecMainStatus) and so on).
  - This is what C(systemctl stop) and M(ansible.builtin.systemd_service) do not tell you.
    C(systemctl stop) exits 0 even when the unit ignored SIGTERM and was killed with SIGKILL after its
    stop timeout, and M(ansible.builtin.systemd_service) returns the status read before the stop.
  - Optionally disables and masks the units afterwards so nothing starts them again.
  - A unit that is already inactive is not stopped again, but is still classified from its last
    C(Result). Every unit is handled even when an earlier one fails; the task fails at the end when a
    unit's classification is in O(fail_on), and the failure result still holds every unit's record.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports which units would be stopped, disabled and masked, and changes nothing. A unit that
        would be stopped is classified C(running) (its current state) and is not held against O(fail_on).
  diff_mode:
    support: full
    details:
      - Before and after C(active_state), C(unit_file_state) and C(masked) of each unit.
  idempotent:
    support: full
    details:
      - An inactive unit is not stopped, a disabled one not disabled, a masked one not masked. A unit
        whose last stop timed out is still classified C(timeout_killed) on the next run.
options:
  units:
    description:
      - Units to stop, in this order. A name without a unit-type suffix gets C(.service), so
        V(model-server@llama) means C(model-server@llama.service).
    type: list
    elements: str
    required: true
  timeout_stop_sec:
    description:
      - Overrides the units' C(TimeoutStopSec=) for this stop only (seconds, V(0) is not allowed).
      - Done with a runtime drop-in, C(/run/systemd/system/<unit>.d/zz-modelops-stop-timeout.conf)
        (mode 0644, named to sort after ordinary drop-ins), and C(systemctl daemon-reload). The effective
        C(TimeoutStopUSec) is read back before the stop; if another drop-in still wins, the unit is not
        stopped and the task fails. The drop-in is removed and the daemon reloaded again after the stop,
        also when it fails. It lives under C(/run), so one left behind by a crash is gone after a reboot.
      - Only for C(.service) units. Only units that are active get the drop-in.
    type: float
  disable:
    description:
      - After the stop, disable units whose C(UnitFileState) is C(enabled) (C(systemctl disable)) or
        C(enabled-runtime) (C(systemctl disable --runtime)). Units that are C(static), C(indirect),
        C(generated) and so on are left as they are.
    type: bool
    default: false
  mask:
    description:
      - After the stop, mask the units (C(systemctl mask)), so nothing can start them, not even as a
        dependency. Persistent, in C(/etc/systemd/system), unless O(mask_runtime=true).
      - Units that do not exist (C(LoadState=not-found)) are not masked.
    type: bool
    default: false
  mask_runtime:
    description:
      - Mask with C(systemctl mask --runtime) (under C(/run), gone after a reboot) instead.
      - A unit already masked at runtime is masked persistently when O(mask_runtime=false).
    type: bool
    default: false
  fail_on:
    description:
      - Classifications that fail the task. See RV(units[].classification).
      - A unit that is still active after a stop this module issued always fails the task.
      - Add V(not_found) to catch misspelt unit names.
    type: list
    elements: str
    choices: [clean, timeout_killed, failed, signal, not_found, running]
    default: [timeout_killed, failed, signal]
notes:
  - C(systemctl stop) waits for the stop job, that is up to C(TimeoutStopSec=) (and the final SIGKILL);
    a unit with C(TimeoutStopSec=infinity) can make this task wait forever, so set O(timeout_stop_sec) for such units.
  - A C(daemon-reload) (for O(timeout_stop_sec)) reloads every unit file of the host.
requirements:
  - systemd (C(systemctl)) on the target.
seealso:
  - module: ansible.builtin.systemd_service
  - module: modelops.shutdown.gpu_release_check
'''

EXAMPLES = r'''
- name: Stop the model servers, allowing 120s each to drain, and record how they ended
  modelops.shutdown.unit_stop:
    units:
      - model-server@llama.service
      - model-server@mistral.service
    timeout_stop_sec: 120
  register: stop
  become: true

- name: Stop, disable and mask for a retirement; do not fail, only record
  modelops.shutdown.unit_stop:
    units: [model-router, model-server@llama]
    disable: true
    mask: true
    fail_on: []
  become: true

- name: Show units that were SIGKILLed after their stop timeout
  ansible.builtin.debug:
    msg: "{{ stop.units | selectattr('classification', 'equalto', 'timeout_killed') | map(attribute='unit') | list }}"
'''

RETURN = r'''
units:
  description: One record per unit, in the order given. Also returned when the task fails.
  returned: always
  type: list
  elements: dict
  sample:
    - unit: model-server@llama.service
      was_active: true
      stopped: true
      classification: timeout_killed
      result: timeout
      load_state: loaded
      active_state: failed
      sub_state: failed
      unit_file_state: enabled
      exec_main_code: 2
      exec_main_status: 9
      exec_main_pid: 48211
      exit: killed by SIGKILL
      timeout_stop_sec: 90.0
      stop_seconds: 90.08
      disabled: false
      masked: false
      changed: true
      error: null
  contains:
    unit:
      description: Unit name (with C(.service) added when it had no suffix).
      type: str
      returned: always
      sample: model-server@llama.service
    was_active:
      description: Whether the unit was active (or activating, deactivating, reloading) before.
      type: bool
      returned: always
      sample: true
    stopped:
      description: Whether this task issued a stop (in check mode, would have).
      type: bool
      returned: always
      sample: true
    classification:
      description:
        - How the unit ended, from its state after the stop.
        - V(clean) C(Result=success) (exit 0, or killed by its stop's SIGTERM, or a C(SuccessExitStatus=)).
        - V(timeout_killed) C(Result=timeout) (did not stop within C(TimeoutStopSec=) and was SIGKILLed).
        - V(failed) C(Result=exit-code) or another failure result (see RV(units[].result)).
        - V(signal) C(Result=signal), C(core-dump) or C(oom-kill) (SIGKILL, SIGSEGV... outside a stop timeout).
        - V(not_found) C(LoadState=not-found). V(running) still active.
      type: str
      returned: always
      sample: timeout_killed
    result:
      description: Raw C(Result) property.
      type: str
      returned: always
      sample: timeout
    load_state:
      description: Raw C(LoadState).
      type: str
      returned: always
      sample: loaded
    active_state:
      description: Raw C(ActiveState) after the stop.
      type: str
      returned: always
      sample: failed
    sub_state:
      description: Raw C(SubState) after the stop.
      type: str
      returned: always
      sample: failed
    unit_file_state:
      description: Raw C(UnitFileState) at the end (after disabling or masking).
      type: str
      returned: always
      sample: enabled
    exec_main_code:
      description: C(ExecMainCode), the C(CLD_*) code of the main process's exit (1 exited, 2 killed, 3 dumped core).
      type: int
      returned: always
      sample: 2
    exec_main_status:
      description: C(ExecMainStatus), the exit status (C(exec_main_code) 1) or signal number (2, 3).
      type: int
      returned: always
      sample: 9
    exec_main_pid:
      description: C(ExecMainPID), the PID of the last main process.
      type: int
      returned: always
      sample: 48211
    exit:
      description: The main process's exit in words.
      type: str
      returned: always
      sample: killed by SIGKILL
    timeout_stop_sec:
      description: C(TimeoutStopUSec) in effect during the stop, in seconds; null for C(infinity).
      type: float
      returned: always
      sample: 90.0
    stop_seconds:
      description: How long C(systemctl stop) took; null when no stop was issued.
      type: float
      returned: always
      sample: 90.08
    disabled:
      description: Whether this task disabled the unit (in check mode, would have).
      type: bool
      returned: always
      sample: false
    masked:
      description: Whether this task masked the unit (in check mode, would have).
      type: bool
      returned: always
      sample: false
    changed:
      description: Whether anything was (or, in check mode, would be) done to this unit.
      type: bool
      returned: always
      sample: true
    error:
      description: A command that failed for this unit, or null.
      type: str
      returned: always
      sample: null
failed_units:
  description: Units whose classification is in O(fail_on), or that had an error.
  returned: always
  type: list
  elements: str
  sample: [model-server@llama.service]
msg:
  description: Summary, or for each failed unit what happened and what to do.
  returned: always
  type: str
  sample: "model-server@llama.service: stopped in 3.2s, clean"
'''

import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils import _systemd

ADVICE = {
    'timeout_killed': ('did not exit within its stop timeout and was killed with SIGKILL (Result=timeout), so requests '
                       'in flight may have been lost. What to do: drain it first, raise timeout_stop_sec, or make the '
                       'server exit on SIGTERM once drained'),
    'failed': ('ended with Result=%(result)s (%(exit)s). What to do: read journalctl -u %(unit)s'),
    'signal': ('was killed by a signal it did not handle (Result=%(result)s, %(exit)s) outside a stop timeout. '
               'What to do: read journalctl -u %(unit)s and coredumpctl list'),
    'not_found': ('is not loaded (LoadState=not-found). What to do: check the name; a templated unit needs its '
                  'instance, e.g. name@instance.service'),
    'running': ('is still %(active_state)s. What to do: stop it first, or look for what starts it '
                '(systemctl list-dependencies --reverse %(unit)s)'),
    'clean': ('ended cleanly (Result=success), and clean is listed in fail_on'),
}


def _state(props):
    return {'active_state': props.get('ActiveState'), 'unit_file_state': props.get('UnitFileState'),
            'masked': _systemd.is_masked(props)}


def _record(unit, props, was_active, stopped, timeout_stop_sec, stop_seconds, disabled, masked, error):
    rec = _systemd.unit_record(props)
    data = {
        'unit': unit, 'was_active': was_active, 'stopped': stopped,
        'classification': rec['classification'], 'result': rec['result'], 'load_state': rec['load_state'],
        'active_state': rec['active_state'], 'sub_state': rec['sub_state'], 'unit_file_state': rec['unit_file_state'],
        'exec_main_code': rec['exec_main_code'], 'exec_main_status': rec['exec_main_status'],
        'exec_main_pid': rec['exec_main_pid'], 'exit': _systemd.describe_exit(props),
        'timeout_stop_sec': timeout_stop_sec if stopped else rec['timeout_stop_sec'],
        'stop_seconds': stop_seconds, 'disabled': disabled, 'masked': masked,
        'changed': bool(stopped or disabled or masked), 'error': error,
    }
    return data


def _install_timeout(ctl, unit, seconds):
    """Write the stop-timeout drop-in, reload, and check it took effect. Returns the effective seconds."""
    try:
        _systemd.write_stop_timeout_dropin(unit, seconds)
    except OSError as exc:
        raise _systemd.SystemctlError('Could not write the stop-timeout drop-in %s: %s. The unit was not stopped. '
                                      'What to do: run the task with become: true' % (_systemd.dropin_path(unit), exc))
    ctl.daemon_reload(unit)
    effective = _systemd.parse_timespan(ctl.show(unit).get('TimeoutStopUSec'))
    if effective is None or abs(effective - float(seconds)) > 0.001:
        raise _systemd.SystemctlError(
            'timeout_stop_sec %s did not take effect for %s (TimeoutStopUSec is %s after daemon-reload): another '
            'drop-in sorting after %s sets TimeoutStopSec. The unit was not stopped. What to do: remove that setting '
            'or drop timeout_stop_sec' % (seconds, unit, effective, _systemd.DROPIN_NAME))
    return effective


def _remove_timeout(module, ctl, unit):
    try:
        if _systemd.remove_stop_timeout_dropin(unit):
            ctl.daemon_reload(unit)
    except (OSError, _systemd.SystemctlError) as exc:
        module.warn('Could not remove the stop-timeout drop-in %s: %s. Remove it and run systemctl daemon-reload'
                    % (_systemd.dropin_path(unit), exc))


def _handle(module, ctl, unit):
    params = module.params
    before = ctl.show(unit)
    was_active = _systemd.is_active(before)
    not_found = before.get('LoadState') == 'not-found'
    stopped = False
    stop_seconds = None
    timeout = _systemd.parse_timespan(before.get('TimeoutStopUSec'))
    error = None

    if was_active and not not_found:
        stopped = True
        if not module.check_mode:
            override = params['timeout_stop_sec'] is not None
            try:
                if override:
                    timeout = _install_timeout(ctl, unit, params['timeout_stop_sec'])
                start = time.monotonic()
                try:
                    ctl.stop(unit)
                finally:
                    stop_seconds = round(time.monotonic() - start, 3)
            except _systemd.SystemctlError as exc:
                error = str(exc)
                stopped = stop_seconds is not None
            finally:
                if override:
                    _remove_timeout(module, ctl, unit)
    after = ctl.show(unit) if stopped and not module.check_mode else before

    disabled = False
    state = after.get('UnitFileState', '')
    if params['disable'] and not not_found and state in ('enabled', 'enabled-runtime'):
        disabled = True
        if not module.check_mode:
            try:
                ctl.disable(unit, runtime=(state == 'enabled-runtime'))
            except _systemd.SystemctlError as exc:
                disabled = False
                error = '; '.join(e for e in (error, str(exc)) if e)

    masked = False
    if params['mask'] and not not_found:
        current = after.get('UnitFileState', '')
        already = after.get('LoadState') == 'masked' or current == 'masked' or (current == 'masked-runtime' and params['mask_runtime'])
        if not already:
            masked = True
            if not module.check_mode:
                try:
                    ctl.mask(unit, runtime=params['mask_runtime'])
                except _systemd.SystemctlError as exc:
                    masked = False
                    error = '; '.join(e for e in (error, str(exc)) if e)

    if (disabled or masked) and not module.check_mode:
        after = ctl.show(unit)

    predicted = dict(after)
    if module.check_mode:
        if stopped:
            predicted.update(ActiveState='inactive')
        if disabled:
            predicted.update(UnitFileState='disabled')
        if masked:
            predicted.update(UnitFileState='masked-runtime' if params['mask_runtime'] else 'masked')
    record = _record(unit, after, was_active, stopped, timeout, stop_seconds, disabled, masked, error)
    return record, _state(before), _state(predicted)


def _summary(rec):
    if rec['stopped'] and rec['stop_seconds'] is not None:
        head = 'stopped in %.1fs' % rec['stop_seconds']
    elif rec['stopped']:
        head = 'would be stopped'
    else:
        head = 'already %s' % rec['active_state']
    extra = [w for w, flag in (('disabled', rec['disabled']), ('masked', rec['masked'])) if flag]
    return '%s: %s, %s%s' % (rec['unit'], head, rec['classification'], (', ' + ', '.join(extra)) if extra else '')


def main():
    module = AnsibleModule(
        argument_spec=dict(
            units=dict(type='list', elements='str', required=True),
            timeout_stop_sec=dict(type='float'),
            disable=dict(type='bool', default=False),
            mask=dict(type='bool', default=False),
            mask_runtime=dict(type='bool', default=False),
            fail_on=dict(type='list', elements='str', choices=list(_systemd.CLASSIFICATIONS),
                         default=['timeout_killed', 'failed', 'signal']),
        ),
        supports_check_mode=True,
    )
    params = module.params
    host = socket.gethostname()
    units = [_systemd.normalize_unit_name(u) for u in params['units'] if u and u.strip()]
    result = dict(changed=False, units=[], failed_units=[], msg='')
    if not units:
        result['msg'] = 'units is empty: name at least one systemd unit'
        module.fail_json(**result)
    if params['timeout_stop_sec'] is not None:
        if params['timeout_stop_sec'] <= 0:
            result['msg'] = 'timeout_stop_sec must be more than 0 seconds, got %s' % params['timeout_stop_sec']
            module.fail_json(**result)
        odd = [u for u in units if not u.endswith('.service')]
        if odd:
            result['msg'] = 'timeout_stop_sec applies to .service units only; not to %s' % ', '.join(odd)
            module.fail_json(**result)

    systemctl = module.get_bin_path('systemctl', required=True)
    ctl = _systemd.Systemctl(module.run_command, systemctl)
    diff = {'before': {}, 'after': {}}
    problems = []
    for unit in units:
        try:
            record, before, after = _handle(module, ctl, unit)
        except _systemd.SystemctlError as exc:
            record = {'unit': unit, 'was_active': None, 'stopped': False, 'classification': None, 'result': None,
                      'load_state': None, 'active_state': None, 'sub_state': None, 'unit_file_state': None,
                      'exec_main_code': None, 'exec_main_status': None, 'exec_main_pid': None, 'exit': None,
                      'timeout_stop_sec': None, 'stop_seconds': None, 'disabled': False, 'masked': False,
                      'changed': False, 'error': str(exc)}
            before = after = {}
        result['units'].append(record)
        diff['before'][unit] = before
        diff['after'][unit] = after
        why = None
        cls = record['classification']
        if record['error']:
            why = record['error']
        elif record['stopped'] and not module.check_mode and cls == 'running':
            why = '%s is still %s after systemctl stop: something started it again. %s' % (
                unit, record['active_state'], 'What to do: look for what starts it (systemctl list-dependencies --reverse %s), '
                'or set mask: true' % unit)
        elif cls in params['fail_on'] and not (module.check_mode and record['stopped']):
            fields = dict(record)
            fields['exit'] = record['exit']
            why = '%s %s' % (unit, ADVICE.get(cls, cls) % fields)
        if why:
            problems.append(why)
            result['failed_units'].append(unit)

    result['changed'] = any(r['changed'] for r in result['units'])
    if module._diff:
        result['diff'] = diff
    if problems:
        result['msg'] = 'unit_stop on %s: %s' % (host, ' | '.join(problems))
        module.fail_json(**result)
    result['msg'] = '; '.join(_summary(r) for r in result['units'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
