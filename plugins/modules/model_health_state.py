# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: model_health_state
short_description: Put a model server in or out of rotation on its load balancer or registry
version_added: 0.1.0
description:
  - Sets a model-serving instance to V(ready), V(draining) or V(maintenance) on exactly one of
    HAProxy (runtime API), Consul (agent service maintenance mode), the server's own HTTP admin
    endpoint, or a maintenance flag file that the server's health check honours.
  - After a change, reads the state back until the load balancer or registry reports it, and
    optionally until the instance's own health URL answers an expected status. Fails, naming the
    target and what it saw, if that does not happen within O(verify_timeout) seconds.
  - Setting the state the target already reports sends nothing and returns C(changed=false).
  - The module runs where the target is reachable. For HAProxy and the flag file that is usually
    the load balancer or the model server itself (use C(delegate_to)).
  - Every failure returns the keys documented as always returned; what was not read yet is V(unknown).
  - Answers are checked rather than trusted; HAProxy answers that are empty or cut off, and Consul checks of an unexpected
    shape, fail the task instead of being read as a state.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details: Reads the current state and reports whether it would change; sends no command and verifies nothing.
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  state:
    description:
      - The state the instance should be in.
      - V(ready) takes new requests. V(draining) takes no new requests but lets the ones in flight
        finish. V(maintenance) is out of service.
      - V(query) only reads the current state.
      - Consul and the flag file have no separate drain, so V(draining) and V(maintenance) are the
        same for them and they report V(maintenance).
    type: str
    required: true
    choices: [ready, draining, maintenance, query]
  haproxy:
    description:
      - One server of one HAProxy backend, changed with C(set server <backend>/<server> state ready|drain|maint)
        on the runtime API (the socket needs C(level admin)).
      - The state is read from C(show servers state) (administrative state) and C(show stat)
        (operational status, sessions). A server that is C(DOWN) is still administratively V(ready).
      - Exactly one of O(haproxy), O(consul), O(http) or O(file) is required.
    type: dict
    suboptions:
      socket:
        description: Path of the HAProxy runtime API unix socket (the C(stats socket) of the global section).
        type: path
      host:
        description: Address of an HAProxy runtime API TCP socket, instead of O(haproxy.socket).
        type: str
      port:
        description: Port of the runtime API TCP socket. Required with O(haproxy.host).
        type: int
      backend:
        description:
          - The backend name.
          - Names containing C(;), C(#), C(/), a backslash, whitespace or non-printable characters are refused
            before anything is sent.
        type: str
        required: true
      server:
        description: The server name in O(haproxy.backend). The same characters are refused as for O(haproxy.backend).
        type: str
        required: true
      timeout:
        description:
          - Seconds one runtime API exchange (connection, command and the whole answer) may take.
          - More than 0 and at most a week.
        type: float
        default: 5.0
  consul:
    description:
      - A service registered with a Consul agent, taken out of discovery with the agent's service maintenance mode
        (C(PUT /v1/agent/service/maintenance/<service_id>)) and read back from C(GET /v1/agent/checks).
      - Consul has no drain, so V(draining) also enables maintenance mode.
      - Node maintenance (C(consul maint -enable), check C(_node_maintenance)) takes the service out of discovery as well,
        so it reads as V(maintenance). This module never changes it; O(state=ready) then fails verification and says so.
    type: dict
    suboptions:
      url:
        description: Base URL of the Consul agent that holds the service registration.
        type: str
        default: http://127.0.0.1:8500
      service_id:
        description: The service ID (not the name) as registered with that agent.
        type: str
        required: true
      token:
        description:
          - Consul ACL token, sent as C(X-Consul-Token). It needs C(service:write) on the service.
          - Surrounding whitespace (a trailing newline) is removed; it never appears in a result or message.
        type: str
      reason:
        description: The maintenance reason Consul shows. Defaults to C(modelops.shutdown) and the requested state.
        type: str
      validate_certs:
        description: Verify the TLS certificate of an C(https) agent URL.
        type: bool
        default: true
      ca_path:
        description: A CA bundle to verify the agent's certificate with.
        type: path
      timeout:
        description: Seconds one request may take, all of it (connection, headers and body). More than 0 and at most a week.
        type: float
        default: 10.0
  http:
    description:
      - The model server's own admin endpoint.
      - The state is set with O(http.method) on O(http.url) and read back with C(GET) on O(http.state_url),
        whose JSON answer holds V(ready), V(draining) or V(maintenance) under O(http.state_key).
    type: dict
    suboptions:
      url:
        description: URL that changes the state.
        type: str
        required: true
      state_url:
        description: URL returning the current state as JSON. Defaults to O(http.url).
        type: str
      method:
        description: HTTP method that changes the state.
        type: str
        default: POST
        choices: [POST, PUT, PATCH]
      body:
        description:
          - Request body. Every C({state}) in it is replaced by the requested state.
          - 'Defaults to the JSON document C({"state": "<state>"}).'
        type: str
      headers:
        description:
          - Extra request headers, sent with every request, the C(GET) that reads the state included.
          - C(Content-Type) defaults to C(application/json) on the request that changes the state.
          - A value with a line break is refused (it could inject a header).
        type: dict
        default: {}
      token:
        description:
          - Bearer token sent in the C(Authorization) header of every request.
          - Surrounding whitespace (a trailing newline) is removed; it never appears in a result or message.
        type: str
      validate_certs:
        description: Verify the TLS certificate of C(https) URLs.
        type: bool
        default: true
      ca_path:
        description: A CA bundle to verify the server's certificate with.
        type: path
      timeout:
        description: Seconds one request may take, all of it (connection, headers and body). More than 0 and at most a week.
        type: float
        default: 10.0
      state_key:
        description: Key of the state in the JSON answer of O(http.state_url). A dotted path reaches a nested key.
        type: str
        default: state
  file:
    description:
      - A maintenance flag file on the host the module runs on. Present (mode C(0644), containing the reason
        and the time it was set) means out of service, absent means V(ready).
      - A file has no separate drain, so V(draining) also writes the flag.
      - The flag is read back after it is written. When that read, or a later verification (O(health_url)), does not show
        the change, the flag is put back as it was (the previous file byte for byte, or no file) before the task fails.
    type: dict
    suboptions:
      path:
        description: Path of the flag file.
        type: path
        required: true
      reason:
        description: Reason written into the file. Defaults to C(modelops.shutdown) and the requested state.
        type: str
      create_parent:
        description:
          - Create the directory of O(file.path) if it is missing.
          - By default a missing directory is an error, since it usually means a wrong path.
        type: bool
        default: false
  verify_timeout:
    description:
      - Seconds to wait, after a change, for the target (and O(health_url)) to report the new state.
      - With V(0) each check is made once. At most a week.
    type: float
    default: 10.0
  verify_interval:
    description: Seconds between two verification reads. At least V(0.01), at most a week.
    type: float
    default: 0.5
  health_url:
    description:
      - A health URL of the instance to check as well once the target reports the state, for example
        the URL the load balancer's health check uses.
      - Checked within the same O(verify_timeout).
    type: str
  health_status:
    description:
      - The HTTP status O(health_url) should answer.
      - Defaults to V(200) for O(state=ready) and V(503) for O(state=draining) and O(state=maintenance).
    type: int
  health_validate_certs:
    description: Verify the TLS certificate of an C(https) O(health_url).
    type: bool
    default: true
  health_ca_path:
    description: A CA bundle to verify the certificate of O(health_url) with.
    type: path
notes:
  - Verification reads errors (a refused connection, a timeout) as "not yet" until O(verify_timeout) is spent.
  - For HAProxy, maintenance inherited from a tracked server (status C(MAINT) with C(via)) or caused by a name
    resolution failure cannot be lifted on this server; verification then fails and says so.
seealso:
  - name: HAProxy management guide, set server
    description: The runtime API command this module sends.
    link: https://docs.haproxy.org/2.8/management.html#9.3-set%20server
  - name: Consul agent service maintenance API
    description: The endpoint used for O(consul).
    link: https://developer.hashicorp.com/consul/api-docs/agent/service#enable-maintenance-mode
'''

EXAMPLES = r'''
- name: Drain the model server on HAProxy, from the load balancer
  modelops.shutdown.model_health_state:
    state: draining
    haproxy:
      socket: /run/haproxy/admin.sock
      backend: models
      server: "{{ inventory_hostname_short }}"
    health_url: "http://{{ inventory_hostname }}:8000/health"
    health_status: 200
  delegate_to: "{{ groups['lb'][0] }}"
  become: true

- name: Query the state on an HAProxy runtime API over TCP
  modelops.shutdown.model_health_state:
    state: query
    haproxy:
      host: 10.0.0.5
      port: 9999
      backend: models
      server: gpu-07
  delegate_to: localhost
  register: lb_state

- name: Take the service out of Consul discovery
  modelops.shutdown.model_health_state:
    state: maintenance
    consul:
      url: https://127.0.0.1:8501
      service_id: vllm-gpu-07
      token: "{{ consul_token }}"
      reason: "rolling shutdown {{ ansible_date_time.iso8601 }}"

- name: Drain through the server's own admin endpoint, then expect its health check to fail
  modelops.shutdown.model_health_state:
    state: draining
    http:
      url: "http://{{ inventory_hostname }}:8000/admin/state"
      token: "{{ model_admin_token }}"
    health_url: "http://{{ inventory_hostname }}:8000/health"
    verify_timeout: 30

- name: Raise the maintenance flag the health check looks for
  modelops.shutdown.model_health_state:
    state: maintenance
    file:
      path: /run/model-server/maintenance
      reason: kernel upgrade

- name: Back into rotation
  modelops.shutdown.model_health_state:
    state: ready
    file:
      path: /run/model-server/maintenance
'''

RETURN = r'''
previous_state:
  description:
    - The state the target reported before the module ran (V(ready), V(draining), V(maintenance) or V(unknown)).
    - V(unknown) also when the module failed before it could read it.
  returned: always
  type: str
  sample: ready
state:
  description:
    - The state the target reports now; in check mode, the state it would report.
    - V(unknown) when the target reports a value this module does not know, or when it could not be read.
  returned: always
  type: str
  sample: draining
target:
  description: What was read and changed, as used in messages.
  returned: always
  type: str
  sample: HAProxy server models/gpu-07 (HAProxy runtime socket /run/haproxy/admin.sock)
in_flight:
  description:
    - Sessions plus queued requests HAProxy counts for the server (C(scur) + C(qcur)) at the last read.
    - V(null) for targets that cannot tell.
  returned: always
  type: int
  sample: 3
verified:
  description: What was checked after the change, and what was seen.
  returned: always
  type: dict
  contains:
    ok:
      description: Whether every check passed. V(null) when nothing was verified (O(state=query) and check mode).
      type: bool
      sample: true
    skipped:
      description: True when nothing was verified.
      type: bool
      sample: false
    waited_seconds:
      description: Seconds spent verifying.
      type: float
      sample: 0.52
    detail:
      description: The last observation of the failed checks, or of all checks when they passed.
      type: str
      sample: "HAProxy server models/gpu-07 (...): admin state drain (from show servers state), status DRAIN"
    checks:
      description: One entry per check (C(backend), then C(health_url) if given).
      type: list
      elements: dict
      sample:
        - name: backend
          what: HAProxy server models/gpu-07 (HAProxy runtime socket /run/haproxy/admin.sock) reports draining
          ok: true
          waited_seconds: 0.0
          polls: 1
          detail: "HAProxy server models/gpu-07 (...): admin state drain (from show servers state), status DRAIN"
raw:
  description:
    - The target's own detail from the last read; empty when nothing could be read.
    - HAProxy - C(status) (operational, e.g. C(UP), C(DOWN), C(DRAIN), C(MAINT)), C(admin_state) bits,
      C(op_state_name), C(check_status), C(weight), C(scur), C(qcur), C(addr).
    - Consul - C(maintenance), C(maintenance_check), C(node_maintenance), C(node_maintenance_check), C(service_checks).
    - HTTP - C(reported) value and the full JSON C(response).
    - File - C(path), C(exists), C(mode), C(mtime), C(content) (its first 500 characters; C(content_truncated) when
      there is more).
  returned: always
  type: dict
  sample:
    backend: models
    server: gpu-07
    status: DRAIN
    admin_state: 8
    admin_state_name: drain
    admin_source: show servers state
    op_state: 2
    op_state_name: running
    admin_flags: [forced drain]
    check_status: L7OK
    check_desc: Layer7 check passed
    weight: 1
    scur: 2
    qcur: 0
    addr: 10.0.0.7:8000
diff:
  description: The state before and after.
  returned: in diff mode, when O(state) is not V(query)
  type: dict
  sample:
    before:
      state: ready
    after:
      state: draining
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._lb import (
    KINDS,
    HealthCheck,
    adapter_specs,
    HealthStateManager,
    adapter_errors,
    adapter_problems,
    describe_options,
    empty_result,
    make_adapter,
)
from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError, check_url
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec, seconds_problem


def argument_spec():
    return dict(
        state=dict(type='str', required=True, choices=['ready', 'draining', 'maintenance', 'query']),
        verify_timeout=dict(type='float', default=10.0),
        verify_interval=dict(type='float', default=0.5),
        health_url=dict(type='str'),
        health_status=dict(type='int'),
        health_validate_certs=dict(type='bool', default=True),
        health_ca_path=dict(type='path'),
        **adapter_specs()
    )


def check_params(params):
    """Problems the argument spec cannot express (numbers, a kind given only as null), each naming its option."""
    problems = []
    given = [kind for kind in KINDS if params.get(kind) is not None]
    if not given:
        problems.append('one of the following is required: %s (an option given as null is not given)' % ', '.join(KINDS))
    for kind in given:
        problems.extend(adapter_problems(kind, params[kind], '%s.' % kind))
    for problem in (seconds_problem('verify_timeout', params['verify_timeout'], minimum=0.0),
                    seconds_problem('verify_interval', params['verify_interval'], minimum=0.01)):
        if problem:
            problems.append(problem)
    if params.get('health_url') is not None:
        try:
            check_url(params['health_url'], 'health_url')
        except HttpError as exc:
            problems.append(to_text(exc).rstrip('.'))
    status = params.get('health_status')
    if status is not None and not 100 <= status <= 599:
        problems.append('health_status must be an HTTP status between 100 and 599, got %s' % status)
    return problems, (given[0] if given else None)


def main():
    module = AnsibleModule(
        argument_spec=module_argument_spec(argument_spec()),
        mutually_exclusive=[list(KINDS)],
        required_one_of=[list(KINDS)],
        required_by={'health_status': 'health_url'},
        supports_check_mode=True,
    )
    params = module.params
    state = params['state']
    problems, kind = check_params(params)
    target = describe_options(kind, params[kind]) if kind else 'nothing (no target given)'
    if problems:
        module.fail_json(msg='; '.join(problems), **empty_result(target))

    result = empty_result(target)
    failure = None
    try:
        health = None
        if params['health_url'] and state != 'query':
            status = params['health_status']
            if status is None:
                status = 200 if state == 'ready' else 503
            health = HealthCheck(params['health_url'], status, validate_certs=params['health_validate_certs'],
                                 ca_path=params['health_ca_path'])
        adapter = make_adapter(kind, params[kind])
        manager = HealthStateManager(adapter, verify_timeout=params['verify_timeout'],
                                     verify_interval=params['verify_interval'], health_check=health)
        result, failure = manager.run(state, check_mode=module.check_mode, diff_mode=module._diff)
    except adapter_errors() as exc:
        # An expected failure with a complete message: no traceback (fail_json is called outside the handler).
        failure = to_text(exc)
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
