# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP adapter: the model server's own admin endpoint.

Private to this collection. The state is set with a request (method, URL, body, headers, bearer
token) and read back with a C(GET) of a URL whose JSON answer has the state under a key
(C(state) by default; a dotted path reaches a nested key). The body may contain a C({state})
placeholder; without a body the adapter sends C({"state": "<state>"}) as JSON. The extra headers
(C(http.headers)) and the token go with every request, the C(GET) that reads the state included.
A reported value this module does not know reads as C(unknown).
"""

from __future__ import annotations

import json

from ansible_collections.modelops.shutdown.plugins.module_utils._http import request
from ansible_collections.modelops.shutdown.plugins.module_utils._lb import STATES, Adapter, LBError

OK_STATUS = tuple(range(200, 300))


class HttpAdapter(Adapter):
    kind = 'http'

    def __init__(self, params):
        super(HttpAdapter, self).__init__()
        self.url = params.get('url')
        if not self.url:
            raise LBError('http.url is required: the admin URL that changes the state.')
        self.state_url = params.get('state_url') or self.url
        self.method = (params.get('method') or 'POST').upper()
        self.body = params.get('body')
        self.headers = dict(params.get('headers') or {})
        self.token = params.get('token')
        self.validate_certs = params.get('validate_certs', True)
        self.ca_path = params.get('ca_path')
        self.timeout = 10.0 if params.get('timeout') is None else params.get('timeout')
        self.state_key = params.get('state_key') or 'state'

    def describe(self):
        return 'HTTP admin endpoint %s' % self.state_url

    def _call(self, url, method='GET', body=None, headers=None):
        if headers is None:
            headers = dict(self.headers)
        return request(url, method=method, body=body, headers=headers, token=self.token, timeout=self.timeout,
                       validate_certs=self.validate_certs, ca_path=self.ca_path, expect_status=OK_STATUS)

    def _extract(self, data):
        value = data
        for part in self.state_key.split('.'):
            if not isinstance(value, dict) or part not in value:
                raise LBError('GET %s returned JSON without the key %r (state_key %r): %s' % (
                    self.state_url, part, self.state_key, json.dumps(data)[:200]))
            value = value[part]
        return value

    def _get_state(self):
        data = self._call(self.state_url).json(self.state_url)
        reported = self._extract(data)
        state = reported if isinstance(reported, str) and reported in STATES else 'unknown'
        return {'state': state, 'raw': {'reported': reported, 'response': data}}

    def _render_body(self, state):
        if self.body is None:
            return json.dumps({'state': state})
        return self.body.replace('{state}', state)

    def set_state(self, state):
        if state not in STATES:
            raise LBError('%s: unknown state %r.' % (self.describe(), state))
        headers = dict(self.headers)
        if not any(k.lower() == 'content-type' for k in headers):
            headers['Content-Type'] = 'application/json'
        self._call(self.url, method=self.method, body=self._render_body(state), headers=headers)

    def verify(self, state):
        info = self.get_state()
        ok = info['state'] == state
        return ok, '%s reports %s %r (expected %r)' % (self.describe(), self.state_key, info['raw']['reported'], state)
