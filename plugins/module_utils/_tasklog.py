# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Task log reconciliation: which accepted requests never finished, and handing them back.

Private to this collection. A task log is JSON lines, one record per event, as the reference model
server writes it (C(tests/fleet/model_server.py))::

    {"event":"started","id":"r1","ts":1714564800.25,"instance":"gpu-07","model":"opt-125m"}
    {"event":"completed","id":"r1","ts":1714564801.5,"status":200,"duration":1.25,"instance":"gpu-07"}
    {"event":"aborted","id":"r2","ts":1714564802.0,"error":"BrokenPipeError: ...","instance":"gpu-07"}

Pairing (C(Reconciler)):

* Records are paired by request id across all files, in any order (rotated logs may be given
  newest first; an end may be read before its start). Ids are compared as text, so C(7) and C("7")
  are the same request.
* An id may be reused (clients can send their own C(X-Request-Id)): every end closes one start of
  that id, the earliest one still open.
* A start without an end is incomplete. An end without a start (its start is in a file that was not
  read, or was rotated away) is counted as unmatched, never listed as incomplete.
* Requests that started before C(since) are left out of every count; pairing still sees them so
  their ends are not mistaken for unmatched ones.
* C(started_count == completed_count + ended_count + incomplete_count) always holds.

A line is malformed when it is not UTF-8, not JSON (or nested too deeply to read), not a JSON
object, has no event key, is longer than C(max_line_bytes), or is a start or end record without a
usable id, or a start without a usable time (an end's time is optional). Blank lines are skipped.
Records with any other event value are counted as C(other). Files compressed with gzip (rotated
logs) are read transparently.

Reading is bounded: only regular files are opened (a FIFO, a device such as C(/dev/zero), a socket
or a directory is refused before it is opened, and the file is opened with C(O_NONBLOCK) and checked
again with C(fstat)); at most C(max_file_bytes) bytes (after decompression) are read per file,
and a file over that is reported (C(capped)) rather than read on. The same file under two names
(C(/var/log//x.jsonl), a symlink, a hard link) is read once: files are told apart by
C((st_dev, st_ino)).
"""

from __future__ import annotations

import datetime
import errno
import gzip
import json
import math
import os
import re
import stat
import zlib

from ansible.module_utils.common.text.converters import to_native, to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError, request

MALFORMED_SAMPLES = 10
# Defaults of the reading bounds (options of task_log_reconcile).
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024
MAX_RECORD_CHARS = 2048
MAX_LISTED = 100
_SKIP_CHUNK = 64 * 1024
_GZIP_MAGIC = b'\x1f\x8b'
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MIN_TS = (datetime.datetime(1, 1, 2, tzinfo=datetime.timezone.utc) - _EPOCH).total_seconds()
_MAX_TS = (datetime.datetime(9999, 12, 30, tzinfo=datetime.timezone.utc) - _EPOCH).total_seconds()
# Any number of fraction digits (Go's RFC 3339 with nanoseconds trims trailing zeros); Python 3.8 takes 3 or 6 only.
_FRACTION = re.compile(r'(\d\d:\d\d:\d\d)[.,](\d+)')


class TaskLogError(Exception):
    """A task log could not be read; the message names the file and says what to do."""


class LogFormat(object):
    """Which keys and values a task log uses. The defaults are those of the reference model server."""

    def __init__(self, id_key='id', event_key='event', time_key='ts', started_value='started',
                 completed_value='completed', ended_values=('aborted',)):
        self.id_key = id_key
        self.event_key = event_key
        self.time_key = time_key
        self.started_value = started_value
        self.completed_value = completed_value
        self.ended_values = tuple(ended_values or ())

    def problems(self):
        """Return a list of what is wrong with this format (empty when it is usable)."""
        found = []
        for name in ('id_key', 'event_key', 'time_key', 'started_value', 'completed_value'):
            if not getattr(self, name):
                found.append('%s must not be empty' % name)
        if len({self.id_key, self.event_key, self.time_key}) != 3:
            found.append('id_key, event_key and time_key must be three different keys')
        if self.started_value == self.completed_value:
            found.append('started_value and completed_value must differ')
        for value in self.ended_values:
            if not value:
                found.append('ended_values must not contain an empty value')
            elif value in (self.started_value, self.completed_value):
                found.append('ended_values must not contain %r, which is started_value or completed_value' % value)
        return found


def parse_time(value):
    """Return epoch seconds (float) from a log time: a number, a numeric string, or an ISO 8601 string.

    An ISO 8601 time without an offset is read as UTC. Raises C(ValueError) for anything else,
    including booleans, NaN, infinities and times outside the years 1 to 9999.
    """
    if isinstance(value, bool):
        raise ValueError('a boolean is not a time')
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_iso(text)
    else:
        raise ValueError('a %s is not a time' % type(value).__name__)
    if math.isnan(seconds) or math.isinf(seconds) or not _MIN_TS <= seconds <= _MAX_TS:
        raise ValueError('%r is not a usable time' % (value,))
    return seconds


def _parse_iso(text):
    candidate = text
    if candidate[-1:] in ('Z', 'z'):
        candidate = candidate[:-1] + '+00:00'
    candidate = _FRACTION.sub(lambda m: '%s.%s' % (m.group(1), m.group(2)[:6].ljust(6, '0')), candidate, count=1)
    try:
        moment = datetime.datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError('%r is neither epoch seconds nor an ISO 8601 time' % (text,))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return (moment - _EPOCH).total_seconds()


def iso_utc(seconds):
    """Epoch seconds as ISO 8601 UTC with milliseconds, e.g. C(2024-05-01T12:00:00.250Z)."""
    moment = _EPOCH + datetime.timedelta(seconds=seconds)
    return moment.isoformat(timespec='milliseconds').replace('+00:00', 'Z')


class _Start(object):
    __slots__ = ('id', 'ts', 'path', 'line', 'record')

    def __init__(self, request_id, ts, path, line, record):
        self.id = request_id
        self.ts = ts
        self.path = path
        self.line = line
        self.record = record


def _file_kind(mode):
    """What a non-regular file is, in words (for the refusal message)."""
    for test, name in ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO (named pipe)'),
                       (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
                       (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return name
    return 'not a regular file'


class Reconciler(object):
    """Reads task logs and pairs their records; see the module docstring for the rules.

    C(max_file_bytes) and C(max_line_bytes) bound what is read (per file, after decompression,
    and per line).
    """

    def __init__(self, log_format=None, since=None, max_file_bytes=MAX_FILE_BYTES, max_line_bytes=MAX_LINE_BYTES):
        self.fmt = log_format or LogFormat()
        self.since = since
        self.max_file_bytes = max_file_bytes
        self.max_line_bytes = max_line_bytes
        self.files = []
        self.malformed_lines = 0
        self.malformed_samples = []
        self.started_count = 0
        self.completed_count = 0
        self.ended_count = 0
        self.started_before_since = 0
        self.other_events = 0
        self._open = {}      # id text -> [_Start] not yet closed
        self._pending = {}   # id text -> [(kind, ts)] ends read before their start
        self._seen = {}      # (st_dev, st_ino) -> the path that file was first read under

    # ---------------------------------------------------------------- reading

    def _stat_error(self, path, exc, missing_ok, info):
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if missing_ok:
                info['exists'] = False
                self.files.append(info)
                return info
            raise TaskLogError('task log %s does not exist; check paths (and the server\'s TASK_LOG setting), '
                               'or set missing_ok=true for hosts that may never have written one' % path)
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise TaskLogError('cannot read task log %s: permission denied; run the task with become: true '
                               'or as a user that can read it' % path)
        if exc.errno == errno.ENXIO:
            raise TaskLogError('task log %s is a socket (or a device without a driver), not a regular file; list the log '
                               'files themselves in paths' % path)
        raise TaskLogError('cannot read task log %s: %s' % (path, to_native(exc)))

    def read_path(self, path, missing_ok=False):
        """Read one task log file (plain or gzip). Raises C(TaskLogError) when it cannot be read.

        Only a regular file is opened (see the module docstring); one already read under another name
        is not read again (its entry has C(duplicate_of)). C(capped) in the returned entry says the file
        was longer than C(max_file_bytes) and only that much was read.
        """
        info = {'path': path, 'exists': True, 'compressed': False, 'lines': 0, 'malformed_lines': 0,
                'started': 0, 'completed': 0, 'ended': 0, 'other': 0, 'bytes_read': 0, 'capped': False,
                'duplicate_of': None}
        if '\x00' in path:
            raise TaskLogError('task log path %r contains a NUL byte, which no file name can; fix paths' % path)
        try:
            before = os.stat(path)
        except OSError as exc:
            return self._stat_error(path, exc, missing_ok, info)
        if not stat.S_ISREG(before.st_mode):
            what = _file_kind(before.st_mode)
            if what == 'a directory':
                raise TaskLogError('task log %s is a directory, not a file; list the log files themselves in paths' % path)
            raise TaskLogError('task log %s is %s, not a regular file, so it is not read (it could block or never end); '
                               'list the log files themselves in paths' % (path, what))
        key = (before.st_dev, before.st_ino)
        if key in self._seen:
            info['duplicate_of'] = self._seen[key]
            self.files.append(info)
            return info
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_NOCTTY', 0))
        except OSError as exc:
            return self._stat_error(path, exc, missing_ok, info)
        try:
            now = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise TaskLogError('cannot read task log %s: %s' % (path, to_native(exc)))
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != key:
            os.close(fd)
            raise TaskLogError('task log %s was replaced while it was opened (it is now %s); run again'
                               % (path, 'a regular file' if stat.S_ISREG(now.st_mode) else _file_kind(now.st_mode)))
        self._seen[key] = path
        handle = os.fdopen(fd, 'rb')
        try:
            with handle:
                if handle.read(2) == _GZIP_MAGIC:
                    info['compressed'] = True
                    handle.seek(0)
                    with gzip.GzipFile(fileobj=handle, mode='rb') as unzipped:
                        self._read_lines(unzipped, info)
                else:
                    handle.seek(0)
                    self._read_lines(handle, info)
        except (IOError, OSError, EOFError, zlib.error) as exc:
            raise TaskLogError('cannot read task log %s after line %d: %s; if it is a gzip file it may be truncated, '
                               'corrupt or still being written' % (path, info['lines'], to_native(exc)))
        self.files.append(info)
        return info

    def _read_lines(self, handle, info):
        """Feed the lines of C(handle), at most C(max_file_bytes) bytes and C(max_line_bytes) per line."""
        max_line = self.max_line_bytes
        while True:
            remaining = self.max_file_bytes - info['bytes_read']
            if remaining <= 0:
                if handle.read(1):
                    info['capped'] = True
                return
            limit = min(max_line + 1, remaining)
            raw = handle.readline(limit)
            if not raw:
                return
            info['bytes_read'] += len(raw)
            if raw.endswith(b'\n') or len(raw) < limit:
                info['lines'] += 1
                self.feed(raw, info, info['lines'])
                continue
            if limit == remaining and remaining <= max_line:
                # The cap falls inside this line: the partial line is not used.
                info['capped'] = True
                return
            info['lines'] += 1
            self._malformed(info, info['lines'], 'longer than max_line_bytes=%d bytes; skipped' % max_line)
            while not raw.endswith(b'\n'):
                remaining = self.max_file_bytes - info['bytes_read']
                if remaining <= 0:
                    if handle.read(1):
                        info['capped'] = True
                    return
                raw = handle.readline(min(_SKIP_CHUNK, remaining))
                if not raw:
                    return
                info['bytes_read'] += len(raw)

    def feed(self, raw, info, line_no):
        """Account for one raw line (bytes or text) of the file described by C(info)."""
        if isinstance(raw, bytes):
            if not raw.strip():
                return
            try:
                text = raw.decode('utf-8')
            except UnicodeDecodeError:
                self._malformed(info, line_no, 'not UTF-8')
                return
        else:
            text = raw
        text = text.strip()
        if not text:
            return
        try:
            record = json.loads(text)
        except ValueError as exc:
            self._malformed(info, line_no, 'not JSON (%s)' % exc)
            return
        except RecursionError:
            self._malformed(info, line_no, 'JSON nested too deeply to read')
            return
        if not isinstance(record, dict):
            self._malformed(info, line_no, 'not a JSON object')
            return
        fmt = self.fmt
        if fmt.event_key not in record:
            self._malformed(info, line_no, 'no %r key' % fmt.event_key)
            return
        event = record[fmt.event_key]
        if event == fmt.started_value:
            kind = 'started'
        elif event == fmt.completed_value:
            kind = 'completed'
        elif isinstance(event, str) and event in fmt.ended_values:
            kind = 'ended'
        else:
            info['other'] += 1
            self.other_events += 1
            return
        request_id = record.get(fmt.id_key)
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)) or request_id == '':
            if fmt.id_key not in record:
                reason = '%s record without %r key' % (event, fmt.id_key)
            else:
                reason = '%s record whose %r is not a non-empty string or integer' % (event, fmt.id_key)
            self._malformed(info, line_no, reason)
            return
        ts = None
        if fmt.time_key in record:
            try:
                ts = parse_time(record[fmt.time_key])
            except ValueError as exc:
                self._malformed(info, line_no, '%s record with a bad %r: %s' % (event, fmt.time_key, exc))
                return
        elif kind == 'started':
            self._malformed(info, line_no, '%s record without %r key' % (event, fmt.time_key))
            return
        info[kind] += 1
        key = to_text(request_id)
        if kind == 'started':
            self._start(_Start(request_id, ts, info['path'], line_no, record))
        else:
            self._end(key, kind, ts)

    def _malformed(self, info, line_no, reason):
        info['malformed_lines'] += 1
        self.malformed_lines += 1
        if len(self.malformed_samples) < MALFORMED_SAMPLES:
            self.malformed_samples.append({'path': info['path'], 'line': line_no, 'reason': reason})

    def _in_window(self, ts):
        return self.since is None or ts >= self.since

    def _start(self, start):
        if self._in_window(start.ts):
            self.started_count += 1
        else:
            self.started_before_since += 1
        key = to_text(start.id)
        pending = self._pending.get(key)
        if pending:
            kind = pending.pop(0)[0]
            if not pending:
                del self._pending[key]
            self._close(start, kind)
        else:
            self._open.setdefault(key, []).append(start)

    def _end(self, key, kind, ts):
        starts = self._open.get(key)
        if not starts:
            self._pending.setdefault(key, []).append((kind, ts))
            return
        earliest = min(range(len(starts)), key=lambda i: (starts[i].ts, i))
        start = starts.pop(earliest)
        if not starts:
            del self._open[key]
        self._close(start, kind)

    def _close(self, start, kind):
        if self._in_window(start.ts):
            if kind == 'completed':
                self.completed_count += 1
            else:
                self.ended_count += 1

    # ---------------------------------------------------------------- results

    def incomplete(self):
        """Every start still open and in the window, oldest first (ties in reading order)."""
        found = [s for starts in self._open.values() for s in starts if self._in_window(s.ts)]
        order = dict((p['path'], i) for i, p in enumerate(self.files))
        found.sort(key=lambda s: (s.ts, order.get(s.path, 0), s.line))
        return found

    def unmatched_count(self):
        """Ends whose start was never read (ends timed before C(since) are not counted)."""
        return sum(1 for ends in self._pending.values() for _kind, ts in ends
                   if ts is None or self._in_window(ts))

    def describe(self, start, max_chars=None):
        """The returned record of an incomplete start; with C(max_chars) its id and fields are cut to about
        that many characters (C(truncated) says so): a value that does not fit is cut to a string, and the
        fields after it are left out."""
        fmt = self.fmt
        skip = (fmt.id_key, fmt.event_key, fmt.time_key)
        fields = dict((k, v) for k, v in start.record.items() if k not in skip)
        request_id = start.id
        truncated = False
        if max_chars is not None:
            if isinstance(request_id, str) and len(request_id) > max_chars:
                request_id = request_id[:max_chars]
                truncated = True
            fields, cut = _bounded_fields(fields, max_chars)
            truncated = truncated or cut
        return {
            'id': request_id,
            'started_ts': start.ts,
            'started_at': iso_utc(start.ts),
            'path': start.path,
            'line': start.line,
            'fields': fields,
            'truncated': truncated,
        }

    def summary(self, max_listed=MAX_LISTED, max_record_chars=MAX_RECORD_CHARS):
        """The counts and the bounded sample of incomplete requests, as the module returns them.

        C(state) is C(no_task_log) (and C(incomplete_count) C(None)) when files were listed and none exists,
        C(capped) when a file was longer than C(max_file_bytes), else C(read).
        """
        incomplete = self.incomplete()
        if self.files and not any(p['exists'] for p in self.files):
            state = 'no_task_log'
        elif any(p['capped'] for p in self.files):
            state = 'capped'
        else:
            state = 'read'
        return {
            'state': state,
            'incomplete': [self.describe(s, max_record_chars) for s in incomplete[:max_listed]],
            'incomplete_count': len(incomplete) if state != 'no_task_log' else None,
            'truncated': len(incomplete) > max_listed,
            'started_count': self.started_count,
            'completed_count': self.completed_count,
            'ended_count': self.ended_count,
            'unmatched_count': self.unmatched_count(),
            'started_before_since': self.started_before_since,
            'other_events': self.other_events,
            'malformed_lines': self.malformed_lines,
            'malformed_samples': list(self.malformed_samples),
            'paths': [dict(p) for p in self.files],
        }


def _bounded_fields(fields, budget):
    """C(fields) cut to about C(budget) characters of keys and (JSON) values; returns C((fields, cut))."""
    out = {}
    cut = False
    for key, value in fields.items():
        if budget <= 0:
            return out, True
        key = to_text(key)
        if len(key) >= budget:
            out[key[:budget]] = ''
            return out, True
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(value)
            except (TypeError, ValueError, RecursionError):
                text = to_text(repr(value))
        cost = len(key) + len(text)
        if cost <= budget:
            out[key] = value
            budget -= cost
            continue
        out[key] = text[:budget - len(key)]
        return out, True
    return out, cut


# -------------------------------------------------------------------- resubmission

def resubmit(starts, url, method='POST', token=None, headers=None, validate_certs=True, ca_path=None,
             timeout=30.0, batch=True, stop_on_error=True):
    """Send the started records of C(starts) (C(_Start) objects) to C(url); return one outcome per request.

    In batch mode one request carries the JSON list of all records; otherwise each record is sent on
    its own, in start order, and with C(stop_on_error) nothing more is sent after the first failure.
    A request is ok when it answers a 2xx status. Nothing is sent for an empty C(starts).
    """
    outcomes = []
    if not starts:
        return outcomes
    if batch:
        outcome = _send(url, method, [s.record for s in starts], token, headers, validate_certs, ca_path, timeout)
        outcome['ids'] = [s.id for s in starts]
        outcome['count'] = len(starts)
        outcomes.append(outcome)
        return outcomes
    for start in starts:
        outcome = _send(url, method, start.record, token, headers, validate_certs, ca_path, timeout)
        outcome['id'] = start.id
        outcome['count'] = 1
        outcomes.append(outcome)
        if stop_on_error and not outcome['ok']:
            break
    return outcomes


def _send(url, method, body, token, headers, validate_certs, ca_path, timeout):
    try:
        resp = request(url, method=method, body=body, headers=headers, token=token, timeout=timeout,
                       validate_certs=validate_certs, ca_path=ca_path)
    except HttpError as exc:
        return {'status': exc.status, 'ok': False, 'error': to_text(exc)}
    if 200 <= resp.status < 300:
        return {'status': resp.status, 'ok': True, 'error': None}
    return {'status': resp.status, 'ok': False,
            'error': '%s %s returned HTTP %s: %s' % (method, url, resp.status, resp.mask(resp.body[:200]))}


# -------------------------------------------------------------------- the task_log_reconcile workflow

def argument_spec():
    """The options of C(task_log_reconcile)."""
    return dict(
        paths=dict(type='list', elements='path', required=True),
        missing_ok=dict(type='bool', default=False),
        id_key=dict(type='str', default='id', no_log=False),
        event_key=dict(type='str', default='event', no_log=False),
        started_value=dict(type='str', default='started'),
        completed_value=dict(type='str', default='completed'),
        ended_values=dict(type='list', elements='str', default=['aborted']),
        time_key=dict(type='str', default='ts', no_log=False),
        since=dict(type='float'),
        max_listed=dict(type='int', default=MAX_LISTED),
        max_record_chars=dict(type='int', default=MAX_RECORD_CHARS),
        max_file_bytes=dict(type='int', default=MAX_FILE_BYTES),
        max_line_bytes=dict(type='int', default=MAX_LINE_BYTES),
        max_malformed=dict(type='int', default=0),
        fail_on_malformed=dict(type='bool', default=False),
        resubmit=dict(
            type='dict',
            options=dict(
                url=dict(type='str', required=True),
                method=dict(type='str', default='POST', choices=['POST', 'PUT']),
                token=dict(type='str', no_log=True),
                headers=dict(type='dict', default={}),
                validate_certs=dict(type='bool', default=True),
                ca_path=dict(type='path'),
                timeout=dict(type='float', default=30.0),
                batch=dict(type='bool', default=True),
                on_error=dict(type='str', default='fail', choices=['fail', 'warn']),
            ),
        ),
    )


def _with_defaults(spec, params):
    """C(params) with every option of C(spec) present (missing ones at their default), suboptions too."""
    full = dict((name, option.get('default')) for name, option in spec.items())
    full.update(params or {})
    for name, option in spec.items():
        if option.get('options') and isinstance(full[name], dict):
            full[name] = _with_defaults(option['options'], full[name])
    return full


def _empty_result():
    return {'changed': False, 'state': 'error', 'incomplete': [], 'incomplete_count': None, 'truncated': False,
            'started_count': 0,
            'completed_count': 0, 'ended_count': 0, 'unmatched_count': 0, 'started_before_since': 0,
            'other_events': 0, 'malformed_lines': 0, 'malformed_samples': [], 'paths': [],
            'would_resubmit': 0, 'resubmitted': []}


def _unique(paths):
    """C(paths) without repeats of one spelling (C(/var/log//x.jsonl) and C(/var/log/x.jsonl) are one); files
    reached by two different names (a symlink, a hard link) are told apart by inode when they are read."""
    seen = set()
    found = []
    for path in paths:
        key = os.path.normpath(path)
        if key not in seen:
            seen.add(key)
            found.append(path)
    return found


def _describe_malformed(result):
    where = ', '.join('%s:%s (%s)' % (s['path'], s['line'], s['reason']) for s in result['malformed_samples'][:3])
    more = '' if result['malformed_lines'] <= 3 else ', ...'
    return '%d malformed line(s) in the task logs: %s%s' % (result['malformed_lines'], where, more)


def reconcile(params, check_mode=False, warn=None):
    """Do what C(task_log_reconcile) does with C(params) (its options, defaulted as its argument spec does).

    Returns C((result, failure_msg)): C(result) is what the module returns (it has no C(msg));
    C(failure_msg) is C(None) when the module would succeed, else the message it fails with.
    C(warn(msg)) receives the warnings (ignored when C(None)).
    """
    warn = warn or (lambda msg: None)
    params = _with_defaults(argument_spec(), params)
    result = _empty_result()

    for name in ('max_listed', 'max_malformed'):
        if params[name] < 0:
            return result, '%s must be 0 or more, got %d' % (name, params[name])
    for name in ('max_record_chars', 'max_file_bytes', 'max_line_bytes'):
        if params[name] < 1:
            return result, '%s must be 1 or more, got %d' % (name, params[name])
    since = params['since']
    if since is not None and (not isinstance(since, (int, float)) or isinstance(since, bool) or not math.isfinite(since)):
        return result, ('since must be a finite number of epoch seconds, got %s (a NaN or infinite since would leave every '
                        'request out of the counts)' % (since,))
    for index, path in enumerate(params['paths'] or ()):
        if path and '\x00' in path:
            return result, 'paths[%d] (%r) contains a NUL byte, which no file name can; fix paths' % (index, path)
    paths = _unique([p for p in params['paths'] or () if p])
    if not paths:
        return result, 'paths must name at least one task log file'
    log_format = LogFormat(id_key=params['id_key'], event_key=params['event_key'], time_key=params['time_key'],
                           started_value=params['started_value'], completed_value=params['completed_value'],
                           ended_values=params['ended_values'])
    problems = log_format.problems()
    if problems:
        return result, 'invalid log format: %s' % '; '.join(problems)

    reconciler = Reconciler(log_format, since=since, max_file_bytes=params['max_file_bytes'],
                            max_line_bytes=params['max_line_bytes'])
    try:
        for path in paths:
            reconciler.read_path(path, missing_ok=params['missing_ok'])
    except TaskLogError as exc:
        result.update(reconciler.summary(params['max_listed'], params['max_record_chars']))
        result.update(state='error', incomplete_count=None)
        return result, str(exc)
    result.update(reconciler.summary(params['max_listed'], params['max_record_chars']))

    if result['state'] == 'no_task_log':
        warn('no task log found: none of %s exists, so nothing about unfinished requests is known (state=no_task_log)'
             % ', '.join(paths))
        return result, None
    if result['state'] == 'capped':
        capped = [p['path'] for p in result['paths'] if p['capped']]
        limit = params['max_file_bytes']
        return result, ('task log(s) %s are longer than max_file_bytes=%d: only the first %d bytes of each were read, so '
                        'the counts are incomplete and nothing was resubmitted. What to do: raise max_file_bytes, or rotate '
                        'the log and list the rotated files' % (', '.join(capped), limit, limit))

    if result['malformed_lines'] > params['max_malformed']:
        message = _describe_malformed(result)
        if params['fail_on_malformed']:
            return result, ('%s; more than max_malformed=%d%s. Fix or rotate the log, check the format options, '
                            'or raise max_malformed' % (message, params['max_malformed'],
                                                        ', so nothing was resubmitted' if params['resubmit'] else ''))
        warn('%s (more than max_malformed=%d); they were skipped' % (message, params['max_malformed']))

    options = params['resubmit']
    if options is None or not result['incomplete_count']:
        return result, None

    result['would_resubmit'] = result['incomplete_count']
    if check_mode:
        result['changed'] = True
        return result, None

    outcomes = resubmit(reconciler.incomplete(), options['url'], method=options['method'], token=options['token'],
                        headers=options['headers'], validate_certs=options['validate_certs'],
                        ca_path=options['ca_path'], timeout=options['timeout'], batch=options['batch'],
                        stop_on_error=options['on_error'] == 'fail')
    result['resubmitted'] = outcomes
    result['changed'] = any(o['ok'] for o in outcomes)
    failed = [o for o in outcomes if not o['ok']]
    if failed:
        total = len(reconciler.incomplete())
        sent_ok = sum(o['count'] for o in outcomes if o['ok'])
        not_sent = total - sum(o['count'] for o in outcomes)
        message = ('resubmission to %s failed for %d of %d request(s), %d accepted, %d not sent; first failure: %s. '
                   'Check the endpoint (and resubmit.token), then rerun' % (
                       options['url'], sum(o['count'] for o in failed), total, sent_ok, not_sent, failed[0]['error']))
        if options['on_error'] == 'fail':
            return result, message
        warn(message)
    return result, None
