# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lb_pool_state over a runtime API replaying real HAProxy 2.6.12 captures (m1 drain, m2 no check,
m3 maint, m4 drain and down, m5 up)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.modules import lb_pool_state
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import FakeHAProxySocket, read_fixture
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


# ----------------------------------------------------------------------------------------- incomplete answers, bad input

class AnsweringSocket(object):
    """A runtime API socket answering C(show stat) with C(stat) and C(show servers state) with C(state), verbatim."""

    def __init__(self, path, stat, state):
        self.answers = {'show stat': stat, 'show servers state': state}
        self.fake = FakeHAProxySocket(path)
        self.fake.answer = self.answer
        self.path = path

    def answer(self):
        return self.answers[self.fake.commands[-1].strip()]

    def close(self):
        self.fake.close()


STAT = read_fixture('haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv')
STATE = read_fixture('haproxy_show_servers_state_v2.6.12_drain_maint_down.txt')


def first_lines(text, count):
    """The first C(count) lines of a capture, as a connection closed early would leave them (no empty line)."""
    return '\n'.join(text.split('\n')[:count]) + '\n'


@pytest.mark.parametrize('stat, state, words', [
    ('', STATE, 'empty answer to "show stat"'),
    (first_lines(STAT, 5), STATE, 'the answer to "show stat" is cut off'),       # 3 of the 5 servers of models
    (first_lines(STAT, 5)[:-30] + '\n\n', STATE, 'line 5 of the "show stat" answer has'),  # a row cut mid-field
    ('Permission denied\n\n', STATE, 'Permission denied'),
    (STAT, '', 'empty answer to "show servers state"'),
    (STAT, first_lines(STATE, 4), 'the answer to "show servers state" is cut off'),
    (STAT, '1\n3 models 1 m1\n\n', 'no "# be_id be_name ..." header line'),
])
def test_incomplete_answers_fail_instead_of_a_partial_pool(run_module, short_dir, stat, state, words):
    sock = AnsweringSocket(os.path.join(short_dir, 'cut.sock'), stat, state)
    try:
        result = run_module(lb_pool_state, {'haproxy': {'socket': sock.path}, 'backends': ['models']}, expect_failed=True)
    finally:
        sock.close()
    assert words in result['msg'] and sock.path in result['msg'] and 'servers' not in result
    assert result['msg'].startswith('Could not read the pool: HAProxy runtime socket %s' % sock.path)
    assert result['source'] == 'HAProxy runtime socket %s' % sock.path


def test_the_same_answers_complete_are_read(run_module, short_dir):
    sock = AnsweringSocket(os.path.join(short_dir, 'ok.sock'), STAT, STATE)
    try:
        result = run_module(lb_pool_state, {'haproxy': {'socket': sock.path}, 'backends': ['models']}, expect_failed=False)
    finally:
        sock.close()
    assert [s['server'] for s in result['servers']] == ['m1', 'm2', 'm3', 'm4', 'm5']


@pytest.mark.parametrize('endpoint, words', [
    ({'socket': ''}, 'haproxy.socket is empty: give the path of the runtime API socket'),
    ({'host': '127.0.0.1', 'port': 0}, 'haproxy.port must be between 1 and 65535, got 0'),
    ({'host': 'a..b', 'port': 9999}, "Invalid haproxy.host: host name 'a..b' has an empty label"),
    ({'host': 'x' * 64, 'port': 9999}, 'has a label of 64 characters'),
    ({'socket': '/run/haproxy.sock', 'timeout': -1}, 'haproxy.timeout must be more than 0.0 seconds, got -1.0'),
    ({'socket': '/run/haproxy.sock', 'timeout': 'nan'}, 'haproxy.timeout must be a finite number of seconds, got nan'),
    ({'socket': '/run/haproxy.sock', 'timeout': 1e300}, 'haproxy.timeout must be at most 604800 seconds'),
    ({'socket': '/run/a\x00b'}, 'Refusing haproxy.socket'),
])
def test_bad_endpoint_is_a_clear_failure(run_module, endpoint, words):
    result = run_module(lb_pool_state, {'haproxy': endpoint}, expect_failed=True)
    assert words in result['msg'] and 'source' in result


def test_null_haproxy_is_an_argument_error(run_module):
    result = run_module(lb_pool_state, {'haproxy': None}, expect_failed=True)
    assert "argument 'haproxy' is of type NoneType and we were unable to convert to dict" in result['msg']


def test_empty_backend_list_is_refused_not_an_empty_pool(run_module, haproxy):
    result = run_module(lb_pool_state, {'haproxy': {'socket': haproxy.path}, 'backends': []}, expect_failed=True)
    assert result['msg'] == 'backends is an empty list: omit it to read every backend, or name at least one'
    assert haproxy.commands == []


@pytest.mark.parametrize('value', [0, True, 2.5])
def test_scalar_haproxy_is_an_argument_error_not_a_traceback(run_module, value):
    result = run_module(lb_pool_state, {'haproxy': value}, expect_failed=True)
    assert "argument 'haproxy' is of type" in result['msg'] and 'unable to convert to dict' in result['msg']
