#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: contributors to modelops.shutdown
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: how far above its physical floor does a shutdown rollout run?

    python3 bench/rollout_floor.py [--hosts 5] [--retire 4] [--serial '[1, 3]'] [--service-time 3]
                                   [--rate 5] [--min-available 1] [--keep] [--json out.json]

Brings up its own fleet (containers bench-lb and bench-m1..bench-mN on network modelops-bench,
HAProxy frontend on 127.0.0.1:28095) with molecule/_shared/{create,fleet}.yml and a generated
inventory, sends constant load through HAProxy, runs playbooks/shutdown.yml over the first
--retire hosts with --serial, reads the JSON report the rollout writes, and prints per batch its
duration, its floor and the overhead (duration - floor), then the totals:

  rollout wall   wall-clock time of the ansible-playbook process (start-up and pre-flight included)
  floor sum      sum of the per-batch floors of the report
  ratio          rollout wall / floor sum

A batch's floor is the report's: the longest (in-flight wait + unit stop time) among its hosts,
the time a batch cannot go below whatever the tooling does. The report's own duration
(its started..finished) and ratio are printed too, and a second floor read from the model
servers' task logs (svc floor: the longest service time of the last request each host was sent,
plus its stop time), which does not depend on when the rollout started counting. The load
summary must show 0 failed and 0 cut. The fleet is torn down at the end (also on failure or
Ctrl-C) unless --keep.

Not a test: it asserts nothing but the exit status, 0 when the rollout succeeded and no
request was lost, 1 otherwise. Files go to .build/bench/ (inventory, logs, reports, load).
Needs the bootstrap (make bootstrap link); standard library only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = 'bench'
NETWORK = 'modelops-bench'
LB_PORT = 28095
LB_URL = 'http://127.0.0.1:%d' % LB_PORT
TASK_LOG = '/var/log/model-server/llama.tasks.jsonl'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run a shutdown rollout under load on a fresh fleet and compare its time with its floor.')
    parser.add_argument('--hosts', type=int, default=5, help='model hosts in the fleet [5]')
    parser.add_argument('--retire', type=int, default=4, help='hosts shut down, the first ones of the fleet [4]')
    parser.add_argument('--serial', default='[1, 3]',
                        help='shutdown_serial as JSON: a number, a percentage string or a list [\'[1, 3]\']')
    parser.add_argument('--service-time', type=float, default=3.0, help='seconds each request takes [3]')
    parser.add_argument('--rate', type=float, default=5.0, help='requests per second through the LB [5]')
    parser.add_argument('--min-available', default='1',
                        help='rollout_min_available, the disruption budget (0 turns it off) [1]')
    parser.add_argument('--warmup', type=float, default=4.0, help='seconds of load before the rollout [4]')
    parser.add_argument('--cooldown', type=float, default=3.0, help='seconds of load after the rollout [3]')
    parser.add_argument('--keep', action='store_true', help='leave the fleet up at the end')
    parser.add_argument('--json', metavar='FILE', help='also write the results as JSON here')
    parser.add_argument('--work-dir', default=os.path.join(REPO, '.build', 'bench'),
                        help='inventory, logs, reports and load files [.build/bench]')
    args = parser.parse_args(argv)
    if args.hosts < 1:
        parser.error('--hosts must be at least 1')
    if not 1 <= args.retire <= args.hosts:
        parser.error('--retire must be between 1 and --hosts')
    if args.service_time < 0 or args.rate <= 0:
        parser.error('--service-time must be >= 0 and --rate > 0')
    try:
        args.serial = json.loads(args.serial)
    except ValueError:
        args.serial = args.serial.strip()  # a bare percentage such as 50%
    if isinstance(args.serial, bool) or not isinstance(args.serial, (int, str, list)) or args.serial in ([], ''):
        parser.error('--serial must be a number, a percentage or a non-empty JSON list, got %r' % (args.serial,))
    try:
        args.min_available = int(args.min_available)
    except ValueError:
        pass  # a percentage such as 50%
    return args


def say(text):
    print(text, flush=True)


def inventory(args):
    """The generated inventory: the same layout as molecule/rollout and tests/fleet/demo."""
    names = ['%s-m%d' % (PREFIX, index) for index in range(1, args.hosts + 1)]
    lb = '%s-lb' % PREFIX
    return {
        'all': {
            'vars': {
                'ansible_connection': 'community.docker.docker',
                'ansible_python_interpreter': '/usr/bin/python3',
                'fleet_network': NETWORK,
                'report_dir': os.path.join(args.work_dir, 'reports'),
            },
            'children': {
                'fleet': {'children': {
                    'load_balancers': {'hosts': {lb: {'fleet_published_ports': ['127.0.0.1:%d:8080' % LB_PORT]}}},
                    'model_servers': {
                        'hosts': {name: None for name in names},
                        'vars': {
                            'fleet_service_time': args.service_time,
                            'drain_load_balancers': [{
                                'name': lb, 'delegate_to': lb,
                                'haproxy': {'socket': '/run/haproxy/admin.sock', 'backend': 'models',
                                            'server': '{{ inventory_hostname }}'},
                                # The host's own way to its LB, for the re-check before its stop.
                                'from_host': {'haproxy': {'host': lb, 'port': 9999, 'backend': 'models',
                                                          'server': '{{ inventory_hostname }}'}}}],
                            'stop_units': ['model-server@llama.service'],
                            'verify_units': '{{ stop_units }}',
                            'verify_ports': [8000],
                            'verify_task_logs': ['/var/log/model-server/llama.tasks.jsonl'],
                            'rollout_min_available': args.min_available,
                        },
                    },
                }},
                'retire': {'hosts': {name: None for name in names[:args.retire]}},
            },
        },
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.abspath(args.work_dir)
        self.logs = os.path.join(self.work, 'logs')
        self.reports = os.path.join(self.work, 'reports')
        self.load_dir = os.path.join(self.work, 'load')
        self.inventory = os.path.join(self.work, 'inventory.json')
        self.env = dict(os.environ)
        venv_bin = os.path.join(REPO, '.venv', 'bin')
        self.env['PATH'] = venv_bin + os.pathsep + self.env.get('PATH', '')
        self.env.setdefault('ANSIBLE_COLLECTIONS_PATH', os.path.join(REPO, '.build', 'collections'))
        self.env['ANSIBLE_NOCOLOR'] = '1'
        self.env['ANSIBLE_RETRY_FILES_ENABLED'] = '0'
        # The bench's runs keep their journal in its work directory, never in the machine's ~/.ansible.
        self.env['MODELOPS_SHUTDOWN_JOURNAL_DIR'] = os.path.join(self.work, 'journal')
        self.playbook_cmd = shutil.which('ansible-playbook', path=self.env['PATH'])
        self.load = None
        self.created = False

    # -- plumbing ---------------------------------------------------------------------------
    def check(self):
        if not self.playbook_cmd:
            sys.exit('bench: ansible-playbook not found; run `make bootstrap link` first.')
        link = os.path.join(self.env['ANSIBLE_COLLECTIONS_PATH'].split(os.pathsep)[0],
                            'ansible_collections', 'modelops', 'shutdown')
        if not os.path.exists(link):
            sys.exit('bench: the collection is not linked at %s; run `make link` first.' % link)
        for path in (self.logs, self.reports, self.load_dir):
            os.makedirs(path, exist_ok=True)
        with open(self.inventory, 'w', encoding='utf-8') as handle:
            json.dump(inventory(self.args), handle, indent=2)
            handle.write('\n')

    def playbook(self, name, playbook, *extra, check=True):
        """Run one playbook, output to logs/<name>.log; return (rc, seconds)."""
        log = os.path.join(self.logs, name + '.log')
        start = time.monotonic()
        with open(log, 'w', encoding='utf-8') as handle:
            rc = subprocess.call([self.playbook_cmd, '-i', self.inventory, os.path.join(REPO, playbook)] + list(extra),
                                 cwd=REPO, env=self.env, stdout=handle, stderr=subprocess.STDOUT)
        seconds = time.monotonic() - start
        if rc != 0 and check:
            self.tail(log)
            raise SystemExit('bench: %s failed (exit %d), see %s' % (playbook, rc, log))
        return rc, seconds

    @staticmethod
    def tail(path, lines=40):
        try:
            with open(path, encoding='utf-8', errors='replace') as handle:
                text = handle.readlines()[-lines:]
        except OSError:
            return
        say('---- last %d lines of %s' % (len(text), path))
        sys.stdout.write(''.join('| ' + line for line in text))
        say('----')

    def start_load(self):
        stop = os.path.join(self.load_dir, 'stop')
        for path in (stop, os.path.join(self.load_dir, 'summary.json')):
            if os.path.exists(path):
                os.remove(path)
        log = open(os.path.join(self.logs, 'load.log'), 'w', encoding='utf-8')  # pylint: disable=consider-using-with
        self.load = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, os.path.join(REPO, 'tests', 'fleet', 'loadgen.py'), '--url', LB_URL + '/v1/completions',
             '--rate', str(self.args.rate), '--stop-file', stop,
             '--summary', os.path.join(self.load_dir, 'summary.json')],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop_load(self):
        """Stop the load generator (it finishes its outstanding requests) and return its summary."""
        if self.load is None:
            return None
        with open(os.path.join(self.load_dir, 'stop'), 'w', encoding='utf-8') as handle:
            handle.write('stop\n')
        try:
            self.load.wait(timeout=self.args.service_time + 60)
        except subprocess.TimeoutExpired:
            self.load.terminate()
            self.load.wait(timeout=10)
        self.load = None
        try:
            with open(os.path.join(self.load_dir, 'summary.json'), encoding='utf-8') as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def destroy(self, name):
        self.playbook(name, 'molecule/_shared/destroy.yml', check=False)

    # -- the run ----------------------------------------------------------------------------
    def run(self):
        args = self.args
        self.check()
        say('== bench: %d model hosts, retiring %d with serial %s, service time %gs, %g req/s'
            % (args.hosts, args.retire, json.dumps(args.serial), args.service_time, args.rate))
        # Containers left by an interrupted run would start in an unknown state.
        self.destroy('destroy-before')
        with socket.socket() as probe:
            if probe.connect_ex(('127.0.0.1', LB_PORT)) == 0:
                raise SystemExit('bench: 127.0.0.1:%d is already in use; free it and re-run.' % LB_PORT)
        self.created = True
        took = self.playbook('create', 'molecule/_shared/create.yml')[1]
        say('   fleet created in %.0f s' % took)
        took = self.playbook('fleet', 'molecule/_shared/fleet.yml')[1]
        say('   model servers and HAProxy deployed in %.0f s' % took)

        self.start_load()
        time.sleep(args.warmup)
        if self.load.poll() is not None:
            self.tail(os.path.join(self.logs, 'load.log'))
            raise SystemExit('bench: the load generator exited early')

        say('   rollout running (log: %s)' % os.path.join(self.logs, 'shutdown.log'))
        before = set(glob.glob(os.path.join(self.reports, 'shutdown-*.json')))
        rc, wall = self.playbook('shutdown', 'playbooks/shutdown.yml', '-e', 'shutdown_targets=retire',
                                 '-e', json.dumps({'shutdown_serial': args.serial}), check=False)
        if rc != 0:
            self.tail(os.path.join(self.logs, 'shutdown.log'))
        time.sleep(args.cooldown)
        load = self.stop_load()

        new = sorted(set(glob.glob(os.path.join(self.reports, 'shutdown-*.json'))) - before, key=os.path.getmtime)
        report = None
        if new:
            with open(new[-1], encoding='utf-8') as handle:
                report = json.load(handle)
        tails = self.request_tails(report)
        return self.results(rc, wall, report, new[-1] if new else None, load, tails)

    def request_tails(self, report):
        """{host: seconds its last request took}, from the task logs of the hosts the report lists."""
        tails = {}
        for record in (report or {}).get('hosts', []):
            try:
                text = subprocess.run(['docker', 'exec', record['host'], 'cat', TASK_LOG], check=True,
                                      capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            started, ended = {}, {}
            for line in text.splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get('event') == 'started':
                    started[event['id']] = event['ts']
                elif event.get('event') in ('completed', 'aborted'):
                    ended[event['id']] = event['ts']
            if started:
                last = max(started, key=started.get)
                if last in ended:
                    tails[record['host']] = round(ended[last] - started[last], 3)
        return tails

    def results(self, rc, wall, report, report_path, load, tails):
        args = self.args
        batches = []
        for batch in (report or {}).get('batches', []):
            hosts = {h['host']: h for h in report['hosts'] if h['host'] in batch['hosts']}
            drains = [h['drain_seconds'] for h in hosts.values() if h.get('drain_seconds') is not None]
            # What the batch could not go below even with a perfect orchestrator: the last request a host
            # was sent has to finish, then its units stop. Read from the task logs, not the rollout.
            service = [tails[name] + (h.get('stop_seconds') or 0.0) for name, h in hosts.items()
                       if name in tails and h.get('drained') is True]
            batches.append({
                'number': batch['number'],
                'hosts': batch['hosts'],
                'duration_seconds': batch['duration_seconds'],
                'floor_seconds': batch['floor_seconds'],
                'overhead_seconds': batch['overhead_seconds'],
                'in_flight_at_mark': sum(h.get('in_flight_at_mark') or 0 for h in hosts.values()),
                'longest_drain_seconds': max(drains) if drains else None,
                'service_floor_seconds': round(max(service), 3) if service else None,
            })
        totals = (report or {}).get('totals', {})
        floor_sum = sum(b['floor_seconds'] or 0 for b in batches)
        service_sum = sum(b['service_floor_seconds'] or 0 for b in batches)
        lost = load is None or load.get('failed') != 0 or load.get('cut') != 0
        return {
            'parameters': {'hosts': args.hosts, 'retire': args.retire, 'serial': args.serial,
                           'service_time': args.service_time, 'rate': args.rate,
                           'min_available': args.min_available},
            'rollout_rc': rc,
            'report': report_path,
            'halted': (report or {}).get('halted'),
            'halt_reason': (report or {}).get('halt_reason'),
            'batches': batches,
            'totals': {
                'rollout_wall_seconds': round(wall, 3),
                'report_duration_seconds': totals.get('duration_seconds'),
                'floor_seconds_sum': round(floor_sum, 3),
                'ratio': round(wall / floor_sum, 2) if floor_sum else None,
                'report_ratio': totals.get('ratio'),
                'service_floor_seconds_sum': round(service_sum, 3),
                'service_ratio': round(wall / service_sum, 2) if service_sum else None,
            },
            'load': load,
            'ok': rc == 0 and report is not None and not lost,
        }

    def teardown(self):
        if self.load is not None:
            self.stop_load()
        if self.created and not self.args.keep:
            self.destroy('destroy')
            say('   fleet removed (%s-lb, %s-m1..%s-m%d, network %s)'
                % (PREFIX, PREFIX, PREFIX, self.args.hosts, NETWORK))
        elif self.created:
            say('   fleet kept (--keep); remove it with: ansible-playbook -i %s molecule/_shared/destroy.yml'
                % os.path.relpath(self.inventory, REPO))


def seconds(value):
    return '%8.2f s' % value if isinstance(value, (int, float)) else '%10s' % '-'


def show(result):
    say('')
    say('== per batch (from %s)' % (result['report'] or 'no report'))
    say('%-5s %-30s %10s %10s %10s %10s %9s %10s' % ('batch', 'hosts', 'duration', 'floor', 'overhead', 'drain max',
                                                     'in flight', 'svc floor'))
    for batch in result['batches']:
        hosts = ', '.join(batch['hosts'])
        say('%-5s %-30s %s %s %s %s %9s %s' % (batch['number'], hosts if len(hosts) <= 30 else hosts[:27] + '...',
                                               seconds(batch['duration_seconds']), seconds(batch['floor_seconds']),
                                               seconds(batch['overhead_seconds']),
                                               seconds(batch['longest_drain_seconds']),
                                               batch['in_flight_at_mark'],
                                               seconds(batch['service_floor_seconds'])))
    say('  floor: longest (in-flight wait + stop) of the batch, from the report; overhead = duration - floor')
    say('  drain max: longest drain, counted from the mark; in flight: what HAProxy still had in flight at the mark')
    say('  svc floor: longest (service time of the last request a host was sent + stop), from the task logs')
    t = result['totals']
    say('')
    say('== totals')
    say('rollout wall (ansible-playbook)  %s' % seconds(t['rollout_wall_seconds']))
    say('report duration                  %s' % seconds(t['report_duration_seconds']))
    say('floor sum over batches           %s' % seconds(t['floor_seconds_sum']))
    say('ratio wall / floor sum           %10s' % (t['ratio'] if t['ratio'] is not None else '-'))
    say('report ratio (duration / floor)  %10s' % (t['report_ratio'] if t['report_ratio'] is not None else '-'))
    say('service floor sum (task logs)    %s' % seconds(t['service_floor_seconds_sum']))
    say('wall / service floor sum         %10s' % (t['service_ratio'] if t['service_ratio'] is not None else '-'))
    say('rollout                          %10s' % ('ok' if result['rollout_rc'] == 0 else 'FAILED (exit %d)'
                                                   % result['rollout_rc']))
    if result['halted']:
        say('halted: %s' % (result['halt_reason'] or 'no reason recorded'))
    load = result['load']
    say('')
    if load:
        say('== load: sent=%(sent)s ok=%(ok)s failed=%(failed)s cut=%(cut)s connection_errors=%(connection_errors)s '
            'http_errors=%(http_errors)s p50=%(p50)s p99=%(p99)s max=%(max)s' % load)
    else:
        say('== load: no summary')
    say('== %s' % ('OK: rollout succeeded, no request lost' if result['ok'] else 'FAILED'))


def run_and_show(bench, show_result, json_path=None):
    """Run a bench, always tear its fleet down, print and optionally save the result; the exit status."""
    started = time.monotonic()
    result = None
    try:
        result = bench.run()
    except KeyboardInterrupt:
        say('bench: interrupted')
        return 130
    finally:
        bench.teardown()
        say('   bench took %.0f s in all' % (time.monotonic() - started))
    show_result(result)
    if json_path:
        with open(json_path, 'w', encoding='utf-8') as handle:
            json.dump(result, handle, indent=2)
            handle.write('\n')
    return 0 if result['ok'] else 1


def main(argv=None):
    args = parse_args(argv)
    return run_and_show(Bench(args), show, args.json)


if __name__ == '__main__':
    sys.exit(main())
