# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""File adapter: a maintenance flag file that the instance's health check honours.

Private to this collection. The file present means out of service (the health check fails, the
load balancer stops sending), absent means ready. A file cannot tell draining from maintenance:
both write the flag. The file is written atomically (a temporary file in the same directory,
then a rename) with mode 0644; its content is the reason and the time it was set.
"""

from __future__ import annotations

import datetime
import os
import stat
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._lb import Adapter, LBError

FILE_MODE = 0o644
MAX_CONTENT_CHARS = 500


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


class FileAdapter(Adapter):
    kind = 'file'

    def __init__(self, params, now=_utc_now):
        super(FileAdapter, self).__init__()
        self.path = params.get('path')
        if not self.path:
            raise LBError('file.path is required: the flag file the health check of the instance looks for.')
        self.reason = params.get('reason')
        self.create_parent = bool(params.get('create_parent'))
        self.now = now

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
                raw['content'] = to_text(handle.read(MAX_CONTENT_CHARS), errors='surrogate_or_replace')
        except OSError:
            raw['content'] = None
        return {'state': 'maintenance', 'raw': raw}

    def _content(self, state):
        reason = self.reason or 'modelops.shutdown: %s' % state
        return 'reason: %s\nsince: %s\n' % (reason.replace('\n', ' '), self.now())

    def set_state(self, state):
        if self.effective_state(state) == 'ready':
            self._remove()
        else:
            self._write(self._content(state))

    def _remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LBError('%s: cannot remove it: %s. Run the task with become or fix the permissions.' % (
                self.describe(), to_text(exc)))

    def _write(self, content):
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
            os.chmod(tmp_path, FILE_MODE)
            os.rename(tmp_path, self.path)
            tmp_path = None
        except OSError as exc:
            raise LBError('%s: cannot write it: %s. Run the task with become or fix the permissions of %s.' % (
                self.describe(), to_text(exc), parent))
        finally:
            if tmp_path is not None and os.path.exists(tmp_path):
                os.unlink(tmp_path)

    def verify(self, state):
        target = self.effective_state(state)
        info = self.get_state()
        ok = info['state'] == target
        return ok, '%s %s (expected it %s)' % (self.describe(), 'exists' if info['raw']['exists'] else 'is absent',
                                               'absent' if target == 'ready' else 'present')
