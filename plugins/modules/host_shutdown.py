#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: host_shutdown
short_description: Drain, stop, take back policy and verify one model host in one call
version_added: 0.2.0
description:
  - The per-host phase of a rollout, in one module call that returns the host's whole record. Run it on the model host
    after M(modelops.shutdown.lb_batch_state) has taken the host out of its load balancers, with O(since) set to that
    call's RV(modelops.shutdown.lb_batch_state#module:marked_at).
  - In order, stopping at the first phase that fails -
    B(drain) waits until nothing is in flight (M(modelops.shutdown.model_drain), its clock started at O(since));
    B(stop) stops the units and classifies each exit (M(modelops.shutdown.unit_stop));
    B(policy) takes back only the listed SELinux labels and booleans, firewall ports, masks and drop-ins;
    B(verify) checks the serving ports are closed, the units' cgroups are empty (M(modelops.shutdown.unit_processes)),
    the GPUs released the units' memory (M(modelops.shutdown.gpu_release_check), once per unit) and reconciles the task
    logs (M(modelops.shutdown.task_log_reconcile)).
  - Each phase option takes the options of the module named for it, validated with that module's own argument spec, so
    the same input is accepted and refused the same way.
  - A host whose units are all already stopped is not waited for (nothing can be in flight); its record says
    RV(status=already_down).
  - B(Kept out of rotation) - with O(load_balancers) (how this host itself reaches each load balancer's admin API), each
    load balancer is read at every drain poll, and a server found V(ready) again (HAProxy reloaded without a server-state
    file, someone's hand) is drained again and the wait starts over; with O(sticky_grace), a server still seeing
    requests that many seconds after the mark is escalated from V(draining) to V(maintenance), which HAProxy does not
    send cookie-persistent clients to. Right before the stop every load balancer must answer (within
    O(lb_answer_timeout)) and report the server out of rotation; otherwise the host is not stopped
    (RV(failed_step=recheck)) and the rollout puts it back.
  - B(One run per host) - while it works on the host the module holds an exclusive lock (O(lock_path)), so a second run,
    or a module left running by a controller that died, cannot work on the same host at once
    (RV(failed_step=lock)); check mode only tests it.
  - With C(on_timeout=proceed) in O(drain), a drain that runs out of time is stopped anyway and
    RV(in_flight_at_stop) says how many requests were still in flight, so cut by the stop unless the server finishes
    them itself on SIGTERM.
  - A failed phase fails the module with the record so far; RV(failed_step) names the phase, and whether units were
    stopped is in RV(stop).
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
  - modelops.shutdown.journal
attributes:
  check_mode:
    support: full
    details:
      - Reads the in-flight count once, reports which units would be stopped and which policy would be taken back,
        and verifies nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Stopped units, closed ports and removed labels are left as they are; a second run reports no change.
options:
  since:
    description:
      - Wall-clock time (epoch seconds) the load balancers stopped sending to this host
        (RV(modelops.shutdown.lb_batch_state#module:marked_at)). The drain's deadline and its measured wait count from
        it. Overrides O(drain) C(since).
    type: float
  drain:
    description:
      - The options of M(modelops.shutdown.model_drain) (C(metrics), C(haproxy), C(connections), C(timeout),
        C(poll_interval), C(quiet_period), C(on_timeout) ...). Omit to stop without waiting.
    type: dict
  stop:
    description: The options of M(modelops.shutdown.unit_stop) (C(units), C(timeout_stop_sec), C(disable), C(mask), C(fail_on)).
    type: dict
    required: true
  policy:
    description:
      - What to take back, the options of M(modelops.shutdown.policy_revoke) (validated by its argument spec); only
        what is listed is touched, and each item records its previous and its new state.
      - C(mask_units) (list of units) and C(remove_dropins) (list of paths, systemd is reloaded after) through C(systemctl).
      - C(firewall_ports) (V(8000/tcp)) closed in firewalld (runtime and permanent, zone C(firewall_zone), default
        V(public)) or ufw, whichever is active.
      - C(selinux_ports) (C(port), C(proto), C(setype)), C(selinux_booleans) (C(name), C(state)) and
        C(selinux_fcontexts) (C(target), C(setype), C(ftype), C(path) to relabel) through C(semanage), C(setsebool) and
        C(restorecon). C(selinux_mode) (V(permissive) or V(disabled)) changes the mode of the whole host and is never
        set unless given.
    type: dict
  verify:
    description:
      - C(units) whose cgroups must be empty and GPU memory released (default the stopped units); C(ports) that must
        be closed within C(port_timeout) seconds (default 10); C(processes) (default V(true)) checks the cgroups;
        C(gpu) the options of M(modelops.shutdown.gpu_release_check) (omit to skip the GPU check; C(unit) is set per
        verified unit); C(task_log) the options of M(modelops.shutdown.task_log_reconcile) (omit to skip);
        C(fail_on_incomplete) (default V(false)) fails the host when requests were left incomplete.
    type: dict
  load_balancers:
    description:
      - The load balancers this host is behind, as this host reaches their admin API (the rollout builds it from
        C(drain_load_balancers), each entry's C(from_host)). Each entry has C(name), C(state) (the state the mark set,
        V(draining) or V(maintenance), default V(draining)) and exactly one of C(haproxy), C(consul), C(http) or
        C(file), with the options of the same name of M(modelops.shutdown.model_health_state).
      - Omit to leave the load balancers alone (no watch during the drain, no confirmation before the stop).
    type: list
    elements: dict
  sticky_grace:
    description:
      - Seconds after O(since) a drain that still counts requests in flight escalates every load balancer of
        O(load_balancers) from V(draining) to V(maintenance). In HAProxy, C(DRAIN) still sends cookie-persistent clients
        to the server, so with stickiness a drain may never end; C(MAINT) sends them to another server (with
        C(option redispatch)), and requests already being served still finish.
      - Omit never to escalate; the drain then ends at its own C(timeout), where C(on_timeout) applies.
    type: float
  lb_answer_timeout:
    description: Seconds every load balancer of O(load_balancers) has to answer the confirmation right before the stop.
    type: float
    default: 5
  run_id:
    description: The rollout run's id, written into the host lock and the record.
    type: str
  lock_path:
    description: The host lock's file. Default C(/run/modelops-shutdown.lock).
    type: path
seealso:
  - module: modelops.shutdown.lb_batch_state
  - module: modelops.shutdown.model_drain
  - module: modelops.shutdown.unit_stop
  - module: modelops.shutdown.gpu_release_check
  - module: modelops.shutdown.policy_revoke
'''

EXAMPLES = r'''
- name: Drain, stop and verify the host, its wait counted from the mark
  modelops.shutdown.host_shutdown:
    since: "{{ marked.marked_at }}"
    drain:
      metrics: {url: http://127.0.0.1:8000/metrics, preset: vllm}
      timeout: 300
    stop:
      units: [vllm@llama3.service]
    policy:
      firewall_ports: [8000/tcp]
    verify:
      ports: [8000]
      gpu: {backend: auto, timeout: 30}
      task_log: {paths: [/var/log/vllm/tasks.jsonl], missing_ok: true}
  register: host_record
'''

RETURN = r'''
ok:
  description: Whether every phase succeeded.
  returned: always
  type: bool
  sample: true
status:
  description: V(done), V(already_down) (units were stopped before the call), V(would_shut_down) (check mode) or V(failed).
  returned: always
  type: str
  sample: done
failed_step:
  description:
    - The phase that failed (V(lock), V(drain), V(recheck), V(stop), V(policy), V(verify)), else V(null).
    - Before V(stop) (V(lock), V(drain), V(recheck)) nothing was stopped.
  returned: always
  type: str
  sample: null
msg:
  description: The failure, with the underlying module's message; empty on success.
  returned: always
  type: str
  sample: ""
host:
  description: The host's name as the host itself reports it.
  returned: always
  type: str
  sample: gpu-01
already_down:
  description: Whether every unit was already stopped when the call began.
  returned: when the units could be read
  type: bool
  sample: false
since:
  description: When the drain's clock started (O(since)), epoch seconds.
  returned: always
  type: float
  sample: 1764614400.131
started_at:
  description: Wall-clock time (epoch seconds) the call started.
  returned: always
  type: float
  sample: 1764614400.702
finished_at:
  description: Wall-clock time (epoch seconds) the call ended.
  returned: always
  type: float
  sample: 1764614404.310
drain:
  description: What M(modelops.shutdown.model_drain) returns; V(null) when not waited (no O(drain), or already down).
  returned: always
  type: dict
  sample: {drained: true, in_flight_initial: 2, in_flight_final: 0, waited_seconds: 2.51, drained_at: 1764614402.64}
stop:
  description: What M(modelops.shutdown.unit_stop) returns (C(units) with each unit's classification, C(stop_seconds)).
  returned: when the units could be read
  type: dict
  sample: {changed: true, stop_seconds: 0.41, units: [{unit: vllm@llama3.service, classification: clean}]}
policy:
  description: What M(modelops.shutdown.policy_revoke) returns - C(steps), one per subsystem (C(step), C(status) done,
    unchanged, skipped or failed, C(reason), C(items) each with its C(previous) and C(new) state), C(ok) and C(changed).
  returned: when the policy phase ran
  type: dict
  sample: {changed: false, steps: [{step: firewall, status: skipped, reason: no firewall ports listed}]}
verify:
  description: C(ok), C(failures), C(ports_open), C(leftover_processes), C(gpu) (C(checked), C(released), C(killed),
    C(gpus)), C(task_log) (what M(modelops.shutdown.task_log_reconcile) returns), C(incomplete_count), C(seconds).
  returned: when the verify phase ran
  type: dict
  sample: {ok: true, failures: [], ports_open: [], gpu: {checked: true, released: true}, incomplete_count: 0}
lb_guard:
  description:
    - What the watch over O(load_balancers) saw - C(load_balancers) (each with C(lb), C(target), C(state) asked,
      C(want) (V(maintenance) once escalated) and C(last_seen)), C(events) (each C(at), C(event) V(came_back),
      V(escalated) or V(unanswered), C(lb), C(seen), C(set), C(error)), C(came_back) (count), C(escalated) and
      C(read_errors) (reads that failed during the drain).
  returned: when O(load_balancers) is given, else V(null)
  type: dict
  sample: {came_back: 1, escalated: false, read_errors: 0, events: [{at: '2026-12-02T02:03:04.512+00:00',
           event: came_back, lb: lb1, seen: ready, set: draining}]}
in_flight_at_stop:
  description: Requests still in flight when a drain that ran out of time was stopped anyway (C(on_timeout=proceed)).
  returned: always
  type: int
  sample: 3
run_id:
  description: O(run_id).
  returned: always
  type: str
  sample: 20261202T020304Z-1a2b3c
journal_path:
  description: The journal the action plugin wrote to.
  returned: when O(journal) is given
  type: str
  sample: /root/.ansible/modelops_shutdown/journal/20261202T020304Z-1a2b3c.jsonl
timings:
  description:
    - The host's floor, measured here - C(drain_seconds) from O(since) to the moment nothing was in flight,
      C(stop_seconds) the units' stop time, C(floor_seconds) their sum.
  returned: always
  type: dict
  sample: {drain_seconds: 2.51, stop_seconds: 0.41, floor_seconds: 2.92}
phases:
  description:
    - When each phase ran, measured here on the host's wall clock - C(drain), C(stop), C(policy) and C(verify), each
      V(null) when that phase did not run (a host already down is not drained; a failure ends the phases after it),
      else C(start) and C(end) in epoch seconds.
    - C(drain) starts at O(since) (the moment the load balancers stopped sending), or when the wait began without it,
      and ends when nothing was in flight any more (C(drain.drained_at)), or when the wait ended without that (a
      timeout, a failure). After a load balancer put the host back, it spans every round.
    - The report draws its timeline from these.
  returned: always
  type: dict
  sample:
    drain: {start: 1764614400.2, end: 1764614402.71}
    stop: {start: 1764614402.9, end: 1764614403.31}
    policy: {start: 1764614403.31, end: 1764614403.35}
    verify: {start: 1764614403.35, end: 1764614403.6}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._host_shutdown import HostShutdown, parse_params
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError, finite, journal_option


def main():
    module = AnsibleModule(
        argument_spec=dict(
            since=dict(type='float'),
            drain=dict(type='dict'),
            stop=dict(type='dict', required=True),
            policy=dict(type='dict'),
            verify=dict(type='dict'),
            load_balancers=dict(type='list', elements='dict'),
            sticky_grace=dict(type='float'),
            lb_answer_timeout=dict(type='float', default=5.0),
            run_id=dict(type='str'),
            lock_path=dict(type='path'),
            journal=journal_option(),
        ),
        supports_check_mode=True,
    )
    if module.params['since'] is not None and not finite(module.params['since']):
        module.fail_json(msg='since must be a finite epoch time, got %s' % module.params['since'])
    try:
        phases = parse_params(module.params)
        record, failure = HostShutdown(phases, module.run_command, module.get_bin_path, check_mode=module.check_mode,
                                       warn=module.warn).run()
    except SpecError as exc:
        module.fail_json(msg=to_text(exc), ok=False, status='failed', failed_step='input')
    if failure:
        module.fail_json(**record)
    module.exit_json(**record)


if __name__ == '__main__':
    main()
