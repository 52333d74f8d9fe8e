"""Constant load through the LB for 20 seconds: every request succeeds."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position


def test_load_through_lb_has_no_failures():
    summary = fleetcheck.run_load(seconds=20, rate=5)
    assert summary['sent'] >= 90
    assert summary['ok'] == summary['sent']
    assert summary['failed'] == 0
    assert summary['cut'] == 0
    assert summary['connection_errors'] == 0
    assert not summary['http_errors']
