#!/usr/bin/env bash
# Runs the whole test suite: set-up (idempotent), then node's test runner over
# every compiled *.test.js. Unit tests need nothing; BPF and integration tests
# need root (they create and remove their own network namespaces).
#   scripts/test.sh [unit|bpf|integration|FILTER...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# test/lib/exit_after_tests.ts ends a file's process when its tests have (in
# place of --test-force-exit, which loses a file's last results on Node 20)
export NODE_OPTIONS="--enable-source-maps --import=$PWD/dist/test/lib/exit_after_tests.js"
# every Host in a test must name a namespace: nothing may act on the host itself
export PATRONUS_REQUIRE_NETNS=1
if (($#)); then
  mapfile -t files < <(for f in "$@"; do find dist/test -name '*.test.js' -path "*$f*"; done | sort -u)
else
  mapfile -t files < <(find dist/test -name '*.test.js' | sort)
fi
((${#files[@]})) || { echo "no test files matched: $*" >&2; exit 1; }
# clean namespaces a crashed earlier run may have left (names pt-*)
node -e "import('./dist/test/lib/netns.js').then(m => m.sweepStaleNamespaces())"
# spec output, plus test/lib/running_reporter.ts: it names the tests still running
# when a file hits the 600 s file timeout and warns about tests running longer than
# 3 min. A file ends when its tests have, even if a leaked child, socket or timer
# would keep its process alive: see exit_after_tests above.
exec node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=./dist/test/lib/running_reporter.js --test-reporter-destination=stdout \
  --test-concurrency=2 --test-timeout=600000 "${files[@]}"
