#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: drain_timing_check
short_description: Check that a stop outside a rollout cuts no request (TimeoutStopSec, server window, LB detection)
version_added: 0.6.0
description:
  - For each unit, compares the unit's C(TimeoutStopSec) (from C(systemctl show)), the server's own shutdown window
    (vLLM C(--shutdown-timeout), default 0; Triton C(--exit-timeout-secs), default 30; SGLang drains with no bound;
    the reference server's C(DRAIN_TIMEOUT); TGI and others unknown unless declared with O(server)) and the load
    balancer's detection time (O(load_balancers), the RV(modelops.shutdown.lb_batch_state#module:health_checks) entries
    of this host).
  - Reports, with the numbers and the fix, a unit that systemd SIGKILLs before the server's drain can end
    (C(sigkill_before_drain)), a server that is gone before the load balancer can notice
    (C(drain_shorter_than_detection)) and vLLM aborting in-flight requests on SIGTERM (C(vllm_aborts_in_flight)).
    What cannot be read is reported as C(unknown), never as a failure.
  - It only reads (C(systemctl show), the units' environment files).
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode runs it unchanged.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  units:
    description: systemd units of the model server (a name without a suffix gets C(.service)).
    type: list
    elements: str
    required: true
  server:
    description:
      - Declares the server instead of reading it from C(ExecStart=), for in-house servers or a window this module
        cannot read.
    type: dict
    suboptions:
      kind:
        description: A name for the server, used in messages.
        type: str
        required: true
      shutdown_seconds:
        description: The longest the server drains after SIGTERM, in seconds.
        type: float
        required: true
  load_balancers:
    description:
      - This host's RV(modelops.shutdown.lb_batch_state#module:health_checks) entries (C(backend), C(server),
        C(inter_seconds), C(fall), C(fastinter_seconds), C(detection_seconds), C(source)). Empty compares no detection time.
    type: list
    elements: dict
    default: []
  margin:
    description: Seconds C(TimeoutStopSec) must exceed the server's window by.
    type: float
    default: 5
  fail_on:
    description: Finding kinds that fail the task; the others come back as warnings.
    type: list
    elements: str
    choices: [sigkill_before_drain, drain_shorter_than_detection, vllm_aborts_in_flight, unknown]
    default: []
seealso:
  - module: modelops.shutdown.lb_batch_state
  - module: modelops.shutdown.unit_stop
'''

EXAMPLES = r'''
- name: Check the model server's stop timings against the LB's health checks
  modelops.shutdown.drain_timing_check:
    units: [model-server@llama.service]
    load_balancers: "{{ lb_read.health_checks | selectattr('host', 'equalto', inventory_hostname) }}"

- name: Declare an in-house server's window and fail when systemd would SIGKILL it mid-drain
  modelops.shutdown.drain_timing_check:
    units: [ranker.service]
    server: {kind: ranker, shutdown_seconds: 40}
    fail_on: [sigkill_before_drain]
'''

RETURN = r'''
status:
  description: V(ok), V(warn) (a finding that cuts requests) or V(unknown) (only unknowns).
  returned: always
  type: str
  sample: warn
summary:
  description: One line with each unit's numbers and status.
  returned: always
  type: str
  sample: 'model-server@llama.service: TimeoutStopSec=5 window=20 (reference) detection=1 -> warn'
findings:
  description: Every finding, each with C(kind), C(message), C(fix) and the numbers it compares.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: sigkill_before_drain
      message: 'model-server@llama.service (reference): TimeoutStopSec=5 s is shorter than ...'
      fix: 'raise TimeoutStopSec to 25 s: write /etc/systemd/system/model-server@llama.service.d/zz-drain-timing.conf ...'
      timeout_stop_sec: 5.0
      window_seconds: 20.0
      margin_seconds: 5.0
      needed_seconds: 25.0
units:
  description: Per unit what was read (C(timeout_stop_sec), C(server) with C(kind) and C(shutdown_seconds)), its findings and status.
  returned: always
  type: list
  elements: dict
  sample:
    - unit: model-server@llama.service
      timeout_stop_sec: 5.0
      server: {kind: reference, shutdown_seconds: 20.0, source: DRAIN_TIMEOUT, unbounded: false}
      status: warn
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils import _systemd
from ansible_collections.modelops.shutdown.plugins.module_utils._drain_timing import (
    FINDING_KINDS, MAX_ENV_FILE_BYTES, SHOW_PROPERTIES, DrainTimingCheck)
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec


def main():
    module = AnsibleModule(
        argument_spec=module_argument_spec(dict(
            units=dict(type='list', elements='str', required=True),
            server=dict(type='dict', options=dict(kind=dict(type='str', required=True),
                                                  shutdown_seconds=dict(type='float', required=True))),
            load_balancers=dict(type='list', elements='dict', default=[]),
            margin=dict(type='float', default=5.0),
            fail_on=dict(type='list', elements='str', choices=list(FINDING_KINDS), default=[]),
        )),
        supports_check_mode=True,
    )
    params = module.params
    units = []
    for name in params['units']:
        problem = _systemd.unit_name_problem(name)
        if problem:
            module.fail_json(msg='units: %r %s' % (name, problem))
        units.append(_systemd.normalize_unit_name(name))
    systemctl = module.get_bin_path('systemctl', required=True)

    def show_text(unit):
        argv = _systemd.show_argv(systemctl, unit, SHOW_PROPERTIES)
        rc, out, err = module.run_command(argv)
        if rc != 0:
            raise _systemd.SystemctlError('%s exited with rc %s: %s' % (' '.join(argv), rc, (err or out).strip()[:300]))
        return out

    def read_file(path):
        with open(path, 'rb') as handle:
            return to_text(handle.read(MAX_ENV_FILE_BYTES), errors='surrogate_or_replace')

    try:
        result = DrainTimingCheck(show_text, read_file, params['margin'], params['server']).run(
            units, params['load_balancers'])
    except (_systemd.SystemctlError, _systemd.SystemdParseError) as exc:
        module.fail_json(msg='%s. Run systemctl show %s on the host to see why.' % (to_text(exc), ' '.join(units)))
    for finding in result['findings']:
        if finding['kind'] != 'unknown' or finding['kind'] in params['fail_on']:
            module.warn('%s.%s' % (finding['message'], (' Fix: %s.' % finding['fix']) if finding['fix'] else ''))
    failing = [f for f in result['findings'] if f['kind'] in params['fail_on']]
    if failing:
        module.fail_json(msg='; '.join(f['message'] for f in failing), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
