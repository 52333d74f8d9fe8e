# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sources of "requests in flight" on one serving instance.

Private to this collection. Each source has C(name), C(read()) (returns C({'in_flight': n, 'detail': {...}})
or raises C(InFlightError)) and C(describe()) (what it reads, never a secret). C(read_all()) combines
them: the figure is the maximum over sources, because they count the same requests from different
vantage points (the server's gauges, the load balancer's sessions, the kernel's connections) and a
sum would count each request two or three times.
"""

from __future__ import annotations

import math

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils import _http
from ansible_collections.modelops.shutdown.plugins.module_utils import _netstat
from ansible_collections.modelops.shutdown.plugins.module_utils import _prometheus

try:
    from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import HAProxyError, HAProxyRuntime, validate_name
    HAPROXY_IMPORT_ERROR = None
except ImportError as _exc:  # the haproxy source is unusable, the other sources still work
    HAPROXY_IMPORT_ERROR = to_text(_exc)
    HAProxyRuntime = validate_name = None

    class HAProxyError(Exception):
        """Stands in for _haproxy.HAProxyError so that the except clauses stay valid."""


# Metric presets: the gauges whose sum is the number of requests a server holds.
# Ray Serve: ray_serve_replica_processing_queries is set by each replica (requests executing in it);
# ray_serve_deployment_queued_queries is set by each router, i.e. the proxy or a DeploymentHandle
# (requests accepted but not yet assigned to a replica). Names as documented in Ray's
# doc/source/serve/monitoring.md and created in python/ray/serve/_private/{replica,router}.py.
#
# vLLM V0 also reports vllm:num_requests_swapped: requests preempted to CPU memory, still in flight (they
# resume and finish). V1 dropped the gauge (no swapping), so it is counted where exported (OPTIONAL).
PRESETS = {
    'vllm': ('vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:num_requests_swapped'),
    'sglang': ('sglang:num_running_reqs', 'sglang:num_queue_reqs'),
    'tgi': ('tgi_queue_size', 'tgi_batch_current_size'),
    'triton': ('nv_inference_pending_request_count',),
    'ray_serve': ('ray_serve_replica_processing_queries', 'ray_serve_deployment_queued_queries'),
}
PRESET_CHOICES = sorted(PRESETS) + ['generic']
# Metrics of a preset that some versions of the server do not export: counted when present, 0 when absent.
OPTIONAL = {
    'vllm': ('vllm:num_requests_swapped',),
}

DEFAULT_ACCEPT = 'text/plain;version=0.0.4;q=1.0, */*;q=0.1'


class InFlightError(Exception):
    """A source could not be read; the message names the source (URL, backend/server, port) and says what to do."""


def _number(value):
    """Return an int when the float is integral, for readable results."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _format_labels(labels):
    if not labels:
        return ''
    return '{%s}' % ','.join('%s="%s"' % (k, labels[k]) for k in sorted(labels))


class MetricsSource(object):
    """Sum of selected gauges scraped from a Prometheus C(/metrics) URL."""

    name = 'metrics'

    def __init__(self, url, preset='generic', metrics=None, labels=None, token=None, headers=None,
                 validate_certs=True, ca_path=None, timeout=10.0, request=None):
        if preset not in PRESET_CHOICES:
            raise InFlightError('unknown metrics preset %r; use one of %s' % (preset, ', '.join(PRESET_CHOICES)))
        try:
            _http.check_url(url, 'metrics.url')
            if token:
                _http.clean_secret(token, 'metrics.token')
        except _http.HttpError as exc:
            raise InFlightError(to_text(exc))
        self.url = url
        self.shown_url = _http.display_url(url)
        self.preset = preset
        self.labels = dict(labels or {})
        self.token = token
        self.headers = dict(headers or {})
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self._request = request or _http.request
        if preset == 'generic':
            if not metrics:
                raise InFlightError('metrics preset "generic" needs a list of metrics (name and optional labels) to sum')
            selected = []
            for item in metrics:
                if isinstance(item, dict):
                    name = item.get('name')
                    item_labels = item.get('labels') or {}
                else:
                    name, item_labels = item, {}
                if not name:
                    raise InFlightError('every metric of the "generic" preset needs a name')
                merged = dict(self.labels)
                merged.update(item_labels)
                selected.append((to_text(name), merged))
        else:
            if metrics:
                raise InFlightError('metrics preset %r chooses its metrics itself (%s); give a list of metrics only with preset "generic"'
                                    % (preset, ', '.join(PRESETS[preset])))
            selected = [(name, dict(self.labels)) for name in PRESETS[preset]]
        self.selected = selected
        self.optional = set(OPTIONAL.get(preset, ()))

    def describe(self):
        return {
            'url': _http.display_url(self.url),
            'preset': self.preset,
            'metrics': [{'name': name, 'labels': labels} for name, labels in self.selected],
            'header_names': sorted(self.headers),
        }

    def scrape(self):
        headers = {'Accept': DEFAULT_ACCEPT}
        headers.update(self.headers)
        try:
            resp = self._request(self.url, headers=headers, token=self.token, timeout=self.timeout,
                                 validate_certs=self.validate_certs, ca_path=self.ca_path, expect_status=(200,))
        except _http.HttpError as exc:
            raise InFlightError('cannot scrape metrics: %s. Check that the server is up and that the URL is its /metrics endpoint.'
                                % to_text(exc).rstrip('.'))
        try:
            return _prometheus.parse_text(resp.body)
        except _prometheus.PrometheusError as exc:
            raise InFlightError('%s did not return Prometheus text format (%s). Check that the URL is the /metrics endpoint.' % (self.shown_url, exc))

    def read(self):
        samples, metadata = self.scrape()
        total = 0.0
        detail = {}
        for name, labels in self.selected:
            family = _prometheus.select(samples, name)
            if not family and name in self.optional:
                continue  # not exported by this version of the server (vLLM V1 has no swapped requests)
            if not family:
                if name in metadata:
                    what = 'declares metric %s (# TYPE %s) but exports no sample of it' % (name, metadata[name].get('type') or 'untyped')
                else:
                    what = 'does not export metric %s' % name
                raise InFlightError('%s %s, which preset %s needs to count requests in flight. Check that the preset matches the server '
                                    '(and its version), or use preset "generic" with the metric names this server exports.'
                                    % (self.shown_url, what, self.preset))
            matched = [s for s in family if _prometheus.labels_match(s.labels, labels)]
            if not matched:
                seen = sorted(set(_format_labels(s.labels) for s in family))[:5]
                raise InFlightError('%s exports %s but no sample matches the labels %s (label sets seen: %s). Fix the label filter.'
                                    % (self.shown_url, name, _format_labels(labels), ', '.join(seen)))
            value = 0.0
            for sample in matched:
                if math.isnan(sample.value) or math.isinf(sample.value) or sample.value < 0:
                    raise InFlightError('%s reports %s%s = %s, which cannot be a count of requests; check the metric is an in-flight gauge.'
                                        % (self.shown_url, name, _format_labels(sample.labels), sample.value))
                value += sample.value
            key = name + _format_labels(labels)
            detail[key] = _number(detail.get(key, 0) + value)
            total += value
        return {'in_flight': _number(total), 'detail': detail}


class HAProxySource(object):
    """Current sessions plus queued requests (C(scur) + C(qcur)) of one server, via the HAProxy runtime API."""

    name = 'haproxy'

    def __init__(self, backend, server, socket_path=None, host=None, port=None, timeout=5.0, runtime=None):
        self.backend = backend
        self.server = server
        self.socket_path = socket_path
        self.host = host
        self.port = port
        if runtime is None:
            if HAPROXY_IMPORT_ERROR is not None:
                raise InFlightError('the haproxy source needs module_utils._haproxy, which failed to import: %s' % HAPROXY_IMPORT_ERROR)
            try:
                validate_name('backend', backend)
                validate_name('server', server)
                runtime = HAProxyRuntime(socket_path=socket_path, host=host, port=port, timeout=timeout)
            except HAProxyError as exc:
                raise InFlightError('haproxy source: %s' % exc)
        self._runtime = runtime

    def where(self):
        if self.socket_path:
            return 'socket %s' % self.socket_path
        return '%s:%s' % (self.host, self.port)

    def describe(self):
        return {'backend': self.backend, 'server': self.server, 'socket': self.socket_path, 'host': self.host, 'port': self.port}

    def read(self):
        try:
            stat = self._runtime.server_stat(self.backend, self.server)
        except HAProxyError as exc:
            raise InFlightError('cannot read %s/%s from HAProxy at %s: %s' % (self.backend, self.server, self.where(), exc))
        except (IOError, OSError) as exc:
            raise InFlightError('cannot read %s/%s from HAProxy at %s: %s. Check the runtime API address and that HAProxy is running.'
                                % (self.backend, self.server, self.where(), to_text(exc)))
        values = {}
        for field in ('scur', 'qcur'):
            raw = stat.get(field) if stat else None
            if raw in (None, '') and field == 'qcur' and stat and field in stat:
                raw = 0  # HAProxy leaves queue columns empty where no queue applies
            try:
                values[field] = int(raw)
            except (TypeError, ValueError):
                raise InFlightError('HAProxy at %s gave %s/%s a %s of %r, not a number; is %s a server of backend %s?'
                                    % (self.where(), self.backend, self.server, field, raw, self.server, self.backend))
        in_flight = values['scur'] + values['qcur']
        detail = dict(values)
        if stat.get('status'):
            detail['status'] = to_text(stat.get('status'))
        return {'in_flight': in_flight, 'detail': detail}


class ConnectionsSource(object):
    """Established TCP connections to a local port, from C(/proc/net/tcp) and C(/proc/net/tcp6)."""

    name = 'connections'

    def __init__(self, port, exclude_peers=None, paths=_netstat.PROC_NET_TCP, byteorder=None):
        self.port = port
        self.exclude_peers = list(exclude_peers or [])
        try:
            self._exclude = _netstat.parse_networks(self.exclude_peers)
        except ValueError as exc:
            raise InFlightError('connections source: exclude_peers entry %s' % exc)
        self._paths = paths
        self._byteorder = byteorder

    def describe(self):
        return {'port': self.port, 'exclude_peers': self.exclude_peers}

    def read(self):
        try:
            counted, excluded = _netstat.read_established(self.port, self._exclude, paths=self._paths, byteorder=self._byteorder)
        except _netstat.NetstatError as exc:
            raise InFlightError('cannot count connections to port %s: %s' % (self.port, exc))
        return {'in_flight': counted, 'detail': {'established': counted, 'excluded': excluded}}


def read_all(sources):
    """Read every source once; return C((in_flight, values, details)).

    C(in_flight) is the maximum over sources, C(values) maps each source name to its figure and
    C(details) maps each source name to its detail. The first failing source raises C(InFlightError).
    """
    values = {}
    details = {}
    for source in sources:
        result = source.read()
        values[source.name] = result['in_flight']
        details[source.name] = result['detail']
    if not values:
        # Nothing read is nothing known: never "0 in flight" (which would read as drained).
        raise InFlightError('no in-flight source is configured: give at least one of metrics, haproxy, connections')
    in_flight = max(values.values())
    return in_flight, values, details
