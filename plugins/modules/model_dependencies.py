#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: model_dependencies
short_description: Remove, put back or make final what depended on a retired model, each item with its previous state
version_added: 0.5.0
description:
  - On one host, in one call, removes (O(state=absent)), puts back (O(state=present)) or makes final (O(state=final))
    the things that depended on a retired model - an HAProxy server, an HAProxy map entry, a systemd timer or unit,
    a Prometheus rule file, an HTTP hook.
  - Every item returns the state it found (RV(dependencies[].previous)), in a shape that O(state=present) takes back
    as O(dependencies[].previous) to put the item back exactly as it was.
  - Items are independent - each is tried even when an earlier one failed. The task fails when one did, still
    returning the result of every item, so that the caller can record what was removed.
  - Files are edited atomically (a temporary file in the same folder, the mode and owner of the original, then a
    rename). HAProxy configurations are validated with C(haproxy -c -f) before they replace the original.
  - Only C(argv) reaches the tools (C(haproxy), C(systemctl)); no shell. Nothing outside the Python standard library
    is needed on the target.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details:
      - Only reads - the files, C(show servers state) and C(show map) of the runtime API, C(systemctl show) and
        C(systemctl is-enabled), C(GET /api/v1/rules). HTTP hooks are not sent and configurations are not validated.
        RV(dependencies[].new) is the state an item would be left in.
  diff_mode:
    support: full
    details:
      - C(before) and C(after) have one key per item (its RV(dependencies[].where)), its previous and its new state.
  idempotent:
    support: partial
    details:
      - Removed servers, map entries and rule files, stopped and disabled units, and items already put back are left
        as they are; a second run reports no change.
      - An O(dependencies[].http_hook) is sent on every run - the receiving end decides what a second request does.
options:
  state:
    description:
      - V(absent) removes every item and records its previous state.
      - V(present) puts every item back from O(dependencies[].previous) (what V(absent) returned).
      - V(final) makes the removal final - for O(dependencies[].systemd_unit), its drop-ins and unit files are deleted;
        for O(dependencies[].http_hook), the O(dependencies[].http_hook.final) request is sent; the other kinds are
        removed as with V(absent).
    type: str
    choices: [absent, present, final]
    default: absent
  dependencies:
    description:
      - The items, each with exactly one kind - O(dependencies[].haproxy_server), O(dependencies[].haproxy_map),
        O(dependencies[].systemd_timer), O(dependencies[].systemd_unit), O(dependencies[].prometheus_rules) or
        O(dependencies[].http_hook).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: A label of the item, returned as RV(dependencies[].name).
        type: str
      previous:
        description:
          - What O(state=absent) returned for this item as RV(dependencies[].previous) (the whole result item is
            accepted too). Required with O(state=present) and O(state=final).
        type: raw
      haproxy_server:
        description:
          - An HAProxy server.
          - With O(dependencies[].haproxy_server.method=config), its one C(server) line is removed from the
            C(backend) (or C(listen)) section of the configuration, which is validated, written and reloaded; with
            O(dependencies[].haproxy_server.haproxy), the runtime API is then polled until the server is no longer
            listed (listed again for O(state=present)). The line is put back at its place in the section.
          - With O(dependencies[].haproxy_server.method=runtime), the server is set to C(maint) and deleted with
            C(del server); O(state=present) adds it back with C(add server) at its recorded address and port and
            gives it back its admin state (C(enable server), and C(enable health) when it had health checks).
            C(del server) is for servers added at run time - a server of the configuration file comes back at the
            next reload; use O(dependencies[].haproxy_server.method=config) for those.
        type: dict
        suboptions:
          backend:
            description: The backend.
            type: str
            required: true
          server:
            description: The server.
            type: str
            required: true
          method:
            description: Edit the configuration file (V(config)), or the running HAProxy only (V(runtime)).
            type: str
            choices: [config, runtime]
            default: config
          config:
            description: The HAProxy configuration file.
            type: path
            default: /etc/haproxy/haproxy.cfg
          unit:
            description: The systemd unit reloaded (C(systemctl reload)) after the configuration changed.
            type: str
            default: haproxy.service
          haproxy:
            description:
              - The runtime API (a C(stats socket ... level admin)). Required with
                O(dependencies[].haproxy_server.method=runtime); with V(config), used to record the server's run-time
                state, to wait for the reload to take effect, and to set again the drain or maintenance of every other
                server that the reload forgot (without a server-state file HAProxy starts every server ready).
            type: dict
            suboptions:
              socket:
                description: Path of the runtime API unix socket.
                type: path
              host:
                description: Host of a TCP runtime API.
                type: str
              port:
                description: Port of a TCP runtime API.
                type: int
              timeout:
                description: Seconds one runtime API command may take.
                type: float
                default: 5.0
          timeout:
            description: Seconds to wait until HAProxy no longer lists the server (lists it again).
            type: float
            default: 30.0
      haproxy_map:
        description:
          - The entries of one key in an HAProxy map file - every line whose first field is the key (blank and
            comment lines are never touched). O(state=present) puts the exact lines back at their places.
        type: dict
        suboptions:
          path:
            description: The map file.
            type: path
            required: true
          key:
            description: The key.
            type: str
            required: true
          haproxy:
            description:
              - The runtime API. When given, the running map is updated too (C(del map), C(add map)) and checked with
                C(show map).
            type: dict
            suboptions:
              socket:
                description: Path of the runtime API unix socket.
                type: path
              host:
                description: Host of a TCP runtime API.
                type: str
              port:
                description: Port of a TCP runtime API.
                type: int
              timeout:
                description: Seconds one runtime API command may take.
                type: float
                default: 5.0
      systemd_timer:
        description:
          - A systemd timer - stopped and disabled; O(state=present) enables it only if it was enabled and starts it
            only if it was active.
        type: dict
        suboptions:
          unit:
            description: The timer unit, for example V(embed-reindex.timer).
            type: str
            required: true
      systemd_unit:
        description:
          - A systemd unit. O(state=absent) stops and disables it (O(state=present) puts that back).
          - O(state=final) stops it if active, unmasks it, disables it, removes its drop-in folders and the listed
            files, then runs one C(daemon-reload). Their contents are returned (up to 64 KiB each). Putting a unit
            back after O(state=final) is not supported - the item fails and says so.
        type: dict
        suboptions:
          unit:
            description: The unit.
            type: str
            required: true
          files:
            description: Unit files to delete at O(state=final), for example a timer's C(.timer) and C(.service).
            type: list
            elements: path
            default: []
          dropins:
            description: Remove C(/etc/systemd/system/<unit>.d) and C(/run/systemd/system/<unit>.d) at O(state=final).
            type: bool
            default: true
      prometheus_rules:
        description:
          - A Prometheus rule file - removed, Prometheus reloaded, then C(GET /api/v1/rules) polled until no rule
            group is loaded from that file. O(state=present) writes it back (same content and mode), reloads, and
            waits until every recorded group is loaded from it again.
        type: dict
        suboptions:
          path:
            description: The rule file, as the C(rule_files) of Prometheus name it.
            type: path
            required: true
          url:
            description: The Prometheus base URL.
            type: str
            default: http://127.0.0.1:9090
          reload:
            description:
              - V(systemd) runs C(systemctl reload) of O(dependencies[].prometheus_rules.unit) (the Debian unit
                reloads with SIGHUP); V(http) sends C(POST /-/reload), which needs C(--web.enable-lifecycle).
            type: str
            choices: [systemd, http]
            default: systemd
          unit:
            description: The Prometheus unit.
            type: str
            default: prometheus.service
          timeout:
            description: Seconds to wait for the rule groups to be unloaded (loaded again).
            type: float
            default: 30.0
          validate_certs:
            description: Verify the TLS certificate of an C(https) URL.
            type: bool
            default: true
          token:
            description: A bearer token sent to Prometheus.
            type: str
      http_hook:
        description:
          - An HTTP request - sent at O(state=absent); O(dependencies[].http_hook.undo) is sent at O(state=present)
            and O(dependencies[].http_hook.final) at O(state=final). Without those, the item is unchanged with the
            reason. Tokens and the values of credential headers never appear in results.
        type: dict
        suboptions:
          url:
            description: The URL.
            type: str
            required: true
          method:
            description: The method.
            type: str
            choices: [GET, POST, PUT, PATCH, DELETE]
            default: POST
          body:
            description: The body - a dict or list is sent as JSON, a string as it is.
            type: raw
          headers:
            description: Request headers.
            type: dict
          token:
            description: A bearer token (C(Authorization) header).
            type: str
          validate_certs:
            description: Verify the TLS certificate of an C(https) URL.
            type: bool
            default: true
          timeout:
            description: Seconds the whole request may take.
            type: float
            default: 10.0
          expect_status:
            description: The statuses that mean success.
            type: list
            elements: int
            default: [200, 201, 202, 204]
          undo:
            description:
              - The request sent at O(state=present), with the hook's token, certificate check, timeout and expected
                statuses (and its headers, unless these are given).
            type: dict
            suboptions:
              url:
                description: The URL; the hook's own by default.
                type: str
              method:
                description: The method.
                type: str
                choices: [GET, POST, PUT, PATCH, DELETE]
                default: POST
              body:
                description: The body.
                type: raw
              headers:
                description: Request headers.
                type: dict
          final:
            description: The request sent at O(state=final), as O(dependencies[].http_hook.undo).
            type: dict
            suboptions:
              url:
                description: The URL; the hook's own by default.
                type: str
              method:
                description: The method.
                type: str
                choices: [GET, POST, PUT, PATCH, DELETE]
                default: POST
              body:
                description: The body.
                type: raw
              headers:
                description: Request headers.
                type: dict
notes:
  - Run it as root (C(become=true)) where files, units or the HAProxy socket need it.
  - One call per host where dependencies live - the load balancer host, the Prometheus host, the model hosts,
    C(localhost) for HTTP hooks.
requirements:
  - C(haproxy) (to validate the configuration) and C(systemctl) for O(dependencies[].haproxy_server) with
    O(dependencies[].haproxy_server.method=config)
  - systemd (C(systemctl)) for O(dependencies[].systemd_timer) and O(dependencies[].systemd_unit)
seealso:
  - module: modelops.shutdown.policy_revoke
  - module: modelops.shutdown.lb_pool_state
'''

EXAMPLES = r'''
- name: Remove what depended on llama3 on the load balancer, recording it
  modelops.shutdown.model_dependencies:
    state: absent
    dependencies:
      - name: llama3 server
        haproxy_server:
          backend: models
          server: gpu-01
          haproxy: {socket: /run/haproxy/admin.sock}
      - name: llama3 route
        haproxy_map: {path: /etc/haproxy/model-routes.map, key: llama3, haproxy: {socket: /run/haproxy/admin.sock}}
  become: true
  register: lb_deps

- name: Put them back (rollback)
  modelops.shutdown.model_dependencies:
    state: present
    dependencies:
      - haproxy_server: {backend: models, server: gpu-01, haproxy: {socket: /run/haproxy/admin.sock}}
        previous: "{{ lb_deps.dependencies[0].previous }}"
      - haproxy_map: {path: /etc/haproxy/model-routes.map, key: llama3, haproxy: {socket: /run/haproxy/admin.sock}}
        previous: "{{ lb_deps.dependencies[1].previous }}"
  become: true

- name: On a model host, make the re-index timer's removal final
  modelops.shutdown.model_dependencies:
    state: final
    dependencies:
      - systemd_unit:
          unit: embed-reindex.timer
          files: [/etc/systemd/system/embed-reindex.timer, /etc/systemd/system/embed-reindex.service]
        previous: {stage: absent, enabled: enabled, active: active}
  become: true

- name: On the Prometheus host, remove the model's alert rules
  modelops.shutdown.model_dependencies:
    dependencies:
      - prometheus_rules: {path: /etc/prometheus/rules/model-llama3.yml}
  become: true
  check_mode: true
  diff: true

- name: Tell the model registry, from the controller
  modelops.shutdown.model_dependencies:
    dependencies:
      - http_hook:
          url: https://registry.example.com/v1/models/llama3/retire
          body: {reason: retired}
          token: "{{ registry_token }}"
          undo: {url: https://registry.example.com/v1/models/llama3/restore}
  delegate_to: localhost
'''

RETURN = r'''
changed:
  description: Whether any item was (in check mode, would be) changed.
  returned: always
  type: bool
  sample: true
state:
  description: The O(state) run.
  returned: always
  type: str
  sample: absent
failed_items:
  description: How many items failed.
  returned: always
  type: int
  sample: 0
msg:
  description:
    - A summary (the count of items per status); on failure also each failed item with its cause, what was expected,
      and the next command to look with (C(haproxy -c -f /etc/haproxy/haproxy.cfg),
      C(curl -s http://127.0.0.1:9090/api/v1/rules) ...).
  returned: always
  type: str
  sample: "2 item(s) for state=absent: 2 done"
dependencies:
  description: One record per item of O(dependencies), in order; also when the task fails.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: haproxy_server
      name: llama3 server
      where: haproxy_server models/gpu-01 (/etc/haproxy/haproxy.cfg)
      status: done
      changed: true
      previous: {present: true, line: "    server gpu-01 gpu-01:8000 check", index: 5, mode: "0644",
                 runtime: {addr: 10.0.0.11, port: 8000, admin_state: ready, checks: true}}
      new: {present: false}
      msg: removed "server gpu-01 gpu-01:8000 check", validated, reloaded haproxy.service; no longer listed by HAProxy
      seconds: 1.204
  contains:
    kind:
      description: The kind of the item (V(haproxy_server), V(haproxy_map), V(systemd_timer), V(systemd_unit),
        V(prometheus_rules), V(http_hook)).
      type: str
      returned: always
      sample: haproxy_server
    name:
      description: O(dependencies[].name), empty when not given.
      type: str
      returned: always
      sample: llama3 server
    where:
      description: What the item is and where, as C(<kind> <what> (<file or url>)); the key of the diff.
      type: str
      returned: always
      sample: prometheus_rules /etc/prometheus/rules/model-llama3.yml (http://127.0.0.1:9090)
    status:
      description:
        - V(done) (changed), V(unchanged) (already as wanted, or nothing declared to send), V(failed), or
          V(skipped) (O(state=present) of an item that V(absent) had found absent - nothing to put back).
      type: str
      returned: always
      sample: done
    changed:
      description: Whether the item was (in check mode, would be) changed.
      type: bool
      returned: always
      sample: true
    previous:
      description:
        - The state the item was found in, what O(dependencies[].previous) takes back. V(null) when the item failed
          before anything was read.
        - O(dependencies[].haproxy_server) with V(config) - C(present), C(line) (the exact line), C(index) (its line
          within the section, the section header being 0), C(mode), C(runtime) (C(addr), C(port), C(admin_state),
          C(checks) from C(show servers state), V(null) when not read); with V(runtime) - C(present), C(addr),
          C(port), C(admin_state), C(checks).
        - O(dependencies[].haproxy_map) - C(present), C(entries) (C(index), C(line)), C(mode), C(runtime) (the values
          of the running map, V(null) without a runtime API), C(final_newline).
        - O(dependencies[].systemd_timer) - C(enabled) (the C(systemctl is-enabled) answer), C(active) (C(ActiveState)).
        - O(dependencies[].systemd_unit) - C(stage) (V(absent) or V(final)), C(enabled), C(active); at V(final) also
          C(masked), C(dropins) and C(files) (C(path), C(content), C(mode), C(truncated)).
        - O(dependencies[].prometheus_rules) - C(present), C(content), C(mode), C(groups) (the names of the groups
          Prometheus had loaded from the file).
        - O(dependencies[].http_hook) - C(request) (C(method), C(url), C(body)) and C(response) (C(status), C(body),
          its first 2000 characters) of the request this run sent, secrets masked; C(response) is V(null) in check mode.
      type: raw
      returned: always
      sample: {enabled: enabled, active: active}
    new:
      description: The state the item was left in (in check mode, would be left in), in the shape of RV(dependencies[].previous).
      type: raw
      returned: always
      sample: {enabled: disabled, active: inactive}
    msg:
      description: What was done, or why nothing was, or the failure with its cause.
      type: str
      returned: always
      sample: stopped and disabled
    seconds:
      description: Seconds spent on the item.
      type: float
      returned: always
      sample: 0.412
diff:
  description: C(before) and C(after), one key per item (RV(dependencies[].where)).
  returned: in diff mode
  type: dict
  sample: {before: {systemd_timer embed-reindex.timer (systemd): {enabled: enabled, active: active}},
           after: {systemd_timer embed-reindex.timer (systemd): {enabled: disabled, active: inactive}}}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec
from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_deps


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(_retire_deps.argument_spec()), supports_check_mode=True)
    problems = _retire_deps.check_params(module.params)
    if problems:
        module.fail_json(msg='; '.join(problems), state=module.params['state'], dependencies=[], failed_items=0)
    manager = _retire_deps.DependencyManager(module.run_command, module.get_bin_path, check_mode=module.check_mode,
                                             warn=module.warn)
    result, failure = manager.run(module.params)
    if module._diff:
        result['diff'] = _retire_deps.diff(result)
    if failure:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
