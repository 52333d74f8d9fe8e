# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lb_pool_state over a runtime API replaying real HAProxy 2.6.12 captures (m1 drain, m2 no check,
m3 maint, m4 drain and down, m5 up)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.modules import lb_pool_state
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeHAProxy


@pytest.fixture
def haproxy(short_dir):
    with FakeHAProxy(os.path.join(short_dir, 'admin.sock')) as fake:
        yield fake


def test_reads_the_whole_backend_in_two_commands(run_module, haproxy):
    result = run_module(lb_pool_state, {'haproxy': {'socket': haproxy.path}, 'backends': ['models']})
    servers = {s['server']: s for s in result['servers']}
    assert sorted(servers) == ['m1', 'm2', 'm3', 'm4', 'm5']
    assert {name: (s['state'], s['status'], s['available']) for name, s in servers.items()} == {
        'm1': ('draining', 'DRAIN', False),
        'm2': ('ready', 'no check', True),
        'm3': ('maintenance', 'MAINT', False),
        'm4': ('draining', 'DOWN', False),
        'm5': ('ready', 'UP', True),
    }
    assert result['changed'] is False
    assert haproxy.commands == ['show stat', 'show servers state']


def test_follows_a_change(run_module, haproxy):
    haproxy.set_server('models/m5', 'drain')
    result = run_module(lb_pool_state, {'haproxy': {'socket': haproxy.path}})
    m5 = [s for s in result['servers'] if s['server'] == 'm5'][0]
    assert (m5['state'], m5['status'], m5['available']) == ('draining', 'DRAIN', False)


def test_unknown_backend_fails_naming_it(run_module, haproxy):
    result = run_module(lb_pool_state, {'haproxy': {'socket': haproxy.path}, 'backends': ['llama']}, expect_failed=True)
    assert 'has no backend llama' in result['msg']


def test_injection_in_backend_name_refused_before_sending(run_module, haproxy):
    result = run_module(lb_pool_state, {'haproxy': {'socket': haproxy.path}, 'backends': ['models;shutdown sessions']},
                        expect_failed=True)
    assert 'backend' in result['msg']
    assert not [cmd for cmd in haproxy.commands if 'shutdown' in cmd]


def test_missing_socket_fails_clearly(run_module, short_dir):
    result = run_module(lb_pool_state, {'haproxy': {'socket': os.path.join(short_dir, 'none.sock')}}, expect_failed=True)
    assert 'Could not read the pool' in result['msg'] and 'none.sock' in result['msg']


def test_socket_and_host_are_exclusive(run_module, haproxy):
    result = run_module(lb_pool_state, {'haproxy': {'socket': haproxy.path, 'host': '127.0.0.1', 'port': 9999}},
                        expect_failed=True)
    assert 'mutually exclusive' in result['msg']
