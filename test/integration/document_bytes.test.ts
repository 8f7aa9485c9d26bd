/**
 * A large document handed over as UTF-8 bytes (what the server does with a
 * large request body: src/config/parse-worker.ts, ConfigSource `bytes`):
 * the bytes move to the compile worker (transferred: the caller's buffer is
 * detached, never copied into a string on the main thread), the worker
 * hashes and stores the text, and the revision holds exactly that document
 * under the sha256 of its text; the same bytes again are an unchanged apply.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { domains } from '../../src/domains.js';
import { Lab } from '../lib/netns.js';
import { LARGE_JSON_BODY, parseJsonBodyInWorker } from '../../src/config/parse-worker.js';

const prefixes = (n: number) => Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);

describe('a document given as bytes (a large request body)', { timeout: 180_000 }, () => {
  const lab = new Lab();
  let dir: string;
  let store: Store;
  let engine: Engine;
  before(async () => {
    const ns = await lab.ns('docbytes');
    dir = mkdtempSync(join(tmpdir(), 'pt-docbytes-'));
    store = Store.open(join(dir, 'patronus.db'));
    engine = new Engine({ domains, host: new Host({ netns: ns.name, stateDir: dir }), store });
  });
  after(async () => {
    engine?.close();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
    await lab.teardown();
  });

  // non-ASCII text on purpose: bytes and characters differ, the hash is of the UTF-8 text
  const document = { aliases: [{ name: 'big', type: 'network', entries: prefixes(30_000) }, { name: 'note', type: 'network', entries: ['192.0.2.0/24'], description: 'prüfung ✓ 検査' }] };
  const text = JSON.stringify(document);

  it('the parse worker sends a config object back as bytes when asked (body.config empty), as text otherwise', async () => {
    const big = JSON.stringify({ config: { ...document, aliases: [...document.aliases, { name: 'pad', type: 'network', entries: prefixes(80_000) }] }, message: 'm' });
    assert.ok(big.length > LARGE_JSON_BODY);
    const asBytes = await parseJsonBodyInWorker(Buffer.from(big), { documentAsBytes: true });
    assert.ok('body' in asBytes && asBytes.configBytes);
    assert.deepEqual(asBytes.body, { config: '', format: 'json', message: 'm' });
    assert.equal(asBytes.configBytes.byteOffset, 0);
    assert.equal(asBytes.configBytes.byteLength, asBytes.configBytes.buffer.byteLength, 'a buffer of its own (movable on)');
    assert.deepEqual(JSON.parse(Buffer.from(asBytes.configBytes).toString('utf8')), JSON.parse(big).config);
    const asText = await parseJsonBodyInWorker(Buffer.from(big));
    assert.ok('body' in asText && asText.configBytes === undefined);
    assert.deepEqual(JSON.parse(asText.body.config as string), JSON.parse(big).config);
  });

  it('arrives intact: moved to the worker, stored under the hash of its text, read back the same; again: unchanged', async () => {
    const bytes = new TextEncoder().encode(text);
    const r = await engine.apply({ bytes, format: 'json' }, { author: 't', message: 'as bytes' });
    assert.equal(r.state, 'committed');
    assert.equal(bytes.byteLength, 0, 'the bytes were moved to the compile worker (transferred), not copied');
    assert.equal(store.documentHash(r.revision), createHash('sha256').update(text, 'utf8').digest('hex'));
    assert.equal(JSON.stringify(store.get(r.revision)!.config), text);
    // the same document again, as bytes: the hashes match, nothing is recorded or touched
    const again = await engine.apply({ bytes: new TextEncoder().encode(text), format: 'json' }, { author: 't', message: 'again' });
    assert.equal(again.unchanged, true);
    assert.equal(again.revision, r.revision);
    // and as text (the CLI's and small bodies' way): the same hash, so unchanged too
    const asText = await engine.apply({ text, format: 'json' }, { author: 't', message: 'as text' });
    assert.equal(asText.unchanged, true);
  });

  it('a document with an error, as bytes: the issue is reported with its path, nothing recorded', async () => {
    const bad = { aliases: [{ name: 'big', type: 'network', entries: [...prefixes(30_000), '10.0.0.300'] }] };
    const before = store.list({}).length;
    await assert.rejects(engine.apply({ bytes: new TextEncoder().encode(JSON.stringify(bad)), format: 'json' }, { author: 't', message: 'bad' }), /aliases.*30000|10\.0\.0\.300/);
    assert.equal(store.list({}).length, before);
  });
});
