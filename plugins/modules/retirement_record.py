#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: retirement_record
short_description: Write and update the retirement record of a model, one versioned JSON document per retirement
version_added: 0.5.0
description:
  - Keeps the record of one model retirement - what was retired (the model, its hosts), under which policy and
    eligibility decision, what the shutdown did, which dependencies were changed, and the rollback window - as one
    JSON document (C(schema_version) V(1.0), C(kind) V(modelops.shutdown/retirement)), whose shape is documented as a
    JSON Schema in C(docs/retirement-record.schema.json) of the collection.
  - O(state=retired) writes a new record, status V(retired), as C(<dir>/<id>.json) where the id is
    C(<model name>-<version>-<yyyymmddTHHMMSSZ>) (UTC, the time of the call; in the name and the version every
    character other than letters, digits, C(.), C(_), C(+), C(@) and C(-) is replaced by C(_)). The rollback window
    ends O(policy.rollback_window_seconds) after that time.
  - O(state=rolled_back) and O(state=finalized) update the record at O(path) - to status V(rolled_back) (the model was
    brought back) or V(final) - and add an entry to its C(history). Rolling back after the window closed, or
    finalizing before it closed, is refused unless O(force=true); a forced update adds a C(forced) entry to the
    history first. An update the record's status does not allow (rolling back a record V(rolled_back) or V(final),
    finalizing one V(final) or V(rolled_back)) is refused whatever O(force) says.
  - Time is measured in the module (C(time.time) on the machine it runs on, the controller with
    C(delegate_to=localhost)).
  - The file is written atomically (a temporary file in the same directory, then a rename), mode C(0600); a missing
    O(dir) is created, mode C(0700). Every write holds C(fcntl.flock) of the directory's lock file
    C(.retirement-record.lock), so concurrent updates of records of one directory do not lose each other's change
    (an update waits up to 30 seconds for another one).
  - A record file that is not a valid record (not JSON, a field missing, of the wrong type or not of
    C(schema_version) V(1.0)) is refused with the name of the wrong field; read it with the
    P(modelops.shutdown.retirement_record#filter) filter, which checks it the same way.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details:
      - Builds (or reads and updates) the record and returns it as it would be written, with RV(changed=true) when it
        would write; no file or directory is created or changed, and no lock is taken.
  diff_mode:
    support: full
    details:
      - C(before) and C(after) hold the record's status (V(absent) before a new record).
  idempotent:
    support: none
    details:
      - O(state=retired) writes a new record, with a new id, on every run.
      - Repeating O(state=rolled_back) or O(state=finalized) on the record it updated fails (the record's status
        does not allow it again) and changes nothing.
options:
  state:
    description:
      - V(retired) writes a new record in O(dir); V(rolled_back) and V(finalized) update the record at O(path).
    type: str
    required: true
    choices: [retired, rolled_back, finalized]
  dir:
    description:
      - The directory of the records, on the machine the module runs on; created (mode C(0700)) when missing.
      - Required with O(state=retired), and only taken then.
    type: path
  path:
    description:
      - The record to update (RV(path) of the O(state=retired) call).
      - Required with O(state=rolled_back) and O(state=finalized), and only taken then.
    type: path
  model:
    description: The model retired. Required with O(state=retired), and only taken then.
    type: dict
    suboptions:
      name:
        description: Its name, at most 128 characters.
        type: str
        required: true
      version:
        description: Its version, at most 64 characters.
        type: str
        required: true
      key:
        description: How the rest of the rollout names it; C(<name>@<version>) when not given.
        type: str
      hosts:
        description: The hosts it was retired from.
        type: list
        elements: str
        default: []
  policy:
    description: The retirement policy that applied. Required with O(state=retired), and only taken then.
    type: dict
    suboptions:
      name:
        description: Its name.
        type: str
        required: true
      version:
        description: Its version.
        type: str
        required: true
      rollback_window_seconds:
        description:
          - How long after the retirement the model may be rolled back, from 0 to ten years (316224000 seconds).
        type: float
        required: true
  eligibility:
    description: The decision that made the model eligible for retirement. Required with O(state=retired), and only taken then.
    type: dict
    suboptions:
      digest:
        description: The sha256 digest of the decision (64 hex digits; kept in lowercase).
        type: str
        required: true
      path:
        description: The file the decision was read from; omit when there is none.
        type: path
      evaluated_at:
        description: When the decision was evaluated, in epoch seconds.
        type: float
        required: true
      from_report:
        description: Whether the decision was read from an earlier report rather than evaluated by this run.
        type: bool
        default: false
  shutdown:
    description: What the shutdown did. Only taken with O(state=retired); omit for none.
    type: dict
    suboptions:
      journal:
        description: The rollout's journal file.
        type: path
      report:
        description: The rollout's report file.
        type: path
      status:
        description: The rollout's outcome (for example V(done) or V(halted)).
        type: str
      hosts:
        description:
          - One key per host, each a dict with C(units_stopped) (a list of unit names; V([]) when missing) and
            C(outcome) (a string; V(null) when missing). Other keys are dropped.
        type: dict
        default: {}
  dependencies:
    description:
      - The dependencies the retirement changed (load-balancer entries, policy items ...), as they were returned.
        Only taken with O(state=retired).
      - Each a dict with C(host) and C(kind) (non-empty strings, required) and C(name) (string, default V(null)),
        C(where), C(status) and C(msg) (strings, default empty), C(changed) (boolean, default V(false)), C(previous)
        and C(new) (any JSON value, default V(null)). A key missing or V(null) takes its default; other keys are
        dropped.
    type: list
    elements: dict
    default: []
  force:
    description:
      - Roll back after the rollback window closed (O(state=rolled_back)), or finalize before it closed
        (O(state=finalized)). The record's history gets a C(forced) entry saying so.
      - It does not override a refusal because of the record's status.
    type: bool
    default: false
  detail:
    description: The text of the history entry this call adds.
    type: str
    default: ""
notes:
  - Run it on the controller, with C(delegate_to=localhost) and C(run_once=true); it needs nothing outside the Python
    standard library.
  - O(dir) and O(path) should not be in a tmpfs such as C(/run) or C(/tmp) when the record must outlive a reboot.
seealso:
  - plugin: modelops.shutdown.retirement_record
    plugin_type: filter
  - module: modelops.shutdown.shutdown_report
'''

EXAMPLES = r'''
- name: Record the retirement of llama3 1.2
  modelops.shutdown.retirement_record:
    state: retired
    dir: /var/lib/modelops/retirements
    model:
      name: llama3
      version: "1.2"
      hosts: [gpu-01, gpu-02]
    policy:
      name: retire-after-90-days
      version: "3"
      rollback_window_seconds: 86400
    eligibility:
      digest: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      path: /var/lib/modelops/eligibility/llama3-1.2.json
      evaluated_at: 1764614400.0
      from_report: false
    shutdown:
      status: done
      hosts:
        gpu-01: {units_stopped: [vllm@llama3.service], outcome: done}
        gpu-02: {units_stopped: [vllm@llama3.service], outcome: done}
    detail: retired by the weekly rollout
  delegate_to: localhost
  run_once: true
  register: retirement

- name: Bring it back within the window
  modelops.shutdown.retirement_record:
    state: rolled_back
    path: "{{ retirement.path }}"
    force: "{{ rollback_force | default(false) | bool }}"
    detail: latency regression on the replacement
  delegate_to: localhost
  run_once: true

- name: Close the record once the window is over
  modelops.shutdown.retirement_record:
    state: finalized
    path: /var/lib/modelops/retirements/llama3-1.2-20251201T184000Z.json
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
changed:
  description: Whether the record was (in check mode, would be) written.
  returned: always
  type: bool
  sample: true
path:
  description:
    - The record's file - C(<dir>/<id>.json) for O(state=retired), else O(path).
    - V(null) when the call failed before it was known.
  returned: always
  type: str
  sample: /var/lib/modelops/retirements/llama3-1.2-20251201T184000Z.json
record:
  description:
    - The whole record as written (in check mode, as it would be written); when an update is refused, the record as
      it is. Its fields are described in C(docs/retirement-record.schema.json).
    - V(null) when the call failed before there was one.
  returned: always
  type: dict
  sample:
    schema_version: "1.0"
    kind: modelops.shutdown/retirement
    id: llama3-1.2-20251201T184000Z
    status: retired
    model: {name: llama3, version: "1.2", key: llama3@1.2, hosts: [gpu-01]}
    policy: {name: retire-after-90-days, version: "3", action: retire, rollback_window_seconds: 86400.0}
    eligibility: {digest: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, path: null,
                  evaluated_at: 1764614000.0, from_report: false}
    shutdown: {journal: null, report: null, status: done, hosts: {gpu-01: {units_stopped: [vllm@llama3.service], outcome: done}}}
    dependencies: []
    retired_at: 1764614400.0
    retired_at_iso: "2025-12-01T18:40:00.000+00:00"
    window_end: 1764700800.0
    window_end_iso: "2025-12-02T18:40:00.000+00:00"
    rolled_back_at: null
    finalized_at: null
    history: [{event: retired, at: 1764614400.0, at_iso: "2025-12-01T18:40:00.000+00:00", detail: ""}]
window:
  description:
    - The rollback window at the time of the call, as the P(modelops.shutdown.retirement_record#filter) filter
      computes it; V(null) when there is no record.
  returned: always
  type: dict
  sample: {end: 1764700800.0, end_iso: "2025-12-02T18:40:00.000+00:00", open: true, remaining_seconds: 86400.0, now: 1764614400.0}
  contains:
    end:
      description: When the window closes (C(window_end) of the record), in epoch seconds.
      type: float
      returned: always
      sample: 1764700800.0
    end_iso:
      description: RV(window.end) as ISO 8601 in UTC.
      type: str
      returned: always
      sample: "2025-12-02T18:40:00.000+00:00"
    open:
      description: Whether the time of the call is before RV(window.end).
      type: bool
      returned: always
      sample: true
    remaining_seconds:
      description: Seconds from the time of the call to RV(window.end); 0 once it closed.
      type: float
      returned: always
      sample: 86400.0
    now:
      description: The time of the call, in epoch seconds.
      type: float
      returned: always
      sample: 1764614400.0
msg:
  description: What was done, or why it was refused.
  returned: always
  type: str
  sample: "retired llama3-1.2-20251201T184000Z: the rollback window is open until 2025-12-02T18:40:00.000+00:00"
field:
  description: The field that is not valid, as C(model.name) or C(history[0].at) (of the input or of the record read).
  returned: when the input or the record read is not valid
  type: str
  sample: policy.rollback_window_seconds
diff:
  description: C(before) and C(after), each C({status}) (V(absent) before a new record).
  returned: in diff mode, when the record was (would be) written
  type: dict
  sample: {before: {status: retired}, after: {status: rolled_back}}
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec
from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_record as rr

RETIRED_ONLY = ('dir', 'model', 'policy', 'eligibility', 'shutdown')


def argument_spec():
    return dict(
        state=dict(type='str', required=True, choices=list(rr.STATES)),
        dir=dict(type='path'),
        path=dict(type='path'),
        model=dict(type='dict', options=dict(
            name=dict(type='str', required=True),
            version=dict(type='str', required=True),
            key=dict(type='str', no_log=False),
            hosts=dict(type='list', elements='str', default=[]),
        )),
        policy=dict(type='dict', options=dict(
            name=dict(type='str', required=True),
            version=dict(type='str', required=True),
            rollback_window_seconds=dict(type='float', required=True),
        )),
        eligibility=dict(type='dict', options=dict(
            digest=dict(type='str', required=True),
            path=dict(type='path'),
            evaluated_at=dict(type='float', required=True),
            from_report=dict(type='bool', default=False),
        )),
        shutdown=dict(type='dict', options=dict(
            journal=dict(type='path'),
            report=dict(type='path'),
            status=dict(type='str'),
            hosts=dict(type='dict', default={}),
        )),
        dependencies=dict(type='list', elements='dict', default=[]),
        force=dict(type='bool', default=False),
        detail=dict(type='str', default=''),
    )


REQUIRED_IF = [
    ('state', 'retired', ('dir', 'model', 'policy', 'eligibility')),
    ('state', 'rolled_back', ('path',)),
    ('state', 'finalized', ('path',)),
]


def _misplaced(params):
    """The options given that the state does not take (they would be ignored): a sentence, or empty."""
    if params['state'] == 'retired':
        extra = ['path'] if params['path'] is not None else []
        return ('%s: only taken with state=rolled_back or state=finalized (state=retired writes <dir>/<id>.json)'
                % ', '.join(extra)) if extra else ''
    extra = [name for name in RETIRED_ONLY if params[name] is not None]
    if params['dependencies']:
        extra.append('dependencies')
    return ('%s: only taken with state=retired (state=%s updates the record at path)'
            % (', '.join(extra), params['state'])) if extra else ''


def _retire(module, now):
    params = module.params
    record = rr.build(params['model'], params['policy'], params['eligibility'], shutdown=params['shutdown'],
                      dependencies=params['dependencies'], now=now, detail=params['detail'])
    directory = params['dir']
    path = rr.record_path(directory, record)
    result = dict(changed=True, path=path, record=record, window=rr.window(record, now))
    if module.check_mode:
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise rr.RecordIOError('the record directory %s exists and is not a directory' % directory)
        if os.path.lexists(path):
            raise rr.RecordIOError('the retirement record %s exists already' % path)
    else:
        result['path'] = rr.create(directory, record)
    result['msg'] = 'retired %s: the rollback window is open until %s' % (record['id'], record['window_end_iso'])
    return result, 'absent', record['status']


def _update(module, now, seen):
    params = module.params
    path = params['path']
    state = params['state']

    def change(record):
        seen['record'] = record
        return rr.transition(record, state, now, force=params['force'], detail=params['detail'])

    if module.check_mode:
        before = rr.read(path)
        after = change(before)
    else:
        before, after = rr.update(path, change)
    forced = ' (forced)' if after['history'][-2]['event'] == 'forced' else ''
    msg = '%s %s%s at %s' % (after['id'], 'rolled back' if state == 'rolled_back' else 'finalized', forced,
                             after['history'][-1]['at_iso'])
    result = dict(changed=True, path=path, record=after, window=rr.window(after, now), msg=msg)
    return result, before['status'], after['status']


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(argument_spec()), required_if=REQUIRED_IF,
                           supports_check_mode=True)
    now = time.time()
    params = module.params
    misplaced = _misplaced(params)
    if misplaced:
        module.fail_json(msg=misplaced, changed=False, path=params['path'], record=None, window=None)
    seen = {}
    try:
        if params['state'] == 'retired':
            result, before, after = _retire(module, now)
        else:
            result, before, after = _update(module, now, seen)
    except rr.Refused as exc:
        record = seen.get('record')
        module.fail_json(msg=str(exc), changed=False, path=params['path'], record=record,
                         window=rr.window(record, now) if record else None)
    except rr.RecordError as exc:
        where = ('the retirement record %s' % params['path']) if params['state'] != 'retired' else 'the input'
        module.fail_json(msg='%s is not valid: %s' % (where, exc), changed=False, path=params['path'],
                         record=None, window=None, field=exc.field)
    except rr.RecordIOError as exc:
        module.fail_json(msg=str(exc), changed=False, path=params['path'], record=seen.get('record'),
                         window=rr.window(seen['record'], now) if seen.get('record') else None)
    if module._diff:
        result['diff'] = dict(before=dict(status=before), after=dict(status=after),
                              before_header=result['path'], after_header=result['path'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
