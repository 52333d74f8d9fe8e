# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HTTP client of this collection: timeouts, TLS verification, bearer token, clear errors.

Private to this collection. Errors never carry the token.
"""

from __future__ import annotations

import json

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url


class HttpError(Exception):
    """A request failed; the message names the method and URL and says why."""

    def __init__(self, message, status=None, body=None):
        super(HttpError, self).__init__(message)
        self.status = status
        self.body = body


class HttpResponse(object):
    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers

    def json(self, url=''):
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError('%s returned a body that is not JSON (%s): %r' % (url or 'the server', exc, self.body[:200]),
                            status=self.status, body=self.body)


def request(url, method='GET', body=None, headers=None, token=None, timeout=10.0,
            validate_certs=True, ca_path=None, client_cert=None, client_key=None, expect_status=None):
    """Send one request and return an C(HttpResponse).

    C(body) may be a str, bytes, or a dict/list (sent as JSON). Any HTTP status is returned as a
    response unless C(expect_status) is a collection of acceptable codes, in which case any other
    status raises C(HttpError). Network and TLS failures always raise C(HttpError).
    """
    send_headers = dict(headers or {})
    data = body
    if isinstance(body, (dict, list)):
        data = json.dumps(body)
        send_headers.setdefault('Content-Type', 'application/json')
    if token:
        send_headers['Authorization'] = 'Bearer %s' % token
    where = '%s %s' % (method, url)
    try:
        resp = open_url(url, data=data, headers=send_headers, method=method, timeout=timeout,
                        validate_certs=validate_certs, ca_path=ca_path, client_cert=client_cert,
                        client_key=client_key, follow_redirects='safe', use_proxy=True)
        status = resp.getcode()
        raw = resp.read()
        resp_headers = dict(resp.headers.items())
    except HTTPError as exc:
        status = exc.code
        try:
            raw = exc.read()
        except Exception:  # the error body is best effort only
            raw = b''
        resp_headers = dict(exc.headers.items()) if exc.headers else {}
    except URLError as exc:
        raise HttpError('%s failed: %s' % (where, to_text(getattr(exc, 'reason', exc))))
    except Exception as exc:  # socket timeouts, TLS errors, connection resets
        raise HttpError('%s failed: %s: %s' % (where, type(exc).__name__, to_text(exc)))
    text = to_text(raw, errors='surrogate_or_replace')
    if expect_status is not None and status not in expect_status:
        raise HttpError('%s returned HTTP %s, expected %s: %s' % (
            where, status, ' or '.join(str(s) for s in sorted(expect_status)), text[:200]), status=status, body=text)
    return HttpResponse(status, text, resp_headers)
