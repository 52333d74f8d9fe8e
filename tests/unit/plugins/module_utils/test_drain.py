# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DrainWaiter with fake clocks and fake sources: deterministic, nothing sleeps."""

from __future__ import annotations

import json

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils import _drain
from ansible_collections.modelops.shutdown.plugins.module_utils._drain import DrainWaiter, argument_spec, check_params
from ansible_collections.modelops.shutdown.plugins.module_utils._inflight import InFlightError
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import SpecError, validate

EPOCH = 1764374400.0
READ_SECONDS = 0.01

RESULT_KEYS = {'changed', 'drained', 'in_flight_initial', 'in_flight_final', 'waited_seconds', 'polls', 'samples',
               'samples_dropped', 'sources', 'started_at', 'finished_at', 'drained_at'}

NAN = float('nan')
INF = float('inf')


class FakeTime(object):
    """A monotonic clock at 1000 s and a wall clock at EPOCH that move together, only when slept or read."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def wall(self):
        return EPOCH + (self.now - 1000.0)

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class FakeSource(object):
    """Reports the scripted figures (the last one repeats); each read takes READ_SECONDS. An exception in the script is raised."""

    name = 'metrics'

    def __init__(self, fake_time, script, name='metrics'):
        self.time = fake_time
        self.script = list(script)
        self.name = name
        self.reads = 0

    def describe(self):
        return {'fake': self.name}

    def read(self):
        self.time.now += READ_SECONDS
        self.reads += 1
        value = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(value, Exception):
            raise value
        return {'in_flight': value, 'detail': {'n': value}}


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def waiter(fake_time, monkeypatch):
    """C(waiter(script, **params)): a DrainWaiter on one fake source (several with C(scripts={name: script}))."""
    def make(script=None, scripts=None, check_mode=False, **params):
        sources = [FakeSource(fake_time, s, name) for name, s in sorted((scripts or {'metrics': script}).items())]
        monkeypatch.setattr(_drain, 'build_sources', lambda p: sources)
        params.setdefault('metrics', {'url': 'http://fake/metrics', 'preset': 'vllm'})
        warnings = []
        drain = DrainWaiter(params, check_mode=check_mode, warn=warnings.append,
                            clock=fake_time.clock, wall=fake_time.wall, sleep=fake_time.sleep)
        drain.test_warnings = warnings
        drain.test_sources = sources
        return drain
    return make


def wall_at(seconds_from_start):
    return round(EPOCH + seconds_from_start, 3)


# --- draining ------------------------------------------------------------------------------------

def test_drains_and_reports_drained_at(waiter):
    drain = waiter([3, 2, 0], poll_interval=0.5)
    result, failure = drain.run()
    assert failure is None
    assert set(result) == RESULT_KEYS
    json.dumps(result)
    assert result['drained'] is True and result['changed'] is False
    assert result['polls'] == 3 and result['in_flight_initial'] == 3 and result['in_flight_final'] == 0
    # Reads end at 0.01, 0.51 + 0.01, ...: 0.01, 0.52, 1.03.
    assert [s['t'] for s in result['samples']] == [0.01, 0.52, 1.03]
    assert result['samples'][-1] == {'t': 1.03, 'in_flight': 0, 'sources': {'metrics': 0}}
    assert result['waited_seconds'] == 1.03
    assert result['started_at'] == wall_at(0)
    assert result['drained_at'] == wall_at(1.03) == result['finished_at']
    assert result['sources'] == {'metrics': {'fake': 'metrics', 'in_flight': 0, 'detail': {'n': 0}}}
    assert drain.test_warnings == [] and drain.warnings == []


def test_drained_at_is_the_first_zero_of_the_quiet_run(waiter):
    result, failure = waiter([0, 1, 0, 0, 0, 0], poll_interval=0.5, quiet_period=1.0).run()
    assert failure is None and result['drained'] is True
    assert [s['in_flight'] for s in result['samples']] == [0, 1, 0, 0, 0]
    # The 0 at the first read does not count: a request came after it. The run starts at the third read.
    assert result['drained_at'] == wall_at(result['samples'][2]['t'])
    assert result['samples'][-1]['t'] - result['samples'][2]['t'] >= 1.0


def test_max_over_sources(waiter):
    result, failure = waiter(scripts={'metrics': [0], 'haproxy': [2, 0]}, poll_interval=0.5).run()
    assert failure is None and result['drained'] is True
    assert result['samples'][0]['in_flight'] == 2 and result['samples'][0]['sources'] == {'metrics': 0, 'haproxy': 2}


def test_timeout_fails_with_todays_message(waiter, fake_time):
    result, failure = waiter([5], timeout=2, poll_interval=0.5).run()
    assert failure.startswith('5 request(s) still in flight (metrics=5) after ')
    assert 'within timeout=2 s. Check that it is out of its load balancer' in failure
    assert 'since' not in failure
    assert result['drained'] is False and result['drained_at'] is None
    # The last read lands on the deadline (2 s after the start), plus its own duration.
    assert result['waited_seconds'] == 2.01
    # Reads start 0.51 s apart until the last one, which starts on the deadline.
    assert result['polls'] == 5 and fake_time.sleeps[-1] == pytest.approx(0.46)


def test_timeout_proceed_warns_and_succeeds(waiter):
    drain = waiter([1], timeout=1, poll_interval=0.5, on_timeout='proceed', quiet_period=0.5)
    result, failure = drain.run()
    assert failure is None and result['drained'] is False
    assert len(drain.test_warnings) == 1 and drain.warnings == drain.test_warnings
    assert 'stay 0 for 0.5 s' in drain.warnings[0] and drain.warnings[0].endswith('Proceeding because on_timeout=proceed.')


def test_warn_is_optional(fake_time, monkeypatch):
    monkeypatch.setattr(_drain, 'build_sources', lambda p: [FakeSource(fake_time, [1])])
    drain = DrainWaiter({'metrics': {'url': 'x'}, 'timeout': 0, 'on_timeout': 'proceed'},
                        clock=fake_time.clock, wall=fake_time.wall, sleep=fake_time.sleep)
    result, failure = drain.run()
    assert failure is None and len(drain.warnings) == 1


def test_samples_are_bounded(waiter):
    result, failure = waiter([1], timeout=5, poll_interval=0.5, max_samples=3).run()
    assert failure is not None
    assert len(result['samples']) == 3 and result['samples_dropped'] == result['polls'] - 3 > 0
    assert result['samples'][0]['t'] == 0.01


# --- since -----------------------------------------------------------------------------------------

def test_since_sets_the_deadline(waiter, fake_time):
    since = EPOCH - 100  # the load balancers were marked 100 s before the wait began
    result, failure = waiter([4], since=since, timeout=102, poll_interval=0.5).run()
    assert result['started_at'] == round(since, 3)
    # The deadline is since + 102 s, 2 s after the first read: today it would be 102 s after it.
    # Reads start 0.51 s apart until the last one, which starts on the deadline.
    assert result['polls'] == 5 and fake_time.sleeps[-1] == pytest.approx(0.46)
    assert result['samples'][0]['t'] == 100.01
    assert result['waited_seconds'] == result['samples'][-1]['t'] == 102.01
    assert failure.startswith('4 request(s) still in flight (metrics=4) after 102.01 s')
    assert '(counted from since=%s)' % round(since, 3) in failure


def test_since_counts_waited_seconds_when_draining(waiter):
    since = EPOCH - 7.5
    result, failure = waiter([2, 0], since=since, timeout=60, poll_interval=0.5).run()
    assert failure is None and result['drained'] is True
    assert result['waited_seconds'] == 7.5 + 0.52
    assert [s['t'] for s in result['samples']] == [7.51, 8.02]
    assert result['started_at'] == round(since, 3)
    assert result['drained_at'] == wall_at(0.52)


def test_since_past_the_deadline_reads_once(waiter, fake_time):
    result, failure = waiter([1], since=EPOCH - 500, timeout=300, poll_interval=0.5).run()
    assert failure is not None and result['polls'] == 1 and fake_time.sleeps == []
    assert result['waited_seconds'] == 500.01


def test_since_past_the_deadline_still_sees_a_drained_instance(waiter, fake_time):
    result, failure = waiter([0], since=EPOCH - 500, timeout=300).run()
    assert failure is None and result['drained'] is True and result['polls'] == 1


def test_since_in_the_future_counts_from_now_with_a_warning(waiter, fake_time):
    drain = waiter([3], since=EPOCH + 30, timeout=2, poll_interval=0.5)
    result, failure = drain.run()
    assert len(drain.test_warnings) == 1
    assert 'since=%s is 30.000 s ahead' % (EPOCH + 30) in drain.test_warnings[0]
    assert result['started_at'] == wall_at(0)
    assert result['samples'][0]['t'] == 0.01 and result['waited_seconds'] == 2.01
    # Reads start 0.51 s apart until the last one, which starts on the deadline.
    assert result['polls'] == 5 and fake_time.sleeps[-1] == pytest.approx(0.46)
    assert failure is not None


def test_since_slightly_ahead_is_now_without_warning(waiter):
    drain = waiter([0], since=EPOCH + 0.5)
    result, failure = drain.run()
    assert failure is None and drain.test_warnings == []
    assert result['started_at'] == wall_at(0) and result['waited_seconds'] == 0.01


def test_check_mode_reads_once(waiter, fake_time):
    result, failure = waiter([3], check_mode=True, timeout=60).run()
    assert failure is None and result['drained'] is False and result['drained_at'] is None
    assert result['polls'] == 1 and fake_time.sleeps == []
    assert result['samples'] == [{'t': 0.01, 'in_flight': 3, 'sources': {'metrics': 3}}] and result['waited_seconds'] == 0.01


def test_check_mode_drained_with_since(waiter):
    result, failure = waiter([0], check_mode=True, since=EPOCH - 4).run()
    assert failure is None and result['drained'] is True and result['drained_at'] == wall_at(0.01)
    assert result['waited_seconds'] == 4.01 and result['started_at'] == round(EPOCH - 4, 3)


# --- failures never raise --------------------------------------------------------------------------

@pytest.mark.parametrize('params', [
    {'metrics': None, 'haproxy': None, 'connections': None},
    {},
])
@pytest.mark.parametrize('check_mode', [False, True])
def test_no_source_is_a_failure_never_drained(fake_time, params, check_mode):
    drain = DrainWaiter(params, check_mode=check_mode, clock=fake_time.clock, wall=fake_time.wall, sleep=fake_time.sleep)
    result, failure = drain.run()
    assert failure.startswith('no in-flight source is configured')
    assert 'metrics, haproxy, connections' in failure
    assert result['drained'] is False and result['drained_at'] is None and result['polls'] == 0
    assert set(result) == RESULT_KEYS
    assert result['in_flight_initial'] is None and result['samples'] == [] and result['sources'] == {}
    json.dumps(result)


def test_read_error_mid_drain(waiter):
    result, failure = waiter([2, 1, InFlightError('cannot scrape metrics: HTTP 503')], poll_interval=0.5).run()
    assert failure == 'cannot scrape metrics: HTTP 503 (after 2 successful reads; the last one counted 1 in flight)'
    assert set(result) == RESULT_KEYS
    assert result['drained'] is False and result['polls'] == 2
    assert result['in_flight_initial'] == 2 and result['in_flight_final'] == 1
    assert [s['in_flight'] for s in result['samples']] == [2, 1]


def test_first_read_fails(waiter):
    result, failure = waiter([InFlightError('haproxy: no server b/s')]).run()
    assert failure == 'haproxy: no server b/s'
    assert result['polls'] == 0 and result['in_flight_initial'] is None and result['samples'] == []


def test_bad_source_configuration(fake_time):
    drain = DrainWaiter({'metrics': {'url': 'http://x/metrics', 'preset': 'generic'}},
                        clock=fake_time.clock, wall=fake_time.wall, sleep=fake_time.sleep)
    result, failure = drain.run()
    assert 'needs a list of metrics' in failure and result['drained'] is False


def test_run_checks_params_itself(waiter, fake_time):
    drain = waiter([0], poll_interval=NAN)
    result, failure = drain.run()
    assert failure == 'poll_interval must be a finite number of seconds, got nan'
    assert result['drained'] is False and drain.test_sources[0].reads == 0 and fake_time.sleeps == []


# --- check_params and the spec ---------------------------------------------------------------------

def valid(**changes):
    params = {'connections': {'port': 80, 'exclude_peers': []}, 'metrics': None, 'haproxy': None, 'timeout': 300.0,
              'poll_interval': 0.5, 'quiet_period': 0.0, 'on_timeout': 'fail', 'max_samples': 50, 'since': None}
    params.update(changes)
    return params


def test_check_params_accepts_good_values():
    assert check_params(valid()) == []
    assert check_params(valid(since=EPOCH, timeout=0)) == []
    assert check_params({'connections': {'port': 80}}) == []


@pytest.mark.parametrize('changes, problem', [
    ({'timeout': NAN}, 'timeout must be a finite number of seconds, got nan'),
    ({'timeout': INF}, 'timeout must be a finite number of seconds, got inf'),
    ({'timeout': -INF}, 'timeout must be a finite number of seconds, got -inf'),
    ({'timeout': -1.0}, 'timeout must be 0 or more seconds, got -1.0'),
    ({'poll_interval': NAN}, 'poll_interval must be a finite number of seconds, got nan'),
    ({'poll_interval': INF}, 'poll_interval must be a finite number of seconds, got inf'),
    ({'poll_interval': 0.05}, 'poll_interval must be at least 0.1 seconds, got 0.05'),
    ({'quiet_period': NAN}, 'quiet_period must be a finite number of seconds, got nan'),
    ({'quiet_period': INF}, 'quiet_period must be a finite number of seconds, got inf'),
    ({'quiet_period': -1.0}, 'quiet_period must be 0 or more seconds, got -1.0'),
    ({'max_samples': 1}, 'max_samples must be at least 2, got 1'),
    ({'metrics': {'url': 'u', 'preset': 'vllm', 'timeout': NAN}}, 'metrics.timeout must be a finite number of seconds, got nan'),
    ({'metrics': {'url': 'u', 'preset': 'vllm', 'timeout': INF}}, 'metrics.timeout must be a finite number of seconds, got inf'),
    ({'metrics': {'url': 'u', 'preset': 'vllm', 'timeout': 0.0}}, 'metrics.timeout must be more than 0 seconds, got 0.0'),
    ({'connections': {'port': 0, 'exclude_peers': []}}, 'connections.port must be between 1 and 65535, got 0'),
    ({'haproxy': {'socket': None, 'host': 'h', 'port': 70000, 'backend': 'b', 'server': 's'}},
     'haproxy.port must be between 1 and 65535, got 70000'),
    ({'since': NAN}, 'since must be a wall-clock time in seconds since the epoch, got nan'),
    ({'since': INF}, 'since must be a wall-clock time in seconds since the epoch, got inf'),
    ({'since': -5.0}, 'since must be a wall-clock time in seconds since the epoch, got -5.0'),
])
def test_check_params_problems(changes, problem):
    assert check_params(valid(**changes)) == [problem]


def test_check_params_reports_every_problem():
    assert len(check_params(valid(timeout=NAN, poll_interval=NAN, quiet_period=INF, max_samples=0))) == 4


def test_argument_spec_and_module_kwargs():
    spec = argument_spec()
    assert spec['since'] == {'type': 'float'}
    assert spec['metrics']['options']['token']['no_log'] is True
    assert _drain.MODULE_KWARGS['required_one_of'] == [('metrics', 'haproxy', 'connections')]
    # Every call gets its own spec (callers may nest or change it).
    spec['timeout']['default'] = 1
    assert argument_spec()['timeout']['default'] == 300


# --- no usable source, whatever the path (model_drain, or host_shutdown through _spec.validate) -----------

NULL_SOURCES = {'metrics': None, 'haproxy': None, 'connections': None}


def test_check_params_refuses_every_source_null():
    problems = check_params(dict(NULL_SOURCES, timeout=5))
    assert problems == ['no in-flight source is configured: give at least one of metrics, haproxy, connections (an option '
                        'given as null is not given) to count the requests in flight']


def test_nested_validation_drops_nulls_so_required_one_of_holds():
    """host_shutdown validates its drain options with _spec.validate, which drops null values: the same refusal."""
    with pytest.raises(SpecError, match=r'^drain: one of the following is required: metrics, haproxy, connections$'):
        validate(argument_spec(), dict(NULL_SOURCES, timeout=5), 'drain', required_one_of=_drain.MODULE_KWARGS['required_one_of'])


def test_waiter_whose_sources_come_out_empty_fails(fake_time, monkeypatch):
    """Even past the parameter checks, a wait with no source to read is a failure, never drained."""
    monkeypatch.setattr(_drain, 'build_sources', lambda params: [])
    drain = DrainWaiter({'connections': {'port': 80}}, clock=fake_time.clock, wall=fake_time.wall, sleep=fake_time.sleep)
    result, failure = drain.run()
    assert failure.startswith('no in-flight source is configured') and result['drained'] is False


@pytest.mark.parametrize('changes, problem', [
    ({'timeout': 1e300}, 'timeout must be at most 604800 seconds (a week), got 1e+300'),
    ({'poll_interval': 1e300}, 'poll_interval must be at most 604800 seconds (a week), got 1e+300'),
    ({'quiet_period': 1e9}, 'quiet_period must be at most 604800 seconds (a week), got 1000000000.0'),
    ({'metrics': {'url': 'u', 'preset': 'vllm', 'timeout': 1e300}}, 'metrics.timeout must be at most 604800 seconds (a week)'),
])
def test_check_params_refuses_absurd_durations(changes, problem):
    [found] = check_params(valid(**changes))
    assert found.startswith(problem)
