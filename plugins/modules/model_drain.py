#!/usr/bin/python
# Copyright (c) modelops.shutdown contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: model_drain
short_description: Wait until a model-serving instance has no requests in flight
version_added: 0.1.0
description:
  - Waits, inside one module invocation, until the instance has no requests in flight, then returns.
    No C(until)/C(retries) loop is needed in the task.
  - Run it after the instance was taken out of its load balancer (for example with M(modelops.shutdown.model_health_state)),
    so that no new requests arrive while the ones in flight finish.
  - The in-flight count is read from one or more sources, every O(poll_interval) seconds. O(metrics) sums gauges
    scraped from the server's Prometheus endpoint, O(haproxy) reads the load balancer's view of the server, O(connections)
    counts established TCP connections on the serving port.
  - When several sources are given, the in-flight figure is the B(maximum) over them, not their sum; they count the same
    requests from different vantage points, and a sum would count each request two or three times. Each sample reports
    the figure of every source.
  - The instance counts as drained when the in-flight figure is 0 and has stayed 0 for O(quiet_period) seconds.
  - A read that fails (endpoint down, HTTP error, text that is not Prometheus format, HAProxy unreachable) ends the wait
    with a failure that names the source and the figures read until then.
  - The module only reads; it never changes anything, so it always returns RV(changed=false).
author:
  - modelops.shutdown contributors (@modelops)
extends_documentation_fragment:
  - modelops.shutdown.attributes
attributes:
  check_mode:
    support: partial
    details:
      - In check mode the module reads the in-flight count once and waits for nothing.
        RV(drained) says whether that count was 0.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - The module only reads and always reports RV(changed=false).
options:
  metrics:
    description:
      - Count requests in flight from gauges on the server's Prometheus text-format endpoint.
      - The figure is the sum of the selected metrics over all samples that match the label filters.
      - A selected metric missing from the scrape, or a label filter that matches no sample of it, is an error; a running
        server always exports its gauges, so a missing one means a wrong URL, preset or filter.
    type: dict
    suboptions:
      url:
        description:
          - URL of the metrics endpoint, for example V(http://127.0.0.1:8000/metrics).
        type: str
        required: true
      preset:
        description:
          - Which metrics to sum.
          - V(vllm) sums C(vllm:num_requests_running) and C(vllm:num_requests_waiting).
          - V(sglang) sums C(sglang:num_running_reqs) and C(sglang:num_queue_reqs).
          - V(tgi) (text-generation-inference) sums C(tgi_queue_size) and C(tgi_batch_current_size).
          - V(triton) reads C(nv_inference_pending_request_count). This gauge counts requests B(queued) for execution only,
            not the ones executing, so it reaches 0 while the last batch still runs. Combine it with O(connections) or
            O(haproxy), or use a O(quiet_period) longer than one inference.
          - V(ray_serve) sums C(ray_serve_replica_processing_queries) (requests executing in each replica, labels C(deployment),
            C(replica), C(application)) and C(ray_serve_deployment_queued_queries) (requests a router, that is the proxy or a
            deployment handle, has accepted but not yet assigned to a replica; labels C(deployment), C(application), C(handle),
            C(actor_id)). Both are exported by the Ray metrics agent of the node (C(--metrics-export-port)); Ray updates them
            every few seconds (ten by default), so set O(quiet_period) to at least V(10). A node that runs no Serve proxy
            exports no C(ray_serve_deployment_queued_queries); there, use V(generic) with
            C(ray_serve_replica_processing_queries) alone.
          - V(generic) sums the metrics listed in O(metrics.metrics).
        type: str
        choices: [generic, ray_serve, sglang, tgi, triton, vllm]
        default: generic
      metrics:
        description:
          - The metrics to sum with O(metrics.preset=generic). Required with that preset, not allowed with the others.
        type: list
        elements: dict
        suboptions:
          name:
            description:
              - Sample name as it appears in the scrape, for example V(my_server_requests_in_flight).
            type: str
            required: true
          labels:
            description:
              - Only samples with all these labels (exact values) are summed. Added to O(metrics.labels); these win on conflict.
            type: dict
      labels:
        description:
          - Label filter applied to every selected metric. Only samples with all these labels (exact values) are summed.
          - For example label C(model_name) for vLLM and SGLang, C(model) (and C(version)) for Triton, C(deployment) and
            C(application) for Ray Serve. See the examples.
        type: dict
      token:
        description:
          - Bearer token sent in the C(Authorization) header.
        type: str
      headers:
        description:
          - Extra HTTP headers. The module never returns their values, but Ansible shows them in the task's invocation
            when it logs module arguments. Put a bearer token in O(metrics.token) (which is never logged), and set the task
            keyword C(no_log) when another header carries a secret.
        type: dict
      validate_certs:
        description:
          - Verify the server's TLS certificate. Turn off only for a test endpoint.
        type: bool
        default: true
      ca_path:
        description:
          - PEM file with the CA certificates to verify the server against.
        type: path
      timeout:
        description:
          - Seconds one scrape may take.
        type: float
        default: 5
  haproxy:
    description:
      - Count requests in flight as HAProxy sees them for one server, C(scur) (current sessions) plus C(qcur)
        (requests queued for the server), read through the HAProxy runtime API (C(show stat)).
      - Give either O(haproxy.socket) or O(haproxy.host) and O(haproxy.port).
    type: dict
    suboptions:
      socket:
        description:
          - Path of the runtime API UNIX socket, for example V(/run/haproxy/admin.sock).
        type: path
      host:
        description:
          - Host of a TCP runtime API listener.
        type: str
      port:
        description:
          - Port of a TCP runtime API listener.
        type: int
      backend:
        description:
          - Backend (proxy) name as in C(show stat), column C(pxname).
        type: str
        required: true
      server:
        description:
          - Server name within O(haproxy.backend), column C(svname).
        type: str
        required: true
  connections:
    description:
      - Count established TCP connections (state C(ESTABLISHED) only; C(TIME_WAIT) is not counted) whose local port is
        O(connections.port), from C(/proc/net/tcp) and C(/proc/net/tcp6) on the target. IPv4-mapped IPv6 peers
        (C(::ffff:a.b.c.d)) are treated as IPv4.
      - Linux only. The count is for the network namespace the module runs in; run it inside the server's namespace when
        the server has its own.
      - A connection is not a request. Clients or load balancers that keep idle connections open (HTTP keep-alive pools)
        keep this figure above 0; use this source where peers close their connections, or exclude those peers.
    type: dict
    suboptions:
      port:
        description:
          - The local serving port.
        type: int
        required: true
      exclude_peers:
        description:
          - Peer addresses or CIDR networks whose connections are not counted, for example the load balancer's health
            checker or the Prometheus server that scrapes the instance.
        type: list
        elements: str
        default: []
  timeout:
    description:
      - Deadline in seconds, counted from the first read. The last read happens at the deadline.
    type: float
    default: 300
  poll_interval:
    description:
      - Seconds between reads. The module notices the last request finishing within about this time. At least V(0.1).
    type: float
    default: 0.5
  quiet_period:
    description:
      - Seconds the in-flight figure must stay 0 before the instance counts as drained. Use it when a source lags
        (Ray Serve) or misses executing requests (Triton).
    type: float
    default: 0
  on_timeout:
    description:
      - What to do when the deadline passes with requests still in flight.
      - V(fail) fails the task with the figures seen.
      - V(proceed) returns RV(drained=false) with a warning, so that the rollout can go on (the remaining requests will be cut).
    type: str
    choices: [fail, proceed]
    default: fail
  max_samples:
    description:
      - At most this many samples are returned in RV(samples). The first and the latest are kept; the ones dropped in
        between are counted in RV(samples_dropped). At least V(2).
    type: int
    default: 50
requirements:
  - For O(connections), Linux with C(/proc) mounted.
  - For O(haproxy), access to the HAProxy runtime API (socket permissions, or a TCP C(stats socket) listener).
notes:
  - Take the instance out of its load balancer first; otherwise new requests keep arriving and the wait ends only by chance.
seealso:
  - module: modelops.shutdown.model_health_state
'''

EXAMPLES = r'''
- name: Wait for vLLM to finish its requests (the LB no longer sends it new ones)
  modelops.shutdown.model_drain:
    metrics:
      url: http://127.0.0.1:8000/metrics
      preset: vllm
    timeout: 600
  register: drain

- name: One model of a Triton server, cross-checked with HAProxy's view of the server
  modelops.shutdown.model_drain:
    metrics:
      url: https://triton-3.internal:8002/metrics
      preset: triton
      labels:
        model: densenet_onnx
      ca_path: /etc/pki/modelops/ca.pem
    haproxy:
      socket: /run/haproxy/admin.sock
      backend: be_triton
      server: triton-3
    quiet_period: 2
  delegate_to: "{{ groups['lb'][0] }}"

- name: Ray Serve deployment, whose metrics lag by up to ten seconds
  modelops.shutdown.model_drain:
    metrics:
      url: http://127.0.0.1:8080/metrics
      preset: ray_serve
      labels:
        application: llm
        deployment: LLMServer
    quiet_period: 12

- name: A server without useful metrics; its peers close connections after each request
  modelops.shutdown.model_drain:
    connections:
      port: 9000
      exclude_peers:
        - 10.0.0.5          # Prometheus
        - 10.0.1.0/28       # LB health checkers
    poll_interval: 0.2
    on_timeout: proceed

- name: Generic metric names, behind a bearer token
  modelops.shutdown.model_drain:
    metrics:
      url: https://10.1.2.3:8443/metrics
      preset: generic
      metrics:
        - name: my_server_requests_in_flight
          labels:
            route: /v1/predict
      token: "{{ vault_metrics_token }}"
'''

RETURN = r'''
changed:
  description: Always V(false); the module only reads.
  returned: always
  type: bool
  sample: false
drained:
  description:
    - Whether the in-flight figure reached 0 and stayed 0 for O(quiet_period) before the deadline.
    - In check mode, whether the one reading was 0.
  returned: always
  type: bool
  sample: true
in_flight_initial:
  description:
    - In-flight figure (maximum over sources) at the first read.
    - A float only when a V(generic) metric has fractional values.
    - V(null) when the first read failed.
  returned: always
  type: int
  sample: 7
in_flight_final:
  description:
    - In-flight figure (maximum over sources) at the last read.
    - A float only when a V(generic) metric has fractional values.
    - V(null) when the first read failed.
  returned: always
  type: int
  sample: 0
waited_seconds:
  description:
    - Seconds from the start of the first read to the end of the last one.
    - In check mode, how long the one read took.
  returned: always
  type: float
  sample: 12.514
started_at:
  description: Wall-clock time (seconds since the epoch) of the first read, to line up with server and load-balancer logs.
  returned: always
  type: float
  sample: 1764374400.125
finished_at:
  description: Wall-clock time (seconds since the epoch) when the module stopped waiting.
  returned: always
  type: float
  sample: 1764374412.639
polls:
  description: Number of reads of all sources.
  returned: always
  type: int
  sample: 25
samples:
  description:
    - The readings, oldest first, at most O(max_samples) of them (the first and the latest are always kept).
  returned: always
  type: list
  elements: dict
  sample: [{"t": 0.0, "in_flight": 7, "sources": {"metrics": 7, "haproxy": 6}}, {"t": 0.51, "in_flight": 0, "sources": {"metrics": 0, "haproxy": 0}}]
  contains:
    t:
      description: Seconds from the start of the first read to the end of this one.
      type: float
      sample: 0.51
    in_flight:
      description: Maximum over the sources.
      type: int
      sample: 0
    sources:
      description: The figure of each source, by source name (V(metrics), V(haproxy), V(connections)).
      type: dict
      sample: {"metrics": 0, "haproxy": 0}
samples_dropped:
  description: How many readings were dropped from RV(samples) to respect O(max_samples).
  returned: always
  type: int
  sample: 0
sources:
  description:
    - What each configured source read, by source name, with its figure and detail at the last read.
    - Never contains the token or header values.
  returned: always
  type: dict
  sample:
    metrics:
      url: http://127.0.0.1:8000/metrics
      preset: vllm
      metrics:
        - {"name": "vllm:num_requests_running", "labels": {}}
        - {"name": "vllm:num_requests_waiting", "labels": {}}
      header_names: []
      in_flight: 0
      detail: {"vllm:num_requests_running": 0, "vllm:num_requests_waiting": 0}
    haproxy:
      backend: be_vllm
      server: vllm-1
      socket: /run/haproxy/admin.sock
      host: null
      port: null
      in_flight: 0
      detail: {"scur": 0, "qcur": 0, "status": "MAINT"}
    connections:
      port: 8000
      exclude_peers: ["10.0.0.5"]
      in_flight: 0
      detail: {"established": 0, "excluded": 1}
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.modelops.shutdown.plugins.module_utils import _inflight
from ansible_collections.modelops.shutdown.plugins.module_utils._haproxy import runtime_api_spec
from ansible_collections.modelops.shutdown.plugins.module_utils._poll import poll_until


def argument_spec():
    return dict(
        metrics=dict(
            type='dict',
            options=dict(
                url=dict(type='str', required=True),
                preset=dict(type='str', default='generic', choices=_inflight.PRESET_CHOICES),
                metrics=dict(type='list', elements='dict', options=dict(
                    name=dict(type='str', required=True),
                    labels=dict(type='dict'),
                )),
                labels=dict(type='dict'),
                token=dict(type='str', no_log=True),
                headers=dict(type='dict'),
                validate_certs=dict(type='bool', default=True),
                ca_path=dict(type='path'),
                timeout=dict(type='float', default=5),
            ),
            required_if=[('preset', 'generic', ('metrics',))],
        ),
        haproxy=runtime_api_spec(server=True, timeout=False),
        connections=dict(
            type='dict',
            options=dict(
                port=dict(type='int', required=True),
                exclude_peers=dict(type='list', elements='str', default=[]),
            ),
        ),
        timeout=dict(type='float', default=300),
        poll_interval=dict(type='float', default=0.5),
        quiet_period=dict(type='float', default=0),
        on_timeout=dict(type='str', default='fail', choices=['fail', 'proceed']),
        max_samples=dict(type='int', default=50),
    )


def check_numbers(module):
    """Range checks the argument spec cannot express; fail with the option name and the allowed range."""
    params = module.params
    problems = []
    if params['poll_interval'] < 0.1:
        problems.append('poll_interval must be at least 0.1 seconds, got %s' % params['poll_interval'])
    if params['timeout'] < 0:
        problems.append('timeout must be 0 or more seconds, got %s' % params['timeout'])
    if params['quiet_period'] < 0:
        problems.append('quiet_period must be 0 or more seconds, got %s' % params['quiet_period'])
    if params['max_samples'] < 2:
        problems.append('max_samples must be at least 2, got %s' % params['max_samples'])
    if params['metrics'] and params['metrics']['timeout'] <= 0:
        problems.append('metrics.timeout must be more than 0 seconds, got %s' % params['metrics']['timeout'])
    if params['connections'] and not 1 <= params['connections']['port'] <= 65535:
        problems.append('connections.port must be between 1 and 65535, got %s' % params['connections']['port'])
    if params['haproxy'] and params['haproxy']['port'] is not None and not 1 <= params['haproxy']['port'] <= 65535:
        problems.append('haproxy.port must be between 1 and 65535, got %s' % params['haproxy']['port'])
    if problems:
        module.fail_json(msg='; '.join(problems))


def build_sources(params):
    """The configured sources, in a fixed order. Raises InFlightError on a bad source configuration."""
    sources = []
    metrics = params['metrics']
    if metrics:
        sources.append(_inflight.MetricsSource(
            metrics['url'], preset=metrics['preset'], metrics=metrics['metrics'], labels=metrics['labels'],
            token=metrics['token'], headers=metrics['headers'], validate_certs=metrics['validate_certs'],
            ca_path=metrics['ca_path'], timeout=metrics['timeout']))
    haproxy = params['haproxy']
    if haproxy:
        sources.append(_inflight.HAProxySource(
            haproxy['backend'], haproxy['server'], socket_path=haproxy['socket'], host=haproxy['host'], port=haproxy['port']))
    connections = params['connections']
    if connections:
        sources.append(_inflight.ConnectionsSource(connections['port'], exclude_peers=connections['exclude_peers']))
    return sources


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_one_of=[('metrics', 'haproxy', 'connections')],
        supports_check_mode=True,
    )
    check_numbers(module)
    params = module.params

    try:
        sources = build_sources(params)
    except _inflight.InFlightError as exc:
        module.fail_json(msg=to_text(exc))

    last = {}
    history = []
    started_at = round(time.time(), 3)

    def probe():
        in_flight, values, details = _inflight.read_all(sources)
        last['details'] = details
        last['values'] = values
        history.append(in_flight)
        return {'in_flight': in_flight, 'sources': values}

    def describe_sources():
        described = {}
        for source in sources:
            entry = source.describe()
            entry['in_flight'] = last.get('values', {}).get(source.name)
            entry['detail'] = last.get('details', {}).get(source.name)
            described[source.name] = entry
        return described

    try:
        if module.check_mode:
            start = time.monotonic()
            value = probe()
            took = round(time.monotonic() - start, 3)
            samples = [{'t': took, 'in_flight': value['in_flight'], 'sources': value['sources']}]
            module.exit_json(
                changed=False, drained=value['in_flight'] == 0, in_flight_initial=value['in_flight'],
                in_flight_final=value['in_flight'], waited_seconds=took, polls=1, samples=samples,
                samples_dropped=0, sources=describe_sources(), started_at=started_at, finished_at=round(time.time(), 3))
        result = poll_until(probe, lambda value: value['in_flight'] == 0, timeout=params['timeout'],
                            interval=params['poll_interval'], quiet_period=params['quiet_period'],
                            max_samples=params['max_samples'])
    except _inflight.InFlightError as exc:
        msg = to_text(exc)
        if history:
            msg = '%s (after %d successful reads; the last one counted %s in flight)' % (msg, len(history), history[-1])
        module.fail_json(msg=msg, drained=False, polls=len(history),
                         in_flight_initial=history[0] if history else None,
                         in_flight_final=history[-1] if history else None)

    samples = [{'t': s['t'], 'in_flight': s['value']['in_flight'], 'sources': s['value']['sources']} for s in result.samples]
    ret = dict(
        changed=False, drained=result.satisfied, in_flight_initial=history[0], in_flight_final=result.last_value['in_flight'],
        waited_seconds=result.waited_seconds, polls=result.polls, samples=samples, samples_dropped=result.samples_dropped,
        sources=describe_sources(), started_at=started_at, finished_at=round(time.time(), 3))
    if not result.satisfied:
        per_source = ', '.join('%s=%s' % (k, v) for k, v in sorted(result.last_value['sources'].items()))
        quiet = ' and stay 0 for %s s' % params['quiet_period'] if params['quiet_period'] else ''
        msg = ('%s request(s) still in flight (%s) after %s s: the instance did not drain%s within timeout=%s s. '
               'Check that it is out of its load balancer, or raise timeout.'
               % (ret['in_flight_final'], per_source, ret['waited_seconds'], quiet, params['timeout']))
        if params['on_timeout'] == 'fail':
            module.fail_json(msg=msg, **ret)
        module.warn(msg + ' Proceeding because on_timeout=proceed.')
    module.exit_json(**ret)


if __name__ == '__main__':
    main()
