#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: lb_batch_state
short_description: Take a batch of model servers out of one load balancer at once, within the disruption budget
version_added: 0.2.0
description:
  - One call per load balancer and batch. Reads the state of every server of the pool (HAProxy pools whole, with one
    C(show stat) and one C(show servers state) per runtime API; Consul, HTTP and flag-file entries one by one), checks
    the disruption budget against that same read, and only if the budget holds sets every server of the batch to
    O(state) at once, then reads them back until the change is in effect.
  - Returns, for each server of the batch, the state it replaced (RV(servers[].previous_state)) and what the load
    balancer still had in flight to it right after the mark (RV(servers[].in_flight_at_mark), HAProxy C(scur) + C(qcur)),
    and the moment the load balancer stopped sending (RV(marked_at)), which M(modelops.shutdown.model_drain) and
    M(modelops.shutdown.host_shutdown) take as O(modelops.shutdown.model_drain#module:since).
  - A batch the budget refuses is not touched. A mark that does not take effect within O(verify_timeout) is put back to
    the previous states before the module fails. A member whose state cannot be read makes the budget fail closed.
  - O(state=restore) puts each server of the batch back to the state given in O(restore_states) (what an earlier call
    returned as RV(servers[].previous_state)); O(state=ready) puts them back into service, and with
    O(available_timeout) waits until HAProxy reports them serving (health checks passing).
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
  - modelops.shutdown.journal
attributes:
  check_mode:
    support: full
    details: Reads the pool and checks the budget; changes nothing and reports what would change.
  diff_mode:
    support: full
  idempotent:
    support: full
    details: Servers already in the requested state are not sent anything.
options:
  state:
    description:
      - V(draining) lets in-flight requests finish and sends no new ones; V(maintenance) also stops persistent
        (sticky) clients; V(ready) puts the servers back into service; V(restore) puts back O(restore_states).
      - The disruption budget is checked for V(draining) and V(maintenance) only.
    type: str
    required: true
    choices: [draining, maintenance, ready, restore]
  name:
    description:
      - The load balancer's name, used in messages and as the first part of pool names (C(<name>/<backend>)), as the
        O(min_available) keys and M(modelops.shutdown.disruption_budget) name them.
    type: str
    required: true
  members:
    description:
      - Every server of the pools this load balancer serves that the budget counts, the batch's included.
      - Each entry is a dict with C(host) (the inventory name of the model host) and exactly one of C(haproxy),
        C(consul), C(http) or C(file), whose value takes the options of the same name of
        M(modelops.shutdown.model_health_state) and is validated with that module's argument spec, numbers included
        (finite, not negative, timeouts more than 0).
      - A pool read that is incomplete (an empty or cut-off runtime API answer) counts as unread, so nothing is changed.
    type: list
    elements: dict
    required: true
  batch:
    description:
      - Inventory names of the hosts to change. Every one must have an entry in O(members).
    type: list
    elements: str
    required: true
  min_available:
    description:
      - How many servers of each pool must stay available (ready and UP) after the batch is taken out - a count
        (V(2)), a percentage of the pool (V(50%), rounded up), or a dict of pool name to either with a C(default) key.
      - V(0) turns the budget off.
    type: raw
    default: 0
  restore_states:
    description:
      - With O(state=restore), the state each host of the batch is put back to (host name to V(ready), V(draining) or
        V(maintenance)).
    type: dict
  verify_timeout:
    description: Seconds the load balancer has to report the new state of every server of the batch.
    type: float
    default: 10
  verify_interval:
    description: Seconds between two reads while verifying.
    type: float
    default: 0.5
  available_timeout:
    description:
      - With O(state=ready) or O(state=restore), also wait up to this many seconds for every server put back to
        V(ready) to be serving (HAProxy status C(UP)). V(0) does not wait.
    type: float
    default: 0
  expect_serving:
    description:
      - With O(available_timeout), the hosts whose servers must be serving again; the others (for example a host that
        became unreachable, which HAProxy rightly reports C(DOWN)) are only put back to their state. Default all hosts
        of O(batch).
    type: list
    elements: str
  answer_timeout:
    description:
      - Seconds the first read may wait for an admin API that does not answer (every server of O(batch) must be read
        before anything is changed). The put-back after a batch halted because a load balancer went away mid-batch
        uses it to put the hosts back as soon as the load balancer answers again. V(0) reads once.
    type: float
    default: 0
  haproxy_config:
    description:
      - Path of HAProxy's configuration file on the host this runs on (the load balancer, through C(delegate_to)).
        When given, the module reads it and warns when HAProxy does not keep runtime states across a reload (no
        C(server-state-file) in C(global), or no C(load-server-state-from-file) in a C(defaults) or C(backend)
        section), since HAProxy then forgets every drain on reload, and a draining server comes back C(UP). See
        RV(server_state).
      - A file that does not exist is reported in the warning; nothing fails.
      - Also read for RV(health_checks), and for the C(hash-type) of the backends a O(weight_ramp) lowers.
    type: path
  weight_ramp:
    description:
      - With O(state=draining) or O(state=maintenance), lower each changed HAProxy server's weight in O(weight_ramp.steps)
        steps over O(weight_ramp.duration) seconds before it is marked, so its traffic moves to the other servers
        gradually (a gray release in reverse). Each step sets an absolute weight
        (C(round(weight * (steps - k) / steps)), at least 1) and reads it back with C(get weight).
      - Before each step the pool is read again; the ramp stops, and the weights go back to what they were, when a server
        of the batch is no longer in the state it was read in, a read fails, or the disruption budget (O(min_available))
        no longer holds. A ramping server counts as available until it is marked.
      - Refused before anything changes for a server that is not an HAProxy one; for a backend whose balancing
        algorithm is static, where HAProxy takes only 0 or 100 % (C(static-rr), or a hash without C(hash-type consistent);
        the algorithm is read from C(show stat), the C(hash-type) from O(haproxy_config)); and for a weight lower than
        O(weight_ramp.steps) (HAProxy's default weight is 1, so give the servers a weight such as 100). A server at weight 0
        takes no new requests already and is marked without a ramp.
      - Once the mark holds, the weights go back to what they were (HAProxy keeps a server in DRAIN whatever its weight),
        so a later put-back to C(ready) finds them unchanged.
      - With O(state=ready) in check mode (the rollout's pre-flight read) the ramp is checked, not run, for every server
        of O(batch), so a static backend is refused before the first batch.
      - The call lasts at least O(weight_ramp.duration); the rollout marks its load balancers one after another.
    type: dict
    version_added: 0.6.0
    suboptions:
      duration:
        description: Seconds from the first step to the mark.
        type: float
        required: true
      steps:
        description: Steps including the mark (at least 2); C(4) lowers to 3/4, 1/2 and 1/4 of the weight, then marks.
        type: int
        default: 4
  reset_weights:
    description:
      - With O(state=ready) or O(state=restore), hosts of O(batch) whose HAProxy weight is set back to its initial
        weight (the configuration's, as C(get weight) reports it) before their state is put back - for a weight ramp
        whose run was interrupted before it could put the weights back itself (the rollout's recovery passes the hosts
        its journal shows mid-ramp). See RV(weights_reset).
      - The initial weight, not the one before the ramp, since the journal is written before the module reads the weights, so
        a weight an operator had set at run time before the rollout is not known to it.
    type: list
    elements: str
    version_added: 0.6.0
seealso:
  - module: modelops.shutdown.model_health_state
  - module: modelops.shutdown.host_shutdown
  - module: modelops.shutdown.lb_pool_state
'''

EXAMPLES = r'''
- name: Drain the batch on lb1, within the budget, in one call
  modelops.shutdown.lb_batch_state:
    name: lb1
    state: draining
    members:
      - {host: gpu-01, haproxy: {socket: /run/haproxy/admin.sock, backend: models, server: gpu-01}}
      - {host: gpu-02, haproxy: {socket: /run/haproxy/admin.sock, backend: models, server: gpu-02}}
      - {host: gpu-03, haproxy: {socket: /run/haproxy/admin.sock, backend: models, server: gpu-03}}
    batch: [gpu-01]
    min_available: 2
  delegate_to: lb1
  register: marked

- name: Put back exactly what the mark replaced
  modelops.shutdown.lb_batch_state:
    name: lb1
    state: restore
    members: "{{ marked.servers | map(attribute='host') | map('extract', hostvars, 'my_lb_entry') | list }}"
    batch: "{{ marked.servers | map(attribute='host') | list }}"
    restore_states: "{{ dict(marked.servers | map(attribute='host') | zip(marked.servers | map(attribute='previous_state'))) }}"
  delegate_to: lb1
'''

RETURN = r'''
lb:
  description: The load balancer's name (O(name)).
  returned: always
  type: str
  sample: lb1
state:
  description: The requested state.
  returned: always
  type: str
  sample: draining
refused:
  description: Whether the disruption budget refused the batch (then nothing was changed).
  returned: always
  type: bool
  sample: false
budget:
  description:
    - One record per pool, as M(modelops.shutdown.disruption_budget) returns them, from the read the mark was made on.
      Empty when the budget is off or the state does not take servers out.
  returned: always
  type: list
  elements: dict
  sample:
    - {pool: lb1/models, size: 3, available: 3, taking: 1, remaining: 2, required: 2, ok: true, unknown: []}
servers:
  description: One record per server of the batch.
  returned: always
  type: list
  elements: dict
  contains:
    host:
      description: Inventory name of the model host.
      type: str
      sample: gpu-01
    kind:
      description: Adapter kind (haproxy, consul, http, file).
      type: str
      sample: haproxy
    target:
      description: What was changed, in words.
      type: str
      sample: HAProxy server models/gpu-01 (runtime socket /run/haproxy/admin.sock)
    state:
      description: The state the server is in now (the previous one again when the change was put back).
      type: str
      sample: draining
    previous_state:
      description: The state the server was in before this call; V(null) when it could not be read.
      type: str
      sample: ready
    previous_status:
      description: HAProxy's operational status before the call (V(null) for other kinds).
      type: str
      sample: UP
    status:
      description: HAProxy's operational status after the call (V(null) for other kinds or when not verified).
      type: str
      sample: DRAIN
    changed:
      description: Whether this call changed the server's state (and left it changed).
      type: bool
      sample: true
    in_flight_at_mark:
      description: Requests the load balancer still had in flight to the server right after the mark (HAProxy
        C(scur) + C(qcur)); V(null) where the kind cannot tell.
      type: int
      sample: 2
    marked_at:
      description: When the load balancer stopped sending to this server (RV(marked_at) of this call); V(null) when
        nothing was sent.
      type: float
      sample: 1764614400.131
    error:
      description: Why reading or changing this server failed, else V(null).
      type: str
      sample: null
  sample:
    - {host: gpu-01, kind: haproxy, state: draining, previous_state: ready, changed: true, in_flight_at_mark: 2}
started_at:
  description: Wall-clock time (epoch seconds) the call started.
  returned: always
  type: float
  sample: 1764614400.123
marked_at:
  description: Wall-clock time (epoch seconds) right after the last server of the batch was marked; V(null) when
    nothing was sent (check mode, refusal, read failure).
  returned: always
  type: float
  sample: 1764614400.131
finished_at:
  description: Wall-clock time (epoch seconds) the call ended.
  returned: always
  type: float
  sample: 1764614400.640
verify_seconds:
  description: Seconds the verification took.
  returned: when the change was verified
  type: float
  sample: 0.012
answer_waited_seconds:
  description: Seconds the first read waited for the admin API to answer (O(answer_timeout)).
  returned: when O(answer_timeout) is more than 0
  type: float
  sample: 4.52
server_state:
  description: What O(haproxy_config) says about keeping runtime states across a reload.
  returned: when O(haproxy_config) is given
  type: dict
  sample: {config: /etc/haproxy/haproxy.cfg, server_state_file: null, load_from_file: [], persists: false}
  contains:
    config:
      description: The file read.
      type: str
      sample: /etc/haproxy/haproxy.cfg
    server_state_file:
      description: The C(server-state-file) of C(global), or null.
      type: str
      sample: /var/lib/haproxy/server-state
    load_from_file:
      description: The sections with C(load-server-state-from-file global) or C(local).
      type: list
      elements: str
      sample: [defaults]
    persists:
      description: Both are there; null when the file could not be read.
      type: bool
      sample: false
health_checks:
  description:
    - The health-check settings of each HAProxy member's server in O(haproxy_config), and how long HAProxy takes to
      mark it C(DOWN) after it stopped (C(inter + (fall - 1) * fastinter); V(null) without C(check)).
      M(modelops.shutdown.drain_timing_check) compares it with the server's own shutdown window.
  returned: when O(haproxy_config) is given and a member is an HAProxy one
  type: list
  elements: dict
  sample:
    - {host: gpu-01, lb: lb1, backend: models, server: gpu-01, check: true, inter_seconds: 2.0, fastinter_seconds: 2.0,
       downinter_seconds: 2.0, fall: 3, rise: 2, detection_seconds: 6.0,
       source: '/etc/haproxy/haproxy.cfg: server line 41, default-server line 38', error: null}
  contains:
    host:
      description: Inventory name of the model host.
      type: str
      sample: gpu-01
    lb:
      description: O(name), the load balancer these settings are on.
      type: str
      sample: lb1
    backend:
      description: The member's backend.
      type: str
      sample: models
    server:
      description: The member's server.
      type: str
      sample: gpu-01
    check:
      description: Whether the server is health-checked; null when the file has no such server.
      type: bool
      sample: true
    inter_seconds:
      description: C(inter) in seconds (HAProxy's default 2).
      type: float
      sample: 2.0
    fastinter_seconds:
      description: C(fastinter) in seconds (C(inter) when unset).
      type: float
      sample: 2.0
    downinter_seconds:
      description: C(downinter) in seconds (C(inter) when unset).
      type: float
      sample: 2.0
    fall:
      description: Consecutive failed checks that mark the server C(DOWN) (HAProxy's default 3).
      type: int
      sample: 3
    rise:
      description: Consecutive passed checks that mark it C(UP) again (HAProxy's default 2).
      type: int
      sample: 2
    detection_seconds:
      description: Longest time a stopped server stays C(UP); null without C(check) or when unread.
      type: float
      sample: 6.0
    source:
      description: The file and lines the values come from.
      type: str
      sample: '/etc/haproxy/haproxy.cfg: server line 41, default-server line 38'
    error:
      description: Why the settings could not be read, else null.
      type: str
      sample: null
journal_path:
  description: The journal the action plugin wrote to.
  returned: when O(journal) is given
  type: str
  sample: /root/.ansible/modelops_shutdown/journal/20261202T020304Z-1a2b3c.jsonl
weight_ramp:
  description: The weight ramp, with O(weight_ramp).
  returned: >-
    when O(weight_ramp) is given with O(state=draining) or O(state=maintenance), or O(state=ready) in check mode, and the
    pool was read and the budget held
  type: dict
  sample:
    duration_seconds: 12.0
    steps: 4
    interval_seconds: 4.0
    started_at: 1764650000.125
    aborted: null
    weights_back_failed: []
    servers:
      - {host: gpu-01, backend: models, server: gpu-01, previous_weight: 100, initial_weight: 100, weight_back: 100,
         steps: [{at: 1764650000.13, weight: 75}, {at: 1764650004.13, weight: 50}, {at: 1764650008.13, weight: 25}]}
  contains:
    duration_seconds:
      description: O(weight_ramp.duration).
      returned: always
      type: float
      sample: 12.0
    steps:
      description: O(weight_ramp.steps).
      returned: always
      type: int
      sample: 4
    interval_seconds:
      description: Seconds between two steps.
      returned: when the ramp started
      type: float
      sample: 4.0
    started_at:
      description: Epoch seconds of the first step.
      returned: when the ramp started
      type: float
      sample: 1764650000.125
    aborted:
      description: Why the ramp stopped before the mark (the step and the cause); V(null) when it ran to the mark.
      returned: when the ramp started
      type: str
      sample: "step 2 of 4: the disruption budget no longer holds: ..."
    weights_back_failed:
      description: The weights that could not be put back, with why (the module also warns).
      returned: when the ramp started
      type: list
      elements: str
      sample: []
    servers:
      description:
        - Per server ramped, its weight before the ramp, its initial weight (the configuration's), each step's weight as
          read back, and C(weight_back), its weight read back after it was put back (V(null) before that).
      returned: always
      type: list
      elements: dict
      sample: [{host: gpu-01, backend: models, server: gpu-01, previous_weight: 100, initial_weight: 100, weight_back: 100,
                steps: []}]
weights_reset:
  description: Per server of O(reset_weights), its weight before and after (C(from), C(to)).
  returned: when O(reset_weights) is given with O(state=ready) or O(state=restore), outside check mode
  type: list
  elements: dict
  sample: [{host: gpu-01, backend: models, server: gpu-01, from: 50, to: 100}]
put_back:
  description: Servers put back after a failed mark, with the state each was put back to.
  returned: when a mark failed after changing servers
  type: list
  elements: str
  sample: [gpu-01 to ready]
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._budget import BudgetError
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import adapter_errors
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_batch import BatchStateManager, parse_members
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_haproxy import server_state_persistence, server_state_warning
from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy_checks import HAProxyConfigError, backend_balancing, server_checks
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import (
    MAX_SECONDS, SpecError, finite, journal_option, module_argument_spec)


MAX_CONFIG_BYTES = 4 * 1024 * 1024


def read_config(path, warn):
    """The text of the HAProxy configuration at C(path), or None (warned) when it cannot be read."""
    try:
        with open(path, 'rb') as handle:
            return to_text(handle.read(MAX_CONFIG_BYTES), errors='surrogate_or_replace')
    except (IOError, OSError) as exc:
        warn('Could not read %s to check that HAProxy keeps drain states across a reload and to read its health '
             'checks: %s' % (path, to_text(exc)))
        return None


def read_server_state(text, path, warn):
    if text is None:
        return {'config': path, 'server_state_file': None, 'load_from_file': [], 'persists': None}
    found = server_state_persistence(text, path)
    warning = server_state_warning(found)
    if warning:
        warn(warning)
    return found


def read_health_checks(text, path, members, warn):
    """Each HAProxy member's health-check settings and detection time, from C(path) (see _haproxy_checks)."""
    wanted = [(m.host, m.options['backend'], m.options['server']) for m in members if m.kind == 'haproxy']
    error = 'could not read %s' % path
    if text is not None:
        try:
            return server_checks(text, path, wanted)
        except HAProxyConfigError as exc:
            error = to_text(exc)
            warn('Could not read the health checks of %s: %s' % (path, error))
    return [{'host': host, 'backend': backend, 'server': server, 'detection_seconds': None, 'source': path,
             'error': error} for host, backend, server in wanted]


def main():
    module = AnsibleModule(
        argument_spec=module_argument_spec(dict(
            state=dict(type='str', required=True, choices=['draining', 'maintenance', 'ready', 'restore']),
            name=dict(type='str', required=True),
            members=dict(type='list', elements='dict', required=True),
            batch=dict(type='list', elements='str', required=True),
            min_available=dict(type='raw', default=0),
            restore_states=dict(type='dict'),
            verify_timeout=dict(type='float', default=10.0),
            verify_interval=dict(type='float', default=0.5),
            available_timeout=dict(type='float', default=0.0),
            expect_serving=dict(type='list', elements='str'),
            answer_timeout=dict(type='float', default=0.0),
            haproxy_config=dict(type='path'),
            weight_ramp=dict(type='dict', options=dict(duration=dict(type='float', required=True),
                                                       steps=dict(type='int', default=4))),
            reset_weights=dict(type='list', elements='str'),
            journal=journal_option(),
        )),
        required_if=[('state', 'restore', ('restore_states',))],
        supports_check_mode=True,
    )
    params = module.params
    started = round(time.time(), 3)
    result = {'changed': False, 'lb': params['name'], 'state': params['state'], 'servers': [], 'budget': [],
              'refused': False, 'started_at': started, 'marked_at': None, 'finished_at': started}
    for option, low in (('verify_timeout', 0.0), ('verify_interval', 0.01), ('available_timeout', 0.0),
                        ('answer_timeout', 0.0)):
        if not finite(params[option]) or params[option] < low:
            module.fail_json(msg='%s must be a finite number of at least %s seconds, got %s' % (option, low, params[option]),
                             **result)
        if params[option] > MAX_SECONDS:
            module.fail_json(msg='%s must be at most %s seconds (a week), got %s' % (option, MAX_SECONDS, params[option]),
                             **result)
    ramp = params['weight_ramp']
    if ramp is not None:
        if not finite(ramp['duration']) or not 0 < ramp['duration'] <= MAX_SECONDS:
            module.fail_json(msg='weight_ramp.duration must be more than 0 and at most %s seconds, got %s'
                             % (MAX_SECONDS, ramp['duration']), **result)
        if not 2 <= ramp['steps'] <= 100:
            module.fail_json(msg='weight_ramp.steps must be from 2 (one lower weight, then the mark) to 100, got %s'
                             % ramp['steps'], **result)
    failure = None
    try:
        members = parse_members(params['members'], params['name'])
        config = None
        if params['haproxy_config'] and any(member.kind == 'haproxy' for member in members):
            config = read_config(params['haproxy_config'], module.warn)
        balancing = None
        if config is not None and ramp is not None:
            try:
                balancing = backend_balancing(config)
            except HAProxyConfigError as exc:
                module.warn('Could not read the balancing algorithms of %s: %s' % (params['haproxy_config'], to_text(exc)))
        missing = sorted(set(params['batch']) - set(member.host for member in members))
        if missing:
            raise SpecError('batch names hosts with no entry in members: %s' % ', '.join(missing))
        manager = BatchStateManager(params['name'], members, params['batch'], params['min_available'],
                                    verify_timeout=params['verify_timeout'], verify_interval=params['verify_interval'],
                                    available_timeout=params['available_timeout'],
                                    expect_serving=params['expect_serving'], answer_timeout=params['answer_timeout'],
                                    weight_ramp=ramp, balancing=balancing, reset_weights=params['reset_weights'])
        result, failure = manager.run(params['state'], params['restore_states'], check_mode=module.check_mode,
                                      diff_mode=module._diff)
        for problem in (result.get('weight_ramp') or {}).get('weights_back_failed') or []:
            module.warn('Drained, but its weight was not put back (a later put-back to ready finds it lowered): %s' % problem)
        if params['haproxy_config'] and any(member.kind == 'haproxy' for member in members):
            result['server_state'] = read_server_state(config, params['haproxy_config'], module.warn)
            result['health_checks'] = [dict(check, lb=params['name']) for check in
                                       read_health_checks(config, params['haproxy_config'], members, module.warn)]
    except (SpecError, BudgetError) as exc:
        failure = '%s: %s' % (params['name'], to_text(exc))
    except adapter_errors() as exc:
        failure = '%s: %s' % (params['name'], to_text(exc))
    if failure:
        if result.get('finished_at') is None:
            result['finished_at'] = round(time.time(), 3)
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
