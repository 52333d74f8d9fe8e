# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout's journal on the controller: one JSON-lines file per run, appended before every mutation.

Private to this collection (controller side: the action plugins of lb_batch_state, host_shutdown,
shutdown_journal and shutdown_report). Every line is one event, written whole under an exclusive
lock and fsynced before the call that changes anything is made, so a controller killed at any
point leaves a journal that says what it may have changed and what each thing was before.

Events (every line has ts (ISO 8601 UTC), t (epoch seconds), run and event):
  run_started      targets, playbook, controller, pid, user, interrupted (earlier runs found open)
  lb_read          lb, servers {host: state}                         (pre-flight read, changes nothing)
  lb_intent        lb, state, hosts {host: {previous_state, new_state}}, weight_ramp   (before a mark or a put-back)
  lb_result        lb, state, ok, msg, servers {host: {previous_state, state, changed}}, weights_left_lowered
  host_intent      host, units                                       (before its drain, stop, policy)
  host_result      host, ok, status, failed_step, msg, stopped, units_stopped, lb_events
  recovered        from_run, put_back [hosts], carried_on [hosts]
  closed           by (the run that dealt with this journal), reason
  run_finished     status (done, halted), stranded {host: [lb]}
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import secrets
import socket
import time

MAX_JOURNAL_BYTES = 64 * 1024 * 1024
OUT_OF_SERVICE = ('draining', 'maintenance')


class JournalError(Exception):
    """The journal cannot be written or read; the message names the file and the next step."""


def new_run_id(now=None):
    now = time.time() if now is None else now
    return time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now)) + '-' + secrets.token_hex(3)


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec='milliseconds')


def ensure_dir(path):
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise JournalError('cannot create the journal directory %s: %s. Set shutdown_journal_dir to a writable '
                           'directory that outlives the run (on AWX: a persistent volume).' % (path, exc)) from exc
    if not os.path.isdir(path):
        raise JournalError('%s is not a directory (shutdown_journal_dir)' % path)


def append(path, run, event, **fields):
    """Append one event and fsync it. Raises JournalError; a journal that cannot be written stops the change."""
    now = time.time()
    record = {'ts': iso(now), 't': round(now, 3), 'run': run, 'event': event}
    record.update(fields)
    line = (json.dumps(record, sort_keys=False, default=str) + '\n').encode('utf-8')
    created = not os.path.exists(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # Parallel hosts append from their own worker processes: one whole line at a time.
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b'\n':
                line = b'\n' + line  # after a line cut short (a controller killed mid-write): start a new one
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise JournalError('cannot write the journal %s (%s, before: %s): %s. Nothing was changed by this step; '
                           'free space or fix the permissions, then re-run.' % (path, event, fields.get('lb') or
                                                                                fields.get('host') or run, exc)) from exc
    return record


def read(path):
    """The journal's events, in order. A last line cut short (a controller killed mid-write) is left out."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read(MAX_JOURNAL_BYTES + 1)
    except OSError as exc:
        raise JournalError('cannot read the journal %s: %s' % (path, exc)) from exc
    if len(data) > MAX_JOURNAL_BYTES:
        raise JournalError('%s is larger than %d bytes: not a journal of this collection' % (path, MAX_JOURNAL_BYTES))
    events = []
    lines = data.split(b'\n')
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode('utf-8'))
        except ValueError as exc:
            if number == len(lines) or (number == len(lines) - 1 and not lines[-1]):
                break  # torn last line
            if raw.startswith(b'{"ts": ') and not raw.rstrip().endswith(b'}'):
                continue  # a line cut short by a killed writer, which the next append ended (see append())
            raise JournalError('%s line %d is not a journal event (%s)' % (path, number, exc)) from exc
        if not isinstance(record, dict) or not isinstance(record.get('event'), str) or not isinstance(record.get('run'), str):
            raise JournalError('%s line %d is not a journal event (no event or run)' % (path, number))
        events.append(record)
    return events


def _str_dict(value):
    return value if isinstance(value, dict) else {}


def summarize(events, path=None):
    """What the run recorded, and what it may have left out of service.

    Returns C({run, path, started, finished, status, closed, targets, hosts}) where C(hosts) maps each
    host the run touched to C({lbs: {lb: {previous_state, state, put_back}}, stopped, units_stopped,
    in_progress}). An LB entry is C(outstanding) while the run's last word on it left it out of service.
    """
    summary = {'run': None, 'path': path, 'started': None, 'finished': False, 'status': None, 'closed': None, 'stranded': {},
               'targets': [], 'controller': None, 'pid': None, 'pid_start': None, 'hosts': {}, 'last_read': {}}

    def host(name):
        return summary['hosts'].setdefault(name, {'lbs': {}, 'stopped': False, 'units_stopped': [], 'in_progress': False,
                                                  'status': None})

    for event in events:
        kind = event['event']
        summary['run'] = summary['run'] or event['run']
        if kind == 'run_started':
            summary.update(started=event.get('ts'), targets=list(event.get('targets') or []),
                           controller=event.get('controller'), pid=event.get('pid'), pid_start=event.get('pid_start'))
        elif kind == 'lb_read':
            for name, state in _str_dict(event.get('servers')).items():
                summary['last_read'].setdefault(event.get('lb'), {})[name] = state
        elif kind == 'lb_intent':
            for name, change in _str_dict(event.get('hosts')).items():
                change = _str_dict(change)
                fresh = {'previous_state': change.get('previous_state'), 'state': None, 'outstanding': False}
                entry = host(name)['lbs'].setdefault(event.get('lb'), fresh)
                new_state = change.get('new_state')
                if event.get('state') in ('restore', 'ready'):
                    entry['putting_back'] = True  # back to where the run found it, whichever state that is
                elif new_state in OUT_OF_SERVICE and entry['state'] is None:
                    # Until its result is read the change may have happened: count it as made.
                    entry.update(state=new_state, outstanding=change.get('previous_state') != new_state, unconfirmed=True)
                if event.get('weight_ramp') and event.get('state') not in ('restore', 'ready'):
                    # Until its result is read its weight may be lowered, whatever its state.
                    entry['weight_ramp'] = True
        elif kind == 'lb_result':
            for name, server in _str_dict(event.get('servers')).items():
                server = _str_dict(server)
                fresh = {'previous_state': server.get('previous_state'), 'state': None, 'outstanding': False}
                entry = host(name)['lbs'].setdefault(event.get('lb'), fresh)
                entry.pop('unconfirmed', None)
                # The module finished, and put back the weights of its ramp itself, unless it says it could not.
                if not event.get('weights_left_lowered'):
                    entry.pop('weight_ramp', None)
                putting_back = entry.pop('putting_back', False)
                state = server.get('state')
                if state is None:
                    # Unread, so nothing was sent: a mark changed nothing, a put-back put nothing back.
                    if not putting_back:
                        entry.update(state=entry['previous_state'], outstanding=False)
                    continue
                if server.get('changed') and not putting_back:
                    entry['previous_state'] = server.get('previous_state')
                entry['state'] = state
                entry['outstanding'] = state in OUT_OF_SERVICE and state != entry['previous_state']
        elif kind == 'host_intent':
            host(event.get('host'))['in_progress'] = True
        elif kind == 'host_result':
            entry = host(event.get('host'))
            entry['in_progress'] = False
            entry['status'] = event.get('status')
            entry['stopped'] = bool(event.get('stopped'))
            entry['units_stopped'] = list(event.get('units_stopped') or [])
        elif kind == 'closed':
            summary['closed'] = {'by': event.get('by'), 'reason': event.get('reason'), 'ts': event.get('ts')}
        elif kind == 'run_finished':
            summary.update(finished=True, status=event.get('status'), stranded=_str_dict(event.get('stranded')))
    return summary


def outstanding(summary):
    """C({host: {lb: {previous_state, state[, weight_ramp]}}}) for every LB entry the run left out of service, or in the
    middle of a weight ramp (C(weight_ramp) true), on a host it did not record as stopped (a stopped host stays out of
    service: that is what the run was for)."""
    left = {}
    for name, entry in summary['hosts'].items():
        if entry.get('stopped'):
            continue
        for lb, change in entry['lbs'].items():
            if change.get('outstanding') or change.get('weight_ramp'):
                left.setdefault(name, {})[lb] = {'previous_state': change.get('previous_state'), 'state': change.get('state')}
                if change.get('weight_ramp'):
                    left[name][lb]['weight_ramp'] = True  # a ramp that may have left its weight lowered
    return left


def known_state(summary, lb, name):
    """The state of C(name) on C(lb) as this run last read or set it, or None."""
    entry = summary['hosts'].get(name, {}).get('lbs', {}).get(lb)
    if entry and entry.get('state'):
        return entry['state']
    return summary['last_read'].get(lb, {}).get(name)


def check_option(value, where):
    """The C(journal) option of a task: None, or C({path, run}) with both non-empty strings."""
    if value is None:
        return None
    if (not isinstance(value, dict) or set(value) - set(('path', 'run'))
            or not all(isinstance(value.get(key), str) and value.get(key) for key in ('path', 'run'))):
        raise JournalError('%s: journal must be a dict with path and run (non-empty strings) and nothing else, got %r'
                           % (where, value))
    return {'path': os.path.expanduser(value['path']), 'run': value['run']}


def process_start(pid):
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None: with the pid it
    names one process, so a pid reused after the run's controller died is not taken for it."""
    try:
        with open('/proc/%d/stat' % int(pid)) as handle:
            stat = handle.read()
        return int(stat[stat.rindex(')') + 2:].split()[19])
    except (OSError, ValueError, TypeError, IndexError):
        return None


def _alive(pid, start):
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return start is None or process_start(pid) == start


def open_runs(directory, exclude=None):
    """Summaries of the journals in C(directory) that are neither finished cleanly nor closed, oldest first."""
    found = []
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith('.jsonl'))
    except FileNotFoundError:
        return found
    except OSError as exc:
        raise JournalError('cannot list the journal directory %s: %s' % (directory, exc)) from exc
    for name in names:
        path = os.path.join(directory, name)
        if exclude and os.path.abspath(path) == os.path.abspath(exclude):
            continue
        summary = summarize(read(path), path)
        if summary['closed'] is not None:
            continue
        summary['outstanding'] = outstanding(summary)
        summary['live'] = summary['controller'] == socket.gethostname() and _alive(summary['pid'], summary['pid_start']) and not summary['finished']
        if not summary['live']:
            if summary['finished'] and not summary.get('stranded'):
                continue
            if not summary['outstanding'] and not any(host.get('in_progress') for host in summary['hosts'].values()):
                continue  # it left nothing out of service (it stopped in pre-flight, or put everything back)
        found.append(summary)
    return found
