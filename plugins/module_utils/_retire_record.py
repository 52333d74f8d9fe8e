# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The retirement record: one versioned JSON document per model retirement, kept on the controller.

Private to this collection. The module C(retirement_record) creates and updates it, the filter
C(retirement_record) reads it; both validate it here, so they accept and refuse the same documents.
The shape is documented as a JSON Schema in C(docs/retirement-record.schema.json); C(validate()) checks
the same by hand (standard library only) and says which field is wrong.

* C(build()) - a new record (status C(retired)) from the module's inputs.
* C(validate()) - a plain copy of a record, or C(RecordError) naming the first wrong field.
* C(transition()) - the record rolled back or finalized, or C(Refused) saying why not.
* C(window()) - whether the rollback window is open at a given time.
* C(create()), C(update()), C(read()) - the file: written atomically (a temporary file in the same folder,
  then a rename), mode 0600, its folder created 0700, every write under C(fcntl.flock) of the folder's
  lock file C(.retirement-record.lock).
"""

from __future__ import annotations

import copy
import datetime
import errno
import fcntl
import json
import math
import os
import re
import stat
import tempfile
import time

from collections.abc import Mapping

SCHEMA_VERSION = '1.0'
KIND = 'modelops.shutdown/retirement'
STATUSES = ('retired', 'rolled_back', 'final')
EVENTS = ('retired', 'rolled_back', 'finalized', 'forced')
STATES = ('retired', 'rolled_back', 'finalized')
LOCK_NAME = '.retirement-record.lock'
# How long an update waits for another one of the same folder to end.
LOCK_TIMEOUT = 30.0
# A record is a few KiB; a file larger than this is not one.
MAX_RECORD_BYTES = 32 * 1024 * 1024
# Epoch seconds a datetime can hold (year 9999 and earlier), as the filter rollout_report takes them.
EPOCH_MAX = 253402300000.0
# The longest rollback window: ten years (window_end stays a date).
MAX_WINDOW_SECONDS = 10 * 366 * 86400.0
MAX_NAME = 128
MAX_VERSION = 64
MAX_TEXT = 65536

TOP_KEYS = ('schema_version', 'kind', 'id', 'status', 'model', 'policy', 'eligibility', 'shutdown', 'dependencies',
            'retired_at', 'retired_at_iso', 'window_end', 'window_end_iso', 'rolled_back_at', 'finalized_at', 'history')
MODEL_KEYS = ('name', 'version', 'key', 'hosts')
POLICY_KEYS = ('name', 'version', 'action', 'rollback_window_seconds')
ELIGIBILITY_KEYS = ('digest', 'path', 'evaluated_at', 'from_report')
SHUTDOWN_KEYS = ('journal', 'report', 'status', 'hosts')
SHUTDOWN_HOST_KEYS = ('units_stopped', 'outcome')
DEPENDENCY_KEYS = ('host', 'kind', 'name', 'where', 'status', 'changed', 'previous', 'new', 'msg')
HISTORY_KEYS = ('event', 'at', 'at_iso', 'detail')

ID_RE = re.compile(r'^[A-Za-z0-9._+@-]+-[0-9]{8}T[0-9]{6}Z\Z')
DIGEST_RE = re.compile(r'^[0-9a-f]{64}\Z')
ISO_RE = re.compile(r'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})\Z')
_UNSAFE = re.compile(r'[^A-Za-z0-9._+@-]')


class RecordError(ValueError):
    """A record (or an input to one) of the wrong shape; C(field) names where, as C(history[0].at)."""

    def __init__(self, field, problem):
        super(RecordError, self).__init__('%s %s' % (field, problem))
        self.field = field
        self.problem = problem


class Refused(Exception):
    """An update the record's status or its rollback window does not allow; the message says why."""


class RecordIOError(Exception):
    """A record file that cannot be read or written; the message names the file and the cause."""


# --------------------------------------------------------------------------------------------- times

def iso(epoch):
    """C(epoch) as ISO 8601 in UTC to the millisecond (C(2025-12-01T18:40:00.000+00:00)); C(None) for C(None)."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat(timespec='milliseconds')


def stamp(epoch):
    """C(epoch) as C(yyyymmddTHHMMSSZ) (UTC), as in a record id."""
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')


def safe_name(text):
    """C(text) with every character other than letters, digits, C(.), C(_), C(+), C(@) and C(-) replaced by C(_)."""
    return _UNSAFE.sub('_', text)


def record_id(name, version, epoch):
    return '%s-%s-%s' % (safe_name(name), safe_name(version), stamp(epoch))


# --------------------------------------------------------------------------------------------- checks

def _finite(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _number(value, field, minimum=None, maximum=None, what='a finite number'):
    if not _finite(value):
        raise RecordError(field, 'must be %s, got %s' % (what, _shown(value)))
    if minimum is not None and value < minimum:
        raise RecordError(field, 'must be at least %s, got %s' % (minimum, _shown(value)))
    if maximum is not None and value > maximum:
        raise RecordError(field, 'must be at most %s, got %s' % (maximum, _shown(value)))
    return float(value) if isinstance(value, float) else value


def _epoch(value, field, nullable=False):
    if value is None and nullable:
        return None
    what = 'epoch seconds (a number from 0 to the year 9999)' + (' or null' if nullable else '')
    if not _finite(value) or not 0 <= value < EPOCH_MAX:
        raise RecordError(field, 'must be %s, got %s' % (what, _shown(value)))
    return value


def _text(value, field, nullable=False, non_empty=False, maximum=MAX_TEXT):
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise RecordError(field, 'must be a string%s, got %s' % (' or null' if nullable else '', _shown(value)))
    if non_empty and not value:
        raise RecordError(field, 'must not be empty')
    if len(value) > maximum:
        raise RecordError(field, 'must be at most %d characters, got %d' % (maximum, len(value)))
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        raise RecordError(field, 'must be text that UTF-8 can carry (it holds a lone surrogate)')
    return str(value)


def _bool(value, field):
    if not isinstance(value, bool):
        raise RecordError(field, 'must be a boolean, got %s' % _shown(value))
    return value


def _one_of(value, field, choices):
    if not isinstance(value, str) or value not in choices:
        raise RecordError(field, 'must be one of %s, got %s' % (', '.join(choices), _shown(value)))
    return str(value)


def _pattern(value, field, regex, what):
    value = _text(value, field)
    if not regex.match(value):
        raise RecordError(field, 'must be %s, got %s' % (what, _shown(value)))
    return value


def _list(value, field):
    if not isinstance(value, (list, tuple)):
        raise RecordError(field, 'must be a list, got %s' % _shown(value))
    return value


def _mapping(value, field, keys=None):
    """C(value) as a dict; with C(keys), exactly those keys (every one present, no other)."""
    if not isinstance(value, Mapping):
        raise RecordError(field, 'must be an object (a dict), got %s' % _shown(value))
    if keys is not None:
        for key in keys:
            if key not in value:
                raise RecordError(_join(field, key), 'is missing')
        for key in value:
            if key not in keys:
                raise RecordError(_join(field, key if isinstance(key, str) else repr(key)),
                                  'is not a field of a schema_version %s record' % SCHEMA_VERSION)
    return value


def _json_value(value, field):
    """A copy of C(value) made of JSON types only (finite numbers, string keys)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, sort_keys=True))
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise RecordError(field, 'must be a JSON value (finite numbers, string keys): %s' % exc)


def _join(field, key):
    return '%s.%s' % (field, key) if field else key


def _shown(value):
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + '...'
    if isinstance(value, str):
        text = repr(value[:60] + ('...' if len(value) > 60 else ''))
        return 'the string %s' % text
    return 'a %s' % {dict: 'dict', list: 'list', tuple: 'list'}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------- validation

def validate(record):
    """A plain copy of C(record) (dicts, lists, str, numbers, bools, None), or C(RecordError) naming the first bad field."""
    if not isinstance(record, Mapping):
        raise RecordError('the record', 'must be an object (a dict), got %s' % _shown(record))
    # Every error names the field from the record's top (model.name, history[0].at).
    record = _mapping(record, '', TOP_KEYS)
    if record['schema_version'] != SCHEMA_VERSION:
        raise RecordError('schema_version', 'must be "%s" (the version this collection reads), got %s'
                          % (SCHEMA_VERSION, _shown(record['schema_version'])))
    if record['kind'] != KIND:
        raise RecordError('kind', 'must be "%s", got %s' % (KIND, _shown(record['kind'])))
    out = {'schema_version': SCHEMA_VERSION, 'kind': KIND}
    out['id'] = _pattern(record['id'], 'id', ID_RE, '<model name>-<version>-<yyyymmddTHHMMSSZ> (letters, digits, '
                         '".", "_", "+", "@" and "-")')
    if len(out['id']) > MAX_NAME + MAX_VERSION + 18:
        raise RecordError('id', 'must be at most %d characters' % (MAX_NAME + MAX_VERSION + 18))
    out['status'] = _one_of(record['status'], 'status', STATUSES)
    out['model'] = _model(record['model'])
    out['policy'] = _policy(record['policy'])
    out['eligibility'] = _eligibility(record['eligibility'])
    out['shutdown'] = _shutdown(record['shutdown'])
    out['dependencies'] = [_dependency(item, 'dependencies[%d]' % index, strict=True)
                           for index, item in enumerate(_list(record['dependencies'], 'dependencies'))]
    out['retired_at'] = _epoch(record['retired_at'], 'retired_at')
    out['retired_at_iso'] = _pattern(record['retired_at_iso'], 'retired_at_iso', ISO_RE, 'an ISO 8601 date and time')
    out['window_end'] = _epoch(record['window_end'], 'window_end')
    out['window_end_iso'] = _pattern(record['window_end_iso'], 'window_end_iso', ISO_RE, 'an ISO 8601 date and time')
    out['rolled_back_at'] = _epoch(record['rolled_back_at'], 'rolled_back_at', nullable=True)
    out['finalized_at'] = _epoch(record['finalized_at'], 'finalized_at', nullable=True)
    history = _list(record['history'], 'history')
    out['history'] = [_history(item, 'history[%d]' % index) for index, item in enumerate(history)]
    # What the schema cannot say: the fields agree with each other.
    if out['window_end'] < out['retired_at']:
        raise RecordError('window_end', 'must not be before retired_at (%s), got %s' % (out['retired_at'], out['window_end']))
    if not out['history'] or out['history'][0]['event'] != 'retired':
        raise RecordError('history', 'must begin with the "retired" event')
    expected = {'retired': (False, False), 'rolled_back': (True, False), 'final': (False, True)}[out['status']]
    for field, wanted in zip(('rolled_back_at', 'finalized_at'), expected):
        if (out[field] is not None) != wanted:
            raise RecordError(field, 'must be %s for a record whose status is %s, got %s'
                              % ('epoch seconds' if wanted else 'null', out['status'], _shown(out[field])))
    return out


def _model(value, field='model', strict=True):
    value = _mapping(value, field, MODEL_KEYS if strict else None)
    name = _text(value.get('name'), field + '.name', non_empty=True, maximum=MAX_NAME)
    version = _text(value.get('version'), field + '.version', non_empty=True, maximum=MAX_VERSION)
    key = value.get('key')
    if key is None and not strict:
        key = '%s@%s' % (name, version)
    hosts = value.get('hosts')
    if hosts is None and not strict:
        hosts = []
    return {
        'name': name,
        'version': version,
        'key': _text(key, field + '.key', non_empty=True),
        'hosts': [_text(host, '%s.hosts[%d]' % (field, index)) for index, host in enumerate(_list(hosts, field + '.hosts'))],
    }


def _policy(value, field='policy', strict=True):
    value = _mapping(value, field, POLICY_KEYS if strict else None)
    action = value.get('action', None if strict else 'retire')
    if action != 'retire':
        raise RecordError(field + '.action', 'must be "retire", got %s' % _shown(action))
    return {
        'name': _text(value.get('name'), field + '.name', non_empty=True),
        'version': _text(value.get('version'), field + '.version', non_empty=True),
        'action': 'retire',
        'rollback_window_seconds': _number(value.get('rollback_window_seconds'), field + '.rollback_window_seconds',
                                           minimum=0, maximum=MAX_WINDOW_SECONDS, what='a finite number of seconds'),
    }


def _eligibility(value, field='eligibility', strict=True):
    value = _mapping(value, field, ELIGIBILITY_KEYS if strict else None)
    digest = value.get('digest')
    if not strict and isinstance(digest, str):
        digest = digest.lower()
    from_report = value.get('from_report')
    if from_report is None and not strict:
        from_report = False
    return {
        'digest': _pattern(digest, field + '.digest', DIGEST_RE, 'a sha256 digest (64 lowercase hex digits)'),
        'path': _text(value.get('path'), field + '.path', nullable=True),
        'evaluated_at': _epoch(value.get('evaluated_at'), field + '.evaluated_at'),
        'from_report': _bool(from_report, field + '.from_report'),
    }


def _shutdown(value, field='shutdown', strict=True):
    if value is None and not strict:
        value = {}
    value = _mapping(value, field, SHUTDOWN_KEYS if strict else None)
    hosts = value.get('hosts')
    if hosts is None and not strict:
        hosts = {}
    hosts = _mapping(hosts, field + '.hosts')
    out_hosts = {}
    for name in hosts:
        if not isinstance(name, str):
            raise RecordError(field + '.hosts', 'must map host names (strings) to objects, got the key %s' % _shown(name))
        where = '%s.hosts[%s]' % (field, json.dumps(name))
        _text(name, where)
        item = hosts[name]
        if item is None and not strict:
            item = {}
        item = _mapping(item, where, SHUTDOWN_HOST_KEYS if strict else None)
        units = item.get('units_stopped')
        if units is None and not strict:
            units = []
        out_hosts[str(name)] = {
            'units_stopped': [_text(unit, '%s.units_stopped[%d]' % (where, index))
                              for index, unit in enumerate(_list(units, where + '.units_stopped'))],
            'outcome': _text(item.get('outcome'), where + '.outcome', nullable=True),
        }
    return {
        'journal': _text(value.get('journal'), field + '.journal', nullable=True),
        'report': _text(value.get('report'), field + '.report', nullable=True),
        'status': _text(value.get('status'), field + '.status', nullable=True),
        'hosts': out_hosts,
    }


_DEPENDENCY_DEFAULTS = {'name': None, 'where': '', 'status': '', 'changed': False, 'previous': None, 'new': None, 'msg': ''}


def _dependency(value, field, strict=False):
    """One dependency; from the module (C(strict) false) a missing or null key takes its default, other keys are dropped."""
    value = _mapping(value, field, DEPENDENCY_KEYS if strict else None)
    if not strict:
        value = dict((key, value.get(key) if value.get(key) is not None else _DEPENDENCY_DEFAULTS.get(key))
                     for key in DEPENDENCY_KEYS)
    return {
        'host': _text(value['host'], field + '.host', non_empty=True),
        'kind': _text(value['kind'], field + '.kind', non_empty=True),
        'name': _text(value['name'], field + '.name', nullable=True),
        'where': _text(value['where'], field + '.where'),
        'status': _text(value['status'], field + '.status'),
        'changed': _bool(value['changed'], field + '.changed'),
        'previous': _json_value(value['previous'], field + '.previous'),
        'new': _json_value(value['new'], field + '.new'),
        'msg': _text(value['msg'], field + '.msg'),
    }


def _history(value, field):
    value = _mapping(value, field, HISTORY_KEYS)
    return {
        'event': _one_of(value['event'], field + '.event', EVENTS),
        'at': _epoch(value['at'], field + '.at'),
        'at_iso': _pattern(value['at_iso'], field + '.at_iso', ISO_RE, 'an ISO 8601 date and time'),
        'detail': _text(value['detail'], field + '.detail'),
    }


def _entry(event, at, detail):
    return {'event': event, 'at': at, 'at_iso': iso(at), 'detail': detail or ''}


# --------------------------------------------------------------------------------------------- building

def build(model, policy, eligibility, shutdown=None, dependencies=None, now=None, detail=''):
    """A new record, status C(retired) at C(now) (epoch seconds), validated; C(RecordError) names the bad input
    (C(model.name), C(dependencies[1].changed)).

    Inputs are as the module takes them: C(model) C({name, version, hosts, key}) (C(key) defaults to
    C(<name>@<version>)), C(policy) C({name, version, rollback_window_seconds}), C(eligibility)
    C({digest, path, evaluated_at, from_report}), C(shutdown) C({journal, report, status, hosts}) and
    C(dependencies) (a list of dicts); a missing or null optional key takes its default, unknown keys are dropped.
    """
    now = _epoch(time.time() if now is None else now, 'now')
    model = _model(model, strict=False)
    policy = _policy(policy, strict=False)
    end = now + policy['rollback_window_seconds']
    if end >= EPOCH_MAX:
        raise RecordError('policy.rollback_window_seconds', 'puts the end of the window past the year 9999')
    if dependencies is None:
        dependencies = []
    record = {
        'schema_version': SCHEMA_VERSION,
        'kind': KIND,
        'id': record_id(model['name'], model['version'], now),
        'status': 'retired',
        'model': model,
        'policy': policy,
        'eligibility': _eligibility(eligibility, strict=False),
        'shutdown': _shutdown(shutdown, strict=False),
        'dependencies': [_dependency(item, 'dependencies[%d]' % index)
                         for index, item in enumerate(_list(dependencies, 'dependencies'))],
        'retired_at': now,
        'retired_at_iso': iso(now),
        'window_end': end,
        'window_end_iso': iso(end),
        'rolled_back_at': None,
        'finalized_at': None,
        'history': [_entry('retired', now, _text(detail or '', 'detail'))],
    }
    return validate(record)


def window(record, now):
    """C({end, end_iso, open, remaining_seconds, now}) of a validated record at C(now) (epoch seconds)."""
    end = record['window_end']
    return {
        'end': end,
        'end_iso': iso(end),
        'open': now < end,
        'remaining_seconds': round(max(0.0, end - now), 3),
        'now': now,
    }


def transition(record, state, now, force=False, detail=''):
    """A copy of the validated C(record) moved to C(state) (V(rolled_back) or V(finalized)) at C(now), or C(Refused)."""
    detail = _text(detail or '', 'detail')
    rid = record['id']
    status = record['status']
    end = record['window_end']
    forced = None
    if state == 'rolled_back':
        if status == 'rolled_back':
            raise Refused('%s is already rolled_back (at %s): there is nothing to roll back'
                          % (rid, iso(record['rolled_back_at'])))
        if status == 'final':
            raise Refused('%s is final (finalized at %s): it can no longer be rolled back'
                          % (rid, iso(record['finalized_at'])))
        if now >= end:
            ago = int(math.floor(now - end))
            if not force:
                raise Refused('the rollback window of %s closed at %s (%d s ago): rolling back now needs '
                              '-e rollback_force=true' % (rid, iso(end), ago))
            forced = 'rolled back %d s after the rollback window closed at %s' % (ago, iso(end))
    elif state == 'finalized':
        if status == 'final':
            raise Refused('%s is already final (finalized at %s)' % (rid, iso(record['finalized_at'])))
        if status == 'rolled_back':
            raise Refused('%s was rolled back at %s: there is nothing to finalize, the model was brought back'
                          % (rid, iso(record['rolled_back_at'])))
        if now < end:
            left = int(math.ceil(end - now))
            if not force:
                raise Refused('the rollback window of %s is open until %s (%d s left); finalize after it, or force'
                              % (rid, iso(end), left))
            forced = 'finalized %d s before the rollback window closes at %s' % (left, iso(end))
    else:
        raise ValueError('unknown state %r' % (state,))
    new = copy.deepcopy(record)
    if forced:
        new['history'].append(_entry('forced', now, forced))
    if state == 'rolled_back':
        new['status'] = 'rolled_back'
        new['rolled_back_at'] = now
    else:
        new['status'] = 'final'
        new['finalized_at'] = now
    new['history'].append(_entry(state, now, detail))
    return validate(new)


# --------------------------------------------------------------------------------------------- files

def loads(text, where='the record'):
    """A validated record from JSON text (str or bytes); C(RecordError) when it is not JSON or not a record."""
    if isinstance(text, bytes):
        try:
            text = text.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise RecordError(where, 'is not UTF-8 text: %s' % exc)

    def constant(name):
        raise ValueError('%s is not a JSON number' % name)
    try:
        data = json.loads(text, parse_constant=constant)
    except (ValueError, RecursionError) as exc:
        raise RecordError(where, 'is not JSON: %s' % exc)
    return validate(data)


def dumps(record):
    return json.dumps(record, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + '\n'


def read(path):
    """The validated record in C(path). C(RecordIOError) when it cannot be read, C(RecordError) when it is no record."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        raise RecordIOError('cannot read the retirement record %s: %s' % (path, _cause(exc)))
    if not stat.S_ISREG(info.st_mode):
        raise RecordIOError('the retirement record %s is not a regular file' % path)
    if info.st_size > MAX_RECORD_BYTES:
        raise RecordIOError('the retirement record %s is %d bytes, more than any record (%d)'
                            % (path, info.st_size, MAX_RECORD_BYTES))
    try:
        with open(path, 'rb') as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise RecordIOError('cannot read the retirement record %s: %s' % (path, _cause(exc)))
    return loads(data)


def _cause(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return '%s (%s)' % (exc.strerror, errno.errorcode.get(exc.errno, exc.errno))
    return str(exc)


def ensure_dir(directory):
    """Create C(directory) (mode 0700) when missing; C(RecordIOError) when it cannot be, or is no folder."""
    try:
        if os.path.isdir(directory):
            return False
        if os.path.lexists(directory):
            raise RecordIOError('the record directory %s exists and is not a directory' % directory)
        os.makedirs(directory, 0o700)
        os.chmod(directory, 0o700)
    except (OSError, ValueError) as exc:
        raise RecordIOError('cannot create the record directory %s: %s' % (directory, _cause(exc)))
    return True


class _Lock(object):
    """C(fcntl.flock) of the folder's lock file, waiting up to C(LOCK_TIMEOUT) for another update to end."""

    def __init__(self, directory, timeout=None):
        self.path = os.path.join(directory, LOCK_NAME)
        self.timeout = LOCK_TIMEOUT if timeout is None else timeout
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o600)
        except (OSError, ValueError) as exc:
            raise RecordIOError('cannot open the lock file %s: %s' % (self.path, _cause(exc)))
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    self._close()
                    raise RecordIOError('cannot lock %s: %s' % (self.path, _cause(exc)))
            if time.monotonic() >= deadline:
                self._close()
                raise RecordIOError('another update of the records in %s held its lock %s for %.0f s; try again'
                                    % (os.path.dirname(self.path), self.path, self.timeout))
            time.sleep(0.05)

    def _close(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None

    def __exit__(self, *exc_info):
        self._close()
        return False


def _write(path, record):
    """Write C(record) to C(path) atomically: a temporary file (0600) in the same folder, fsync, rename, fsync the folder."""
    directory = os.path.dirname(path) or '.'
    data = dumps(record).encode('utf-8')
    try:
        fd, temp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path)[:200], suffix='.tmp', dir=directory)
    except (OSError, ValueError) as exc:
        raise RecordIOError('cannot write the retirement record %s: %s' % (path, _cause(exc)))
    try:
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.rename(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return  # the rename is done; only its durability across a crash is not forced
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    except (OSError, ValueError) as exc:
        raise RecordIOError('cannot write the retirement record %s: %s' % (path, _cause(exc)))


def record_path(directory, record):
    return os.path.join(directory, record['id'] + '.json')


def create(directory, record):
    """Write the new C(record) as C(<directory>/<id>.json) (the folder created 0700 when missing); return the path.
    C(RecordIOError) when a record of that id exists already."""
    ensure_dir(directory)
    path = record_path(directory, record)
    with _Lock(directory):
        if os.path.lexists(path):
            raise RecordIOError('the retirement record %s exists already (%s was retired twice in the same second?)'
                                % (path, record['model']['key']))
        _write(path, record)
    return path


def update(path, change):
    """Under the folder's lock, read the record of C(path), apply C(change(record)) (which returns the new record or
    raises C(Refused)) and write the result in place. Return C((before, after))."""
    real = os.path.realpath(path)
    with _Lock(os.path.dirname(real) or '.'):
        before = read(real)
        after = change(before)
        _write(real, after)
    return before, after
