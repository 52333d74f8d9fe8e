# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _systemd
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import read_fixture, with_props


APACHE = read_fixture('systemctl_show_apache2_active_running_ubuntu20.04_systemd245.txt')
ONESHOT = read_fixture('systemctl_show_oneshot_inactive_dead_systemd249plus.txt')
REDIS = read_fixture('systemctl_show_redis_failed_after_kill_centos7_systemd219.txt')
SIMPLE = read_fixture('systemctl_show_simple_service_active_running_systemd249plus.txt')


# --- parse_show ------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,unit,active,sub,result,code,status,pid,load,ufs', [
    (APACHE, 'apache2.service', 'active', 'running', 'success', 0, 0, 679, 'loaded', 'enabled'),
    (ONESHOT, 'wibble-action-network-donations-sync.service', 'inactive', 'dead', 'success', 1, 0, 3781234, 'loaded', 'disabled'),
    (REDIS, 'redis.service', 'failed', 'failed', 'exit-code', 1, 0, 3902, 'loaded', 'disabled'),
    (SIMPLE, 'wibble-webapp.service', 'active', 'running', 'success', 0, 0, 3764255, 'loaded', 'enabled'),
])
def test_parse_real_captures(text, unit, active, sub, result, code, status, pid, load, ufs):
    props = _systemd.parse_show_one(text)
    assert props['Id'] == unit
    assert props['ActiveState'] == active
    assert props['SubState'] == sub
    assert props['Result'] == result
    assert props['LoadState'] == load
    assert props['UnitFileState'] == ufs
    rec = _systemd.unit_record(props)
    assert (rec['exec_main_code'], rec['exec_main_status'], rec['exec_main_pid']) == (code, status, pid)


def test_values_keep_everything_after_the_first_equals():
    props = _systemd.parse_show_one(ONESHOT)
    assert props['Environment'] == 'PGHOST=localhost PGUSER=wibble "PGPASSWORD=one two"'
    assert props['ExecStart'].startswith('{ path=/bin/sh ; argv[]=/bin/sh -c ')
    assert props['ExecStart'].endswith('code=exited ; status=0 }')


def test_control_group_absent_when_inactive_present_when_running():
    assert 'ControlGroup' not in _systemd.parse_show_one(REDIS)
    assert _systemd.unit_record(_systemd.parse_show_one(REDIS))['control_group'] is None
    assert _systemd.unit_record(_systemd.parse_show_one(APACHE))['control_group'] == '/system.slice/apache2.service'
    assert _systemd.unit_record(_systemd.parse_show_one(APACHE))['kill_mode'] == 'mixed'


def test_several_units_separated_by_blank_lines():
    units = _systemd.parse_show(APACHE + '\n' + REDIS + '\n\n' + SIMPLE)
    assert [u['Id'] for u in units] == ['apache2.service', 'redis.service', 'wibble-webapp.service']


def test_parse_show_one_rejects_empty_and_several():
    with pytest.raises(_systemd.SystemdParseError, match='no KEY=VALUE'):
        _systemd.parse_show_one('', 'x.service')
    with pytest.raises(_systemd.SystemdParseError, match='2 units'):
        _systemd.parse_show_one(APACHE + '\n' + REDIS, 'x.service')


def test_crlf_and_junk_lines_tolerated():
    props = _systemd.parse_show_one('Id=a.service\r\nnot a property\r\nActiveState=active\r\n')
    assert props == {'Id': 'a.service', 'ActiveState': 'active'}


# --- time spans ------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,seconds', [
    ('1min 30s', 90.0), ('1min 10s', 70.0), ('90s', 90.0), ('500ms', 0.5), ('1h', 3600.0),
    ('1h 2min 3s', 3723.0), ('2s 500ms', 2.5), ('100us', 0.0001), ('90000000', 90.0),
    ('infinity', None), ('', None), (None, None), ('garbage', None), ('5 parsecs', None),
])
def test_parse_timespan(text, seconds):
    assert _systemd.parse_timespan(text) == seconds


def test_timeouts_from_real_captures():
    assert _systemd.unit_record(_systemd.parse_show_one(APACHE))['timeout_stop_sec'] == 90.0
    assert _systemd.unit_record(_systemd.parse_show_one(SIMPLE))['timeout_stop_sec'] == 70.0
    assert _systemd.unit_record(_systemd.parse_show_one(APACHE))['timeout_stop_raw'] == '1min 30s'


@pytest.mark.parametrize('seconds,text', [(90, '90s'), (90.0, '90s'), (1.5, '1500ms'), (0.25, '250ms')])
def test_format_timespan_round_trips(seconds, text):
    assert _systemd.format_timespan(seconds) == text
    assert _systemd.parse_timespan(text) == float(seconds)


# --- classification --------------------------------------------------------------------------------

def test_classify_real_captures():
    assert _systemd.classify(_systemd.parse_show_one(APACHE)) == 'running'
    assert _systemd.classify(_systemd.parse_show_one(SIMPLE)) == 'running'
    assert _systemd.classify(_systemd.parse_show_one(ONESHOT)) == 'clean'
    # redis: ExecMainStatus=0 but the unit failed (its ExecStop= exited 1): Result wins.
    assert _systemd.classify(_systemd.parse_show_one(REDIS)) == 'failed'


# Derived from real captures with the properties a stop leaves behind replaced (systemd is not PID 1
# on the dev machine; molecule checks these states on real systemd).
@pytest.mark.parametrize('changes,expected', [
    # SIGTERM from the stop, exited because of it: systemd counts it clean.
    (dict(ActiveState='inactive', SubState='dead', Result='success', ExecMainCode='2', ExecMainStatus='15', MainPID='0'), 'clean'),
    # Ignored SIGTERM, SIGKILLed after TimeoutStopSec.
    (dict(ActiveState='failed', SubState='failed', Result='timeout', ExecMainCode='2', ExecMainStatus='9', MainPID='0'), 'timeout_killed'),
    (dict(ActiveState='failed', SubState='failed', Result='exit-code', ExecMainCode='1', ExecMainStatus='3', MainPID='0'), 'failed'),
    (dict(ActiveState='failed', SubState='failed', Result='signal', ExecMainCode='2', ExecMainStatus='9', MainPID='0'), 'signal'),
    (dict(ActiveState='failed', SubState='failed', Result='core-dump', ExecMainCode='3', ExecMainStatus='11', MainPID='0'), 'signal'),
    (dict(ActiveState='failed', SubState='failed', Result='oom-kill', ExecMainCode='2', ExecMainStatus='9', MainPID='0'), 'signal'),
    (dict(ActiveState='failed', SubState='failed', Result='watchdog', ExecMainCode='2', ExecMainStatus='6', MainPID='0'), 'failed'),
    (dict(ActiveState='deactivating', SubState='stop-sigterm'), 'running'),
    (dict(ActiveState='activating', SubState='auto-restart', Result='exit-code'), 'running'),
    (dict(LoadState='not-found', ActiveState='inactive', SubState='dead', UnitFileState=''), 'not_found'),
])
def test_classify_states_after_a_stop(changes, expected):
    assert _systemd.classify(_systemd.parse_show_one(with_props(APACHE, **changes))) == expected


@pytest.mark.parametrize('code,status,success_exit,active,expected', [
    ('1', '0', None, 'inactive', 'clean'),
    ('1', '3', None, 'failed', 'failed'),
    ('1', '3', '3 SIGUSR1', 'inactive', 'clean'),
    ('2', '15', None, 'inactive', 'clean'),
    ('2', '1', None, 'inactive', 'clean'),
    ('2', '9', None, 'failed', 'signal'),
    ('2', '10', 'SIGUSR1', 'inactive', 'clean'),
    ('2', '10', '{ status=[] signal=[USR1] }', 'inactive', 'clean'),
    ('3', '11', None, 'failed', 'signal'),
    ('0', '0', None, 'inactive', 'clean'),
    ('0', '0', None, 'failed', 'failed'),
])
def test_classify_without_result_falls_back_on_exec_main(code, status, success_exit, active, expected):
    text = with_props(APACHE, Result=None, ActiveState=active, ExecMainCode=code, ExecMainStatus=status,
                      SuccessExitStatus=success_exit)
    assert _systemd.classify(_systemd.parse_show_one(text)) == expected


@pytest.mark.parametrize('code,status,text', [
    ('1', '0', 'exited with status 0'), ('2', '9', 'killed by SIGKILL'), ('2', '15', 'killed by SIGTERM'),
    ('3', '11', 'dumped core on SIGSEGV'), ('2', '64', 'killed by signal 64'), ('0', '0', 'main process has not exited'),
])
def test_describe_exit(code, status, text):
    assert _systemd.describe_exit({'ExecMainCode': code, 'ExecMainStatus': status}) == text


def test_masked_and_active_helpers():
    assert _systemd.is_masked({'LoadState': 'masked'})
    assert _systemd.is_masked({'LoadState': 'loaded', 'UnitFileState': 'masked-runtime'})
    assert not _systemd.is_masked(_systemd.parse_show_one(APACHE))
    assert _systemd.is_active(_systemd.parse_show_one(APACHE))
    assert not _systemd.is_active(_systemd.parse_show_one(REDIS))


@pytest.mark.parametrize('name,unit', [
    ('model-server@llama', 'model-server@llama.service'),
    ('model-server@llama.service', 'model-server@llama.service'),
    ('vllm.socket', 'vllm.socket'), (' api ', 'api.service'), ('my.app', 'my.app.service'),
])
def test_normalize_unit_name(name, unit):
    assert _systemd.normalize_unit_name(name) == unit


# --- Systemctl wrapper and drop-ins ----------------------------------------------------------------

def test_systemctl_wrapper_builds_argv_lists():
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, APACHE if argv[1] == 'show' else '', ''

    ctl = _systemd.Systemctl(run, '/bin/systemctl')
    assert ctl.show('apache2.service')['Id'] == 'apache2.service'
    ctl.stop('model-server@a.service')
    ctl.disable('a.service', runtime=True)
    ctl.mask('a.service')
    ctl.daemon_reload()
    assert calls[0][:3] == ['/bin/systemctl', 'show', '--no-pager']
    assert calls[0][3].startswith('--property=Id,LoadState,ActiveState') and calls[0][4:] == ['--', 'apache2.service']
    assert calls[1:] == [['/bin/systemctl', 'stop', '--', 'model-server@a.service'],
                         ['/bin/systemctl', 'disable', '--runtime', '--', 'a.service'],
                         ['/bin/systemctl', 'mask', '--', 'a.service'],
                         ['/bin/systemctl', 'daemon-reload']]


def test_systemctl_error_names_unit_and_output():
    ctl = _systemd.Systemctl(lambda argv: (1, '', 'Failed to stop x.service: Access denied\n'), 'systemctl')
    with pytest.raises(_systemd.SystemctlError) as exc:
        ctl.stop('x.service')
    assert 'Stopping of x.service failed' in str(exc.value)
    assert 'rc 1' in str(exc.value) and 'Access denied' in str(exc.value)
    assert exc.value.rc == 1


def test_dropin_written_0644_and_removed(tmp_path):
    runtime = str(tmp_path / 'run')
    path = _systemd.write_stop_timeout_dropin('model-server@llama.service', 120, runtime)
    assert path == os.path.join(runtime, 'model-server@llama.service.d', 'zz-modelops-stop-timeout.conf')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with open(path) as handle:
        content = handle.read()
    assert '[Service]\nTimeoutStopSec=120s\n' in content
    assert _systemd.remove_stop_timeout_dropin('model-server@llama.service', runtime) is True
    assert not os.path.exists(os.path.dirname(path))
    assert _systemd.remove_stop_timeout_dropin('model-server@llama.service', runtime) is False


def test_dropin_name_sorts_after_ordinary_dropins():
    assert sorted(['override.conf', '50-limits.conf', _systemd.DROPIN_NAME, 'timeout.conf'])[-1] == _systemd.DROPIN_NAME


# --- Result=timeout read together with ExecMainCode/ExecMainStatus ----------------------------------
# The states are the real captures with only the properties named replaced (a unit timing out cannot be
# produced on the dev machine, where systemd is not PID 1).

def timed_out(text, **changes):
    return _systemd.parse_show_one(with_props(text, ActiveState='failed', SubState='failed', Result='timeout', **changes))


def test_timeout_with_sigkill_is_timeout_killed():
    props = timed_out(APACHE, ExecMainCode='2', ExecMainStatus='9', MainPID='0')
    assert _systemd.classify(props) == 'timeout_killed'
    assert _systemd.explain(props, stopped=True) == (
        'did not exit within its stop timeout and was killed with SIGKILL (Result=timeout, killed by SIGKILL)')
    assert _systemd.explain(props).startswith('did not exit within its start or stop timeout and was killed with SIGKILL')


def test_timeout_whose_main_process_exited_0_is_not_explained_as_sigkill():
    # The real oneshot capture says ExecMainCode=1 ExecMainStatus=0 (exited with status 0); only Result is replaced.
    props = _systemd.parse_show_one(with_props(ONESHOT, Result='timeout'))
    assert (props['ExecMainCode'], props['ExecMainStatus']) == ('1', '0')
    assert _systemd.classify(props) == 'timeout'
    text = _systemd.explain(props)
    assert text.startswith('ran past a start or stop timeout (Result=timeout), but its main process exited with status 0 '
                           'on its own, not killed with SIGKILL: ')
    assert 'ExecStop=' in text and 'was killed with SIGKILL' not in text


@pytest.mark.parametrize('code,status,cls,words', [
    ('1', '0', 'timeout', ['exited with status 0 on its own', 'not killed with SIGKILL']),
    ('1', '3', 'timeout', ['exited with status 3 on its own']),
    ('2', '15', 'timeout', ['was killed by SIGTERM', 'TimeoutStartSec=', 'not killed with SIGKILL']),
    ('3', '6', 'timeout', ['dumped core on SIGABRT', 'TimeoutStopFailureMode=abort']),
    ('0', '0', 'timeout', ['no exit of its main process is recorded (ExecMainCode=0)', 'before the main process ran']),
    ('2', '9', 'timeout_killed', ['was killed with SIGKILL']),
])
def test_timeout_classified_from_exec_main_code_and_status(code, status, cls, words):
    props = timed_out(APACHE, ExecMainCode=code, ExecMainStatus=status, MainPID='0')
    assert _systemd.classify(props) == cls
    text = _systemd.explain(props)
    for word in words:
        assert word in text


def test_explain_other_results_names_result_and_exit():
    assert _systemd.explain(_systemd.parse_show_one(REDIS)) == 'ended with Result=exit-code (exited with status 0)'
    assert 'timeout' in _systemd.CLASSIFICATIONS


# --- unit names, argv and time spans that must never reach systemctl --------------------------------

@pytest.mark.parametrize('name,words', [
    ('model\x00.service', 'contains a NUL byte'),
    ('model\n.service', "the control character '\\n'"),
    ('../../etc/evil.service', "contains '/'"),
    ('', 'is empty'),
    (7, 'is not a string'),
])
def test_unit_name_problem(name, words):
    assert words in _systemd.unit_name_problem(name)


@pytest.mark.parametrize('name', ['model-server@llama.service', '-.mount', '--now', 'dev-sda1.device', 'a\\x2db.service'])
def test_unit_names_that_are_fine(name):
    assert _systemd.unit_name_problem(name) is None


@pytest.mark.parametrize('unit', ['--now', '-.mount', 'model-server@llama.service'])
def test_every_argv_has_the_unit_after_double_dash(unit):
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, APACHE if argv[1] == 'show' else '', ''

    ctl = _systemd.Systemctl(run, '/bin/systemctl')
    ctl.show(unit)
    ctl.stop(unit)
    ctl.disable(unit)
    ctl.mask(unit, runtime=True)
    for argv in calls:
        assert argv[-2:] == ['--', unit] and argv.index('--') == len(argv) - 2


@pytest.mark.parametrize('seconds', [float('nan'), float('inf'), float('-inf'), 0.0004, 0, -1, True, '5'])
def test_format_timespan_refuses_what_systemd_would_misread(seconds):
    with pytest.raises(ValueError):
        _systemd.format_timespan(seconds)
