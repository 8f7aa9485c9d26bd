#!/usr/bin/env bash
# Puts `patronus` on PATH: a symlink $PATRONUS_BIN_DIR/patronus (default
# /usr/local/bin) to this checkout's dist/src/cli/main.js, made executable
# (it starts with `#!/usr/bin/env node`). Run by scripts/setup.sh after tsc.
# A link that points into another checkout that still exists is left alone
# (several checkouts on one machine: the first one set up owns the command).
set -euo pipefail
cd "$(dirname "$0")/.."
main="$PWD/dist/src/cli/main.js"
bin_dir="${PATRONUS_BIN_DIR:-/usr/local/bin}"
link="$bin_dir/patronus"

[[ -f "$main" ]] || { echo "install-cli: $main missing: build first (npx tsc -p tsconfig.json)" >&2; exit 1; }
head -c 20 "$main" | grep -q '^#!/usr/bin/env node' || { echo "install-cli: $main does not start with #!/usr/bin/env node" >&2; exit 1; }
chmod 0755 "$main"

if [[ -L "$link" ]]; then
  current=$(readlink "$link")
  if [[ "$current" == "$main" ]]; then
    echo "patronus on PATH: $link -> $main"
    exit 0
  fi
  if [[ -e "$current" ]]; then
    echo "leaving $link alone: it points to another checkout ($current); remove it to use this one" >&2
    exit 0
  fi
elif [[ -e "$link" ]]; then
  echo "leaving $link alone: it is not a symlink (installed by a package?)" >&2
  exit 0
fi
mkdir -p "$bin_dir"
ln -sfn "$main" "$link"
echo "patronus on PATH: $link -> $main"
