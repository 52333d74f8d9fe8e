"""Helpers for the testinfra suites of every scenario: HAProxy state and load runs."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
LOADGEN = REPO / 'tests' / 'fleet' / 'loadgen.py'


def haproxy_servers(host, backend='models'):
    """Return {server: status} for one backend, read over the LB's admin socket."""
    out = host.check_output("echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock")
    lines = out.splitlines()
    header = lines[0].lstrip('# ').split(',')
    servers = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(',')))
        if row.get('pxname') == backend and row.get('svname') not in ('FRONTEND', 'BACKEND'):
            servers[row['svname']] = row['status']
    return servers


def run_load(seconds, rate=5, url=None):
    """Run the load generator through the LB and return its JSON summary."""
    url = url or os.environ['FLEET_LB_URL'].split(',')[0] + '/v1/completions'
    with tempfile.TemporaryDirectory() as tmp:
        summary = pathlib.Path(tmp) / 'summary.json'
        subprocess.run(
            [sys.executable, str(LOADGEN), '--url', url, '--rate', str(rate), '--duration', str(seconds),
             '--summary', str(summary)],
            check=True, timeout=seconds + 120)
        return json.loads(summary.read_text())


def other_host(host, name):
    """The testinfra host `name` from the same molecule inventory as `host`."""
    return host.get_host('ansible://' + name, ansible_inventory=host.backend.ansible_inventory)


def task_log(host, instance='llama'):
    """The reference model server's task log records on `host`."""
    out = host.check_output('cat /var/log/model-server/%s.tasks.jsonl' % instance)
    return [json.loads(line) for line in out.splitlines() if line.strip()]
