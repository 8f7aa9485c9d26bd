/**
 * Every YAML example in docs/routing-ha.md is a complete document that
 * validates, compiles and renders into files the daemons' own checkers
 * accept (vtysh -C for frr.conf, keepalived -t for keepalived.conf). Docs
 * that drift from the code fail here.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { Lab } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { compileFor } from '../lib/subsystem.js';
import { Host } from '../../src/system/host.js';
import { subsystems } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import os from 'node:os';

const doc = readFileSync(new URL('../../../docs/routing-ha.md', import.meta.url), 'utf8');
const examples = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);

const checkers: Record<string, string> = { routing: 'vtysh', ha: 'keepalived' };
const subsystemFor: Record<string, string> = { routing: 'frr', ha: 'keepalived' };

describe('docs/routing-ha.md examples', { timeout: 300_000 }, () => {
  const lab = new Lab();
  after(() => lab.teardown());

  it('has examples', () => assert.ok(examples.length >= 3));

  examples.forEach((text, i) => {
    const parsed = parse(text) as Record<string, unknown>;
    const section = Object.keys(checkers).find((k) => k in parsed)!;
    it(`example ${i + 1} (${section}) passes validation and ${checkers[section]}'s checker`, { skip: missing('netns', { cmd: checkers[section]! }) }, async () => {
      const sub = subsystems.find((s) => s.name === subsystemFor[section])!;
      const desired = await compileFor(sub, parsed);
      // keepalived's checker wants the interfaces named in the example
      const ns = await lab.ns(`ex${i}`);
      for (const name of interfacesNamed(parsed)) await ns.ip('link', 'add', name, 'type', 'veth', 'peer', 'name', `p${i}${name}`.slice(0, 15)).catch(() => undefined);
      const host = new Host({ netns: ns.name, stateDir: os.tmpdir() });
      const issues = (await sub.validate!(desired, host)) ?? [];
      assert.deepEqual(issues.map(formatIssue), []);
    });
  });
});

function interfacesNamed(d: Record<string, any>): string[] {
  const names = new Set<string>((d.interfaces ?? []).map((i: { name: string }) => i.name));
  for (const inst of d.ha?.instances ?? []) {
    names.add(inst.interface);
    for (const t of inst.trackInterfaces ?? []) names.add(typeof t === 'string' ? t : t.name);
  }
  names.delete('lo');
  return [...names];
}
