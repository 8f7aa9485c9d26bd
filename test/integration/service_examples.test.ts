/**
 * Every example configuration under examples/dns and examples/dhcp compiles,
 * and what the renderers make of it passes the daemon's own checker
 * (unbound-checkconf, kea-dhcp4 -t), run in a namespace that has the
 * example's interfaces.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { Host } from '../../src/system/host.js';
import { loadConfigFile } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import type { Subsystem } from '../../src/apply/subsystem.js';
import { unboundSubsystem } from '../../src/services/unbound/subsystem.js';
import { keaSubsystem } from '../../src/services/kea/subsystem.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const cases: { dir: string; sub: Subsystem; needs: string }[] = [
  { dir: 'dns', sub: unboundSubsystem, needs: 'unbound-checkconf' },
  { dir: 'dhcp', sub: keaSubsystem, needs: 'kea-dhcp4' },
];

for (const { dir, sub, needs } of cases) {
  const files = (() => {
    try {
      return readdirSync(path.join(root, 'examples', dir)).filter((f) => /\.ya?ml$/.test(f));
    } catch {
      return [];
    }
  })();
  describe(`examples/${dir} pass ${needs}`, { timeout: 300_000, skip: missing('netns', { cmd: needs }) }, () => {
    const lab = new Lab();
    let state: string;
    before(() => {
      state = mkdtempSync(path.join(os.tmpdir(), `pt-examples-${dir}-`));
    });
    after(async () => {
      await lab.teardown();
      rmSync(state, { recursive: true, force: true });
    });
    it('has examples', () => assert.ok(files.length > 0));
    for (const file of files) {
      it(file, async () => {
        // example file paths are relative to the repository
        const readFile = (p: string) => readFileSync(path.resolve(root, p), 'utf8');
        const loaded = loadConfigFile(path.join(root, 'examples', dir, file), readFile);
        assert.deepEqual(loaded.issues.map(formatIssue), []);
        const config = loaded.validated!.config;
        const { desired, issues } = sub.compile({ openings: [], config, aliases: loaded.validated!.aliases, readFile });
        assert.deepEqual(issues.map(formatIssue), []);
        // a namespace with the example's interfaces and addresses
        const ns = await lab.ns(`x${lab.namespaces.length}`);
        const peer = await lab.ns(`p${lab.namespaces.length}`);
        for (const i of config.interfaces) {
          const address = i.addresses?.[0];
          await lab.veth({ ns, dev: i.name, ...(address ? { address } : {}) }, { ns: peer, dev: `p-${i.name}`.slice(0, 15) });
        }
        const host = new Host({ netns: ns.name, stateDir: state });
        assert.deepEqual((await sub.validate!(desired, host)).map(formatIssue), []);
      });
    }
  });
}

