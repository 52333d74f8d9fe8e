# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _procs
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import add_proc, read_fixture

HAS_PROC = os.path.exists('/proc/self/cgroup')
SYSTEMD_V1 = '/sys/fs/cgroup/systemd'


# The dev machine's own /proc/self/cgroup (cgroup v1 hierarchies plus an empty v2 "0::" line).
DEV_CGROUP = read_fixture('proc_pid_cgroup_dev_v1_hybrid.txt')

# Layouts the test hosts produce (systemd in docker, cgroup v1, cgroupns=host) and plain hosts. The
# path shapes are those systemd writes; the container id is made up.
DOCKER_V1 = """12:pids:/docker/4f1c2d/system.slice/model-server@a.service
11:memory:/docker/4f1c2d/system.slice/model-server@a.service
10:devices:/docker/4f1c2d/system.slice/model-server@a.service
3:cpu,cpuacct:/docker/4f1c2d/system.slice/model-server@a.service
1:name=systemd:/docker/4f1c2d/system.slice/model-server@a.service
0::/docker/4f1c2d/system.slice/model-server@a.service
"""
DOCKER_SCOPE_V1 = """1:name=systemd:/system.slice/docker-4f1c2d.scope/system.slice/model-server@a.service
0::/system.slice/docker-4f1c2d.scope/system.slice/model-server@a.service
"""
HOST_V2 = '0::/system.slice/model-server@a.service\n'
HOST_V2_DELEGATED = '0::/system.slice/model-server@a.service/worker-3\n'
OTHER_INSTANCE = '0::/system.slice/model-server@b.service\n'
PREFIX_LOOKALIKE = '0::/system.slice/model-server@a.service-helper.service\n'
# memory controller still shows the unit, but systemd's own hierarchy moved the process away.
MOVED_AWAY = """4:memory:/system.slice/model-server@a.service
1:name=systemd:/user.slice/user-0.slice/session-3.scope
0::/user.slice/user-0.slice/session-3.scope
"""


def test_parse_cgroup_real_dev_capture():
    entries = _procs.parse_cgroup(DEV_CGROUP)
    assert ('9', 'name=systemd', '/') in entries
    assert ('0', '', '/') in entries
    assert _procs.tracking_paths(entries) == ['/', '/']
    assert not _procs.cgroup_in_unit(DEV_CGROUP, 'model-server@a.service')


@pytest.mark.parametrize('text,inside', [
    (DOCKER_V1, True), (DOCKER_SCOPE_V1, True), (HOST_V2, True), (HOST_V2_DELEGATED, True),
    (OTHER_INSTANCE, False), (PREFIX_LOOKALIKE, False), (MOVED_AWAY, False), ('', False), ('garbage\n', False),
])
def test_cgroup_in_unit(text, inside):
    assert _procs.cgroup_in_unit(text, 'model-server@a.service') is inside


def test_controller_lines_used_only_without_a_tracking_hierarchy():
    assert _procs.cgroup_in_unit('4:memory:/system.slice/model-server@a.service\n', 'model-server@a.service')


def make_proc(tmp_path, procs):
    """A fake /proc: C(procs) maps pid -> (cgroup text, comm, cmdline args)."""
    root = tmp_path / 'proc'
    root.mkdir()
    (root / 'self').mkdir()
    (root / 'sys').mkdir()
    for pid, (cgroup, comm, args) in procs.items():
        add_proc(root, pid, cgroup, comm, args)
    return str(root)


def test_unit_pids_includes_survivors_and_delegated_subgroups(tmp_path):
    root = make_proc(tmp_path, {
        100: (DOCKER_V1, 'python3', ['python3', '-m', 'vllm.entrypoints.openai.api_server']),
        101: (DOCKER_V1, 'pt_main_thread', ['python3', '-c', 'worker']),
        205: (HOST_V2_DELEGATED, 'nccl-proxy', ['nccl-proxy']),
        300: (OTHER_INSTANCE, 'python3', ['python3', 'other']),
        400: (DEV_CGROUP, 'sshd', ['sshd']),
    })
    assert _procs.unit_pids('model-server@a.service', root) == [100, 101, 205]
    assert _procs.unit_pids('model-server@b.service', root) == [300]
    assert _procs.unit_pids('nothing.service', root) == []
    assert _procs.list_pids(root) == [100, 101, 205, 300, 400]


def test_process_info_and_name(tmp_path):
    root = make_proc(tmp_path, {100: (HOST_V2, 'python3', ['python3', '-m', 'vllm.entrypoints.openai.api_server'])})
    info = _procs.process_info(100, root)
    assert info == {'pid': 100, 'comm': 'python3', 'cmdline': 'python3 -m vllm.entrypoints.openai.api_server'}
    assert _procs.process_name(100, root) == 'python3'
    assert _procs.process_info(999, root) == {'pid': 999, 'comm': None, 'cmdline': None}
    assert _procs.process_name(999, root) is None
    assert _procs.list_pids(str(tmp_path / 'absent')) == []


def test_kill_in_unit_checks_cgroup_right_before_killing(tmp_path):
    root = make_proc(tmp_path, {100: (HOST_V2, 'python3', ['x']), 300: (OTHER_INSTANCE, 'python3', ['y'])})
    sent = []

    def kill(pid, sig):
        sent.append((pid, sig))

    assert _procs.kill_in_unit(100, 'model-server@a.service', root, kill=kill) == 'killed'
    assert _procs.kill_in_unit(300, 'model-server@a.service', root, kill=kill) == 'not_in_unit'
    assert _procs.kill_in_unit(555, 'model-server@a.service', root, kill=kill) == 'gone'
    assert sent == [(100, signal.SIGKILL)]


def test_kill_in_unit_vanished_and_permission(tmp_path):
    root = make_proc(tmp_path, {100: (HOST_V2, 'python3', ['x'])})

    def gone(pid, sig):
        raise OSError(errno.ESRCH, 'No such process')

    def denied(pid, sig):
        raise OSError(errno.EPERM, 'Operation not permitted')

    assert _procs.kill_in_unit(100, 'model-server@a.service', root, kill=gone) == 'gone'
    with pytest.raises(OSError):
        _procs.kill_in_unit(100, 'model-server@a.service', root, kill=denied)


# --- real /proc ------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_PROC, reason='needs Linux /proc')
def test_real_subprocess_info_and_cgroup():
    proc = subprocess.Popen([sys.executable, '-c', 'import sys; print("ready", flush=True); sys.stdin.read()',
                             'modelops-marker'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert proc.stdout.readline().strip() == 'ready'
        assert proc.pid in _procs.list_pids()
        info = _procs.process_info(proc.pid)
        assert info['cmdline'].endswith('modelops-marker')
        assert info['comm']
        text = _procs.read_cgroup(proc.pid)
        assert text == _procs.read_cgroup(os.getpid())  # children inherit the parent's cgroup
        assert proc.pid not in _procs.unit_pids('modelops-no-such-%s.service' % uuid.uuid4().hex[:8])
    finally:
        proc.kill()
        proc.wait()
    assert _procs.read_cgroup(proc.pid) is None


def _can_make_v1_cgroup():
    if not HAS_PROC or os.geteuid() != 0 or not os.path.isdir(SYSTEMD_V1):
        return False
    probe = os.path.join(SYSTEMD_V1, 'modelops-probe-%s.service' % uuid.uuid4().hex[:8])
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _can_make_v1_cgroup(), reason='needs root and a writable cgroup v1 name=systemd hierarchy')
def test_real_cgroup_finds_survivor_after_main_process_exits():
    """A process in a real unit-named cgroup forks a child and exits: the child is still found."""
    unit = 'modelops-test-%s.service' % uuid.uuid4().hex[:8]
    cgdir = os.path.join(SYSTEMD_V1, 'modelops-test.slice', unit)
    os.makedirs(cgdir)
    script = ('import subprocess, sys\n'
              'sys.stdin.readline()\n'
              'child = subprocess.Popen(["sleep", "60"], start_new_session=True)\n'
              'print(child.pid, flush=True)\n')
    main = subprocess.Popen([sys.executable, '-c', script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            universal_newlines=True)
    survivor = None
    try:
        with open(os.path.join(cgdir, 'cgroup.procs'), 'w') as handle:
            handle.write(str(main.pid))
        assert main.pid in _procs.unit_pids(unit)
        main.stdin.write('go\n')
        main.stdin.flush()
        survivor = int(main.stdout.readline())
        main.wait(10)
        pids = _procs.unit_pids(unit)
        assert survivor in pids and main.pid not in pids
        assert _procs.process_name(survivor) == 'sleep'
        assert _procs.kill_in_unit(survivor, 'another.service') == 'not_in_unit'
        assert _procs.kill_in_unit(survivor, unit) == 'killed'
        deadline = time.monotonic() + 10
        while survivor in _procs.unit_pids(unit) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert survivor not in _procs.unit_pids(unit)
        survivor = None
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
        if survivor is not None:
            try:
                os.kill(survivor, signal.SIGKILL)
            except OSError:
                pass
        for dummy in range(100):
            try:
                os.rmdir(cgdir)
                break
            except OSError:
                time.sleep(0.05)
        try:
            os.rmdir(os.path.dirname(cgdir))
        except OSError:
            pass


def test_check_units_unknown_is_never_empty(tmp_path):
    result, failure = _procs.check_units(['model-server@llama'], True, proc_root=str(tmp_path / 'no-proc'))
    assert result == {'changed': False, 'units': [], 'empty': None, 'count': None}
    assert failure.startswith('cannot list the processes in %s' % (tmp_path / 'no-proc'))
    assert _procs.list_pids(str(tmp_path / 'no-proc')) == []
    with pytest.raises(OSError):
        _procs.list_pids(str(tmp_path / 'no-proc'), strict=True)
    result, failure = _procs.check_units(['a\x00b'], False, proc_root=str(tmp_path))
    assert failure.startswith("units[0] ('a\\x00b') contains a NUL byte") and result['empty'] is None
