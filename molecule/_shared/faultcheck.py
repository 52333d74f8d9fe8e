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


def report(name=None):
    """The latest run's report, or the one written with report_name=<name>."""
    if name is not None:
        return json.loads((RESULTS / 'reports' / (name + '.json')).read_text())
    reports = sorted((RESULTS / 'reports').glob('shutdown-*.json'))
    assert reports, 'no report was written'
    return json.loads(reports[-1].read_text())


def load_summary():
    """The constant load's summary (load_start.yml / load_stop.yml)."""
    return json.loads((RESULTS / 'load' / 'summary.json').read_text())


def journals():
    """Every run's journal (run_shutdown.yml puts them in <ephemeral>/journal): [(run id, [events])], oldest first."""
    found = []
    for path in (RESULTS / 'journal').glob('*.jsonl'):
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        found.append((events[0]['run'], events))
    return sorted(found, key=lambda item: item[1][0]['t'])


def journal(run):
    """The events of run C(run)'s journal."""
    for found, events in journals():
        if found == run:
            return events
    raise AssertionError('no journal of run %s in %s' % (run, RESULTS / 'journal'))


def journal_of(report_name):
    """The events of the run that wrote the report C(report_name) (the report names its journal)."""
    return journal(report(report_name)['journal']['run'])


def events(journal_events, kind, **match):
    return [e for e in journal_events if e['event'] == kind and all(e.get(k) == v for k, v in match.items())]


def host_records(name=None):
    return {record['host']: record for record in report(name)['hosts']}


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
