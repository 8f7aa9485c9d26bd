import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/store/store.js';

describe('store', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'pt-store-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps revisions with author, message, config and result across reopen', () => {
    const path = join(dir, 'a.db');
    {
      using s = Store.open(path);
      const r1 = s.createRevision({ author: 'alice', message: 'first', config: { interfaces: [] } });
      s.finish(r1.id, 'committed', { ok: true });
      const r2 = s.createRevision({ author: 'bob', message: 'second', config: { interfaces: [{ name: 'x' }] } });
      s.finish(r2.id, 'failed', { failedStep: 'fastpath' });
      s.createRevision({ author: 'carol', message: 'third', config: {} });
    }
    using s = Store.open(path);
    assert.equal(s.integrityCheck(), 'ok');
    assert.equal(s.current()!.message, 'first');
    assert.deepEqual(s.current()!.result, { ok: true });
    assert.deepEqual(s.list().map((r) => [r.id, r.author, r.state]), [
      [3, 'carol', 'applying'],
      [2, 'bob', 'failed'],
      [1, 'alice', 'committed'],
    ]);
    assert.deepEqual(s.unfinished().map((r) => r.id), [3]);
    assert.deepEqual(s.get(2)!.config, { interfaces: [{ name: 'x' }] });
  });

  it('transition is a compare-and-set', () => {
    using s = Store.open(join(dir, 'b.db'));
    const r = s.createRevision({ author: 'a', message: 'm', config: {} });
    s.finish(r.id, 'confirming', undefined, new Date(Date.now() + 1000));
    assert.equal(s.transition(r.id, 'confirming', 'committed'), true);
    assert.equal(s.transition(r.id, 'confirming', 'rolled_back'), false);
    assert.equal(s.get(r.id)!.state, 'committed');
  });

  it('stores tokens hashed and verifies them', () => {
    const path = join(dir, 'c.db');
    using s = Store.open(path);
    const t = s.addToken('ops');
    assert.match(t, /^pat_/);
    assert.equal(s.verifyToken(t), 'ops');
    assert.equal(s.verifyToken(`${t}x`), undefined);
    assert.equal(s.verifyToken(''), undefined);
    // the clear token is nowhere in the file
    const raw = readFileSync(path);
    assert.equal(raw.includes(Buffer.from(t)), false);
    assert.equal(s.removeToken('ops'), true);
    assert.equal(s.verifyToken(t), undefined);
  });
});
