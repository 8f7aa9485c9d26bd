#!/usr/bin/env bash
# Sourced by scripts/setup.sh (and its test, test/unit/setup_packages.test.ts):
# installs the APT_PACKAGES that are missing, then stops and disables the
# packaged daemon units that this same run installed (Debian starts some on
# install; Patronus runs its own instances). A unit whose package was already
# installed is the machine's own service: it is left alone and reported.
# Needs: APT_PACKAGES (array) and log().

# Daemon units Debian may enable and start when it installs their package.
DAEMON_UNITS=(prometheus etcd unbound frr keepalived openvpn strongswan-starter strongswan ipsec kea-dhcp4-server kea-dhcp6-server radvd conntrackd)

installed_packages() { dpkg-query -W -f='${Package} ${Status}\n' 2>/dev/null | awk '$NF == "installed" { print $1 }' | sort; }

install_system_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "system packages present"
    return 0
  fi
  local before_install
  before_install=$(mktemp)
  installed_packages >"$before_install"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Packages this run installed (with their dependencies): only their units may be stopped.
  local new_packages=()
  mapfile -t new_packages < <(installed_packages | comm -13 "$before_install" -)
  rm -f "$before_install"
  command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1 || return 0
  local unit unit_file owner
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
}
