# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import socket

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _haproxy as hp
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import free_port, read_fixture
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeHAProxy, SilentSocket


@pytest.fixture
def fake(short_dir):
    with FakeHAProxy(os.path.join(short_dir, 'admin.sock')) as server:
        yield server


# ----------------------------------------------------------------------------------------- validate_name

@pytest.mark.parametrize('name', ['models', 'gpu-07', 'be_app.v2', 'srv:8000', 'A1'])
def test_validate_name_accepts_haproxy_names(name):
    assert hp.validate_name('server', name) == name


@pytest.mark.parametrize('name', [
    'foo;shutdown sessions', 'foo\nshutdown sessions server x/y', 'foo bar', 'foo\tbar', 'a#b', 'a\\b',
    'a/b', 'a\x00b', 'a\x1bb', 'a\rb', '', None, 5, 'a\u2028b',
])
def test_validate_name_refuses_injection(name):
    with pytest.raises(hp.HAProxyError) as err:
        hp.validate_name('backend', name)
    assert 'backend' in str(err.value)


def test_validate_name_message_names_kind_and_value():
    with pytest.raises(hp.HAProxyError, match=r"server name 'x;y'.*';'"):
        hp.validate_name('server', 'x;y')


# ----------------------------------------------------------------------------------------- parse_stat_csv

def test_parse_stat_csv_v27():
    rows = hp.parse_stat_csv(read_fixture('haproxy_show_stat_csv_v2.7.1_otel.csv'))
    assert [(r['pxname'], r['svname']) for r in rows] == [
        ('stats', 'FRONTEND'), ('myfrontend', 'FRONTEND'), ('webservers', 's1'), ('webservers', 's2'),
        ('webservers', 's3'), ('webservers', 'BACKEND')]
    s1 = rows[2]
    assert s1['status'] == 'UP'
    assert s1['scur'] == '0' and s1['qcur'] == '0'
    assert s1['check_status'] == 'L4OK'
    assert s1['addr'] == '192.168.16.2:8080'
    assert s1['check_desc'] == 'Layer4 check passed'
    # The trailing comma and the '-' placeholder column give no key.
    assert '' not in s1 and '-' not in s1
    assert s1['h1_spliced_bytes_out'] == ''


def test_parse_stat_csv_old_format_with_leading_blank_line():
    rows = hp.parse_stat_csv(read_fixture('haproxy_show_stat_csv_telegraf_sample.csv'))
    assert rows[0]['pxname'] == 'http-in' and rows[0]['svname'] == 'FRONTEND' and rows[0]['status'] == 'OPEN'
    www = [r for r in rows if r['pxname'] == 'www' and r['svname'] == 'www'][0]
    assert www['status'] == 'UP' and www['weight'] == '1' and www['check_status'] == 'L7OK'
    assert 'h2_headers_rcvd' not in www  # older HAProxy: fewer columns


def test_parse_stat_csv_statuses_v26():
    rows = hp.parse_stat_csv(read_fixture('haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv'))
    status = dict((r['svname'], r['status']) for r in rows if r['pxname'] == 'models')
    assert status == {'m1': 'DRAIN', 'm2': 'no check', 'm3': 'MAINT', 'm4': 'DOWN', 'm5': 'UP', 'BACKEND': 'UP'}


def test_parse_stat_csv_pads_short_rows():
    text = '# pxname,svname,scur,status,\nbe,s1,3\n'
    assert hp.parse_stat_csv(text) == [{'pxname': 'be', 'svname': 's1', 'scur': '3', 'status': ''}]


@pytest.mark.parametrize('text', ['', '\n', '\n\n  \n'])
def test_parse_stat_csv_empty(text):
    assert hp.parse_stat_csv(text) == []


@pytest.mark.parametrize('text,match', [
    ('Permission denied\n\n', 'Permission denied'),
    (read_fixture('haproxy_unknown_command_v2.6.12.txt'), 'Unknown command'),
    ('# foo,bar\n1,2\n', 'no pxname/svname'),
    (read_fixture('haproxy_show_servers_state_go-mysql-sphinx_maint.txt'), 'header'),
])
def test_parse_stat_csv_malformed(text, match):
    with pytest.raises(hp.HAProxyError, match=match):
        hp.parse_stat_csv(text)


# ----------------------------------------------------------------------------------------- parse_servers_state

def test_parse_servers_state_old_header():
    rows = hp.parse_servers_state(read_fixture('haproxy_show_servers_state_go-mysql-sphinx_maint.txt'))
    assert len(rows) == 2
    assert rows[0]['be_name'] == 'my_resume_cluster' and rows[0]['srv_name'] == 'searchd.local'
    assert rows[0]['srv_op_state'] == '2' and rows[0]['srv_admin_state'] == '0'
    assert rows[1]['srv_op_state'] == '0' and rows[1]['srv_admin_state'] == '5'
    assert rows[1]['srv_port'] == '5002'
    assert 'srvrecord' not in rows[1]
    assert hp.admin_state_name(int(rows[1]['srv_admin_state'])) == 'maint'


def test_parse_servers_state_v26():
    rows = hp.parse_servers_state(read_fixture('haproxy_show_servers_state_v2.6.12_drain_maint_down.txt'))
    admin = dict((r['srv_name'], hp.admin_state_name(int(r['srv_admin_state']))) for r in rows)
    assert admin == {'m1': 'drain', 'm2': 'ready', 'm3': 'maint', 'm4': 'drain', 'm5': 'ready'}
    m4 = [r for r in rows if r['srv_name'] == 'm4'][0]
    assert m4['srv_op_state'] == '0'   # stopped, while show stat only says DOWN
    assert m4['srv_agent_port'] == '0' and m4['srvrecord'] == '-'


@pytest.mark.parametrize('text', ['', '\n\n'])
def test_parse_servers_state_empty(text):
    assert hp.parse_servers_state(text) == []


@pytest.mark.parametrize('text,match', [
    ("Can't find backend.\n\n", "Can't find backend"),
    (read_fixture('haproxy_unknown_command_v2.6.12.txt'), 'Unknown command'),
    ('2\n# be_id be_name\n', 'version 2'),
    ('1\n3 models 1 m1\n', 'header'),
    ('1\n', 'header'),
])
def test_parse_servers_state_malformed(text, match):
    with pytest.raises(hp.HAProxyError, match=match):
        hp.parse_servers_state(text)


def test_parse_servers_state_pads_short_rows():
    rows = hp.parse_servers_state('1\n# be_id be_name srv_id srv_name srv_admin_state\n3 models 1\n')
    assert rows == [{'be_id': '3', 'be_name': 'models', 'srv_id': '1', 'srv_name': '', 'srv_admin_state': ''}]


# ----------------------------------------------------------------------------------------- parse_info / state names

def test_parse_info():
    info = hp.parse_info(read_fixture('haproxy_show_info_v2.7.1_otel.txt'))
    assert info['Name'] == 'HAProxy' and info['Version'] == '2.7.1-3e4af0e'
    assert info['Uptime'] == '0d 0h02m48s'
    assert hp.parse_info('') == {}
    with pytest.raises(hp.HAProxyError):
        hp.parse_info('garbage without colon\n')


@pytest.mark.parametrize('admin,name', [
    (0, 'ready'), (4, 'ready'), (1, 'maint'), (5, 'maint'), (2, 'maint'), (0x20, 'maint'), (8, 'drain'),
    (0x10, 'drain'), (8 | 1, 'maint'), (0x40, 'ready'),
])
def test_admin_state_name(admin, name):
    assert hp.admin_state_name(admin) == name


@pytest.mark.parametrize('status,name', [
    ('UP', 'ready'), ('DOWN', 'ready'), ('NOLB', 'ready'), ('no check', 'ready'), ('UP 1/3', 'ready'),
    ('DOWN 1/2', 'ready'), ('MAINT', 'maint'), ('MAINT(via)', 'maint'), ('MAINT (via be/s)', 'maint'),
    ('MAINT (resolution)', 'maint'), ('DRAIN', 'drain'), ('DRAIN 1/3', 'drain'), ('DRAIN (agent)', 'drain'),
    ('', 'ready'), (None, 'ready'),
])
def test_status_admin_state(status, name):
    assert hp.status_admin_state(status) == name


# ----------------------------------------------------------------------------------------- HAProxyRuntime

def test_runtime_needs_exactly_one_endpoint():
    for kwargs in ({}, {'socket_path': '/x', 'host': 'h', 'port': 1}):
        with pytest.raises(hp.HAProxyError, match='exactly one'):
            hp.HAProxyRuntime(**kwargs)
    with pytest.raises(hp.HAProxyError, match='needs a port'):
        hp.HAProxyRuntime(host='127.0.0.1')


def test_command_and_show_stat_over_unix_socket(fake):
    rt = hp.HAProxyRuntime(socket_path=fake.path)
    rows = rt.show_stat()
    assert len([r for r in rows if r['pxname'] == 'models']) == 6
    assert fake.commands == ['show stat']
    assert rt.show_info()['Version'] == '2.7.1-3e4af0e'


def test_command_over_tcp(short_dir):
    fake = FakeHAProxy(tcp=True).start()
    try:
        rt = hp.HAProxyRuntime(host='127.0.0.1', port=fake.address[1])
        assert rt.server_stat('models', 'm5')['status'] == 'UP'
        assert '127.0.0.1:%d' % fake.address[1] in rt.describe()
    finally:
        fake.stop()


def test_server_stat_found_and_missing(fake):
    rt = hp.HAProxyRuntime(socket_path=fake.path)
    assert rt.server_stat('models', 'm1')['status'] == 'DRAIN'
    with pytest.raises(hp.HAProxyError) as err:
        rt.server_stat('models', 'nope')
    msg = str(err.value)
    assert "no server 'nope' in backend 'models'" in msg and 'm1, m2, m3, m4, m5' in msg and fake.path in msg
    with pytest.raises(hp.HAProxyError) as err:
        rt.server_stat('nobackend', 'm1')
    assert "no backend 'nobackend'" in str(err.value) and 'Known backends: models' in str(err.value)
    with pytest.raises(hp.HAProxyError):
        rt.server_stat('models', 'BACKEND')


def test_set_server_state_round_trip(fake):
    rt = hp.HAProxyRuntime(socket_path=fake.path)
    rt.set_server_state('models', 'm5', 'drain')
    assert rt.server_stat('models', 'm5')['status'] == 'DRAIN'
    row = [r for r in rt.servers_state('models') if r['srv_name'] == 'm5'][0]
    assert row['srv_admin_state'] == '8'
    rt.set_server_state('models', 'm5', 'maint')
    assert rt.server_stat('models', 'm5')['status'] == 'MAINT'
    rt.set_server_state('models', 'm5', 'ready')
    assert rt.server_stat('models', 'm5')['status'] == 'UP'
    assert fake.sets() == ['set server models/m5 state drain', 'set server models/m5 state maint',
                           'set server models/m5 state ready']


def test_set_server_state_errors_are_reported(fake):
    rt = hp.HAProxyRuntime(socket_path=fake.path)
    with pytest.raises(hp.HAProxyError, match=r'refused "set server models/zz state drain": No such server\.'):
        rt.set_server_state('models', 'zz', 'drain')
    with pytest.raises(hp.HAProxyError, match='No such backend'):
        rt.set_server_state('zz', 'm1', 'drain')
    with pytest.raises(hp.HAProxyError, match='Unknown HAProxy server state'):
        rt.set_server_state('models', 'm1', 'up')
    fake.level = 'user'
    with pytest.raises(hp.HAProxyError, match='Permission denied.*level admin'):
        rt.set_server_state('models', 'm1', 'drain')


def test_injection_is_refused_before_sending(fake):
    rt = hp.HAProxyRuntime(socket_path=fake.path)
    for backend, server in (('models;shutdown sessions', 'm1'), ('models', 'm1\nshutdown sessions server models/m1'),
                            ('models', 'm 1')):
        with pytest.raises(hp.HAProxyError, match='Refusing'):
            rt.set_server_state(backend, server, 'maint')
        with pytest.raises(hp.HAProxyError, match='Refusing'):
            rt.server_stat(backend, server)
    with pytest.raises(hp.HAProxyError, match='Refusing'):
        rt.command('show stat;shutdown sessions')
    with pytest.raises(hp.HAProxyError, match='Refusing'):
        rt.command('show stat\nshow info')
    assert fake.commands == []


def test_servers_state_unknown_backend(fake):
    rt = hp.HAProxyRuntime(socket_path=fake.path)
    with pytest.raises(hp.HAProxyError, match="Can't find backend"):
        rt.servers_state('nope')


def test_missing_socket_message(short_dir):
    path = os.path.join(short_dir, 'nope.sock')
    with pytest.raises(hp.HAProxyConnectionError) as err:
        hp.HAProxyRuntime(socket_path=path).command('show stat')
    assert path in str(err.value) and 'stats socket' in str(err.value)


def test_refused_socket_message(short_dir):
    path = os.path.join(short_dir, 'stale.sock')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()  # a socket file with nobody listening
    with pytest.raises(hp.HAProxyConnectionError, match='refused'):
        hp.HAProxyRuntime(socket_path=path).command('show stat')


@pytest.mark.skipif(os.geteuid() == 0, reason='root ignores file permissions')
def test_permission_message(short_dir, fake):
    os.chmod(fake.path, 0)
    with pytest.raises(hp.HAProxyConnectionError, match='permission denied; run the task with become'):
        hp.HAProxyRuntime(socket_path=fake.path).command('show stat')


def test_timeout_message(short_dir):
    path = os.path.join(short_dir, 'silent.sock')
    silent = SilentSocket(path)
    try:
        with pytest.raises(hp.HAProxyConnectionError) as err:
            hp.HAProxyRuntime(socket_path=path, timeout=0.3).command('show stat')
        assert 'no complete answer to "show stat" within 0.3 seconds' in str(err.value) and path in str(err.value)
    finally:
        silent.close()


def test_tcp_connection_refused():
    port = free_port()
    with pytest.raises(hp.HAProxyConnectionError, match='127.0.0.1:%d.*refused' % port):
        hp.HAProxyRuntime(host='127.0.0.1', port=port, timeout=1).command('show stat')


def test_show_stat_error_answer_names_the_socket(fake):
    fake.stat_text = 'Permission denied\n\n'
    with pytest.raises(hp.HAProxyError) as err:
        hp.HAProxyRuntime(socket_path=fake.path).show_stat()
    assert fake.path in str(err.value) and 'Permission denied' in str(err.value)
