# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hypothesis settings of the property tests (C(tests/unit/property)).

The profile C(modelops) is loaded unless C(HYPOTHESIS_PROFILE) names another one:

* C(modelops) (default, CI): a modest C(max_examples), C(derandomize=True) so every run tries the same
  examples and a failure reproduces, no example database (nothing written to the work tree), no per-example
  deadline (a module run takes milliseconds but the first ones import code), C(too_slow) and
  C(data_too_large) health checks off (module worlds are large by design).
* C(modelops-thorough): ten times the examples, still deterministic; for a local hunt
  (C(HYPOTHESIS_PROFILE=modelops-thorough make units)).

Shrinking a failure is bounded too: C(MODELOPS_SHRINK_SECONDS) (default 4) seconds per test instead of
Hypothesis' five minutes (C(engine.MAX_SHRINKING_SECONDS), which Hypothesis documents as the knob). The
failures found and the examples tried are the same on every run; how far a failing example shrinks in that time
can vary with the machine's speed (Hypothesis then says it stopped shrinking).

No test here waits on real time or touches this host: see C(fakes.py).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import engine

engine.MAX_SHRINKING_SECONDS = float(os.environ.get('MODELOPS_SHRINK_SECONDS', '4'))

COMMON = dict(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

settings.register_profile('modelops', max_examples=40, **COMMON)
settings.register_profile('modelops-thorough', max_examples=400, **COMMON)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'modelops'))
