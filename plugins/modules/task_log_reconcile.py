# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: task_log_reconcile
short_description: Prove that a stopped model server left no accepted request unfinished
version_added: 0.1.0
description:
  - Reads one or more task logs of a model server (JSON lines, one record per event) after the server
    was stopped, pairs the records by request id and lists the requests that were started but never
    completed, with their start times and the other fields of their start record (model, instance, ...).
  - Records are paired across all files, in any order, so rotated logs can be read together. Files
    compressed with gzip are read as they are.
  - Optionally hands the unfinished requests to a resubmission endpoint (O(resubmit)) and records what it answered.
  - Lines that are not JSON, or records that lack the keys this module needs, are counted as malformed and
    never stop the reading. More than O(max_malformed) of them is a warning, or a failure with O(fail_on_malformed=true).
  - The module only reads the logs; run it where they are, usually on the model host after the stop.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details: Reads the logs and reports as usual; sends nothing to O(resubmit.url) and reports what it would send in RV(would_resubmit).
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - Without O(resubmit) the module only reads and never reports a change.
      - With O(resubmit), every run hands the unfinished requests over again, since the task log does not record
        the resubmission. The endpoint should ignore requests whose id it has already seen.
options:
  paths:
    description:
      - The task log files to read, in this order. Rotated files (plain or gzip) can be listed with the current one.
      - A file listed twice is read once, also under another spelling (C(/var/log//x.jsonl)) or another name (a
        symlink, a hard link), as files are told apart by device and inode. RV(paths[].duplicate_of) names the first.
      - Only regular files are read. A FIFO, a device (C(/dev/zero)), a socket or a directory fails the task without
        being read. A path with a NUL byte is refused.
    type: list
    elements: path
    required: true
  missing_ok:
    description:
      - Treat a file that does not exist as empty instead of failing.
      - Useful for hosts that may never have served a request. A missing file is still listed in RV(paths), with C(exists=false).
    type: bool
    default: false
  id_key:
    description: Key of the request id in each record. An id is a string or an integer; V(7) and V("7") are the same request.
    type: str
    default: id
  event_key:
    description: Key of the event name in each record.
    type: str
    default: event
  started_value:
    description: Value of O(event_key) for the record written when a request was accepted.
    type: str
    default: started
  completed_value:
    description: Value of O(event_key) for the record written when a request finished.
    type: str
    default: completed
  ended_values:
    description:
      - Other values of O(event_key) that also end a request, without a result to hand back. These requests are
        counted in RV(ended_count) and are neither incomplete nor resubmitted.
      - The reference model server writes V(aborted) when the client went away before the answer.
      - Any other value of O(event_key) is counted in RV(other_events) and otherwise ignored.
    type: list
    elements: str
    default: [aborted]
  time_key:
    description:
      - Key of the event time in each record, in epoch seconds (a number or a numeric string) or an ISO 8601 string.
        An ISO 8601 time without an offset is read as UTC.
      - Required in start records; a start record without it is malformed. Optional in the others.
    type: str
    default: ts
  since:
    description:
      - Epoch seconds. Requests that started before this time are left out of every count and list,
        for example the ones of an earlier run of the server in the same log.
      - Their end records still pair with them, so they do not show up in RV(unmatched_count).
      - A finite number; NaN and infinities are refused (they would leave every request out).
    type: float
  max_listed:
    description:
      - At most this many incomplete requests, the oldest first, are returned in RV(incomplete), a sample that
        keeps the module's output small. RV(incomplete_count) is always exact and RV(truncated) says whether the
        list was cut.
      - V(0) returns the counts only. O(resubmit) always hands over every incomplete request, whole.
    type: int
    default: 100
  max_record_chars:
    description:
      - Each listed request's RV(incomplete[].id) and RV(incomplete[].fields) are cut to about this many characters
        (keys and JSON values counted); RV(incomplete[].truncated) says so. A value that does not fit is cut to a
        string and the fields after it are left out.
      - The records handed to O(resubmit) are never cut.
    type: int
    default: 2048
  max_file_bytes:
    description:
      - At most this many bytes of each file are read (counted after gzip decompression). A longer file fails the task
        with RV(state=capped) and RV(paths[].capped=true), since its counts would be incomplete; nothing is resubmitted.
    type: int
    default: 268435456
  max_line_bytes:
    description:
      - A line longer than this many bytes is skipped and counted as malformed, without being held in memory.
    type: int
    default: 1048576
  max_malformed:
    description: Number of malformed lines (over all files) that are accepted silently. Above it the module warns, or fails with O(fail_on_malformed=true).
    type: int
    default: 0
  fail_on_malformed:
    description:
      - Fail, before resubmitting anything, when more than O(max_malformed) lines are malformed.
      - By default the module warns and goes on; the malformed lines are counted in RV(malformed_lines)
        and the first ones are described in RV(malformed_samples).
    type: bool
    default: false
  resubmit:
    description:
      - Hand the incomplete requests to an HTTP endpoint that can run them again.
      - Each request is sent as its start record, exactly as it was read from the log, as JSON.
      - Nothing is sent when no request is incomplete, and nothing in check mode.
    type: dict
    suboptions:
      url:
        description: The resubmission endpoint.
        type: str
        required: true
      method:
        description: HTTP method.
        type: str
        default: POST
        choices: [POST, PUT]
      token:
        description: Bearer token sent in the C(Authorization) header.
        type: str
      headers:
        description: Extra request headers. C(Content-Type) defaults to C(application/json).
        type: dict
        default: {}
      validate_certs:
        description: Verify the TLS certificate of an C(https) O(resubmit.url).
        type: bool
        default: true
      ca_path:
        description: A CA bundle to verify the endpoint's certificate with.
        type: path
      timeout:
        description: Seconds to wait for each request.
        type: float
        default: 30.0
      batch:
        description:
          - V(true) sends one request whose body is the JSON list of all incomplete start records.
          - V(false) sends one request per incomplete request, oldest first, each with its start record as the body.
        type: bool
        default: true
      on_error:
        description:
          - What to do when the endpoint does not answer a 2xx status, or cannot be reached.
          - V(fail) fails the module, naming the URL and the status; with O(resubmit.batch=false) nothing
            more is sent after the first failure.
          - V(warn) warns, sends the remaining requests and returns every outcome in RV(resubmitted).
        type: str
        default: fail
        choices: [fail, warn]
notes:
  - Pairing rules. Every end record closes one start record of the same id, the earliest one still open, so ids
    that clients reuse are counted correctly. An end record whose start was never read (it is in a file that was not
    listed) is counted in RV(unmatched_count), never as incomplete.
  - RV(started_count) is always RV(completed_count) + RV(ended_count) + RV(incomplete_count) (when RV(incomplete_count) is known).
  - A line is malformed when it is not UTF-8, not JSON (or nested too deeply to read) or not a JSON object, is longer
    than O(max_line_bytes), has no O(event_key), or is a start, completed or ended record without a usable O(id_key), or a
    record with an unusable O(time_key). Blank lines are skipped.
  - With O(missing_ok=true) and none of O(paths) existing, RV(state) is V(no_task_log) and RV(incomplete_count) is null,
    since no task log is not the same as no unfinished request.
seealso:
  - module: modelops.shutdown.unit_stop
  - module: modelops.shutdown.model_drain
'''

EXAMPLES = r'''
- name: Check that the stopped server finished everything it accepted
  modelops.shutdown.task_log_reconcile:
    paths:
      - /var/log/model-server/gpu-07.tasks.jsonl
  become: true
  register: tasks

- name: Stop the rollout if a request was lost
  ansible.builtin.assert:
    that: tasks.incomplete_count == 0
    fail_msg: "{{ tasks.incomplete_count }} request(s) never completed, the oldest {{ tasks.incomplete[0].id | default('') }}"

- name: Read rotated logs too, only this run of the server, and tolerate a few bad lines
  modelops.shutdown.task_log_reconcile:
    paths:
      - /var/log/model-server/gpu-07.tasks.jsonl.1.gz
      - /var/log/model-server/gpu-07.tasks.jsonl.1
      - /var/log/model-server/gpu-07.tasks.jsonl
    missing_ok: true
    since: "{{ server_started_epoch }}"
    max_malformed: 5
    fail_on_malformed: true

- name: A server that logs with other keys
  modelops.shutdown.task_log_reconcile:
    paths: [/var/log/inference/requests.log]
    id_key: request_id
    event_key: phase
    started_value: accepted
    completed_value: finished
    ended_values: [cancelled, rejected]
    time_key: time

- name: Hand unfinished requests to the queue that runs them again
  modelops.shutdown.task_log_reconcile:
    paths:
      - /var/log/model-server/gpu-07.tasks.jsonl
    resubmit:
      url: https://requeue.internal/v1/tasks
      token: "{{ requeue_token }}"
      headers:
        X-Source-Host: "{{ inventory_hostname }}"
      on_error: warn
  register: reconcile
'''

RETURN = r'''
state:
  description:
    - V(read) every listed file that exists was read to its end.
    - V(no_task_log) none of O(paths) exists (with O(missing_ok=true)); RV(incomplete_count) is null, as nothing is known.
    - V(capped) a file is longer than O(max_file_bytes); the counts are incomplete and the task fails.
    - V(error) the options were refused or a file could not be read; the task fails.
  returned: always
  type: str
  sample: read
incomplete:
  description:
    - The requests that were started but never completed (and not ended otherwise), oldest first.
    - At most O(max_listed) of them; see RV(truncated).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The request id, as it is in the log (a string or an integer).
      type: raw
      sample: 5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21
    started_ts:
      description: Start time in epoch seconds.
      type: float
      sample: 1714564800.25
    started_at:
      description: Start time in ISO 8601, UTC, with milliseconds.
      type: str
      sample: "2024-05-01T12:00:00.250Z"
    path:
      description: The file the start record was read from.
      type: str
      sample: /var/log/model-server/gpu-07.tasks.jsonl
    line:
      description: Line number of the start record in that file.
      type: int
      sample: 1841
    fields:
      description:
        - The other fields of the start record (all but O(id_key), O(event_key) and O(time_key)), cut to
          O(max_record_chars).
      type: dict
      sample:
        instance: gpu-07
        model: facebook/opt-125m
    truncated:
      description: Whether RV(incomplete[].id) or RV(incomplete[].fields) was cut to O(max_record_chars).
      type: bool
      returned: always
      sample: false
  sample:
    - id: 5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21
      started_ts: 1714564800.25
      started_at: "2024-05-01T12:00:00.250Z"
      path: /var/log/model-server/gpu-07.tasks.jsonl
      line: 1841
      fields:
        instance: gpu-07
        model: facebook/opt-125m
      truncated: false
incomplete_count:
  description:
    - Number of incomplete requests, exact even when RV(incomplete) is truncated.
    - Null when it is not known, RV(state) V(no_task_log) or V(error).
  returned: always
  type: int
  sample: 1
truncated:
  description: Whether RV(incomplete) lists fewer requests than RV(incomplete_count).
  returned: always
  type: bool
  sample: false
started_count:
  description: Requests started (at or after O(since), when given).
  returned: always
  type: int
  sample: 1842
completed_count:
  description: Of RV(started_count), the requests with a completed record.
  returned: always
  type: int
  sample: 1838
ended_count:
  description: Of RV(started_count), the requests ended by one of O(ended_values), for example aborted by the client.
  returned: always
  type: int
  sample: 3
unmatched_count:
  description:
    - End records whose start record was not found in the files read, for example because it was rotated away.
    - Those timed before O(since) are not counted.
  returned: always
  type: int
  sample: 0
started_before_since:
  description: Start records left out because they are older than O(since).
  returned: always
  type: int
  sample: 0
other_events:
  description: Records whose O(event_key) is none of O(started_value), O(completed_value) and O(ended_values).
  returned: always
  type: int
  sample: 0
malformed_lines:
  description: Lines that could not be used, over all files.
  returned: always
  type: int
  sample: 0
malformed_samples:
  description: The first (at most 10) malformed lines, with why.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /var/log/model-server/gpu-07.tasks.jsonl
      line: 17
      reason: "not JSON (Unterminated string starting at: line 1 column 40 (char 39))"
paths:
  description: What was read, one entry per file.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /var/log/model-server/gpu-07.tasks.jsonl
    exists:
      description: False for a missing file with O(missing_ok=true).
      type: bool
      sample: true
    compressed:
      description: Whether the file was gzip compressed.
      type: bool
      sample: false
    lines:
      description: Lines read, blank ones included.
      type: int
      sample: 3683
    malformed_lines:
      description: Malformed lines in this file.
      type: int
      sample: 0
    started:
      description: Start records in this file (before O(since) included).
      type: int
      sample: 1842
    completed:
      description: Completed records in this file.
      type: int
      sample: 1838
    ended:
      description: Records in this file with one of O(ended_values).
      type: int
      sample: 3
    other:
      description: Records in this file with another event.
      type: int
      sample: 0
    bytes_read:
      description: Bytes read from this file (after decompression).
      type: int
      returned: always
      sample: 612042
    capped:
      description: Whether the file is longer than O(max_file_bytes), so only that much was read.
      type: bool
      returned: always
      sample: false
    duplicate_of:
      description: The path this same file (same device and inode) was already read under; null otherwise.
      type: str
      returned: always
      sample: null
  sample:
    - path: /var/log/model-server/gpu-07.tasks.jsonl
      exists: true
      compressed: false
      lines: 3683
      malformed_lines: 0
      started: 1842
      completed: 1838
      ended: 3
      other: 0
      bytes_read: 612042
      capped: false
      duplicate_of: null
would_resubmit:
  description:
    - Number of requests O(resubmit) hands over (in check mode, would hand over); V(0) without O(resubmit).
    - It is RV(incomplete_count) when O(resubmit) is set.
  returned: always
  type: int
  sample: 1
resubmitted:
  description:
    - One outcome per request sent to O(resubmit.url), in order; empty when nothing was sent (check mode included).
    - With O(resubmit.batch=true) a single outcome covers all requests.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The request id sent, with O(resubmit.batch=false).
      type: raw
      returned: with O(resubmit.batch=false)
      sample: 5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21
    ids:
      description: The request ids sent, with O(resubmit.batch=true).
      type: list
      elements: raw
      returned: with O(resubmit.batch=true)
      sample: [5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21]
    count:
      description: Number of requests this outcome covers.
      type: int
      sample: 1
    status:
      description: The HTTP status answered; V(null) when the endpoint could not be reached.
      type: int
      sample: 202
    ok:
      description: Whether the status was 2xx.
      type: bool
      sample: true
    error:
      description: Why it failed; V(null) when O(resubmit.url) answered 2xx.
      type: str
      sample: null
  sample:
    - ids: [5f0c1d7e-2b1a-4c55-9d8e-0f7a3b6c9e21]
      count: 1
      status: 202
      ok: true
      error: null
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec
from ansible_collections.modelops.shutdown.plugins.module_utils._tasklog import argument_spec, reconcile


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(argument_spec()), supports_check_mode=True)
    result, failure_msg = reconcile(module.params, check_mode=module.check_mode, warn=module.warn)
    if failure_msg is not None:
        module.fail_json(msg=failure_msg, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
