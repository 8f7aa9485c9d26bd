#!/usr/bin/env bash
# The web console (src/console -> dist/console), run by scripts/setup.sh after tsc:
# API types from the server's OpenAPI document (openapi-typescript), a type check
# of the console, then the Vite build (prints the first load's compressed JS).
set -euo pipefail
cd "$(dirname "$0")/.."
# nothing changed since the last build: skip (setup.sh runs before every test run)
if [[ -f dist/console/index.html ]] && [[ -z "$(find src/console src/api src/config scripts/build-console.sh scripts/console-openapi.ts package-lock.json -newer dist/console/index.html -not -path 'src/console/generated/*' -print -quit)" ]]; then
  echo "console up to date"
  exit 0
fi
mkdir -p src/console/generated
node dist/scripts/console-openapi.js > dist/console-openapi.json
npx --no-install openapi-typescript dist/console-openapi.json -o src/console/generated/api.d.ts --silent
npx --no-install tsc -p src/console/tsconfig.json
npx --no-install vite build --config src/console/vite.config.ts
