# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""UnitStopper driven directly (no AnsibleModule), with the FakeSystemd of the module tests and a fake clock;
the C(--) before unit names in systemctl argv; C(_procs.check_units)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _procs, _systemd
from ansible_collections.modelops.shutdown.plugins.module_utils._unit_stop import ADVICE, UnitStopper, argument_spec
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import CommandReplay, add_proc
from ansible_collections.modelops.shutdown.tests.unit.plugins.modules.test_unit_stop import (
    AFTER,
    LLAMA,
    MISTRAL,
    REDIS_FAILED,
    RUNNING,
    SYSTEMCTL,
    FakeSystemd,
    verb_units,
)

HOST = 'gpu-node-7'
RECORD_KEYS = {'unit', 'was_active', 'stopped', 'classification', 'result', 'load_state', 'active_state', 'sub_state',
               'unit_file_state', 'exec_main_code', 'exec_main_status', 'exec_main_pid', 'exit', 'explanation', 'timeout_stop_sec',
               'stop_seconds', 'disabled', 'masked', 'changed', 'error'}
RESULT_KEYS = {'changed', 'units', 'failed_units', 'msg', 'diff', 'started_at', 'finished_at', 'stop_seconds'}


class Clock(object):
    """Monotonic seconds that move only when C(advance()) is called."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Wall(object):
    """Epoch seconds: each call returns the next of C(times) (the last one repeats)."""

    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def timed(fake, clock, seconds=3.2):
    """C(fake) as run_command, where every C(systemctl stop) takes C(seconds) on C(clock)."""
    def run_command(argv):
        if argv[1] == 'stop':
            clock.advance(seconds)
        return fake(argv)
    return run_command


def params(**options):
    opts = {'units': [LLAMA], 'timeout_stop_sec': None, 'disable': False, 'mask': False, 'mask_runtime': False,
            'fail_on': ['timeout_killed', 'failed', 'signal']}
    opts.update(options)
    return opts


def stopper(fake, clock=None, wall=None, **kwargs):
    clock = clock or Clock()
    return UnitStopper(timed(fake, clock), SYSTEMCTL, host=HOST, clock=clock, wall=wall or Wall(1718000000.0), **kwargs)


def test_argument_spec_is_the_modules_and_a_new_dict_each_time():
    spec = argument_spec()
    assert set(spec) == {'units', 'timeout_stop_sec', 'disable', 'mask', 'mask_runtime', 'fail_on'}
    assert spec['units'] == {'type': 'list', 'elements': 'str', 'required': True}
    assert spec['fail_on']['default'] == ['timeout_killed', 'timeout', 'failed', 'signal']
    assert spec['fail_on']['choices'] == list(_systemd.CLASSIFICATIONS)
    spec['fail_on']['default'].append('clean')
    assert argument_spec()['fail_on']['default'] == ['timeout_killed', 'timeout', 'failed', 'signal']
    assert set(ADVICE) == set(_systemd.CLASSIFICATIONS)


def test_clean_stop_result_keys_and_times():
    clock = Clock()
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    result, failure = stopper(fake, clock, Wall(1718000000.12345, 1718000003.45678)).run(params())
    assert failure is None
    assert set(result) == RESULT_KEYS and set(result['units'][0]) == RECORD_KEYS
    assert result['changed'] is True and result['failed_units'] == []
    assert result['units'][0]['stop_seconds'] == 3.2 and result['units'][0]['classification'] == 'clean'
    assert result['msg'] == '%s: stopped in 3.2s, clean' % LLAMA
    assert (result['started_at'], result['finished_at'], result['stop_seconds']) == (1718000000.123, 1718000003.457, 3.2)
    assert result['diff'] == {
        'before': {LLAMA: {'active_state': 'active', 'unit_file_state': 'enabled', 'masked': False}},
        'after': {LLAMA: {'active_state': 'inactive', 'unit_file_state': 'enabled', 'masked': False}}}
    assert verb_units(fake) == [('show', LLAMA), ('stop', LLAMA), ('show', LLAMA)]


def test_whole_run_time_covers_every_unit():
    clock = Clock()
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean']), MISTRAL: (RUNNING, AFTER['clean'])})
    result, failure = stopper(fake, clock).run(params(units=[LLAMA, MISTRAL]))
    assert failure is None
    assert [r['stop_seconds'] for r in result['units']] == [3.2, 3.2]
    assert result['stop_seconds'] == 6.4


def test_failure_message_is_returned_and_in_the_result():
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['timeout']), MISTRAL: (RUNNING, AFTER['clean'])})
    result, failure = stopper(fake).run(params(units=['model-server@llama', 'model-server@mistral']))
    assert failure == result['msg']
    assert failure.startswith('unit_stop on %s: %s did not exit within its stop timeout and was killed with SIGKILL '
                              '(Result=timeout, killed by SIGKILL), so requests in flight may have been lost' % (HOST, LLAMA))
    assert result['failed_units'] == [LLAMA]
    assert [r['classification'] for r in result['units']] == ['timeout_killed', 'clean']
    assert set(result) == RESULT_KEYS


def test_host_defaults_to_this_hosts_name(monkeypatch):
    monkeypatch.setattr('socket.gethostname', lambda: 'from-socket')
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['exit'])})
    result, failure = UnitStopper(fake, SYSTEMCTL).run(params())
    assert failure.startswith('unit_stop on from-socket: %s ended with Result=exit-code' % LLAMA)
    assert result['units'][0]['stop_seconds'] >= 0 and result['stop_seconds'] >= 0


@pytest.mark.parametrize('options,msg', [
    ({'units': ['  ', '']}, 'units is empty: name at least one systemd unit'),
    ({'units': None}, 'units is empty: name at least one systemd unit'),
    ({'timeout_stop_sec': 0}, 'timeout_stop_sec must be more than 0 seconds, got 0'),
    ({'timeout_stop_sec': -1.5}, 'timeout_stop_sec must be more than 0 seconds, got -1.5'),
    ({'units': [LLAMA, 'vllm.socket', 'x.timer'], 'timeout_stop_sec': 5},
     'timeout_stop_sec applies to .service units only; not to vllm.socket, x.timer'),
])
def test_argument_errors_run_nothing(options, msg):
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    result, failure = stopper(fake, wall=Wall(5.0, 6.0)).run(params(**options))
    assert failure == msg
    assert result == {'changed': False, 'units': [], 'failed_units': [], 'msg': msg,
                      'diff': {'before': {}, 'after': {}}, 'started_at': 5.0, 'finished_at': 6.0, 'stop_seconds': 0.0}
    assert fake.calls == []


def test_missing_options_get_their_defaults():
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['timeout'])})
    result, failure = stopper(fake).run({'units': [LLAMA]})
    assert failure and result['failed_units'] == [LLAMA]  # default fail_on holds timeout_killed
    result, failure = stopper(fake).run({'units': [LLAMA], 'fail_on': []})
    assert failure is None and result['units'][0]['classification'] == 'timeout_killed'


def test_check_mode_issues_only_show_and_predicts():
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['timeout']), 'redis.service': (REDIS_FAILED, None)})
    result, failure = stopper(fake, check_mode=True).run(
        params(units=[LLAMA, 'redis'], disable=True, mask=True, mask_runtime=True, fail_on=['timeout_killed']))
    assert failure is None and result['changed']
    assert [c[0] for c in fake.calls] == ['show', 'show']
    assert result['units'][0]['stopped'] and result['units'][0]['stop_seconds'] is None
    assert result['diff']['after'][LLAMA] == {'active_state': 'inactive', 'unit_file_state': 'masked-runtime',
                                              'masked': True}
    assert result['msg'].startswith('%s: would be stopped, running, disabled, masked' % LLAMA)
    assert result['stop_seconds'] == 0.0


def test_errors_never_raise_and_are_recorded():
    fake = FakeSystemd({LLAMA: (RUNNING, None)}, fail={'show': (1, '', 'Failed to connect to bus\n')})
    result, failure = stopper(fake).run(params(units=[LLAMA, MISTRAL]))
    assert [r['unit'] for r in result['units']] == [LLAMA, MISTRAL]
    assert all(r['error'] and r['classification'] is None for r in result['units'])
    assert result['failed_units'] == [LLAMA, MISTRAL] and result['diff']['before'] == {LLAMA: {}, MISTRAL: {}}
    assert failure.count('Failed to connect to bus') == 2


@pytest.mark.parametrize('with_warn', [True, False])
def test_dropin_left_behind_is_warned_about(monkeypatch, tmp_path, with_warn):
    runtime = str(tmp_path / 'run')
    monkeypatch.setattr(_systemd, 'RUNTIME_UNIT_DIR', runtime)
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}, runtime_dir=runtime,
                       fail={'daemon-reload': (1, '', 'Access denied\n')})
    warnings = []
    result, failure = stopper(fake, warn=warnings.append if with_warn else None).run(params(timeout_stop_sec=30))
    assert 'daemon-reload exited with rc 1 (it said: Access denied)' in failure and LLAMA in failure
    assert result['units'][0]['stopped'] is False
    assert not [c for c in fake.calls if c[0] == 'stop']
    assert not os.path.exists(_systemd.dropin_path(LLAMA, runtime))
    if with_warn:
        assert len(warnings) == 1 and warnings[0].startswith('Could not remove the stop-timeout drop-in')


def test_timeout_override_is_reported_and_removed(monkeypatch, tmp_path):
    runtime = str(tmp_path / 'run')
    monkeypatch.setattr(_systemd, 'RUNTIME_UNIT_DIR', runtime)
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])}, runtime_dir=runtime)
    result, failure = stopper(fake).run(params(timeout_stop_sec=120))
    assert failure is None and fake.dropin_seen[LLAMA] == 0o644
    assert result['units'][0]['timeout_stop_sec'] == 120.0
    assert not os.path.exists(_systemd.dropin_path(LLAMA, runtime))


# --- unit names starting with '-' go after '--' ----------------------------------------------------

def test_systemctl_puts_a_dash_unit_after_double_dash():
    replay = CommandReplay({'show': (0, RUNNING, ''), 'stop': (0, '', ''), 'disable': (0, '', ''),
                            'mask': (0, '', '')}, key=lambda argv: argv[1])
    ctl = _systemd.Systemctl(replay, '/bin/systemctl')
    ctl.show('-.mount')
    ctl.stop('-.mount')
    ctl.disable('-.mount', runtime=True)
    ctl.mask('-.mount')
    ctl.mask('-.mount', runtime=True)
    assert replay.calls[0] == ['/bin/systemctl', 'show', '--no-pager',
                               '--property=%s' % ','.join(_systemd.SHOW_PROPERTIES), '--', '-.mount']
    assert replay.calls[1:] == [['/bin/systemctl', 'stop', '--', '-.mount'],
                                ['/bin/systemctl', 'disable', '--runtime', '--', '-.mount'],
                                ['/bin/systemctl', 'mask', '--', '-.mount'],
                                ['/bin/systemctl', 'mask', '--runtime', '--', '-.mount']]
    assert _systemd.unit_args('a.service') == ['--', 'a.service'] and _systemd.unit_args('-.slice') == ['--', '-.slice']


def test_unit_stopper_never_passes_a_dash_unit_as_an_option():
    unit = '-.mount'
    states = [RUNNING, RUNNING.replace('ActiveState=active', 'ActiveState=inactive')]
    replay = CommandReplay({'show': [(0, text, '') for text in states], 'stop': (0, '', ''),
                            'disable': (0, '', ''), 'mask': (0, '', '')}, key=lambda argv: argv[1])
    result, failure = UnitStopper(replay, SYSTEMCTL, host=HOST).run(params(units=[unit], disable=True, mask=True))
    assert failure is None and result['units'][0]['unit'] == unit
    assert [c[1] for c in replay.calls] == ['show', 'stop', 'show', 'disable', 'mask', 'show']
    for argv in replay.calls:
        assert argv[-2:] == ['--', unit] and argv.count(unit) == 1


# --- _procs.check_units ---------------------------------------------------------------------------

def test_check_units_result_and_message(tmp_path):
    add_proc(tmp_path, 4242, '0::/system.slice/model-server@llama.service\n', 'model-worker', ('python3', 'w.py'))
    add_proc(tmp_path, 50, '0::/system.slice/my.app\n', 'app', ('app',))
    result, failure = _procs.check_units(['model-server@llama', 'my.app', 'other'], False, proc_root=str(tmp_path))
    assert failure is None
    assert result == {'changed': False, 'empty': False, 'count': 2, 'units': [
        {'unit': LLAMA, 'processes': [{'pid': 4242, 'name': 'model-worker', 'cmdline': 'python3 w.py'}]},
        {'unit': 'my.app', 'processes': [{'pid': 50, 'name': 'app', 'cmdline': 'app'}]},
        {'unit': 'other.service', 'processes': []}]}
    again, failure = _procs.check_units(['model-server@llama', 'my.app', 'other'], True, proc_root=str(tmp_path))
    assert again == result
    assert failure == ('2 process(es) are still running in the cgroups of stopped units (%s: PID 4242 (model-worker); '
                       'my.app: PID 50 (app)). Find out why they outlived the stop (KillMode=process? a detached '
                       'worker?) and stop or kill them.' % LLAMA)
    assert _procs.check_units(['other'], True, proc_root=str(tmp_path)) == (
        {'changed': False, 'empty': True, 'count': 0, 'units': [{'unit': 'other.service', 'processes': []}]}, None)
    assert _procs.read_units([LLAMA], str(tmp_path)) == result['units'][:1]


@pytest.mark.parametrize('options,msg', [
    ({'timeout_stop_sec': float('nan')}, 'timeout_stop_sec must be a finite number of seconds, got nan'),
    ({'timeout_stop_sec': float('inf')}, 'timeout_stop_sec must be a finite number of seconds, got inf'),
    ({'timeout_stop_sec': 1e-6}, 'timeout_stop_sec must be at least 0.001 seconds (systemd reads a shorter one as 0, '
                                 'which means no timeout), got 1e-06'),
    ({'units': [LLAMA, 'x\x00y']}, "units[1] ('x\\x00y') contains a NUL byte, which no systemd unit name contains; give "
                                   "systemd unit names such as model-server@llama.service"),
    ({'units': [LLAMA, 7]}, 'units must be a list of unit names (strings), got %r' % ([LLAMA, 7],)),
])
def test_bad_timeouts_and_names_run_nothing_and_never_raise(options, msg):
    fake = FakeSystemd({LLAMA: (RUNNING, AFTER['clean'])})
    result, failure = stopper(fake).run(params(**options))
    assert failure == msg == result['msg'] and fake.calls == [] and result['units'] == []


def test_check_mode_show_has_the_unit_after_double_dash():
    replay = CommandReplay({'show': (0, RUNNING, '')}, key=lambda argv: argv[1])
    result, failure = UnitStopper(replay, SYSTEMCTL, check_mode=True, host=HOST).run(params(units=['--now']))
    assert failure is None and result['units'][0]['stopped']
    assert replay.calls == [[SYSTEMCTL, 'show', '--no-pager', '--property=%s' % ','.join(_systemd.SHOW_PROPERTIES),
                             '--', '--now.service']]
