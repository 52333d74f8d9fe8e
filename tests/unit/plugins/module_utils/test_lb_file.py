# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import errno
import os
import stat
import tempfile

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._lb import LBError, make_adapter
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_file import FileAdapter


def test_absent_is_ready(tmp_path):
    info = make_adapter('file', {'path': str(tmp_path / 'maint')}).get_state()
    assert info == {'state': 'ready', 'raw': {'path': str(tmp_path / 'maint'), 'exists': False}, 'in_flight': None}


def test_write_and_remove(tmp_path):
    path = tmp_path / 'maint'
    adapter = FileAdapter({'path': str(path), 'reason': 'kernel\nupgrade'}, now=lambda: '2025-01-02T03:04:05Z')
    adapter.set_state('draining')
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o644
    assert path.read_text() == 'reason: kernel upgrade\nsince: 2025-01-02T03:04:05Z\n'
    info = adapter.get_state()
    assert info['state'] == 'maintenance' and info['raw']['mode'] == '0644' and 'kernel upgrade' in info['raw']['content']
    assert adapter.verify('draining') == (True, 'maintenance flag file %s exists (expected it present)' % path)
    assert os.listdir(str(tmp_path)) == ['maint']   # no temporary file left behind
    adapter.set_state('ready')
    assert not path.exists()
    assert adapter.verify('ready')[0]
    adapter.set_state('ready')   # removing an absent file is fine


def test_default_reason(tmp_path):
    path = tmp_path / 'maint'
    make_adapter('file', {'path': str(path)}).set_state('maintenance')
    assert path.read_text().startswith('reason: modelops.shutdown: maintenance\nsince: ')


def test_missing_parent_fails_unless_asked(tmp_path):
    path = tmp_path / 'run' / 'model' / 'maint'
    with pytest.raises(LBError) as err:
        make_adapter('file', {'path': str(path)}).set_state('maintenance')
    assert str(tmp_path / 'run' / 'model') in str(err.value) and 'create_parent' in str(err.value)
    make_adapter('file', {'path': str(path), 'create_parent': True}).set_state('maintenance')
    assert path.exists()


def test_directory_is_an_error(tmp_path):
    with pytest.raises(LBError, match='is a directory'):
        make_adapter('file', {'path': str(tmp_path)}).get_state()


def test_dangling_symlink_counts_as_present(tmp_path):
    link = tmp_path / 'maint'
    os.symlink(str(tmp_path / 'nowhere'), str(link))
    info = make_adapter('file', {'path': str(link)}).get_state()
    assert info['state'] == 'maintenance' and info['raw']['content'] is None


def test_empty_flag_file(tmp_path):
    path = tmp_path / 'maint'
    path.write_text('')
    info = make_adapter('file', {'path': str(path)}).get_state()
    assert info['state'] == 'maintenance' and info['raw']['content'] == ''


def test_write_error_is_explained(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, 'Read-only file system')

    monkeypatch.setattr(tempfile, 'mkstemp', refuse)
    with pytest.raises(LBError) as err:
        make_adapter('file', {'path': str(tmp_path / 'maint')}).set_state('maintenance')
    assert 'cannot write it' in str(err.value) and 'Read-only file system' in str(err.value) and str(tmp_path) in str(err.value)


def test_failed_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EACCES, 'Permission denied')

    monkeypatch.setattr(os, 'rename', refuse)
    with pytest.raises(LBError, match='Permission denied'):
        make_adapter('file', {'path': str(tmp_path / 'maint')}).set_state('maintenance')
    assert os.listdir(str(tmp_path)) == []


def test_remove_error_is_explained(tmp_path, monkeypatch):
    path = tmp_path / 'maint'
    path.write_text('x')

    def refuse(*args, **kwargs):
        raise OSError(errno.EPERM, 'Operation not permitted')

    monkeypatch.setattr(os, 'unlink', refuse)
    with pytest.raises(LBError, match='cannot remove it.*Operation not permitted'):
        make_adapter('file', {'path': str(path)}).set_state('ready')


def test_path_required():
    with pytest.raises(LBError, match='file.path'):
        make_adapter('file', {})
