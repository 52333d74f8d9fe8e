#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: shutdown_report
short_description: Write the rollout's report (JSON and Markdown) on the controller, built once from module results
version_added: 0.2.0
description:
  - Builds the run's record with the P(modelops.shutdown.rollout_report#filter) filter from what the modules returned
    for every host (the M(modelops.shutdown.lb_batch_state) marks, the M(modelops.shutdown.host_shutdown) call, the
    put-backs) and writes C(<name>.json) and C(<name>.md) into O(dest) on the controller, in one task.
  - Runs on the controller only (an action plugin); nothing is sent to a host. Files are written atomically with mode
    C(0644); the directory is created with mode C(0755).
  - Also in check mode, where the record says what would be done (its C(mode) is V(check)).
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
  - modelops.shutdown.journal
attributes:
  check_mode:
    support: full
    details: The report is written in check mode too; it describes the run and changes nothing managed.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Always reports C(changed=false); the report describes the run.
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
options:
  hosts:
    description:
      - For each inventory host of the run, C(marks) (the registered results of the batch's
        M(modelops.shutdown.lb_batch_state) calls), C(record) (its M(modelops.shutdown.host_shutdown) result, or
        V(null)) and C(put_back) (the put-back calls' results), as the P(modelops.shutdown.rollout_report#filter)
        filter takes them.
    type: dict
    required: true
  dest:
    description: Directory on the controller the files are written to (created when missing).
    type: path
    required: true
  name:
    description: File name without extension. Default C(shutdown-<UTC time of the run's first mark>).
    type: str
  halted:
    description: Whether the rollout halted.
    type: bool
    default: false
  stranded:
    description:
      - Hosts the run leaves drained but not stopped (host to the load balancers), when a put-back failed. With
        O(journal), the run's end is recorded in the journal with them (C(run_finished)), so that a later run or
        C(playbooks/restore.yml) finds them.
    type: dict
    default: {}
  halt_reason:
    description: Why it halted, with the underlying messages.
    type: str
    default: ""
  markdown:
    description: Also write the Markdown rendering.
    type: bool
    default: true
  html:
    description:
      - Also write C(<name>.html) - one self-contained page (inline CSS and SVG, no script, nothing loaded from
        elsewhere) with the run's timeline, one row per host (drain wait, stop, policy and verify bars, the moment
        each load balancer stopped sending, failures marked and explained), the batch starts, and the tables of
        failures and hosts.
      - C(tools/report_html.py) renders it again from the JSON report, for example with load records added later.
    type: bool
    default: true
  load_records:
    description:
      - A load generator's per-request records on the controller (JSON lines with C(start) epoch seconds and
        C(outcome), as C(tests/fleet/loadgen.py --records) writes them). With O(html), the page gets a second panel
        on the same time axis - requests sent per second and errors per second.
      - A file that cannot be read is a warning, not a failure; the page is written without the load panel.
    type: path
'''

EXAMPLES = r'''
- name: Write the report of the run
  modelops.shutdown.shutdown_report:
    hosts: "{{ report_input }}"
    dest: /var/lib/modelops/reports
  run_once: true
'''

RETURN = r'''
paths:
  description: The files written, by format.
  returned: success
  type: dict
  sample: {json: /var/lib/modelops/reports/shutdown-20261201T204033Z.json, md: /var/lib/modelops/reports/shutdown-20261201T204033Z.md,
           html: /var/lib/modelops/reports/shutdown-20261201T204033Z.html}
  contains:
    json:
      description: The JSON record.
      returned: success
      type: str
      sample: /var/lib/modelops/reports/shutdown-20261201T204033Z.json
    md:
      description: The Markdown rendering, with O(markdown).
      returned: success and O(markdown)
      type: str
      sample: /var/lib/modelops/reports/shutdown-20261201T204033Z.md
    html:
      description: The HTML page, with O(html).
      returned: success and O(html)
      type: str
      sample: /var/lib/modelops/reports/shutdown-20261201T204033Z.html
summary:
  description: One line - host count by status, and whether the rollout halted.
  returned: success
  type: str
  sample: "3 host(s): 3 done; not halted"
report:
  description: The record written (see P(modelops.shutdown.rollout_report#filter)).
  returned: success
  type: dict
  sample: {mode: run, halted: false, batches: [], hosts: [], totals: {hosts: 0}}
msg:
  description: Where the report is.
  returned: always
  type: str
  sample: "report: /var/lib/modelops/reports/shutdown-20261201T204033Z.json (and .md, .html)"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import journal_option

# The one argument spec: the action plugin validates its task's arguments with it too.
ARGUMENT_SPEC = dict(
    hosts=dict(type='dict', required=True),
    dest=dict(type='path', required=True),
    name=dict(type='str'),
    halted=dict(type='bool', default=False),
    stranded=dict(type='dict', default={}),
    halt_reason=dict(type='str', default=''),
    markdown=dict(type='bool', default=True),
    html=dict(type='bool', default=True),
    load_records=dict(type='path'),
    journal=journal_option(),
)


def main():
    # The work is done by the action plugin on the controller; this only answers a direct module run.
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg='modelops.shutdown.shutdown_report runs on the controller through its action plugin; '
                         'call it as a task, not as a module on its own.')


if __name__ == '__main__':
    main()
