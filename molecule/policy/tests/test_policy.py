"""The policy role on a real systemd host with ufw: what prepare granted, check mode, the take-back, a second run.

prepare.yml wrote $MOLECULE_EPHEMERAL_DIRECTORY/pol-ufw-before.json (ufw, netfilter's ufw-user-input chain and
the units, read after granting); converge.yml wrote pol-ufw-check.json and pol-ufw-after-check.json (the role's
record in check mode, and the host read right after it), pol-ufw-result.json (the real run) and, on the
idempotence converge, pol-ufw-second.json.
"""

from __future__ import annotations

import json
import os
import pathlib
import re

testinfra_hosts = ['ansible://pol-ufw']
RESULTS = pathlib.Path(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'))
HOST = 'pol-ufw'
DROPIN = '/etc/systemd/system/model-server@llama.service.d/50-fleet.conf'
MODEL_RULE = "allow 8000/tcp comment 'model-server llama'"


def _json(kind):
    return json.loads((RESULTS / ('%s-%s.json' % (HOST, kind))).read_text())


def _props(text):
    return dict(line.split('=', 1) for line in text.splitlines() if '=' in line)


def _added(text):
    """The rules of `ufw show added`, without the leading "ufw "."""
    return [line[len('ufw '):] for line in text.splitlines() if line.startswith('ufw ')]


def _dports(iptables):
    """The destination ports ufw accepts, from `iptables -S ufw-user-input` (`--dport 22`, `--dports 9000:9010`)."""
    return sorted(match.group(1) for match in (re.search(r' --dports? (\S+)', line) for line in iptables.splitlines()
                                               if line.endswith('-j ACCEPT')) if match)


def _steps(record):
    policy = record['policy']
    assert [step['step'] for step in policy['steps']] == ['selinux', 'firewall', 'units'], policy
    return policy, dict((step['step'], step) for step in policy['steps'])


def test_prepare_granted_the_policy():
    before = _json('before')
    assert before['ufw_status'].splitlines()[0] == 'Status: active'
    assert _added(before['ufw_added']) == ['allow 22/tcp', MODEL_RULE, 'allow 9000:9010/tcp']
    assert _dports(before['iptables']) == ['22', '8000', '9000:9010']
    assert _props(before['sidecar']) == {'LoadState': 'loaded', 'UnitFileState': 'enabled'}
    llama = _props(before['llama'])
    assert llama['DropInPaths'] == DROPIN and llama['TimeoutStopUSec'] == '7s' and llama['ActiveState'] == 'active'
    assert before['dropin'] == '[Service]\nTimeoutStopSec=7'


def test_check_mode_predicted_the_take_back_and_changed_nothing():
    policy, steps = _steps(_json('check'))
    assert policy['ok'] is True and policy['changed'] is True
    assert [(i['port'], i['previous'], i['new'], i['changed']) for i in steps['firewall']['items']] == [
        ('8000/tcp', 'allowed', 'absent', True), ('9000-9010/tcp', 'allowed', 'absent', True),
        ('8443/tcp', 'absent', 'absent', False)]
    assert [(i.get('unit') or i['path'], i['new'], i['changed']) for i in steps['units']['items']] == [
        ('model-sidecar.service', 'masked', True), (DROPIN, None, True)]
    # Every read of the host is the same as before the check-mode run.
    assert _json('after-check') == _json('before')


def test_the_role_took_back_what_was_listed_and_recorded_what_was_there():
    before = _json('before')
    policy, steps = _steps(_json('result'))
    assert policy['ok'] is True and policy['changed'] is True
    assert steps['selinux']['status'] == 'skipped'
    assert steps['selinux']['reason'] == 'no SELinux ports, booleans, file contexts or mode listed'
    firewall = steps['firewall']
    assert firewall['status'] == 'done' and firewall['reason'] == 'ufw'
    assert firewall['items'] == [
        {'port': '8000/tcp', 'rule': MODEL_RULE, 'previous': 'allowed', 'new': 'absent', 'changed': True},
        {'port': '9000-9010/tcp', 'rule': 'allow 9000:9010/tcp', 'previous': 'allowed', 'new': 'absent', 'changed': True},
        {'port': '8443/tcp', 'rule': None, 'previous': 'absent', 'new': 'absent', 'changed': False},
    ]
    assert steps['units']['status'] == 'done'
    assert steps['units']['items'] == [
        {'unit': 'model-sidecar.service', 'previous': 'enabled', 'new': 'masked', 'changed': True},
        # The drop-in's content, byte for byte, so that it can be written back.
        {'path': DROPIN, 'previous': before['dropin'] + '\n', 'new': None, 'changed': True},
    ]


def test_a_second_run_changed_nothing():
    policy, steps = _steps(_json('second'))
    assert policy['ok'] is True and policy['changed'] is False
    assert [steps[name]['status'] for name in ('selinux', 'firewall', 'units')] == ['skipped', 'unchanged', 'unchanged']
    items = steps['firewall']['items'] + steps['units']['items']
    assert items and not any(item['changed'] for item in items)
    assert [item['previous'] for item in items] == ['absent', 'absent', 'absent', 'masked', None]


def test_the_host_now(host):
    assert host.check_output('ufw status').splitlines()[0] == 'Status: active'
    assert _added(host.check_output('ufw show added')) == ['allow 22/tcp']
    # In netfilter too: only 22/tcp is still accepted.
    assert _dports(host.check_output('iptables -S ufw-user-input')) == ['22']
    assert _props(host.check_output('systemctl show model-sidecar.service --property LoadState,UnitFileState')) == {
        'LoadState': 'masked', 'UnitFileState': 'masked'}
    assert host.file('/etc/systemd/system/model-sidecar.service').linked_to == '/dev/null'
    llama = _props(host.check_output(
        'systemctl show model-server@llama.service --property ActiveState,DropInPaths,TimeoutStopUSec'))
    # systemd was reloaded: the drop-in's TimeoutStopSec=7 no longer applies (the unit's own is 45). Taking back policy stops nothing.
    assert llama == {'ActiveState': 'active', 'DropInPaths': '', 'TimeoutStopUSec': '45s'}
    assert not host.file(DROPIN).exists
