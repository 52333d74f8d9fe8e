# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter C(rollout_report): the run's record, built once from the registered module results.

The documentation is in the sidecar file C(rollout_report.yml). Every time in the record comes from a
module (wall-clock epoch seconds measured on the load balancer or the host); nothing is timed in Jinja.
"""

from __future__ import annotations

import datetime
import math

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

MODES = ('run', 'check')
STATUSES = ('done', 'failed', 'put_back', 'already_down', 'not_reached')
_NAME = 'modelops.shutdown.rollout_report'


def _fail(message):
    raise AnsibleFilterError('%s: %s' % (_NAME, message))


def _dict(value, where):
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        _fail('%s must be a dict, got %s' % (where, type(value).__name__))
    return value


def _list(value, where):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        _fail('%s must be a list, got %s' % (where, type(value).__name__))
    return value


# Epoch seconds a datetime can hold (year 9999 and earlier).
_EPOCH_MAX = 253402300000.0


def _number(value, where, what='a number of seconds'):
    """C(value) as a finite float (numbers, or strings of them), C(None) for C(None); else an error naming C(where)."""
    if value is None:
        return None
    number = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = None
    if number is None or not math.isfinite(number):
        _fail('%s must be %s, got %r' % (where, what, value))
    return number


def _epoch(value, where):
    epoch = _number(value, where, 'epoch seconds')
    if epoch is not None and not 0 <= epoch < _EPOCH_MAX:
        _fail('%s must be epoch seconds (from 0 to the year 9999), got %r' % (where, value))
    return epoch


def _count(value, where):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail('%s must be a count (an integer of at least 0) or null, got %r' % (where, value))
    return value


def _text(value, where):
    if value is None:
        return ''
    if not isinstance(value, str):
        _fail('%s must be a string, got %r' % (where, value))
    return value


def iso(epoch):
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat(timespec='milliseconds')


def _round(value):
    return None if value is None else round(value, 3)


PHASES = ('drain', 'stop', 'policy', 'verify')


def _phases(record, name):
    """The call's C(phases) - per phase C({start, end}) in epoch seconds, or C(None) where it did not run."""
    phases = _dict(record.get('phases'), '%s.record.phases' % name)
    out = {}
    for phase in PHASES:
        interval = phases.get(phase)
        if interval is None:
            out[phase] = None
            continue
        interval = _dict(interval, '%s.record.phases.%s' % (name, phase))
        start = _epoch(interval.get('start'), '%s.record.phases.%s.start' % (name, phase))
        end = _epoch(interval.get('end'), '%s.record.phases.%s.end' % (name, phase))
        if start is not None and end is not None and end < start:
            _fail('%s.record.phases.%s ends (%r) before it starts (%r)' % (name, phase, end, start))
        out[phase] = {'start': start, 'end': end}
    return out


def _weight_ramp(mark, name):
    """This host's part of a mark's weight ramp: C({previous_weight, weights, aborted, weight_back}), or None (its
    first server there: a host with several servers on one load balancer has them ramped alike)."""
    ramp = _dict(mark.get('weight_ramp'), '%s.marks.weight_ramp' % name)
    for server in _list(ramp.get('servers'), '%s.marks.weight_ramp.servers' % name):
        if isinstance(server, Mapping) and server.get('host') == name:
            steps = _list(server.get('steps'), '%s.marks.weight_ramp.servers.steps' % name)
            return {'previous_weight': server.get('previous_weight'),
                    'weights': [step.get('weight') for step in steps if isinstance(step, Mapping)],
                    'aborted': ramp.get('aborted'),
                    'weight_back': server.get('weight_back')}
    return None


def _host_marks(name, marks):
    """The batch's load-balancer results, and those naming this host: C(([result], [(result, server record)]))."""
    results = []
    found = []
    for index, result in enumerate(_list(marks, '%s.marks' % name)):
        result = _dict(result, '%s.marks[%d]' % (name, index))
        results.append((index, result))
        for server in _list(result.get('servers'), '%s.marks[%d].servers' % (name, index)):
            if isinstance(server, Mapping) and server.get('host') == name:
                found.append((result, server))
    return results, found


def _host_record(name, data):
    data = _dict(data, name)
    batch_marks, marks = _host_marks(name, data.get('marks'))
    record = _dict(data.get('record'), '%s.record' % name)
    if record.get('skipped'):
        record = {}  # the per-host call did not run for this host (a refused batch, a sequential halt)
    put_back = [r for index, r in enumerate(_list(data.get('put_back'), '%s.put_back' % name))
                if isinstance(r, Mapping) and not r.get('skipped')
                and any(isinstance(s, Mapping) and s.get('host') == name
                        for s in _list(r.get('servers'), '%s.put_back[%d].servers' % (name, index)))]
    # The batch starts with its first mark, on whichever load balancer: every host of the batch holds the
    # same marks (one registered loop over the load balancers), so they all get the same start.
    mark_starts = [_epoch(r.get('started_at'), '%s.marks[%d].started_at' % (name, index)) for index, r in batch_marks]
    mark_starts = [start for start in mark_starts if start is not None]
    marked = [_epoch(r.get('marked_at'), '%s.marks.marked_at' % name) for r, dummy in marks if r.get('marked_at') is not None]
    in_flight = [s.get('in_flight_at_mark') for dummy, s in marks
                 if isinstance(s.get('in_flight_at_mark'), int) and not isinstance(s.get('in_flight_at_mark'), bool)]
    drain = _dict(record.get('drain'), '%s.record.drain' % name)
    stop = _dict(record.get('stop'), '%s.record.stop' % name)
    verify = _dict(record.get('verify'), '%s.record.verify' % name)
    timings = _dict(record.get('timings'), '%s.record.timings' % name)
    gpu = _dict(verify.get('gpu'), '%s.record.verify.gpu' % name)
    guard = _dict(record.get('lb_guard'), '%s.record.lb_guard' % name)
    refused = [r for r, dummy in marks if r.get('failed')]
    if refused and not record:
        status, step = ('refused', 'budget') if refused[0].get('refused') else ('failed', 'mark')
        msg = _text(refused[0].get('msg'), '%s.marks.msg' % name)
    elif record.get('unreachable'):
        status, step = 'failed', 'unreachable'
        msg = _text(record.get('msg'), '%s.record.msg' % name) or 'the host became unreachable'
    elif record:
        status = _text(record.get('status'), '%s.record.status' % name) or ('failed' if record.get('failed') else 'unknown')
        step, msg = record.get('failed_step'), _text(record.get('msg'), '%s.record.msg' % name)
        if record.get('failed') and 'status' not in record:
            step = 'connection'  # the module never returned its record: the connection to the host failed
    elif marks:
        status, step, msg = 'not_reached', None, 'marked on its load balancers, then not reached by the per-host call'
    else:
        status, step, msg = 'not_reached', None, ''
    restored = any(not r.get('failed') for r in put_back)
    if restored and status in ('failed', 'not_reached'):
        msg = (msg + '; ' if msg else '') + 'put back into service'
        if status == 'not_reached':
            status = 'put_back'
    floor = _number(timings.get('floor_seconds'), name + '.record.timings.floor_seconds')
    stop_seconds = _number(timings.get('stop_seconds'), name + '.record.timings.stop_seconds')
    if in_flight and sum(in_flight) == 0 and stop_seconds is not None:
        # Every load balancer had nothing in flight to the host at the mark: nothing was there to wait
        # for, so the time until the first read saw 0 is the tooling's, not the floor's.
        floor = stop_seconds
    return {
        'host': name,
        'status': status,
        'failed_step': step,
        'msg': msg,
        'batch_started': min(mark_starts) if mark_starts else _epoch(record.get('started_at'), name + '.record.started_at'),
        'marked': iso(max(marked)) if marked else None,
        'marked_at': max(marked) if marked else None,
        'load_balancers': [{'lb': r.get('lb'), 'previous_state': s.get('previous_state'), 'state': s.get('state'),
                            'changed': s.get('changed'),
                            'marked_at': _epoch(r.get('marked_at'), '%s.marks.marked_at' % name),
                            'weight_ramp': _weight_ramp(r, name)} for r, s in marks],
        'in_flight_at_mark': sum(in_flight) if in_flight else None,
        'drained': drain.get('drained') if drain else (True if record.get('already_down') else None),
        'in_flight_initial': drain.get('in_flight_initial'),
        'in_flight_final': drain.get('in_flight_final'),
        'drained_at': iso(_epoch(drain.get('drained_at'), name + '.record.drain.drained_at')),
        'drain_seconds': _number(timings.get('drain_seconds'), name + '.record.timings.drain_seconds'),
        'stop_seconds': stop_seconds,
        'floor_seconds': floor,
        'started': iso(_epoch(record.get('started_at'), name + '.record.started_at')),
        'finished': iso(_epoch(record.get('finished_at'), name + '.record.finished_at')),
        'started_at': _epoch(record.get('started_at'), name + '.record.started_at'),
        'finished_at': _epoch(record.get('finished_at'), name + '.record.finished_at'),
        'phases': _phases(record, name),
        'units': [{'unit': u.get('unit'), 'classification': u.get('classification'), 'stop_seconds': u.get('stop_seconds')}
                  for u in _list(stop.get('units'), name + '.record.stop.units') if isinstance(u, Mapping)],
        'policy_changed': _dict(record.get('policy'), name + '.record.policy').get('changed'),
        'verify_ok': verify.get('ok'),
        'verify_failures': _list(verify.get('failures'), name + '.record.verify.failures'),
        'gpu_released': gpu.get('released') if gpu.get('checked') else None,
        'gpu_killed': gpu.get('killed') or [],
        'leftover_processes': len(_list(verify.get('leftover_processes'), name + '.record.verify.leftover_processes')),
        # None is "no task log" (not checked, or none found), never 0.
        'incomplete_count': _count(verify.get('incomplete_count'), name + '.record.verify.incomplete_count'),
        'put_back': restored,
        # on_timeout=proceed: requests still in flight when the host was stopped anyway (cut, unless the server
        # finished them itself on SIGTERM).
        'in_flight_at_stop': _count(record.get('in_flight_at_stop'), name + '.record.in_flight_at_stop'),
        'lb_came_back': _count(guard.get('came_back'), name + '.record.lb_guard.came_back') or 0,
        'lb_escalated': bool(guard.get('escalated')),
        'lb_events': [dict((key, e.get(key)) for key in ('at', 'event', 'lb', 'seen', 'set', 'error') if e.get(key) is not None)
                      for e in _list(guard.get('events'), name + '.record.lb_guard.events') if isinstance(e, Mapping)],
    }


def rollout_report(hosts, mode='run', halted=False, halt_reason='', finished_at=None):
    """Build the record: per host, per batch (grouped by their mark), totals."""
    if mode not in MODES:
        _fail('mode must be one of %s, got %r' % (', '.join(MODES), mode))
    hosts = _dict(hosts, 'the input')
    for name in hosts:
        if not isinstance(name, str):
            _fail('the input must map inventory host names (strings) to results, got the key %r' % (name,))
    records = [_host_record(name, hosts[name]) for name in hosts]
    by_start = {}
    for record in records:
        if record['batch_started'] is not None:
            by_start.setdefault(record['batch_started'], []).append(record)
    starts = sorted(by_start)
    ends = [max([r['finished_at'] for r in by_start[s] if r['finished_at'] is not None] or [s]) for s in starts]
    run_end = _epoch(finished_at, 'finished_at') or (max(ends) if ends else None)
    batches = []
    for number, start in enumerate(starts, 1):
        members = by_start[start]
        for record in members:
            record['batch'] = number
        floors = [r['floor_seconds'] for r in members if isinstance(r['floor_seconds'], (int, float))]
        # A batch lasts until the next one starts (its Ansible overhead included); the last, until the run ends.
        end = starts[number] if number < len(starts) else max(run_end or start, ends[number - 1])
        duration = end - start
        floor = max(floors) if floors else None
        batches.append({
            'number': number,
            'hosts': [r['host'] for r in members],
            'started': iso(start),
            'finished': iso(end),
            'started_at': start,
            'finished_at': end,
            'modules_finished': iso(ends[number - 1]),
            'duration_seconds': _round(duration),
            'floor_seconds': _round(floor),
            'overhead_seconds': _round(duration - floor) if floor is not None else None,
        })
    for record in records:
        record.setdefault('batch', None)
        record.pop('batch_started')
    by_status = {}
    for record in records:
        by_status[record['status']] = by_status.get(record['status'], 0) + 1
    duration = (run_end - starts[0]) if starts and run_end is not None else None
    floor_sum = sum(b['floor_seconds'] or 0.0 for b in batches)
    totals = dict((status, by_status.get(status, 0)) for status in STATUSES)
    totals.update({
        'hosts': len(records),
        'by_status': by_status,
        'in_flight_at_mark_total': sum(r['in_flight_at_mark'] or 0 for r in records),
        'incomplete_total': sum(r['incomplete_count'] or 0 for r in records),
        'in_flight_at_stop_total': sum(r['in_flight_at_stop'] or 0 for r in records),
        'lb_came_back_total': sum(r['lb_came_back'] for r in records),
        'lb_escalated': len([r for r in records if r['lb_escalated']]),
        'no_task_log': len([r for r in records if r['incomplete_count'] is None and r['status'] == 'done']),
        'gpu_not_released': len([r for r in records if r['gpu_released'] is False]),
        'duration_seconds': _round(duration),
        'floor_seconds_sum': _round(floor_sum) if batches else None,
        'ratio': round(duration / floor_sum, 2) if duration and floor_sum else None,
    })
    return {
        'run_id': datetime.datetime.fromtimestamp(starts[0], tz=datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
        if starts else 'no-batch',
        'mode': mode,
        'started': iso(starts[0]) if starts else None,
        'finished': iso(run_end),
        'started_at': starts[0] if starts else None,
        'finished_at': run_end,
        'halted': bool(halted),
        'halt_reason': halt_reason or '',
        'batches': batches,
        'hosts': sorted(records, key=lambda r: (r['batch'] is None, r['batch'] or 0, r['host'])),
        'totals': totals,
    }


class FilterModule(object):
    """modelops.shutdown rollout report filter."""

    def filters(self):
        return {'rollout_report': rollout_report}
