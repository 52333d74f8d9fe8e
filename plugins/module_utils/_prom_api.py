# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A client of the Prometheus HTTP API: instant (C(/api/v1/query)) and range (C(/api/v1/query_range)) queries.

Private to this collection. Requests go through C(_http.request) (timeouts, TLS, bearer token, masking).
Queries are sent as C(GET) with URL-encoded parameters: a read, which a check-mode run may send.

Answers are validated by shape; anything else raises C(PromError) saying "unknown answer shape" and what was
expected, never a guess. Prometheus errors (C(status: error)) keep C(errorType), the error text, the HTTP status
and the query. Sample values are parsed from their strings, C(NaN), C(+Inf) and C(-Inf) included.
"""

from __future__ import annotations

import math
import re

from urllib.parse import urlencode

from ansible_collections.modelops.shutdown.plugins.module_utils._http import HttpError, display_url, request

RESULT_TYPES = ('vector', 'matrix', 'scalar', 'string')
_FLOAT_RE = re.compile(r'^[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)$')
_SPECIAL = {'NaN': math.nan, '+Inf': math.inf, 'Inf': math.inf, '-Inf': -math.inf}
EXCERPT_CHARS = 200


class PromError(Exception):
    """A query failed. C(kind) is V(http) (no answer, or an HTTP error without a Prometheus error body),
    V(prometheus) (C(status: error)) or V(shape) (an answer of unknown shape)."""

    def __init__(self, message, kind='http', status=None, error_type=None, query=None, connection=False):
        super(PromError, self).__init__(message)
        self.kind = kind
        self.status = status
        self.error_type = error_type
        self.query = query
        # True when Prometheus could not be reached at all (refused, timeout, DNS): later queries would fail too.
        self.connection = connection


def parse_value(text):
    """The float of a sample value string (C("1.5"), C("NaN"), C("+Inf"), C("-Inf")); raises C(ValueError)."""
    if not isinstance(text, str):
        raise ValueError('a sample value must be a string, got %s %r' % (type(text).__name__, text))
    if text in _SPECIAL:
        return _SPECIAL[text]
    if not _FLOAT_RE.match(text):
        raise ValueError('%r is not a number, NaN, +Inf or -Inf' % text[:40])
    return float(text)


def format_value(value):
    """C(value) as JSON can carry it: a finite float as is, NaN and infinities as C("NaN"), C("+Inf"), C("-Inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return 'NaN' if math.isnan(value) else ('+Inf' if value > 0 else '-Inf')
    return value


def _shape(what, expected, got, query):
    shown = repr(got)
    if len(shown) > EXCERPT_CHARS:
        shown = shown[:EXCERPT_CHARS] + '...'
    return PromError('unknown answer shape for query %r: %s must be %s, got %s' % (query, what, expected, shown),
                     kind='shape', query=query)


def _sample(pair, what, query):
    if not isinstance(pair, list) or len(pair) != 2:
        raise _shape(what, 'a [timestamp, "value"] pair', pair, query)
    stamp, text = pair
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        raise _shape(what + '[0]', 'a finite number (the timestamp)', stamp, query)
    try:
        value = parse_value(text)
    except ValueError as exc:
        raise _shape(what + '[1]', 'a sample value string ("1.5", "NaN", "+Inf", "-Inf"): %s' % exc, text, query)
    return (float(stamp), value)


def _labels(metric, what, query):
    if not isinstance(metric, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        raise _shape(what, 'an object of label names to string values', metric, query)
    return dict(metric)


def parse_answer(body, query, status=None):
    """The C(data) of a Prometheus API answer, validated: C({'resultType': ..., 'result': ...}) where a vector is a
    list of C({'metric': labels, 'value': (t, v)}), a matrix a list of C({'metric': labels, 'values': [(t, v), ...]}),
    a scalar or string one C((t, v)) pair (a string's value kept as text). Raises C(PromError)."""
    if not isinstance(body, dict):
        raise _shape('the answer', 'a JSON object with "status"', body, query)
    state = body.get('status')
    if state == 'error':
        error_type = body.get('errorType')
        text = body.get('error')
        raise PromError('Prometheus refused query %r%s: %s: %s' % (
            query, ' (HTTP %s)' % status if status is not None else '', error_type or 'no errorType',
            text if isinstance(text, str) else repr(text)), kind='prometheus', status=status, error_type=error_type, query=query)
    if state != 'success':
        raise _shape('"status"', '"success" or "error"', state, query)
    data = body.get('data')
    if not isinstance(data, dict):
        raise _shape('"data"', 'an object with "resultType" and "result"', data, query)
    kind = data.get('resultType')
    result = data.get('result')
    if kind not in RESULT_TYPES:
        raise _shape('"data.resultType"', 'one of %s' % ', '.join(RESULT_TYPES), kind, query)
    if kind in ('scalar', 'string'):
        if not isinstance(result, list) or len(result) != 2:
            raise _shape('"data.result" of a %s' % kind, 'a [timestamp, "value"] pair', result, query)
        if kind == 'string':
            if not isinstance(result[1], str) or isinstance(result[0], bool) or not isinstance(result[0], (int, float)):
                raise _shape('"data.result" of a string', 'a [timestamp, "text"] pair', result, query)
            return {'resultType': kind, 'result': (float(result[0]), result[1])}
        return {'resultType': kind, 'result': _sample(result, '"data.result"', query)}
    if not isinstance(result, list):
        raise _shape('"data.result" of a %s' % kind, 'a list of series', result, query)
    series = []
    for index, item in enumerate(result):
        what = '"data.result[%d]"' % index
        if not isinstance(item, dict):
            raise _shape(what, 'an object with "metric" and "%s"' % ('value' if kind == 'vector' else 'values'), item, query)
        labels = _labels(item.get('metric'), what + '.metric', query)
        if kind == 'vector':
            series.append({'metric': labels, 'value': _sample(item.get('value'), what + '.value', query)})
        else:
            values = item.get('values')
            if not isinstance(values, list):
                raise _shape(what + '.values', 'a list of [timestamp, "value"] pairs', values, query)
            series.append({'metric': labels, 'values': [_sample(pair, '%s.values[%d]' % (what, n), query)
                                                        for n, pair in enumerate(values)]})
    return {'resultType': kind, 'result': series}


class PromClient(object):
    """Queries one Prometheus at C(url) (its base URL, C(http://127.0.0.1:9090))."""

    def __init__(self, url, token=None, timeout=10.0, validate_certs=True, ca_path=None, send=request):
        self.url = (url or '').rstrip('/')
        self.token = token
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self._send = send

    @property
    def shown_url(self):
        return display_url(self.url)

    def _get(self, path, params, query):
        url = '%s%s?%s' % (self.url, path, urlencode(params))
        try:
            resp = self._send(url, method='GET', headers={'Accept': 'application/json'}, token=self.token,
                              timeout=self.timeout, validate_certs=self.validate_certs, ca_path=self.ca_path)
        except HttpError as exc:
            raise PromError('query %r to Prometheus %s: %s' % (query, self.shown_url, exc), kind='http',
                            status=exc.status, query=query, connection=exc.status is None)
        try:
            body = resp.json(url=self.shown_url + path)
        except HttpError as exc:
            if resp.status >= 400:
                raise PromError('query %r to Prometheus %s: HTTP %s and %s' % (query, self.shown_url, resp.status, exc),
                                kind='http', status=resp.status, query=query)
            raise PromError('unknown answer shape for query %r: expected a JSON object, %s' % (query, exc),
                            kind='shape', status=resp.status, query=query)
        if resp.status >= 400 and not (isinstance(body, dict) and body.get('status') == 'error'):
            raise PromError('query %r to Prometheus %s: HTTP %s: %s' % (
                query, self.shown_url, resp.status, resp.mask(resp.body)[:EXCERPT_CHARS]), kind='http', status=resp.status,
                query=query)
        return parse_answer(body, query, status=resp.status)

    def instant(self, query, time):
        """The answer of C(query) evaluated at C(time) (epoch seconds), from C(/api/v1/query)."""
        return self._get('/api/v1/query', [('query', query), ('time', _stamp(time))], query)

    def range(self, query, start, end, step):
        """The answer of C(query) over C([start, end]) every C(step) seconds, from C(/api/v1/query_range)."""
        return self._get('/api/v1/query_range', [('query', query), ('start', _stamp(start)), ('end', _stamp(end)),
                                                 ('step', _stamp(step))], query)


def _stamp(seconds):
    """Seconds as Prometheus reads them: a decimal with millisecond precision, no exponent."""
    text = '%.3f' % float(seconds)
    return text.rstrip('0').rstrip('.') if '.' in text else text
