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
      - Every name is passed to C(systemctl) after C(--), so a name starting with C(-) (C(-.mount)) is never read
        as an option. A name with a NUL byte, another control character or a C(/) is refused.
    type: list
    elements: str
    required: true
  timeout_stop_sec:
    description:
      - Overrides the units' C(TimeoutStopSec=) for this stop only, in seconds, a finite number of at least
        V(0.001) (systemd reads C(TimeoutStopSec=0) as no timeout, so V(0), negative numbers, NaN and
        infinities are refused).
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
    choices: [clean, timeout_killed, timeout, failed, signal, not_found, running]
    default: [timeout_killed, timeout, failed, signal]
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
      explanation: did not exit within its stop timeout and was killed with SIGKILL (Result=timeout, killed by SIGKILL)
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
        - V(timeout_killed) C(Result=timeout) and the main process was killed by SIGKILL (C(ExecMainCode=2),
          C(ExecMainStatus=9)); it did not stop within C(TimeoutStopSec=) and was SIGKILLed.
        - V(timeout) C(Result=timeout) but the main process was not SIGKILLed; it exited by itself (for example with
          status 0 while an C(ExecStop=) command timed out), was ended by the SIGTERM of a start timeout or the
          SIGABRT of C(TimeoutStopFailureMode=abort), or never ran. RV(units[].explanation) says which.
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
    explanation:
      description:
        - How the unit ended, in words, from C(Result) together with C(ExecMainCode) and C(ExecMainStatus);
          null when the unit's state could not be read.
      type: str
      returned: always
      sample: did not exit within its stop timeout and was killed with SIGKILL (Result=timeout, killed by SIGKILL)
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
started_at:
  description: When the task started its work on the host, in seconds since the epoch (host clock, 3 decimals).
  returned: always
  type: float
  sample: 1718000000.123
finished_at:
  description: When the task finished its work on the host, in seconds since the epoch (host clock, 3 decimals).
  returned: always
  type: float
  sample: 1718000093.457
stop_seconds:
  description: How long the whole task took on the host, all units together, in seconds (monotonic clock).
  returned: always
  type: float
  sample: 93.334
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec
from ansible_collections.modelops.shutdown.plugins.module_utils._unit_stop import UnitStopper, argument_spec


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(argument_spec()), supports_check_mode=True)
    systemctl = module.get_bin_path('systemctl', required=True)
    stopper = UnitStopper(module.run_command, systemctl, check_mode=module.check_mode, warn=module.warn)
    result, failure = stopper.run(module.params)
    # Argument errors never had a diff.
    if not module._diff or not result['units']:
        del result['diff']
    if failure is not None:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
