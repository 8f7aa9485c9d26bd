/**
 * The list of domains (src/domains.ts) and what the core builds from it: the
 * apply order, the document's sections, the worker/guard round trip by
 * module; and that the core never loads a domain itself.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { documentSchema, domains, subsystems } from '../../src/domains.js';
import { loadDomains, subsystemsOf } from '../../src/apply/domain.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

describe('domains', () => {
  it('give the subsystems in the apply order the registry had', () => {
    assert.deepEqual(
      subsystems.map((s) => s.name),
      ['links', 'interfaces', 'routes', 'fastpath', 'nftables', 'system', 'dhcp-client', 'gateways', 'certificates', 'frr', 'wireguard', 'openvpn', 'ipsec', 'unbound', 'kea', 'kea6', 'radvd', 'conntrackd', 'keepalived', 'qos', 'ids'],
    );
    assert.equal(new Set(subsystems.map((s) => s.name)).size, subsystems.length, 'subsystem names are unique');
  });

  it('give the document its sections in list order, the control plane\'s last', () => {
    assert.deepEqual(Object.keys(documentSchema.shape), ['version', 'interfaces', 'aliases', 'fastpath', 'firewall', 'gateways', 'wireguard', 'openvpn', 'ipsec', 'dns', 'dhcp', 'dhcp6', 'ra', 'routing', 'ha', 'qos', 'ids', 'certificates', 'api', 'drift', 'health']);
  });

  it('load again by module (what the check worker and the confirm guard do)', async () => {
    const again = await loadDomains(domains.map((d) => d.module));
    assert.deepEqual(again, [...domains]);
    assert.deepEqual(subsystemsOf(again), subsystems);
  });

  it("a leaf domain is its folder plus its line in the list: nothing else under src/ names DHCPv6's (docs/architecture.md)", () => {
    const files = (dir: string): string[] =>
      readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(`${dir}/${e.name}`) : /\.tsx?$/.test(e.name) && !e.name.endsWith('.d.ts') ? [`${dir}/${e.name}`] : []));
    const naming = files('src')
      .filter((f) => !f.startsWith('src/services/kea6/'))
      .flatMap((f) => readFileSync(join(root, f), 'utf8').split('\n').map((line, i) => ({ f, i, line })))
      .filter(({ line }) => /kea6/.test(line))
      .map(({ f, i, line }) => `${f}:${i + 1}: ${line.trim()}`);
    assert.equal(naming.length, 1, naming.join('\n'));
    assert.match(naming[0]!, /^src\/domains\.ts:\d+: \(await import\('\.\/services\/kea6\/domain\.js'\)\)\.domain,$/);
  });

  it('are never imported by the core (only entry points import src/domains.ts)', () => {
    const core = ['src/apply', 'src/config', 'src/metrics', 'src/store', 'src/drift'].flatMap((d) => readdirSync(join(root, d)).filter((f) => f.endsWith('.ts')).map((f) => `${d}/${f}`));
    core.push('src/api/server.ts', 'src/api/openapi.ts');
    // aliases are resolved by the document itself (CompileContext.aliases): core, though listed as a section
    const domainDirs = /from '[./]*(domains|interfaces|fastpath|nft|multiwan|routing|certificates|services\/[a-z0-9]+)\/?[^']*\.js'/;
    for (const f of core) {
      for (const line of readFileSync(join(root, f), 'utf8').split('\n')) {
        if (!/^import\b/.test(line) || /^import type\b/.test(line) || /^export type\b/.test(line)) continue;
        assert.ok(!domainDirs.test(line) || /services\/common\//.test(line), `${f} loads a domain: ${line}`);
      }
    }
  });
});
