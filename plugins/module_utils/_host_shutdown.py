# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host, one call: wait until nothing is in flight, stop the units, take back policy, verify clean.

Private to this collection; the module C(host_shutdown) is its front end. Each phase is the same
code as the public module of that verb (C(model_drain), C(unit_stop), C(gpu_release_check),
C(unit_processes), C(task_log_reconcile)), with that module's options validated by that module's
own argument spec. The result is the host's whole section of the rollout record; times are
measured here (wall clock for timestamps, monotonic for durations).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils import _drain, _gpu_check, _lb_guard, _netstat, _policy
from ansible_collections.modelops.shutdown.plugins.module_utils import _procs, _tasklog, _unit_stop
from ansible_collections.modelops.shutdown.plugins.module_utils._lb_batch import iso
from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import MAX_SECONDS, SpecError, finite, validate

ACTIVE_STATES = ('active', 'activating', 'deactivating', 'reloading')

# A host found back in rotation this many times in a row fails instead of waiting for ever.
MAX_DRAIN_ROUNDS = 3
DEFAULT_LOCK_PATH = '/run/modelops-shutdown.lock'


class LockBusy(Exception):
    """Another run works on this host; the message names it."""


class HostLock(object):
    """An flock held while this host is drained, stopped and verified, so that two runs (or an earlier run's
    module left running by a controller that died) never work on one host at once. Released when the
    process ends, however it ends."""

    def __init__(self, path, run_id, wall=time.time):
        self.path = path
        self.run_id = run_id
        self.wall = wall
        self.fd = None

    def _holder(self):
        try:
            with open(self.path) as handle:
                holder = json.loads(handle.read(4096) or '{}')
            return holder if isinstance(holder, dict) else {}
        except (IOError, OSError, ValueError):
            return {}

    def _busy(self):
        holder = self._holder()
        return LockBusy('another shutdown run works on this host: pid %s of run %s, since %s (lock %s). Wait until it '
                        'ends, or if its controller died, end it: kill %s on this host; then re-run.'
                        % (holder.get('pid', '?'), holder.get('run', '?'), holder.get('started_at', '?'), self.path,
                           holder.get('pid', '<pid>')))

    def acquire(self, check_mode=False):
        """Take the lock (check mode: only test it). Raises LockBusy, or OSError when the file cannot be opened."""
        if check_mode:
            if not os.path.exists(self.path):
                return  # never taken on this host; check mode creates nothing
            fd = os.open(self.path, os.O_RDONLY)
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if check_mode else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise self._busy()
            raise
        if check_mode:
            os.close(fd)
            return
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({'pid': os.getpid(), 'run': self.run_id, 'started_at': iso(self.wall())}).encode())
        os.fsync(fd)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def verify_spec():
    return dict(
        units=dict(type='list', elements='str'),
        ports=dict(type='list', elements='int', default=[]),
        port_timeout=dict(type='float', default=10.0),
        processes=dict(type='bool', default=True),
        gpu=dict(type='dict'),
        task_log=dict(type='dict'),
        fail_on_incomplete=dict(type='bool', default=False),
    )


def _kwargs(module_kwargs):
    return dict((key, value) for key, value in (module_kwargs or {}).items()
                if key in ('mutually_exclusive', 'required_one_of', 'required_if', 'required_together', 'required_by'))


def parse_params(params):
    """Validate every phase's options with its own module's spec. Returns the validated phases; raises SpecError."""
    phases = {}
    phases['guard'] = {
        'load_balancers': _lb_guard.parse_entries(params.get('load_balancers')),
        'sticky_grace': params.get('sticky_grace'),
        'answer_timeout': 5.0 if params.get('lb_answer_timeout') is None else params['lb_answer_timeout'],
    }
    for name, value in (('sticky_grace', params.get('sticky_grace')), ('lb_answer_timeout', params.get('lb_answer_timeout'))):
        if value is not None and (not finite(value) or value < 0 or value > MAX_SECONDS):
            raise SpecError('%s must be a finite number of seconds from 0 to %s, got %s' % (name, MAX_SECONDS, value))
    phases['run_id'] = params.get('run_id')
    phases['lock_path'] = params.get('lock_path')
    if params.get('drain') is not None:
        drain = validate(_drain.argument_spec(), params['drain'], 'drain', **_kwargs(_drain.MODULE_KWARGS))
        if params.get('since') is not None:
            drain['since'] = params['since']
        problems = _drain.check_params(drain)
        if problems:
            raise SpecError('drain: %s' % '; '.join(problems))
        phases['drain'] = drain
    phases['stop'] = validate(_unit_stop.argument_spec(), params['stop'], 'stop')
    phases['policy'] = _policy.validated(params.get('policy'), 'policy')
    verify = validate(verify_spec(), params.get('verify'), 'verify')
    if not finite(verify['port_timeout']) or verify['port_timeout'] < 0:
        raise SpecError('verify.port_timeout must be a finite number of 0 or more seconds, got %s' % verify['port_timeout'])
    if any(not 1 <= port <= 65535 for port in verify['ports']):
        raise SpecError('verify.ports must be between 1 and 65535, got %s' % verify['ports'])
    if verify['units'] is None:
        verify['units'] = list(phases['stop']['units'])
    if verify['gpu'] is not None:
        gpu = dict(verify['gpu'])
        gpu.pop('unit', None)  # one check per verified unit, below
        # kill_orphans needs a unit: the unit is set per verified unit below, so that rule is left out.
        kwargs = _kwargs(_gpu_check.MODULE_KWARGS)
        kwargs['required_if'] = [rule for rule in kwargs.get('required_if', []) if rule[0] != 'kill_orphans']
        verify['gpu'] = validate(_gpu_check.argument_spec(), gpu, 'verify.gpu', **kwargs)
    if verify['task_log'] is not None:
        verify['task_log'] = validate(_tasklog.argument_spec(), verify['task_log'], 'verify.task_log')
    phases['verify'] = verify
    return phases


class HostShutdown(object):
    """The per-host phase of a rollout. C(run()) returns C((record, failure message or None))."""

    def __init__(self, phases, run_command, get_bin_path, check_mode=False, warn=None,
                 clock=time.monotonic, wall=time.time, sleep=time.sleep):
        self.phases = phases
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.check_mode = check_mode
        self.warn = warn
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.host = socket.gethostname()

    def _stopper(self, check_mode):
        systemctl = self.get_bin_path('systemctl')
        if not systemctl:
            raise SpecError('systemctl not found on %s: host_shutdown needs systemd' % self.host)
        return _unit_stop.UnitStopper(self.run_command, systemctl, check_mode=check_mode, warn=self.warn, host=self.host,
                                      clock=self.clock, wall=self.wall)

    def run(self):
        lock = HostLock(self.phases.get('lock_path') or DEFAULT_LOCK_PATH, self.phases.get('run_id'), wall=self.wall)
        try:
            lock.acquire(check_mode=self.check_mode)
        except LockBusy as exc:
            return self._empty_record('lock', to_text(exc))
        except (IOError, OSError) as exc:
            return self._empty_record('lock', 'cannot open the host lock %s on %s: %s' % (lock.path, self.host, to_text(exc)))
        try:
            return self._run()
        finally:
            lock.release()

    def _new_record(self):
        return {'changed': False, 'ok': False, 'status': 'running', 'failed_step': None, 'msg': '', 'host': self.host,
                'started_at': round(self.wall(), 3), 'finished_at': None, 'since': self.phases.get('drain', {}).get('since'),
                'drain': None, 'stop': None, 'policy': None, 'verify': None, 'lb_guard': None, 'in_flight_at_stop': None,
                'run_id': self.phases.get('run_id'),
                'timings': {'drain_seconds': None, 'stop_seconds': None, 'floor_seconds': None},
                # Wall-clock epoch intervals of each phase ({start, end}), None for a phase that did not run.
                'phases': {'drain': None, 'stop': None, 'policy': None, 'verify': None}}

    def _phase(self, record, name, start, end=None):
        record['phases'][name] = {'start': None if start is None else round(start, 3),
                                  'end': round(self.wall() if end is None else end, 3)}

    def _empty_record(self, step, msg):
        record = self._new_record()
        record.update(status='failed', failed_step=step, msg=msg, finished_at=round(self.wall(), 3))
        return record, msg

    def _run(self):
        record = self._new_record()

        def finish(status, step=None, msg=''):
            record.update(status=status, failed_step=step, msg=msg, ok=step is None,
                          finished_at=round(self.wall(), 3))
            record['changed'] = any((record.get(phase) or {}).get('changed') for phase in ('stop', 'policy', 'verify'))
            if guard is not None:
                record['lb_guard'] = {'load_balancers': guard.describe(), 'events': guard.events,
                                      'events_dropped': guard.events_dropped, 'escalated': guard.escalated,
                                      'came_back': sum(1 for e in guard.events if e['event'] == 'came_back'),
                                      'read_errors': guard.read_errors}
            timings = record['timings']
            if timings['drain_seconds'] is not None or timings['stop_seconds'] is not None:
                timings['floor_seconds'] = round((timings['drain_seconds'] or 0.0) + (timings['stop_seconds'] or 0.0), 3)
            return record, (msg if step else None)

        guard_spec = self.phases.get('guard') or {}
        guard = None
        if guard_spec.get('load_balancers'):
            guard = _lb_guard.LBGuard(guard_spec['load_balancers'], sticky_grace=guard_spec.get('sticky_grace'),
                                      answer_timeout=guard_spec.get('answer_timeout', 5.0), check_mode=self.check_mode,
                                      clock=self.clock, wall=self.wall, sleep=self.sleep)

        stop = self.phases['stop']
        # Units already stopped (a second run, or a host stopped by hand): nothing can be in flight.
        before, failure = self._stopper(True).run(dict(stop, fail_on=[]))
        if failure:
            record['stop'] = before
            return finish('failed', 'stop', failure)
        already_down = not any(unit.get('active_state') in ACTIVE_STATES for unit in before['units'])
        record['already_down'] = already_down

        drain = self.phases.get('drain')
        first_since = (drain or {}).get('since')
        if not already_down:
            rounds = 0
            while True:
                rounds += 1
                if drain is not None:
                    drain_began = self.wall()
                    result, failure = _drain.DrainWaiter(
                        drain, check_mode=self.check_mode, warn=self.warn, clock=self.clock, wall=self.wall,
                        sleep=self.sleep, guard=None if guard is None or self.check_mode else guard.on_poll).run()
                    record['drain'] = result if rounds == 1 else dict(result, earlier_rounds=rounds - 1)
                    if result.get('drained_at') is not None and first_since is not None:
                        record['timings']['drain_seconds'] = round(max(0.0, result['drained_at'] - first_since), 3)
                    elif result.get('waited_seconds') is not None:
                        record['timings']['drain_seconds'] = result['waited_seconds']
                    # From the first mark (or this call's first wait) to nothing in flight, or to the wait's end.
                    self._phase(record, 'drain',
                                first_since if first_since is not None
                                else ((record['phases']['drain'] or {}).get('start') or drain_began),
                                result.get('drained_at') if result.get('drained') else None)
                    if failure:
                        return finish('failed', 'drain', failure)
                    # on_timeout=proceed: what the last round left in flight is cut by the stop.
                    record['in_flight_at_stop'] = (result.get('in_flight_final')
                                                   if not result.get('drained') and not self.check_mode else None)
                if guard is None:
                    break
                came_back, failure = guard.confirm()
                if failure and self.check_mode:
                    return finish('failed', 'recheck', '%s %s. The re-check before its stop needs this read: check the '
                                  'from_host entry of drain_load_balancers, or set drain_recheck: false to stop without '
                                  'it.' % (self.host, failure))
                if failure:
                    return finish('failed', 'recheck', '%s was not stopped: %s. The rollout puts it back; if the load '
                                  'balancer does not answer, run restore.yml with the run\'s journal once it does.'
                                  % (self.host, failure))
                if not came_back:
                    break
                if rounds >= MAX_DRAIN_ROUNDS or drain is None:
                    return finish('failed', 'recheck', '%s was not stopped: a load balancer put it back into rotation '
                                  '%d time(s) while it drained (%s). Find what resets the state (an HAProxy reload '
                                  'without a server-state file, a configuration tool) and re-run.'
                                  % (self.host, rounds, ', '.join(sorted(set(e['lb'] for e in guard.events
                                                                             if e['event'] == 'came_back')))))
                # Drained again just now: wait for what it took in meanwhile, from this moment.
                drain = dict(drain, since=round(self.wall(), 3))

        began = self.wall()
        result, failure = self._stopper(self.check_mode).run(stop)
        record['stop'] = result
        self._phase(record, 'stop', began)
        record['timings']['stop_seconds'] = result.get('stop_seconds')
        if failure:
            return finish('failed', 'stop', failure)

        began = self.wall()
        result, failure = _policy.PolicyTakeBack(self.run_command, self.get_bin_path, self.check_mode,
                                                 warn=self.warn).run(self.phases['policy'])
        record['policy'] = result
        self._phase(record, 'policy', began)
        if failure:
            return finish('failed', 'policy', 'policy on %s: %s' % (self.host, failure))

        if self.check_mode:
            record['verify'] = {'ok': None, 'skipped': 'check mode: nothing was stopped, so nothing is verified'}
            return finish('already_down' if already_down else 'would_shut_down')
        began = self.wall()
        verify, failures = self._verify(self.phases['verify'])
        record['verify'] = verify
        self._phase(record, 'verify', began)
        if failures:
            return finish('failed', 'verify', '%s is not clean: %s' % (self.host, '; '.join(failures)))
        return finish('already_down' if already_down else 'done')

    def _verify(self, spec):
        failures = []
        started = self.clock()
        verify = {'ok': True, 'failures': failures, 'ports_open': [], 'leftover_processes': [],
                  'gpu': {'checked': spec['gpu'] is not None, 'released': None, 'killed': [], 'gpus': [], 'results': []},
                  'task_log': None, 'incomplete_count': None, 'changed': False}
        if spec['ports']:
            try:
                polled = poll_until(lambda: _netstat.listening(spec['ports']), lambda value: not value,
                                    timeout=spec['port_timeout'], interval=0.2, max_samples=2,
                                    clock=self.clock, sleep=self.sleep)
                verify['ports_open'] = polled.last_value
                if polled.last_value:
                    failures.append('port(s) %s still listening after %s s' % (
                        ', '.join(str(p) for p in polled.last_value), spec['port_timeout']))
            except _netstat.NetstatError as exc:
                failures.append('could not read the listening ports: %s' % exc)
        if spec['gpu'] is not None:
            released = True
            for unit in spec['units'] or [None]:
                params = dict(spec['gpu'], unit=unit)
                if unit is None:
                    params['kill_orphans'] = False
                result, failure = _gpu_check.GpuReleaseChecker(self.run_command, self.get_bin_path, check_mode=False,
                                                               warn=self.warn, host=self.host).run(params)
                verify['gpu']['results'].append(result)
                verify['gpu']['killed'].extend(result.get('killed') or [])
                verify['gpu']['gpus'] = result.get('gpus') or []
                released = released and bool(result.get('released')) and not failure
                if failure:
                    failures.append('GPU memory not released: %s' % failure)
            verify['gpu']['released'] = released
            verify['changed'] = bool(verify['gpu']['killed'])
        if spec['processes'] and spec['units']:
            result, failure = _procs.check_units(spec['units'], expect_empty=True)
            verify['leftover_processes'] = [p for unit in result['units'] for p in unit['processes']]
            if failure:
                failures.append(failure)
        if spec['task_log'] is not None:
            result, failure = _tasklog.reconcile(spec['task_log'], check_mode=False, warn=self.warn)
            verify['task_log'] = result
            verify['incomplete_count'] = result.get('incomplete_count')
            if failure:
                failures.append('task log reconciliation failed: %s' % failure)
            elif spec['fail_on_incomplete'] and result.get('incomplete_count'):
                failures.append('%s request(s) were started but never completed' % result['incomplete_count'])
        verify['ok'] = not failures
        verify['seconds'] = round(self.clock() - started, 3)
        return verify, failures
