#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: retirement_eligibility
short_description: Decide which models may be retired, by versioned policies evaluated over the Prometheus HTTP API
version_added: 0.4.0
description:
  - Evaluates declarative, versioned retirement policies (O(policies)) for a list of models (O(models)) with instant
    and range queries to the Prometheus HTTP API (O(prometheus)), and returns, per model, whether it is eligible for
    retirement (RV(models)), with the evidence frozen in a report (RV(report)) carrying a digest (RV(digest)).
  - B(No data is never zero.) A model whose scrape targets are not all C(up) (down, or not scraped at all), a query
    that fails, an empty result or a NaN or infinite value makes a condition V(inconclusive) (unless the condition
    says what no data means), and an inconclusive model is never eligible.
  - A Prometheus that cannot be reached does not fail the task; every condition is then V(inconclusive) and
    RV(msg) says so. The playbook decides what to do; nothing is eligible on missing evidence.
  - With O(report), verifies a report written earlier instead (digest, age, kind and schema version) and returns
    what it says; no query is sent.
  - Runs on the controller (C(delegate_to=localhost), C(run_once=true)); only the Python standard library is needed.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details:
      - The queries are sent (they only read) and the result is returned; no report and no state file is written,
        and RV(models[].retire) and the streaks show what they would be, read from O(state_file).
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every evaluation writes a new report (named by its time) and counts one more evaluation in O(state_file).
options:
  prometheus:
    description: The Prometheus to ask. Required with O(policies).
    type: dict
    suboptions:
      url:
        description: Its base URL, without C(/api/v1) (V(http://127.0.0.1:9090)).
        type: str
        required: true
      token:
        description: A bearer token sent in an C(Authorization) header (C(Bearer) scheme); masked in every message.
        type: str
      validate_certs:
        description: Whether to verify the TLS certificate of an V(https) URL.
        type: bool
        default: true
      ca_path:
        description: A PEM file of the certificate authorities to trust.
        type: path
      timeout:
        description: Seconds each query may take, in all (more than 0, at most a week).
        type: float
        default: 10
  models:
    description:
      - The models to judge. A model's key is C(name@version), or C(name) when O(models[].version) is empty.
    type: list
    elements: dict
    suboptions:
      name:
        description: The model name.
        type: str
        required: true
      version:
        description: Its version.
        type: str
        default: ''
      hosts:
        description: The hosts that serve it (carried into the report, for the playbook).
        type: list
        elements: str
        default: []
      labels:
        description:
          - The label matchers that select its series, for C(${selector}) (label names to values).
          - Default - one matcher, C(model_name) equal to O(models[].name).
        type: dict
      targets:
        description:
          - The C(instance) label values of its scrape targets (V(rt-b1:8000)). Each must have an C(up) series of
            value 1, else every condition of the model is V(inconclusive). A model without targets is inconclusive.
        type: list
        elements: str
        default: []
  policies:
    description:
      - The policies, each a dict - C(name) (letters, digits, C(.), C(_), C(-)), C(version) (required), C(description),
        C(applies_to) (C({models - [globs]}), matched with fnmatch on the model name or key; default every model),
        C(action) (V(retire), V(freeze) or V(notify), or a list of them such as V([notify, freeze]); required; the report
        lists it as a list), C(rollback_window) (a duration; required with V(retire)), C(owner), C(no_data)
        (V(inconclusive), the default, V(met) or V(not_met)) and C(conditions).
      - Each condition - C(name) (unique in the policy), C(query) (PromQL), C(compare) (V(<), V(<=), V(>), V(>=),
        V(==), V(!=)), C(threshold) (a finite number), C(for) (a duration - a range query over the window ending
        now; without it, an instant query), C(step) (a duration; default the larger of 1 s and C(for)/60),
        C(consecutive) (evaluations in a row the condition must hold, counted across runs in O(state_file); default
        1) and C(no_data) (overrides the policy's).
      - A condition is met when every series (every sample, for a range) satisfies C(value compare threshold); a range
        must cover its window (first sample within one step of its start, at most one sample missing).
      - A policy is not met when a condition is not met, else inconclusive when one is inconclusive, else met.
      - Durations are seconds, or strings such as V(90s), V(5m), V(24h), V(3d), V(1h30m), V(500ms), up to 400 days.
      - "Placeholders in C(query), replaced per model (not Jinja, which Ansible would template) - C(${selector})
        (the label matchers of O(models[].labels), values escaped), C(${model_name}), C(${model_version}) and
        C(${targets}) (a regular expression matching the escaped O(models[].targets)). Another C(${...}) is an error;
        a C($) not followed by C({) is left alone."
      - Validated with errors naming the path (C(policies[1].conditions[0].compare)).
    type: list
    elements: dict
  state_file:
    description:
      - A JSON file keeping the streak of each condition with C(consecutive) above 1, per policy version, model and
        condition; written atomically (mode 0600) under a lock (C(<state_file>.lock)).
      - Required when a condition has C(consecutive) above 1.
    type: path
  report_dir:
    description:
      - A folder (created with mode 0700) where the report is written as C(eligibility-<yyyymmddTHHMMSSZ>.json) and
        C(.md) (mode 0600, atomically). Omit to write no file; RV(report) is returned either way.
    type: path
  report:
    description:
      - Verify this report (a JSON file this module wrote) instead of evaluating - its digest must match its content,
        its C(evaluated_at) be at most O(max_report_age) seconds old and at most 300 s in the future.
      - Excludes O(policies), O(prometheus) and O(models).
    type: path
  report_data:
    description:
      - Verify this report, given as data rather than a file (what an earlier job handed over, for example an AWX
        workflow's artifacts published with C(set_stats)), with the same checks as O(report).
      - Excludes O(report), O(policies), O(prometheus) and O(models).
    type: dict
  max_report_age:
    description: The oldest report, in seconds, O(report) or O(report_data) accepts.
    type: float
    default: 3600
notes:
  - Queries are sent with C(GET) and URL-encoded parameters; every query of a run is evaluated at the same time, the
    start of the run.
  - Once a query cannot reach Prometheus at all (refused, timed out), the rest are not sent and are inconclusive.
seealso:
  - module: modelops.shutdown.model_drain
'''

EXAMPLES = r'''
- name: Which models may be retired
  modelops.shutdown.retirement_eligibility:
    prometheus:
      url: http://prometheus.internal:9090
      timeout: 10
    models:
      - name: embed
        version: "2"
        hosts: [rt-b1]
        targets: ["rt-b1:8000"]
    policies:
      - name: idle-for-a-week
        version: 3
        action: retire
        rollback_window: 7d
        owner: ml-platform
        conditions:
          - name: no traffic
            query: sum(rate(vllm:request_success_total{${selector}}[1h])) or vector(0)
            compare: "<="
            threshold: 0
            for: 7d
            step: 1h
          - name: superseded by a better model
            query: model_quality_score{${selector}}
            compare: "<"
            threshold: 0.85
            consecutive: 3
    state_file: /var/lib/modelops/eligibility-state.json
    report_dir: /var/lib/modelops/eligibility
  delegate_to: localhost
  run_once: true
  register: eligibility

- name: Check, right before retiring, the report the change was approved with
  modelops.shutdown.retirement_eligibility:
    report: "{{ eligibility.report_path }}"
    max_report_age: 1800
  delegate_to: localhost
  run_once: true

- name: In an AWX workflow, check the report the eligibility job published with set_stats
  modelops.shutdown.retirement_eligibility:
    report_data: "{{ modelops_eligibility.report }}"
    max_report_age: 1800
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
changed:
  description: Whether a report or the state file was written (never in check mode or when verifying).
  returned: always
  type: bool
  sample: true
evaluated_at:
  description: When the policies were evaluated (the time of every query), in seconds since the epoch.
  returned: success
  type: float
  sample: 1796187733.0
evaluated_at_iso:
  description: RV(evaluated_at) in UTC, ISO 8601.
  returned: success
  type: str
  sample: "2026-12-02T05:00:00Z"
digest:
  description: sha256 (hex) of the canonical JSON of RV(report) without its C(digest) key.
  returned: success
  type: str
  sample: 3f1c0a9e0d6b5d7f2c4e8a1b9c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d
report:
  description:
    - The eligibility report - C(schema_version), C(kind), C(evaluated_at), C(evaluated_at_iso), C(prometheus.url),
      C(policies) (name, version, action and digest of each), C(models) and C(digest).
    - Each model has C(key), C(name), C(version), C(hosts), C(labels), C(targets) (C(instance), C(state) V(up),
      V(down), V(not_scraped) or V(unknown), C(value)), C(retire), C(reason), C(deciding_policy), C(actions) and
      C(policies), each with C(decision), C(reason), C(rollback_window) (seconds), C(owner) and C(conditions) - the
      rendered C(query), C(type) (V(instant) with C(time), V(range) with C(start), C(end) and C(step)), C(compare),
      C(threshold), C(result), C(reason), C(consecutive), C(streak) and C(series) (C(labels) and C(value), or
      C(samples) (at most 200, the first and last kept) and C(count)).
    - NaN and infinite values are the strings V(NaN), V(+Inf) and V(-Inf).
  returned: success
  type: dict
  sample:
    schema_version: 1
    kind: modelops.shutdown/eligibility
    evaluated_at: 1796187733.0
    evaluated_at_iso: "2026-12-02T05:00:00Z"
    prometheus: {url: "http://prometheus.internal:9090"}
    policies: [{name: idle-for-a-week, version: "3", action: [retire], digest: 9b2e...}]
    models: []
    digest: 3f1c...
report_path:
  description: The JSON report written (or, when verifying, the one read); V(null) without O(report_dir), in check mode
    and with O(report_data).
  returned: success
  type: str
  sample: /var/lib/modelops/eligibility/eligibility-20261202T050000Z.json
report_md_path:
  description: The Markdown report written; V(null) without O(report_dir), in check mode and when verifying.
  returned: success
  type: str
  sample: /var/lib/modelops/eligibility/eligibility-20261202T050000Z.md
models:
  description: Per model key, the summary of its evaluation.
  returned: success
  type: dict
  sample:
    embed@2:
      name: embed
      version: "2"
      hosts: [rt-b1]
      retire: eligible
      reason: policy idle-for-a-week version 3 is met
      deciding_policy: {name: idle-for-a-week, version: "3", rollback_window: 604800.0}
      actions: [{action: retire, policy: idle-for-a-week, version: "3", owner: ml-platform}]
  contains:
    name:
      description: The model name.
      type: str
      returned: always
      sample: embed
    version:
      description: The model version.
      type: str
      returned: always
      sample: "2"
    hosts:
      description: The hosts of O(models[].hosts).
      type: list
      elements: str
      returned: always
      sample: [rt-b1]
    retire:
      description:
        - V(eligible) (a retire policy is met), V(inconclusive) (none is met and one is inconclusive) or
          V(not_eligible) (every retire policy is not met, or none applies).
      type: str
      returned: always
      sample: eligible
    reason:
      description: Why, naming the policies and conditions.
      type: str
      returned: always
      sample: policy idle-for-a-week version 3 is met
    deciding_policy:
      description: The first met retire policy (C(name), C(version), C(rollback_window) in seconds); V(null) when none.
      type: dict
      returned: always
      sample: {name: idle-for-a-week, version: "3", rollback_window: 604800.0}
    actions:
      description: The action, policy, version and owner of every met policy (freeze and notify included).
      type: list
      elements: dict
      returned: always
      sample: [{action: retire, policy: idle-for-a-week, version: "3", owner: ml-platform}]
eligible:
  description: The keys of the models whose RV(models[].retire) is V(eligible).
  returned: success
  type: list
  elements: str
  sample: [embed@2]
inconclusive:
  description: The keys of the models whose RV(models[].retire) is V(inconclusive).
  returned: success
  type: list
  elements: str
  sample: [chat@1]
from_report:
  description: Whether the result was read from O(report) rather than evaluated.
  returned: success
  type: bool
  sample: false
msg:
  description: What was decided for which model, where the report is, and when Prometheus could not be reached.
  returned: always
  type: str
  sample: "Evaluated 1 policies for 1 models at 2026-12-02T05:00:00Z: eligible: embed@2; inconclusive: none; not eligible: none."
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec
from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_policy


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(_retire_policy.argument_spec()), supports_check_mode=True,
                           **_retire_policy.MODULE_CONSTRAINTS)
    now = time.time()  # one time for the whole run: every query of the run is evaluated at it
    try:
        result = _retire_policy.run(module.params, module.check_mode, now)
    except _retire_policy.PolicyError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
