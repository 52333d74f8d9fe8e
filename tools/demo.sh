#!/usr/bin/env bash
# `make demo`: bring up a local demo fleet (6 model hosts behind HAProxy, systemd containers),
# send constant load through HAProxy, retire 4 of the 6 hosts with playbooks/shutdown.yml in
# batches [1, 3], then print the rollout report and the load summary and tear everything down
# (also on failure or Ctrl-C).
#
# Exit status: 0 when the rollout succeeded and every request of the load completed;
# 1 when the rollout failed or any request failed or was cut; 130/143 when interrupted.
#
# Environment: MODELOPS_DEMO_DIR   logs, load summary, reports and journal [<repo>/.build/demo]
#              MODELOPS_DEMO_KEEP  1: leave the fleet up at the end (remove it with
#                                  ansible-playbook -i tests/fleet/demo/inventory.yml molecule/_shared/destroy.yml)
#              MODELOPS_DEMO_RATE  requests per second through the LB [5]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# `make demo` exports these; set them too when the script is run by hand.
export PATH="$repo/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$repo/.build/collections}
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0

inventory=tests/fleet/demo/inventory.yml
lb_url=http://127.0.0.1:28090
rate=${MODELOPS_DEMO_RATE:-5}
out=${MODELOPS_DEMO_DIR:-$repo/.build/demo}
logs=$out/logs
reports=$out/reports
load_dir=$out/load
mkdir -p "$logs" "$reports" "$load_dir"
# The demo's runs keep their journal with the demo, never in this machine's ~/.ansible.
export MODELOPS_SHUTDOWN_JOURNAL_DIR=$out/journal

begin=$SECONDS
load_pid=""
rollout_pid=""
rollout_rc=""
step=0
steps=6

elapsed() { printf '%3d s' $((SECONDS - begin)); }
header() { step=$((step + 1)); printf '\n==== [%d/%d] %s\n' "$step" "$steps" "$*"; }
note() { printf '     %s\n' "$*"; }
show_tail() {  # the end of a log, indented, after a failure
  printf '     ---- last 40 lines of %s\n' "$1"
  tail -n 40 "$1" | sed 's/^/     | /'
  printf '     ----\n'
}

# Run one playbook with its output in $logs/<name>.log; on failure show the tail and stop.
play() {
  local name=$1; shift
  if ! ansible-playbook -i "$inventory" "$@" >"$logs/$name.log" 2>&1; then
    note "FAILED ($(elapsed)), full log: $logs/$name.log"
    show_tail "$logs/$name.log"
    exit 1
  fi
  note "done ($(elapsed)), log: $logs/$name.log"
}

stop_load() {
  [ -n "$load_pid" ] || return 0
  : >"$load_dir/stop"
  # The generator stops sending at once and waits for its outstanding requests (service time 3 s).
  for _ in $(seq 1 150); do
    kill -0 "$load_pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$load_pid" 2>/dev/null; then
    kill "$load_pid" 2>/dev/null || true
  fi
  wait "$load_pid" 2>/dev/null || true
  load_pid=""
}

stop_rollout() {  # only after Ctrl-C or a signal: the rollout runs in its own process group
  [ -n "$rollout_pid" ] && kill -0 "$rollout_pid" 2>/dev/null || return 0
  note "stopping the rollout (pid $rollout_pid)"
  kill -TERM -- "-$rollout_pid" 2>/dev/null || kill -TERM "$rollout_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$rollout_pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$rollout_pid" 2>/dev/null || true
  wait "$rollout_pid" 2>/dev/null || true
}

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  stop_rollout
  stop_load
  if [ "${MODELOPS_DEMO_KEEP:-0}" = 1 ]; then
    printf '\n==== leaving the demo fleet up (MODELOPS_DEMO_KEEP=1)\n'
  else
    printf '\n==== tearing the demo fleet down\n'
    if ansible-playbook -i "$inventory" molecule/_shared/destroy.yml >"$logs/destroy.log" 2>&1; then
      note "removed demo-lb, demo-m1..demo-m6 and network modelops-demo"
    else
      note "teardown failed, see $logs/destroy.log"
    fi
  fi
  local verdict="FAILED (exit $rc)"
  [ "$rc" -eq 0 ] && verdict=passed
  [ "$rc" -ge 130 ] && verdict="interrupted (exit $rc)"
  printf '\n==== demo %s after %d s\n' "$verdict" $((SECONDS - begin))
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ ! -e "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/modelops/shutdown" ]; then
  echo "demo: the collection is not linked under $ANSIBLE_COLLECTIONS_PATH; run 'make demo' (or 'make link')." >&2
  exit 1
fi

header "creating the demo fleet: demo-lb (HAProxy) + demo-m1..demo-m6 (systemd containers)"
# A fleet left over by an interrupted run would start in an unknown state: remove it first.
ansible-playbook -i "$inventory" molecule/_shared/destroy.yml >"$logs/destroy-before.log" 2>&1 || true
if (exec 3<>/dev/tcp/127.0.0.1/28090) 2>/dev/null; then
  echo "demo: 127.0.0.1:28090 is already in use by something else; free it and re-run." >&2
  exit 1
fi
play create molecule/_shared/create.yml

header "deploying the reference model servers and HAProxy ($lb_url)"
play fleet molecule/_shared/fleet.yml

header "starting constant load through HAProxy: $rate requests/s, 3 s service time"
rm -f "$load_dir/stop" "$load_dir/summary.json" "$load_dir/records.jsonl"
python3 tests/fleet/loadgen.py --url "$lb_url/v1/completions" --rate "$rate" \
  --stop-file "$load_dir/stop" --summary "$load_dir/summary.json" --records "$load_dir/records.jsonl" \
  >"$logs/load.log" 2>&1 &
load_pid=$!
sleep 5  # let the load reach every server before anything changes
kill -0 "$load_pid" 2>/dev/null || { note "the load generator exited early"; show_tail "$logs/load.log"; exit 1; }
note "load generator running (pid $load_pid)"

header "retiring demo-m1..demo-m4 with playbooks/shutdown.yml in batches [1, 3] under load"
note "ansible-playbook playbooks/shutdown.yml -i $inventory -e shutdown_targets=retire -e '{\"shutdown_serial\": [1, 3]}'"
marker=$out/.rollout-start
: >"$marker"
log=$logs/shutdown.log
rollout_start=$SECONDS
setsid ansible-playbook playbooks/shutdown.yml -i "$inventory" \
  -e shutdown_targets=retire -e '{"shutdown_serial": [1, 3]}' -e "report_dir=$reports" >"$log" 2>&1 &
rollout_pid=$!
# Progress: one line when a batch starts, read from the log as it is written.
batches_seen=0
while kill -0 "$rollout_pid" 2>/dev/null; do
  sleep 1
  n=$(grep -c 'rollout : Number the batch\]' "$log" 2>/dev/null || true)
  while [ "${n:-0}" -gt "$batches_seen" ]; do
    batches_seen=$((batches_seen + 1))
    note "[$(printf '%3d s' $((SECONDS - rollout_start)))] batch $batches_seen started"
  done
done
rollout_rc=0
wait "$rollout_pid" || rollout_rc=$?
rollout_pid=""
rollout_seconds=$((SECONDS - rollout_start))
if [ "$rollout_rc" -eq 0 ]; then
  note "rollout succeeded in $rollout_seconds s, log: $log"
else
  note "rollout FAILED (exit $rollout_rc) after $rollout_seconds s, log: $log"
  show_tail "$log"
fi
sed -n '/^PLAY RECAP/,$p' "$log" | sed '/^$/d; s/^/     /'

# Keep the load on the remaining hosts a little longer, then stop it.
sleep 3
stop_load

header "rollout report"
report_md=$(find "$reports" -maxdepth 1 -name 'shutdown-*.md' -newer "$marker" -print 2>/dev/null | sort | tail -n 1)
if [ -n "$report_md" ]; then
  report_json=${report_md%.md}.json
  report_html=${report_md%.md}.html
  # The load stopped only now: draw it under the run's timeline (the rollout wrote its page without it).
  if ! python3 tools/report_html.py "$report_json" --load "$load_dir/records.jsonl" -o "$report_html" \
      >"$logs/report_html.log" 2>&1; then
    note "could not add the load to the HTML report, see $logs/report_html.log"
  fi
  note "$report_md (and $report_json)"
  note "HTML report (timeline and load): $report_html"
  echo
  cat "$report_md"
else
  note "no report was written to $reports"
fi

header "load summary ($lb_url, during the whole rollout)"
load_ok=0
python3 - "$load_dir/summary.json" <<'PY' || load_ok=$?
import json, sys
try:
    with open(sys.argv[1], encoding='utf-8') as handle:
        s = json.load(handle)
except (OSError, ValueError) as exc:
    print('     no load summary: %s' % exc)
    sys.exit(1)
print('     sent=%(sent)s ok=%(ok)s failed=%(failed)s cut=%(cut)s '
      'connection_errors=%(connection_errors)s http_errors=%(http_errors)s unfinished=%(unfinished)s' % s)
print('     latency of ok requests: p50=%(p50)s s p90=%(p90)s s p99=%(p99)s s max=%(max)s s' % s)
if s['error_kinds']:
    print('     error kinds: %s' % json.dumps(s['error_kinds'], sort_keys=True))
ok = s['failed'] == 0 and s['cut'] == 0 and s['sent'] > 0
print('     %s' % ('no request lost' if ok else 'REQUESTS WERE LOST'))
sys.exit(0 if ok else 1)
PY

if [ "$rollout_rc" -ne 0 ] || [ "$load_ok" -ne 0 ]; then
  exit 1
fi
