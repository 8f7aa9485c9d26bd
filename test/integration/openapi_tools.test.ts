/**
 * /openapi.json with the tools people point at an API: Redocly's linter
 * (recommended rules, redocly.yaml) finds nothing, and openapi-typescript
 * generates types a TypeScript client type-checks against
 * (test/fixtures/openapi-client/client.ts, with tsc).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import openapiTS, { astToString } from 'openapi-typescript';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { domains } from '../../src/domains.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const bin = (name: string) => join(ROOT, 'node_modules', '.bin', name);

describe('OpenAPI document with Redocly and openapi-typescript', { timeout: 300_000 }, () => {
  let dir: string;
  let spec: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-openapi-'));
    const store = Store.open(join(dir, 'patronus.db'));
    // no subsystems and a namespace that is never entered: only the document is read
    const engine = new Engine({ domains, host: new Host({ netns: 'pt-000000-unused', stateDir: dir }), store, subsystems: [] });
    const app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }) });
    const token = store.addToken('openapi-tools');
    const r = await app.inject({ method: 'GET', url: '/openapi.json', headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.statusCode, 200, r.body);
    spec = r.body;
    writeFileSync(join(dir, 'openapi.json'), spec);
    await app.close();
    engine.close();
    store.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is OpenAPI 3.1 and Redocly lint (recommended rules) reports nothing', async () => {
    assert.equal(JSON.parse(spec).openapi, '3.1.0');
    const r = await execa(bin('redocly'), ['lint', '--config', join(ROOT, 'redocly.yaml'), '--format', 'stylish', join(dir, 'openapi.json')], {
      reject: false,
      env: { REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
    });
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    const out = `${r.stdout}\n${r.stderr}`;
    assert.match(out, /Your API description is valid/);
    // (Redocly also prints a banner about Node 20's end of life: not a lint finding)
    assert.doesNotMatch(out, /\d+ warnings?\b/, 'no lint warnings either');
  });

  it('openapi-typescript types let a client type-check its calls (and reject wrong ones)', async () => {
    // defaultNonNullable off: a field with a default is optional in what a client sends
    const ast = await openapiTS(JSON.parse(spec), { defaultNonNullable: false });
    const types = astToString(ast);
    assert.doesNotMatch(types, /"application\/json": never/, 'no response body typed never');
    writeFileSync(join(dir, 'api.d.ts'), types);
    copyFileSync(join(ROOT, 'test', 'fixtures', 'openapi-client', 'client.ts'), join(dir, 'client.ts'));
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, lib: ['ES2023'], types: [] }, files: ['client.ts'] }),
    );
    const r = await execa(bin('tsc'), ['-p', join(dir, 'tsconfig.json')], { reject: false });
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
  });
});
