"""Fault injection: kill a fleet container as soon as HAProxy reports it draining.

Usage: python kill_when_draining.py <lb container> <backend> <server container> <timeout s>
Polls HAProxy's runtime API through `docker exec`; exits 0 once it killed the container,
1 if the server never started draining within the timeout.
"""

from __future__ import annotations

import subprocess
import sys
import time


def server_status(lb, backend, server):
    out = subprocess.run(
        ['docker', 'exec', lb, 'sh', '-c', "echo 'show stat' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock"],
        capture_output=True, text=True, check=False).stdout
    lines = out.splitlines()
    if not lines:
        return None
    header = lines[0].lstrip('# ').split(',')
    for line in lines[1:]:
        row = dict(zip(header, line.split(',')))
        if row.get('pxname') == backend and row.get('svname') == server:
            return row.get('status')
    return None


def main():
    lb, backend, server, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_status(lb, backend, server) == 'DRAIN':
            time.sleep(0.5)
            subprocess.run(['docker', 'kill', server], check=True, capture_output=True)
            print('killed %s while it was draining' % server)
            return 0
        time.sleep(0.2)
    print('%s never started draining within %s s' % (server, timeout))
    return 1


if __name__ == '__main__':
    sys.exit(main())
