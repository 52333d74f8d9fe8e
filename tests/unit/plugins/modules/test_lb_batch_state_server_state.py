# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lb_batch_state's haproxy_config: read_server_state() directly, and through main() over the runtime API stand-in
(tests/unit/plugins/modules/test_lb_batch_state.py's fixtures), in check mode as the pre-flight runs it. One
configuration is the test fleet's molecule/_shared/templates/haproxy.cfg.j2, rendered as
tests/unit/fleet/test_haproxy_template.py renders it."""

from __future__ import annotations

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._lb_haproxy import server_state_warning
from ansible_collections.modelops.shutdown.plugins.modules import lb_batch_state
from ansible_collections.modelops.shutdown.plugins.modules.lb_batch_state import read_config, read_server_state
from ansible_collections.modelops.shutdown.tests.unit.fleet.test_haproxy_template import render
# The runtime API stand-in and the runner of lb_batch_state's own tests.
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_lb_batch_state import (  # noqa: F401 pylint: disable=unused-import
    haproxy,
    run,
)


def read_state(path, warn):
    """As main() does it: the file is read once, for the server state and the health checks."""
    return read_server_state(read_config(path, warn), path, warn)


@pytest.fixture
def fleet_cfg(tmp_path):
    """The fleet's haproxy.cfg, rendered with or without the server-state file."""
    def write(state_file):
        path = tmp_path / ('haproxy-%s.cfg' % ('state' if state_file else 'plain'))
        path.write_text(render(fleet_haproxy_server_state_file=state_file))
        return str(path)
    return write


def test_a_configuration_that_keeps_the_states_gives_no_warning(fleet_cfg):
    warnings = []
    path = fleet_cfg(True)
    assert read_state(path, warnings.append) == {'config': path, 'server_state_file': '/var/lib/haproxy/server-state',
                                                 'load_from_file': ['defaults'], 'persists': True}
    assert warnings == []


def test_a_configuration_that_forgets_them_warns_once(fleet_cfg):
    warnings = []
    path = fleet_cfg(False)
    got = read_state(path, warnings.append)
    assert got == {'config': path, 'server_state_file': None, 'load_from_file': [], 'persists': False}
    assert warnings == [server_state_warning(got)] and warnings[0].startswith(path + ' has no server-state-file')


def test_a_missing_configuration_warns_and_persists_is_unknown(tmp_path):
    warnings = []
    path = str(tmp_path / 'haproxy.cfg')
    assert read_state(path, warnings.append) == {'config': path, 'server_state_file': None, 'load_from_file': [],
                                                 'persists': None}
    [warning] = warnings
    assert warning.startswith('Could not read %s to check that HAProxy keeps drain states across a reload and to read its health checks: ' % path)
    assert 'No such file or directory' in warning
    warnings = []
    assert read_state(str(tmp_path), warnings.append)['persists'] is None   # a directory
    assert len(warnings) == 1 and 'Is a directory' in warnings[0]


def test_bytes_that_are_not_utf8_are_read_anyway(tmp_path):
    path = tmp_path / 'haproxy.cfg'
    path.write_bytes(b'# caf\xe9\nglobal\n    server-state-file /s\ndefaults\n    load-server-state-from-file global\n')
    warnings = []
    assert read_state(str(path), warnings.append)['persists'] is True and warnings == []


# --- through main() ------------------------------------------------------------------------------------------------

def test_main_reports_the_server_state_and_warns(run, haproxy, fleet_cfg):
    path = fleet_cfg(False)
    result = run({'state': 'ready', 'haproxy_config': path}, check_mode=True, expect_failed=False)
    assert result['server_state'] == {'config': path, 'server_state_file': None, 'load_from_file': [], 'persists': False}
    assert result['warnings'] == [server_state_warning(result['server_state'])]
    assert haproxy.sets() == []


def test_main_without_a_warning_when_the_states_persist(run, fleet_cfg):
    result = run({'state': 'ready', 'haproxy_config': fleet_cfg(True)}, check_mode=True, expect_failed=False)
    assert result['server_state']['persists'] is True and result['warnings'] == []


def test_main_with_a_missing_configuration_still_succeeds(run, tmp_path):
    path = str(tmp_path / 'nope.cfg')
    result = run({'state': 'ready', 'haproxy_config': path}, check_mode=True, expect_failed=False)
    assert result['server_state']['persists'] is None and len(result['warnings']) == 1 and path in result['warnings'][0]


def test_main_without_haproxy_config_reads_nothing(run):
    result = run({'state': 'ready'}, check_mode=True, expect_failed=False)
    assert 'server_state' not in result and result['warnings'] == []


def test_main_without_haproxy_members_ignores_haproxy_config(run_module, tmp_path, fleet_cfg):
    members = [{'host': 'gpu-1', 'file': {'path': str(tmp_path / 'gpu-1.flag')}}]
    result = run_module(lb_batch_state, {'name': 'web', 'state': 'ready', 'members': members, 'batch': ['gpu-1'],
                                         'haproxy_config': fleet_cfg(False)}, check_mode=True, expect_failed=False)
    assert 'server_state' not in result and result['warnings'] == []
