#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine of the project's kind, as root:
# system packages, npm dependencies, vmlinux.h, BPF objects, native addon,
# TypeScript. Safe to run again; each step skips what is already done.
#   PATRONUS_SKIP_APT=1  skip apt (packages known present)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Build and test needs (prometheus: for promtool, which checks /metrics); daemons the gateway services drive (tests skip with a
# reason where one is missing, but CI installs them all).
APT_PACKAGES=(
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config cmake make g++
  nftables iproute2 ethtool iputils-ping iperf3 conntrack tcpdump procps util-linux kmod
  unbound dnsutils frr frr-pythontools keepalived strongswan strongswan-swanctl charon-systemd libcharon-extra-plugins libstrongswan-standard-plugins
  openvpn wireguard-tools wireguard-go kea-dhcp4-server kea-dhcp6-server radvd isc-dhcp-client isc-dhcp-common
  dns-root-data ca-certificates openssl ldnsutils
  geoip-database libmaxmind-db-writer-perl
  xdp-tools
  prometheus
)

# Daemon units Debian may enable and start when it installs their package.
DAEMON_UNITS=(prometheus unbound frr keepalived openvpn strongswan-starter strongswan ipsec kea-dhcp4-server kea-dhcp6-server radvd)

installed_packages() { dpkg-query -W -f='${Package} ${Status}\n' 2>/dev/null | awk '$NF == "installed" { print $1 }' | sort; }

if [[ "${PATRONUS_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    before_install=$(mktemp)
    installed_packages >"$before_install"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Packages this run installed (with their dependencies): only their units may be stopped.
    mapfile -t new_packages < <(installed_packages | comm -13 "$before_install" -)
    rm -f "$before_install"
    # Debian starts some daemons on install; Patronus supervises its own
    # instances, so stop the packaged ones this run just installed. A unit
    # that was there before (the machine's own service) is left alone.
    if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
      for unit in "${DAEMON_UNITS[@]}"; do
        unit_file=$(systemctl show -P FragmentPath "$unit.service" 2>/dev/null || true)
        [[ -n "$unit_file" && -e "$unit_file" ]] || continue
        # dpkg may know the file under /lib or /usr/lib (merged /usr)
        owner=$(dpkg-query -S "$unit_file" 2>/dev/null || dpkg-query -S "${unit_file#/usr}" 2>/dev/null || true)
        owner=${owner%%:*}
        if [[ -n "$owner" ]] && printf '%s\n' "${new_packages[@]}" | grep -qx "$owner"; then
          echo "stopping and disabling $unit.service (just installed with $owner; Patronus runs its own instances)"
          systemctl disable --now "$unit.service" >/dev/null 2>&1 || echo "warning: could not disable $unit.service" >&2
        elif systemctl is-enabled "$unit.service" >/dev/null 2>&1; then
          echo "leaving $unit.service alone: it was installed before this run (package ${owner:-unknown}) and is enabled"
        fi
      done
    fi
  else
    log "system packages present"
  fi
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

log "native addon (cmake-js, Node-API 9, system libbpf)"
if [[ ! -f native/build/Release/patronus_bpf.node ]] || [[ -n "$(find native/src native/CMakeLists.txt -newer native/build/Release/patronus_bpf.node -print -quit)" ]]; then
  npx --no-install cmake-js compile --directory native --out native/build -- -DNAPI_VERSION=9 >/dev/null
fi

log "bench tools"
make -s -C bench/trafficgen

log "TypeScript"
npx --no-install tsc -p tsconfig.json

log "patronus command on PATH"
bash scripts/install-cli.sh
echo "setup done"
