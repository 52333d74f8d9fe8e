# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one deadline/poll loop every waiting module uses.

Not part of the public API: the leading underscore keeps it private to this collection.
"""

from __future__ import annotations

import time


class PollResult(object):
    """What a poll loop saw: whether the condition held, how long it took, and bounded samples."""

    def __init__(self, satisfied, waited_seconds, last_value, samples, samples_dropped, polls):
        self.satisfied = satisfied
        self.waited_seconds = waited_seconds
        self.last_value = last_value
        self.samples = samples
        self.samples_dropped = samples_dropped
        self.polls = polls


def poll_until(probe, done, timeout, interval, quiet_period=0.0, max_samples=50,
               clock=time.monotonic, sleep=time.sleep, started=None):
    """Call C(probe()) every C(interval) seconds until C(done(value)) has held for C(quiet_period).

    The deadline is C(timeout) seconds after C(started) (a C(clock()) reading, possibly in the past),
    by default the start of the first probe; sample times and C(waited_seconds) count from the same
    moment. The first probe always runs, even when the deadline has passed. Exceptions from C(probe) propagate:
    the caller turns them into a clear failure. Samples are kept as
    C({'t': seconds_since_start, 'value': value}); once C(max_samples) is reached the middle ones
    are dropped (the first and the latest are the most useful) and counted.
    """
    start = clock() if started is None else started
    deadline = start + timeout
    samples = []
    dropped = 0
    polls = 0
    quiet_since = None
    while True:
        value = probe()
        polls += 1
        now = clock()
        sample = {'t': round(now - start, 3), 'value': value}
        if len(samples) >= max_samples:
            # Keep the first sample, drop the oldest of the rest.
            del samples[1]
            dropped += 1
        samples.append(sample)
        if done(value):
            if quiet_since is None:
                quiet_since = now
            if now - quiet_since >= quiet_period:
                return PollResult(True, round(now - start, 3), value, samples, dropped, polls)
        else:
            quiet_since = None
        if now >= deadline:
            return PollResult(False, round(now - start, 3), value, samples, dropped, polls)
        # Never sleep past the deadline, so the last probe lands on it.
        sleep(max(0.0, min(interval, deadline - clock())))
