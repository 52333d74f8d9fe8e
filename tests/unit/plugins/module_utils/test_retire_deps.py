# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dependency manager of model_dependencies: its editors on real configuration text, its handlers against
stand-ins that answer as the real tools do.

* HAProxy configuration: FLEET_CFG is the fleet's template molecule/_shared/templates/haproxy.cfg.j2 rendered by
  hand (two model hosts gpu-01 and gpu-02 on port 8000, fleet_haproxy_routes defined, so the map-routed frontend
  and the no_route backend are there, the server-state file off). Where haproxy is installed it validates the
  edited text for real.
* systemctl: the captures tests/unit/fixtures/systemctl_show_* and the words systemctl is-enabled prints.
* Prometheus: a real HTTP server on 127.0.0.1 answering /api/v1/rules with the answer captured from Prometheus 2.42
  (tests/unit/fixtures/prometheus_api_v1_rules_v2.42.json, see SOURCES.md).
* The HAProxy runtime API: FakeHAProxySocket, a unix socket answering like HAProxy's non-interactive mode.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _retire_deps as deps
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import (
    CommandReplay, FakeHAProxySocket, LocalHTTPServer, QuietHandler, read_fixture, send_reply)

FLEET_CFG = '''# Ansible managed
global
    log stdout format raw local0 info
    stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners
    stats socket ipv4@0.0.0.0:9999 level admin
    stats timeout 30s
    user haproxy
    group haproxy

defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout queue 30s

frontend models_in
    bind *:8080
    use_backend %[req.hdr(X-Model-Version),lower,map(/etc/haproxy/model-routes.map,no_route)]
    default_backend no_route

backend models
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2 init-addr last,libc,none
    server gpu-01 gpu-01:8000 check
    server gpu-02 gpu-02:8000 check

backend no_route
    http-request return status 404 content-type text/plain string "no route for this X-Model-Version"
'''

HAPROXY = shutil.which('haproxy') or ('/usr/sbin/haproxy' if os.path.exists('/usr/sbin/haproxy') else None)
SYSTEMCTL = '/usr/bin/systemctl'
BINS = {'haproxy': '/usr/sbin/haproxy', 'systemctl': SYSTEMCTL}
SHOW_ACTIVE = read_fixture('systemctl_show_simple_service_active_running_systemd249plus.txt')
SHOW_INACTIVE = read_fixture('systemctl_show_oneshot_inactive_dead_systemd249plus.txt')
RULES = read_fixture('prometheus_api_v1_rules_v2.42.json')
CAPTURED_RULE_FILE = '/tmp/promcap/rules.yml'
STATE_HEADER = read_fixture('haproxy_show_servers_state_v2.6.12_drain_maint_down.txt').splitlines()[:2]


def state_answer(rows):
    """A C(show servers state <backend>) answer (the 2.6.12 header) listing C(rows): (id, name, addr, port, admin, check_state)."""
    lines = list(STATE_HEADER)
    for srv_id, name, addr, port, admin, check_state in rows:
        lines.append('3 models %d %s %s 2 %d 1 1 4 6 3 4 %d 0 0 0 - %d - 0 0 - - 0' % (srv_id, name, addr, admin, check_state, port))
    return '\n'.join(lines) + '\n\n'


def manager(run_command=None, bins=None, check_mode=False):
    return deps.DependencyManager(run_command or CommandReplay({}), (bins if bins is not None else BINS).get,
                                  check_mode=check_mode)


def item(kind, previous=None, **options):
    spec = deps.item_options()[kind]['options']
    full = dict((name, option.get('default')) for name, option in spec.items())
    full.update(options)
    return {'name': None, 'previous': previous, kind: full}


def run(mgr, state, *items):
    result, failure = mgr.run({'state': state, 'dependencies': list(items)})
    return result, failure


# --------------------------------------------------------------------------------------------- editors

def test_remove_server_takes_the_one_line_and_puts_it_back_exactly():
    text, record = deps.remove_server(FLEET_CFG, 'models', 'gpu-01')
    assert record == {'line': '    server gpu-01 gpu-01:8000 check', 'index': 5}
    assert 'gpu-01:8000' not in text and '    server gpu-02 gpu-02:8000 check' in text
    assert deps.insert_server(text, 'models', 'gpu-01', record['line'], record['index']) == FLEET_CFG


def test_remove_server_without_the_line_changes_nothing_and_the_section_ends_at_the_next_keyword():
    assert deps.remove_server(FLEET_CFG, 'no_route', 'gpu-01') == (FLEET_CFG, None)
    pieces = deps.split_text(FLEET_CFG)
    start, end = deps.backend_section(pieces, 'models')
    assert pieces[start] == 'backend models' and pieces[end] == 'backend no_route'


def test_several_server_lines_or_no_backend_fail():
    doubled = FLEET_CFG.replace('    server gpu-02', '    server gpu-01 other:8000 check\n    server gpu-02')
    with pytest.raises(deps.DependencyError, match='2 "server gpu-01" lines'):
        deps.remove_server(doubled, 'models', 'gpu-01')
    with pytest.raises(deps.DependencyError, match='no "backend nope" section'):
        deps.remove_server(FLEET_CFG, 'nope', 'gpu-01')


def test_put_back_index_is_clamped_to_the_section_and_an_existing_line_is_left():
    text, record = deps.remove_server(FLEET_CFG, 'models', 'gpu-02')
    again = deps.insert_server(text, 'models', 'gpu-02', record['line'], 99)
    assert again == FLEET_CFG  # the end of the section (its blank line stays before the next section)
    assert deps.insert_server(FLEET_CFG, 'models', 'gpu-01', 'server gpu-01 x:1', 1) == FLEET_CFG


def test_map_editor_keeps_comments_blank_lines_and_line_endings():
    text = '# routes\r\nllama3 models\r\n\r\nmistral models2\r\nllama3 models_b  # second\r\nllama30 other'
    new, entries = deps.remove_map_entries(text, 'llama3')
    assert [e['index'] for e in entries] == [1, 4]
    assert new == '# routes\r\n\r\nmistral models2\r\nllama30 other'
    assert deps.insert_map_entries(new, entries) == text


def test_map_of_only_that_key_without_final_newline_comes_back_exactly():
    for text in ('llama3 a', 'llama3 a\n', 'llama3 a\nllama3 b'):
        new, entries = deps.remove_map_entries(text, 'llama3')
        assert new == ''
        assert deps.insert_map_entries(new, entries, text.endswith('\n')) == text


# --------------------------------------------------------------------------------------------- haproxy_server config

def _config(tmp_path, text=FLEET_CFG, mode=0o640):
    path = tmp_path / 'haproxy.cfg'
    path.write_text(text)
    os.chmod(str(path), mode)
    return str(path)


def _listing(sock, servers):
    """Make C(sock) answer C(show servers state) with C(servers()) (a callable giving the names listed)."""
    rows = {'gpu-01': (1, 'gpu-01', '10.0.0.11', 8000, 0, 6), 'gpu-02': (2, 'gpu-02', '10.0.0.12', 8000, 8, 0)}
    sock.answer = lambda: state_answer([rows[name] for name in servers()])


def test_config_absent_validates_writes_keeps_mode_reloads_and_waits(tmp_path, short_dir):
    config = _config(tmp_path)
    listed = ['gpu-01', 'gpu-02']
    commands = CommandReplay({'-c': (0, 'Configuration file is valid\n', ''), 'reload': (0, '', '')})
    original = commands.__call__

    def runner(argv):
        answer = original(argv)
        if argv[1] == 'reload':
            listed.remove('gpu-01')
        elif argv[1] == '-c':
            with open(argv[3]) as handle:
                assert 'gpu-01' not in handle.read()
            assert stat.S_IMODE(os.stat(argv[3]).st_mode) == 0o640
        return answer
    sock = FakeHAProxySocket(os.path.join(short_dir, 'a.sock'))
    try:
        _listing(sock, lambda: listed)
        result, failure = run(manager(runner), 'absent', item(
            'haproxy_server', backend='models', server='gpu-01', config=config,
            haproxy={'socket': sock.path, 'timeout': 2.0}, timeout=5.0))
    finally:
        sock.close()
    assert failure is None
    dep = result['dependencies'][0]
    assert dep['status'] == 'done' and dep['changed'] and result['changed']
    assert dep['previous'] == {'present': True, 'line': '    server gpu-01 gpu-01:8000 check', 'index': 5, 'mode': '0640',
                               'runtime': {'addr': '10.0.0.11', 'port': 8000, 'admin_state': 'ready', 'checks': True}}
    assert dep['new'] == {'present': False}
    assert dep['where'] == 'haproxy_server models/gpu-01 (%s)' % config
    assert [c[1:3] for c in commands.calls] == [['-c', '-f'], ['reload', '--']]
    assert commands.calls[1] == [SYSTEMCTL, 'reload', '--', 'haproxy.service']
    assert 'gpu-01' not in open(config).read()
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o640
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith('.')]


def test_a_reload_does_not_put_back_in_service_a_server_another_run_drained(tmp_path, short_dir):
    # Without a server-state file HAProxy starts every server ready after a reload: gpu-02, drained (admin state 8)
    # before the reload, must be drained again, and that is said.
    config = _config(tmp_path)
    reloaded = []
    commands = CommandReplay({'-c': (0, 'Configuration file is valid\n', ''), 'reload': (0, '', '')})
    original = commands.__call__

    def runner(argv):
        if argv[1] == 'reload':
            reloaded.append(True)
        return original(argv)
    sock = FakeHAProxySocket(os.path.join(short_dir, 'k.sock'))

    def answer():
        if sock.commands[-1].startswith('set server'):
            return '\n'
        if reloaded:
            return state_answer([(2, 'gpu-02', '10.0.0.12', 8000, 0, 0)])  # gpu-01 gone, gpu-02 forgot its drain
        return state_answer([(1, 'gpu-01', '10.0.0.11', 8000, 0, 6), (2, 'gpu-02', '10.0.0.12', 8000, 8, 0)])
    sock.answer = answer
    try:
        result, failure = run(manager(runner), 'absent', item(
            'haproxy_server', backend='models', server='gpu-01', config=config,
            haproxy={'socket': sock.path, 'timeout': 2.0}, timeout=5.0))
    finally:
        sock.close()
    assert failure is None, failure
    assert 'set server models/gpu-02 state drain' in [c.strip() for c in sock.commands]
    assert 'states the reload forgot set again: models/gpu-02 drain' in result['dependencies'][0]['msg']


def test_a_server_the_new_configuration_drops_has_no_state_to_keep(tmp_path, short_dir):
    # gpu-02 was drained, and the edited configuration (another hand's change) no longer lists it: nothing is sent.
    config = _config(tmp_path)
    reloaded = []
    commands = CommandReplay({'-c': (0, 'Configuration file is valid\n', ''), 'reload': (0, '', '')})
    original = commands.__call__

    def runner(argv):
        if argv[1] == 'reload':
            reloaded.append(True)
        return original(argv)
    sock = FakeHAProxySocket(os.path.join(short_dir, 'g.sock'))
    before = [(1, 'gpu-01', '10.0.0.11', 8000, 0, 6), (2, 'gpu-02', '10.0.0.12', 8000, 8, 0)]
    sock.answer = lambda: state_answer([] if reloaded else before)
    try:
        result, failure = run(manager(runner), 'absent', item(
            'haproxy_server', backend='models', server='gpu-01', config=config,
            haproxy={'socket': sock.path, 'timeout': 2.0}, timeout=5.0))
    finally:
        sock.close()
    assert failure is None, failure
    assert not [c for c in sock.commands if c.startswith('set server')]
    assert 'set again' not in result['dependencies'][0]['msg']


def test_config_absent_then_present_gives_the_original_file(tmp_path):
    config = _config(tmp_path)
    commands = CommandReplay({'-c': (0, '', ''), 'reload': (0, '', '')})
    result, _failure = run(manager(commands), 'absent', item('haproxy_server', backend='models', server='gpu-02', config=config))
    previous = result['dependencies'][0]['previous']
    assert 'not checked at run time' in result['dependencies'][0]['msg']
    result, failure = run(manager(commands), 'present', item('haproxy_server', previous, backend='models', server='gpu-02',
                                                             config=config))
    assert failure is None and result['dependencies'][0]['status'] == 'done'
    assert open(config).read() == FLEET_CFG
    result, failure = run(manager(commands), 'present', item('haproxy_server', previous, backend='models', server='gpu-02',
                                                             config=config))
    assert result['dependencies'][0]['status'] == 'unchanged' and not result['changed']


def test_failed_validation_leaves_the_file_untouched_and_says_what_haproxy_said(tmp_path):
    config = _config(tmp_path)
    commands = CommandReplay({'-c': (1, '', "[ALERT] config : parsing [x:30] : unknown keyword 'sever'\n")})
    result, failure = run(manager(commands), 'absent', item('haproxy_server', backend='models', server='gpu-01', config=config))
    assert open(config).read() == FLEET_CFG
    dep = result['dependencies'][0]
    assert dep['status'] == 'failed' and not dep['changed']
    assert "unknown keyword 'sever'" in dep['msg'] and 'left untouched' in dep['msg']
    assert 'haproxy -c -f %s' % config in failure
    assert result['failed_items'] == 1
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith('.')]


def test_check_mode_only_reads(tmp_path):
    config = _config(tmp_path)
    commands = CommandReplay({})
    result, failure = run(manager(commands, check_mode=True), 'absent',
                          item('haproxy_server', backend='models', server='gpu-01', config=config))
    assert failure is None and result['changed'] and commands.calls == []
    assert result['dependencies'][0]['new'] == {'present': False}
    assert open(config).read() == FLEET_CFG


@pytest.mark.skipif(HAPROXY is None, reason='haproxy is not installed')
def test_real_haproxy_validates_the_edited_fleet_configuration(tmp_path):
    # The fleet's socket folder may not exist here: point the stats sockets into the test folder.
    text = FLEET_CFG.replace('/run/haproxy/admin.sock', str(tmp_path / 'admin.sock')).replace(
        'ipv4@0.0.0.0:9999', str(tmp_path / 'x.sock')).replace('    user haproxy\n    group haproxy\n', '').replace(
        '/etc/haproxy/model-routes.map', str(tmp_path / 'model-routes.map'))
    (tmp_path / 'model-routes.map').write_text('llama3 models\n')
    config = _config(tmp_path, text)

    def real(argv):
        if argv[1] == '-c':
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
            return proc.returncode, proc.stdout, proc.stderr
        return 0, '', ''
    result, failure = run(manager(real, {'haproxy': HAPROXY, 'systemctl': SYSTEMCTL}), 'absent',
                          item('haproxy_server', backend='models', server='gpu-01', config=config))
    assert failure is None, failure
    result, failure = run(manager(real, {'haproxy': HAPROXY, 'systemctl': SYSTEMCTL}), 'present',
                          item('haproxy_server', result['dependencies'][0]['previous'], backend='models', server='gpu-01',
                               config=config))
    assert failure is None and open(config).read() == text
    # A broken line is refused by the real haproxy, and the file stays as it was.
    broken = text.replace('    server gpu-02 gpu-02:8000 check', '    server gpu-02 gpu-02:8000 chekc')
    config = _config(tmp_path, broken)
    result, failure = run(manager(real, {'haproxy': HAPROXY, 'systemctl': SYSTEMCTL}), 'absent',
                          item('haproxy_server', backend='models', server='gpu-01', config=config))
    assert result['dependencies'][0]['status'] == 'failed' and 'chekc' in failure
    assert open(config).read() == broken


# --------------------------------------------------------------------------------------------- haproxy_server runtime

def test_runtime_absent_and_present_send_the_runtime_commands(short_dir):
    listed = ['gpu-01']
    sock = FakeHAProxySocket(os.path.join(short_dir, 'r.sock'))

    def answer():
        command = sock.commands[-1].strip()
        if command.startswith('show servers state'):
            rows = [(1, 'gpu-01', '10.0.0.11', 8000, 0, 6)] if listed else []
            return state_answer(rows)
        if command.startswith('del server'):
            listed.remove('gpu-01')
            return 'Server deleted.\n\n'
        if command.startswith('add server'):
            listed.append('gpu-01')
            return 'New server registered.\n\n'
        if command.startswith('enable'):
            return '\n'
        return '\n'
    sock.answer = answer
    spec = dict(backend='models', server='gpu-01', method='runtime', haproxy={'socket': sock.path, 'timeout': 2.0}, timeout=3.0)
    try:
        result, failure = run(manager(), 'absent', item('haproxy_server', **spec))
        assert failure is None
        previous = result['dependencies'][0]['previous']
        assert previous == {'present': True, 'addr': '10.0.0.11', 'port': 8000, 'admin_state': 'ready', 'checks': True}
        sent = [c.strip() for c in sock.commands]
        assert sent[1:3] == ['set server models/gpu-01 state maint', 'del server models/gpu-01']
        del sock.commands[:]
        result, failure = run(manager(), 'present', item('haproxy_server', previous, **spec))
        assert failure is None and result['dependencies'][0]['status'] == 'done'
        sent = [c.strip() for c in sock.commands]
        assert sent[1:4] == ['add server models/gpu-01 10.0.0.11:8000 check', 'enable server models/gpu-01',
                             'enable health models/gpu-01']
        result, failure = run(manager(), 'present', item('haproxy_server', previous, **spec))
        assert result['dependencies'][0]['status'] == 'unchanged'
    finally:
        sock.close()


def test_runtime_refusal_fails_the_item_with_haproxy_words(short_dir):
    sock = FakeHAProxySocket(os.path.join(short_dir, 'q.sock'))
    sock.answer = lambda: (state_answer([(1, 'gpu-01', '10.0.0.11', 8000, 1, 6)])
                           if sock.commands[-1].startswith('show') else
                           'Server still has connections attached to it, cannot remove it.\n\n'
                           if sock.commands[-1].startswith('del') else '\n')
    try:
        result, failure = run(manager(), 'absent', item('haproxy_server', backend='models', server='gpu-01', method='runtime',
                                                        haproxy={'socket': sock.path, 'timeout': 2.0}))
    finally:
        sock.close()
    dep = result['dependencies'][0]
    assert dep['status'] == 'failed' and 'still has connections' in dep['msg']
    assert dep['changed'] and dep['previous']['present']  # it was set to maint before the refusal: recorded
    assert 'show servers state models' in failure


# --------------------------------------------------------------------------------------------- haproxy_map

def test_map_absent_present_with_the_running_map(tmp_path, short_dir):
    path = tmp_path / 'model-routes.map'
    text = '# X-Model-Version -> backend\nllama3 models\nmistral models\n'
    path.write_text(text)
    os.chmod(str(path), 0o600)
    running = {'llama3': 'models', 'mistral': 'models'}
    sock = FakeHAProxySocket(os.path.join(short_dir, 'm.sock'))

    def answer():
        words = sock.commands[-1].split()
        if words[:2] == ['show', 'map']:
            return ''.join('0x55d%d %s %s\n' % (i, k, v) for i, (k, v) in enumerate(sorted(running.items()))) + '\n'
        if words[:2] == ['del', 'map']:
            running.pop(words[3], None)
        if words[:2] == ['add', 'map']:
            running[words[3]] = words[4]
        return '\n'
    sock.answer = answer
    spec = dict(path=str(path), key='llama3', haproxy={'socket': sock.path, 'timeout': 2.0})
    try:
        result, failure = run(manager(), 'absent', item('haproxy_map', **spec))
        assert failure is None
        previous = result['dependencies'][0]['previous']
        assert previous['entries'] == [{'index': 1, 'line': 'llama3 models'}] and previous['mode'] == '0600'
        assert previous['runtime'] == ['models'] and 'llama3' not in running
        assert path.read_text() == '# X-Model-Version -> backend\nmistral models\n'
        result, failure = run(manager(), 'present', item('haproxy_map', previous, **spec))
        assert failure is None and path.read_text() == text and running['llama3'] == 'models'
        assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
        assert 'add map %s llama3 models' % path in [c.strip() for c in sock.commands]
        other = dict(spec)
        other['key'] = 'nope'
        result, _failure = run(manager(), 'absent', item('haproxy_map', previous, **other))
        assert result['dependencies'][0]['status'] == 'unchanged'
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------- systemd

def systemd(enabled, show, **more):
    answers = {'show': (0, show, ''), 'is-enabled': (0 if enabled in ('enabled', 'static') else 1, enabled + '\n', ''),
               'stop': (0, '', ''), 'disable': (0, '', 'Removed "/etc/systemd/system/timers.target.wants/x.timer".\n'),
               'enable': (0, '', ''), 'start': (0, '', ''), 'unmask': (0, '', ''), 'daemon-reload': (0, '', '')}
    answers.update(more)
    return CommandReplay(answers)


def test_timer_absent_stops_and_disables_and_present_puts_back_only_what_was():
    commands = systemd('enabled', SHOW_ACTIVE)
    result, failure = run(manager(commands), 'absent', item('systemd_timer', unit='embed-reindex.timer'))
    assert failure is None
    dep = result['dependencies'][0]
    assert dep['previous'] == {'enabled': 'enabled', 'active': 'active'}
    assert dep['new'] == {'enabled': 'disabled', 'active': 'inactive'}
    assert [c[1] for c in commands.calls] == ['show', 'is-enabled', 'stop', 'disable']
    assert commands.calls[2] == [SYSTEMCTL, 'stop', '--', 'embed-reindex.timer']
    commands = systemd('disabled', SHOW_INACTIVE)
    result, failure = run(manager(commands), 'present', item('systemd_timer', dep['previous'], unit='embed-reindex.timer'))
    assert failure is None and [c[1] for c in commands.calls] == ['show', 'is-enabled', 'enable', 'start']
    commands = systemd('disabled', SHOW_INACTIVE)
    result, failure = run(manager(commands), 'present', item('systemd_timer', {'enabled': 'static', 'active': 'inactive'},
                                                             unit='embed-reindex.timer'))
    assert result['dependencies'][0]['status'] == 'unchanged' and [c[1] for c in commands.calls] == ['show', 'is-enabled']


def test_timer_already_gone_is_unchanged_and_check_mode_only_reads():
    commands = systemd('disabled', SHOW_INACTIVE)
    result, _failure = run(manager(commands), 'absent', item('systemd_timer', unit='x.timer'))
    assert result['dependencies'][0]['status'] == 'unchanged'
    commands = systemd('enabled', SHOW_ACTIVE)
    result, _failure = run(manager(commands, check_mode=True), 'absent', item('systemd_timer', unit='x.timer'))
    assert result['changed'] and [c[1] for c in commands.calls] == ['show', 'is-enabled']


def test_is_enabled_printing_nothing_fails_the_item():
    commands = systemd('', SHOW_ACTIVE, **{'is-enabled': (1, '', 'Failed to get unit file state: Access denied\n')})
    result, failure = run(manager(commands), 'absent', item('systemd_timer', unit='x.timer'))
    assert result['dependencies'][0]['status'] == 'failed' and 'Access denied' in failure and 'systemctl status x.timer' in failure


def test_unit_final_removes_dropins_and_files_records_them_and_reloads_once(tmp_path, monkeypatch):
    etc, runtime = tmp_path / 'etc', tmp_path / 'run'
    (etc / 'embed-reindex.timer.d').mkdir(parents=True)
    (etc / 'embed-reindex.timer.d' / 'override.conf').write_text('[Timer]\nOnCalendar=hourly\n')
    runtime.mkdir()
    unit_file = tmp_path / 'embed-reindex.timer'
    unit_file.write_text('[Timer]\nOnCalendar=daily\n')
    monkeypatch.setattr(deps, 'DROPIN_DIRS', (str(etc), str(runtime)))
    commands = systemd('masked', SHOW_INACTIVE)
    spec = dict(unit='embed-reindex.timer', files=[str(unit_file), str(tmp_path / 'gone.service')])
    result, failure = run(manager(commands), 'final', item('systemd_unit', {'stage': 'absent'}, **spec))
    assert failure is None
    previous = result['dependencies'][0]['previous']
    assert previous['stage'] == 'final' and previous['masked'] and previous['enabled'] == 'masked'
    assert {'path': str(etc / 'embed-reindex.timer.d' / 'override.conf'), 'content': '[Timer]\nOnCalendar=hourly\n',
            'mode': previous['dropins'][1]['mode'], 'truncated': False} in previous['dropins']
    assert previous['files'][0]['content'] == '[Timer]\nOnCalendar=daily\n' and len(previous['files']) == 1
    assert not (etc / 'embed-reindex.timer.d').exists() and not unit_file.exists()
    assert [c[1] for c in commands.calls] == ['show', 'is-enabled', 'unmask', 'daemon-reload']
    commands = systemd('disabled', SHOW_INACTIVE)
    result, _failure = run(manager(commands), 'final', item('systemd_unit', {'stage': 'absent'}, **spec))
    assert result['dependencies'][0]['status'] == 'unchanged'
    result, failure = run(manager(systemd('disabled', SHOW_INACTIVE)), 'present', item('systemd_unit', previous, **spec))
    assert result['dependencies'][0]['status'] == 'failed' and 'not supported' in failure


# --------------------------------------------------------------------------------------------- prometheus_rules

class Prometheus(LocalHTTPServer):
    """/api/v1/rules answering the captured Prometheus 2.42 body, with the groups of C(rule_file) while C(loaded)."""

    def __init__(self, rule_file, loaded=True, reload_loads=None):
        self.loaded = loaded
        self.requests = []
        body = json.loads(RULES)
        self.mine = [g for g in body['data']['groups'] if g['file'] == CAPTURED_RULE_FILE]
        for group in self.mine:
            group['file'] = rule_file
        self.others = [g for g in body['data']['groups'] if g['file'] != rule_file]
        owner = self

        class Handler(QuietHandler):
            def do_GET(self):
                owner.requests.append(('GET', self.path))
                groups = owner.others + (owner.mine if owner.loaded else [])
                send_reply(self, 200, json.dumps({'status': 'success', 'data': {'groups': groups}}).encode(), 'application/json')

            def do_POST(self):
                owner.requests.append(('POST', self.path))
                owner.loaded = os.path.exists(rule_file) if reload_loads is None else reload_loads
                send_reply(self, 200, b'', 'text/plain')
        super(Prometheus, self).__init__(Handler)
        self.url = 'http://127.0.0.1:%d' % self.httpd.server_address[1]


def test_prometheus_absent_and_present_reload_and_wait_for_the_groups(tmp_path):
    rule_file = tmp_path / 'model-llama3.yml'
    content = read_fixture('prometheus_api_v1_rules_v2.42.json')[:0] + 'groups:\n  - name: model-llama3\n'
    rule_file.write_text(content)
    os.chmod(str(rule_file), 0o640)
    with Prometheus(str(rule_file)) as prom:
        spec = dict(path=str(rule_file), url=prom.url, reload='http', timeout=5.0)
        result, failure = run(manager(), 'absent', item('prometheus_rules', **spec))
        assert failure is None, failure
        previous = result['dependencies'][0]['previous']
        assert previous == {'present': True, 'content': content, 'mode': '0640', 'groups': ['model-llama3', 'model-llama3-slo']}
        assert not rule_file.exists() and ('POST', '/-/reload') in prom.requests
        result, failure = run(manager(), 'present', item('prometheus_rules', previous, **spec))
        assert failure is None and rule_file.read_text() == content
        assert stat.S_IMODE(os.stat(str(rule_file)).st_mode) == 0o640
        result, failure = run(manager(), 'present', item('prometheus_rules', previous, **spec))
        assert result['dependencies'][0]['status'] == 'unchanged'


def test_prometheus_still_loaded_after_the_deadline_fails_with_what_is_loaded(tmp_path):
    rule_file = tmp_path / 'r.yml'
    rule_file.write_text('groups: []\n')
    with Prometheus(str(rule_file), reload_loads=True) as prom:
        result, failure = run(manager(CommandReplay({'reload': (0, '', '')})), 'absent', item(
            'prometheus_rules', path=str(rule_file), url=prom.url, timeout=0.6))
    dep = result['dependencies'][0]
    assert dep['status'] == 'failed' and dep['changed'] and dep['previous']['content'] == 'groups: []\n'
    assert 'model-llama3, model-llama3-slo' in dep['msg'] and 'curl -s %s/api/v1/rules' % prom.url in failure


# --------------------------------------------------------------------------------------------- http_hook

class Hook(LocalHTTPServer):
    def __init__(self, status=202):
        self.received = []
        owner = self

        class Handler(QuietHandler):
            def _handle(self):
                length = int(self.headers.get('Content-Length') or 0)
                owner.received.append((self.command, self.path, self.headers.get('Authorization'),
                                       self.rfile.read(length).decode()))
                send_reply(self, status, json.dumps({'ok': True, 'echo': self.headers.get('Authorization')}).encode(),
                           'application/json')
            do_POST = do_PUT = do_DELETE = _handle
        super(Hook, self).__init__(Handler)
        self.url = 'http://127.0.0.1:%d' % self.httpd.server_address[1]


def test_hook_sends_masks_secrets_and_undo_is_sent_at_present():
    with Hook() as hook:
        spec = dict(url=hook.url + '/v1/retire', body={'model': 'llama3', 'key': 's3cr3t-t0ken'}, token='s3cr3t-t0ken',
                    undo={'url': hook.url + '/v1/restore', 'method': 'PUT', 'body': None, 'headers': None})
        result, failure = run(manager(), 'absent', item('http_hook', **spec))
        assert failure is None
        assert hook.received[0][:3] == ('POST', '/v1/retire', 'Bearer s3cr3t-t0ken')
        assert 's3cr3t-t0ken' not in json.dumps(result)
        dep = result['dependencies'][0]
        assert dep['previous']['request']['body']['model'] == 'llama3' and dep['previous']['response']['status'] == 202
        result, failure = run(manager(), 'present', item('http_hook', dep['previous'], **spec))
        assert failure is None and hook.received[1][:2] == ('PUT', '/v1/restore')
        result, _failure = run(manager(), 'final', item('http_hook', dep['previous'], **spec))
        assert result['dependencies'][0]['status'] == 'unchanged' and result['dependencies'][0]['msg'] == 'no final request declared'
        assert len(hook.received) == 2


def test_hook_unexpected_status_fails_and_check_mode_sends_nothing():
    with Hook(status=500) as hook:
        result, failure = run(manager(), 'absent', item('http_hook', url=hook.url + '/x', token='tok-123456'))
        assert result['dependencies'][0]['status'] == 'failed' and 'HTTP 500' in failure and 'tok-123456' not in failure
        result, failure = run(manager(check_mode=True), 'absent', item('http_hook', url=hook.url + '/x'))
        assert failure is None and result['changed'] and len(hook.received) == 1


# --------------------------------------------------------------------------------------------- manager

def test_items_are_independent_and_the_summary_names_the_failure(tmp_path):
    commands = systemd('enabled', SHOW_ACTIVE)
    result, failure = run(manager(commands), 'absent',
                          item('haproxy_server', backend='models', server='gpu-01', config=str(tmp_path / 'none.cfg')),
                          item('systemd_timer', unit='x.timer'))
    assert [d['status'] for d in result['dependencies']] == ['failed', 'done']
    assert result['failed_items'] == 1 and result['changed']
    assert 'dependencies[0] haproxy_server models/gpu-01' in failure and 'does not exist' in failure
    assert all(isinstance(d['seconds'], float) for d in result['dependencies'])
    assert set(deps.diff(result)['before']) == set(d['where'] for d in result['dependencies'])


def test_previous_of_the_wrong_shape_fails_clearly_and_a_whole_result_item_is_accepted(tmp_path):
    config = _config(tmp_path)
    result, failure = run(manager(), 'present', item('haproxy_server', 'yes', backend='models', server='gpu-01', config=config))
    assert 'expected a dict with present' in failure
    whole = {'kind': 'haproxy_server', 'status': 'done', 'previous': {'present': False}}
    result, failure = run(manager(), 'present', item('haproxy_server', whole, backend='models', server='gpu-01', config=config))
    assert failure is None and result['dependencies'][0]['status'] == 'skipped'


def test_check_params_refuses_what_the_spec_cannot():
    params = {'state': 'present', 'dependencies': [
        item('haproxy_server', backend='a;b', server='m1', timeout=0.0),
        item('haproxy_map', path='relative.map', key='two words'),
        item('http_hook', url='ftp://x', expect_status=[99]),
        item('systemd_unit', unit='a/b.service', files=['x']),
    ]}
    problems = '\n'.join(deps.check_params(params))
    for words in ('previous is required', 'a;b', 'timeout must be more than 0', 'absolute path', 'one map key',
                  'scheme must be http', 'not an HTTP status', "'/'", "'x' is not an absolute path"):
        assert words in problems, words
