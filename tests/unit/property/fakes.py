# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stand-in host the property tests run modules on. Not a test module (pytest does not collect it).

Import it as C(ansible_collections.modelops.shutdown.tests.unit.property.fakes).

C(run_main(module, args, world, check_mode)) runs a module's C(main()) the way the unit tests of
C(tests/unit/plugins/modules) do (C(patch_module_args), C(exit_json)/C(fail_json) raising), with
everything that would reach this machine replaced for the duration of the call:

* C(FakeClock): C(time.monotonic)/C(time.time)/C(time.sleep) of every module of the collection (the
  C(time) name of each module and every default argument bound to those functions). Sleeping only
  moves the clock; every read moves it by C(FakeClock.TICK). Time a fake spends (a slow read, a
  timeout) is counted apart, in C(external), so a test can bound the time the module itself waited.
* C(AnsibleModule.run_command) answers from C(world.commands) (a C(CommandWorld)); every argv is
  recorded. C(get_bin_path) finds what C(world.bin_paths) says.
* C(_http.open_url) answers from C(world.http) (a C(HttpWorld)); every (method, url) is recorded.
* C(_haproxy.socket) is a C(FakeNet): unix and TCP "connections" answered by C(world.haproxy) (a
  C(HAProxyWorld)); every command is recorded. It checks addresses and timeouts the way the real
  socket module does (IDNA host names, C(AF_UNIX path too long), C(settimeout(nan))).
* C(/proc), C(/dev), C(/proc/net/tcp*), C(/run/systemd/system) and C(/etc/selinux/config) are folders
  of a per-run C(Sandbox); C(os.kill) only records.
* A guard (C(sys.addaudithook)) stops, with C(HostAccess), anything else that would touch this host
  while a module runs: a subprocess, a socket, a signal, syslog, a write outside the sandbox, a read of
  C(/proc), C(/sys), C(/dev), C(/run), C(/etc). It is only active during C(run_main()), in the calling
  thread and the threads started while it runs.

C(run_main) returns an C(Outcome); an exception other than exit_json/fail_json fails with
C(ModuleRaised) (property: no traceback), a result Ansible could not serialize with C(AssertionError).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import atexit
import shutil
import socket as real_socket
import sys
import tempfile
import threading
import time as real_time
import types

from email.message import Message
from unittest import mock
from urllib.error import HTTPError, URLError

from hypothesis import assume

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import (
    AnsibleExitJson, AnsibleFailJson, exit_json, fail_json, module_args)

COLLECTION = 'ansible_collections.modelops.shutdown'
PLUGINS = COLLECTION + '.plugins.'

# The largest timeout a real socket or sleep accepts (2**63 ns): beyond it they raise OverflowError.
MAX_OS_SECONDS = (2 ** 63 - 1) / 1e9


# --------------------------------------------------------------------------------------------- outcomes

class HarnessStop(BaseException):
    """Raised by a fake to end a run early. A BaseException, so that no C(except Exception) of a module swallows it."""


class StillWaiting(HarnessStop):
    """The module is still inside its own deadline after C(FakeClock.MAX_SLEEPS) sleeps: the run is cut short
    (nothing wrong: a long timeout with a short interval)."""


class ClockRunaway(HarnessStop):
    """The module read the clock C(FakeClock.MAX_READS) times: it loops without sleeping (a hang)."""


class DeadlineMissed(HarnessStop):
    """The module slept past its budget (its own timeout plus one poll interval and some slack)."""


class HostAccess(HarnessStop):
    """The module did something that would reach this machine (see the module docstring)."""


class ModuleRaised(AssertionError):
    """main() ended with an exception instead of exit_json/fail_json (a traceback for the user)."""


class Outcome(object):
    """What one run of main() did: C(result) (with C(failed)), C(warnings), the C(clock) and the C(world)
    (its records); C(cut_short) when the run was stopped by C(StillWaiting)."""

    def __init__(self, result, warnings, clock, world, cut_short=False):
        self.result = result
        self.warnings = warnings
        self.clock = clock
        self.world = world
        self.cut_short = cut_short

    @property
    def failed(self):
        return bool(self.result and self.result.get('failed'))


# --------------------------------------------------------------------------------------------- time

def _check_os_seconds(seconds, what):
    """Raise what a real C(time.sleep)/C(settimeout) raises for C(seconds)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError("'%s' object cannot be interpreted as an integer or float" % type(seconds).__name__)
    if math.isnan(seconds):
        raise ValueError('Invalid value NaN (not a number)')
    if seconds < 0:
        raise ValueError('sleep length must be non-negative' if what == 'sleep' else 'Timeout value out of range')
    if seconds > MAX_OS_SECONDS:
        raise OverflowError('timestamp out of range for platform time_t')


class FakeClock(object):
    """Monotonic and wall clocks that only move when read (C(TICK)), slept on, or spent by a fake."""

    TICK = 0.001
    MAX_SLEEPS = 400
    MAX_READS = 200000
    MONO0 = 5000.0
    WALL0 = 1764614400.0

    def __init__(self, budget=None):
        self.budget = budget
        self.now = self.MONO0
        self.reads = 0
        self.sleeps = 0
        self.slept = 0.0
        self.external = 0.0
        self.sleep_calls = []
        self.tripped = None
        self.lock = threading.Lock()

    def monotonic(self):
        with self.lock:
            self.reads += 1
            if self.reads > self.MAX_READS:
                self.tripped = ClockRunaway('the clock was read %d times: the module loops without sleeping' % self.reads)
                raise self.tripped
            self.now += self.TICK
            return self.now

    def time(self):
        return self.WALL0 + (self.monotonic() - self.MONO0)

    def sleep(self, seconds):
        _check_os_seconds(seconds, 'sleep')
        with self.lock:
            self.sleeps += 1
            self.now += seconds
            self.slept += seconds
            if len(self.sleep_calls) < 20:
                self.sleep_calls.append(seconds)
            if self.budget is not None and self.slept > self.budget:
                self.tripped = DeadlineMissed('the module slept %.3f s in all, past its budget of %.3f s (its own timeout '
                                              'plus one poll interval and slack); first sleeps: %s'
                                              % (self.slept, self.budget, self.sleep_calls[:8]))
                raise self.tripped
            if self.sleeps > self.MAX_SLEEPS:
                self.tripped = StillWaiting('%d sleeps' % self.sleeps)
                raise self.tripped

    def spend(self, seconds):
        """Time a fake spends (a slow answer, a timeout): moves the clock, counted in C(external)."""
        with self.lock:
            self.now += seconds
            self.external += seconds

    @property
    def elapsed(self):
        return self.now - self.MONO0

    @property
    def own_seconds(self):
        """Seconds of the run not spent inside fakes: sleeping, and the clock ticks of the module itself."""
        return self.elapsed - self.external


class FakeTimeModule(types.ModuleType):
    """The C(time) module with C(monotonic), C(time), C(sleep) and C(perf_counter) of a C(FakeClock)."""

    def __init__(self, clock):
        super(FakeTimeModule, self).__init__('time')
        self._clock = clock
        self.monotonic = clock.monotonic
        self.perf_counter = clock.monotonic
        self.time = clock.time
        self.sleep = clock.sleep

    def __getattr__(self, name):
        return getattr(real_time, name)


# --------------------------------------------------------------------------------------------- sandbox

# A memory file system when there is one: a sandbox is made and removed for every example.
SANDBOX_PARENT = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
_TOOLS = {}


def tool_stub(name):
    """An executable stand-in for C(name) (never run: run_command is faked), made once per test session, so that
    C(os.access(path, os.X_OK)) holds."""
    if name not in _TOOLS:
        folder = _TOOLS.setdefault('', tempfile.mkdtemp(prefix='mo-prop-bin-', dir=SANDBOX_PARENT))
        path = os.path.join(folder, name)
        with open(path, 'w') as handle:
            handle.write('#!/bin/sh\nexit 99\n')
        os.chmod(path, 0o755)
        _TOOLS[name] = path
    return _TOOLS[name]


@atexit.register
def _remove_tool_stubs():
    if '' in _TOOLS:
        shutil.rmtree(_TOOLS[''], ignore_errors=True)


class Sandbox(object):
    """A per-run folder standing in for the paths of this host the collection reads or writes."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix='mo-prop-', dir=SANDBOX_PARENT)
        for sub in ('proc/net', 'dev', 'run/systemd/system', 'etc/selinux', 'files'):
            os.makedirs(os.path.join(self.root, sub))
        self.write('etc/selinux/config', 'SELINUX=enforcing\nSELINUXTYPE=targeted\n')
        self.write('proc/net/tcp', '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n')

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def proc(self):
        return self.path('proc')

    @property
    def dev(self):
        return self.path('dev')

    @property
    def files(self):
        return self.path('files')

    def write(self, relative, data):
        full = self.path(relative)
        parent = os.path.dirname(full)
        if not os.path.isdir(parent):
            os.makedirs(parent)
        with open(full, 'wb') as handle:
            handle.write(data.encode('utf-8', 'surrogateescape') if isinstance(data, str) else data)
        return full

    def add_process(self, pid, cgroup=b'0::/\n', comm=b'python3\n', cmdline=b'python3\0', fds=()):
        """A process in the fake /proc: its cgroup, comm and cmdline files (bytes, written as given), and
        C(fds), link targets of its C(fd/) entries."""
        base = 'proc/%d/' % pid
        self.write(base + 'cgroup', cgroup)
        self.write(base + 'comm', comm)
        self.write(base + 'cmdline', cmdline)
        os.makedirs(self.path(base + 'fd'), exist_ok=True)
        for number, target in enumerate(fds):
            os.symlink(target, self.path(base + 'fd', str(number)))

    def contains(self, path):
        try:
            full = os.path.realpath(os.path.abspath(os.fsdecode(path)))
        except (TypeError, ValueError):
            return False
        return full == self.root or full.startswith(self.root + os.sep)

    def snapshot(self):
        """C({relative path: bytes or 'dir' or ('link', target)}) of everything in the sandbox but the fake /proc and
        tool stubs: what a check-mode run must leave as it was."""
        found = {}
        for top, dirs, files in os.walk(self.root):
            rel_top = os.path.relpath(top, self.root)
            if rel_top.split(os.sep)[0] in ('proc', 'bin'):
                continue
            for name in dirs:
                found[os.path.join(rel_top, name)] = 'dir'
            for name in files:
                full = os.path.join(top, name)
                if os.path.islink(full):
                    found[os.path.join(rel_top, name)] = ('link', os.readlink(full))
                else:
                    with open(full, 'rb') as handle:
                        found[os.path.join(rel_top, name)] = handle.read()
        return found

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------------------------- guard

_READ_BLOCKED = ('/proc', '/sys', '/dev', '/run', '/etc', '/var/run', '/boot')
_GUARD = {'active': False, 'foreign': frozenset(), 'sandbox': None, 'violations': None}

_ALWAYS_BLOCKED = (
    'subprocess.Popen', 'os.system', 'os.exec', 'os.spawn', 'os.posix_spawn', 'os.fork', 'os.forkpty', 'pty.spawn',
    'os.kill', 'os.killpg', 'signal.pthread_kill', 'syslog.openlog', 'syslog.syslog',
    'socket.__new__', 'socket.connect', 'socket.getaddrinfo', 'socket.bind', 'socket.sendto', 'socket.sendmsg',
    'socket.gethostbyname', 'socket.gethostbyaddr', 'urllib.Request',
)
_PATH_EVENTS = ('os.remove', 'os.rmdir', 'os.mkdir', 'os.chmod', 'os.chown', 'os.truncate', 'os.utime',
                'os.symlink', 'os.link', 'os.rename', 'shutil.rmtree', 'shutil.copyfile', 'shutil.move')


def _under(path, prefixes):
    return any(path == p or path.startswith(p + '/') for p in prefixes)


def _audit(event, args):
    guard = _GUARD
    if not guard['active'] or threading.get_ident() in guard['foreign']:
        return
    problem = None
    sandbox = guard['sandbox']
    if event.startswith(_ALWAYS_BLOCKED):
        problem = '%s%r' % (event, tuple(str(a)[:120] for a in args))
    elif event == 'open':
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if isinstance(path, int):
            return
        writes = bool(mode and any(c in str(mode) for c in 'wax+')) or bool(
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
        if sandbox.contains(path):
            return
        try:
            full = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return
        if writes or _under(full, _READ_BLOCKED):
            problem = 'open(%r, %r)' % (full[:200], mode)
    elif event in ('os.listdir', 'os.scandir'):
        path = args[0] if args else '.'
        if path is None or isinstance(path, int) or sandbox.contains(path):
            return
        if _under(os.path.abspath(os.fsdecode(path)), _READ_BLOCKED):
            problem = '%s(%r)' % (event, path)
    elif event in _PATH_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        if any(not sandbox.contains(p) for p in paths):
            problem = '%s%r' % (event, tuple(str(a)[:200] for a in args))
    if problem:
        guard['violations'].append(problem)
        raise HostAccess('the module tried to touch this host: %s' % problem)


sys.addaudithook(_audit)


@contextlib.contextmanager
def guarded(sandbox):
    """Activate the guard for the calling thread and for threads started inside the block."""
    violations = []
    foreign = frozenset(t.ident for t in threading.enumerate() if t is not threading.current_thread())
    _GUARD.update(active=True, foreign=foreign, sandbox=sandbox, violations=violations)
    try:
        yield violations
    finally:
        _GUARD.update(active=False, foreign=frozenset(), sandbox=None)


# --------------------------------------------------------------------------------------------- commands

def strip_timeout(argv):
    """C(argv) without a leading coreutils C(timeout [-k N] SECONDS) wrapper."""
    argv = list(argv)
    if argv and os.path.basename(str(argv[0])) == 'timeout':
        rest = argv[1:]
        while rest and str(rest[0]).startswith('-'):
            option = rest.pop(0)
            if option in ('-k', '--kill-after', '-s', '--signal') and rest:
                rest.pop(0)
        return rest[1:] if rest else []
    return argv


def _subcommand(args):
    for arg in args:
        if not str(arg).startswith('-'):
            return str(arg)
    return ''


_SYSTEMCTL_READ = ('show', 'status', 'is-active', 'is-enabled', 'is-failed', 'list-units', 'list-unit-files',
                   'list-dependencies', 'cat')
_FIREWALL_WRITE = ('--add-', '--remove-', '--set-', '--reload', '--complete-reload', '--runtime-to-permanent',
                   '--new-', '--delete-', '--change-', '--panic-on', '--lockdown-on', '--reset-')
_SEMANAGE_WRITE = ('-a', '--add', '-d', '--delete', '-m', '--modify', '-D', '--deleteall', '-i', '--input', '-N')
_READ_TOOLS = ('getsebool', 'getenforce', 'selinuxenabled', 'sestatus')


def is_mutating(argv):
    """Whether C(argv) changes the host. Read from the code of module_utils (C(_systemd), C(_policy), C(_gpu)):
    systemctl stop/disable/mask/daemon-reload, firewall-cmd --remove-port, ufw delete, semanage --delete,
    setsebool, setenforce, restorecon mutate; show/status, --state/--query-port, ufw status/show, semanage
    --list, getsebool/getenforce/selinuxenabled, nvidia-smi --query-*/-L, rocm-smi --show* and amd-smi
    metric/process/static/list read. A tool not listed counts as mutating."""
    argv = [str(a) for a in strip_timeout(argv)]
    if not argv:
        return False
    tool = os.path.basename(argv[0])
    args = argv[1:]
    if tool == 'systemctl':
        return _subcommand(args) not in _SYSTEMCTL_READ
    if tool == 'firewall-cmd':
        return any(a.startswith(_FIREWALL_WRITE) for a in args)
    if tool == 'ufw':
        return _subcommand(args) not in ('status', 'show', 'version')
    if tool == 'semanage':
        return any(a in _SEMANAGE_WRITE for a in args)
    if tool in _READ_TOOLS:
        return False
    if tool == 'nvidia-smi':
        return not all(a.startswith(('--query-', '--format', '-L', '--list-gpus', '-q', '-i', '--id')) or
                       not a.startswith('-') for a in args)
    if tool == 'rocm-smi':
        return not all(a.startswith('--show') or a in ('--json', '--csv', 'vram', 'all') for a in args)
    if tool == 'amd-smi':
        return _subcommand(args) not in ('metric', 'process', 'static', 'list', 'version', 'firmware', 'topology')
    return True


class CommandWorld(object):
    """Stands in for C(run_command): C(responder(argv)) returns C((rc, out, err)) or C((rc, out, err, seconds)),
    the seconds being how long the command takes (spent on the clock). Records every argv in C(calls)."""

    def __init__(self, responder=None):
        self.responder = responder or (lambda argv: (127, '', 'command not found'))
        self.calls = []
        self.clock = None

    def __call__(self, argv, *args, **kwargs):
        if not isinstance(argv, (list, tuple)):
            raise AssertionError('run_command called with %r: the collection passes argv lists, never a shell string' % (argv,))
        self.calls.append([a if isinstance(a, str) else repr(a) for a in argv])
        answer = self.responder(list(argv))
        rc, out, err = answer[:3]
        if len(answer) > 3 and self.clock is not None:
            self.clock.spend(answer[3])
        return rc, out, err

    @property
    def mutating(self):
        return [argv for argv in self.calls if is_mutating(argv)]


# --------------------------------------------------------------------------------------------- HTTP

class FakeResponse(object):
    """What C(open_url) returns: C(getcode()), C(headers), C(read(n))."""

    def __init__(self, status, body, content_type='text/plain; version=0.0.4'):
        self.status = status
        self.code = status
        self._body = io.BytesIO(body)
        self.headers = Message()
        self.headers['Content-Type'] = content_type

    def getcode(self):
        return self.status

    def read(self, amount=-1):
        return self._body.read(amount if amount is not None else -1)

    def close(self):
        pass


class HttpWorld(object):
    """Stands in for C(open_url). C(responder(method, url, body, headers, timeout)) returns C((status, bytes)),
    C((status, bytes, seconds)), or an exception instance to raise (a C(socket.timeout) spends the timeout).
    Records every request in C(requests)."""

    def __init__(self, responder=None):
        self.responder = responder or (lambda method, url, body, headers, timeout: URLError('[Errno -2] Name or service not known'))
        self.requests = []
        self.clock = None

    def open_url(self, url, data=None, headers=None, method=None, timeout=10, **kwargs):
        method = (method or ('POST' if data is not None else 'GET')).upper()
        self.requests.append({'method': method, 'url': url, 'headers': dict(headers or {}), 'data': data})
        _check_os_seconds(timeout, 'timeout')  # what the socket underneath raises
        answer = self.responder(method, url, data, dict(headers or {}), timeout)
        if isinstance(answer, BaseException):
            if isinstance(answer, real_socket.timeout) and self.clock is not None:
                self.clock.spend(timeout)
            raise answer
        status, body = answer[:2]
        if len(answer) > 2 and self.clock is not None:
            self.clock.spend(answer[2])
        if isinstance(body, str):
            body = body.encode('utf-8', 'surrogatepass')
        if status >= 400:
            message = Message()
            raise HTTPError(url, status, 'HTTP %s' % status, message, io.BytesIO(body))
        return FakeResponse(status, body)

    @property
    def mutating(self):
        return [r for r in self.requests if r['method'] not in ('GET', 'HEAD', 'OPTIONS')]


# --------------------------------------------------------------------------------------------- HAProxy

class HAProxyWorld(object):
    """Answers runtime API commands. C(responder(command, address)) returns the answer: text, or a list of
    chunks (bytes/text) and exception instances (raised by C(recv) in turn; a C(socket.timeout) spends the
    socket's timeout), ending when the list does (then C(recv) returns C(b'')). C(connect(address)) returns
    None, or an exception instance to raise from C(connect). Records every command in C(commands)."""

    def __init__(self, responder=None, connect=None):
        self.responder = responder or (lambda command, address: 'Unknown command.\n\n')
        self.connect = connect or (lambda address: None)
        self.commands = []
        self.clock = None

    @property
    def mutating(self):
        return [c for c in self.commands if not c.startswith('show ')]


class FakeSocket(object):
    def __init__(self, net, family):
        self.net = net
        self.family = family
        self.timeout = None
        self.address = None
        self.pending = None
        self.closed = False

    def settimeout(self, value):
        if value is not None:
            _check_os_seconds(value, 'timeout')
        self.timeout = value

    def gettimeout(self):
        return self.timeout

    def _spend_timeout(self):
        if self.net.world.clock is not None and self.timeout is not None:
            self.net.world.clock.spend(self.timeout)

    def connect(self, address):
        if self.family == real_socket.AF_UNIX:
            if not isinstance(address, (str, bytes, os.PathLike)):
                raise TypeError('a bytes-like object is required, not %r' % type(address).__name__)
            encoded = os.fsencode(address)  # UnicodeEncodeError for lone surrogates outside the escape range
            if len(encoded) > 107:
                raise OSError('AF_UNIX path too long')
            if b'\0' in encoded[1:] or not encoded:
                raise FileNotFoundError(errno.ENOENT, 'No such file or directory')
        self._open(address)

    def _open(self, address):
        failure = self.net.world.connect(address)
        if failure is not None:
            if isinstance(failure, real_socket.timeout):
                self._spend_timeout()
            raise failure
        self.address = address

    def sendall(self, data):
        if self.address is None:
            raise OSError(errno.ENOTCONN, 'Transport endpoint is not connected')
        text = data.decode('utf-8', 'surrogateescape') if isinstance(data, bytes) else data
        command = text[:-1] if text.endswith('\n') else text
        self.net.world.commands.append(command)
        answer = self.net.world.responder(command, self.address)
        if isinstance(answer, (str, bytes)):
            answer = [answer]
        self.pending = list(answer)

    def recv(self, size):
        if self.pending is None:
            raise OSError(errno.ENOTCONN, 'Transport endpoint is not connected')
        while self.pending:
            item = self.pending.pop(0)
            if isinstance(item, BaseException):
                if isinstance(item, real_socket.timeout):
                    self._spend_timeout()
                raise item
            data = item.encode('utf-8', 'surrogateescape') if isinstance(item, str) else item
            if len(data) > size:
                self.pending.insert(0, data[size:])
                data = data[:size]
            if data:
                return data
        return b''

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeNet(types.ModuleType):
    """The C(socket) module as C(_haproxy) sees it: sockets answered by an C(HAProxyWorld)."""

    def __init__(self, world):
        super(FakeNet, self).__init__('socket')
        self.world = world

    def __getattr__(self, name):
        return getattr(real_socket, name)

    def socket(self, family=real_socket.AF_INET, type=real_socket.SOCK_STREAM, *args):  # pylint: disable=redefined-builtin
        return FakeSocket(self, family)

    def create_connection(self, address, timeout=None, source_address=None, **kwargs):
        host, port = address
        if timeout is not None:
            _check_os_seconds(timeout, 'timeout')
        # What getaddrinfo does with the host and port before any lookup.
        if isinstance(host, str):
            host.encode('idna')
        elif not isinstance(host, (bytes, type(None))):
            raise TypeError('getaddrinfo() argument 1 must be string or None')
        if isinstance(port, int) and not isinstance(port, bool):
            if abs(port) >= 2 ** 63:
                raise OverflowError('Python int too large to convert to C long')
            if port < 0:
                raise real_socket.gaierror(-8, 'Servname not supported for ai_socktype')
        elif not isinstance(port, (str, bytes, type(None))):
            raise OSError('Int or String expected')
        sock = FakeSocket(self, real_socket.AF_INET)
        sock.settimeout(timeout)
        sock._open((host, port))
        return sock


# --------------------------------------------------------------------------------------------- world

class World(object):
    """Everything a run may meet: commands, HTTP, the HAProxy runtime API, programs on the PATH, a sandbox."""

    def __init__(self, sandbox, commands=None, http=None, haproxy=None, bin_paths=None, nvml=None):
        self.sandbox = sandbox
        self.commands = commands or CommandWorld()
        self.http = http or HttpWorld()
        self.haproxy = haproxy or HAProxyWorld()
        self.bin_paths = {} if bin_paths is None else dict(bin_paths)
        self.nvml = nvml
        self.killed = []

    def kill(self, pid, sig):
        self.killed.append((pid, sig))

    @property
    def mutations(self):
        """Everything that changed (or would change) the host: argv, HTTP requests, runtime API commands, signals."""
        return {'commands': self.commands.mutating, 'http': [(r['method'], r['url']) for r in self.http.mutating],
                'haproxy': self.haproxy.mutating, 'signals': list(self.killed)}


def default_bin_paths(sandbox, missing=()):
    """What C(get_bin_path) finds: the tools the collection runs, nvidia-smi and rocm-smi as executable stubs."""
    found = {name: '/usr/bin/' + name for name in (
        'systemctl', 'timeout', 'firewall-cmd', 'ufw', 'semanage', 'selinuxenabled', 'getsebool', 'setsebool',
        'getenforce', 'setenforce', 'restorecon')}
    for tool in ('nvidia-smi', 'rocm-smi', 'amd-smi'):
        found[tool] = tool_stub(tool)
    for name in missing:
        found.pop(name, None)
    return found


# --------------------------------------------------------------------------------------------- patching

def _plugin_modules():
    return [m for name, m in list(sys.modules.items()) if name.startswith(PLUGINS) and isinstance(m, types.ModuleType)]


def _functions_of(module):
    """Functions and methods defined in C(module) (for their default arguments)."""
    found = []
    for value in list(vars(module).values()):
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            found.append(value)
        elif isinstance(value, type) and value.__module__ == module.__name__:
            for attr in vars(value).values():
                attr = getattr(attr, '__func__', attr)
                if isinstance(attr, types.FunctionType):
                    found.append(attr)
    return found


@contextlib.contextmanager
def fake_time(clock):
    """Point every module of the collection at C(clock): C(time) names, imported functions, default arguments."""
    pairs = ((real_time.monotonic, clock.monotonic), (real_time.time, clock.time), (real_time.sleep, clock.sleep),
             (real_time.perf_counter, clock.monotonic))

    def fake_for(value):
        for real, fake in pairs:
            if value is real:
                return fake
        return None

    def swap(values):
        return tuple(fake_for(v) or v for v in values)

    fake_module = FakeTimeModule(clock)
    restore = []
    try:
        for module in _plugin_modules():
            for name, value in list(vars(module).items()):
                if value is real_time:
                    restore.append((module, name, value))
                    setattr(module, name, fake_module)
                elif fake_for(value) is not None:
                    restore.append((module, name, value))
                    setattr(module, name, fake_for(value))
            for func in _functions_of(module):
                if func.__defaults__ and any(fake_for(d) for d in func.__defaults__):
                    restore.append((func, '__defaults__', func.__defaults__))
                    func.__defaults__ = swap(func.__defaults__)
                if func.__kwdefaults__ and any(fake_for(d) for d in func.__kwdefaults__.values()):
                    restore.append((func, '__kwdefaults__', func.__kwdefaults__))
                    func.__kwdefaults__ = dict((k, fake_for(d) or d) for k, d in func.__kwdefaults__.items())
        yield
    finally:
        for owner, name, value in reversed(restore):
            setattr(owner, name, value)


HOST_PATHS = ('/proc', '/dev', '/run', '/etc', '/var', '/sys')


def _module(name):
    return sys.modules.get(PLUGINS + 'module_utils.' + name)


@contextlib.contextmanager
def fake_host(world, clock):
    """The sandbox paths, the fake network and the fake signals, for the modules of the collection."""
    sandbox = world.sandbox
    world.commands.clock = world.http.clock = world.haproxy.clock = clock
    with contextlib.ExitStack() as stack:
        def patch(module_name, attr, value):
            module = _module(module_name)
            if module is not None and hasattr(module, attr):
                stack.enter_context(mock.patch.object(module, attr, value))

        # Every host path a module keeps in a constant (C(/proc), C(/dev), C(/run/systemd/system),
        # C(/etc/selinux/config), C(/etc/ufw/ufw.conf), ... and any added later) moves into the sandbox.
        for module in _plugin_modules():
            if '.module_utils.' not in module.__name__:
                continue
            for name, value in list(vars(module).items()):
                if not name.isupper():
                    continue
                if isinstance(value, str) and value.startswith(HOST_PATHS):
                    stack.enter_context(mock.patch.object(module, name, sandbox.path(value.lstrip('/'))))
                elif isinstance(value, tuple) and value and all(isinstance(v, str) and v.startswith(HOST_PATHS) for v in value):
                    stack.enter_context(mock.patch.object(module, name, tuple(sandbox.path(v.lstrip('/')) for v in value)))
        patch('_procs', 'PROC_ROOT', sandbox.proc)
        patch('_gpu', 'DEV_ROOT', sandbox.dev)
        patch('_gpu', 'import_pynvml', lambda: world.nvml)
        patch('_systemd', 'RUNTIME_UNIT_DIR', sandbox.path('run', 'systemd', 'system'))
        patch('_policy', 'SELINUX_CONFIG', sandbox.path('etc', 'selinux', 'config'))
        patch('_http', 'open_url', world.http.open_url)
        patch('_haproxy', 'socket', FakeNet(world.haproxy))
        netstat = _module('_netstat')
        if netstat is not None and hasattr(netstat, 'read_entries'):
            original = netstat.read_entries

            def read_entries(paths=netstat.PROC_NET_TCP, byteorder=None):
                moved = [sandbox.path(p.lstrip('/')) if str(p).startswith('/proc/') else p for p in paths]
                return original(moved, byteorder='little' if byteorder is None else byteorder)
            stack.enter_context(mock.patch.object(netstat, 'read_entries', read_entries))
        stack.enter_context(mock.patch.object(os, 'kill', world.kill))
        yield


def sendable(value):
    """Whether C(value) can travel as a module argument: no lone surrogate in any string, key or value."""
    if isinstance(value, str):
        try:
            value.encode('utf-8')
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(sendable(k) and sendable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(sendable(item) for item in value)
    return True


def run_main(module, args, world, check_mode=False, diff=False, clock=None):
    """Run C(module.main()) with C(args) on C(world); return an C(Outcome). See the module docstring."""
    clock = clock or FakeClock()
    # A controller sends module arguments as UTF-8 JSON, which cannot carry a lone surrogate: the
    # controller refuses such a value before any module runs, so it is no input a module can get.
    assume(sendable(args))
    args = module_args(args, check_mode, diff)
    warnings = []

    def _warn(self, warning):
        warnings.append(warning)

    def _run_command(self, argv, *a, **kw):
        return world.commands(argv, *a, **kw)

    def _get_bin_path(self, name, required=False, opt_dirs=None):
        path = world.bin_paths.get(name)
        if path is None and required:
            self.fail_json(msg='Failed to find required executable "%s" in paths: /usr/bin' % name)
        return path

    patches = dict(exit_json=exit_json, fail_json=fail_json, warn=_warn, run_command=_run_command,
                   get_bin_path=_get_bin_path, _log_invocation=lambda self: None)
    result = None
    cut_short = False
    cwd = os.getcwd()
    with patch_module_args(args), mock.patch.multiple(basic.AnsibleModule, **patches), \
            fake_time(clock), fake_host(world, clock), guarded(world.sandbox) as violations:
        os.chdir(world.sandbox.root)  # a relative path lands in the sandbox
        try:
            module.main()
        except AnsibleExitJson as exc:
            result = exc.result
            result['failed'] = False
        except AnsibleFailJson as exc:
            result = exc.result
        except StillWaiting:
            cut_short = True
        except HarnessStop:
            raise
        except BaseException as exc:
            raise ModuleRaised('%s.main() raised %s: %s (a traceback, not exit_json/fail_json)'
                               % (module.__name__.rsplit('.', 1)[-1], type(exc).__name__, str(exc)[:300])) from exc
        else:
            raise ModuleRaised('%s.main() returned without calling exit_json or fail_json' % module.__name__)
        finally:
            os.chdir(cwd)
    if violations:
        raise HostAccess('the module tried to touch this host: %s' % '; '.join(violations[:3]))
    if isinstance(clock.tripped, (ClockRunaway, DeadlineMissed)):
        raise clock.tripped
    if isinstance(clock.tripped, StillWaiting):
        cut_short = True
    if result is not None:
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise AssertionError('the result cannot be serialized for Ansible (%s): %r' % (exc, result)) from exc
    return Outcome(result, warnings, clock, world, cut_short)


@contextlib.contextmanager
def sandboxed():
    """A C(Sandbox), removed afterwards."""
    sandbox = Sandbox()
    try:
        yield sandbox
    finally:
        sandbox.close()


class _SpecCaptured(BaseException):
    pass


def module_spec(module):
    """C((argument_spec, other AnsibleModule keywords)) of C(module), read by running its main() up to AnsibleModule()."""
    def capture(self, argument_spec=None, **kwargs):
        raise _SpecCaptured(argument_spec or {}, kwargs)
    with patch_module_args({}), mock.patch.object(basic.AnsibleModule, '__init__', capture):
        try:
            module.main()
        except _SpecCaptured as exc:
            return exc.args
    raise AssertionError('%s.main() did not create an AnsibleModule' % module.__name__)


def substitute(value, old, new):
    """C(value) (nested dicts and lists) with C(old) replaced by C(new) in every string, keys included."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return dict((substitute(k, old, new), substitute(v, old, new)) for k, v in value.items())
    if isinstance(value, list):
        return [substitute(v, old, new) for v in value]
    return value
