#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: shutdown_journal
short_description: Open, read and close the rollout's journal on the controller, and find runs that were interrupted
version_added: 0.4.0
description:
  - The journal is one JSON-lines file per run in a directory on the controller (C(<run id>.jsonl), mode C(0600)).
    M(modelops.shutdown.lb_batch_state) and M(modelops.shutdown.host_shutdown) append to it through their action
    plugins, with fsync, B(before) every change (run, host, load balancer, the state read last, the new state, time)
    and after it (what changed). Every line is one event with C(ts) (ISO 8601, UTC), C(run) and C(event) first, so a
    person can read it with C(cat) or C(jq).
  - O(state=open) starts a run's journal and returns the earlier runs of the same directory that neither finished
    cleanly nor were closed (a controller killed mid-batch, a halted run whose put-back failed), each with the load
    balancer entries it left out of service and the state each had before (RV(interrupted)). It refuses to start while
    an earlier run of this controller is still running.
  - O(state=recovered) records that this run dealt with those runs (put back or carried on) and closes their journals.
  - O(state=finish) records the run's end (O(status) V(done) or V(halted), and what it left out of service).
  - O(state=read) summarizes one journal (for C(playbooks/restore.yml), which undoes exactly that run).
  - Runs on the controller only (an action plugin); nothing is sent to a host.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
  - modelops.shutdown.journal
attributes:
  check_mode:
    support: full
    details:
      - O(state=open) and O(state=read) read in check mode too; nothing is written (a check run changes nothing and
        so has nothing to journal, and RV(journal) is V(null)).
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Always reports C(changed=false) - the journal records the run (each O(state=open) starts a new one); it is
        not state this collection manages, like the report of M(modelops.shutdown.shutdown_report).
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
options:
  state:
    description: What to do, see the description.
    type: str
    required: true
    choices: [open, recovered, finish, read]
  dir:
    description:
      - The journal directory on the controller, created with mode C(0700). It must outlive the run (on AWX, a
        persistent volume), or an interrupted run cannot be found again.
      - Required with O(state=open).
    type: path
  targets:
    description: With O(state=open), the inventory hosts the run is for (recorded).
    type: list
    elements: str
    default: []
  playbook:
    description: With O(state=open), what runs (recorded).
    type: str
    default: shutdown
  runs:
    description: With O(state=recovered), the journals (C(path)) of the earlier runs dealt with.
    type: list
    elements: path
    default: []
  put_back:
    description: With O(state=recovered), the hosts put back into service.
    type: list
    elements: str
    default: []
  carried_on:
    description: With O(state=recovered), the hosts whose shutdown was finished.
    type: list
    elements: str
    default: []
  status:
    description: With O(state=finish), how the run ended.
    type: str
    choices: [done, halted]
  stranded:
    description: With O(state=finish), the hosts left out of service and not stopped (host to load balancer names).
    type: dict
    default: {}
  path:
    description: With O(state=read), the journal to read.
    type: path
seealso:
  - module: modelops.shutdown.lb_batch_state
  - module: modelops.shutdown.host_shutdown
'''

EXAMPLES = r'''
- name: Start the run's journal and find runs that were interrupted
  modelops.shutdown.shutdown_journal:
    state: open
    dir: /var/lib/modelops-shutdown/journal
    targets: "{{ query('ansible.builtin.inventory_hostnames', 'llama_servers') }}"
  register: journal

- name: Say what an earlier run left out of service
  ansible.builtin.debug:
    msg: "{{ journal.interrupted | map(attribute='outstanding') }}"

- name: Read what one run changed, to undo exactly that
  modelops.shutdown.shutdown_journal:
    state: read
    path: /var/lib/modelops-shutdown/journal/20261202T020304Z-1a2b3c.jsonl
  register: run
'''

RETURN = r'''
journal:
  description: This run's journal, to pass as the O(journal) option of the modules that append to it.
  returned: with O(state=open), not in check mode
  type: dict
  sample: {path: /var/lib/modelops-shutdown/journal/20261202T020304Z-1a2b3c.jsonl, run: 20261202T020304Z-1a2b3c}
interrupted:
  description:
    - The earlier runs that did not end cleanly, oldest first, each with C(run), C(path), C(started), C(finished),
      C(status), C(targets) and C(outstanding) (host to load balancer to C(previous_state) and C(state) - what the run
      left out of service and what it was before).
  returned: with O(state=open)
  type: list
  elements: dict
  sample: [{run: 20261202T010203Z-0a0b0c, outstanding: {m1: {lb1: {previous_state: ready, state: draining}}}}]
summary:
  description:
    - With O(state=read), the journal summarized - C(run), C(hosts) (host to C(lbs) (load balancer to
      C(previous_state), C(state), C(outstanding)), C(stopped), C(units_stopped), C(status)), C(outstanding), C(finished),
      C(status), C(closed).
  returned: with O(state=read)
  type: dict
  sample: {run: 20261202T010203Z-0a0b0c, hosts: {m1: {stopped: true, units_stopped: [model-server@llama.service]}}}
msg:
  description: What was done.
  returned: always
  type: str
  sample: "journal /var/lib/modelops-shutdown/journal/20261202T020304Z-1a2b3c.jsonl opened; 1 interrupted run found"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import journal_option

ARGUMENT_SPEC = dict(
    state=dict(type='str', required=True, choices=['open', 'recovered', 'finish', 'read']),
    dir=dict(type='path'),
    targets=dict(type='list', elements='str', default=[]),
    playbook=dict(type='str', default='shutdown'),
    journal=journal_option(),
    runs=dict(type='list', elements='path', default=[]),
    put_back=dict(type='list', elements='str', default=[]),
    carried_on=dict(type='list', elements='str', default=[]),
    status=dict(type='str', choices=['done', 'halted']),
    stranded=dict(type='dict', default={}),
    path=dict(type='path'),
)
REQUIRED_IF = [('state', 'open', ('dir',)), ('state', 'recovered', ('journal',)), ('state', 'finish', ('journal', 'status')),
               ('state', 'read', ('path',))]


def main():
    # The work is done by the action plugin on the controller; this only answers a direct module run.
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    module.fail_json(msg='modelops.shutdown.shutdown_journal runs on the controller through its action plugin; '
                         'call it as a task, not as a module on its own.')


if __name__ == '__main__':
    main()
