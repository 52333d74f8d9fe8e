# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""C(systemctl show) parsing and exit classification.

Private to this collection. Nothing here runs a command: callers pass C(systemctl show) text in and
get plain dicts back, so the parsing is tested on real captured output.

Classification of how a service ended (C(classify())):

* C(clean): C(Result=success). systemd already folds in what counts as a clean exit: exit status 0,
  the signals SIGHUP, SIGINT, SIGTERM and SIGPIPE (C(ExecMainCode=2), C(ExecMainStatus=15) for a
  service killed by its own stop's SIGTERM), and whatever C(SuccessExitStatus=) adds.
* C(timeout_killed): C(Result=timeout) and the main process was killed by SIGKILL
  (C(ExecMainCode=2), C(ExecMainStatus=9)): it did not exit within its timeout and systemd killed it.
* C(timeout): C(Result=timeout) otherwise: a start or stop job (or an C(ExecStop=)/C(ExecStartPre=)
  command) ran past its timeout, but the main process was not SIGKILLed: it exited on its own (with
  the status in C(ExecMainStatus)), was ended by another signal (SIGTERM of a start timeout, SIGABRT
  of C(TimeoutStopFailureMode=abort)), or never ran. C(explain()) says which.
* C(failed): C(Result=exit-code), and the other failure results (C(resources), C(protocol),
  C(watchdog), C(start-limit-hit), ...): the raw C(result) says which.
* C(signal): C(Result=signal), C(core-dump) or C(oom-kill): killed by a signal it did not handle
  as a clean exit (SIGKILL, SIGSEGV, SIGABRT, ...) outside a stop timeout.
* C(not_found): C(LoadState=not-found).
* C(running): the unit is still active, activating, deactivating or reloading.

C(ExecMainCode) is the C(si_code) of the main process's SIGCHLD (Linux C(CLD_*)): 0 not exited yet,
1 C(CLD_EXITED) (C(ExecMainStatus) is the exit status), 2 C(CLD_KILLED) and 3 C(CLD_DUMPED)
(C(ExecMainStatus) is the signal number).
"""

from __future__ import annotations

import errno
import math
import os
import re
import shlex

SHOW_PROPERTIES = (
    'Id', 'LoadState', 'ActiveState', 'SubState', 'Result', 'UnitFileState',
    'MainPID', 'ExecMainPID', 'ExecMainCode', 'ExecMainStatus', 'TimeoutStopUSec',
    'KillMode', 'ControlGroup', 'SuccessExitStatus', 'NeedDaemonReload', 'FragmentPath',
)

CLD_EXITED = 1
CLD_KILLED = 2
CLD_DUMPED = 3

# Signals systemd counts as a clean exit of a (non-oneshot) service's main process.
CLEAN_SIGNALS = frozenset((1, 2, 13, 15))  # SIGHUP, SIGINT, SIGPIPE, SIGTERM

ACTIVE_STATES = frozenset(('active', 'activating', 'deactivating', 'reloading', 'refreshing'))

SIGNAL_NAMES = {
    1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 4: 'SIGILL', 5: 'SIGTRAP', 6: 'SIGABRT', 7: 'SIGBUS',
    8: 'SIGFPE', 9: 'SIGKILL', 10: 'SIGUSR1', 11: 'SIGSEGV', 12: 'SIGUSR2', 13: 'SIGPIPE',
    14: 'SIGALRM', 15: 'SIGTERM',
}

CLASSIFICATIONS = ('clean', 'timeout_killed', 'timeout', 'failed', 'signal', 'not_found', 'running')

SIGKILL = 9

_UNIT_SUFFIXES = ('service', 'socket', 'device', 'mount', 'automount', 'swap', 'target', 'path',
                  'timer', 'slice', 'scope')

_TIMESPAN_UNITS = (
    # matched against the whole run of letters after a number, so order does not matter
    ('usec', 1e-6), ('us', 1e-6), ('\u00b5s', 1e-6),
    ('msec', 1e-3), ('ms', 1e-3),
    ('seconds', 1.0), ('second', 1.0), ('sec', 1.0), ('s', 1.0),
    ('minutes', 60.0), ('minute', 60.0), ('min', 60.0), ('m', 60.0),
    ('hours', 3600.0), ('hour', 3600.0), ('hr', 3600.0), ('h', 3600.0),
    ('days', 86400.0), ('day', 86400.0), ('d', 86400.0),
    ('weeks', 604800.0), ('week', 604800.0), ('w', 604800.0),
    ('months', 2629800.0), ('month', 2629800.0), ('M', 2629800.0),
    ('years', 31557600.0), ('year', 31557600.0), ('y', 31557600.0),
)
# ASCII digits only: str.isdigit() also accepts '\u00b2' and the like, which int() refuses.
_DECIMAL = re.compile(r'^[0-9]+$')
_TIMESPAN_TOKEN = re.compile(r'\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z\u00b5]*)')


class SystemdParseError(Exception):
    """C(systemctl show) output could not be read."""


def unit_name_problem(name):
    """Why C(name) cannot be a systemd unit name (a sentence), or C(None).

    A unit name never holds a NUL byte, another control character or a C(/) (systemd escapes C(/)
    as C(-) in instance names); systemctl would refuse it, a NUL cannot even be passed in an argv,
    and a C(/) would put the stop-timeout drop-in outside the unit's drop-in folder. A name starting
    with C(-) is fine (C(-.mount)): it is always passed after C(--).
    """
    if not isinstance(name, str):
        return 'is not a string'
    if not name.strip():
        return 'is empty'
    bad = sorted(set(ch for ch in name if ord(ch) < 32 or ord(ch) == 127 or ch == '/'))
    if bad:
        return 'contains %s, which no systemd unit name contains' % ', '.join(
            'a NUL byte' if ch == '\x00' else "'/'" if ch == '/' else 'the control character %r' % ch for ch in bad)
    return None


def normalize_unit_name(name):
    """Return C(name) with C(.service) appended when it has no unit-type suffix.

    C(model-server@llama) becomes C(model-server@llama.service); C(foo.socket) stays.
    """
    name = name.strip()
    if '.' in name and name.rsplit('.', 1)[1] in _UNIT_SUFFIXES:
        return name
    return name + '.service'


def parse_show(text):
    """Parse C(systemctl show) output into a list of dicts, one per unit.

    Lines are C(KEY=VALUE); the value is everything after the first C(=) (values such as
    C(Environment=A=b) and C(ExecStart={ path=... }) contain more). Units are separated by a blank
    line when several are shown. Lines without C(=) are ignored.
    """
    units = []
    current = {}
    for raw in text.splitlines():
        line = raw.rstrip('\r')
        if not line.strip():
            if current:
                units.append(current)
                current = {}
            continue
        if '=' not in line:
            continue
        key, value = line.split('=', 1)
        current[key] = value
    if current:
        units.append(current)
    return units


def parse_show_one(text, unit=''):
    """Parse C(systemctl show) output of exactly one unit; raise C(SystemdParseError) otherwise."""
    units = parse_show(text)
    if not units:
        raise SystemdParseError('systemctl show %s printed no KEY=VALUE properties: %r' % (unit, text[:200]))
    if len(units) > 1:
        raise SystemdParseError('systemctl show %s printed %d units where one was expected' % (unit, len(units)))
    return units[0]


def parse_timespan(value):
    """Seconds (float) from a systemd time span such as C(1min 30s), C(90s), C(500ms), C(1h).

    Returns C(None) for C(infinity), empty or unreadable values, and for spans too long to be a finite
    number of seconds. A bare number is microseconds, as C(systemctl show) prints C(*USec) properties
    with C(--value) on some versions.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or value == 'infinity':
        return None
    if _DECIMAL.match(value):
        seconds = float(value) / 1e6
        return seconds if math.isfinite(seconds) else None
    total = 0.0
    pos = 0
    while pos < len(value):
        match = _TIMESPAN_TOKEN.match(value, pos)
        if not match or match.end() == pos:
            return None
        number, unit = match.group(1), match.group(2)
        factor = None
        if not unit:
            factor = 1.0
        else:
            for name, mult in _TIMESPAN_UNITS:
                if unit == name:
                    factor = mult
                    break
        if factor is None:
            return None
        total += float(number) * factor
        pos = match.end()
        while pos < len(value) and value[pos] == ' ':
            pos += 1
    if not math.isfinite(total):
        return None
    return round(total, 6)


def format_timespan(seconds):
    """A systemd time span for C(seconds) (int or float), e.g. C(90s) or C(1500ms).

    Raises C(ValueError) for NaN, infinities, and spans under 1 ms (they would print as C(0ms),
    which systemd reads as "no timeout").
    """
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        raise ValueError('%r is not a finite number of seconds' % (seconds,))
    if seconds < 0.001:
        raise ValueError('%r seconds is under 1 ms; systemd would read it as 0, which means no timeout' % (seconds,))
    if float(seconds) == int(seconds):
        return '%ds' % int(seconds)
    return '%dms' % int(round(float(seconds) * 1000))


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _success_statuses(value):
    """Exit codes and signal numbers from a C(SuccessExitStatus=) value.

    systemd prints it as C(1 2 SIGKILL) on older versions and as a structured list on newer ones;
    only bare numbers and signal names are taken.
    """
    codes = set()
    signals = set()
    if not value:
        return codes, signals
    name_to_num = dict((v, k) for k, v in SIGNAL_NAMES.items())
    for token in re.split(r'[\s,;{}\[\]()]+', value):
        if not token:
            continue
        if _DECIMAL.match(token):
            codes.add(int(token))
        elif token.upper() in name_to_num:
            signals.add(name_to_num[token.upper()])
        elif 'SIG' + token.upper() in name_to_num:
            signals.add(name_to_num['SIG' + token.upper()])
    return codes, signals


def classify(props):
    """Classify how a unit ended from its C(systemctl show) properties. See the module docstring."""
    load_state = props.get('LoadState', '')
    active_state = props.get('ActiveState', '')
    result = props.get('Result', '')
    if load_state == 'not-found':
        return 'not_found'
    if active_state in ACTIVE_STATES:
        return 'running'
    if result == 'success':
        return 'clean'
    if result == 'timeout':
        code = _int_or_none(props.get('ExecMainCode'))
        status = _int_or_none(props.get('ExecMainStatus'))
        return 'timeout_killed' if (code, status) == (CLD_KILLED, SIGKILL) else 'timeout'
    if result in ('signal', 'core-dump', 'oom-kill'):
        return 'signal'
    if result:
        return 'failed'
    # No Result property (very old systemd): read the main process's exit.
    code = _int_or_none(props.get('ExecMainCode'))
    status = _int_or_none(props.get('ExecMainStatus'))
    ok_codes, ok_signals = _success_statuses(props.get('SuccessExitStatus'))
    if code in (None, 0):
        return 'clean' if active_state != 'failed' else 'failed'
    if code == CLD_EXITED:
        return 'clean' if status == 0 or status in ok_codes else 'failed'
    if code == CLD_KILLED and (status in CLEAN_SIGNALS or status in ok_signals):
        return 'clean'
    if code in (CLD_KILLED, CLD_DUMPED):
        return 'signal'
    return 'failed'


def explain(props, stopped=False):
    """How the unit ended, in words, from C(Result) together with C(ExecMainCode)/C(ExecMainStatus).

    For example C(did not exit within its stop timeout and was killed with SIGKILL (Result=timeout,
    killed by SIGKILL)), or, for a C(Result=timeout) whose main process exited with status 0,
    C(ran past a start or stop timeout (Result=timeout), but its main process exited with status 0
    on its own, not killed with SIGKILL: ...). C(stopped) says the caller's own stop ended the unit,
    so a timeout is its stop timeout; otherwise it may be a start timeout as well.
    """
    result = props.get('Result') or 'unknown'
    code = _int_or_none(props.get('ExecMainCode'))
    status = _int_or_none(props.get('ExecMainStatus'))
    exit_text = describe_exit(props)
    if result == 'timeout':
        if (code, status) == (CLD_KILLED, SIGKILL):
            return 'did not exit within its %s and was killed with SIGKILL (Result=timeout, %s)' % (
                'stop timeout' if stopped else 'start or stop timeout', exit_text)
        if code == CLD_EXITED:
            how = 'its main process exited with status %s on its own' % status
            why = ('a start or stop job, or an ExecStop=/ExecStartPre=/ExecStartPost= command, ran past its timeout '
                   'while the main process itself ended')
        elif code == CLD_KILLED:
            how = 'its main process was %s' % exit_text
            why = ('systemd ends a start that runs past TimeoutStartSec= with SIGTERM, and a stop whose ExecStop= '
                   'command runs past TimeoutStopSec= goes on with SIGTERM; the main process ended on that signal')
        elif code == CLD_DUMPED:
            how = 'its main process %s' % exit_text
            why = 'systemd sends SIGABRT on a timeout with TimeoutStartFailureMode=/TimeoutStopFailureMode=abort'
        else:
            how = 'no exit of its main process is recorded (ExecMainCode=%s)' % props.get('ExecMainCode', '')
            why = 'a start job (or an ExecStartPre= command) timed out before the main process ran'
        return ('ran past a %s (Result=timeout), but %s, not killed with SIGKILL: %s'
                % ('stop timeout' if stopped else 'start or stop timeout', how, why))
    return 'ended with Result=%s (%s)' % (result, exit_text)


def describe_exit(props):
    """A short human description of the main process's exit, e.g. C(killed by SIGKILL)."""
    code = _int_or_none(props.get('ExecMainCode'))
    status = _int_or_none(props.get('ExecMainStatus'))
    if code == CLD_EXITED:
        return 'exited with status %s' % status
    if code in (CLD_KILLED, CLD_DUMPED):
        name = SIGNAL_NAMES.get(status, 'signal %s' % status)
        return ('killed by %s' if code == CLD_KILLED else 'dumped core on %s') % name
    return 'main process has not exited'


def is_active(props):
    return props.get('ActiveState', '') in ACTIVE_STATES


def is_masked(props):
    return props.get('LoadState') == 'masked' or props.get('UnitFileState', '') in ('masked', 'masked-runtime')


def unit_record(props):
    """The per-unit fields every caller reports, from C(systemctl show) properties (raw kept)."""
    timeout_raw = props.get('TimeoutStopUSec')
    return {
        'classification': classify(props),
        'load_state': props.get('LoadState'),
        'active_state': props.get('ActiveState'),
        'sub_state': props.get('SubState'),
        'result': props.get('Result'),
        'unit_file_state': props.get('UnitFileState'),
        'exec_main_code': _int_or_none(props.get('ExecMainCode')),
        'exec_main_status': _int_or_none(props.get('ExecMainStatus')),
        'exec_main_pid': _int_or_none(props.get('ExecMainPID')),
        'main_pid': _int_or_none(props.get('MainPID')),
        'timeout_stop_sec': parse_timespan(timeout_raw),
        'timeout_stop_raw': timeout_raw,
        'kill_mode': props.get('KillMode'),
        'control_group': props.get('ControlGroup') or None,
    }


def unit_args(unit):
    """C(unit) as the last arguments of a systemctl command, always after C(--), so that no name
    (C(-.mount), or C(--now) given as a unit) is ever read as an option."""
    return ['--', unit]


def show_argv(systemctl, unit, properties=SHOW_PROPERTIES):
    """The argv of C(systemctl show) for one unit and the properties this collection reads (unit after C(--))."""
    return [systemctl, 'show', '--no-pager', '--property=%s' % ','.join(properties)] + unit_args(unit)


# ------------------------------------------------------------------------------------- commands

DROPIN_NAME = 'zz-modelops-stop-timeout.conf'
RUNTIME_UNIT_DIR = '/run/systemd/system'


class SystemctlError(Exception):
    """A systemctl command failed; the message names the unit and command and says what it printed."""

    def __init__(self, message, rc=None):
        super(SystemctlError, self).__init__(message)
        self.rc = rc


class Systemctl(object):
    """Thin argv-list wrapper over systemctl. C(run(argv)) returns C((rc, stdout, stderr))."""

    def __init__(self, run, path='systemctl'):
        self.run = run
        self.path = path

    def _call(self, args, unit, what):
        argv = [self.path] + list(args)
        rc, out, err = self.run(argv)
        if rc != 0:
            said = ' '.join(((err or '') + ' ' + (out or '')).split())[:400]
            raise SystemctlError('%s of %s failed: %s exited with rc %s%s'
                                 % (what, unit, ' '.join(argv), rc, (' (it said: %s)' % said) if said else ''), rc=rc)
        return out

    def show(self, unit):
        out = self._call(show_argv(self.path, unit)[1:], unit, 'systemctl show')
        try:
            return parse_show_one(out, unit)
        except SystemdParseError as exc:
            raise SystemctlError(str(exc))

    def stop(self, unit):
        return self._call(['stop'] + unit_args(unit), unit, 'Stopping')

    def disable(self, unit, runtime=False):
        return self._call(['disable'] + (['--runtime'] if runtime else []) + unit_args(unit), unit, 'Disabling')

    def mask(self, unit, runtime=False):
        return self._call(['mask'] + (['--runtime'] if runtime else []) + unit_args(unit), unit, 'Masking')

    def daemon_reload(self, unit=''):
        return self._call(['daemon-reload'], unit or 'the systemd manager', 'daemon-reload for')


def dropin_path(unit, runtime_dir=None):
    """Where the stop-timeout runtime drop-in of C(unit) lives (under C(RUNTIME_UNIT_DIR) by default)."""
    return os.path.join(runtime_dir or RUNTIME_UNIT_DIR, unit + '.d', DROPIN_NAME)


def write_stop_timeout_dropin(unit, seconds, runtime_dir=None):
    """Write a runtime drop-in setting C(TimeoutStopSec=) for C(unit) (mode 0644); return its path.

    C(/run) is not persistent, so a drop-in left behind by a crash is gone at the next boot. The
    name sorts after ordinary drop-ins (C(override.conf), C(50-*.conf)), so it wins; the caller
    still verifies the effective value after C(daemon-reload).
    """
    path = dropin_path(unit, runtime_dir)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    content = ('# Written by modelops.shutdown.unit_stop for one stop of %s; removed afterwards.\n'
               '[Service]\nTimeoutStopSec=%s\n' % (unit, format_timespan(seconds)))
    tmp = path + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, content.encode('utf-8'))
    finally:
        os.close(fd)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    return path


def remove_stop_timeout_dropin(unit, runtime_dir=None):
    """Remove the drop-in (and its directory when empty). Returns whether a file was removed."""
    path = dropin_path(unit, runtime_dir)
    removed = False
    try:
        os.unlink(path)
        removed = True
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass
    return removed


# ------------------------------------------------------------------- ExecStart= and Environment=

_EXEC_COMMAND = re.compile(
    r'^\{ path=(?P<path>[^;]*?) ; argv\[\]=(?P<argv>.*?) ; ignore_errors=(?:yes|no) ; start_time=\[[^\]]*\]'
    r' ; stop_time=\[[^\]]*\] ; pid=[0-9]+ ; code=[^;]* ; status=[^;}]* \}$')


def show_values(text, key):
    """Every value of C(key) in C(systemctl show) output of one unit, in order (C(EnvironmentFiles=) and
    C(ExecStart=) of some versions repeat the key once per entry, which C(parse_show()) keeps only the last of)."""
    prefix = key + '='
    return [line.rstrip('\r')[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def parse_exec_command(value):
    """C((path, argv)) from one C(ExecStart=) value as C(systemctl show) prints it
    (C({ path=/usr/bin/python3 ; argv[]=/usr/bin/python3 /opt/x.py --a 1 ; ignore_errors=no ; ... })).

    Returns C(None) for anything else: an empty value, several commands, another layout. systemctl prints
    C(argv[]) joined with single spaces and without quotes, so an argument holding a space reads as two.
    """
    value = (value or '').strip()
    if value.count('{ path=') != 1:
        return None
    match = _EXEC_COMMAND.match(value)
    if not match:
        return None
    argv = match.group('argv').split(' ')
    if not match.group('path') or not argv or '' in argv:
        return None
    return match.group('path'), argv


def parse_environment(value):
    """C({name: value}) from an C(Environment=) value (C(A=1 "B=two words")); C(None) when it cannot be split."""
    env = {}
    try:
        words = shlex.split(value or '', posix=True)
    except ValueError:
        return None
    for word in words:
        if '=' not in word:
            return None
        name, val = word.split('=', 1)
        env[name] = val
    return env


def parse_environment_file_entry(value):
    """C((path, ignore_errors)) from an C(EnvironmentFiles=) value (C(/etc/x.env (ignore_errors=yes))), or C(None)."""
    match = re.match(r'^(?P<path>\S.*?) \(ignore_errors=(?P<ignore>yes|no)\)$', (value or '').strip())
    if not match:
        return None
    return match.group('path'), match.group('ignore') == 'yes'


def parse_environment_file(text):
    """C({name: value}) from an environment file as systemd reads it (C(KEY=VALUE) lines, C(#)/C(;) comments,
    optional C(export), single or double quotes around the value). Lines that are not assignments are skipped."""
    env = {}
    for raw in (text or '').splitlines():
        line = raw.strip()
        if not line or line[0] in '#;':
            continue
        if line.startswith('export '):
            line = line[len('export '):].lstrip()
        if '=' not in line:
            continue
        name, val = line.split('=', 1)
        name = name.strip()
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in '"\'':
            val = val[1:-1]
        if re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', name):
            env[name] = val
    return env
