# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""server_state_persistence / server_state_warning (module_utils/_lb_haproxy.py): does an HAProxy configuration keep
runtime drain/maint states across a reload (server-state-file in global, load-server-state-from-file in defaults or a
backend)?

One case is the test fleet's real configuration: molecule/_shared/templates/haproxy.cfg.j2, rendered with
tests/unit/fleet/test_haproxy_template.py's render() (jinja2 as Ansible's template module renders it), with and
without fleet_haproxy_server_state_file. Where /usr/sbin/haproxy is installed, `haproxy -c` shows what HAProxy itself
makes of the indented and per-backend (local) configurations."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._lb_haproxy import (
    server_state_persistence, server_state_warning)
from ansible_collections.modelops.shutdown.tests.unit.fleet.test_haproxy_template import render

CFG = '/etc/haproxy/haproxy.cfg'
HAPROXY = '/usr/sbin/haproxy'

PERSISTS = """\
global
    stats socket /run/haproxy/admin.sock mode 660 level admin
    server-state-file /var/lib/haproxy/server-state

defaults
    mode http
    load-server-state-from-file global

backend models
    server m1 10.0.0.1:8000 check
"""


def found(text):
    return server_state_persistence(text, CFG)


# --- the test fleet's configuration -------------------------------------------------------------------------------

def test_fleet_template_without_the_state_file_does_not_persist():
    text = render()  # fleet_haproxy_server_state_file unset: the fleet's default
    assert found(text) == {'config': CFG, 'server_state_file': None, 'load_from_file': [], 'persists': False}
    warning = server_state_warning(found(text))
    assert warning.startswith('%s has no server-state-file in its global section and no load-server-state-from-file in a '
                              'defaults or backend section: a reload or restart of HAProxy forgets every drain' % CFG)
    assert 'show servers state' in warning


@pytest.mark.parametrize('cookie', [False, True])
def test_fleet_template_with_the_state_file_persists(cookie):
    text = render(fleet_haproxy_server_state_file=True, fleet_haproxy_cookie=cookie)
    assert found(text) == {'config': CFG, 'server_state_file': '/var/lib/haproxy/server-state',
                           'load_from_file': ['defaults'], 'persists': True}
    assert server_state_warning(found(text)) is None


# --- the two directives -----------------------------------------------------------------------------------------------

def test_both_directives_persist():
    assert found(PERSISTS)['persists'] is True and server_state_warning(found(PERSISTS)) is None


def test_state_file_without_loading_it():
    text = PERSISTS.replace('    load-server-state-from-file global\n', '')
    assert found(text) == {'config': CFG, 'server_state_file': '/var/lib/haproxy/server-state', 'load_from_file': [],
                           'persists': False}
    assert server_state_warning(found(text)).startswith(
        '%s has no load-server-state-from-file in a defaults or backend section: ' % CFG)


def test_loading_without_a_state_file():
    text = PERSISTS.replace('    server-state-file /var/lib/haproxy/server-state\n', '')
    assert found(text)['load_from_file'] == ['defaults'] and found(text)['persists'] is False
    assert server_state_warning(found(text)).startswith('%s has no server-state-file in its global section: ' % CFG)


@pytest.mark.parametrize('section', ['backend models', 'listen models'])
def test_loading_in_a_backend_or_listen_section(section):
    text = ('global\n    server-state-file /var/lib/haproxy/state\ndefaults\n    mode http\n'
            '%s\n    load-server-state-from-file global\n    server m1 10.0.0.1:8000\n' % section)
    assert found(text)['load_from_file'] == [section] and found(text)['persists'] is True


def test_local_counts_and_none_does_not():
    assert found(PERSISTS.replace('from-file global', 'from-file local'))['persists'] is True
    assert found(PERSISTS.replace('from-file global', 'from-file none'))['load_from_file'] == []
    assert found(PERSISTS.replace('from-file global', 'from-file'))['load_from_file'] == []


def test_directives_in_the_wrong_section_do_not_count():
    text = """\
global
    load-server-state-from-file global
defaults
    server-state-file /var/lib/haproxy/state
frontend in
    bind :8080
    load-server-state-from-file global
"""
    assert found(text) == {'config': CFG, 'server_state_file': None, 'load_from_file': [], 'persists': False}


def test_a_named_defaults_section_and_several_loaders():
    text = PERSISTS + 'defaults tcp_defaults\n    mode tcp\n    load-server-state-from-file local\n' \
                      'backend other\n    load-server-state-from-file global\n'
    assert found(text)['load_from_file'] == ['defaults', 'defaults tcp_defaults', 'backend other']


def test_the_last_state_file_of_global_is_the_one():
    text = PERSISTS.replace('    server-state-file /var/lib/haproxy/server-state\n',
                            '    server-state-file /old\n    server-state-file /var/lib/haproxy/server-state\n')
    assert found(text)['server_state_file'] == '/var/lib/haproxy/server-state'


# --- comments and indentation --------------------------------------------------------------------------------------

def test_commented_out_directives_do_not_count():
    text = """\
global
    #server-state-file /var/lib/haproxy/server-state
# server-state-file /var/lib/haproxy/other
defaults
    mode http
    # load-server-state-from-file global
\t#load-server-state-from-file global
"""
    assert found(text) == {'config': CFG, 'server_state_file': None, 'load_from_file': [], 'persists': False}


def test_trailing_comments_and_any_indentation():
    text = """\
# managed by Ansible
global # the process
\tserver-state-file   /var/lib/haproxy/server-state   # dumped by ExecReload
defaults  # every proxy
  \t load-server-state-from-file\tglobal # at start-up

backend models # the pool
        server m1 10.0.0.1:8000 check
"""
    assert found(text) == {'config': CFG, 'server_state_file': '/var/lib/haproxy/server-state', 'load_from_file': ['defaults'],
                           'persists': True}


def test_an_empty_configuration():
    assert found('') == {'config': CFG, 'server_state_file': None, 'load_from_file': [], 'persists': False}


INDENTED = """\
  global
    server-state-file /var/lib/haproxy/server-state
  defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
    load-server-state-from-file global
  backend models
    server m1 127.0.0.1:8000
"""


def test_indented_section_keywords_are_sections():
    assert found(INDENTED) == {'config': CFG, 'server_state_file': '/var/lib/haproxy/server-state',
                               'load_from_file': ['defaults'], 'persists': True}


def test_local_state_files_need_no_global_state_file():
    text = ('global\n    server-state-base /var/lib/haproxy/state/\ndefaults\n    mode http\n'
            'backend models\n    load-server-state-from-file local\n    server-state-file-name models\n'
            '    server m1 10.0.0.1:8000\n')
    assert found(text)['persists'] is True and server_state_warning(found(text)) is None


# --- what HAProxy itself makes of them ---------------------------------------------------------------------------------

def haproxy_check(tmp_path, text):
    config = tmp_path / 'haproxy.cfg'
    config.write_text(text)
    done = subprocess.run([HAPROXY, '-c', '-f', str(config)], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


needs_haproxy = pytest.mark.skipif(not os.access(HAPROXY, os.X_OK), reason='no %s here' % HAPROXY)


@needs_haproxy
def test_haproxy_reads_the_state_file_of_an_indented_global(tmp_path):
    state = tmp_path / 'server-state'
    output = haproxy_check(tmp_path, INDENTED.replace('/var/lib/haproxy/server-state', str(state)))
    assert "Can't open global server state file '%s'" % state in output, output


@needs_haproxy
def test_haproxy_restores_from_a_local_state_file_without_a_global_one(tmp_path):
    state = tmp_path / 'models'
    # `show servers state models` of HAProxy 2.6 with m1 put in maintenance (srv_admin_state 1).
    state.write_text('1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight '
                     'srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state '
                     'srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port '
                     'srv_check_addr srv_agent_addr srv_agent_port\n'
                     '2 models 1 m1 127.0.0.1 0 1 1 1 10 1 0 0 0 0 0 0 - 8000 - 0 0 - - 0\n')
    text = ('global\n    server-state-base %s/\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n'
            '    timeout server 1s\nbackend models\n    load-server-state-from-file local\n    server-state-file-name models\n'
            '    server m1 127.0.0.1:8000\n' % tmp_path)
    output = haproxy_check(tmp_path, text)
    assert 'Server models/m1 is DOWN, changed from server-state after a reload' in output, output
