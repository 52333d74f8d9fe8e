"""Assertions shared by the fault scenarios: the run halted, and no host is drained while its unit runs."""

from __future__ import annotations

import json
import os
import pathlib

import fleetcheck

RESULTS = pathlib.Path(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '/nonexistent'))


def run_rc(name='shutdown'):
    return int((RESULTS / (name + '.rc')).read_text().strip())


def run_log(name='shutdown'):
    return (RESULTS / (name + '.log')).read_text()


def report():
    reports = sorted((RESULTS / 'reports').glob('shutdown-*.json'))
    assert reports, 'no report was written'
    return json.loads(reports[-1].read_text())


def host_records():
    return {record['host']: record for record in report()['hosts']}


def assert_no_host_drained_while_running(lb_host, model_hosts):
    """Every server out of rotation on the LB has its unit stopped; every running unit is UP."""
    servers = fleetcheck.haproxy_servers(lb_host)
    for name in model_hosts:
        host = fleetcheck.other_host(lb_host, name)
        try:
            running = host.service('model-server@llama.service').is_running
        except Exception:  # pylint: disable=broad-exception-caught
            running = False  # the container is gone: nothing runs there
        if running:
            assert servers[name] == 'UP', '%s runs its unit but HAProxy has it %s' % (name, servers[name])
