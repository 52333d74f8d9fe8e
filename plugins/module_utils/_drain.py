# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain wait of model_drain, for every module that waits for an instance to finish its requests.

Private to this collection. A module uses C(argument_spec()) and C(MODULE_KWARGS) for its options
(or nests them), rejects what C(check_params()) reports, then runs C(DrainWaiter(params).run()),
which returns C((result, failure_msg)) and raises for no expected error.
"""

from __future__ import annotations

import copy
import math
import time

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils import _inflight
from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import runtime_api_spec
from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import MAX_SECONDS

SOURCE_NAMES = ('metrics', 'haproxy', 'connections')

# How far ahead of this host's clock since may be before it counts as clock skew.
SINCE_SKEW_SECONDS = 1.0

MODULE_KWARGS = dict(required_one_of=[SOURCE_NAMES])


def argument_spec():
    return dict(
        metrics=dict(
            type='dict',
            options=dict(
                url=dict(type='str', required=True),
                preset=dict(type='str', default='generic', choices=_inflight.PRESET_CHOICES),
                metrics=dict(type='list', elements='dict', options=dict(
                    name=dict(type='str', required=True),
                    labels=dict(type='dict'),
                )),
                labels=dict(type='dict'),
                token=dict(type='str', no_log=True),
                headers=dict(type='dict'),
                validate_certs=dict(type='bool', default=True),
                ca_path=dict(type='path'),
                timeout=dict(type='float', default=5),
            ),
            required_if=[('preset', 'generic', ('metrics',))],
        ),
        haproxy=runtime_api_spec(server=True, timeout=False),
        connections=dict(
            type='dict',
            options=dict(
                port=dict(type='int', required=True),
                exclude_peers=dict(type='list', elements='str', default=[]),
            ),
        ),
        timeout=dict(type='float', default=300),
        poll_interval=dict(type='float', default=0.5),
        quiet_period=dict(type='float', default=0),
        on_timeout=dict(type='str', default='fail', choices=['fail', 'proceed']),
        max_samples=dict(type='int', default=50),
        since=dict(type='float'),
    )


def _with_defaults(spec, params):
    """A copy of C(params) where every option of C(spec) is present; missing ones get their default (or None)."""
    params = dict(params or {})
    for name, option in spec.items():
        if name not in params:
            params[name] = copy.deepcopy(option.get('default'))
        if option.get('type') == 'dict' and option.get('options') and isinstance(params[name], dict):
            params[name] = _with_defaults(option['options'], params[name])
    return params


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_seconds(problems, name, value, ok, rule):
    if not _is_number(value) or not math.isfinite(value):
        problems.append('%s must be a finite number of seconds, got %s' % (name, value))
    elif not ok(value):
        problems.append('%s must be %s, got %s' % (name, rule, value))
    elif value > MAX_SECONDS:
        problems.append('%s must be at most %s seconds (a week), got %s' % (name, MAX_SECONDS, value))


def _check_port(problems, name, value, required):
    if value is None and not required:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        problems.append('%s must be between 1 and 65535, got %s' % (name, value))


def check_params(params):
    """Range checks the argument spec cannot express: a list of problems, each naming the option and the allowed range."""
    params = _with_defaults(argument_spec(), params)
    problems = []
    if all(params.get(name) is None for name in SOURCE_NAMES):
        # required_one_of counts an option given as null (metrics: null) as given; no source is no wait.
        problems.append('no in-flight source is configured: give at least one of %s (an option given as null is not '
                        'given) to count the requests in flight' % ', '.join(SOURCE_NAMES))
    _check_seconds(problems, 'poll_interval', params['poll_interval'], lambda v: v >= 0.1, 'at least 0.1 seconds')
    _check_seconds(problems, 'timeout', params['timeout'], lambda v: v >= 0, '0 or more seconds')
    _check_seconds(problems, 'quiet_period', params['quiet_period'], lambda v: v >= 0, '0 or more seconds')
    max_samples = params['max_samples']
    if not isinstance(max_samples, int) or isinstance(max_samples, bool) or max_samples < 2:
        problems.append('max_samples must be at least 2, got %s' % max_samples)
    if params['metrics']:
        _check_seconds(problems, 'metrics.timeout', params['metrics']['timeout'], lambda v: v > 0, 'more than 0 seconds')
    if params['connections']:
        _check_port(problems, 'connections.port', params['connections']['port'], True)
    if params['haproxy']:
        _check_port(problems, 'haproxy.port', params['haproxy']['port'], False)
    since = params['since']
    if since is not None and (not _is_number(since) or not math.isfinite(since) or since <= 0):
        problems.append('since must be a wall-clock time in seconds since the epoch, got %s' % since)
    return problems


def build_sources(params):
    """The configured sources, in a fixed order. Raises InFlightError on a bad source configuration."""
    sources = []
    metrics = params['metrics']
    if metrics:
        sources.append(_inflight.MetricsSource(
            metrics['url'], preset=metrics['preset'], metrics=metrics['metrics'], labels=metrics['labels'],
            token=metrics['token'], headers=metrics['headers'], validate_certs=metrics['validate_certs'],
            ca_path=metrics['ca_path'], timeout=metrics['timeout']))
    haproxy = params['haproxy']
    if haproxy:
        sources.append(_inflight.HAProxySource(
            haproxy['backend'], haproxy['server'], socket_path=haproxy['socket'], host=haproxy['host'], port=haproxy['port']))
    connections = params['connections']
    if connections:
        sources.append(_inflight.ConnectionsSource(connections['port'], exclude_peers=connections['exclude_peers']))
    return sources


class DrainWaiter(object):
    """Wait until the configured sources count no request in flight (for C(quiet_period)), or the deadline passes.

    C(params) are model_drain's options (missing ones take their defaults). C(run()) returns
    C((result, failure_msg)): C(result) holds model_drain's return values, C(failure_msg) is None
    unless the task should fail. Warnings go to C(warn) and to C(self.warnings).
    """

    def __init__(self, params, check_mode=False, warn=None, clock=time.monotonic, wall=time.time, sleep=time.sleep,
                 guard=None):
        self.params = _with_defaults(argument_spec(), params)
        # Called at each poll with (seconds since the start, in flight); True when a load balancer had put the
        # instance back and it was drained again: that poll does not count towards the quiet period.
        self._guard = guard
        self.check_mode = check_mode
        self.warnings = []
        self._warn = warn
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self.sources = []
        self._start = None        # clock() reading the wait counts from
        self._started_at = None   # the same moment on the wall clock
        self._history = []        # in-flight figure of every successful read
        self._samples = []        # successful reads, bounded as poll_until does (for results without a PollResult)
        self._dropped = 0
        self._last = {}
        self._zero_since = None   # wall time of the first read of the current run of zeros

    def warn(self, msg):
        self.warnings.append(msg)
        if self._warn is not None:
            self._warn(msg)

    def _begin(self):
        """Set the moment the wait counts from: now, or since (a wall-clock time) when given."""
        now_wall = self._wall()
        now = self._clock()
        since = self.params['since']
        if since is None:
            since = now_wall
        elif since > now_wall + SINCE_SKEW_SECONDS:
            self.warn('since=%s is %.3f s ahead of the clock of the host that waits (%s); counting the wait from now. '
                      'Check that the clocks of the controller and the hosts are synchronized.'
                      % (since, since - now_wall, round(now_wall, 3)))
            since = now_wall
        elif since > now_wall:
            since = now_wall  # within the skew allowance
        self._start = now - (now_wall - since)
        self._started_at = round(since, 3)

    def _elapsed(self):
        return round(self._clock() - self._start, 3)

    def _probe(self):
        in_flight, values, details = _inflight.read_all(self.sources)
        self._last = {'values': values, 'details': details}
        self._history.append(in_flight)
        came_back = bool(self._guard(self._elapsed(), in_flight)) if self._guard is not None else False
        if in_flight == 0 and not came_back:
            if self._zero_since is None:
                self._zero_since = round(self._wall(), 3)
        else:
            self._zero_since = None
        sample = {'t': self._elapsed(), 'in_flight': in_flight, 'sources': values}
        if len(self._samples) >= self.params['max_samples']:
            del self._samples[1]
            self._dropped += 1
        self._samples.append(sample)
        if came_back:
            sample['lb_came_back'] = True
            return {'in_flight': in_flight, 'sources': values, 'came_back': True}
        return {'in_flight': in_flight, 'sources': values}

    def _describe_sources(self):
        described = {}
        for source in self.sources:
            entry = source.describe()
            entry['in_flight'] = self._last.get('values', {}).get(source.name)
            entry['detail'] = self._last.get('details', {}).get(source.name)
            described[source.name] = entry
        return described

    def _result(self, drained, samples=None, dropped=None, waited=None):
        history = self._history
        finished_at = round(self._wall(), 3)
        if self._start is None:
            self._started_at = finished_at
        return dict(
            changed=False,
            drained=drained,
            in_flight_initial=history[0] if history else None,
            in_flight_final=history[-1] if history else None,
            waited_seconds=(self._elapsed() if self._start is not None else 0.0) if waited is None else waited,
            polls=len(history),
            samples=list(self._samples) if samples is None else samples,
            samples_dropped=self._dropped if dropped is None else dropped,
            sources=self._describe_sources(),
            started_at=self._started_at,
            finished_at=finished_at,
            drained_at=self._zero_since if drained else None,
        )

    def run(self):
        """Wait; return C((result, failure_msg))."""
        params = self.params
        problems = check_params(params)
        if problems:
            return self._result(False), '; '.join(problems)
        try:
            self.sources = build_sources(params)
        except _inflight.InFlightError as exc:
            return self._result(False), to_text(exc)
        if not self.sources:
            return self._result(False), ('no in-flight source is configured: give at least one of %s to count the requests in flight'
                                         % ', '.join(SOURCE_NAMES))
        self._begin()
        try:
            if self.check_mode:
                value = self._probe()
                return self._result(value['in_flight'] == 0, waited=self._samples[-1]['t']), None
            polled = poll_until(self._probe, lambda value: value['in_flight'] == 0 and not value.get('came_back'),
                                timeout=params['timeout'],
                                interval=params['poll_interval'], quiet_period=params['quiet_period'],
                                max_samples=params['max_samples'], clock=self._clock, sleep=self._sleep, started=self._start)
        except _inflight.InFlightError as exc:
            msg = to_text(exc)
            if self._history:
                msg = '%s (after %d successful reads; the last one counted %s in flight)' % (msg, len(self._history), self._history[-1])
            return self._result(False), msg

        samples = [dict({'t': s['t'], 'in_flight': s['value']['in_flight'], 'sources': s['value']['sources']},
                        **({'lb_came_back': True} if s['value'].get('came_back') else {})) for s in polled.samples]
        result = self._result(polled.satisfied, samples=samples, dropped=polled.samples_dropped, waited=polled.waited_seconds)
        if polled.satisfied:
            return result, None
        per_source = ', '.join('%s=%s' % (k, v) for k, v in sorted(polled.last_value['sources'].items()))
        quiet = ' and stay 0 for %s s' % params['quiet_period'] if params['quiet_period'] else ''
        counted = ' (counted from since=%s)' % self._started_at if params['since'] is not None else ''
        msg = ('%s request(s) still in flight (%s) after %s s: the instance did not drain%s within timeout=%s s%s. '
               'Check that it is out of its load balancer, or raise timeout.'
               % (result['in_flight_final'], per_source, result['waited_seconds'], quiet, params['timeout'], counted))
        if params['on_timeout'] == 'fail':
            return result, msg
        self.warn(msg + ' Proceeding because on_timeout=proceed.')
        return result, None
