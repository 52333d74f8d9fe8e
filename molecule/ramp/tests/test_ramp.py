"""Weight ramp on two load balancers under load, and the drain-time check, on real systemd and HAProxy."""

from __future__ import annotations

import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', '_shared'))
import faultcheck  # noqa: E402  pylint: disable=wrong-import-position
import fleetcheck  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ['ansible://rp-lb1']
LBS = ('rp-lb1', 'rp-lb2')


def runtime(host, lb, command):
    lb_host = host if lb == 'rp-lb1' else fleetcheck.other_host(host, lb)
    return lb_host.check_output("echo '%s' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock" % command).strip()


def weight(host, lb, server='rp-m1'):
    return runtime(host, lb, 'get weight models/%s' % server)


def admin_state(host, lb, server='rp-m1'):
    """srv_admin_state of "show servers state" (0 ready, 8 drain, 1 maintenance, ...)."""
    lines = runtime(host, lb, 'show servers state models').splitlines()
    header = lines[1].lstrip('# ').split()
    rows = [dict(zip(header, line.split())) for line in lines[2:] if line.strip()]
    [row] = [r for r in rows if r['srv_name'] == server]
    return int(row['srv_admin_state'])


def flat(text):
    """The log with its line breaks and indentation collapsed (the callback wraps long lines)."""
    return ' '.join(text.split())


# --- 1. the drain-time check --------------------------------------------------------------------------------------

def test_drain_check_reports_a_stop_timeout_shorter_than_the_servers_drain_with_the_fix():
    log = flat(faultcheck.run_log('drain_check'))
    assert faultcheck.run_rc('drain_check') != 0, 'drain_check_fail=true fails the hosts with a finding'
    # rp-m2: TimeoutStopSec=5 (its drop-in) against DRAIN_TIMEOUT=30 plus the 5 s margin.
    assert re.search(r'model-server@llama\.service \(reference\): TimeoutStopSec=5 s is shorter than the server.s own '
                     r'shutdown window 30 s \(DRAIN_TIMEOUT', log), log
    assert ('raise TimeoutStopSec to 35 s: write /etc/systemd/system/model-server@llama.service.d/zz-drain-timing.conf'
            in log)
    # It is what failed rp-m2: the task's message is the finding.
    assert re.search(r'fatal: \[rp-m2\]: FAILED! =>((?!fatal: \[).)*kind"?: "?sigkill_before_drain', log), log


def test_drain_check_reports_a_server_gone_before_the_load_balancer_notices_with_the_fix():
    log = flat(faultcheck.run_log('drain_check'))
    # rp-m3: DRAIN_TIMEOUT=2 against "inter 3s fall 3" on its server line: 3 + 2 x 3 = 9 s, on both load balancers.
    for lb in LBS:
        assert re.search(r'the server.s own shutdown ends after at most 2 s \(DRAIN_TIMEOUT[^)]*\), but %s needs up to 9 s '
                         r'to mark models/rp-m3 DOWN \(inter 3 s, fall 3, fastinter 3 s\)' % lb, log), log
    assert 'raise the server\'s window to at least 9 s (DRAIN_TIMEOUT=9 in the instance\'s environment file)' in log
    assert '"inter 666ms fastinter 666ms fall 3"' in log
    assert 'fatal: [rp-m3]' in log


def test_drain_check_passes_a_host_whose_timings_fit():
    log = flat(faultcheck.run_log('drain_check'))
    assert 'fatal: [rp-m1]' not in log
    assert re.search(r'ok: \[rp-m1\] => .{0,20}model-server@llama\.service: TimeoutStopSec=45 window=30 '
                     r'\(reference\) detection=1 -> ok', log), log


# --- 2. a static balancing algorithm ------------------------------------------------------------------------------

def test_a_ramp_onto_a_static_backend_is_refused_in_preflight_before_anything_changes():
    log = flat(faultcheck.run_log('static'))
    assert faultcheck.run_rc('static') != 0
    assert 'weight ramp refused, nothing was changed' in log
    assert 'algorithm static-rr (show stat) is static' in log and 'only 0 or 100 %' in log
    # Refused by the pre-flight read: no batch was marked, and its journal holds no change.
    assert 'Check the budget and mark the batch' not in log
    runs = [events for _run, events in faultcheck.journals()
            if faultcheck.events(events, 'lb_read', lb='rp-lb2') and not faultcheck.events(events, 'lb_intent')]
    assert runs, 'the refused run journals its reads and no intent'


# --- 3. an aborted ramp -------------------------------------------------------------------------------------------

def test_a_ramp_aborted_by_the_budget_puts_the_weights_back_and_halts():
    log = flat(faultcheck.run_log('aborted'))
    assert faultcheck.run_rc('aborted') != 0
    fault = (faultcheck.RESULTS / 'aborted.fault.log').read_text()
    assert "models/rp-m2 went to maintenance once rp-m1's weight was 67 of 100" in fault, fault
    assert 'rp-lb1: the weight ramp stopped at step 2 of 3: the disruption budget no longer holds' in log \
        or 'rp-lb1: the weight ramp stopped at step 3 of 3: the disruption budget no longer holds' in log, log
    assert 'Weights put back: rp-m1 100; nothing was drained.' in log


def test_after_the_aborted_ramp_rp_m1_was_ready_at_its_weight_on_both_load_balancers():
    for lb in LBS:
        read = json.loads((faultcheck.RESULTS / ('aborted.%s.json' % lb)).read_text())
        [server] = read['servers']
        assert server['previous_state'] == 'ready', read
        assert [(s['previous_weight'], s['initial_weight']) for s in read['weight_ramp']['servers']] == [(100, 100)]


# --- 4. the ramped rollout ----------------------------------------------------------------------------------------

def test_the_ramped_rollout_stopped_rp_m1_after_ramping_it_down_on_both_load_balancers():
    assert faultcheck.run_rc('shutdown') == 0, faultcheck.run_log('shutdown')[-3000:]
    record = faultcheck.host_records()['rp-m1']
    assert record['status'] == 'done', record
    ramps = dict((lb['lb'], lb['weight_ramp']) for lb in record['load_balancers'])
    assert sorted(ramps) == list(LBS)
    for lb in LBS:
        # 100 x 3/4, 2/4, 1/4, each read back, then the mark; the weight put back once it was drained.
        assert ramps[lb] == {'previous_weight': 100, 'weights': [75, 50, 25], 'aborted': None, 'weight_back': 100}, ramps
    marked = dict((lb['lb'], lb['marked_at']) for lb in record['load_balancers'])
    # One load balancer after the other, each ramped over 8 s.
    assert marked['rp-lb2'] - marked['rp-lb1'] >= 8.0


def test_rp_m1_is_drained_with_its_weight_back_and_the_others_serve(host):
    for lb in LBS:
        assert weight(host, lb) == '100 (initial 100)'
        lb_host = host if lb == 'rp-lb1' else fleetcheck.other_host(host, lb)
        servers = fleetcheck.haproxy_servers(lb_host)
        # Out of rotation (drain 8, or maintenance), and DOWN now that it is stopped.
        assert admin_state(host, lb) & (8 | 1), servers
        assert servers['rp-m2'] == 'UP' and servers['rp-m3'] == 'UP', servers
    assert not fleetcheck.other_host(host, 'rp-m1').service('model-server@llama.service').is_running


def test_no_request_failed_or_was_cut_through_either_load_balancer():
    summary = faultcheck.load_summary()
    assert summary['urls'] == ['http://127.0.0.1:28097/v1/completions', 'http://127.0.0.1:28098/v1/completions']
    assert summary['sent'] > 0 and summary['failed'] == 0 and summary['cut'] == 0, summary


# --- what AWX reads: set_stats and the progress line --------------------------------------------------------------

def test_the_run_publishes_its_report_through_set_stats_in_the_playbook_stats():
    output = json.loads(faultcheck.run_log('shutdown'))
    published = output['global_custom_stats']['modelops_shutdown_report']
    report = faultcheck.report()
    assert published['summary'] == '1 host(s): 1 done; not halted'
    assert published['halted'] is False and published['totals'] == report['totals']
    assert published['paths']['json'].endswith('.json') and json.loads(
        open(published['paths']['json'], encoding='utf-8').read()) == report
    assert set(published['paths']) == {'json', 'md', 'html'}


def test_each_batch_prints_one_progress_line():
    output = json.loads(faultcheck.run_log('shutdown'))
    lines = [result['msg'] for play in output['plays'] for task in play['tasks']
             if task['task']['name'].endswith('Report the batch') for result in task['hosts'].values()]
    assert len(lines) == 1, lines
    assert re.match(r'batch 1 \(hosts 1-1 of 1: rp-m1\): marked in \d+\.\d\d s, drained in [0-9.]+ s, 1 stopped in '
                    r'[0-9.]+ s, 0 failed$', lines[0]), lines
