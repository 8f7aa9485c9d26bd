#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine of the project's kind, as root:
# system packages, npm dependencies, vmlinux.h, BPF objects, native addon,
# TypeScript. Safe to run again; each step skips what is already done.
#   PATRONUS_SKIP_APT=1  skip apt (packages known present)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Build and test needs; daemons the gateway services drive (tests skip with a
# reason where one is missing, but CI installs them all); prometheus for
# promtool, which checks /metrics.
APT_PACKAGES=(
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config cmake make g++
  nftables iproute2 ethtool iputils-ping iperf3 conntrack tcpdump procps util-linux kmod
  unbound dnsutils frr frr-pythontools keepalived strongswan strongswan-swanctl charon-systemd libcharon-extra-plugins libstrongswan-standard-plugins
  openvpn wireguard-tools wireguard-go kea-dhcp4-server kea-dhcp6-server radvd isc-dhcp-client isc-dhcp-common conntrackd
  dns-root-data ca-certificates openssl ldnsutils
  geoip-database libmaxmind-db-writer-perl
  pebble  # ACME test server (test/integration/acme.test.ts)
  xdp-tools
  prometheus
  chromium fonts-dejavu-core
  etcd-server etcd-client git  # fleet: the tests and bench run their own 3-member etcd cluster; GitOps drives the git CLI
  # commands the tests call that a minimal Debian lacks (no longer left to other packages' dependencies):
  # curl (acme: pebble's revocation status), python3 (port holders in test/lib/vpn.ts, frr-reload.py),
  # systemd (systemd-analyze checks the unit; nothing is started)
  curl python3 systemd
)

# apt: install what is missing; stop only the daemon units this run installed
source scripts/packages.sh
if [[ "${PATRONUS_SKIP_APT:-0}" != 1 ]]; then
  install_system_packages
fi

# bpffs: needed for pinned maps; mounted by systemd normally, not in every VM.
if ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
  log "mount bpffs at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund
fi

log "BPF objects (vmlinux.h from /sys/kernel/btf/vmlinux)"
make -s -C bpf
# the TypeScript side of the fast path's map layout, from the object's BTF (bpf2go-style)
node scripts/gen-bpf-contract.mjs bpf/build/xdp_filter.bpf.o src/fastpath/generated/filter.ts

log "native addon (cmake-js, Node-API 9, system libbpf)"
if [[ ! -f native/build/Release/patronus_bpf.node ]] || [[ -n "$(find native/src native/CMakeLists.txt -newer native/build/Release/patronus_bpf.node -print -quit)" ]]; then
  npx --no-install cmake-js compile --directory native --out native/build -- -DNAPI_VERSION=9 >/dev/null
fi

log "bench tools"
make -s -C bench/trafficgen

log "TypeScript"
# compiled files whose source is gone (a renamed or removed module, a test of an
# abandoned branch) would still run under node --test: drop them first
if [[ -d dist ]]; then
  while IFS= read -r -d '' js; do
    rel=${js#dist/}
    [[ -f ${rel%.js}.ts ]] || rm -f "$js" "$js.map"
  done < <(find dist -path dist/console -prune -o -name '*.js' -print0)
fi
npx --no-install tsc -p tsconfig.json

log "web console (src/console -> dist/console)"
bash scripts/build-console.sh

log "patronus command on PATH"
bash scripts/install-cli.sh
echo "setup done"
