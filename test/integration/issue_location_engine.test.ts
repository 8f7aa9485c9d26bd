/**
 * Every issue of a document read from text carries its line and column,
 * not only the schema's: a subsystem's compile issue (a rule naming an alias
 * that does not exist) and a machine probe's (an interface the namespace
 * does not have) point at the offending node too, so `patronus validate
 * office.yaml` prints `office.yaml:L:C: path: message` for them as well.
 * Found by trying Patronus as a newcomer: `destinationPorts: nineteen` and
 * `fastpath.interfaces: [{name: wan9}]` were reported without a position,
 * while a misspelled key had one.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/apply/engine.js';
import { domains, subsystems } from '../../src/domains.js';
import { formatFileIssue, formatPath, type Issue } from '../../src/config/issues.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { Lab } from '../lib/netns.js';

const at = (issues: Issue[]) => issues.map((i) => formatFileIssue('doc.yaml', { ...i, path: formatPath(i.path) }));

describe('compile and probe issues carry line and column', { timeout: 120_000 }, () => {
  const lab = new Lab();
  let dir: string;
  let store: Store;
  let engine: Engine;
  before(async () => {
    const ns = await lab.ns('loc');
    const peer = await lab.ns('locpeer');
    await lab.veth({ ns, dev: 'wan0', address: '192.0.2.2/24' }, { ns: peer, dev: 'peer0', address: '192.0.2.1/24' });
    dir = mkdtempSync(join(tmpdir(), 'pt-loc-'));
    store = Store.open(join(dir, 'patronus.db'));
    engine = new Engine({ domains, host: new Host({ netns: ns.name, stateDir: dir }), store, subsystems });
  });
  after(async () => {
    engine?.close();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    await lab.teardown();
  });

  it('a compile issue (unknown alias) points at the value', async () => {
    const yaml = ['fastpath:', '  interfaces:', '    - name: wan0', '  rules:', '    - name: drop-chargen', '      protocol: udp', '      destinationPorts: nineteen', '      action: drop', ''].join('\n');
    const issues = await engine.validate({ text: yaml, format: 'yaml' });
    assert.deepEqual(at(issues), ['doc.yaml:7:25: fastpath.rules[0].destinationPorts: unknown alias "nineteen"']);
  });

  it('a probe issue (interface missing in the namespace) points at the name', async () => {
    const yaml = ['fastpath:', '  interfaces:', '    - name: wan9', '  rules:', '    - name: count-icmp', '      protocol: icmp', '      action: count', ''].join('\n');
    const issues = await engine.validate({ text: yaml, format: 'yaml' });
    assert.equal(issues.length, 1, at(issues).join('\n'));
    assert.match(at(issues)[0]!, /^doc\.yaml:3:13: fastpath\.interfaces\[0\]\.name: interface wan9 does not exist \(netns pt-/);
  });
});
