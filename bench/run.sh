#!/usr/bin/env bash
# Runs the data-plane benchmark (XDP fast path vs nftables, side by side):
# set-up (idempotent), then the harness. Root needed; everything happens in
# fresh network namespaces. Results: bench/results/<timestamp>/.
#   bash bench/run.sh --short     # a few minutes
#   bash bench/run.sh             # the full curve (tens of minutes)
#   extra options: see bench/harness/main.ts (--counts, --mixes, --families, --reps, --paths, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --enable-source-maps dist/bench/harness/main.js "$@"
