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
  - A source given as V(null) is not given. With no source left to read the task fails; it never reports RV(drained)
    without having read a figure.
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
          - V(vllm) sums C(vllm:num_requests_running), C(vllm:num_requests_waiting) and, where the server exports it (vLLM V0),
            C(vllm:num_requests_swapped), since requests preempted to CPU memory are still in flight. vLLM V1 has no such
            gauge; its absence is not an error.
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
          - Whitespace around it (the newline a YAML block scalar or C(slurp | b64decode) leaves) is removed; a line break
            or other control character inside it is refused. It never appears in a result or message.
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
          - Seconds one scrape may take, B(all of it) (connection, headers and body), not each read. An endpoint that
            trickles its answer is cut off after this time. More than 0 and at most a week.
          - The body is read up to 32 MiB.
        type: float
        default: 5
  haproxy:
    description:
      - Count requests in flight as HAProxy sees them for one server, C(scur) (current sessions) plus C(qcur)
        (requests queued for the server), read through the HAProxy runtime API (C(show stat)).
      - Give either O(haproxy.socket) or O(haproxy.host) and O(haproxy.port).
      - Each read is one runtime API exchange of at most 5 seconds. An answer that is empty, cut off (without the empty line
        HAProxy ends every answer with) or not C(show stat) CSV of the expected shape fails the wait.
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
      - Deadline in seconds, counted from the first read, or from O(since) when given. The last read happens at the
        deadline; the first read happens even when the deadline has already passed.
      - O(timeout), O(poll_interval) and O(quiet_period) must be finite (not V(nan) or V(inf)) and at most a week.
    type: float
    default: 300
  since:
    description:
      - Wall-clock time, in seconds since the epoch (as Python's C(time.time()) gives it), at which the wait's clock
        started, for example the moment the load balancers stopped sending requests to the instance.
      - With it, the deadline is O(since) plus O(timeout), RV(started_at) is O(since), and RV(waited_seconds) and the
        times in RV(samples) count from O(since) instead of from the first read. So O(timeout) is the time the instance
        gets to finish its requests, however long the tasks between the mark and this one took.
      - A time more than 1 second ahead of the clock of the host that waits (clock skew) is taken as now, with a warning.
      - By default the clock starts at the first read.
    type: float
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

- name: Note when the load balancer stopped sending requests to the instance
  ansible.builtin.set_fact:
    lb_marked_at: "{{ now().timestamp() }}"

- name: Give the instance 120 seconds from that moment, not from the start of this task
  modelops.shutdown.model_drain:
    metrics:
      url: http://127.0.0.1:8000/metrics
      preset: vllm
    since: "{{ lb_marked_at }}"
    timeout: 120

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
    - Seconds from the start of the first read (or from O(since) when given) to the end of the last one.
    - In check mode, how long the one read took (or the time from O(since) to its end).
  returned: always
  type: float
  sample: 12.514
started_at:
  description:
    - Wall-clock time (seconds since the epoch) of the first read, to line up with server and load-balancer logs.
    - O(since) when given (now when O(since) was ahead of the clock).
  returned: always
  type: float
  sample: 1764374400.125
drained_at:
  description:
    - Wall-clock time (seconds since the epoch) of the read that first saw no request in flight, in the run of zero
      readings that held for O(quiet_period) and ended the wait. With O(quiet_period=0), the last read.
    - V(null) when the instance did not drain.
  returned: always
  type: float
  sample: 1764374412.138
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
      description: Seconds from the start of the first read (or from O(since) when given) to the end of this one.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.modelops.shutdown.plugins.module_utils._drain import MODULE_KWARGS, DrainWaiter, argument_spec
from ansible_collections.modelops.shutdown.plugins.module_utils._spec import module_argument_spec


def main():
    module = AnsibleModule(argument_spec=module_argument_spec(argument_spec()), supports_check_mode=True, **MODULE_KWARGS)
    # DrainWaiter.run() checks the parameters (check_params) first, so that a refusal carries every result key too.
    result, failure = DrainWaiter(module.params, module.check_mode, module.warn).run()
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
