#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: policy_revoke
short_description: Take back the system policy granted to a model, in one call, each item with its previous state
version_added: 0.3.0
description:
  - Takes back only what is listed - SELinux port labels, booleans and file-context rules (and, when asked, the SELinux
    mode), firewall ports in firewalld or ufw, and systemd unit masks and drop-ins - and returns, per item, the state
    it found (RV(steps[].items[].previous)), the state it left (RV(steps[].items[].new)) and whether it changed it.
  - Three steps, in this order, each run even when an earlier one failed - B(selinux), B(firewall), B(units). A step
    whose subsystem is absent (SELinux not enabled, neither firewalld nor ufw active) or that has nothing listed is
    skipped with its reason. A tool that cannot be read (the task is not root) fails its step with the tool's own
    message; it is never taken as "inactive".
  - Its options are those of the O(modelops.shutdown.host_shutdown#module:policy) option, validated by the same
    argument spec, so both accept and refuse the same input.
  - Only C(argv) reaches the tools (C(systemctl), C(firewall-cmd), C(ufw), C(semanage), C(getsebool), C(setsebool),
    C(restorecon), C(getenforce), C(setenforce)); no shell. Nothing outside the Python standard library is needed on
    the target, and no other collection on the controller.
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs only the reading commands (C(systemctl show), C(firewall-cmd --query-port), C(ufw show added),
        C(semanage ... --list), C(getsebool), C(getenforce)) and reports what would change;
        RV(steps[].items[].new) is then the state an item would be left in.
  diff_mode:
    support: full
    details:
      - C(before) and C(after) name every listed item with its previous and its new state (a drop-in's state is its
        content, V(null) when there is none).
  idempotent:
    support: full
    details:
      - Masked units, removed drop-ins, closed ports and removed labels are left as they are; a second run reports no
        change.
options:
  mask_units:
    description: systemd units to mask (C(systemctl mask)). A unit already masked is left alone.
    type: list
    elements: str
    default: []
  remove_dropins:
    description:
      - Drop-in files to remove (absolute paths); systemd is reloaded once after, when one was removed.
      - The content of each removed file is returned (up to 64 KiB) in RV(steps[].items[].previous).
    type: list
    elements: path
    default: []
  firewall_ports:
    description:
      - Ports to close, V(PORT), V(PORT-PORT) (a range) or either with C(/tcp), C(/udp), C(/sctp) or C(/dccp); ports
        1 to 65535, the first of a range not above the second.
      - In firewalld, whose port is taken without a protocol as C(/tcp), in the runtime and the permanent
        configuration of O(firewall_zone). Otherwise in ufw, when ufw is active - the C(allow) rule of that port
        (written C(8000:8010/tcp) for a range; without a protocol, ufw's rule for any protocol), whatever its comment.
    type: list
    elements: str
    default: []
  firewall_zone:
    description:
      - The firewalld zone the ports were opened in. Letters, digits, C(_) and C(-), at most one C(/) inside, and
        at most 17 characters before it, as firewalld allows. Not used with ufw.
    type: str
    default: public
  selinux_ports:
    description: SELinux port labels to remove (C(semanage port --delete)).
    type: list
    elements: dict
    default: []
    suboptions:
      port:
        description: The port (V(8000)) or range (V(8000-8010)) as it was labelled.
        type: str
        required: true
      proto:
        description: Its protocol.
        type: str
        choices: [tcp, udp, sctp, dccp]
        default: tcp
      setype:
        description: The SELinux type it was labelled with.
        type: str
        required: true
  selinux_booleans:
    description: SELinux booleans to put back, persistently (C(setsebool -P)), where their active value differs.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The boolean.
        type: str
        required: true
      state:
        description: The value to put back.
        type: bool
        default: false
  selinux_fcontexts:
    description: SELinux file-context rules to remove (C(semanage fcontext --delete)), then C(restorecon -R) on C(path).
    type: list
    elements: dict
    default: []
    suboptions:
      target:
        description: The rule's path expression (V(/srv/models(/.*\)?)).
        type: str
        required: true
      setype:
        description: The SELinux type of the rule.
        type: str
        required: true
      ftype:
        description:
          - The file type of the rule, as C(semanage fcontext --ftype) takes it - V(a) all files, V(f) regular file,
            V(d) directory, V(c) character device, V(b) block device, V(s) socket, V(l) symbolic link, V(p) named pipe.
          - Only the rule of that file type is removed.
        type: str
        choices: [a, f, d, c, b, s, l, p]
        default: a
      path:
        description: A directory to relabel once the rule is removed. Omit to relabel nothing.
        type: path
  selinux_mode:
    description:
      - Change the mode of the whole host to V(permissive) (now, with C(setenforce 0), and in C(/etc/selinux/config))
        or V(disabled) (in C(/etc/selinux/config), from the next boot; permissive until then). With a warning.
      - Omit (the default) to leave the mode alone; prefer the targeted options above. A host with SELinux disabled
        stays disabled.
    type: str
    choices: [permissive, disabled]
notes:
  - Run it as root (C(become=true)). Without root, C(ufw status) and C(firewall-cmd --state) refuse to answer and the
    firewall step fails with their message; whether ufw is enabled at all is read from C(/etc/ufw/ufw.conf) first,
    which needs no root, so a host whose ufw is disabled is skipped either way.
  - firewalld is looked at first; ufw only when firewalld is not running.
requirements:
  - systemd (C(systemctl)) for O(mask_units) and O(remove_dropins)
  - C(firewall-cmd) or C(ufw) for O(firewall_ports)
  - C(semanage) (policycoreutils-python-utils), C(getsebool), C(setsebool), C(restorecon) for the SELinux options
seealso:
  - module: modelops.shutdown.host_shutdown
  - module: modelops.shutdown.unit_stop
'''

EXAMPLES = r'''
- name: Take back what the model was granted on this host
  modelops.shutdown.policy_revoke:
    mask_units: [vllm@llama3.service]
    remove_dropins: [/etc/systemd/system/vllm@llama3.service.d/50-gpu.conf]
    firewall_ports: [8000/tcp]
    selinux_ports:
      - {port: "8000", proto: tcp, setype: http_port_t}
    selinux_booleans:
      - {name: httpd_can_network_connect, state: false}
    selinux_fcontexts:
      - {target: "/srv/models(/.*)?", setype: httpd_sys_content_t, ftype: a, path: /srv/models}
  become: true
  register: policy

- name: See first what would be taken back
  modelops.shutdown.policy_revoke:
    firewall_ports: [8000/tcp, 9000-9010/udp]
    firewall_zone: internal
  become: true
  check_mode: true
  diff: true

- name: Show the ports that were open, with their ufw rules (comments included)
  ansible.builtin.debug:
    msg: "{{ (policy.steps | selectattr('step', 'equalto', 'firewall') | first)['items'] | selectattr('changed') | list }}"
'''

RETURN = r'''
changed:
  description: Whether any item was (in check mode, would be) changed.
  returned: always
  type: bool
  sample: true
ok:
  description: Whether every step succeeded.
  returned: always
  type: bool
  sample: true
msg:
  description: Each failed step with the failing command, its exit code and its output, and what to do; empty on success.
  returned: always
  type: str
  sample: ""
steps:
  description: One record per step, in the order run (V(selinux), V(firewall), V(units)); also when the task fails.
  returned: always
  type: list
  elements: dict
  sample:
    - {step: selinux, status: skipped, changed: false, reason: SELinux is not enabled on this host, items: []}
    - step: firewall
      status: done
      changed: true
      reason: ufw
      items:
        - {port: 8000/tcp, rule: "allow 8000/tcp comment 'model-server llama'", previous: allowed, new: absent, changed: true}
    - step: units
      status: done
      changed: true
      reason: ""
      items:
        - {unit: model-sidecar.service, previous: enabled, new: masked, changed: true}
        - {path: /etc/systemd/system/model-server@llama.service.d/50-fleet.conf, previous: "[Service]\nTimeoutStopSec=7\n",
           new: null, changed: true}
  contains:
    step:
      description: V(selinux), V(firewall) or V(units).
      type: str
      returned: always
      sample: firewall
    status:
      description: V(done) (something changed), V(unchanged) (all as wanted already), V(skipped) or V(failed).
      type: str
      returned: always
      sample: done
    changed:
      description: Whether an item of this step was (would be) changed.
      type: bool
      returned: always
      sample: true
    reason:
      description:
        - Why the step was skipped, the failure (command, exit code, output, what to do), the firewall used
          (V(firewalld), V(ufw)), or the requested SELinux mode; else empty.
      type: str
      returned: always
      sample: ufw
    items:
      description:
        - One per listed item the step looked at, each with C(previous), C(new) and C(changed), and what names it -
          C(unit); C(path) (drop-ins, whose C(previous) is the content, V(null) for none); C(port), C(zone) and
          C(permanent) (firewalld, V(open) or V(closed)); C(port) and C(rule) (ufw, V(allowed) or V(absent), C(rule)
          the rule as it was, comment included); C(port), C(proto) and C(setype) (SELinux ports, V(labelled) or
          V(absent)); C(boolean) (V(on) or V(off)); C(target), C(ftype) and C(setype) (file contexts, V(present) or
          V(absent)); C(mode).
      type: list
      elements: dict
      returned: always
      sample: [{port: 8000/tcp, zone: public, permanent: true, previous: open, new: closed, changed: true}]
      contains:
        previous:
          description: The state the item was found in (see RV(steps[].items)).
          type: raw
          returned: always
          sample: allowed
        new:
          description: The state the item was left in; in check mode, the state it would be left in.
          type: raw
          returned: always
          sample: absent
        changed:
          description: Whether the item was (in check mode, would be) changed.
          type: bool
          returned: always
          sample: true
diff:
  description: C(before) and C(after), one key per item (V(ufw allow 8000/tcp), V(mask model-sidecar.service) ...).
  returned: in diff mode
  type: dict
  sample: {before: {ufw allow 8000/tcp: allowed}, after: {ufw allow 8000/tcp: absent}}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec
from ansible_collections.modelops.shutdown.plugins.module_utils import _policy


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(_policy.argument_spec()), supports_check_mode=True)
    problems = _policy.check_params(module.params)
    if problems:
        module.fail_json(msg='; '.join(problems), ok=False, steps=[])
    result, failure = _policy.PolicyTakeBack(module.run_command, module.get_bin_path, check_mode=module.check_mode,
                                             warn=module.warn).run(module.params)
    result['msg'] = failure or ''
    if module._diff:
        result['diff'] = _policy.diff(result)
    if failure:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
