# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""policy_revoke's main() through the shared run_module fixture: one call takes back everything listed, with check
and diff mode, and input is refused as host_shutdown's policy option refuses it (the steps themselves are covered
in module_utils/test_policy.py)."""

from __future__ import annotations

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _policy
from ansible_collections.modelops.shutdown.plugins.module_utils._host_shutdown import parse_params
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError
from ansible_collections.modelops.shutdown.plugins.modules import policy_revoke
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_policy import (
    BINS,
    SEMANAGE,
    SYSTEMCTL,
    UFW,
    UNIT,
    FakePolicyHost,
)

SIDECAR = 'model-sidecar.service'
MODEL_RULE = "allow 8000/tcp comment 'model-server llama'"


@pytest.fixture(autouse=True)
def no_ufw_conf(tmp_path, monkeypatch):
    """No ufw.conf: `ufw status` decides (the dev machine's own file must not count)."""
    monkeypatch.setattr(_policy, 'UFW_CONF', str(tmp_path / 'no-ufw.conf'))


@pytest.fixture
def granted(tmp_path):
    """A host where ufw allows 8000/tcp (with a comment) and 22/tcp, the sidecar is enabled, llama is masked already,
    and a drop-in is in place; the options that take it back."""
    dropin = tmp_path / '50-fleet.conf'
    dropin.write_text('[Service]\nTimeoutStopSec=7\n')
    host = FakePolicyHost(ufw=[MODEL_RULE, 'allow 22/tcp'], units={SIDECAR: ('loaded', 'enabled'), UNIT: ('masked', 'masked')})
    options = {'firewall_ports': ['8000/tcp'], 'mask_units': [SIDECAR, UNIT], 'remove_dropins': [str(dropin)]}
    return host, options, dropin


def bins(*absent):
    return dict((name, path) for name, path in BINS.items() if name not in absent + ('firewall-cmd',))


def test_takes_back_everything_listed_with_a_diff_then_changes_nothing(run_module, granted):
    host, options, dropin = granted
    result = run_module(policy_revoke, options, diff=True, run_command=host, bin_paths=bins(), expect_failed=False)
    assert result['changed'] and result['ok'] and result['msg'] == ''
    assert host.mutations == [[UFW, 'delete', 'allow', '8000/tcp'], [SYSTEMCTL, 'mask', '--', SIDECAR],
                              [SYSTEMCTL, 'daemon-reload']]
    steps = dict((s['step'], s) for s in result['steps'])
    assert [s['step'] for s in result['steps']] == ['selinux', 'firewall', 'units']
    assert steps['selinux']['status'] == 'skipped'
    assert steps['firewall']['items'] == [{'port': '8000/tcp', 'rule': MODEL_RULE, 'previous': 'allowed', 'new': 'absent',
                                           'changed': True}]
    assert steps['units']['items'] == [
        {'unit': SIDECAR, 'previous': 'enabled', 'new': 'masked', 'changed': True},
        {'unit': UNIT, 'previous': 'masked', 'new': 'masked', 'changed': False},
        {'path': str(dropin), 'previous': '[Service]\nTimeoutStopSec=7\n', 'new': None, 'changed': True},
    ]
    assert result['diff'] == {
        'before': {'ufw allow 8000/tcp': 'allowed', 'mask %s' % SIDECAR: 'enabled', 'mask %s' % UNIT: 'masked',
                   'drop-in %s' % dropin: '[Service]\nTimeoutStopSec=7\n'},
        'after': {'ufw allow 8000/tcp': 'absent', 'mask %s' % SIDECAR: 'masked', 'mask %s' % UNIT: 'masked',
                  'drop-in %s' % dropin: None},
    }
    assert host.ufw == ['allow 22/tcp'] and not dropin.exists()

    host.calls = []
    again = run_module(policy_revoke, options, diff=True, run_command=host, bin_paths=bins(), expect_failed=False)
    assert not again['changed'] and host.mutations == []
    assert again['diff']['before'] == again['diff']['after']
    assert all(s['status'] in ('unchanged', 'skipped') for s in again['steps'])


def test_check_mode_changes_nothing_and_predicts_the_new_state(run_module, granted):
    host, options, dropin = granted
    result = run_module(policy_revoke, options, check_mode=True, diff=True, run_command=host, bin_paths=bins(),
                        expect_failed=False)
    assert result['changed'] and host.mutations == []
    assert dropin.exists() and host.ufw == [MODEL_RULE, 'allow 22/tcp'] and host.units[SIDECAR] == ('loaded', 'enabled')
    assert result['diff']['after'] == {'ufw allow 8000/tcp': 'absent', 'mask %s' % SIDECAR: 'masked',
                                       'mask %s' % UNIT: 'masked', 'drop-in %s' % dropin: None}


def test_no_diff_key_without_diff_mode(run_module, granted):
    host, options, dummy = granted
    result = run_module(policy_revoke, options, run_command=host, bin_paths=bins(), expect_failed=False)
    assert 'diff' not in result


def test_a_failing_step_fails_the_task_with_every_step_and_the_cause(run_module, granted):
    host, options, dummy = granted
    host.fail[('ufw', 'status')] = (1, '', 'ERROR: You need to be root to run this script\n')
    result = run_module(policy_revoke, options, run_command=host, bin_paths=bins(), expect_failed=True)
    assert result['msg'] == ('firewall: /usr/sbin/ufw status failed (rc 1): ERROR: You need to be root to run this '
                             'script. What to do: run the task as root (become: true); in a container ufw and firewalld '
                             'also need CAP_NET_ADMIN')
    assert not result['ok'] and [s['status'] for s in result['steps']] == ['skipped', 'failed', 'done']
    assert result['changed']  # the units step still ran


def test_selinux_mode_change_warns(run_module, tmp_path, monkeypatch):
    config = tmp_path / 'config'
    config.write_text('SELINUX=enforcing\n')
    monkeypatch.setattr(_policy, 'SELINUX_CONFIG', str(config))
    host = FakePolicyHost(selinux='enforcing')
    result = run_module(policy_revoke, {'selinux_mode': 'permissive'}, check_mode=True, run_command=host,
                        bin_paths=BINS, expect_failed=False)
    assert result['warnings'] == ['selinux_mode=permissive would change the SELinux mode of the whole host (enforcing now), '
                                  'not only what the model was granted']
    assert host.mutations == [] and config.read_text() == 'SELINUX=enforcing\n'


def test_fcontext_ftype_reaches_semanage(run_module):
    host = FakePolicyHost(selinux='enforcing', fcontexts={'/srv/models': ('httpd_sys_content_t', 'd')})
    run_module(policy_revoke, {'selinux_fcontexts': [{'target': '/srv/models', 'setype': 'httpd_sys_content_t', 'ftype': 'd'}]},
               run_command=host, bin_paths=BINS, expect_failed=False)
    assert host.mutations == [[SEMANAGE, 'fcontext', '--delete', '--type', 'httpd_sys_content_t', '--ftype', 'd', '--',
                               '/srv/models']]


@pytest.mark.parametrize('options,words', [
    ({'firewall_ports': ['99999/tcp']}, "firewall_ports: '99999/tcp' is not PORT[-PORT]"),
    ({'firewall_ports': ['8010-8000']}, "firewall_ports: '8010-8000' is not PORT[-PORT]"),
    ({'firewall_zone': 'abc.def'}, "firewall_zone: 'abc.def' is not a firewalld zone name"),
    ({'mask_units': ['--now']}, "mask_units: '--now' is not a valid name"),
    ({'selinux_mode': 'enforcing'}, 'selinux_mode'),
    ({'selinux_fcontexts': [{'target': '/srv', 'setype': 'x_t', 'ftype': 'regular file'}]}, 'ftype'),
    ({'selinux_ports': [{'port': '8000'}]}, 'setype'),
    ({'nosuch': 1}, 'nosuch'),
])
def test_refused_as_host_shutdown_refuses_it(run_module, options, words):
    def no_command(argv):
        raise AssertionError('ran %r on refused input' % (argv,))
    result = run_module(policy_revoke, options, run_command=no_command, bin_paths=BINS, expect_failed=True)
    assert words in result['msg']
    with pytest.raises(SpecError) as raised:
        parse_params({'stop': {'units': [UNIT]}, 'policy': options})
    assert words in str(raised.value) and str(raised.value).startswith('policy')


def test_one_spec_for_both_modules():
    # host_shutdown validates its policy option with the spec policy_revoke's AnsibleModule is built with.
    phases = parse_params({'stop': {'units': [UNIT]}, 'policy': {'firewall_ports': ['8000/tcp']}})
    assert set(phases['policy']) == set(_policy.argument_spec())
    assert phases['policy']['firewall_zone'] == 'public' and phases['policy']['selinux_mode'] is None
