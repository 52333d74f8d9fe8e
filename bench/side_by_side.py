#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: playbooks/shutdown.yml side by side with a hand-written playbook (bench/anchor.yml).

    python3 bench/side_by_side.py [--hosts 5] [--retire 3] [--serial '[1, 2]'] [--service-time 3]
                                  [--rate 5] [--rounds 2] [--forks N] [--only both|ours|anchor]
                                  [--keep] [--json out.json]

Brings up ONE fleet with bench/rollout_floor.py's Bench (containers bench-lb and bench-m1..N),
then, round after round, runs the anchor (bench/anchor.yml: drain on HAProxy and wait for the
sessions to end, stop the unit, wait for the port to close) and ours (playbooks/shutdown.yml) over
the same hosts (group retire, the first --retire), the same batches (shutdown_serial), the same
load (one load generator per run, started --warmup s before and stopped --cooldown s after) and
the same Ansible settings (one environment: ANSIBLE_PIPELINING=True, ANSIBLE_FORKS, the
inventory's community.docker.docker connection). Odd rounds run the anchor first, even rounds
ours first. Between two runs the retired hosts are brought back with playbooks/restore.yml and
the script waits (with a deadline) until HAProxy reports every server UP.

For each run it prints the wall time of the ansible-playbook process, wall / floor (floor =
number of batches x service time), and the failed and cut requests of the load; for ours also
the per-batch overhead from the rollout's JSON report. Then per side the median wall and median
ratio, and ours / anchor. Exit status 0 only when every run succeeded and lost no request.
The fleet is torn down at the end, on failure and on Ctrl-C (or SIGTERM) too, unless --keep.
Files go to .build/bench/side_by_side/. Needs the bootstrap (make bootstrap link); stdlib only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import rollout_floor  # noqa: E402  pylint: disable=wrong-import-position
from rollout_floor import LB_PORT, REPO, Bench, run_and_show, say  # noqa: E402  pylint: disable=wrong-import-position

SHARED = os.path.join(REPO, 'molecule', '_shared')
if SHARED not in sys.path:
    sys.path.insert(0, SHARED)
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

SIDES = ('anchor', 'ours')
PLAYBOOKS = {'anchor': 'bench/anchor.yml', 'ours': 'playbooks/shutdown.yml'}


# -- pure helpers (tests/unit/bench/test_side_by_side.py) -------------------------------------
INOTIFY_INSTANCES = '/proc/sys/fs/inotify/max_user_instances'
# systemd as PID 1 takes several inotify instances per container; all containers share root's limit.
INOTIFY_PER_CONTAINER = 16


def ensure_inotify_instances(containers, path=INOTIFY_INSTANCES):
    """Raise the host's inotify instance limit when the fleet needs more (the default 128 lets only ~25
    systemd containers boot: the rest fail `systemctl is-system-running`). Returns the limit in force."""
    need = containers * INOTIFY_PER_CONTAINER + 128
    try:
        with open(path, encoding='ascii') as handle:
            have = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    if have >= need:
        return have
    try:
        with open(path, 'w', encoding='ascii') as handle:
            handle.write('%d\n' % need)
    except OSError as exc:
        raise SystemExit('bench: %d systemd containers need fs.inotify.max_user_instances >= %d (it is %d) and it '
                         'could not be raised (%s); run: sysctl -w fs.inotify.max_user_instances=%d'
                         % (containers, need, have, exc, need))
    say('   raised fs.inotify.max_user_instances from %d to %d for %d systemd containers' % (have, need, containers))
    return need


def parse_serial(text):
    """shutdown_serial from the command line: JSON (a number, "25%", a list) or a bare 25%."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text.strip()
    if isinstance(value, bool) or not isinstance(value, (int, str, list)) or value in ([], ''):
        raise ValueError('--serial must be a number, a percentage or a non-empty JSON list, got %r' % (value,))
    return value


def _serial_item(value, count):
    """Ansible's pct_to_int: "25%" of count (at least 1), or int(value)."""
    if isinstance(value, str) and value.endswith('%'):
        return int((int(value[:-1]) / 100.0) * count) or 1
    if isinstance(value, bool):
        raise ValueError('bad serial item %r' % (value,))
    return int(value)


def batch_sizes(count, serial):
    """The batch sizes Ansible makes of `count` hosts for `serial` (PlaybookExecutor._get_serialized_batches)."""
    items = serial if isinstance(serial, list) else [serial]
    sizes, left, index = [], count, 0
    while left > 0:
        size = _serial_item(items[index], count)
        if size <= 0:
            sizes.append(left)
            break
        size = min(size, left)
        sizes.append(size)
        left -= size
        index = min(index + 1, len(items) - 1)
    return sizes


def run_order(rounds, only='both'):
    """[(round, side)]: odd rounds anchor then ours, even rounds ours then anchor."""
    order = []
    for number in range(1, rounds + 1):
        sides = SIDES if number % 2 else tuple(reversed(SIDES))
        order.extend((number, side) for side in sides if only in ('both', side))
    return order


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def report_batches(report):
    """The report's batches as [{number, hosts, duration_seconds, floor_seconds, overhead_seconds}],
    None for what the report does not have (its format is still moving)."""
    batches = report.get('batches') if isinstance(report, dict) else None
    if not isinstance(batches, list):
        return []
    rows = []
    for index, batch in enumerate(batches, 1):
        batch = batch if isinstance(batch, dict) else {}
        hosts = batch.get('hosts')
        rows.append({
            'number': batch.get('number', index),
            'hosts': ([str(h.get('host', '?')) if isinstance(h, dict) else str(h) for h in hosts]
                      if isinstance(hosts, list) else []),
            'duration_seconds': _number(batch.get('duration_seconds')),
            'floor_seconds': _number(batch.get('floor_seconds')),
            'overhead_seconds': _number(batch.get('overhead_seconds')),
        })
    return rows


def load_lost(load):
    """Whether a load summary shows a lost request (or is missing)."""
    return not isinstance(load, dict) or load.get('failed') != 0 or load.get('cut') != 0


def all_up(statuses, servers):
    """Whether HAProxy's {server: status} has every one of `servers` exactly UP."""
    return bool(statuses) and all(statuses.get(name) == 'UP' for name in servers)


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(runs):
    """Per side: runs, successful runs, median wall and ratio over the successful ones; ours / anchor."""
    sides = {}
    for side in SIDES:
        mine = [r for r in runs if r['side'] == side]
        good = [r for r in mine if r['rc'] == 0]
        sides[side] = {
            'runs': len(mine),
            'succeeded': len(good),
            'median_wall_seconds': _median([r['wall_seconds'] for r in good]),
            'median_ratio': _median([r['ratio'] for r in good]),
        }
    ours, anchor = sides['ours']['median_wall_seconds'], sides['anchor']['median_wall_seconds']
    # Both sides have the same floor, so the ratio of the median ratios is the ratio of the median walls.
    sides['ours_over_anchor'] = round(ours / anchor, 3) if ours is not None and anchor else None
    return sides


def fmt(value, unit='', width=8, digits=2):
    if value is None:
        return '%*s' % (width + len(unit), '-')
    return '%*.*f%s' % (width, digits, value, unit)


# -- the bench ---------------------------------------------------------------------------------
class _Container:
    """Just enough of a testinfra host for fleetcheck.haproxy_servers: check_output via docker exec."""

    def __init__(self, name):
        self.name = name

    def check_output(self, command):
        return subprocess.run(['docker', 'exec', self.name, 'sh', '-c', command], check=True,
                              capture_output=True, text=True, timeout=20).stdout


class SideBySide(Bench):
    def __init__(self, args):
        super().__init__(args)
        # The same settings for every ansible-playbook run of the bench, both sides included.
        self.env['ANSIBLE_PIPELINING'] = 'True'
        self.env['ANSIBLE_FORKS'] = str(args.forks)
        layout = rollout_floor.inventory(args)['all']['children']['fleet']['children']
        self.lb = next(iter(layout['load_balancers']['hosts']))
        self.servers = list(layout['model_servers']['hosts'])
        self.sizes = batch_sizes(args.retire, args.serial)
        self.floor = len(self.sizes) * args.service_time
        self.runs = []
        self.restores = []
        self.aborted = None

    # -- waits -------------------------------------------------------------------------------
    def wait_systemd(self, timeout):
        """Wait until systemd has finished booting in every container (running or degraded)."""
        names = [self.lb] + self.servers
        deadline = time.monotonic() + timeout
        due = {name: 0.0 for name in names}  # name -> when to (re)start its probe
        procs, states = {}, {}
        try:
            while due or procs:
                now = time.monotonic()
                for name in [n for n, at in due.items() if at <= now]:
                    del due[name]
                    procs[name] = subprocess.Popen(  # pylint: disable=consider-using-with
                        ['docker', 'exec', name, 'systemctl', 'is-system-running', '--wait'],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
                for name, proc in list(procs.items()):
                    if proc.poll() is None:
                        continue
                    out = proc.stdout.read().strip()
                    proc.stdout.close()
                    del procs[name]
                    states[name] = out.splitlines()[-1] if out else 'exit %d' % proc.returncode
                    if states[name] not in ('running', 'degraded'):
                        due[name] = time.monotonic() + 1.0  # still starting, or exec not possible yet
                if time.monotonic() > deadline:
                    late = sorted(set(due) | set(procs))
                    raise SystemExit('bench: systemd not up after %.0f s in %s (last: %s)'
                                     % (timeout, ', '.join(late), ', '.join('%s=%s' % (n, states.get(n, '?'))
                                                                            for n in late)))
                time.sleep(0.2)
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait()
                proc.stdout.close()
        degraded = sorted(n for n, s in states.items() if s == 'degraded')
        return degraded

    def haproxy_status(self):
        try:
            return fleetcheck.haproxy_servers(_Container(self.lb))
        except (OSError, subprocess.SubprocessError, IndexError, KeyError):
            return {}

    def wait_all_up(self, timeout):
        """Wait until HAProxy reports every model server UP; return (ok, seconds, last statuses)."""
        start = time.monotonic()
        while True:
            statuses = self.haproxy_status()
            if all_up(statuses, self.servers):
                return True, time.monotonic() - start, statuses
            if time.monotonic() - start > timeout:
                return False, time.monotonic() - start, statuses
            time.sleep(0.5)

    # -- the runs ----------------------------------------------------------------------------
    def ansible_settings(self):
        """`ansible-config dump --only-changed` under the bench's environment (logged and printed)."""
        config = os.path.join(os.path.dirname(self.playbook_cmd), 'ansible-config')
        log = os.path.join(self.logs, 'ansible-config.log')
        try:
            out = subprocess.run([config, 'dump', '--only-changed'], cwd=REPO, env=self.env, capture_output=True,
                                 text=True, timeout=120, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            out = ''
        with open(log, 'w', encoding='utf-8') as handle:
            handle.write(out)
        return [line for line in out.splitlines() if line.strip() and not line.rstrip().endswith(':')]

    def one_run(self, number, side):
        args = self.args
        name = 'r%d-%s' % (number, side)
        self.load_dir = os.path.join(self.work, 'load', name)
        os.makedirs(self.load_dir, exist_ok=True)
        self.start_load()
        time.sleep(args.warmup)
        if self.load.poll() is not None:
            self.tail(os.path.join(self.logs, 'load.log'))
            raise SystemExit('bench: the load generator exited early')
        say('   round %d, %s: %s running (log: %s)' % (number, side, PLAYBOOKS[side],
                                                       os.path.relpath(os.path.join(self.logs, name + '.log'), REPO)))
        before = set(glob.glob(os.path.join(self.reports, '**', '*.json'), recursive=True))
        extra = ['-e', 'anchor_wait_interval=%d' % args.anchor_wait_interval] if side == 'anchor' else []
        rc, wall = self.playbook(name, PLAYBOOKS[side], '-e', 'shutdown_targets=retire',
                                 '-e', json.dumps({'shutdown_serial': args.serial}), *extra, check=False)
        if rc != 0:
            self.tail(os.path.join(self.logs, name + '.log'))
        time.sleep(args.cooldown)
        load = self.stop_load()
        if os.path.exists(os.path.join(self.logs, 'load.log')):
            os.replace(os.path.join(self.logs, 'load.log'), os.path.join(self.logs, name + '-load.log'))
        report_path, batches = None, []
        if side == 'ours':
            new = sorted(set(glob.glob(os.path.join(self.reports, '**', '*.json'), recursive=True)) - before,
                         key=os.path.getmtime)
            if new:
                report_path = new[-1]
                try:
                    with open(report_path, encoding='utf-8') as handle:
                        batches = report_batches(json.load(handle))
                except (OSError, ValueError):
                    batches = []
        run = {
            'round': number, 'side': side, 'playbook': PLAYBOOKS[side], 'rc': rc,
            'wall_seconds': round(wall, 3), 'batches': len(self.sizes), 'floor_seconds': self.floor,
            'ratio': round(wall / self.floor, 2) if self.floor else None,
            'failed': (load or {}).get('failed'), 'cut': (load or {}).get('cut'), 'load': load,
            'report': report_path, 'report_batches': batches,
            'log': os.path.join(self.logs, name + '.log'),
        }
        run['ok'] = rc == 0 and not load_lost(load)
        show_run(run)
        return run

    def restore(self, number, after):
        """Bring the retired hosts back and wait until HAProxy has every server UP; False when it could not."""
        name = 'r%d-restore-after-%s' % (number, after)
        rc, took = self.playbook(name, 'playbooks/restore.yml', '-e', 'restore_targets=retire', check=False)
        record = {'after': 'r%d-%s' % (number, after), 'rc': rc, 'seconds': round(took, 3)}
        self.restores.append(record)
        if rc != 0:
            self.tail(os.path.join(self.logs, name + '.log'))
            self.aborted = 'playbooks/restore.yml failed (exit %d), see %s' % (rc, os.path.join(self.logs, name + '.log'))
            return False
        ok, waited, statuses = self.wait_all_up(self.args.up_timeout)
        record['up_wait_seconds'] = round(waited, 3)
        if not ok:
            self.aborted = 'HAProxy did not report every server UP within %.0f s after the restore: %s' % (
                self.args.up_timeout, ', '.join('%s=%s' % (s, statuses.get(s, 'missing')) for s in self.servers
                                                if statuses.get(s) != 'UP'))
            return False
        say('   hosts restored in %.0f s, every server UP after %.1f s more' % (took, waited))
        return True

    def run(self):
        args = self.args
        self.check()
        say('== side by side: %d model hosts, retiring %d with serial %s (batches %s), service time %gs, %g req/s, '
            '%d round(s), %s' % (args.hosts, args.retire, json.dumps(args.serial), self.sizes, args.service_time,
                                 args.rate, args.rounds, args.only))
        say('   Ansible settings for every run: ANSIBLE_PIPELINING=True ANSIBLE_FORKS=%d, connection '
            'community.docker.docker (inventory)' % args.forks)
        for line in self.ansible_settings():
            say('     ' + line)
        self.bring_up()

        previous = None
        for number, side in run_order(args.rounds, args.only):
            if previous is not None and not self.restore(*previous):
                break
            self.runs.append(self.one_run(number, side))
            previous = (number, side)
        return self.results()

    def bring_up(self):
        """Create the fleet, wait for systemd, deploy, wait until HAProxy has every server UP."""
        args = self.args
        self.destroy('destroy-before')  # containers left by an interrupted run start in an unknown state
        ensure_inotify_instances(args.hosts + 1)
        with socket.socket() as probe:
            if probe.connect_ex(('127.0.0.1', LB_PORT)) == 0:
                raise SystemExit('bench: 127.0.0.1:%d is already in use; free it and re-run.' % LB_PORT)
        self.created = True
        took = self.playbook('create', 'molecule/_shared/create.yml')[1]
        say('   fleet created in %.0f s' % took)
        start = time.monotonic()
        degraded = self.wait_systemd(args.boot_timeout)
        say('   systemd up in every container after %.0f s%s' % (
            time.monotonic() - start, ' (degraded: %s)' % ', '.join(degraded) if degraded else ''))
        took = self.playbook('fleet', 'molecule/_shared/fleet.yml')[1]
        say('   model servers and HAProxy deployed in %.0f s' % took)
        ok, waited, statuses = self.wait_all_up(args.up_timeout)
        if not ok:
            raise SystemExit('bench: HAProxy does not report every server UP after the deploy: %r' % (statuses,))
        say('   every server UP (%.1f s)' % waited)

    def results(self):
        args = self.args
        expected = len(run_order(args.rounds, args.only))
        return {
            'parameters': {'hosts': args.hosts, 'retire': args.retire, 'serial': args.serial,
                           'batches': self.sizes, 'service_time': args.service_time, 'rate': args.rate,
                           'rounds': args.rounds, 'only': args.only, 'forks': args.forks,
                           'min_available': args.min_available, 'warmup': args.warmup, 'cooldown': args.cooldown},
            'ansible_env': {'ANSIBLE_PIPELINING': self.env['ANSIBLE_PIPELINING'],
                            'ANSIBLE_FORKS': self.env['ANSIBLE_FORKS']},
            'floor_seconds': self.floor,
            'runs': self.runs,
            'restores': self.restores,
            'aborted': self.aborted,
            'summary': summarize(self.runs),
            'ok': self.aborted is None and len(self.runs) == expected and all(r['ok'] for r in self.runs),
        }


# -- output ------------------------------------------------------------------------------------
RUN_HEADER = '%-6s %-5s %10s %7s %9s %10s %5s %7s %5s  %s' % (
    'side', 'round', 'wall', 'batches', 'floor', 'wall/floor', 'sent', 'failed', 'cut', 'result')


def run_line(run):
    result = 'ok' if run['ok'] else ('FAILED (exit %d)' % run['rc'] if run['rc'] else 'LOST REQUESTS')
    if run['rc'] and load_lost(run['load']):
        result += ', lost requests'
    sent = (run['load'] or {}).get('sent')
    return '%-6s %-5s %s %7d %s %s %5s %7s %5s  %s' % (
        run['side'], run['round'], fmt(run['wall_seconds'], ' s'), run['batches'], fmt(run['floor_seconds'], ' s', 7),
        fmt(run['ratio'], '', 10), '-' if sent is None else sent, '-' if run['failed'] is None else run['failed'],
        '-' if run['cut'] is None else run['cut'], result)


def batch_lines(run):
    if run['side'] != 'ours':
        return []
    if not run['report_batches']:
        return ['         report: %s' % ('no batches in %s' % run['report'] if run['report'] else 'none written')]
    lines = ['         report %s, per batch:' % os.path.relpath(run['report'], REPO),
             '         %-5s %-24s %10s %10s %10s' % ('batch', 'hosts', 'duration', 'floor', 'overhead')]
    for batch in run['report_batches']:
        hosts = ', '.join(batch['hosts'])
        lines.append('         %-5s %-24s %s %s %s' % (
            batch['number'], hosts if len(hosts) <= 24 else hosts[:21] + '...', fmt(batch['duration_seconds'], ' s'),
            fmt(batch['floor_seconds'], ' s'), fmt(batch['overhead_seconds'], ' s')))
    return lines


def show_run(run):
    say('   ' + RUN_HEADER)
    say('   ' + run_line(run))
    for line in batch_lines(run):
        say('   ' + line)


def show(result):
    say('')
    say('== runs (floor = %d batches x %g s service time = %g s)' % (
        len(result['parameters']['batches']), result['parameters']['service_time'], result['floor_seconds']))
    say(RUN_HEADER)
    for run in result['runs']:
        say(run_line(run))
        for line in batch_lines(run):
            say(line)
    summary = result['summary']
    say('')
    say('== per side (medians over the runs that succeeded)')
    say('%-6s %5s %9s %12s %12s' % ('side', 'runs', 'succeeded', 'median wall', 'median ratio'))
    for side in SIDES:
        row = summary[side]
        if row['runs']:
            say('%-6s %5d %9d %s %s' % (side, row['runs'], row['succeeded'], fmt(row['median_wall_seconds'], ' s', 10),
                                        fmt(row['median_ratio'], '', 12)))
    say('ours / anchor (median wall, = median ratio)  %s' % fmt(summary['ours_over_anchor'], '', 6, 3))
    if result['aborted']:
        say('aborted: %s' % result['aborted'])
    say('== %s' % ('OK: every run succeeded, no request lost' if result['ok'] else 'FAILED'))


# -- command line ------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run playbooks/shutdown.yml and a hand-written playbook (bench/anchor.yml) side by side '
                    'on one fleet under load.')
    parser.add_argument('--hosts', type=int, default=5, help='model hosts in the fleet [5]')
    parser.add_argument('--retire', type=int, default=3, help='hosts shut down, the first ones of the fleet [3]')
    parser.add_argument('--serial', default='[1, 2]',
                        help='shutdown_serial as JSON: a number, a percentage string or a list [\'[1, 2]\']')
    parser.add_argument('--service-time', type=float, default=3.0, help='seconds each request takes [3]')
    parser.add_argument('--rate', type=float, default=5.0, help='requests per second through the LB [5]')
    parser.add_argument('--rounds', type=int, default=2, help='rounds; each runs both sides [2]')
    parser.add_argument('--forks', type=int, default=None,
                        help='ANSIBLE_FORKS for every run [the largest batch, at least 5]')
    parser.add_argument('--anchor-wait-interval', type=int, default=5,
                        help="the anchor's community.general.haproxy wait_interval: 5 is the module's default, what a "
                             "user writes; 1 is a tuned anchor [5]")
    parser.add_argument('--only', choices=('both', 'ours', 'anchor'), default='both', help='sides to run [both]')
    parser.add_argument('--min-available', default='1', help='rollout_min_available for ours [1]')
    parser.add_argument('--warmup', type=float, default=4.0, help='seconds of load before each run [4]')
    parser.add_argument('--cooldown', type=float, default=3.0, help='seconds of load after each run [3]')
    parser.add_argument('--boot-timeout', type=float, default=None,
                        help='seconds to wait for systemd in every container [60 + 5 per container]')
    parser.add_argument('--up-timeout', type=float, default=None,
                        help='seconds to wait for every server UP on HAProxy [60 + 1 per host]')
    parser.add_argument('--keep', action='store_true', help='leave the fleet up at the end')
    parser.add_argument('--json', metavar='FILE', help='also write the results as JSON here')
    parser.add_argument('--work-dir', default=os.path.join(REPO, '.build', 'bench', 'side_by_side'),
                        help='inventory, logs, reports and load files [.build/bench/side_by_side]')
    args = parser.parse_args(argv)
    if args.hosts < 1:
        parser.error('--hosts must be at least 1')
    if not 1 <= args.retire <= args.hosts:
        parser.error('--retire must be between 1 and --hosts')
    if args.service_time < 0 or args.rate <= 0:
        parser.error('--service-time must be >= 0 and --rate > 0')
    if args.rounds < 1:
        parser.error('--rounds must be at least 1')
    try:
        args.serial = parse_serial(args.serial)
        sizes = batch_sizes(args.retire, args.serial)
    except ValueError as error:
        parser.error(str(error))
    if args.forks is None:
        args.forks = max(5, *sizes)
    if args.forks < 1:
        parser.error('--forks must be at least 1')
    try:
        args.min_available = int(args.min_available)
    except ValueError:
        pass  # a percentage such as 50%
    default_waits(args)
    return args


def default_waits(args):
    """Fill in the systemd boot and HAProxy UP deadlines the fleet's size needs, where not given."""
    if getattr(args, 'boot_timeout', None) is None:
        args.boot_timeout = 60.0 + 5 * (args.hosts + 1)
    if getattr(args, 'up_timeout', None) is None:
        args.up_timeout = 60.0 + args.hosts


def terminate_on_sigterm(signum, _frame):
    """SIGTERM handler: end the run as Ctrl-C does, so the fleet is torn down."""
    raise KeyboardInterrupt('signal %d' % signum)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate_on_sigterm)
    return run_and_show(SideBySide(args), show, args.json)


if __name__ == '__main__':
    sys.exit(main())
