# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""poll_until with a fake clock: nothing sleeps."""

from __future__ import annotations

import pytest

from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until


class FakeClock(object):
    def __init__(self, now=50.0):
        self.now = now
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def probe_script(clock, values, cost=0.1):
    values = list(values)

    def probe():
        clock.now += cost
        return values.pop(0) if len(values) > 1 else values[0]
    return probe


def test_deadline_counts_from_the_first_probe_by_default():
    clock = FakeClock()
    result = poll_until(probe_script(clock, [1]), lambda v: v == 0, 2, 1, clock=clock, sleep=clock.sleep)
    assert not result.satisfied and result.polls == 3
    assert [s['t'] for s in result.samples] == [0.1, 1.2, 2.1]
    assert result.waited_seconds == 2.1


def test_started_moves_the_deadline_and_the_times():
    clock = FakeClock()
    result = poll_until(probe_script(clock, [1]), lambda v: v == 0, 2, 1, clock=clock, sleep=clock.sleep, started=clock() - 1.5)
    # 1.5 s of the 2 s deadline had passed before the first probe.
    assert not result.satisfied and result.polls == 2
    assert [s['t'] for s in result.samples] == [1.6, 2.1]
    assert result.waited_seconds == 2.1


def test_started_past_the_deadline_probes_once():
    clock = FakeClock()
    result = poll_until(probe_script(clock, [1]), lambda v: v == 0, 2, 1, clock=clock, sleep=clock.sleep, started=clock() - 10)
    assert result.polls == 1 and clock.sleeps == [] and result.waited_seconds == 10.1


def test_started_with_a_satisfied_first_probe():
    clock = FakeClock()
    result = poll_until(probe_script(clock, [0]), lambda v: v == 0, 2, 1, clock=clock, sleep=clock.sleep, started=clock() - 10)
    assert result.satisfied and result.polls == 1 and result.waited_seconds == 10.1


def test_quiet_period_counts_from_the_first_satisfied_probe_not_from_started():
    clock = FakeClock()
    result = poll_until(probe_script(clock, [0]), lambda v: v == 0, 30, 0.5, quiet_period=1, clock=clock,
                        sleep=clock.sleep, started=clock() - 5)
    assert result.satisfied and result.polls == 3
    assert result.samples[-1]['t'] - result.samples[0]['t'] == pytest.approx(1.2)
