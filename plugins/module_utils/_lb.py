# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The common interface of load-balancer and registry adapters, their factory, and the manager.

Private to this collection. Every adapter speaks normalized states:

* C(ready) - the instance gets new requests;
* C(draining) - no new requests, the ones in flight finish;
* C(maintenance) - out of service.

and reports C(unknown) when the backend says something else. Kinds that cannot tell draining from
maintenance (consul, file) map C(draining) to C(maintenance) through C(effective_state()).
"""

from __future__ import annotations

import time

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyError, runtime_api_spec
from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError, request
from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import number_problems

STATES = ('ready', 'draining', 'maintenance')
KINDS = ('haproxy', 'consul', 'http', 'file')


class LBError(Exception):
    """A load-balancer or registry operation failed; the message says where, what was expected and what to do."""


class Adapter(object):
    """What every adapter provides. Subclasses set C(kind) and implement C(describe), C(_get_state), C(set_state)."""

    kind = None

    def __init__(self):
        self.last_state = None

    def describe(self):
        """A short human description used in every message, e.g. C(HAProxy server models/m1 via /run/haproxy.sock)."""
        raise NotImplementedError

    def effective_state(self, state):
        """The state this kind will actually report after C(set_state(state)) (identity unless the kind lacks one)."""
        return state

    def get_state(self):
        """Return C({'state': ready|draining|maintenance|unknown, 'raw': <backend detail>, 'in_flight': int|None}).

        The last answer is also kept in C(last_state).
        """
        info = self._get_state()
        info.setdefault('in_flight', None)
        self.last_state = info
        return info

    def _get_state(self):
        raise NotImplementedError

    def set_state(self, state):
        """Ask the backend for C(state) (one of C(STATES)). Raises C(LBError) (or the client's error) if it refuses."""
        raise NotImplementedError

    def verify(self, state):
        """Read the backend again: C((ok, detail)), C(ok) when it reports C(state) in effect."""
        info = self.get_state()
        target = self.effective_state(state)
        ok = info['state'] == target
        detail = '%s reports %s (expected %s)' % (self.describe(), info['state'], target)
        return ok, detail

    def in_flight(self):
        """Requests or sessions still in flight on this instance, or C(None) when the kind cannot tell."""
        return None


def adapter_specs():
    """Argument specs of the four adapter options (C(haproxy), C(consul), C(http), C(file)), shared by every
    module that addresses one instance on a load balancer or registry."""
    return dict(
        haproxy=runtime_api_spec(server=True),
        consul=dict(
            type='dict',
            options=dict(
                url=dict(type='str', default='http://127.0.0.1:8500'),
                service_id=dict(type='str', required=True),
                token=dict(type='str', no_log=True),
                reason=dict(type='str'),
                validate_certs=dict(type='bool', default=True),
                ca_path=dict(type='path'),
                timeout=dict(type='float', default=10.0),
            ),
        ),
        http=dict(
            type='dict',
            options=dict(
                url=dict(type='str', required=True),
                state_url=dict(type='str'),
                method=dict(type='str', default='POST', choices=['POST', 'PUT', 'PATCH']),
                body=dict(type='str'),
                headers=dict(type='dict', default={}),
                token=dict(type='str', no_log=True),
                validate_certs=dict(type='bool', default=True),
                ca_path=dict(type='path'),
                timeout=dict(type='float', default=10.0),
                state_key=dict(type='str', default='state', no_log=False),
            ),
        ),
        file=dict(
            type='dict',
            options=dict(
                path=dict(type='path', required=True),
                reason=dict(type='str'),
                create_parent=dict(type='bool', default=False),
            ),
        ),
    )


# The durations among the adapter options, checked by adapter_problems (a timeout of 0 would never wait).
ADAPTER_SECONDS = {'timeout': dict(minimum=0.0, above=True)}


def adapter_problems(kind, options, where):
    """Problems with the numbers of one adapter option dict (C(where) prefixes the option names): NaN,
    infinite or negative numbers, a timeout that is not more than 0 (or over a week), a port out of range."""
    spec = adapter_specs()[kind]['options']
    problems = number_problems(spec, options, where, seconds=ADAPTER_SECONDS)
    port = (options or {}).get('port')
    if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
        problems = [p for p in problems if not p.startswith(where + 'port ')]
        problems.append('%sport must be between 1 and 65535, got %s' % (where, port))
    return problems


def describe_options(kind, options):
    """What C(options) of C(kind) address, for results when no adapter could be built from them."""
    options = options or {}
    if kind == 'haproxy':
        where = options.get('socket') or '%s:%s' % (options.get('host'), options.get('port'))
        return 'HAProxy server %s/%s (%s)' % (options.get('backend'), options.get('server'), where)
    if kind == 'consul':
        return 'Consul service %s (agent %s)' % (options.get('service_id'), options.get('url'))
    if kind == 'http':
        return 'HTTP admin endpoint %s' % (options.get('state_url') or options.get('url'))
    if kind == 'file':
        return 'maintenance flag file %s' % options.get('path')
    return '%s target' % kind


def make_adapter(kind, params):
    """Build the adapter for C(kind) from its module option dict."""
    if kind == 'haproxy':
        from ansible_collections.modelops.shutdown.plugins.module_utils._lb_haproxy import HAProxyAdapter
        return HAProxyAdapter(params)
    if kind == 'consul':
        from ansible_collections.modelops.shutdown.plugins.module_utils._lb_consul import ConsulAdapter
        return ConsulAdapter(params)
    if kind == 'http':
        from ansible_collections.modelops.shutdown.plugins.module_utils._lb_http import HttpAdapter
        return HttpAdapter(params)
    if kind == 'file':
        from ansible_collections.modelops.shutdown.plugins.module_utils._lb_file import FileAdapter
        return FileAdapter(params)
    raise LBError('Unknown load-balancer kind %r; expected one of %s.' % (kind, ', '.join(KINDS)))


def adapter_errors():
    """The exception types adapters raise for expected failures (the module turns them into fail_json)."""
    return (LBError, HAProxyError, HttpError)


class HealthCheck(object):
    """The optional second verification: the instance's own health URL answers C(status)."""

    def __init__(self, url, status, validate_certs=True, ca_path=None, request_timeout=5.0):
        self.url = url
        self.status = status
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.request_timeout = request_timeout

    def describe(self):
        return 'GET %s returns HTTP %s' % (self.url, self.status)

    def probe(self):
        try:
            resp = request(self.url, timeout=self.request_timeout, validate_certs=self.validate_certs, ca_path=self.ca_path)
        except HttpError as exc:
            return False, to_text(exc)
        return resp.status == self.status, 'GET %s returned HTTP %s (expected %s)' % (self.url, resp.status, self.status)


class HealthStateManager(object):
    """Read, change and verify the state of one instance behind one adapter."""

    def __init__(self, adapter, verify_timeout=10.0, verify_interval=0.5, health_check=None,
                 clock=time.monotonic, sleep=time.sleep):
        self.adapter = adapter
        self.verify_timeout = float(verify_timeout)
        self.verify_interval = float(verify_interval)
        self.health_check = health_check
        self.clock = clock
        self.sleep = sleep

    def _poll(self, name, what, probe_fn, timeout):
        """Poll C(probe_fn() -> (ok, detail)) until ok or C(timeout); expected errors count as not ok."""
        errors = adapter_errors()

        def probe():
            try:
                ok, detail = probe_fn()
            except errors as exc:
                ok, detail = False, to_text(exc)
            return {'ok': ok, 'detail': detail}

        result = poll_until(probe, lambda value: value['ok'], timeout=max(0.0, timeout), interval=self.verify_interval,
                            max_samples=5, clock=self.clock, sleep=self.sleep)
        check = {
            'name': name,
            'what': what,
            'ok': result.satisfied,
            'waited_seconds': result.waited_seconds,
            'polls': result.polls,
            'detail': result.last_value['detail'],
        }
        return check

    def _verify(self, target):
        started = self.clock()
        checks = []
        self.adapter.last_state = None
        backend_check = self._poll(
            'backend', '%s reports %s' % (self.adapter.describe(), target),
            lambda: self.adapter.verify(target), self.verify_timeout)
        checks.append(backend_check)
        if self.health_check is not None and backend_check['ok']:
            remaining = self.verify_timeout - (self.clock() - started)
            checks.append(self._poll('health_url', self.health_check.describe(), self.health_check.probe, remaining))
        # A health check that never ran (the backend check failed first) counts as failed via the backend check.
        ok = all(c['ok'] for c in checks)
        failed = [c for c in checks if not c['ok']]
        verified = {
            'ok': ok,
            'skipped': False,
            'waited_seconds': round(self.clock() - started, 3),
            'checks': checks,
            'detail': '; '.join(c['detail'] for c in (failed or checks)),
        }
        return verified, self.adapter.last_state

    def run(self, state, check_mode=False, diff_mode=False):
        """Apply C(state) (or only read it for C(query)). Returns C((result, failure_message_or_None)).

        The result has every key the module documents as always returned, on failure too: what was
        known when the failure happened (C(unknown) states before the first read).
        """
        result = empty_result(self.adapter.describe())
        try:
            return self._run(state, result, check_mode, diff_mode)
        except adapter_errors() as exc:
            return result, to_text(exc)

    def _run(self, state, result, check_mode, diff_mode):
        adapter = self.adapter
        before = adapter.get_state()
        result.update({
            'previous_state': before['state'],
            'state': before['state'],
            'raw': before.get('raw'),
            'in_flight': before.get('in_flight'),
        })
        if state == 'query':
            result['verified']['detail'] = 'state=query only reads the state'
            return result, None

        target = adapter.effective_state(state)
        changed = before['state'] != target
        result['changed'] = changed
        if diff_mode:
            result['diff'] = {
                'before': {'state': before['state']},
                'after': {'state': target},
                'before_header': adapter.describe(),
                'after_header': adapter.describe(),
            }
        if check_mode:
            result['state'] = target
            result['verified']['detail'] = 'check mode: nothing was changed, so nothing was verified'
            return result, None

        if changed:
            try:
                adapter.set_state(target)
            except adapter_errors():
                result['changed'] = False
                raise
        verified, info = self._verify(target)
        result['verified'] = verified
        if info is not None:
            result['state'] = info['state']
            result['raw'] = info.get('raw')
            result['in_flight'] = info.get('in_flight')
        elif changed:
            # Every read after the change failed: what the target reports now is not known.
            result['state'] = 'unknown'
        if not verified['ok']:
            action = 'was asked for' if changed else 'was already expected in'
            msg = ('%s %s state %s, but verification did not see it in effect within %s seconds: %s.' % (
                adapter.describe(), action, target, self.verify_timeout, verified['detail']))
            if changed and getattr(adapter, 'put_back_on_failure', False):
                msg += ' ' + self._put_back(before['state'], result)
            else:
                msg += ' Check the load balancer by hand; raise verify_timeout if it is only slow.'
            return result, msg
        return result, None

    def _put_back(self, previous, result):
        """Undo a change whose verification failed (adapters with C(put_back_on_failure)); the sentence to add."""
        try:
            put_back = getattr(self.adapter, 'put_back', None)
            if put_back is not None:
                put_back()   # exactly what was there (the flag file byte for byte)
            else:
                self.adapter.set_state(previous)
            info = self.adapter.get_state()
        except adapter_errors() as exc:
            return 'Putting it back to %s failed too: %s. Fix it by hand.' % (previous, to_text(exc))
        result.update(changed=False, state=info['state'], raw=info.get('raw'), in_flight=info.get('in_flight'))
        return 'It was put back to %s, so nothing is left half-changed; raise verify_timeout if it is only slow.' % previous


def empty_result(target):
    """The result of model_health_state before anything was read: every always-returned key, states unknown."""
    return {
        'changed': False,
        'previous_state': 'unknown',
        'state': 'unknown',
        'raw': {},
        'in_flight': None,
        'target': target,
        'verified': {'ok': None, 'skipped': True, 'waited_seconds': 0.0, 'checks': [], 'detail': 'nothing was verified'},
    }
