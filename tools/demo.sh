#!/usr/bin/env bash
# `make demo`: bring up a local demo fleet, send constant load through HAProxy,
# and tear everything down again (also on failure or Ctrl-C).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
inventory=tests/fleet/demo/inventory.yml
lb_url=http://127.0.0.1:38090
out=${MODELOPS_DEMO_DIR:-$repo/.build/demo}
mkdir -p "$out"

teardown() {
  echo "==== tearing the demo fleet down"
  ansible-playbook -i "$inventory" molecule/_shared/destroy.yml >"$out/destroy.log" 2>&1 || echo "teardown failed, see $out/destroy.log"
}
trap teardown EXIT

echo "==== creating the demo fleet (1 HAProxy + 6 model hosts, systemd containers)"
ansible-playbook -i "$inventory" molecule/_shared/create.yml
echo "==== deploying model servers and HAProxy"
ansible-playbook -i "$inventory" molecule/_shared/fleet.yml

echo "==== constant load through HAProxy for 20 s ($lb_url)"
python3 tests/fleet/loadgen.py --url "$lb_url/v1/completions" --rate 5 --duration 20 --summary "$out/load-summary.json"
python3 - "$out/load-summary.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
print('load: sent=%(sent)s ok=%(ok)s failed=%(failed)s cut=%(cut)s' % summary)
sys.exit(0 if summary['failed'] == 0 else 1)
PY
