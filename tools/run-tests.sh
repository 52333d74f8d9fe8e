#!/usr/bin/env bash
# Everything CI runs, in order of cost: lint, sanity, unit tests, molecule scenarios.
# Prints each step's wall time and stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

steps=(lint sanity units molecule)
total_start=$(date +%s)
for step in "${steps[@]}"; do
  echo "==== make $step"
  start=$(date +%s)
  make --no-print-directory "$step"
  echo "==== make $step passed in $(( $(date +%s) - start )) s"
done
echo "==== all checks passed in $(( $(date +%s) - total_start )) s"
