# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_dependencies driven through main(): the argument spec, check and diff mode, failures that keep every item.

The HAProxy configuration is the fleet's template rendered by hand (FLEET_CFG of the module_utils tests); systemctl
answers come from the captures tests/unit/fixtures/systemctl_show_*.
"""

from __future__ import annotations

import json

from ansible_collections.modelops.shutdown.plugins.modules import model_dependencies
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import CommandReplay, read_fixture
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.test_retire_deps import FLEET_CFG

BINS = {'haproxy': '/usr/sbin/haproxy', 'systemctl': '/usr/bin/systemctl'}
SHOW_ACTIVE = read_fixture('systemctl_show_simple_service_active_running_systemd249plus.txt')


def commands():
    return CommandReplay({'-c': (0, '', ''), 'reload': (0, '', ''), 'show': (0, SHOW_ACTIVE, ''),
                          'is-enabled': (0, 'enabled\n', ''), 'stop': (0, '', ''), 'disable': (0, '', '')})


def test_absent_then_present_round_trip_with_diff(run_module, tmp_path):
    config = tmp_path / 'haproxy.cfg'
    config.write_text(FLEET_CFG)
    deps = [{'name': 'gpu-01', 'haproxy_server': {'backend': 'models', 'server': 'gpu-01', 'config': str(config)}},
            {'systemd_timer': {'unit': 'embed-reindex.timer'}}]
    result = run_module(model_dependencies, {'dependencies': deps}, diff=True, run_command=commands(), bin_paths=BINS,
                        expect_failed=False)
    assert result['changed'] and result['state'] == 'absent' and result['failed_items'] == 0
    assert [d['status'] for d in result['dependencies']] == ['done', 'done']
    assert result['diff']['before']['haproxy_server models/gpu-01 (%s)' % config]['present'] is True
    assert 'gpu-01:8000' not in config.read_text()
    back = [dict(d, previous=r) for d, r in zip(deps, result['dependencies'])]  # whole result items are accepted
    result = run_module(model_dependencies, {'state': 'present', 'dependencies': back[:1]}, run_command=commands(),
                        bin_paths=BINS, expect_failed=False)
    assert config.read_text() == FLEET_CFG


def test_check_mode_changes_nothing(run_module, tmp_path):
    config = tmp_path / 'haproxy.cfg'
    config.write_text(FLEET_CFG)
    replay = commands()
    result = run_module(model_dependencies, {'dependencies': [
        {'haproxy_server': {'backend': 'models', 'server': 'gpu-01', 'config': str(config)}},
        {'systemd_timer': {'unit': 'x.timer'}}]}, check_mode=True, run_command=replay, bin_paths=BINS, expect_failed=False)
    assert result['changed'] and config.read_text() == FLEET_CFG
    assert [c[1] for c in replay.calls] == ['show', 'is-enabled']


def test_a_failed_item_fails_the_task_but_every_item_is_returned(run_module, tmp_path):
    result = run_module(model_dependencies, {'dependencies': [
        {'haproxy_server': {'backend': 'models', 'server': 'gpu-01', 'config': str(tmp_path / 'missing.cfg')}},
        {'systemd_timer': {'unit': 'x.timer'}}]}, run_command=commands(), bin_paths=BINS, expect_failed=True)
    assert result['failed_items'] == 1 and [d['status'] for d in result['dependencies']] == ['failed', 'done']
    assert 'does not exist' in result['msg'] and 'Next: ls -l' in result['msg']


def test_spec_refuses_two_kinds_none_and_missing_previous(run_module):
    result = run_module(model_dependencies, {'dependencies': [
        {'systemd_timer': {'unit': 'a.timer'}, 'systemd_unit': {'unit': 'a.service'}}]}, expect_failed=True)
    assert 'mutually exclusive' in result['msg']
    result = run_module(model_dependencies, {'dependencies': [{'name': 'x'}]}, expect_failed=True)
    assert 'one of the following is required' in result['msg']
    result = run_module(model_dependencies, {'state': 'present', 'dependencies': [{'systemd_timer': {'unit': 'a.timer'}}]},
                        expect_failed=True)
    assert 'previous is required' in result['msg'] and result['dependencies'] == []
    result = run_module(model_dependencies, {'dependencies': [
        {'haproxy_server': {'backend': 'models', 'server': 'm1', 'method': 'runtime'}}]}, expect_failed=True)
    assert 'haproxy' in result['msg']
    result = run_module(model_dependencies, {'dependencies': 5}, expect_failed=True)
    assert 'dependencies' in result['msg']


def test_hook_token_never_in_the_result(run_module):
    result = run_module(model_dependencies, {'dependencies': [
        {'http_hook': {'url': 'http://127.0.0.1:9/hook', 'token': 'sekrit-token-1', 'timeout': 1,
                       'headers': {'X-Api-Key': 'other-secret-2'}}}]}, expect_failed=True)
    text = json.dumps(result)
    assert 'sekrit-token-1' not in text and 'other-secret-2' not in text
    assert result['dependencies'][0]['status'] == 'failed'
