#!/usr/bin/env bash
# Builds patronus_VERSION-1_ARCH.deb from this checkout with dpkg-deb (no
# debhelper). The firewall that installs it needs no compiler: the payload
# carries the compiled JavaScript (dist/, the console in dist/console), the
# production node_modules (better-sqlite3's prebuilt binding included), the
# prebuilt addon native/build/Release/patronus_bpf.node and the BPF objects
# bpf/build/*.o (CO-RE: they relocate against the installing kernel's BTF).
#   scripts/package-deb.sh [--out DIR] [--no-prune] [--no-build] [--no-lintian]
#     --out DIR     where the .deb goes (default: dist/deb); its path is printed last
#     --no-prune    copy node_modules as it is instead of pruning a copy to the
#                   production dependencies (faster; the test uses it)
#     --no-build    do not run scripts/setup.sh first (dist/ etc. must exist)
#     --no-lintian  skip the lintian check
#     --fast-compress  gzip -1 instead of xz (the test uses it)
# Layout: /usr/lib/patronus (the tree the code expects: it finds its files
# relative to package.json), /usr/bin/patronus -> ../lib/patronus/dist/src/cli/main.js,
# conffile /etc/patronus/config.yaml, the systemd unit (enabled by postinst,
# not started), the OpenRC script /etc/init.d/patronus with /etc/conf.d/patronus
# (conffiles). Maintainer and Homepage come from package.json (author,
# homepage). See docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

out="$src/dist/deb" prune=1 build=1 lintian=1 compress=(-Zxz -z6)
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --no-prune) prune=0; shift ;;
    --no-build) build=0; shift ;;
    --no-lintian) lintian=0; shift ;;
    --fast-compress) compress=(-Zgzip -z1); shift ;;
    *) echo "package-deb: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "[package-deb] $*" >&2; }

if ((build)); then
  PATRONUS_SKIP_APT=${PATRONUS_SKIP_APT:-1} bash scripts/setup.sh >&2
fi
for f in dist/src/cli/main.js dist/console/index.html native/build/Release/patronus_bpf.node config/default.yaml package.json; do
  [[ -e "$f" ]] || { echo "package-deb: $f missing: build first (bash scripts/setup.sh)" >&2; exit 1; }
done
shopt -s nullglob
bpf_objects=(bpf/build/*.o)
shopt -u nullglob
((${#bpf_objects[@]})) || { echo "package-deb: no BPF objects in bpf/build: build first (bash scripts/setup.sh)" >&2; exit 1; }

name=patronus
upstream=$(node -p 'require("./package.json").version')
# project metadata in one place: package.json's author and homepage
maintainer=$(node -p 'const a = require("./package.json").author; typeof a === "string" ? a : a ? `${a.name} <${a.email}>` : ""')
homepage=$(node -p 'require("./package.json").homepage ?? ""')
[[ "$maintainer" =~ ^[^\<\>]+\ \<[^@\<\>]+@[^@\<\>]+\>$ ]] || { echo "package-deb: package.json author must be \"Name <email>\" (it is the Maintainer field), not \"$maintainer\"" >&2; exit 1; }
[[ "$homepage" =~ ^https:// ]] || { echo "package-deb: package.json homepage must be an https URL, not \"$homepage\"" >&2; exit 1; }
version="$upstream-1"
arch=$(dpkg --print-architecture)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/patronus-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
lib="$root/usr/lib/$name"
mkdir -p "$lib/native/build/Release" "$lib/bpf/build" "$lib/config" "$root/usr/bin" \
  "$root/etc/$name" "$root/etc/init.d" "$root/etc/conf.d" "$root/lib/systemd/system" "$root/usr/share/doc/$name" \
  "$root/usr/share/lintian/overrides" "$root/DEBIAN"

log "payload: dist, node_modules, addon, BPF objects, config"
# compiled JS without the tests; source maps are kept (the unit sets
# NODE_OPTIONS=--enable-source-maps for readable stacks)
# only what runs: the compiled control plane and the console (no tests, bench, test output or packages)
mkdir -p "$lib/dist"
cp -a dist/src dist/console "$lib/dist/"
cp package.json package-lock.json "$lib/"
cp -a node_modules "$work/node_modules"
if ((prune)); then
  # prune a copy: the checkout's node_modules (with the dev tools) stays as it is
  (cd "$work" && cp "$src/package.json" "$src/package-lock.json" . \
    && npm prune --omit=dev --ignore-scripts --no-audit --no-fund >&2)
fi
mv "$work/node_modules" "$lib/node_modules"
# build leftovers of native modules (sources, build trees) are not payload: a
# native module keeps only its compiled build/Release/*.node
while IFS= read -r -d '' gyp; do
  m=$(dirname "$gyp")
  rm -rf "$m/deps" "$m/src" "$m/binding.gyp"
  if [[ -d "$m/build" ]]; then
    find "$m/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
    [[ -d "$m/build/Release" ]] && find "$m/build/Release" -mindepth 1 ! -name '*.node' -exec rm -rf {} +
  fi
done < <(find "$lib/node_modules" -name binding.gyp -print0)
find "$lib/node_modules" -type f \( -name '*.c' -o -name '*.cc' -o -name '*.cpp' -o -name '*.h' -o -name '*.hpp' -o -name '*.o' -o -name '*.gyp' -o -name '*.gypi' \) -delete
rm -rf "$lib/node_modules/.bin" "$lib/node_modules/.package-lock.json"
# what modules publish besides their code: tests, examples, editor/VCS/lint
# configuration, TypeScript declarations, web pages of their docs
find "$lib/node_modules" -depth -type d \( -name test -o -name tests -o -name __tests__ -o -name example -o -name examples -o -name integration -o -name .github -o -name benchmarks -o -name bench \) -exec rm -rf {} +
find "$lib/node_modules" -type f \( -name '.eslintrc*' -o -name '.gitattributes' -o -name '.npmignore' -o -name '.editorconfig' -o -name '.prettierrc*' -o -name '.travis.yml' -o -name '.nycrc*' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.html' -o -name '*.md' ! -iname 'license*' \) -delete
cp native/build/Release/patronus_bpf.node "$lib/native/build/Release/"
cp "${bpf_objects[@]}" "$lib/bpf/build/"
cp config/default.yaml "$lib/config/"
cp config/default.yaml "$root/etc/$name/config.yaml"

ln -s "../lib/$name/dist/src/cli/main.js" "$root/usr/bin/$name"
# the unit and docs in the tree name /opt/patronus (a checkout); the package lives in /usr/lib/patronus
sed -e "s|/opt/patronus/docs/control-plane.md|$homepage/blob/main/docs/control-plane.md|" \
    -e "s|/opt/patronus|/usr/lib/$name|g" \
    -e "s|^# Assumes the repository.*|# Installed by the Debian package (scripts/package-deb.sh).|" \
    -e "/^#   cp dist-files/d" -e "/^#   systemctl enable --now/d" \
    -e "s|^\(ExecStart=.*/main.js serve\)$|\1 --config /etc/$name/config.yaml|" \
    dist-files/patronus.service >"$root/lib/systemd/system/$name.service"
# OpenRC (Debian's openrc, Alpine-style systems): the same script and conf.d,
# pointed at the installed tree and the conffile
sed -e "s|^\(: \"\${PATRONUS_HOME:=\)/opt/patronus}\"|\1/usr/lib/$name}\"|" \
    -e "s|^\(command_args=\".*main.js serve\) |\1 --config /etc/$name/config.yaml |" \
    -e "s|^# Assumes the repository.*|# Installed by the Debian package (scripts/package-deb.sh); enable: rc-update add $name boot|" \
    -e "/^# OpenRC service script for Patronus. Install:/,/^#   rc-update add/c\\# OpenRC service script for Patronus." \
    dist-files/patronus.openrc >"$root/etc/init.d/$name"
sed -e "s|^# where the repository (built) lives|# where the installed tree lives|" -e "s|^#PATRONUS_HOME=\"/opt/patronus\"|#PATRONUS_HOME=\"/usr/lib/$name\"|" \
    dist-files/patronus.confd >"$root/etc/conf.d/$name"

# permissions: dpkg-deb --root-owner-group makes everything root:root
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$lib/dist/src/cli/main.js" "$root/etc/init.d/$name"

cat >"$root/usr/share/doc/$name/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: patronus
Source: $homepage

Files: *
Copyright: 2025-2026 the Patronus authors
License: GPL-2.0-only

Files: usr/lib/patronus/node_modules/*
Copyright: Copyright the authors of each module (see its package.json and LICENSE file)
License: various-free
 The production npm dependencies (package-lock.json pins them), each under its
 own free license (MIT, ISC, BSD-2-Clause, BSD-3-Clause, Apache-2.0), whose text
 ships in the module's directory.

License: GPL-2.0-only
 On Debian systems, the complete text of the GNU General Public License
 version 2 can be found in "/usr/share/common-licenses/GPL-2".
EOF
date_rfc=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
cat >"$work/changelog" <<EOF
$name ($version) unstable; urgency=medium

  * Package built from the repository by scripts/package-deb.sh.

 -- $maintainer  $date_rfc
EOF
gzip -9n <"$work/changelog" >"$root/usr/share/doc/$name/changelog.Debian.gz"
chmod 0644 "$root/usr/share/doc/$name/changelog.Debian.gz"

# lintian: what a Node.js application with an embedded dependency tree cannot avoid
cat >"$root/usr/share/lintian/overrides/$name" <<'EOF'
# The production npm dependencies are shipped in the package (pinned by
# package-lock.json); most are not packaged in Debian at these versions.
patronus: embedded-javascript-library *
# Native bindings (the BPF addon, better-sqlite3) are Node modules loaded with
# dlopen by node, not shared libraries for the linker.
patronus: shared-library-lacks-prerequisites *
patronus: unstripped-binary-or-object *
patronus: hardening-no-fortify-functions *
# The BPF objects are eBPF ELF files loaded by the kernel, not host binaries.
patronus: binary-from-other-architecture *
patronus: arch-independent-package-contains-binary-or-object *
# Upstream metadata and READMEs inside node_modules.
patronus: package-contains-documentation-outside-usr-share-doc *
patronus: extra-license-file *
patronus: repeated-path-segment *
patronus: source-is-missing *
patronus: very-long-line-length-in-source-file *
patronus: executable-not-elf-or-script *
patronus: script-not-executable *
patronus: package-contains-npm-ignore-file *
patronus: font-in-non-font-package *
patronus: package-contains-empty-directory *
# The unit runs in early boot (before network-pre.target, like nftables.service)
# and is wanted by sysinit.target on purpose.
patronus: systemd-service-file-refers-to-unusual-wantedby-target *
# Built from the repository, not a Debian upload: no bugs to close.
patronus: initial-upload-closes-no-bugs *
# /etc/init.d/patronus is an OpenRC script (#!/sbin/openrc-run: depend(),
# supervise-daemon), not an LSB/sysvinit one; systemd uses patronus.service
# and sysvinit is not supported (postinst registers no rc.d links).
patronus: init.d-script-missing-lsb-section *
patronus: init.d-script-does-not-implement-required-option *
patronus: init.d-script-does-not-source-init-functions *
patronus: script-in-etc-init.d-not-registered-via-update-rc.d *
patronus: unusual-interpreter *
# Upstream has no manual page yet; `patronus --help` documents the commands.
patronus: no-manual-page *
EOF

cat >"$root/DEBIAN/conffiles" <<EOF
/etc/$name/config.yaml
/etc/conf.d/$name
/etc/init.d/$name
EOF

cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Enables patronus.service (not started: the firewall's configuration is the
# administrator's to apply first). deb-systemd-helper comes with
# init-system-helpers; without it (no systemd) there is nothing to enable.
set -e
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper unmask 'patronus.service' >/dev/null || true
		if deb-systemd-helper --quiet was-enabled 'patronus.service'; then
			deb-systemd-helper enable 'patronus.service' >/dev/null || true
		else
			deb-systemd-helper update-state 'patronus.service' >/dev/null || true
		fi
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# Stops the control plane on removal. Kernel state and the daemons it started
# stay (KillMode=process), as after any stop of the unit.
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	deb-systemd-invoke stop 'patronus.service' >/dev/null || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "remove" ] && command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper mask 'patronus.service' >/dev/null || true
fi
if [ "$1" = "purge" ] && command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper purge 'patronus.service' >/dev/null || true
	deb-systemd-helper unmask 'patronus.service' >/dev/null || true
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/conffiles"

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: nodejs (>= 20.17), nftables, iproute2, libbpf1, libelf1, zlib1g, libc6, libstdc++6, libgcc-s1, init-system-helpers (>= 1.54~)
Recommends: ethtool, conntrack, procps, kmod, ca-certificates, openssl, unbound, dns-root-data, frr, keepalived, strongswan-swanctl, charon-systemd, openvpn, wireguard-tools, kea-dhcp4-server, kea-dhcp6-server, radvd, conntrackd
Suggests: geoip-database, xdp-tools, prometheus, etcd-client, git
Section: net
Priority: optional
Homepage: $homepage
Description: firewall and edge data-plane manager (XDP/tc eBPF, nftables)
 Patronus manages a Linux firewall and gateway from one declarative
 configuration: an XDP/tc eBPF fast path, an nftables slow path, routing,
 DNS, DHCP, VPNs and high availability through the Debian daemons it drives.
 .
 The package carries the prebuilt eBPF objects (CO-RE) and native addon, so
 the firewall needs no compiler.
EOF

deb="$out/${name}_${version}_${arch}.deb"
log "dpkg-deb --build $deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >&2
if ((lintian)) && command -v lintian >/dev/null; then
  log "lintian"
  lintian --fail-on error,warning "$deb" >&2
fi
echo "$deb"
