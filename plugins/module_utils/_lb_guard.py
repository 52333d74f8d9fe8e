# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep one host out of rotation on every load balancer while it drains, and confirm it right before its stop.

Private to this collection; C(host_shutdown) uses it. A load balancer can put a drained server back
(HAProxy forgets runtime states on reload without a server-state file; someone's hand), and HAProxy
still sends cookie-persistent clients to a server in DRAIN. So, from the host itself:

* at every drain poll, each load balancer is read; a server found C(ready) again is drained again
  and the drain's quiet period starts over (C(came_back));
* with C(sticky_grace), a server still seeing requests that long after the mark is escalated from
  C(draining) to C(maintenance), which HAProxy does not send persistent clients to (C(escalated));
* right before the stop every load balancer must answer (within C(answer_timeout)) and report the
  server out of rotation; one that does not answer fails the host, which is then not stopped.
"""

from __future__ import annotations

import time

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._lb import STATES, adapter_errors, make_adapter
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_batch import iso, parse_adapter_entry
from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError

OUT_OF_ROTATION = ('draining', 'maintenance')
MAX_EVENTS = 50


def parse_entries(entries):
    """C(load_balancers) of host_shutdown: C([{name, state, <kind>: {...}}]) validated with the adapters' specs."""
    parsed = []
    names = set()
    for index, entry in enumerate(entries or []):
        where = 'load_balancers[%d]' % index
        if not isinstance(entry, dict):
            raise SpecError('%s must be a dict with name and one of haproxy, consul, http, file' % where)
        name = entry.get('name')
        if not isinstance(name, str) or not name:
            raise SpecError('%s has no name (the load balancer, as the rollout names it)' % where)
        if name in names:
            raise SpecError('%s repeats the load balancer %s' % (where, name))
        names.add(name)
        state = entry.get('state', 'draining')
        if state not in OUT_OF_ROTATION:
            raise SpecError('%s (%s).state must be one of %s, got %r' % (where, name, ', '.join(OUT_OF_ROTATION), state))
        kind, options = parse_adapter_entry(entry, where, name, extra=('name', 'state'))
        parsed.append({'name': name, 'state': state, 'kind': kind, 'adapter': make_adapter(kind, options)})
    return parsed


class LBGuard(object):
    """See the module docstring. C(events) lists what happened, each with its time and load balancer."""

    def __init__(self, entries, sticky_grace=None, answer_timeout=5.0, interval=0.5, check_mode=False,
                 clock=time.monotonic, wall=time.time, sleep=time.sleep):
        self.entries = entries
        self.sticky_grace = sticky_grace
        self.answer_timeout = float(answer_timeout)
        self.interval = float(interval)
        self.check_mode = check_mode
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.events = []
        self.events_dropped = 0
        self.escalated = False
        self.last_seen = {}
        self.read_errors = 0
        for entry in entries:
            entry['want'] = entry['state']

    def _event(self, kind, entry, **fields):
        record = {'at': iso(self.wall()), 'event': kind, 'lb': entry['name'], 'target': entry['adapter'].describe()}
        record.update(fields)
        if len(self.events) >= MAX_EVENTS:
            self.events_dropped += 1
            return
        self.events.append(record)

    def _read(self, entry):
        try:
            state = entry['adapter'].get_state()['state']
        except adapter_errors() as exc:
            return None, to_text(exc)
        self.last_seen[entry['name']] = state
        return state, None

    def _drain_again(self, entry, seen):
        """Set the entry to the state it should be in. Returns None, or the load balancer's refusal."""
        try:
            entry['adapter'].set_state(entry['want'])
        except adapter_errors() as exc:
            self._event('came_back', entry, seen=seen, set=None, error=to_text(exc))
            return to_text(exc)
        self._event('came_back', entry, seen=seen, set=entry['want'])
        return None

    def on_poll(self, elapsed, in_flight):
        """Called at each drain poll. Returns True when a server had come back and was drained again."""
        came_back = False
        for entry in self.entries:
            state, error = self._read(entry)
            if error is not None:
                # A read that fails during the wait is noted; the confirmation before the stop must succeed.
                self.read_errors += 1
                continue
            if state == 'ready':
                came_back = True
                self._drain_again(entry, state)
        if (self.sticky_grace is not None and not self.escalated and in_flight and elapsed >= self.sticky_grace):
            self.escalated = True
            for entry in self.entries:
                if entry['want'] == 'draining' and self.last_seen.get(entry['name']) != 'maintenance':
                    entry['want'] = 'maintenance'
                    try:
                        entry['adapter'].set_state('maintenance')
                        self._event('escalated', entry, after_seconds=round(elapsed, 3), in_flight=in_flight,
                                    seen=self.last_seen.get(entry['name']), set='maintenance')
                    except adapter_errors() as exc:
                        self._event('escalated', entry, after_seconds=round(elapsed, 3), in_flight=in_flight,
                                    seen=self.last_seen.get(entry['name']), set=None, error=to_text(exc))
        return came_back

    def confirm(self):
        """Right before the stop. Returns C((came_back, failure or None)).

        Every load balancer must answer within C(answer_timeout); a server found ready is drained again
        (C(came_back) True: the caller waits for the drain once more). In check mode, only reads.
        """
        def read_all():
            return dict((entry['name'], self._read(entry)) for entry in self.entries)

        polled = poll_until(read_all, lambda seen: all(error is None for _state, error in seen.values()),
                            timeout=self.answer_timeout, interval=self.interval, max_samples=2,
                            clock=self.clock, sleep=self.sleep)
        seen = polled.last_value
        unread = [(entry, seen[entry['name']][1]) for entry in self.entries if seen[entry['name']][1] is not None]
        if unread:
            for entry, error in unread:
                self._event('unanswered', entry, error=error, waited_seconds=polled.waited_seconds)
            return False, ('could not read %s within %s s to confirm that the host is out of rotation before its stop: %s'
                           % (', '.join(entry['name'] for entry, _error in unread), self.answer_timeout,
                              '; '.join('%s: %s' % (entry['name'], error) for entry, error in unread)))
        if self.check_mode:
            return False, None
        came_back = False
        unknown = []
        for entry in self.entries:
            state = seen[entry['name']][0]
            if state == 'ready':
                came_back = True
                refused = self._drain_again(entry, state)
                if refused is not None:
                    return True, ('%s reports %s ready again before its stop and could not be drained again: %s'
                                  % (entry['name'], entry['adapter'].describe(), refused))
            elif state not in STATES:
                unknown.append('%s reports %s as %s' % (entry['name'], entry['adapter'].describe(), state))
        if unknown:
            return False, ('the host is not known to be out of rotation before its stop: %s' % '; '.join(unknown))
        return came_back, None

    def describe(self):
        return [{'lb': entry['name'], 'target': entry['adapter'].describe(), 'state': entry['state'],
                 'want': entry['want'], 'last_seen': self.last_seen.get(entry['name'])} for entry in self.entries]
