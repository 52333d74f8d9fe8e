# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Consul adapter: the agent's service maintenance mode.

Private to this collection. Consul has no drain: maintenance mode turns the service's health
critical, so discovery stops handing it out, which is how both C(draining) and C(maintenance)
are expressed. The maintenance check is C(_service_maintenance:<service_id>) in
C(GET /v1/agent/checks); it is set with C(PUT /v1/agent/service/maintenance/<service_id>).

Node maintenance (C(consul maint -enable), check C(_node_maintenance)) takes every service of the
node out of discovery too, so it reads as C(maintenance) as well; this adapter never changes it, and
says so when it keeps a service from reading as ready. The checks answer is checked for its shape
(each check an object with a string C(CheckID) and C(Status)); anything else is an error, not a guess.
"""

from __future__ import annotations

import json

from urllib.parse import quote, urlencode

from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError, request
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import Adapter, LBError

MAINT_CHECK_PREFIX = '_service_maintenance:'
NODE_MAINT_CHECK = '_node_maintenance'
OK_STATUS = (200,)


def parse_checks(data, where):
    """The checks of a Consul answer as C({CheckID: check}).

    C(data) is the decoded JSON of C(GET /v1/agent/checks) (an object keyed by check ID) or of
    C(GET /v1/health/node/<node>) (a list of the same check objects). Raises C(LBError) naming C(where)
    if it is neither, or if a check is not an object with a string C(CheckID) and C(Status).
    """
    if isinstance(data, dict):
        entries = list(data.values())
    elif isinstance(data, list):
        entries = data
    else:
        raise LBError('%s returned %s, expected a JSON object of checks.' % (where, type(data).__name__))
    checks = {}
    for entry in entries:
        if (not isinstance(entry, dict) or not isinstance(entry.get('CheckID'), str)
                or not isinstance(entry.get('Status'), str)):
            raise LBError('%s returned a check that is not an object with a CheckID and a Status: %s' % (
                where, json.dumps(entry)[:200]))
        checks[entry['CheckID']] = entry
    return checks


def _check_summary(check):
    return {'CheckID': check.get('CheckID'), 'Status': check.get('Status'), 'Notes': check.get('Notes')}


def maintenance_state(checks, service_id):
    """C((state, raw)) of C(service_id) from parsed checks: C(maintenance) when the service or its node is in
    maintenance mode, C(ready) otherwise."""
    maint = checks.get(MAINT_CHECK_PREFIX + service_id)
    node_maint = checks.get(NODE_MAINT_CHECK)
    service_checks = {}
    for check_id, check in checks.items():
        if check.get('ServiceID') == service_id and check_id != MAINT_CHECK_PREFIX + service_id:
            service_checks[check_id] = check.get('Status')
    raw = {
        'service_id': service_id,
        'maintenance': maint is not None,
        'maintenance_check': None if maint is None else _check_summary(maint),
        'node_maintenance': node_maint is not None,
        'node_maintenance_check': None if node_maint is None else _check_summary(node_maint),
        'service_checks': service_checks,
    }
    return ('maintenance' if maint is not None or node_maint is not None else 'ready'), raw


class ConsulAdapter(Adapter):
    kind = 'consul'

    def __init__(self, params):
        super(ConsulAdapter, self).__init__()
        self.url = (params.get('url') or 'http://127.0.0.1:8500').rstrip('/')
        self.service_id = params.get('service_id')
        if not self.service_id:
            raise LBError('consul.service_id is required: the ID of the service as registered with the local Consul agent.')
        self.token = params.get('token')
        self.reason = params.get('reason')
        self.validate_certs = params.get('validate_certs', True)
        self.ca_path = params.get('ca_path')
        self.timeout = 10.0 if params.get('timeout') is None else params.get('timeout')

    def describe(self):
        return 'Consul service %s (agent %s)' % (self.service_id, self.url)

    def effective_state(self, state):
        # No drain in Consul: both take the service out of discovery through maintenance mode.
        return 'ready' if state == 'ready' else 'maintenance'

    def _request(self, method, path, expect=OK_STATUS):
        headers = {}
        if self.token:
            headers['X-Consul-Token'] = self.token
        try:
            return request(self.url + path, method=method, headers=headers, timeout=self.timeout,
                           validate_certs=self.validate_certs, ca_path=self.ca_path, expect_status=expect)
        except HttpError as exc:
            if exc.status in (401, 403):
                raise LBError('%s The Consul ACL token (consul.token) must allow service:write on %s (and agent:read).' % (
                    exc, self.service_id))
            if exc.status == 404 and method == 'PUT':
                raise LBError('%s The agent does not know service ID %s.' % (exc, self.service_id))
            raise

    def _services(self):
        path = '/v1/agent/services'
        data = self._request('GET', path).json(self.url + path)
        if not isinstance(data, dict):
            raise LBError('GET %s%s returned %s, expected a JSON object of services.' % (self.url, path, type(data).__name__))
        return data

    def _checks(self):
        path = '/v1/agent/checks'
        return parse_checks(self._request('GET', path).json(self.url + path), 'GET %s%s' % (self.url, path))

    def _get_state(self):
        services = self._services()
        if self.service_id not in services:
            known = sorted(services)
            raise LBError('%s: the agent has no service %r registered (registered: %s). '
                          'Use the service ID, not the name, of a service on the agent this task runs against.' % (
                              self.describe(), self.service_id, ', '.join(known[:20]) or 'none'))
        state, raw = maintenance_state(self._checks(), self.service_id)
        return {'state': state, 'raw': raw}

    def set_state(self, state):
        enable = self.effective_state(state) == 'maintenance'
        query = {'enable': 'true' if enable else 'false'}
        if enable:
            query['reason'] = self.reason or 'modelops.shutdown: %s' % state
        path = '/v1/agent/service/maintenance/%s?%s' % (quote(self.service_id, safe=''), urlencode(query))
        self._request('PUT', path)

    def verify(self, state):
        target = self.effective_state(state)
        info = self.get_state()
        raw = info['raw']
        ok = info['state'] == target
        if target == 'maintenance':
            if raw['maintenance']:
                detail = '%s: maintenance check present (%s)' % (self.describe(), raw['maintenance_check']['Status'])
            elif raw['node_maintenance']:
                detail = '%s: node maintenance check present (%s)' % (self.describe(), raw['node_maintenance_check']['Status'])
            else:
                detail = '%s: maintenance check absent' % self.describe()
        elif ok:
            detail = '%s: maintenance check absent' % self.describe()
        elif raw['maintenance']:
            detail = '%s: maintenance check still present' % self.describe()
        else:
            detail = ('%s: the node itself is in maintenance mode (check %s, notes %r), which this module does not '
                      'change; lift it with "consul maint -disable" on that node' % (
                          self.describe(), NODE_MAINT_CHECK, raw['node_maintenance_check']['Notes']))
        return ok, detail
