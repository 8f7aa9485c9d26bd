#!/usr/bin/env bash
# The README's run command: set up (idempotent), then run Patronus in the
# foreground with its embedded default configuration, managing a lab
# namespace pair so nothing on the host is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --enable-source-maps dist/src/cli/main.js serve --lab "$@"
