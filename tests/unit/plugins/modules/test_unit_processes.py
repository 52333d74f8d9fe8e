"""unit_processes: lists the processes in a unit's cgroup, read from a /proc tree."""

from __future__ import annotations

import os

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _procs
from ansible_collections.modelops.shutdown.plugins.modules import unit_processes
from ansible_collections.modelops.shutdown.tests.unit.plugins.helpers import add_proc

CGROUP_IN_UNIT = ('9:name=systemd:/docker/add0e6154612/system.slice/model-server@llama.service\n'
                  '0::/docker/add0e6154612/system.slice/model-server@llama.service\n')
CGROUP_ELSEWHERE = '9:name=systemd:/docker/add0e6154612/system.slice/systemd-journald.service\n'


def make_proc(tmp_path, pid, cgroup, comm, cmdline):
    add_proc(tmp_path, pid, cgroup, comm, cmdline.split(' '))


@pytest.fixture
def proc_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(_procs, 'PROC_ROOT', str(tmp_path))
    return tmp_path


def test_lists_survivors_of_the_unit_only(proc_tree, run_module):
    make_proc(proc_tree, 4242, CGROUP_IN_UNIT, 'model-worker', 'python3 /opt/model-server/model_server.py --instance llama')
    make_proc(proc_tree, 77, CGROUP_ELSEWHERE, 'systemd-journal', '/lib/systemd/systemd-journald')
    result = run_module(unit_processes, {'units': ['model-server@llama']})
    assert result['count'] == 1
    assert result['empty'] is False
    assert result['units'][0]['unit'] == 'model-server@llama.service'
    assert result['units'][0]['processes'][0]['pid'] == 4242
    assert result['units'][0]['processes'][0]['name'] == 'model-worker'


def test_expect_empty_fails_naming_the_process(proc_tree, run_module):
    make_proc(proc_tree, 4242, CGROUP_IN_UNIT, 'model-worker', 'python3 worker.py')
    result = run_module(unit_processes, {'units': ['model-server@llama.service'], 'expect_empty': True}, expect_failed=True)
    assert 'PID 4242 (model-worker)' in result['msg']
    assert 'model-server@llama.service' in result['msg']


def test_empty_unit_passes(proc_tree, run_module):
    make_proc(proc_tree, 77, CGROUP_ELSEWHERE, 'systemd-journal', '/lib/systemd/systemd-journald')
    result = run_module(unit_processes, {'units': ['model-server@llama.service'], 'expect_empty': True})
    assert result['empty'] is True
    assert result['units'] == [{'unit': 'model-server@llama.service', 'processes': []}]


def test_real_proc_finds_this_process_unit_free():
    # On the real /proc, a unit nobody runs has no processes.
    assert os.path.isdir('/proc/self')
    assert _procs.unit_pids('modelops-no-such-unit.service') == []


def test_units_are_required(run_module):
    result = run_module(unit_processes, {}, expect_failed=True)
    assert 'missing required arguments: units' in result['msg']


def test_expect_empty_must_be_a_boolean(run_module):
    result = run_module(unit_processes, {'units': ['model-server@llama.service'], 'expect_empty': 'perhaps'}, expect_failed=True)
    assert 'expect_empty' in result['msg'] and 'bool' in result['msg']


@pytest.mark.parametrize('name,words', [
    ('model\x00server', "units[0] ('model\\x00server') contains a NUL byte"),
    ('a/b.service', "units[0] ('a/b.service') contains '/'"),
])
def test_unit_names_no_unit_can_have_are_refused(proc_tree, run_module, name, words):
    result = run_module(unit_processes, {'units': [name]}, expect_failed=True)
    assert result['msg'].startswith(words) and result['empty'] is None and result['count'] is None


def test_unlistable_proc_is_unknown_not_empty(tmp_path, monkeypatch, run_module):
    monkeypatch.setattr(_procs, 'PROC_ROOT', str(tmp_path / 'no-proc'))
    result = run_module(unit_processes, {'units': ['model-server@llama']}, expect_failed=True)
    assert result['msg'].startswith('cannot list the processes in %s' % (tmp_path / 'no-proc'))
    assert 'unknown' in result['msg'] and result['empty'] is None and result['count'] is None
