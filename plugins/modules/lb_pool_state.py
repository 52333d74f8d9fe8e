#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: lb_pool_state
short_description: Read the state of every server of HAProxy backends in one call
version_added: 0.1.0
description:
  - Reads every server of one or more HAProxy backends with one C(show stat) and one C(show servers state)
    on the runtime API, and says which of them are available (administratively ready and passing their
    health checks).
  - The rollout's disruption budget uses it to count each pool before a batch is taken out. Reading a pool
    this way costs one connection per load balancer, not one per server.
  - To read or change one server, use M(modelops.shutdown.model_health_state).
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
  haproxy:
    description: The HAProxy runtime API to read.
    type: dict
    required: true
    suboptions:
      socket:
        description: Path of the runtime API unix socket.
        type: path
      host:
        description: Address of a runtime API TCP socket, instead of O(haproxy.socket).
        type: str
      port:
        description: Port of the runtime API TCP socket. Required with O(haproxy.host).
        type: int
      timeout:
        description:
          - Seconds one runtime API exchange (connection, command and the whole answer) may take.
          - More than 0 and at most a week.
        type: float
        default: 5.0
  backends:
    description:
      - Backends to read. All backends when omitted; an empty list is refused.
      - A backend that does not exist, or has no server, fails the module.
      - So does an answer that is not complete - empty, without its header, with a row of the wrong number of
        fields, or without the empty line HAProxy ends every answer with - rather than return part of the pool.
    type: list
    elements: str
'''

EXAMPLES = r'''
- name: Count the servers of the models backend that take traffic
  modelops.shutdown.lb_pool_state:
    haproxy:
      socket: /run/haproxy/admin.sock
    backends: [models]
  delegate_to: lb1.example.net
  register: pool

- name: Show how many are available
  ansible.builtin.debug:
    msg: "{{ pool.servers | selectattr('available') | list | length }} of {{ pool.servers | length }} available"
'''

RETURN = r'''
servers:
  description: Every server of the backends read, sorted by backend and server.
  returned: success
  type: list
  elements: dict
  contains:
    backend:
      description: Backend name.
      type: str
      sample: models
    server:
      description: Server name.
      type: str
      sample: gpu-07
    state:
      description: Administrative state, as M(modelops.shutdown.model_health_state) names it.
      type: str
      sample: ready
    status:
      description: HAProxy's C(show stat) status (operational), such as C(UP), C(DOWN), C(DRAIN), C(MAINT), C(no check).
      type: str
      sample: UP
    available:
      description: Whether the server is administratively ready and serving (C(UP) or C(no check)).
      type: bool
      sample: true
    in_flight:
      description: Sessions plus queued requests HAProxy counts for the server (C(scur) + C(qcur)).
      type: int
      sample: 2
  sample:
    - {backend: models, server: gpu-07, state: ready, status: UP, available: true, in_flight: 2}
source:
  description: What was read.
  returned: always
  type: str
  sample: HAProxy runtime socket /run/haproxy/admin.sock
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyError, HAProxyRuntime, runtime_api_spec
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_haproxy import read_pool
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec, number_problems


def argument_spec():
    return dict(
        haproxy=runtime_api_spec(required=True),
        backends=dict(type='list', elements='str'),
    )


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(argument_spec()), supports_check_mode=True)
    params = module.params['haproxy']
    source = params.get('socket') or '%s:%s' % (params.get('host'), params.get('port'))
    problems = number_problems(argument_spec(), module.params, seconds={'haproxy.timeout': dict(minimum=0.0, above=True)})
    if module.params['backends'] == []:
        problems.append('backends is an empty list: omit it to read every backend, or name at least one')
    if problems:
        module.fail_json(msg='; '.join(problems), source=source)
    error = None
    try:
        runtime = HAProxyRuntime(socket_path=params['socket'], host=params['host'], port=params['port'], timeout=params['timeout'])
        source = runtime.describe()
        servers = read_pool(runtime, module.params['backends'])
    except HAProxyError as exc:
        error = to_text(exc)
    if error is not None:
        module.fail_json(msg='Could not read the pool: %s. Check the runtime API address and the backend names.' % error.rstrip('.'),
                         source=source)
    module.exit_json(changed=False, servers=servers, source=source)


if __name__ == '__main__':
    main()
