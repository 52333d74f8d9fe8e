# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter C(rollout_report): the data of the rollout report, from every host's C(modelops_shutdown_result).

The documentation is in the sidecar file C(rollout_report.yml).
"""

from __future__ import annotations

import datetime

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

MODES = ('run', 'check')
# Always counted in the totals; every status seen is also counted in totals.by_status.
STATUSES = ('done', 'failed', 'restored', 'already_down', 'skipped')
# Statuses that need no explanation in the failure list.
QUIET_STATUSES = ('done', 'would_shut_down', 'already_down', 'skipped')
SECTIONS = ('drain', 'stop', 'policy', 'verify')
_NAME = 'modelops.shutdown.rollout_report'


def _is_list(value):
    return isinstance(value, (list, tuple))


def _describe(value):
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + '...'
    return '%s (%s)' % (text, type(value).__name__)


def _fail(message):
    raise AnsibleFilterError('%s: %s' % (_NAME, message))


def _section(result, key, where):
    """The dict under C(key), or an empty dict when it is missing or null."""
    value = result.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        _fail('%s.%s must be a dict, got %s' % (where, key, _describe(value)))
    return value


def _timestamp(value, where):
    """Parse an ISO 8601 timestamp (a naive one is taken as UTC); None stays None."""
    if value is None or value == '':
        return None
    if isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            _fail('%s must be an ISO 8601 timestamp like 2026-11-29T00:41:12.123456+00:00, got %s'
                  % (where, _describe(value)))
    else:
        _fail('%s must be an ISO 8601 timestamp string, got %s' % (where, _describe(value)))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def _iso(value, where):
    """The timestamp as given (a datetime becomes its ISO string), after checking it parses."""
    _timestamp(value, where)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value if value != '' else None


def _seconds_between(start, end):
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _number(value, where):
    """A float from an int, a float or a numeric string; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        _fail('%s must be a number, got %s' % (where, _describe(value)))
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    _fail('%s must be a number, got %s' % (where, _describe(value)))


def _count(value, where):
    number = _number(value, where)
    return None if number is None else int(number)


def _round(value):
    return None if value is None else round(value, 3)


def _failed_section(result, where):
    """The first of drain, stop, policy, verify that says C(ok: false), or None."""
    for key in SECTIONS:
        if _section(result, key, where).get('ok') is False:
            return key
    return None


def _failure_message(result, section, where):
    if section is None:
        return None
    data = _section(result, section, where)
    if data.get('msg'):
        return str(data['msg'])
    failures = data.get('failures')
    if _is_list(failures) and failures:
        return '; '.join(str(failure) for failure in failures)
    return None


def _host_record(host, result, batch_of_host):
    where = 'hosts_results[%r]' % host
    if result is None:
        result = {}
    if not isinstance(result, Mapping):
        _fail('%s must be the modelops_shutdown_result dict of the host, got %s' % (where, _describe(result)))
    drain = _section(result, 'drain', where)
    stop = _section(result, 'stop', where)
    policy = _section(result, 'policy', where)
    verify = _section(result, 'verify', where)
    if verify.get('skipped'):
        # For example {'skipped': 'check mode'}: nothing was verified.
        verify = {}
    restore = _section(result, 'restore', where)

    batch = result.get('batch')
    if batch is None:
        batch = batch_of_host.get(host)
    else:
        batch = _count(batch, where + '.batch')

    failed_section = _failed_section(result, where)
    status = str(result['status']) if result.get('status') else None
    if not status:
        if not result:
            status = 'not_reached'
        elif failed_section:
            status = 'failed'
        else:
            status = 'unknown'
    failed_step = result.get('failed_step')
    if failed_step is None and status == 'failed':
        failed_step = failed_section
    msg = result.get('msg') or None
    if not msg and status not in QUIET_STATUSES:
        msg = _failure_message(result, failed_step if failed_step in SECTIONS else failed_section, where)
    if result.get('restore_msg'):
        msg = '%s; putting it back in service failed: %s' % (msg or 'failed', result['restore_msg'])
    restored = result.get('restored')
    if not isinstance(restored, bool):
        restored = restore.get('ok') is True or status == 'restored'

    drain_started = _iso(drain.get('started'), where + '.drain.started')
    drain_finished = _iso(drain.get('finished'), where + '.drain.finished')
    drain_waited = _number(drain.get('waited_seconds'), where + '.drain.waited_seconds')
    drain_seconds = _seconds_between(_timestamp(drain_started, where + '.drain.started'),
                                     _timestamp(drain_finished, where + '.drain.finished'))
    if drain_seconds is None:
        drain_seconds = drain_waited

    units = stop.get('units') or []
    if not _is_list(units):
        _fail('%s.stop.units must be a list, got %s' % (where, _describe(units)))
    classifications = {}
    unit_seconds = []
    for index, unit in enumerate(units):
        unit_where = '%s.stop.units[%d]' % (where, index)
        if not isinstance(unit, Mapping):
            _fail('%s must be a dict, got %s' % (unit_where, _describe(unit)))
        name = str(unit.get('unit') or 'unit %d' % index)
        classifications[name] = unit.get('classification')
        seconds = _number(unit.get('stop_seconds'), unit_where + '.stop_seconds')
        if seconds is not None:
            unit_seconds.append(seconds)
    stop_seconds = max(unit_seconds) if unit_seconds else None

    # The floor is what no orchestration can avoid: the requests in flight when the load balancers
    # stopped sending (drain finished - marked), then the stop. Older records without 'marked'
    # fall back to the in-flight wait alone.
    drain_marked = _iso(drain.get('marked'), where + '.drain.marked')
    in_flight_wait = _seconds_between(_timestamp(drain_marked, where + '.drain.marked'),
                                      _timestamp(drain_finished, where + '.drain.finished'))
    if in_flight_wait is None or not drain.get('waited', True):
        in_flight_wait = drain_waited
    floor = None
    if in_flight_wait is not None or stop_seconds is not None:
        floor = (in_flight_wait or 0.0) + (stop_seconds or 0.0)

    gpu = verify.get('gpu') if isinstance(verify.get('gpu'), Mapping) else {}
    gpu_released = None
    if gpu.get('checked') and gpu.get('released') is not None:
        gpu_released = bool(gpu['released'])
    killed = gpu.get('killed') or []

    incomplete = verify.get('incomplete') or []
    if not _is_list(incomplete):
        _fail('%s.verify.incomplete must be a list, got %s' % (where, _describe(incomplete)))
    incomplete_ids = [task.get('id') if isinstance(task, Mapping) else task for task in incomplete]
    incomplete_count = _count(verify.get('incomplete_count'), where + '.verify.incomplete_count')
    if incomplete_count is None and verify:
        incomplete_count = len(incomplete_ids)

    return {
        'host': host,
        'batch': batch,
        'status': status,
        'failed_step': failed_step,
        'msg': msg,
        'drain_started': drain_started,
        'drain_finished': drain_finished,
        'drain_seconds': _round(drain_seconds),
        'drain_waited_seconds': _round(drain_waited),
        'in_flight_at_drain_start': _count(
            drain.get('in_flight_at_mark', drain.get('in_flight_initial')),
            where + ('.drain.in_flight_at_mark' if 'in_flight_at_mark' in drain else '.drain.in_flight_initial')),
        'drained': drain.get('drained'),
        'stop_classifications': classifications,
        'stop_seconds': _round(stop_seconds),
        'floor_seconds': _round(floor),
        'gpu_released': gpu_released,
        'gpu_killed': list(killed) if _is_list(killed) else [killed],
        'incomplete_count': incomplete_count,
        'incomplete_ids': incomplete_ids,
        'policy_changed': policy.get('changed'),
        'restored': restored,
    }


def _batches_input(batches):
    if batches is None:
        return []
    if not _is_list(batches):
        _fail('batches must be a list of {number, hosts, started, finished} dicts, got %s' % _describe(batches))
    checked = []
    for index, batch in enumerate(batches):
        where = 'batches[%d]' % index
        if not isinstance(batch, Mapping):
            _fail('%s must be a dict with number, hosts, started, finished, got %s' % (where, _describe(batch)))
        number = _count(batch.get('number', index + 1), where + '.number')
        hosts = batch.get('hosts') or []
        if isinstance(hosts, str) or not _is_list(hosts):
            _fail('%s.hosts must be a list of host names, got %s' % (where, _describe(hosts)))
        checked.append((number, [str(host) for host in hosts], batch.get('started'), batch.get('finished'), where))
    return checked


def _batch_record(number, hosts, started, finished, where, records):
    names = list(hosts) + sorted(r['host'] for r in records if r['batch'] == number and r['host'] not in hosts)
    floors = [r['floor_seconds'] for r in records if r['host'] in names and r['floor_seconds'] is not None]
    floor = max(floors) if floors else 0.0
    duration = _seconds_between(_timestamp(started, where + '.started'), _timestamp(finished, where + '.finished'))
    return {
        'number': number,
        'hosts': names,
        'started': _iso(started, where + '.started'),
        'finished': _iso(finished, where + '.finished'),
        'duration_seconds': duration,
        'floor_seconds': _round(floor),
        'overhead_seconds': None if duration is None else _round(duration - floor),
    }


def rollout_report(hosts_results, batches=None, mode='run', started=None, finished=None, halted=False,
                   halt_reason=None):
    """Build the rollout report data from C({host: modelops_shutdown_result}) and the batches."""
    if hosts_results is None:
        hosts_results = {}
    if not isinstance(hosts_results, Mapping):
        _fail('expected a dict {inventory_hostname: modelops_shutdown_result}, got %s' % _describe(hosts_results))
    if mode not in MODES:
        _fail('mode must be one of %s, got %s' % (', '.join(MODES), _describe(mode)))
    if not isinstance(halted, bool):
        _fail('halted must be true or false, got %s' % _describe(halted))
    if halt_reason is not None and not isinstance(halt_reason, str):
        _fail('halt_reason must be a string, got %s' % _describe(halt_reason))

    batch_list = _batches_input(batches)
    batch_of_host = {}
    for entry in batch_list:
        for host in entry[1]:
            batch_of_host.setdefault(host, entry[0])

    names = list(hosts_results)
    names += [host for host in batch_of_host if host not in hosts_results]
    records = [_host_record(str(host), hosts_results.get(host), batch_of_host) for host in names]
    records.sort(key=lambda r: (r['batch'] is None, r['batch'] or 0, r['host']))

    if not batch_list:
        # No batch list given: one batch per number the hosts carry, without times.
        numbers = sorted(set(r['batch'] for r in records if r['batch'] is not None))
        batch_list = [(number, [], None, None, 'batch %d' % number) for number in numbers]
    batch_records = [_batch_record(number, hosts, b_started, b_finished, where, records)
                     for number, hosts, b_started, b_finished, where in sorted(batch_list, key=lambda b: b[0])]

    started_iso = _iso(started, 'started')
    finished_iso = _iso(finished, 'finished')
    duration = _seconds_between(_timestamp(started, 'started'), _timestamp(finished, 'finished'))
    if duration is None and batch_records and all(b['duration_seconds'] is not None for b in batch_records):
        duration = _round(sum(b['duration_seconds'] for b in batch_records))
    floor_sum = _round(sum(b['floor_seconds'] for b in batch_records))

    by_status = {}
    for record in records:
        by_status[record['status']] = by_status.get(record['status'], 0) + 1
    totals = {'hosts': len(records)}
    for status in STATUSES:
        totals[status] = by_status.get(status, 0)
    totals.update({
        'by_status': dict(sorted(by_status.items())),
        'in_flight_at_start_total': sum(r['in_flight_at_drain_start'] or 0 for r in records),
        'incomplete_total': sum(r['incomplete_count'] or 0 for r in records),
        'gpu_not_released': sum(1 for r in records if r['gpu_released'] is False),
        'duration_seconds': duration,
        'floor_seconds_sum': floor_sum,
        'ratio': round(duration / floor_sum, 3) if duration is not None and floor_sum else None,
    })

    return {
        'mode': mode,
        'started': started_iso,
        'finished': finished_iso,
        'halted': halted,
        'halt_reason': halt_reason,
        'hosts': records,
        'batches': batch_records,
        'totals': totals,
    }


class FilterModule(object):
    """modelops.shutdown rollout report filter."""

    def filters(self):
        return {
            'rollout_report': rollout_report,
        }
