/**
 * One validation reports every stage's issues at once (issue 17 item 2):
 * schema issues of one section together with the compile issues of
 * subsystems that do not depend on it; an issue that follows from a broken
 * section is not reported as one of its own.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/apply/engine.js';
import { subsystems } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { domains } from '../../src/domains.js';

describe('validation reports all stages at once', () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-stages-'));
    store = Store.open(join(dir, 'patronus.db'));
    engine = new Engine({ domains, host: new Host({ netns: 'pt-none', stateDir: dir }), store, subsystems });
  });
  after(() => {
    engine.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const yaml = `firewall:
  rules:
    - name: web
      action: explode
openvpn:
  servers:
    - name: road
      network: 10.88.0.0/24
      clients:
        - name: laptop
          address: 10.99.0.5
`;

  it('a schema issue in one section and a compile issue in an independent one come together', async () => {
    const issues = await engine.validate({ text: yaml, format: 'yaml' });
    const text = issues.map((i) => formatIssue(i));
    assert.ok(issues.some((i) => i.path[0] === 'firewall' && i.line === 4), `the schema issue, with its line: ${text.join('\n')}`);
    assert.ok(text.some((t) => /^openvpn\.servers\[0\]\.clients\[0\]\.address: 10\.99\.0\.5 is outside the server network 10\.88\.0\.0\/24/.test(t)), `the compile issue too: ${text.join('\n')}`);
    // fixing the schema issue leaves exactly the compile issue
    const fixed = await engine.validate({ text: yaml.replace('explode', 'accept'), format: 'yaml' });
    assert.deepEqual(fixed.map((i) => formatIssue(i)), ['openvpn.servers[0].clients[0].address: 10.99.0.5 is outside the server network 10.88.0.0/24']);
  });

  it('an issue that follows from a broken section is not reported on its own', async () => {
    // certificates is broken (so "console" is not defined); the API naming it is no separate problem
    const doc = { certificates: { acme: { directory: 'not a url', termsOfServiceAgreed: true }, issue: [{ name: 'console', domains: ['fw.example.org'] }] }, api: { tls: { certificate: 'console' } } };
    const issues = await engine.validate({ document: doc });
    assert.deepEqual([...new Set(issues.map((i) => i.path[0]))], ['certificates'], issues.map((i) => formatIssue(i)).join('\n'));
    // with certificates valid and empty, the dangling reference is the issue
    const dangling = await engine.validate({ document: { api: { tls: { certificate: 'console' } } } });
    assert.deepEqual(dangling.map((i) => formatIssue(i)), ['api.tls.certificate: no certificate "console" in certificates.issue']);
  });
});
