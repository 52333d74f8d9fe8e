#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: what ONE Ansible task costs per batch, by batch size, on this machine.

    python3 bench/task_floor.py [--hosts 9] [--sizes 1,2,5,9] [--rounds 3] [--keep] [--json out.json]

The rollout's per-batch overhead is a handful of Ansible tasks. This measures the cost of one
task over a batch of k hosts, for each k of --sizes, so that the rollout's figures can be read
against what Ansible itself costs here. It brings up side_by_side.py's fleet (no load), then,
round after round (sizes in ascending order in odd rounds, descending in even ones), runs
bench/task_floor.yml over the last k model hosts with one environment for every run
(ANSIBLE_PIPELINING=True, ANSIBLE_FORKS = the largest size, the inventory's docker connection).
The playbook has three tasks, each timed by bench/callback_plugins/task_timer.py from the task's
start to its last host's result:

  raw            a connection and a command, no module
  ping           the smallest module call (ansible.builtin.ping)
  host_shutdown  this collection's per-host call, in check mode (changes nothing)

It prints, per size and task, the median over the rounds, and each median's growth over the
smallest size. Not a test: it exits 0 when every run succeeded. Files go to
.build/bench/task_floor/. Needs the bootstrap (make bootstrap link); standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from rollout_floor import REPO, run_and_show, say  # noqa: E402  pylint: disable=wrong-import-position
from side_by_side import SideBySide, default_waits, terminate_on_sigterm  # noqa: E402  pylint: disable=wrong-import-position

TASKS = ('raw', 'ping', 'host_shutdown')


def size_order(rounds, sizes):
    """(round, size) pairs: ascending sizes in odd rounds, descending in even ones."""
    ordered = sorted(sizes)
    return [(number, size) for number in range(1, rounds + 1)
            for size in (ordered if number % 2 else list(reversed(ordered)))]


def summarize(runs, sizes):
    """Per size and task, the median seconds over the successful runs, and its growth over the smallest size."""
    medians = {}
    for size in sorted(sizes):
        medians[size] = {}
        for index, task in enumerate(TASKS):
            values = [run['tasks'][index]['seconds'] for run in runs
                      if run['size'] == size and run['rc'] == 0 and len(run['tasks']) == len(TASKS)
                      and run['tasks'][index]['seconds'] is not None]
            medians[size][task] = round(statistics.median(values), 3) if values else None
    smallest = min(sizes)
    growth = {size: {task: (round(medians[size][task] - medians[smallest][task], 3)
                            if medians[size][task] is not None and medians[smallest][task] is not None else None)
                     for task in TASKS} for size in sorted(sizes)}
    return {'medians': medians, 'growth_over_smallest': growth}


class TaskFloor(SideBySide):
    def __init__(self, args):
        args.retire = max(args.sizes)
        args.serial = [max(args.sizes)]
        args.min_available = 0
        super().__init__(args)
        self.env['ANSIBLE_CALLBACK_PLUGINS'] = os.path.join(HERE, 'callback_plugins')
        self.env['ANSIBLE_CALLBACKS_ENABLED'] = 'task_timer'

    def one_size(self, number, size):
        name = 'r%d-k%d' % (number, size)
        timer = os.path.join(self.logs, name + '.json')
        self.env['TASK_TIMER_FILE'] = timer
        if os.path.exists(timer):
            os.remove(timer)
        hosts = ','.join(self.servers[-size:])  # the last hosts: never retired by side_by_side.py
        rc, wall = self.playbook(name, 'bench/task_floor.yml', '-e', 'task_floor_hosts=%s' % hosts, check=False)
        tasks = []
        try:
            with open(timer, encoding='utf-8') as handle:
                tasks = json.load(handle)
        except (OSError, ValueError):
            pass
        if rc != 0:
            self.tail(os.path.join(self.logs, name + '.log'))
        run = {'round': number, 'size': size, 'rc': rc, 'wall_seconds': round(wall, 3), 'tasks': tasks}
        say('   round %d, %d host(s): %s  (playbook %.2f s%s)' % (
            number, size, '  '.join('%s %.2f s' % (task, t['seconds']) for task, t in zip(TASKS, tasks)
                                    if t['seconds'] is not None),
            wall, '' if rc == 0 else ', FAILED exit %d' % rc))
        return run

    def run(self):
        args = self.args
        self.check()
        say('== task floor: %d model hosts, batch sizes %s, %d round(s); ANSIBLE_PIPELINING=True ANSIBLE_FORKS=%d, '
            'connection community.docker.docker' % (args.hosts, sorted(args.sizes), args.rounds, args.forks))
        if not args.reuse:
            self.bring_up()
        for number, size in size_order(args.rounds, args.sizes):
            self.runs.append(self.one_size(number, size))
        summary = summarize(self.runs, args.sizes)
        return {'parameters': {'hosts': args.hosts, 'sizes': sorted(args.sizes), 'rounds': args.rounds,
                               'forks': args.forks},
                'ansible_env': {'ANSIBLE_PIPELINING': self.env['ANSIBLE_PIPELINING'],
                                'ANSIBLE_FORKS': self.env['ANSIBLE_FORKS']},
                'runs': self.runs, 'summary': summary,
                'ok': all(run['rc'] == 0 and len(run['tasks']) == len(TASKS) for run in self.runs)}


def show(result):
    if result is None:
        return
    medians, growth = result['summary']['medians'], result['summary']['growth_over_smallest']
    say('')
    say('== median seconds per task over %d round(s) (growth over %d host(s) in brackets)'
        % (result['parameters']['rounds'], min(medians)))
    say('%-6s %s' % ('hosts', ''.join('%24s' % task for task in TASKS)))
    for size in sorted(medians):
        cells = []
        for task in TASKS:
            value, extra = medians[size][task], growth[size][task]
            cells.append('%24s' % ('-' if value is None else '%.2f s (+%.2f)' % (value, extra or 0.0)))
        say('%-6d %s' % (size, ''.join(cells)))
    say('== %s' % ('OK: every run succeeded' if result['ok'] else 'FAILED'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Time one Ansible task over batches of 1..N hosts.')
    parser.add_argument('--hosts', type=int, default=9, help='model hosts in the fleet [9]')
    parser.add_argument('--sizes', default='1,2,5,9', help='batch sizes, comma-separated [1,2,5,9]')
    parser.add_argument('--rounds', type=int, default=3, help='rounds; each runs every size [3]')
    parser.add_argument('--reuse', action='store_true',
                        help='use a fleet already up in --work-dir (e.g. side_by_side.py --keep) instead of creating one')
    parser.add_argument('--keep', action='store_true', help='leave the fleet up at the end')
    parser.add_argument('--json', metavar='FILE', help='also write the results as JSON here')
    parser.add_argument('--work-dir', default=os.path.join(REPO, '.build', 'bench', 'task_floor'),
                        help='inventory, logs and timings [.build/bench/task_floor]')
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(item) for item in args.sizes.split(',') if item.strip()})
    except ValueError:
        parser.error('--sizes must be comma-separated integers')
    if not args.sizes or args.sizes[0] < 1 or args.sizes[-1] > args.hosts:
        parser.error('--sizes must be between 1 and --hosts')
    if args.rounds < 1:
        parser.error('--rounds must be at least 1')
    # What side_by_side's fleet needs; no load runs here.
    args.forks = max(args.sizes)
    args.service_time, args.rate, args.warmup, args.cooldown = 3.0, 5.0, 0.0, 0.0
    args.anchor_wait_interval, args.only = 5, 'ours'
    default_waits(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate_on_sigterm)
    # With --reuse the fleet is not created here, so teardown leaves it alone (Bench.created stays False).
    return run_and_show(TaskFloor(args), show, args.json)


if __name__ == '__main__':
    sys.exit(main())
