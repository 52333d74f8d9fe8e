"""HAProxy health-checks every model server and sees all of them UP."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://dflt-lb']


def test_haproxy_sees_all_up(host):
    assert fleetcheck.haproxy_servers(host) == {'dflt-m1': 'UP', 'dflt-m2': 'UP', 'dflt-m3': 'UP'}
