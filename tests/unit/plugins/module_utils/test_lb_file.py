# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._lb import LBError, make_adapter
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_file import MAX_CONTENT_BYTES, FileAdapter, read_text_prefix


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


# ----------------------------------------------------------------------------------------- bad input, atomic change

def test_nul_in_path_is_refused():
    with pytest.raises(LBError) as err:
        make_adapter('file', {'path': '/run/model/maint\x00x'})
    assert 'Refusing file.path' in str(err.value) and 'NUL character' in str(err.value)


def test_long_multibyte_reason_reads_back_without_a_split_character(tmp_path):
    """A reason of 300 two-byte characters: the 500-character read must not cut one in two (no lone surrogate)."""
    path = tmp_path / 'maint'
    adapter = FileAdapter({'path': str(path), 'reason': 'é' * 300 + 'x' * 300}, now=lambda: '2025-01-02T03:04:05Z')
    adapter.set_state('maintenance')
    raw = adapter.get_state()['raw']
    json.dumps(raw).encode('utf-8')   # serializable as a module result
    assert raw['content'].startswith('reason: ' + 'é' * 300) and len(raw['content']) == 500
    assert raw['content_truncated'] is True
    assert '\ufffd' not in raw['content']


def test_cut_inside_a_character_is_dropped_not_replaced():
    """Where the read stops inside a character (more follows), the partial character is dropped."""
    data = ('é' * 1500).encode('utf-8')[:MAX_CONTENT_BYTES]   # 1000 characters and one byte of the next
    text, truncated = read_text_prefix(data, max_chars=5000)
    assert text == 'é' * 1000 and truncated is True
    # At the end of a file, an incomplete sequence is invalid UTF-8: replaced, never a lone surrogate.
    assert read_text_prefix(b'ok \xc3') == ('ok \ufffd', False)


def test_non_utf8_flag_content_is_replaced(tmp_path):
    path = tmp_path / 'maint'
    path.write_bytes(b'reason: \xff\xfe legacy tool\n')
    raw = make_adapter('file', {'path': str(path)}).get_state()['raw']
    assert raw['content'] == 'reason: \ufffd\ufffd legacy tool\n'
    json.dumps(raw).encode('utf-8')


def test_control_characters_in_reason_become_spaces(tmp_path):
    path = tmp_path / 'maint'
    FileAdapter({'path': str(path), 'reason': 'a\r\nb\tc\x00d'}, now=lambda: 'T').set_state('maintenance')
    assert path.read_bytes() == b'reason: a  b c d\nsince: T\n'


@pytest.fixture
def overwritten_after_rename(monkeypatch):
    """os.rename that lets something else overwrite the flag right after the rename (a concurrent writer)."""
    real_rename = os.rename

    def rename(src, dst):
        real_rename(src, dst)
        with open(dst, 'wb') as handle:
            handle.write(b'someone else\n')

    monkeypatch.setattr(os, 'rename', rename)
    return real_rename


def test_flag_that_reads_back_wrong_is_removed_again(tmp_path, overwritten_after_rename):
    path = tmp_path / 'maint'
    with pytest.raises(LBError) as err:
        make_adapter('file', {'path': str(path)}).set_state('maintenance')
    assert 'reads back differently from what was written' in str(err.value) and 'removed the flag again' in str(err.value)
    assert not path.exists()


def test_flag_that_reads_back_wrong_puts_the_previous_flag_back(tmp_path, monkeypatch):
    path = tmp_path / 'maint'
    path.write_bytes(b'reason: operator\n')
    os.chmod(str(path), 0o600)
    adapter = make_adapter('file', {'path': str(path)})
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        real_rename(src, dst)
        calls.append(dst)
        if len(calls) == 1:   # the change, not the put-back
            with open(dst, 'wb') as handle:
                handle.write(b'someone else\n')

    monkeypatch.setattr(os, 'rename', rename)
    with pytest.raises(LBError, match='put the previous flag back'):
        adapter.set_state('maintenance')
    assert path.read_bytes() == b'reason: operator\n' and stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600


def test_failed_write_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / 'maint'
    path.write_bytes(b'reason: operator\n')

    def refuse(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', refuse)
    with pytest.raises(LBError, match='No space left on device'):
        make_adapter('file', {'path': str(path)}).set_state('maintenance')
    assert path.read_bytes() == b'reason: operator\n' and os.listdir(str(tmp_path)) == ['maint']
