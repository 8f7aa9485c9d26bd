/**
 * scripts/packages.sh (the apt part of scripts/setup.sh) against fake
 * dpkg-query, apt-get and systemctl: only the daemon units whose package this
 * run installed are stopped and disabled; a service that was installed and
 * enabled before is left alone and reported.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const SCRIPT = fileURLToPath(new URL('../../../scripts/packages.sh', import.meta.url));

describe('setup: system packages and packaged daemon units', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-setup-'));
    const bin = join(dir, 'bin');
    const units = join(dir, 'units');
    const fake = (name: string, body: string) => {
      writeFileSync(join(bin, name), `#!/usr/bin/env bash\nD=${JSON.stringify(dir)}\n${body}\n`);
      chmodSync(join(bin, name), 0o755);
    };
    mkdirSync(bin);
    mkdirSync(units);
    // the machine: unbound installed and enabled by its owner; keepalived not installed
    writeFileSync(join(dir, 'installed'), 'unbound\nlibc6\n');
    for (const u of ['unbound', 'keepalived', 'strongswan-starter']) writeFileSync(join(units, `${u}.service`), '');
    fake(
      'dpkg-query',
      `if [[ "$1" == -S ]]; then u=$(basename "$2" .service); p=$u; grep -qx "$p" "$D/installed" || exit 1; echo "$p: $2"; exit 0; fi
fmt="$2"; pkg="$3"
if [[ -n "$pkg" ]]; then grep -qx "$pkg" "$D/installed" && echo "install ok installed" || exit 1; exit 0; fi
while read -r p; do echo "$p install ok installed"; done < "$D/installed"`,
    );
    // installing strongswan pulls in strongswan-starter as a dependency
    fake(
      'apt-get',
      `[[ "$1" == update ]] && exit 0
for a in "$@"; do case "$a" in -*|install) ;; *) echo "$a" >> "$D/installed"; [[ "$a" == strongswan ]] && echo strongswan-starter >> "$D/installed";; esac; done; exit 0`,
    );
    fake(
      'systemctl',
      `case "$1" in
  is-system-running) exit 0;;
  show) u=$(basename "$4" .service); f="$D/units/$u.service"; [[ -e "$f" ]] && echo "$f"; exit 0;;
  is-enabled) u=$(basename "$2" .service); [[ "$u" == unbound || "$u" == keepalived || "$u" == strongswan-starter ]]; exit;;
  disable) echo "$*" >> "$D/disabled"; exit 0;;
esac; exit 0`,
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('stops only units this run installed and reports pre-existing enabled ones', async () => {
    const r = await execa('bash', ['-c', `set -euo pipefail; log() { echo "== $*"; }; APT_PACKAGES=(unbound keepalived strongswan); source "$1"; install_system_packages`, 'bash', SCRIPT], {
      env: { PATH: `${join(dir, 'bin')}:${process.env.PATH}` },
      reject: false,
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /apt-get install keepalived strongswan/);
    const disabled = existsSync(join(dir, 'disabled')) ? readFileSync(join(dir, 'disabled'), 'utf8').trim().split('\n').sort() : [];
    assert.deepEqual(disabled, ['disable --now keepalived.service', 'disable --now strongswan-starter.service']);
    assert.match(r.stdout, /leaving unbound\.service alone: it was installed before this run \(package unbound\) and is enabled/);
  });

  it('does nothing when every package is present', async () => {
    rmSync(join(dir, 'disabled'), { force: true });
    const r = await execa('bash', ['-c', `set -euo pipefail; log() { echo "== $*"; }; APT_PACKAGES=(unbound keepalived); source "$1"; install_system_packages`, 'bash', SCRIPT], {
      env: { PATH: `${join(dir, 'bin')}:${process.env.PATH}` },
      reject: false,
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /system packages present/);
    assert.equal(existsSync(join(dir, 'disabled')), false);
  });
});

