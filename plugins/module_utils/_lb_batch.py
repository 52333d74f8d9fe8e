# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One load balancer, one batch: read the pool, check the budget on that read, mark, verify, put back.

Private to this collection; the module C(lb_batch_state) is its front end. The budget and the
mark use the same read, so they cannot disagree; a batch the budget refuses is not touched, and a
mark that does not take effect is put back to the states it replaced before the call fails.
HAProxy members are read a whole pool at a time (one C(show stat) and one C(show servers state)
per runtime API), other kinds one member at a time through their adapter.

With a weight ramp, an HAProxy server's weight is lowered in steps before the mark (each step read back
with C(get weight)), the pool re-read and the budget checked again before each step; any failure puts the
weights back before the call fails, and once the mark holds the weights go back to what they were (a
server in DRAIN stays in DRAIN whatever its weight), so a later put-back to ready finds them as they were.
"""

from __future__ import annotations

import time

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils import _budget
from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyError, HAProxyRuntime, weight_dynamics
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import (
    KINDS,
    STATES,
    LBError,
    adapter_errors,
    adapter_problems,
    adapter_specs,
    make_adapter,
)
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_haproxy import backend_algorithms, read_pool
from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError, validate

BUDGET_OFF = (0, '0', '0%')

# How far out of service each state is. A mark never moves a server towards service: a server an
# operator put in maintenance stays there when the batch asks for draining (draining would let its
# persistent clients back in), so nothing of it is changed and nothing has to be put back.
OUT_OF_SERVICE_RANK = {'ready': 0, 'draining': 1, 'maintenance': 2}


def never_weaker(current, target):
    """The state a mark to C(target) leaves a server in that is now in C(current) (None when unread)."""
    if OUT_OF_SERVICE_RANK.get(current, -1) > OUT_OF_SERVICE_RANK[target]:
        return current
    return target


def iso(epoch):
    """ISO 8601 in UTC with an explicit offset, to the millisecond."""
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(epoch)) + ('.%03d+00:00' % int(round((epoch % 1) * 1000) % 1000))


class Member(object):
    """One server of the pool on this load balancer: the inventory host and its adapter."""

    def __init__(self, host, kind, options, lb_name):
        self.host = host
        self.kind = kind
        self.options = options
        self.adapter = make_adapter(kind, options)
        # The shape the budget counts pools by: the LB's name plus the adapter option.
        self.entry = {'name': lb_name, kind: options}

    def runtime_key(self):
        opts = self.options
        return (opts.get('socket'), opts.get('host'), opts.get('port'), opts.get('timeout'))

    def runtime(self):
        opts = self.options
        return HAProxyRuntime(socket_path=opts.get('socket'), host=opts.get('host'), port=opts.get('port'),
                              timeout=5.0 if opts.get('timeout') is None else opts['timeout'])


def parse_adapter_entry(entry, where, label, extra=()):
    """Validate one C({<kind>: {...}} + extra keys) entry with the adapters' own specs. Returns C((kind, options))."""
    specs = adapter_specs()
    kinds = [kind for kind in KINDS if entry.get(kind) is not None]
    unknown = sorted(set(entry) - set(KINDS) - set(extra))
    if len(kinds) != 1 or unknown:
        raise SpecError('%s (%s) must have exactly one of %s%s; it has %s' % (
            where, label, ', '.join(KINDS), ' and no other key' if unknown else '',
            ', '.join(kinds + unknown) or 'none'))
    kind = kinds[0]
    options = validate(specs[kind]['options'], entry[kind], '%s (%s).%s' % (where, label, kind),
                       **dict((key, specs[kind][key]) for key in
                              ('mutually_exclusive', 'required_one_of', 'required_together') if key in specs[kind]))
    problems = adapter_problems(kind, options, '%s (%s).%s.' % (where, label, kind))
    if problems:
        raise SpecError('; '.join(problems))
    return kind, options


def parse_members(members, lb_name):
    """Validate C(members) (each C({host, <kind>: {...}})) with the adapters' own specs; return C(Member)s."""
    parsed = []
    seen = set()
    for index, entry in enumerate(members):
        where = 'members[%d]' % index
        if not isinstance(entry, dict):
            raise SpecError('%s must be a dict with host and one of %s, got %s' % (where, ', '.join(KINDS), type(entry).__name__))
        host = entry.get('host')
        if not isinstance(host, str) or not host:
            raise SpecError('%s has no host (the inventory name of the model host this entry serves)' % where)
        kind, options = parse_adapter_entry(entry, where, host, extra=('host',))
        member = Member(host, kind, options, lb_name)
        key = (host, member.adapter.describe())
        if key in seen:
            raise SpecError('%s (%s) repeats %s' % (where, host, member.adapter.describe()))
        seen.add(key)
        parsed.append(member)
    return parsed


class BatchStateManager(object):
    """Read, budget, change and verify the batch's servers on one load balancer."""

    def __init__(self, lb_name, members, batch, min_available=0, verify_timeout=10.0, verify_interval=0.5,
                 available_timeout=0.0, expect_serving=None, answer_timeout=0.0, weight_ramp=None, balancing=None,
                 reset_weights=None, clock=time.monotonic, wall=time.time, sleep=time.sleep):
        self.lb_name = lb_name
        self.members = members
        self.batch = set(batch)
        self.min_available = min_available
        self.verify_timeout = float(verify_timeout)
        self.verify_interval = float(verify_interval)
        self.available_timeout = float(available_timeout)
        # Hosts whose servers must be serving again after a put-back (not one that became unreachable).
        self.expect_serving = None if expect_serving is None else set(expect_serving)
        # How long the first read may wait for an admin API that does not answer (a put-back after the
        # load balancer went away mid-batch): nothing is changed before every server of the batch is read.
        self.answer_timeout = float(answer_timeout)
        self.answer_waited = None
        # {duration, steps}: lower each HAProxy server's weight in steps over duration before the mark; None: one step.
        self.weight_ramp = weight_ramp
        # What _haproxy_checks.backend_balancing() read from the HAProxy configuration (None: not given / unread).
        self.balancing = balancing
        # Hosts whose HAProxy weight a put-back sets to its initial weight (a ramp its run did not finish).
        self.reset_weights = set(reset_weights or ())
        self.clock = clock
        self.wall = wall
        self.sleep = sleep

    # -- reading ----------------------------------------------------------------------------
    def read(self):
        """C({member index: observation}) for every member. An observation is C({state, status, available,
        in_flight}) or C({failed: True, msg}); a failed read keeps the underlying message."""
        observed = {}
        groups = {}
        for index, member in enumerate(self.members):
            if member.kind == 'haproxy':
                groups.setdefault(member.runtime_key(), []).append(index)
                continue
            try:
                info = member.adapter.get_state()
            except adapter_errors() as exc:
                observed[index] = {'failed': True, 'msg': to_text(exc)}
                continue
            observed[index] = {'state': info['state'], 'status': None, 'available': info['state'] == 'ready',
                               'in_flight': info.get('in_flight')}
        for indexes in groups.values():
            first = self.members[indexes[0]]
            backends = sorted(set(self.members[i].options['backend'] for i in indexes))
            try:
                runtime = first.runtime()
                rows = dict(((row['backend'], row['server']), row) for row in read_pool(runtime, backends))
            except (HAProxyError, LBError) as exc:
                for index in indexes:
                    observed[index] = {'failed': True, 'msg': to_text(exc)}
                continue
            for index in indexes:
                opts = self.members[index].options
                row = rows.get((opts['backend'], opts['server']))
                if row is None:
                    observed[index] = {'failed': True, 'msg': '%s has no server %s/%s' % (
                        runtime.describe(), opts['backend'], opts['server'])}
                else:
                    observed[index] = {'state': row['state'], 'status': row['status'], 'available': row['available'],
                                       'in_flight': row['in_flight']}
        return observed

    def _first_read(self, targets):
        """Read the pool; with C(answer_timeout), read again until every server of the batch answers."""
        if self.answer_timeout <= 0:
            return self.read()
        batch = [index for index, _target in targets]
        polled = poll_until(self.read, lambda observed: not any(observed[index].get('failed') for index in batch),
                            timeout=self.answer_timeout, interval=self.verify_interval, max_samples=2,
                            clock=self.clock, sleep=self.sleep)
        self.answer_waited = polled.waited_seconds
        return polled.last_value

    def _budget(self, observed):
        if self.min_available in BUDGET_OFF:
            return [], []
        results = []
        for index, member in enumerate(self.members):
            seen = observed[index]
            record = {'item': [member.host, member.entry]}
            if seen.get('failed'):
                record.update(failed=True, msg=seen['msg'])
            else:
                record['state'] = seen['state']
                if seen['status'] is not None:
                    record['raw'] = {'status': seen['status']}
            results.append(record)
        pools = _budget.disruption_budget(results, sorted(self.batch), self.min_available)
        # Fail closed: a pool with a member whose state is unknown is not known to keep its budget.
        refused = [pool for pool in pools if not pool['ok'] or pool['unknown']]
        return pools, refused

    # -- the weight ramp ----------------------------------------------------------------------
    def _ramp_plan(self, servers, targets, every=False):
        """C((plan, problems)): per server the mark will change (C(every): every server of the batch), its weight
        now, or why it cannot be ramped."""
        plan, problems, algorithms = [], [], {}
        for server, (index, target) in zip(servers, targets):
            if not (server['changed'] or every):
                continue
            member = self.members[index]
            if member.kind != 'haproxy':
                problems.append('%s: a weight ramp needs an HAProxy server, this is a %s one' % (member.adapter.describe(), member.kind))
                continue
            backend, name = member.options['backend'], member.options['server']
            try:
                runtime = member.runtime()
                key = (member.runtime_key(), backend)
                if key not in algorithms:
                    algorithms[key] = backend_algorithms(runtime, [backend])[backend]
                current, initial = runtime.get_weight(backend, name)
            except HAProxyError as exc:
                problems.append('%s: %s' % (member.host, to_text(exc)))
                continue
            dynamic, why = weight_dynamics(backend, algorithms[key], self.balancing)
            if dynamic is not True:
                problems.append('%s: %s, so HAProxy takes only 0 or 100 %% as its weight and it cannot be ramped down in steps'
                                % (member.adapter.describe(), why))
                continue
            if current == 0:
                continue  # it takes no new requests already: nothing to ramp
            if current < self.weight_ramp['steps']:
                problems.append('%s has weight %d, too low for %d steps (each step must lower it by at least 1; HAProxy\'s '
                                'default weight is 1): give the servers a weight such as 100 ("default-server weight 100" '
                                'or "weight 100" on each server line), or use fewer steps'
                                % (member.adapter.describe(), current, self.weight_ramp['steps']))
                continue
            plan.append({'host': member.host, 'index': index, 'runtime': runtime, 'backend': backend, 'server': name,
                         'previous_weight': current, 'initial_weight': initial, 'steps': []})
        return plan, problems

    def _set_weights(self, plan, weight_of):
        """Set and read back each planned server's weight; the first failure as a message, else None."""
        for entry in plan:
            weight = weight_of(entry)
            # Unknown from here until read back: a put-back must not take it for unchanged.
            entry['weight'] = None
            try:
                entry['runtime'].set_weight(entry['backend'], entry['server'], weight)
                current, _initial = entry['runtime'].get_weight(entry['backend'], entry['server'])
            except HAProxyError as exc:
                return '%s: %s' % (entry['host'], to_text(exc))
            entry['weight'] = current
            if current != weight:
                return '%s: %s/%s reads back weight %s after set weight %s' % (
                    entry['host'], entry['backend'], entry['server'], current, weight)
        return None

    def _still_as_planned(self, before, plan):
        """Why the ramp must stop (a server changed by someone else, a read that failed, the budget), or None."""
        observed = self.read()
        for entry in plan:
            seen, was = observed[entry['index']], before[entry['index']]
            if seen.get('failed'):
                return '%s: %s' % (entry['host'], seen['msg'])
            if seen['state'] != was['state']:
                return '%s is now %s, not %s as it was read before the ramp' % (
                    self.members[entry['index']].adapter.describe(), seen['state'], was['state'])
        _pools, refused = self._budget(observed)
        if refused:
            return 'the disruption budget no longer holds: %s' % '; '.join(pool['message'] for pool in refused)
        return None

    def _ramp(self, before, plan, ramp):
        """Lower the planned weights in C(steps) steps, the last one (weight 0) being the mark at C(duration)."""
        steps = ramp['steps']
        interval = ramp['duration_seconds'] / (steps - 1)
        start = self.clock()
        ramp.update(started_at=round(self.wall(), 3), interval_seconds=round(interval, 3), aborted=None)
        for step in range(1, steps + 1):
            due = start + (step - 1) * interval
            # A ramp step is due at its time: waiting for the clock is the condition here.
            self.sleep(max(0.0, due - self.clock()))
            problem = self._still_as_planned(before, plan) if step > 1 else None
            if problem is None and step < steps:
                problem = self._set_weights(
                    plan, lambda entry: max(1, int(round(entry['previous_weight'] * (steps - step) / float(steps)))))
                for entry in plan:
                    entry['steps'].append({'at': round(self.wall(), 3), 'weight': entry.get('weight')})
            if problem:
                ramp['aborted'] = 'step %d of %d: %s' % (step, steps, problem)
                return ramp['aborted']
        return None

    def _weights_back(self, plan, ramp):
        """Put every planned server's weight back to what it was before the ramp; what failed, as messages."""
        failed = []
        for entry in plan:
            if entry.get('weight', entry['previous_weight']) != entry['previous_weight']:
                problem = self._set_weights([entry], lambda e: e['previous_weight'])
                if problem:
                    failed.append(problem)
            entry['weight_back'] = entry.get('weight', entry['previous_weight'])
        ramp['weights_back_failed'] = failed
        return failed

    def _reset_to_initial(self, servers, targets):
        """Set each C(reset_weights) host's HAProxy weight to its initial one: C(([{host, backend, server, from, to}],
        problems))."""
        done, problems = [], []
        for server, (index, _target) in zip(servers, targets):
            member = self.members[index]
            if member.host not in self.reset_weights or member.kind != 'haproxy':
                continue
            backend, name = member.options['backend'], member.options['server']
            try:
                runtime = member.runtime()
                current, initial = runtime.get_weight(backend, name)
                if current != initial:
                    runtime.set_weight(backend, name, initial)
                    after, _initial = runtime.get_weight(backend, name)
                    if after != initial:
                        raise HAProxyError('%s/%s reads back weight %s after set weight %s' % (backend, name, after, initial))
                done.append({'host': member.host, 'backend': backend, 'server': name, 'from': current, 'to': initial})
            except HAProxyError as exc:
                problems.append('%s: %s' % (member.host, to_text(exc)))
        return done, problems

    @staticmethod
    def _ramp_record(plan, ramp):
        keys = ('host', 'backend', 'server', 'previous_weight', 'initial_weight', 'steps')
        ramp['servers'] = [dict(dict((key, entry[key]) for key in keys), weight_back=entry.get('weight_back'))
                           for entry in plan]
        return ramp

    # -- changing ---------------------------------------------------------------------------
    def _targets(self, state, restore_states):
        """C([(index, target state)]) for the batch's members."""
        targets = []
        for index, member in enumerate(self.members):
            if member.host not in self.batch:
                continue
            if state == 'restore':
                target = (restore_states or {}).get(member.host)
                if target not in STATES:
                    raise SpecError('restore_states has no state for %s (one of %s expected, got %r)'
                                    % (member.host, ', '.join(STATES), target))
            else:
                target = state
            targets.append((index, member.adapter.effective_state(target)))
        return targets

    def _verify(self, targets, want_available):
        def probe():
            observed = self.read()
            pending = []
            for index, target in targets:
                seen = observed[index]
                member = self.members[index]
                if seen.get('failed'):
                    pending.append('%s: %s' % (member.host, seen['msg']))
                elif seen['state'] != target:
                    pending.append('%s reports %s (expected %s)' % (member.adapter.describe(), seen['state'], target))
                elif (want_available and target == 'ready' and not seen['available']
                      and (self.expect_serving is None or member.host in self.expect_serving)):
                    pending.append('%s is ready but not serving yet (status %s)' % (member.adapter.describe(), seen['status']))
            return {'observed': observed, 'pending': pending}

        timeout = self.verify_timeout + (self.available_timeout if want_available else 0.0)
        return poll_until(probe, lambda value: not value['pending'], timeout=timeout,
                          interval=self.verify_interval, max_samples=3, clock=self.clock, sleep=self.sleep)

    def _set(self, index, target):
        member = self.members[index]
        try:
            member.adapter.set_state(target)
        except adapter_errors() as exc:
            return to_text(exc)
        return None

    def run(self, state, restore_states=None, check_mode=False, diff_mode=False):
        """Apply C(state) (C(draining), C(maintenance), C(ready), or C(restore) from C(restore_states)).

        Returns C((result, failure message or None)).
        """
        started = self.wall()
        result = {'changed': False, 'lb': self.lb_name, 'state': state, 'refused': False, 'budget': [],
                  'servers': [], 'started_at': round(started, 3), 'marked_at': None, 'finished_at': None}
        targets = self._targets(state, restore_states)
        before = self._first_read(targets)
        pools, refused = self._budget(before) if state in ('draining', 'maintenance') else ([], [])
        result['budget'] = pools
        if state in ('draining', 'maintenance'):
            targets = [(index, never_weaker(None if before[index].get('failed') else before[index]['state'], target))
                       for index, target in targets]
        servers = []
        for index, target in targets:
            member = self.members[index]
            seen = before[index]
            servers.append({
                'host': member.host, 'kind': member.kind, 'target': member.adapter.describe(), 'state': target,
                'previous_state': None if seen.get('failed') else seen['state'],
                'previous_status': seen.get('status'),
                'changed': not seen.get('failed') and seen['state'] != target,
                'in_flight_at_mark': None, 'marked_at': None, 'error': seen.get('msg'),
            })
        result['servers'] = servers
        if self.answer_waited is not None:
            result['answer_waited_seconds'] = self.answer_waited
        if diff_mode:
            result['diff'] = {
                'before': dict((s['host'], {'state': s['previous_state']}) for s in servers),
                'after': dict((s['host'], {'state': s['state']}) for s in servers),
                'before_header': self.lb_name, 'after_header': self.lb_name,
            }

        plan, ramp = [], None

        def finish(failure):
            result['finished_at'] = round(self.wall(), 3)
            result['changed'] = any(s['changed'] for s in servers)
            if ramp is not None:
                result['weight_ramp'] = self._ramp_record(plan, ramp)
            return result, failure

        def untouched():
            # Nothing is sent: every server stays in (and reports) the state it was read in.
            for server in servers:
                server['changed'] = False
                server['state'] = server['previous_state']

        unread = [s for s in servers if s['previous_state'] is None]
        if unread:
            untouched()
            waited = ' (read for %s s)' % self.answer_waited if self.answer_waited is not None else ''
            return finish('%s: could not read the state of %s%s, so nothing was changed: %s. Make its admin API '
                          'answer, then re-run.' % (self.lb_name, ', '.join(s['host'] for s in unread), waited,
                                                    '; '.join('%s: %s' % (s['host'], (s['error'] or '').rstrip('.'))
                                                              for s in unread)))
        if refused:
            result['refused'] = True
            untouched()
            return finish('Batch refused by the disruption budget on %s, nothing was touched: %s. Lower the batch size '
                          '(shutdown_serial) or min_available, or bring servers of the pool back first; where a state '
                          'is unknown, make the load balancer answer (the budget fails closed).'
                          % (self.lb_name, '; '.join(pool['message'] for pool in refused)))
        # The pre-flight reads with state=ready in check mode: there the ramp is checked for the whole batch.
        preflight = check_mode and state == 'ready'
        if self.weight_ramp and (state in ('draining', 'maintenance') or preflight):
            ramp = {'duration_seconds': float(self.weight_ramp['duration']), 'steps': int(self.weight_ramp['steps'])}
            plan, problems = self._ramp_plan(servers, targets, every=preflight)
            result['weight_ramp'] = self._ramp_record(plan, ramp)
            if problems:
                result['refused'] = True
                untouched()
                return finish('%s: weight ramp refused, nothing was changed: %s. Give these backends a dynamic algorithm '
                              '(balance roundrobin, leastconn, first or random, or a hash with hash-type consistent), or '
                              'drain them in one step (drain_weight_ramp: null).' % (self.lb_name, '; '.join(problems)))
        if check_mode:
            return finish(None)
        if self.reset_weights and state in ('ready', 'restore'):
            result['weights_reset'], problems = self._reset_to_initial(servers, targets)
            if problems:
                untouched()
                return finish('%s: could not set the weights an unfinished weight ramp left lowered back to their '
                              'initial ones, so no state was changed: %s' % (self.lb_name, '; '.join(problems)))
        if plan:
            problem = self._ramp(before, plan, ramp)
            if problem:
                failed = self._weights_back(plan, ramp)
                untouched()
                return finish('%s: the weight ramp stopped at %s. %s; nothing was drained.' % (
                    self.lb_name, problem,
                    ('WEIGHTS NOT PUT BACK: %s. Set them with "set weight <backend>/<server> <weight>" on the admin '
                     'socket' % '; '.join(failed)) if failed else
                    'Weights put back: %s' % ', '.join('%s %s' % (e['host'], e['previous_weight']) for e in plan)))

        errors = []
        for server, (index, target) in zip(servers, targets):
            if server['changed']:
                error = self._set(index, target)
                if error:
                    # Refused: the server is still in the state it was read in.
                    server['changed'] = False
                    server['state'] = server['previous_state']
                    server['error'] = error
                    errors.append('%s: %s' % (server['host'], error))
        # From here the load balancer sends nothing new to the marked servers.
        marked_at = self.wall()
        result['marked_at'] = round(marked_at, 3)
        for server in servers:
            server['marked_at'] = result['marked_at']
        verified = None
        if not errors:
            verified = self._verify(targets, want_available=self.available_timeout > 0)
            first = verified.samples[0]['value']['observed'] if verified.samples else {}
            last = verified.last_value['observed']
            for server, (index, target) in zip(servers, targets):
                # The first read after the mark: what each server still had in flight then.
                seen = first.get(index) or {}
                server['in_flight_at_mark'] = seen.get('in_flight')
                now = last.get(index) or {}
                server['status'] = now.get('status')
            result['verify_seconds'] = verified.waited_seconds
            if verified.satisfied:
                # Drained whatever its weight: the weights go back to what they were for a later put-back.
                self._weights_back(plan, ramp or {})
                return finish(None)
            errors = verified.last_value['pending']

        # Leave nothing half-changed: put back what this call changed.
        put_back = []
        for server, (index, target) in zip(servers, targets):
            if server['changed']:
                error = self._set(index, server['previous_state'])
                put_back.append('%s to %s%s' % (server['host'], server['previous_state'],
                                                ' FAILED: %s' % error if error else ''))
                if not error:
                    server['changed'] = False
                    server['state'] = server['previous_state']
        result['put_back'] = put_back
        if plan and self._weights_back(plan, ramp):
            put_back.append('weights FAILED: %s' % '; '.join(ramp['weights_back_failed']))
        return finish('%s: %s did not take effect within %s s: %s. %s' % (
            self.lb_name, state, self.verify_timeout, '; '.join(errors),
            ('Put back: %s.' % ', '.join(put_back)) if put_back else 'Nothing had been changed.'))
