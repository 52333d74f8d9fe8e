# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""File adapter: a maintenance flag file that the instance's health check honours.

Private to this collection. The file present means out of service (the health check fails, the
load balancer stops sending), absent means ready. A file cannot tell draining from maintenance:
both write the flag. The file is written atomically (a temporary file in the same directory,
then a rename) with mode 0644; its content is the reason and the time it was set.

A change is one unit with its check: after writing (or removing) the flag the adapter reads it back,
and if it is not what was written, or anything fails on the way, it puts back what was there before
(the previous flag byte for byte, or no flag) and raises C(LBError). C(put_back_on_failure) tells the
manager to undo the change too when a later verification (the health URL) fails. Flag contents are
read as UTF-8 with replacement characters and cut at a character boundary, so that no undecodable
byte reaches a module result.
"""

from __future__ import annotations

import codecs
import datetime
import os
import stat
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._lb import Adapter, LBError

FILE_MODE = 0o644
MAX_CONTENT_CHARS = 500
# Enough bytes for MAX_CONTENT_CHARS characters of up to 4 bytes each, plus one to tell that there is more.
MAX_CONTENT_BYTES = 4 * MAX_CONTENT_CHARS + 1


def read_text_prefix(data, max_chars=MAX_CONTENT_CHARS):
    """C((text, truncated)): at most C(max_chars) characters of the UTF-8 bytes C(data), undecodable bytes
    replaced, never a character cut in two (an incomplete sequence at the end of C(data) is dropped)."""
    text = codecs.getincrementaldecoder('utf-8')('replace').decode(data, final=len(data) < MAX_CONTENT_BYTES)
    return text[:max_chars], len(text) > max_chars or len(data) >= MAX_CONTENT_BYTES


# Markers of what set_state replaced: nothing yet, or a flag that could not be read (so cannot be put back).
_UNCHANGED = object()
_UNREADABLE = object()


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


class FileAdapter(Adapter):
    kind = 'file'
    put_back_on_failure = True

    def __init__(self, params, now=_utc_now):
        super(FileAdapter, self).__init__()
        self.path = params.get('path')
        if not self.path:
            raise LBError('file.path is required: the flag file the health check of the instance looks for.')
        if not isinstance(self.path, str):
            raise LBError('file.path must be a path, got %r.' % (self.path,))
        if '\x00' in self.path:
            raise LBError('Refusing file.path %r: it contains a NUL character, which no file name can hold.' % self.path)
        self.reason = params.get('reason')
        self.create_parent = bool(params.get('create_parent'))
        self.now = now
        self._before = _UNCHANGED   # what set_state replaced, for put_back

    def describe(self):
        return 'maintenance flag file %s' % self.path

    def effective_state(self, state):
        return 'ready' if state == 'ready' else 'maintenance'

    def _get_state(self):
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return {'state': 'ready', 'raw': {'path': self.path, 'exists': False}}
        except OSError as exc:
            raise LBError('%s: cannot read it: %s. Run the task with become if the directory is restricted.' % (
                self.describe(), to_text(exc)))
        if stat.S_ISDIR(st.st_mode):
            raise LBError('%s is a directory, expected a flag file (or nothing). Fix file.path.' % self.path)
        raw = {
            'path': self.path,
            'exists': True,
            'mode': '%04o' % stat.S_IMODE(st.st_mode),
            'mtime': datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        }
        try:
            with open(self.path, 'rb') as handle:
                raw['content'], truncated = read_text_prefix(handle.read(MAX_CONTENT_BYTES))
            if truncated:
                raw['content_truncated'] = True
        except OSError:
            raw['content'] = None
        return {'state': 'maintenance', 'raw': raw}

    def _content(self, state):
        reason = self.reason or 'modelops.shutdown: %s' % state
        # One line: control characters (newlines included) become spaces.
        reason = ''.join(' ' if ord(char) < 0x20 or ord(char) == 0x7f else char for char in reason)
        return 'reason: %s\nsince: %s\n' % (reason, self.now())

    def _snapshot(self):
        """What is at the path now: C(None) (nothing), C(('symlink', target)), or C((bytes, mode)) of the flag."""
        if os.path.islink(self.path):
            try:
                return 'symlink', os.readlink(self.path)
            except OSError as exc:
                raise LBError('%s: cannot read the link before changing it: %s.' % (
                    self.describe(), to_text(exc, errors='surrogate_or_replace')))
        try:
            with open(self.path, 'rb') as handle:
                data = handle.read()
            return data, stat.S_IMODE(os.stat(self.path).st_mode)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LBError('%s: cannot read it before changing it: %s. Run the task with become if the directory is '
                          'restricted.' % (self.describe(), to_text(exc, errors='surrogate_or_replace')))

    def _put_snapshot(self, snapshot):
        """Make the path hold C(snapshot) again; a sentence saying what was done. Raises C(LBError) or C(OSError)."""
        if snapshot is None:
            self._remove()
            return 'removed the flag again'
        if snapshot[0] == 'symlink':
            self._remove()
            os.symlink(snapshot[1], self.path)
            return 'put the previous symbolic link back'
        self._write(snapshot[0], mode=snapshot[1])
        return 'put the previous flag back'

    def _restore(self, snapshot):
        """Put back C(snapshot); a message saying what happened (never raises)."""
        try:
            return self._put_snapshot(snapshot)
        except (LBError, OSError) as exc:
            return 'putting the previous state back failed too: %s' % to_text(exc, errors='surrogate_or_replace')

    def put_back(self):
        """Undo the last C(set_state): the path holds again exactly what it held before (the manager calls this
        when a later verification fails). Raises C(LBError) if that is not possible."""
        if self._before is _UNCHANGED:
            return
        if self._before is _UNREADABLE:
            raise LBError('%s: the flag it replaced could not be read, so it cannot be put back; recreate it by hand.'
                          % self.describe())
        try:
            self._put_snapshot(self._before)
        except OSError as exc:
            raise LBError('%s: cannot put the previous state back: %s.' % (self.describe(), to_text(exc, errors='surrogate_or_replace')))

    def set_state(self, state):
        """Write or remove the flag, read it back, and put back what was there if it is not as asked."""
        if self.effective_state(state) == 'ready':
            try:
                self._before = self._snapshot()
            except LBError:
                self._before = _UNREADABLE   # removing it does not need its content; putting it back would
            self._remove()
            if os.path.lexists(self.path):
                raise LBError('%s: still there after removing it (something else writes it?).' % self.describe())
            return
        snapshot = self._before = self._snapshot()
        content = to_bytes(self._content(state))
        self._write(content)   # raises with nothing changed: the rename is the last step
        try:
            try:
                with open(self.path, 'rb') as handle:
                    written = handle.read(len(content) + 1)
            except OSError as exc:
                raise LBError('%s: cannot read it back after writing it: %s' % (
                    self.describe(), to_text(exc, errors='surrogate_or_replace')))
            if written != content:
                raise LBError('%s: reads back differently from what was written (something else writes it?)' % self.describe())
        except LBError as exc:
            raise LBError('%s; %s.' % (str(exc).rstrip('.'), self._restore(snapshot)))

    def _remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LBError('%s: cannot remove it: %s. Run the task with become or fix the permissions.' % (
                self.describe(), to_text(exc)))

    def _write(self, content, mode=FILE_MODE):
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            if not self.create_parent:
                raise LBError('%s: the directory %s does not exist. Create it (it usually belongs to the model server '
                              'package), or set file.create_parent=true to let this module create it.' % (self.describe(), parent))
            try:
                os.makedirs(parent, 0o755)
            except OSError as exc:
                raise LBError('%s: cannot create the directory %s: %s.' % (self.describe(), parent, to_text(exc)))
        tmp_path = None
        try:
            fd, tmp_path = tempfile.mkstemp(prefix='.%s.' % os.path.basename(self.path), dir=parent)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(to_bytes(content))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_path, mode)
            os.rename(tmp_path, self.path)
            tmp_path = None
        except OSError as exc:
            raise LBError('%s: cannot write it: %s. Run the task with become or fix the permissions of %s.' % (
                self.describe(), to_text(exc, errors='surrogate_or_replace'), parent))
        finally:
            if tmp_path is not None and os.path.exists(tmp_path):
                os.unlink(tmp_path)

    def verify(self, state):
        target = self.effective_state(state)
        info = self.get_state()
        ok = info['state'] == target
        return ok, '%s %s (expected it %s)' % (self.describe(), 'exists' if info['raw']['exists'] else 'is absent',
                                               'absent' if target == 'ready' else 'present')
