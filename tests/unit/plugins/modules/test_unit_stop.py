# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _systemd
from ansible_collections.modelops.shutdown.plugins.modules import unit_stop
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import read_fixture, with_props

SYSTEMCTL = '/usr/bin/systemctl'


# Real captures. States a stop leaves behind are these captures with the properties that systemd
# changes replaced (systemd is not PID 1 on the dev machine; molecule runs the real thing).
RUNNING = read_fixture('systemctl_show_apache2_active_running_ubuntu20.04_systemd245.txt')
ONESHOT_DONE = read_fixture('systemctl_show_oneshot_inactive_dead_systemd249plus.txt')
REDIS_FAILED = read_fixture('systemctl_show_redis_failed_after_kill_centos7_systemd219.txt')

AFTER = {
    'clean': dict(ActiveState='inactive', SubState='dead', Result='success', ExecMainCode='2', ExecMainStatus='15',
                  MainPID='0', ControlGroup=None),
    'timeout': dict(ActiveState='failed', SubState='failed', Result='timeout', ExecMainCode='2', ExecMainStatus='9',
                    MainPID='0', ControlGroup=None),
    'exit': dict(ActiveState='failed', SubState='failed', Result='exit-code', ExecMainCode='1', ExecMainStatus='1',
                 MainPID='0', ControlGroup=None),
    'segv': dict(ActiveState='failed', SubState='failed', Result='core-dump', ExecMainCode='3', ExecMainStatus='11',
                 MainPID='0', ControlGroup=None),
    'still': dict(),
}


def named(text, unit):
    return with_props(text, Id=unit, Names=unit)


def verb_units(fake):
    """C((verb, unit)) of each systemctl call C(fake) received (the unit is the last argument, after C(--))."""
    return [(c[0], c[-1] if c[0] != 'daemon-reload' else None) for c in fake.calls]


class FakeSystemd(object):
    """Replays systemctl: C(show) prints the unit's current text; C(stop) moves it to its after-text.

    C(daemon-reload) applies a stop-timeout drop-in found under C(runtime_dir) to C(TimeoutStopUSec),
    as systemd does, unless C(dropin_loses) (another drop-in wins).
    """

    def __init__(self, units, runtime_dir=None, dropin_loses=False, fail=None):
        self.units = dict((u, {'text': named(before, u), 'after': after}) for u, (before, after) in units.items())
        self.calls = []
        self.runtime_dir = runtime_dir
        self.dropin_loses = dropin_loses
        self.fail = fail or {}
        self.dropin_seen = {}

    def props(self, unit):
        return _systemd.parse_show_one(self.units[unit]['text'])

    def set(self, unit, **changes):
        self.units[unit]['text'] = with_props(self.units[unit]['text'], **changes)

    def __call__(self, argv, *args, **kwargs):
        assert isinstance(argv, list) and argv[0] == SYSTEMCTL
        self.calls.append(argv[1:])
        verb = argv[1]
        if verb != 'daemon-reload':
            # Every unit name comes last, after '--', so none can be read as an option.
            assert argv[-2] == '--' and argv.count('--') == 1, 'unit name not alone after --: %r' % (argv,)
        unit = argv[-1]
        if verb in self.fail:
            return self.fail[verb]
        if verb == 'show':
            if unit not in self.units:
                return 0, 'Id=%s\nNames=%s\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\n' \
                          'UnitFileState=\nExecMainCode=0\nExecMainStatus=0\nExecMainPID=0\nTimeoutStopUSec=1min 30s\n' % (unit, unit), ''
            return 0, self.units[unit]['text'], ''
        if verb == 'stop':
            if self.runtime_dir:
                path = _systemd.dropin_path(unit, self.runtime_dir)
                self.dropin_seen[unit] = os.path.exists(path) and stat.S_IMODE(os.stat(path).st_mode)
            after = self.units[unit]['after']
            if after is not None:
                self.set(unit, **after)
            return 0, '', ''
        if verb == 'daemon-reload':
            for name in self.units:
                path = _systemd.dropin_path(name, self.runtime_dir) if self.runtime_dir else None
                if path and os.path.exists(path) and not self.dropin_loses:
                    with open(path) as handle:
                        value = [l.split('=', 1)[1] for l in handle.read().splitlines() if l.startswith('TimeoutStopSec=')][0]
                    self.units[name].setdefault('orig_timeout', self.props(name)['TimeoutStopUSec'])
                    self.set(name, TimeoutStopUSec=value)
                elif 'orig_timeout' in self.units[name]:
                    self.set(name, TimeoutStopUSec=self.units[name].pop('orig_timeout'))
            return 0, '', ''
        if verb == 'disable':
            self.set(unit, UnitFileState='disabled')
            return 0, 'Removed /etc/systemd/system/multi-user.target.wants/%s.\n' % unit, ''
        if verb == 'mask':
            runtime = '--runtime' in argv
            self.set(unit, UnitFileState='masked-runtime' if runtime else 'masked', LoadState='masked')
            return 0, 'Created symlink /etc/systemd/system/%s -> /dev/null.\n' % unit, ''
        raise AssertionError('unexpected systemctl call %r' % argv)


@pytest.fixture
def run(run_module):
    """Run unit_stop.main() against C(fake), a FakeSystemd; return C((failed, result))."""
    def runner(fake, args, check_mode=False, diff=False):
        result = run_module(unit_stop, args, check_mode=check_mode, diff=diff, run_command=fake,
                            bin_paths={'systemctl': SYSTEMCTL})
        return result['failed'], result
    return runner


LLAMA = 'model-server@llama.service'
MISTRAL = 'model-server@mistral.service'


def test_clean_stop_is_classified_after_the_stop(run):
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    failed, result = run(fake, {'units': ['model-server@llama']})
    assert not failed and result['changed']
    rec = result['units'][0]
    assert rec['unit'] == LLAMA and rec['was_active'] and rec['stopped']
    assert rec['classification'] == 'clean' and rec['result'] == 'success'
    assert (rec['exec_main_code'], rec['exec_main_status'], rec['exec_main_pid']) == (2, 15, 679)
    assert rec['exit'] == 'killed by SIGTERM'
    assert (rec['active_state'], rec['sub_state']) == ('inactive', 'dead')
    assert rec['timeout_stop_sec'] == 90.0 and rec['stop_seconds'] is not None and rec['stop_seconds'] >= 0
    assert rec['disabled'] is False and rec['masked'] is False and rec['error'] is None
    assert verb_units(fake) == [('show', LLAMA), ('stop', LLAMA), ('show', LLAMA)]
    assert 'stopped in' in result['msg'] and 'clean' in result['msg']
    assert result['failed_units'] == []


def test_timeout_fails_and_still_returns_every_record(run):
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['timeout']), MISTRAL: (RUNNING, AFTER['clean'])})
    failed, result = run(fake, {'units': [LLAMA, MISTRAL]})
    assert failed and result['changed']
    assert [r['unit'] for r in result['units']] == [LLAMA, MISTRAL]
    assert [r['classification'] for r in result['units']] == ['timeout_killed', 'clean']
    assert result['units'][0]['exit'] == 'killed by SIGKILL'
    assert result['failed_units'] == [LLAMA]
    assert LLAMA in result['msg'] and 'SIGKILL' in result['msg'] and 'What to do' in result['msg']
    # units stopped in the order given, the second even though the first failed
    stops = [c[-1] for c in fake.calls if c[0] == 'stop']
    assert stops == [LLAMA, MISTRAL]


@pytest.mark.parametrize('after,cls,words', [
    ('exit', 'failed', ['Result=exit-code', 'exited with status 1', 'journalctl -u ' + LLAMA]),
    ('segv', 'signal', ['Result=core-dump', 'dumped core on SIGSEGV', 'coredumpctl']),
])
def test_failure_classes(run, after, cls, words):
    failed, result = run(FakeSystemd({LLAMA: (RUNNING, AFTER[after])}), {'units': [LLAMA]})
    assert failed and result['units'][0]['classification'] == cls
    for word in words:
        assert word in result['msg']


def test_fail_on_empty_only_records(run):
    failed, result = run(FakeSystemd({LLAMA: (RUNNING, AFTER['timeout'])}),
                         {'units': [LLAMA], 'fail_on': []})
    assert not failed and result['units'][0]['classification'] == 'timeout_killed'


def test_still_running_after_stop_always_fails(run):
    failed, result = run(FakeSystemd({LLAMA: (RUNNING, AFTER['still'])}),
                         {'units': [LLAMA], 'fail_on': []})
    assert failed and result['units'][0]['classification'] == 'running'
    assert 'still active after systemctl stop' in result['msg']


def test_inactive_unit_not_stopped_but_classified_from_last_result(run):
    fake = FakeSystemd({'redis.service': (REDIS_FAILED, None), 'sync.service': (ONESHOT_DONE, None)})
    failed, result = run(fake, {'units': ['redis', 'sync']})
    assert failed and not result['changed']
    assert [(r['stopped'], r['was_active'], r['classification']) for r in result['units']] == [
        (False, False, 'failed'), (False, False, 'clean')]
    assert result['units'][0]['stop_seconds'] is None
    assert not [c for c in fake.calls if c[0] != 'show']
    failed, result = run(fake, {'units': ['sync']})
    assert not failed and not result['changed'] and 'already inactive' in result['msg']


def test_not_found(run):
    fake = FakeSystemd({})
    failed, result = run(fake, {'units': ['model-server@typo'], 'disable': True, 'mask': True})
    assert not failed and not result['changed']
    assert result['units'][0]['classification'] == 'not_found'
    assert [c[0] for c in fake.calls] == ['show']
    failed, result = run(fake, {'units': ['model-server@typo'], 'fail_on': ['not_found']})
    assert failed and 'not loaded' in result['msg'] and 'name@instance.service' in result['msg']


def test_disable_and_mask_then_idempotent(run):
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    failed, result = run(fake, {'units': [LLAMA], 'disable': True, 'mask': True}, diff=True)
    assert not failed and result['changed']
    rec = result['units'][0]
    assert rec['disabled'] and rec['masked'] and rec['unit_file_state'] == 'masked'
    assert [c for c in fake.calls if c[0] in ('disable', 'mask')] == [['disable', '--', LLAMA], ['mask', '--', LLAMA]]
    assert result['diff']['before'][LLAMA] == {'active_state': 'active', 'unit_file_state': 'enabled', 'masked': False}
    assert result['diff']['after'][LLAMA] == {'active_state': 'inactive', 'unit_file_state': 'masked', 'masked': True}
    fake.calls = []
    failed, result = run(fake, {'units': [LLAMA], 'disable': True, 'mask': True})
    assert not failed and not result['changed']
    assert [c[0] for c in fake.calls] == ['show']
    assert result['units'][0]['disabled'] is False and result['units'][0]['masked'] is False


def test_runtime_enable_and_runtime_mask(run):
    fake = FakeSystemd({LLAMA: (with_props(RUNNING, UnitFileState='enabled-runtime'), AFTER['clean'])})
    failed, result = run(fake, {'units': [LLAMA], 'disable': True, 'mask': True, 'mask_runtime': True})
    assert not failed
    changes = [c for c in fake.calls if c[0] in ('disable', 'mask')]
    assert changes == [['disable', '--runtime', '--', LLAMA], ['mask', '--runtime', '--', LLAMA]]
    assert result['units'][0]['unit_file_state'] == 'masked-runtime'


def test_static_unit_is_not_disabled(run):
    fake = FakeSystemd({LLAMA: (with_props(RUNNING, UnitFileState='static'), AFTER['clean'])})
    failed, result = run(fake, {'units': [LLAMA], 'disable': True})
    assert not failed and not result['units'][0]['disabled']
    assert not [c for c in fake.calls if c[0] == 'disable']


def test_check_mode_changes_nothing_and_predicts(run):
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['timeout']), 'redis.service': (REDIS_FAILED, None)})
    failed, result = run(fake, {'units': [LLAMA, 'redis.service'], 'disable': True, 'mask': True,
                                'fail_on': ['timeout_killed']}, check_mode=True, diff=True)
    assert not failed and result['changed']
    assert [c[0] for c in fake.calls] == ['show', 'show']
    rec = result['units'][0]
    assert rec['stopped'] and rec['disabled'] and rec['masked'] and rec['classification'] == 'running'
    assert rec['stop_seconds'] is None
    assert result['units'][1]['stopped'] is False and result['units'][1]['disabled'] is False
    assert result['units'][1]['masked'] is True
    assert result['diff']['after'][LLAMA] == {'active_state': 'inactive', 'unit_file_state': 'masked', 'masked': True}
    assert 'would be stopped' in result['msg']


def test_timeout_override_dropin_lifecycle(monkeypatch, run, tmp_path):
    runtime = str(tmp_path / 'run')
    monkeypatch.setattr(_systemd, 'RUNTIME_UNIT_DIR', runtime)
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}, runtime_dir=runtime)
    failed, result = run(fake, {'units': [LLAMA], 'timeout_stop_sec': 120})
    assert not failed
    assert fake.dropin_seen[LLAMA] == 0o644
    assert result['units'][0]['timeout_stop_sec'] == 120.0
    assert [c[0] for c in fake.calls] == ['show', 'daemon-reload', 'show', 'stop', 'daemon-reload', 'show']
    assert not os.path.exists(_systemd.dropin_path(LLAMA, runtime))
    assert fake.props(LLAMA)['TimeoutStopUSec'] == '1min 30s'


def test_timeout_override_that_does_not_win_stops_nothing(monkeypatch, run, tmp_path):
    runtime = str(tmp_path / 'run')
    monkeypatch.setattr(_systemd, 'RUNTIME_UNIT_DIR', runtime)
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}, runtime_dir=runtime, dropin_loses=True)
    failed, result = run(fake, {'units': [LLAMA], 'timeout_stop_sec': 5})
    assert failed
    assert 'did not take effect' in result['msg'] and 'was not stopped' in result['msg']
    assert not [c for c in fake.calls if c[0] == 'stop']
    assert result['units'][0]['stopped'] is False and result['units'][0]['classification'] == 'running'
    assert not os.path.exists(_systemd.dropin_path(LLAMA, runtime))


def test_timeout_override_dropin_not_writable(monkeypatch, run, tmp_path):
    blocker = tmp_path / 'run'
    blocker.write_text('a file where a directory should be')
    monkeypatch.setattr(_systemd, 'RUNTIME_UNIT_DIR', str(blocker))
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    failed, result = run(fake, {'units': [LLAMA], 'timeout_stop_sec': 5})
    assert failed and 'Could not write the stop-timeout drop-in' in result['msg'] and 'become: true' in result['msg']
    assert not [c for c in fake.calls if c[0] == 'stop']


def test_systemctl_stop_error_is_reported_with_state_after(run):
    fake = FakeSystemd({LLAMA: (RUNNING, None)}, fail={'stop': (1, '', 'Failed to stop %s: Access denied\n' % LLAMA)})
    failed, result = run(fake, {'units': [LLAMA]})
    assert failed and 'Access denied' in result['msg'] and 'rc 1' in result['msg']
    rec = result['units'][0]
    assert rec['stopped'] and rec['error'] and rec['classification'] == 'running'
    assert [c[0] for c in fake.calls] == ['show', 'stop', 'show']


def test_show_error_is_reported_per_unit(run):
    fake = FakeSystemd({LLAMA: (RUNNING, None)}, fail={'show': (1, '', 'Failed to connect to bus: No such file or directory\n')})
    failed, result = run(fake, {'units': [LLAMA]})
    assert failed and 'Failed to connect to bus' in result['msg']
    assert result['units'][0]['unit'] == LLAMA and result['units'][0]['error']


@pytest.mark.parametrize('args,words', [
    ({'units': [LLAMA], 'timeout_stop_sec': 0}, 'more than 0'),
    ({'units': ['vllm.socket'], 'timeout_stop_sec': 5}, '.service units only'),
    ({'units': ['  ']}, 'units is empty'),
    ({'units': [LLAMA], 'fail_on': ['explode']}, 'fail_on'),
])
def test_argument_errors(run, args, words):
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    failed, result = run(fake, args)
    assert failed and words in result['msg']
    assert not [c for c in fake.calls if c[0] == 'stop']


# --- bad input from the sweep: never a traceback, never an option for systemctl ---------------------

@pytest.mark.parametrize('value,words', [
    ('nan', 'timeout_stop_sec must be a finite number of seconds, got nan'),
    ('inf', 'timeout_stop_sec must be a finite number of seconds, got inf'),
    ('-inf', 'timeout_stop_sec must be a finite number of seconds, got -inf'),
    (float('nan'), 'timeout_stop_sec must be a finite number of seconds, got nan'),
    (0.0004, 'timeout_stop_sec must be at least 0.001 seconds (systemd reads a shorter one as 0, which means no timeout), '
             'got 0.0004'),
])
def test_non_finite_or_tiny_timeout_on_an_active_unit_is_refused(run, monkeypatch, tmp_path, value, words):
    monkeypatch.setattr(_systemd, 'RUNTIME_UNIT_DIR', str(tmp_path / 'run'))
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    failed, result = run(fake, {'units': [LLAMA], 'timeout_stop_sec': value})
    assert failed and result['msg'] == words
    assert fake.calls == [] and not (tmp_path / 'run').exists()


@pytest.mark.parametrize('name,words', [
    ('model\x00server', "units[0] ('model\\x00server') contains a NUL byte, which no systemd unit name contains"),
    ('model\nserver', "units[0] ('model\\nserver') contains the control character '\\n'"),
    ('../../etc/x', "units[0] ('../../etc/x') contains '/'"),
])
def test_unit_names_no_unit_can_have_are_refused(run, name, words):
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    failed, result = run(fake, {'units': [name]})
    assert failed and result['msg'].startswith(words) and fake.calls == []


@pytest.mark.parametrize('check_mode', [False, True])
@pytest.mark.parametrize('name', ['--now', '-.mount', '--no-block'])
def test_unit_names_starting_with_dash_go_after_double_dash(run, name, check_mode):
    unit = _systemd.normalize_unit_name(name)
    fake = FakeSystemd({unit: (RUNNING, AFTER['clean'])})  # FakeSystemd asserts the '--' on every call
    failed, result = run(fake, {'units': [name], 'disable': True, 'mask': True}, check_mode=check_mode)
    assert not failed and result['units'][0]['unit'] == unit
    assert all(c[-2:] == ['--', unit] for c in fake.calls)
    assert [c[0] for c in fake.calls] == (['show'] if check_mode else ['show', 'stop', 'show', 'disable', 'mask', 'show'])


def test_result_timeout_with_exit_status_0_is_explained_as_what_it_was(run):
    after = dict(AFTER['timeout'], ExecMainCode='1', ExecMainStatus='0')
    failed, result = run(FakeSystemd({LLAMA: (RUNNING, after)}), {'units': [LLAMA]})
    rec = result['units'][0]
    assert failed and rec['classification'] == 'timeout' and rec['exit'] == 'exited with status 0'
    assert rec['explanation'].startswith('ran past a stop timeout (Result=timeout), but its main process exited with '
                                         'status 0 on its own, not killed with SIGKILL')
    assert 'was killed with SIGKILL' not in result['msg'] and 'journalctl -u %s' % LLAMA in result['msg']
    failed, result = run(FakeSystemd({LLAMA: (RUNNING, after)}), {'units': [LLAMA], 'fail_on': ['timeout_killed']})
    assert not failed and result['units'][0]['classification'] == 'timeout'
