# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The disruption budget: would taking a batch out leave every pool at or above min_available?

Private to this collection. The filter C(disruption_budget) (controller side) and the module
C(lb_batch_state) (on the load balancer, against the same read it marks from) share this code.
Standard library only: it runs on targets too.
"""

from __future__ import annotations

import re

from collections.abc import Mapping


KINDS = ('haproxy', 'consul', 'http', 'file')
STATES = ('ready', 'draining', 'maintenance')
# At most 9 digits: a pool has far fewer members, and int() refuses strings of over 4,300 digits.
_MIN_AVAILABLE_RE = re.compile(r'^(\d{1,9})(%?)$')


class BudgetError(Exception):
    """The budget's inputs are malformed; the message names the input and what was expected."""


def _is_list(value):
    return isinstance(value, (list, tuple))


def _describe(value):
    """A short repr of a value for error messages, with its type."""
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + '...'
    return '%s (%s)' % (text, type(value).__name__)


def parse_min_available(value, where='min_available'):
    """Return C(('count', N)) or C(('percent', P)) for an int, C('N') or C('N%'); raise otherwise."""
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if 0 <= value < 10 ** 9:
            return ('count', int(value))
    elif isinstance(value, str):
        match = _MIN_AVAILABLE_RE.match(value.strip())
        if match:
            number = int(match.group(1))
            if not match.group(2):
                return ('count', number)
            if number <= 100:
                return ('percent', number)
    raise BudgetError(
        'modelops.shutdown.disruption_budget: %s must be a non-negative integer count (2 or "2") or a '
        'percentage of the pool from 0%% to 100%% ("50%%"), got %s' % (where, _describe(value)))


def required_for(spec, size):
    """How many members must stay available in a pool of C(size) members (percentages rounded up)."""
    kind, number = spec
    if kind == 'count':
        return number
    return (number * size + 99) // 100


def describe_min_available(spec, required, size):
    kind, number = spec
    if kind == 'count':
        return 'min_available=%d' % number
    return 'min_available=%d (%d%% of %d)' % (required, number, size)


def _status_is_up(status):
    text = str(status).strip().upper()
    return text.startswith('UP') or text == 'NO CHECK'


def _pool_identity(entry, where):
    """Return C((pool name, kind, server identity)) for one load-balancer entry."""
    if not isinstance(entry, Mapping):
        raise BudgetError(
            'modelops.shutdown.disruption_budget: %s: the load balancer entry (item[1]) must be a dict with '
            'one of %s, got %s' % (where, ', '.join(KINDS), _describe(entry)))
    lb_name = str(entry.get('name') or entry.get('delegate_to') or 'lb')
    kinds = [kind for kind in KINDS if entry.get(kind)]
    if len(kinds) != 1:
        raise BudgetError(
            'modelops.shutdown.disruption_budget: %s: the load balancer entry %r must have exactly one of %s, '
            'it has %s' % (where, lb_name, ', '.join(KINDS), ', '.join(kinds) or 'none'))
    kind = kinds[0]
    target = entry[kind]
    if not isinstance(target, Mapping):
        raise BudgetError(
            'modelops.shutdown.disruption_budget: %s: %s of load balancer entry %r must be a dict, got %s'
            % (where, kind, lb_name, _describe(target)))
    if kind == 'haproxy':
        backend = target.get('backend')
        if not backend:
            raise BudgetError(
                'modelops.shutdown.disruption_budget: %s: haproxy of load balancer entry %r has no backend'
                % (where, lb_name))
        return '%s/%s' % (lb_name, backend), kind, str(target.get('server') or '')
    if kind == 'consul':
        service_id = target.get('service_id')
        if not service_id:
            raise BudgetError(
                'modelops.shutdown.disruption_budget: %s: consul of load balancer entry %r has no service_id'
                % (where, lb_name))
        return '%s/%s' % (lb_name, service_id), kind, str(service_id)
    if kind == 'http':
        return lb_name, kind, str(target.get('url') or '')
    return lb_name, kind, str(target.get('path') or '')


def _host_of(member, where):
    if isinstance(member, str):
        return member
    if isinstance(member, Mapping) and member.get('inventory_hostname'):
        return str(member['inventory_hostname'])
    raise BudgetError(
        'modelops.shutdown.disruption_budget: %s: the pool member (item[0]) must be a dict with inventory_hostname '
        '(or a host name), got %s' % (where, _describe(member)))


def _observe(result):
    """Return C((available, unknown, status string)) for one query result."""
    if result.get('failed'):
        msg = ' '.join(str(result.get('msg') or 'no message').split())
        return False, True, 'query failed: %s' % msg
    if result.get('skipped'):
        return False, True, 'skipped'
    state = result.get('state')
    raw = result.get('raw')
    status = raw.get('status') if isinstance(raw, Mapping) else None
    available = state == 'ready' and (status is None or _status_is_up(status))
    unknown = state not in STATES
    if status is not None and str(status).strip() == '':
        # HAProxy gave no operational status: not counted as available, whatever the admin state.
        available = False
        text = 'no status (%s)' % (state or 'unknown')
    elif status is not None:
        text = str(status)
        if state != 'ready' and _status_is_up(status):
            # For example UP while the admin state is drain: say why it does not count.
            text = '%s (%s)' % (text, state)
    else:
        text = str(state) if state else 'unknown'
    if unknown and result.get('msg'):
        # A query that failed under failed_when: false still says why.
        text = '%s: %s' % (text, ' '.join(str(result['msg']).split()))
    return available, unknown, text


def _results_list(query_results):
    if isinstance(query_results, Mapping) and 'results' in query_results:
        query_results = query_results['results']
    if not _is_list(query_results):
        raise BudgetError(
            'modelops.shutdown.disruption_budget: expected the results list of a looped model_health_state '
            'state=query task (register.results), got %s' % _describe(query_results))
    return query_results


def _batch_hosts(batch):
    if isinstance(batch, str):
        return {batch}
    if not _is_list(batch) or not all(isinstance(host, str) for host in batch):
        raise BudgetError(
            'modelops.shutdown.disruption_budget: batch must be a list of inventory host names, got %s'
            % _describe(batch))
    return set(batch)


def _specs_by_pool(min_available, pools):
    """Return C({pool: (spec, original value)}) for every pool."""
    if not isinstance(min_available, Mapping):
        spec = parse_min_available(min_available)
        return dict((pool, (spec, min_available)) for pool in pools)
    parsed = dict(
        (key, (parse_min_available(value, 'min_available[%r]' % key), value))
        for key, value in min_available.items())
    unknown = sorted(str(key) for key in parsed if key != 'default' and key not in pools)
    if unknown:
        raise BudgetError(
            'modelops.shutdown.disruption_budget: min_available names pools that are not in the query results: '
            '%s; the pools are: %s' % (', '.join(unknown), ', '.join(sorted(pools)) or 'none'))
    specs = {}
    for pool in pools:
        if pool in parsed:
            specs[pool] = parsed[pool]
        elif 'default' in parsed:
            specs[pool] = parsed['default']
        else:
            raise BudgetError(
                'modelops.shutdown.disruption_budget: min_available has no value for pool %s and no "default" key '
                '(keys given: %s)' % (pool, ', '.join(sorted(str(key) for key in parsed)) or 'none'))
    return specs


def _message(record, spec, kind):
    up = 'UP' if kind == 'haproxy' else 'available'
    floor = describe_min_available(spec, record['required'], record['size'])
    if record['taking'] == 0:
        text = 'pool %s: no available server of this pool is in the batch; %d of %d %s, ' % (
            record['pool'], record['available'], record['size'], up)
        if record['available'] >= record['required']:
            text += 'at or above %s' % floor
        else:
            text += 'already below %s (taking nothing out does not make it worse)' % floor
    else:
        text = 'pool %s: taking out %d of %d available servers (%s) ' % (
            record['pool'], record['taking'], record['available'], ', '.join(record['taking_members']))
        if record['ok']:
            text += 'leaves %d %s, at or above %s' % (record['remaining'], up, floor)
        else:
            text += 'would leave %d %s, below %s' % (record['remaining'], up, floor)
    if record['unknown']:
        text += '; not counted as available because their state is unknown: %s' % ', '.join(record['unknown'])
    return text


def disruption_budget(query_results, batch, min_available):
    """Check a batch against each pool's minimum of available members; one record per pool, sorted by pool."""
    results = _results_list(query_results)
    batch_hosts = _batch_hosts(batch)

    # (pool, host, server) -> [available, unknown, status]; pool -> kind
    observed = {}
    kinds = {}
    for index, result in enumerate(results):
        where = 'query result %d' % index
        if not isinstance(result, Mapping):
            raise BudgetError(
                'modelops.shutdown.disruption_budget: %s must be a dict (one loop result), got %s'
                % (where, _describe(result)))
        loop_var = result.get('ansible_loop_var') or 'item'
        item = result.get(loop_var, result.get('item'))
        if not _is_list(item) or len(item) != 2:
            raise BudgetError(
                'modelops.shutdown.disruption_budget: %s: expected %s to be a [pool member, load balancer entry] '
                'pair (a loop over subelements), got %s' % (where, loop_var, _describe(item)))
        host = _host_of(item[0], where)
        pool, kind, server = _pool_identity(item[1], where)
        kinds.setdefault(pool, kind)
        available, unknown, status = _observe(result)
        key = (pool, host, server)
        if key in observed:
            # The same server queried twice: it counts as available only if every answer says so.
            previous = observed[key]
            if previous[0] and not available:
                previous[2] = status
            previous[0] = previous[0] and available
            previous[1] = previous[1] or unknown
        else:
            observed[key] = [available, unknown, status]

    specs = _specs_by_pool(min_available, set(kinds))

    members_by_pool = {}
    for (pool, host, server), observation in observed.items():
        members_by_pool.setdefault(pool, {}).setdefault(host, {})[server] = observation

    records = []
    for pool in sorted(members_by_pool):
        spec, original = specs[pool]
        members = []
        for host in sorted(members_by_pool[pool]):
            servers = members_by_pool[pool][host]
            for server in sorted(servers):
                label = host if len(servers) == 1 else '%s (%s)' % (host, server)
                members.append((label, host in batch_hosts) + tuple(servers[server]))
        size = len(members)
        available = [m for m in members if m[2]]
        taking = [m[0] for m in available if m[1]]
        required = required_for(spec, size)
        remaining = len(available) - len(taking)
        record = {
            'pool': pool,
            'size': size,
            'available': len(available),
            'taking': len(taking),
            'remaining': remaining,
            'required': required,
            'min_available': original,
            'ok': len(taking) == 0 or remaining >= required,
            'members': dict((m[0], m[4]) for m in members),
            'batch_members': [m[0] for m in members if m[1]],
            'taking_members': taking,
            'unknown': [m[0] for m in members if m[3]],
        }
        record['message'] = _message(record, spec, kinds[pool])
        records.append(record)
    return records
