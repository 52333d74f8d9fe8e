# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HTTP client of this collection: timeouts, TLS verification, bearer token, clear errors.

Private to this collection.

* The URL is checked before anything is sent: scheme, host name (labels of 1 to 63 characters, no
  empty label), port, no whitespace or control character.
* C(timeout) bounds the B(whole) request (name resolution, connection, headers and body), not each
  read: a server that trickles its answer is cut off at the deadline. The body is read in chunks
  and capped at C(max_bytes).
* Tokens and the values of credential headers are stripped of surrounding whitespace (a YAML block
  scalar or C(slurp | b64decode) leaves a newline), refused if a control character remains inside,
  and masked in every message and error body, in every form they could take there (raw, stripped,
  after C(Bearer), as Python would repr them).
* Bodies are decoded as UTF-8 with replacement characters, so that no undecodable byte reaches a
  module result.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
import time

from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.modelops.shutdown.plugins.module_utils._spec import seconds_problem

# The largest body read; a Prometheus endpoint of a large model server stays far below.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
CHUNK_BYTES = 65536
MASK = '********'
ERROR_EXCERPT_CHARS = 200

# Header names whose values are credentials (matched case-insensitively, as substrings).
SENSITIVE_HEADER_WORDS = ('authorization', 'token', 'secret', 'password', 'cookie', 'api-key', 'apikey', 'x-api-key')

_TCHAR_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_LABEL_RE = re.compile(r'^[A-Za-z0-9_-]+$')


class HttpError(Exception):
    """A request failed; the message names the method and URL and says why. It never carries a secret."""

    def __init__(self, message, status=None, body=None):
        super(HttpError, self).__init__(message)
        self.status = status
        self.body = body


class HttpResponse(object):
    def __init__(self, status, body, headers, masker=None):
        self.status = status
        self.body = body
        self.headers = headers
        self._mask = masker or (lambda text: text)

    def mask(self, text):
        """C(text) with every form of the request's secrets masked: use it before quoting C(body) in a message."""
        return self._mask(text)

    def json(self, url=''):
        """The body decoded as JSON; lone surrogates (a C(\\ud800) escape) replaced, so the result stays serializable."""
        try:
            return _no_surrogates(json.loads(self.body))
        except RecursionError:
            raise HttpError('%s returned JSON nested too deeply to read (%d characters): %r' % (
                url or 'the server', len(self.body), self._mask(self.body[:ERROR_EXCERPT_CHARS])), status=self.status)
        except ValueError as exc:
            raise HttpError('%s returned a body that is not JSON (%s): %r' % (
                url or 'the server', exc, self._mask(self.body[:ERROR_EXCERPT_CHARS])), status=self.status,
                body=self._mask(self.body))


def _no_surrogates(value):
    if isinstance(value, str):
        try:
            value.encode('utf-8')
            return value
        except UnicodeEncodeError:
            return value.encode('utf-8', 'surrogatepass').decode('utf-8', 'replace')
    if isinstance(value, list):
        return [_no_surrogates(item) for item in value]
    if isinstance(value, dict):
        return dict((_no_surrogates(key), _no_surrogates(item)) for key, item in value.items())
    return value


def decode(raw):
    """Text of C(raw) bytes as UTF-8, undecodable bytes replaced (never a lone surrogate)."""
    if isinstance(raw, str):
        return raw.encode('utf-8', 'surrogatepass').decode('utf-8', 'replace')
    return raw.decode('utf-8', 'replace')


# --------------------------------------------------------------------------------------------- checks

def host_problem(host):
    """None when C(host) is an IP address or a usable DNS name, else what is wrong with it (a sentence)."""
    if not isinstance(host, str) or not host:
        return 'the host name is empty'
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith('.') else host
    if len(name) > 253:
        return 'host name %r is %d characters long; DNS allows at most 253' % (host[:60] + '...', len(name))
    for label in name.split('.'):
        if label == '':
            return 'host name %r has an empty label (two dots in a row, or a leading dot)' % host
        if len(label) > 63:
            return 'host name %r has a label of %d characters (%r); DNS allows at most 63' % (
                host if len(host) <= 80 else host[:77] + '...', len(label), label[:20] + '...')
        if label.isascii():
            if not _LABEL_RE.match(label):
                return 'host name %r contains %r; a host name uses letters, digits, "-" and "."' % (
                    host, [c for c in label if not _LABEL_RE.match(c)][0])
    try:
        encoded = host.encode('idna')
    except UnicodeError as exc:
        return 'host name %r cannot be encoded for DNS (%s)' % (host, exc)
    if len(encoded) > 254:
        return 'host name %r is longer than DNS allows once encoded' % host
    return None


def display_url(url):
    """C(url) with the password of any C(user:password@) part masked, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit('@', 1)
    return urlunsplit((parts.scheme, '%s:%s@%s' % (parts.username, MASK, netloc[-1]), parts.path, parts.query, parts.fragment))


def check_url(url, what='URL'):
    """Raise C(HttpError) unless C(url) is an C(http)/C(https) URL with a valid host and port."""
    if not isinstance(url, str) or not url.strip():
        raise HttpError('The %s is empty; expected an http:// or https:// URL.' % what)
    for char in url:
        if char.isspace() or not char.isprintable():
            raise HttpError('Refusing %s %r: it contains %r (whitespace or a control character); '
                            'percent-encode it (%%20 for a space).' % (what, display_url(url), char))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HttpError('Invalid %s %r: %s. Expected http(s)://host[:port]/path with a port from 1 to 65535.' % (
            what, display_url(url), exc))
    if parts.scheme.lower() not in ('http', 'https'):
        raise HttpError('Invalid %s %r: the scheme must be http or https, got %r.' % (what, display_url(url), parts.scheme))
    problem = host_problem(parts.hostname or '')
    if problem:
        raise HttpError('Invalid %s %r: %s.' % (what, display_url(url), problem))
    if port is not None and not 1 <= port <= 65535:
        raise HttpError('Invalid %s %r: port %s is not between 1 and 65535.' % (what, display_url(url), port))
    return url


def check_timeout(timeout, what='timeout'):
    """The timeout as a float; raises C(HttpError) unless it is finite, more than 0 and at most a week."""
    problem = seconds_problem(what, timeout, minimum=0.0, above=True, allow_none=False)
    if problem:
        raise HttpError('The request %s.' % problem)
    return float(timeout)


def is_sensitive_header(name):
    lowered = to_text(name).lower()
    return any(word in lowered for word in SENSITIVE_HEADER_WORDS)


def _secret_forms(secret):
    """Every way C(secret) can show up in a message: raw, stripped, after "Bearer ", repr'd as text or bytes."""
    forms = set()
    for value in set([secret, secret.strip()]):
        for item in (value, 'Bearer ' + value):
            if len(item.strip()) < 3:
                continue
            forms.add(item)
            forms.add(repr(item)[1:-1])
            forms.add(repr(to_bytes(item, errors='surrogate_or_replace'))[2:-1])
            forms.add(json.dumps(item)[1:-1])
    return forms


def make_masker(secrets):
    """A function replacing every form of every secret in a text with C(********)."""
    forms = set()
    for secret in secrets:
        if secret:
            forms.update(_secret_forms(to_text(secret, errors='surrogate_or_replace')))
    ordered = sorted((form for form in forms if form), key=len, reverse=True)

    def mask(text):
        text = to_text(text, errors='surrogate_or_replace')
        for form in ordered:
            if form in text:
                text = text.replace(form, MASK)
        return text
    return mask


def clean_secret(value, what):
    """C(value) stripped of surrounding whitespace; raises C(HttpError) (without the value) if a control
    character, whitespace or non-ASCII character remains inside, which no header may carry."""
    text = to_text(value, errors='surrogate_or_replace')
    stripped = text.strip()
    if text and not stripped:
        raise HttpError('The %s is empty once surrounding whitespace is removed; give the token itself.' % what)
    bad = [char for char in stripped if not 0x21 <= ord(char) <= 0x7e]
    if bad:
        if '\r' in bad or '\n' in bad:
            kind = 'a line break'
        elif bad[0] == ' ' and stripped.lower().startswith('bearer '):
            kind = 'a space after "Bearer" (give the token alone: "Bearer " is added to it)'
        else:
            kind = 'whitespace, a control or a non-ASCII character'
        raise HttpError('The %s contains %s inside it (not only at its ends), which an HTTP header cannot carry; '
                        'check how it is read (the value is not shown).' % (what, kind))
    return stripped


def _clean_headers(headers, secrets):
    cleaned = {}
    for name, value in (headers or {}).items():
        name = to_text(name)
        if not _TCHAR_RE.match(name):
            raise HttpError('Refusing HTTP header name %r: a header name is letters, digits and !#$%%&\'*+.^_`|~-, '
                            'without spaces or colons.' % name)
        if value is None:
            continue
        if is_sensitive_header(name):
            secrets.append(to_text(value, errors='surrogate_or_replace'))
            value = clean_secret(value, 'value of header %s' % name)
            secrets.append(value)
        else:
            value = to_text(value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value),
                            errors='surrogate_or_replace').strip()
            for char in value:
                if char in '\r\n\x00' or (ord(char) < 0x20 and char != '\t') or ord(char) > 0xff:
                    raise HttpError('Refusing the value of HTTP header %s: it contains %r, which could inject a header '
                                    'or cannot be sent.' % (name, char))
        cleaned[name] = value
    return cleaned


# --------------------------------------------------------------------------------------------- request

class _Deadline(Exception):
    pass


class _TooLarge(Exception):
    pass


def _shrink_socket_timeout(resp, remaining):
    """Make the next socket read of C(resp) wait no longer than the time left (best effort, CPython internals:
    an C(http.client.HTTPResponse), or the C(HTTPError) wrapping one)."""
    for path in (('fp', 'raw', '_sock'), ('fp', 'fp', 'raw', '_sock')):
        obj = resp
        for attr in path:
            obj = getattr(obj, attr, None)
        settimeout = getattr(obj, 'settimeout', None)
        if settimeout is not None:
            try:
                settimeout(max(0.01, remaining))
            except (OSError, ValueError):
                pass
            return


def _read_body(resp, deadline, max_bytes, state):
    """Read C(resp) to its end in chunks, checking the deadline and the size cap between chunks."""
    chunks = []
    read = getattr(resp, 'read1', None) or resp.read
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or state.get('cancelled'):
            raise _Deadline()
        _shrink_socket_timeout(resp, remaining)
        chunk = read(CHUNK_BYTES)
        if not chunk:
            break
        chunks.append(chunk)
        state['received'] += len(chunk)
        if state['received'] > max_bytes:
            raise _TooLarge()
    return b''.join(chunks)


def _exchange(state, url, deadline, max_bytes, open_kwargs):
    """The request itself, run in a worker thread so that the caller can give up at the deadline."""
    try:
        try:
            resp = open_url(url, **open_kwargs)
            state['status'] = resp.getcode()
            state['headers'] = dict(resp.headers.items())
            state['raw'] = _read_body(resp, deadline, max_bytes, state)
        except HTTPError as exc:
            state['status'] = exc.code
            state['headers'] = dict(exc.headers.items()) if exc.headers else {}
            try:
                state['raw'] = _read_body(exc, deadline, max_bytes, state)
            except (_Deadline, _TooLarge):
                raise
            except Exception:  # the error body is best effort only
                state['raw'] = b''
    except BaseException as exc:  # handed to the caller's thread, which turns it into an HttpError
        state['error'] = exc


def request(url, method='GET', body=None, headers=None, token=None, timeout=10.0,
            validate_certs=True, ca_path=None, client_cert=None, client_key=None, expect_status=None,
            max_bytes=MAX_RESPONSE_BYTES, secrets=()):
    """Send one request and return an C(HttpResponse).

    C(body) may be a str, bytes, or a dict/list (sent as JSON). Any HTTP status is returned as a
    response unless C(expect_status) is a collection of acceptable codes, in which case any other
    status raises C(HttpError). Network and TLS failures, a bad URL, a timeout (C(timeout) bounds the
    whole request) and a body over C(max_bytes) always raise C(HttpError). C(token) (sent as
    C(Authorization: Bearer)), the values of credential headers and C(secrets) are masked in every message.
    """
    secrets = [to_text(s, errors='surrogate_or_replace') for s in secrets if s]
    if token:
        secrets.append(to_text(token, errors='surrogate_or_replace'))
    mask = make_masker(secrets)
    shown = display_url(url) if isinstance(url, str) else url
    where = '%s %s' % (method, shown)
    try:
        check_url(url)
        timeout = check_timeout(timeout)
        send_headers = _clean_headers(headers, secrets)
        if token:
            send_headers['Authorization'] = 'Bearer %s' % clean_secret(token, 'bearer token')
    except HttpError as exc:
        raise HttpError(make_masker(secrets)('%s failed: %s' % (where, exc)))
    mask = make_masker(secrets)
    data = body
    if isinstance(body, (dict, list)):
        data = json.dumps(body)
        if not any(name.lower() == 'content-type' for name in send_headers):
            send_headers['Content-Type'] = 'application/json'

    started = time.monotonic()
    deadline = started + timeout
    state = {'received': 0}
    open_kwargs = dict(data=data, headers=send_headers, method=method, timeout=timeout, validate_certs=validate_certs,
                       ca_path=ca_path, client_cert=client_cert, client_key=client_key, follow_redirects='safe',
                       use_proxy=True)
    worker = threading.Thread(target=_exchange, args=(state, url, deadline, max_bytes, open_kwargs))
    worker.daemon = True
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()) + 0.2)
    error = state.get('error')
    timed_out = isinstance(error, (_Deadline, socket.timeout)) or (
        isinstance(error, URLError) and isinstance(getattr(error, 'reason', None), socket.timeout))
    if worker.is_alive() or timed_out:
        state['cancelled'] = True
        phase = ('%d bytes of the body had arrived' % state['received'] if 'status' in state
                 else 'not even the status line and headers had arrived')
        raise HttpError(mask('%s failed: no complete answer within timeout=%s s (the timeout bounds the whole request: '
                             'connection, headers and body); %s. The server is stuck or too slow: check it, or raise '
                             'the timeout if it is only slow.' % (where, timeout, phase)))
    if isinstance(error, _TooLarge):
        raise HttpError('%s failed: the answer is larger than %d bytes; giving up. Check that the URL is the right endpoint.'
                        % (where, max_bytes), status=state.get('status'))
    if isinstance(error, URLError) and not isinstance(error, HTTPError):
        raise HttpError(mask('%s failed: %s' % (where, to_text(getattr(error, 'reason', error), errors='surrogate_or_replace'))))
    if error is not None:  # socket timeouts, TLS errors, connection resets
        raise HttpError(mask('%s failed: %s: %s' % (where, type(error).__name__, to_text(error, errors='surrogate_or_replace'))))
    status = state['status']
    text = decode(state.get('raw') or b'')
    if expect_status is not None and status not in expect_status:
        shown_body = mask(text)
        raise HttpError('%s returned HTTP %s, expected %s: %s' % (
            where, status, ' or '.join(str(s) for s in sorted(expect_status)), shown_body[:ERROR_EXCERPT_CHARS]),
            status=status, body=shown_body)
    return HttpResponse(status, text, state.get('headers') or {}, masker=mask)
