# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Consul adapter: the agent's service maintenance mode.

Private to this collection. Consul has no drain: maintenance mode turns the service's health
critical, so discovery stops handing it out, which is how both C(draining) and C(maintenance)
are expressed. The maintenance check is C(_service_maintenance:<service_id>) in
C(GET /v1/agent/checks); it is set with C(PUT /v1/agent/service/maintenance/<service_id>).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError, request
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import Adapter, LBError

MAINT_CHECK_PREFIX = '_service_maintenance:'
OK_STATUS = (200,)


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
        self.timeout = params.get('timeout') or 10.0

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
        data = self._request('GET', path).json(self.url + path)
        if not isinstance(data, dict):
            raise LBError('GET %s%s returned %s, expected a JSON object of checks.' % (self.url, path, type(data).__name__))
        return data

    def _get_state(self):
        services = self._services()
        if self.service_id not in services:
            known = sorted(services)
            raise LBError('%s: the agent has no service %r registered (registered: %s). '
                          'Use the service ID, not the name, of a service on the agent this task runs against.' % (
                              self.describe(), self.service_id, ', '.join(known[:20]) or 'none'))
        checks = self._checks()
        maint = checks.get(MAINT_CHECK_PREFIX + self.service_id)
        service_checks = {}
        for check_id, check in checks.items():
            if isinstance(check, dict) and check.get('ServiceID') == self.service_id and check_id != MAINT_CHECK_PREFIX + self.service_id:
                service_checks[check_id] = check.get('Status')
        raw = {
            'service_id': self.service_id,
            'maintenance': maint is not None,
            'maintenance_check': None,
            'service_checks': service_checks,
        }
        if maint is not None:
            raw['maintenance_check'] = {
                'CheckID': maint.get('CheckID'),
                'Status': maint.get('Status'),
                'Notes': maint.get('Notes'),
            }
        return {'state': 'maintenance' if maint is not None else 'ready', 'raw': raw}

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
        ok = info['state'] == target
        if target == 'maintenance':
            detail = '%s: maintenance check %s' % (
                self.describe(), 'present (%s)' % info['raw']['maintenance_check']['Status'] if ok else 'absent')
        else:
            detail = '%s: maintenance check %s' % (self.describe(), 'absent' if ok else 'still present')
        return ok, detail
