import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store, parseRetention, retentionFromEnv } from '../../src/store/store.js';

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

  it('creates the database, WAL and SHM 0600 whatever the umask and the directory mode', () => {
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    const old = process.umask(0);
    try {
      using s = Store.open(join(open, 'p.db'));
      s.createRevision({ author: 'a', message: 'm', config: { secret: 'bgp-password' } });
      for (const f of ['p.db', 'p.db-wal', 'p.db-shm']) assert.equal(statSync(join(open, f)).mode & 0o777, 0o600, f);
    } finally {
      process.umask(old);
    }
    // an existing file with loose modes is tightened on open
    chmodSync(join(open, 'p.db'), 0o644);
    using s = Store.open(join(open, 'p.db'));
    assert.equal(statSync(join(open, 'p.db')).mode & 0o777, 0o600);
  });

  it('writes each document once: state changes do not rewrite it, identical documents share one row', () => {
    const path = join(dir, 'once.db');
    using s = Store.open(path);
    const big = { blob: 'x'.repeat(200_000) };
    const r = s.createRevision({ author: 'a', message: 'm', config: big });
    const walAfterInsert = statSync(`${path}-wal`).size;
    s.finish(r.id, 'confirming', { steps: [] }, new Date(Date.now() + 1000), r.id);
    s.transition(r.id, 'confirming', 'committed');
    // two small state updates: a few pages, nowhere near another 200 kB
    assert.ok(statSync(`${path}-wal`).size - walAfterInsert < 50_000, `WAL grew by ${statSync(`${path}-wal`).size - walAfterInsert} bytes`);
    s.createRevision({ author: 'a', message: 'again', config: big });
    assert.equal(s.documentCount(), 1);
    assert.deepEqual(s.get(r.id)!.config, big);
    assert.equal(s.running(), r.id);
  });

  it('prunes by count and age, never the committed, running or pending revision', () => {
    const path = join(dir, 'prune.db');
    {
      using s = Store.open(path, { retention: {} });
      const ids: number[] = [];
      for (let i = 0; i < 10; i++) {
        const r = s.createRevision({ author: 'a', message: `r${i}`, config: { n: i } });
        ids.push(r.id);
        s.finish(r.id, i === 2 ? 'committed' : 'failed', {}, undefined, i === 2 ? r.id : undefined);
      }
      // the newest is pending confirmation; revision 1 (index 0) is what runs
      s.finish(ids[9]!, 'confirming', {}, new Date(Date.now() + 60_000));
      s.setRunning(ids[0]!);
      assert.equal(s.prune(), 0, 'no limits: nothing pruned');
    }
    {
      using s = Store.open(path, { retention: { keep: 3 } });
      assert.equal(s.prune(), 5);
      // kept: the newest 3, the committed one (r2) and the running one (r0)
      assert.deepEqual(s.list().map((r) => r.message), ['r9', 'r8', 'r7', 'r2', 'r0']);
      assert.equal(s.documentCount(), 5);
    }
    {
      using s = Store.open(path, { retention: { keep: 1, days: 1 } });
      // all are younger than a day: the age limit keeps them
      assert.equal(s.prune(), 0);
      assert.equal(s.prune(new Date(Date.now() + 2 * 86_400_000)), 2);
      assert.deepEqual(s.list().map((r) => r.message), ['r9', 'r2', 'r0']);
      assert.equal(s.documentCount(), 3);
    }
  });

  it('reads retention limits from the environment and refuses bad ones', () => {
    assert.deepEqual(retentionFromEnv({}), { keep: 500 });
    assert.deepEqual(retentionFromEnv({ PATRONUS_KEEP_REVISIONS: '20', PATRONUS_KEEP_DAYS: '7' }), { keep: 20, days: 7 });
    assert.deepEqual(retentionFromEnv({ PATRONUS_KEEP_REVISIONS: '0' }), {});
    assert.throws(() => retentionFromEnv({ PATRONUS_KEEP_REVISIONS: '-3' }), /PATRONUS_KEEP_REVISIONS: "-3" is not a positive whole number/);
    assert.throws(() => parseRetention(undefined, 'soon'), /--keep-days: "soon" is not a positive number of days/);
  });

  it('upgrades a version 1 store in place', () => {
    const path = join(dir, 'v1.db');
    {
      const db = new Database(path);
      db.exec(`
        CREATE TABLE revisions (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL, config TEXT NOT NULL, state TEXT NOT NULL, result TEXT, confirm_deadline TEXT, finished_at TEXT);
        CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, hash BLOB NOT NULL UNIQUE, created_at TEXT NOT NULL);
        INSERT INTO revisions VALUES (1, '2026-01-01T00:00:00.000Z', 'a', 'one', '{"a":1}', 'committed', '{"ok":true}', NULL, NULL);
        INSERT INTO revisions VALUES (2, '2026-01-02T00:00:00.000Z', 'b', 'two', '{"a":2}', 'failed', NULL, NULL, NULL);
        PRAGMA user_version = 1;
      `);
      db.close();
    }
    using s = Store.open(path);
    assert.equal(s.integrityCheck(), 'ok');
    assert.deepEqual(s.current()!.config, { a: 1 });
    assert.deepEqual(s.get(2)!.config, { a: 2 });
    assert.equal(s.createRevision({ author: 'c', message: 'three', config: {} }).id, 3);
  });
});
