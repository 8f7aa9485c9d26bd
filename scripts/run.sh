#!/usr/bin/env bash
# The README's run command: set up (idempotent), then run Patronus in the
# foreground with its embedded default configuration, managing a lab
# namespace pair so nothing on the host is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# two malloc arenas, as the systemd unit and OpenRC script set: the worker
# threads of each apply otherwise leave their own fragmented arenas behind
# (docs/bench-control.md, serve RSS)
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec node --enable-source-maps dist/src/cli/main.js serve --lab "$@"
