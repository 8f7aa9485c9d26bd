/**
 * Every example under examples/vpn compiles, and what the WireGuard,
 * OpenVPN and IPsec renderers make of it passes each daemon's own checker
 * (wg's parser, openvpn itself and strongSwan itself in throwaway
 * namespaces), run against a lab namespace.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { Host } from '../../src/system/host.js';
import { loadConfigFile } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import type { Subsystem } from '../../src/apply/subsystem.js';
import { wireguardSubsystem } from '../../src/services/wireguard/subsystem.js';
import { openvpnSubsystem } from '../../src/services/openvpn/subsystem.js';
import { ipsecSubsystem } from '../../src/services/ipsec/subsystem.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dir = path.join(root, 'examples', 'vpn');
const files = (() => {
  try {
    return readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
  } catch {
    return [];
  }
})();
const checkers: { sub: Subsystem<any>; needs: string }[] = [
  { sub: wireguardSubsystem, needs: 'wg' },
  { sub: openvpnSubsystem, needs: 'openvpn' },
  { sub: ipsecSubsystem, needs: 'charon-systemd' },
];

describe('examples/vpn pass the daemons\' own checkers', { timeout: 300_000, skip: missing('netns', { cmd: 'unshare' }) }, () => {
  const lab = new Lab();
  let state: string;
  let host: Host;
  before(async () => {
    state = mkdtempSync(path.join(os.tmpdir(), 'pt-examples-vpn-'));
    host = new Host({ netns: (await lab.ns('vx')).name, stateDir: state });
  });
  after(async () => {
    await lab.teardown();
    rmSync(state, { recursive: true, force: true });
  });

  it('has examples for every VPN service', () => {
    assert.deepEqual(files.sort(), ['ipsec.yaml', 'openvpn.yaml', 'wireguard.yaml']);
  });
  // paths in examples are relative to the repository
  const readFile = (p: string) => readFileSync(path.resolve(root, p), 'utf8');
  for (const file of files) {
    const loaded = loadConfigFile(path.join(dir, file), readFile);
    it(`${file} is a valid document`, () => assert.deepEqual(loaded.issues.map(formatIssue), []));
    if (!loaded.validated) continue;
    for (const { sub, needs } of checkers) {
      const { desired, issues } = sub.compile({ openings: [], config: loaded.validated.config, aliases: loaded.validated.aliases, readFile });
      if (!desired.model && !issues.length) continue; // the example has no such section
      it(`${file}: ${sub.name} passes ${needs}`, { skip: missing({ cmd: needs }) }, async () => {
        assert.deepEqual(issues.map(formatIssue), []);
        assert.deepEqual((await sub.validate!(desired, host)).map(formatIssue), []);
      });
    }
  }
});
