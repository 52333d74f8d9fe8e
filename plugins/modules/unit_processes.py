#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: unit_processes
short_description: List the processes left in systemd units' cgroups
version_added: 0.1.0
description:
  - Lists every process whose cgroup lies in each given unit's cgroup, read from C(/proc/<pid>/cgroup).
    That includes processes that outlived the unit's main process, for example workers left behind
    with C(KillMode=process), which C(systemctl show -p MainPID) no longer names.
  - Use it after a stop to prove that nothing of the unit is still running.
  - It reads only; it never signals a process. M(modelops.shutdown.gpu_release_check) with
    O(modelops.shutdown.gpu_release_check#module:kill_orphans=true) removes leftovers that hold GPU memory.
  - When C(/proc) cannot be listed, or a unit name is refused, the task fails with RV(empty) null; unknown is never empty.
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
    description:
      - systemd unit names, templated instances included (C(model-server@llama.service)).
      - A name without a suffix gets C(.service). A name with a NUL byte, another control character or a C(/) is refused.
    type: list
    elements: str
    required: true
  expect_empty:
    description:
      - Fail, naming each process left, when any unit's cgroup still holds a process.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Prove nothing of the model server is left running
  modelops.shutdown.unit_processes:
    units:
      - model-server@llama.service
    expect_empty: true

- name: Read what is left, without failing
  modelops.shutdown.unit_processes:
    units: [vllm.service, vllm-router.service]
  register: leftovers
'''

RETURN = r'''
units:
  description: One record per unit, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    unit:
      description: The unit name, with its suffix.
      type: str
      sample: model-server@llama.service
    processes:
      description: Processes in the unit's cgroup.
      type: list
      elements: dict
      sample: [{pid: 4242, name: model-worker, cmdline: "python3 /opt/model-server/model_server.py --instance llama"}]
  sample: [{unit: model-server@llama.service, processes: []}]
empty:
  description:
    - Whether no unit's cgroup holds a process.
    - Null when that is unknown (C(/proc) could not be listed, or a unit name was refused); the task then fails.
  returned: always
  type: bool
  sample: true
count:
  description: Number of processes found over all units; null when unknown.
  returned: always
  type: int
  sample: 0
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._procs import check_units


def main():
    module = AnsibleModule(
        argument_spec=dict(
            units=dict(type='list', elements='str', required=True),
            expect_empty=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    result, failure = check_units(module.params['units'], module.params['expect_empty'])
    if failure is not None:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
