# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import socket
import time

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _haproxy as hp
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import (
    HAPROXY_STAT_CSV as HAPROXY_CSV, ThreadedServer, free_port, read_command, read_fixture)
from ansible_collections.modelops.shutdown.tests.unit.plugins.module_utils.lb_fakes import FakeHAProxy, SilentSocket


# HAProxy ends every answer with an empty line (each 2.6.12 capture in tests/unit/fixtures does). The
# opentelemetry and telegraf captures were stored by those projects without it; this is what the CLI
# sends for them.
def cli_answer(text):
    """C(text) as the runtime API sends it: followed by the empty line that ends every answer."""
    return text if text.endswith('\n\n') or text == '\n' else text.rstrip('\n') + '\n\n'


class CliFakeHAProxy(FakeHAProxy):
    """C(FakeHAProxy) whose answers all end with the CLI's empty line, whatever capture they replay."""

    def answer(self, cmd):
        return cli_answer(super(CliFakeHAProxy, self).answer(cmd))


@pytest.fixture
def fake(short_dir):
    with CliFakeHAProxy(os.path.join(short_dir, 'admin.sock')) as server:
        yield server


def cut(text, keep_lines, extra=''):
    """The first C(keep_lines) lines of a capture (and C(extra) characters of the next): a cut-off answer."""
    lines = text.split('\n')
    return '\n'.join(lines[:keep_lines]) + '\n' + extra


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


def test_parse_stat_csv_refuses_a_row_cut_in_the_middle():
    """The 2.6.12 capture cut inside its last server row: the row has fewer fields than the header."""
    capture = read_fixture('haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv')
    lines = capture.split('\n')
    text = '\n'.join(lines[:6]) + '\n' + lines[6][:40] + '\n\n'
    with pytest.raises(hp.HAProxyError) as err:
        hp.parse_stat_csv(text)
    assert 'line 7 of the "show stat" answer has' in str(err.value) and 'where the header has 129' in str(err.value)
    assert 'cut-off' in str(err.value)


def test_parse_stat_csv_refuses_extra_fields():
    capture = read_fixture('haproxy_show_stat_csv_v2.7.1_otel.csv')
    lines = capture.split('\n')
    lines[2] = lines[2] + 'x,'
    with pytest.raises(hp.HAProxyError, match='line 3 of the "show stat" answer has 130 fields where the header has 129'):
        hp.parse_stat_csv('\n'.join(lines))


@pytest.mark.parametrize('text', ['', '\n', '\n\n  \n'])
def test_parse_stat_csv_empty_is_refused(text):
    with pytest.raises(hp.HAProxyError, match=r'empty answer to "show stat", expected CSV starting with a "# pxname,svname,\.\.\." header'):
        hp.parse_stat_csv(text)


def test_parse_stat_csv_refuses_a_blank_line_inside():
    capture = read_fixture('haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv')
    lines = capture.split('\n')
    with pytest.raises(hp.HAProxyError, match='empty line in the middle'):
        hp.parse_stat_csv('\n'.join(lines[:3] + [''] + lines[3:]))


@pytest.mark.parametrize('name', ['haproxy_show_stat_csv_v2.7.1_otel.csv', 'haproxy_show_stat_csv_telegraf_sample.csv',
                                  'haproxy_show_stat_csv_v2.6.12_drain_maint_down.csv'])
def test_parse_stat_csv_every_capture_has_consistent_rows(name):
    text = read_fixture(name)
    rows = hp.parse_stat_csv(text)
    assert len(rows) == len([line for line in text.splitlines() if line.strip() and not line.startswith('#')])
    assert all(set(['pxname', 'svname', 'status']) <= set(row) for row in rows)


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
def test_parse_servers_state_empty_is_refused(text):
    with pytest.raises(hp.HAProxyError, match='empty answer to "show servers state", expected a version line "1"'):
        hp.parse_servers_state(text)


def test_parse_servers_state_backend_without_servers():
    """A real answer with the header and no row (HAProxy 2.6.12, a backend without servers): an empty list."""
    assert hp.parse_servers_state(read_fixture('haproxy_show_servers_state_v2.6.12_backend_without_servers.txt')) == []


def test_parse_servers_state_unknown_command_is_unsupported():
    with pytest.raises(hp.HAProxyUnsupportedError, match='older than 1.6'):
        hp.parse_servers_state(read_fixture('haproxy_unknown_command_v2.6.12.txt'))


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


def test_parse_servers_state_refuses_a_cut_row():
    """The 2.6.12 capture cut inside the row of m3: fewer fields than the header."""
    capture = read_fixture('haproxy_show_servers_state_v2.6.12_drain_maint_down.txt')
    lines = capture.split('\n')
    text = '\n'.join(lines[:4]) + '\n' + lines[4][:20] + '\n\n'
    with pytest.raises(hp.HAProxyError, match='line 5 of the "show servers state" answer has 5 fields where the header has 25'):
        hp.parse_servers_state(text)


def test_parse_servers_state_header_must_have_the_columns_read():
    capture = read_fixture('haproxy_show_servers_state_go-mysql-sphinx_maint.txt')
    text = capture.replace('srv_admin_state', 'srv_admin')
    with pytest.raises(hp.HAProxyError, match='lacks the column\\(s\\) srv_admin_state'):
        hp.parse_servers_state(text)


# ----------------------------------------------------------------------------------------- parse_info / state names

def test_parse_info():
    info = hp.parse_info(read_fixture('haproxy_show_info_v2.7.1_otel.txt'))
    assert info['Name'] == 'HAProxy' and info['Version'] == '2.7.1-3e4af0e'
    assert info['Uptime'] == '0d 0h02m48s'
    with pytest.raises(hp.HAProxyError, match='empty answer to "show info"'):
        hp.parse_info('')
    with pytest.raises(hp.HAProxyError, match='line 1 of the "show info" answer is not a "Name: value" line'):
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
    fake = CliFakeHAProxy(tcp=True).start()
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


# ----------------------------------------------------------------------------------------- bad input, bad answers

class ScriptedSocket(ThreadedServer):
    """A UNIX socket that reads one command per connection and hands the connection to C(reply(conn, command))."""

    def __init__(self, path, reply):
        self.path = path
        self.reply = reply
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        super(ScriptedSocket, self).__init__(sock, self.answer)

    def answer(self, conn):
        data = read_command(conn)
        if data.endswith(b'\n'):  # a client that hung up before its command ended gets no answer
            self.reply(conn, data.decode().rstrip('\n'))


@pytest.fixture
def scripted(short_dir):
    servers = []

    def start(reply):
        server = ScriptedSocket(os.path.join(short_dir, 's%d.sock' % len(servers)), reply)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize('kwargs, message', [
    ({'socket_path': ''}, 'haproxy.socket is empty: give the path of the runtime API socket'),
    ({'socket_path': '/run/a\x00b'}, 'Refusing haproxy.socket'),
    ({'host': 'lb1', 'port': 0}, 'haproxy.port must be between 1 and 65535, got 0'),
    ({'host': 'lb1', 'port': 65536}, 'haproxy.port must be between 1 and 65535, got 65536'),
    ({'host': 'lb1'}, 'needs a port'),
    ({'host': 'a..b', 'port': 9999}, "Invalid haproxy.host: host name 'a..b' has an empty label"),
    ({'host': 'x' * 64 + '.example', 'port': 9999}, 'has a label of 64 characters'),
    ({'socket_path': '/s', 'timeout': -1.0}, 'haproxy.timeout must be more than 0.0 seconds, got -1.0'),
    ({'socket_path': '/s', 'timeout': 0}, 'haproxy.timeout must be more than 0.0 seconds, got 0'),
    ({'socket_path': '/s', 'timeout': float('nan')}, 'haproxy.timeout must be a finite number of seconds, got nan'),
    ({'socket_path': '/s', 'timeout': 1e300}, 'haproxy.timeout must be at most 604800 seconds (7 days), got 1e+300'),
])
def test_runtime_refuses_bad_endpoints(kwargs, message):
    with pytest.raises(hp.HAProxyError) as err:
        hp.HAProxyRuntime(**kwargs)
    assert message in str(err.value)


def test_empty_answer_is_refused(scripted):
    server = scripted(lambda conn, cmd: None)   # closes without a byte
    with pytest.raises(hp.HAProxyIncompleteError) as err:
        hp.HAProxyRuntime(socket_path=server.path).show_stat()
    assert 'empty answer to "show stat"' in str(err.value) and server.path in str(err.value)


def test_answer_cut_at_a_line_boundary_is_refused(scripted):
    """2 of the 3 servers of the captured pool, then the connection closes: no terminating empty line."""
    capture = read_fixture('haproxy_show_stat_csv_v2.7.1_otel.csv')
    partial = cut(capture, 4)   # header, frontend, s1, s2 (s3 and the backend row missing)
    server = scripted(lambda conn, cmd: conn.sendall(partial.encode()))
    rt = hp.HAProxyRuntime(socket_path=server.path)
    with pytest.raises(hp.HAProxyIncompleteError) as err:
        rt.show_stat()
    assert 'the answer to "show stat" is cut off' in str(err.value)
    assert 'without the empty line that ends every HAProxy answer' in str(err.value) and server.path in str(err.value)
    assert 'it begins: # pxname,svname' in str(err.value)


def test_complete_answer_of_the_same_capture_is_read(scripted):
    capture = read_fixture('haproxy_show_stat_csv_v2.7.1_otel.csv')
    server = scripted(lambda conn, cmd: conn.sendall(cli_answer(capture).encode()))
    rows = hp.HAProxyRuntime(socket_path=server.path).show_stat()
    assert [r['svname'] for r in rows if r['pxname'] == 'webservers'] == ['s1', 's2', 's3', 'BACKEND']


def test_trickling_answer_is_bounded_by_the_whole_exchange(scripted):
    """A runtime API sending one byte every 0.05 s never lets a per-read timeout fire; the deadline does."""
    def trickle(conn, cmd):
        for byte in cli_answer(read_fixture(HAPROXY_CSV)).encode():
            conn.sendall(bytes([byte]))
            time.sleep(0.05)
    server = scripted(trickle)
    started = time.monotonic()
    with pytest.raises(hp.HAProxyConnectionError) as err:
        hp.HAProxyRuntime(socket_path=server.path, timeout=0.5).command('show stat')
    assert time.monotonic() - started < 1.5
    assert 'no complete answer to "show stat" within 0.5 seconds (haproxy.timeout bounds the whole exchange' in str(err.value)


def test_non_utf8_answer_is_replaced_not_surrogates(scripted):
    server = scripted(lambda conn, cmd: conn.sendall(b'No such server \xff\xfe.\n\n'))
    with pytest.raises(hp.HAProxyError) as err:
        hp.HAProxyRuntime(socket_path=server.path).set_server_state('models', 'm1', 'drain')
    message = str(err.value)
    assert '\ufffd' in message
    message.encode('utf-8')   # no lone surrogate: the module result stays serializable


def test_servers_state_cut_off_is_not_taken_for_an_old_haproxy(scripted):
    capture = read_fixture('haproxy_show_servers_state_v2.6.12_drain_maint_down.txt')
    server = scripted(lambda conn, cmd: conn.sendall(cut(capture, 4).encode()))
    with pytest.raises(hp.HAProxyIncompleteError):
        hp.HAProxyRuntime(socket_path=server.path).servers_state('models')
