/**
 * The pieces of roles and sessions that need no server: role order, scrypt
 * password hashes, the sign-in limiter, and the store's tokens, users and
 * sessions (migration, expiry by idle time and by lifetime, cascades).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { ROLES, allows, parseRole, rolesBelow } from '../../src/api/auth/roles.js';
import { hashPassword, passwordProblem, verifyPassword } from '../../src/api/auth/passwords.js';
import { LoginLimiter, addressKey } from '../../src/api/auth/login-limit.js';
import { cookieValue } from '../../src/api/auth/auth.js';
import { NameTakenError, Store } from '../../src/store/store.js';

describe('roles', () => {
  it('are ordered: each allows what the ones below it allow; public needs nothing', () => {
    assert.deepEqual([...ROLES], ['metrics', 'viewer', 'operator', 'admin']);
    assert.ok(allows('admin', 'operator') && allows('operator', 'operator') && !allows('viewer', 'operator'));
    assert.ok(allows('metrics', 'public') && allows('metrics', 'metrics') && !allows('metrics', 'viewer'));
    assert.deepEqual(rolesBelow('operator'), ['metrics', 'viewer']);
    assert.deepEqual(rolesBelow('public'), []);
    assert.throws(() => parseRole('root'), /"root" is not a role \(metrics, viewer, operator, admin\)/);
  });
});

describe('passwords (scrypt)', () => {
  it('hash with a per-user salt, verify in constant time, refuse malformed hashes', async () => {
    const a = await hashPassword('correct horse battery');
    const b = await hashPassword('correct horse battery');
    assert.match(a, /^scrypt\$32768\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
    assert.notEqual(a, b, 'salted');
    assert.equal(await verifyPassword('correct horse battery', a), true);
    assert.equal(await verifyPassword('correct horse batterY', a), false);
    assert.equal(await verifyPassword('correct horse battery', 'plain'), false);
    assert.equal(await verifyPassword('correct horse battery', 'scrypt$1024$8$1$AAAA$'), false);
    assert.match(passwordProblem('short')!, /at least 8/);
    assert.equal(passwordProblem('long enough'), undefined);
  });
});

describe('sign-in limiter', () => {
  it('allows N failures per window per key, then says how long to wait; a success clears the user, not the address', () => {
    const l = new LoginLimiter({ failures: 3, windowMs: 60_000 });
    const keys = ['address:10.0.0.1', 'user:alice'];
    for (let i = 0; i < 3; i++) {
      assert.equal(l.retryAfter(keys, 1000 + i), 0);
      l.fail(keys, 1000 + i);
    }
    assert.equal(l.retryAfter(keys, 2000), 59);
    // the user is locked from any address; the address for any user
    assert.equal(l.retryAfter(['address:10.0.0.2', 'user:alice'], 2000), 59);
    assert.equal(l.retryAfter(['address:10.0.0.1', 'user:bob'], 2000), 59);
    assert.equal(l.retryAfter(['address:10.0.0.2', 'user:bob'], 2000), 0);
    // the oldest failure ages out: free again
    assert.equal(l.retryAfter(keys, 61_001), 0);
    l.fail(['user:carol'], 0);
    l.succeed('user:carol');
    assert.equal(l.retryAfter(['user:carol'], 1), 0);
  });

  it('keys addresses: IPv4 as is (also IPv4-mapped), IPv6 by its /64', () => {
    assert.equal(addressKey('192.0.2.7'), 'address:192.0.2.7');
    assert.equal(addressKey('::ffff:192.0.2.7'), 'address:192.0.2.7');
    assert.equal(addressKey('2001:db8:1:2:3:4:5:6'), 'address:2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8:1:2::9'), 'address:2001:db8:1:2::/64');
    assert.equal(addressKey('2001:0DB8::1'), 'address:2001:db8::/64');
    assert.equal(addressKey('::1'), 'address:::/64');
    assert.equal(addressKey('fe80::1%eth0'), 'address:fe80::/64');
  });

  it('forgets the oldest keys beyond its bound', () => {
    const l = new LoginLimiter({ failures: 1, windowMs: 60_000, maxKeys: 2 });
    for (const k of ['a', 'b', 'c']) l.fail([k], 0);
    assert.equal(l.retryAfter(['a'], 1), 0);
    assert.ok(l.retryAfter(['c'], 1) > 0);
  });
});

describe('cookie header', () => {
  it('finds one cookie among several', () => {
    assert.equal(cookieValue('a=1; patronus_session=abc-_9; b=2', 'patronus_session'), 'abc-_9');
    assert.equal(cookieValue('xpatronus_session=1', 'patronus_session'), undefined);
    assert.equal(cookieValue('patronus_session=', 'patronus_session'), undefined);
    assert.equal(cookieValue(undefined, 'patronus_session'), undefined);
  });
});

describe('store: tokens, users, sessions', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'pt-auth-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('upgrades a version 2 store: its tokens stay admin and keep working', () => {
    const path = join(dir, 'v2.db');
    const t = 'pat_made-by-a-version-2-store';
    {
      // what a v2 store holds: tokens without roles, no users or sessions
      const db = new Database(path);
      db.exec(`
        CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, hash BLOB NOT NULL UNIQUE, created_at TEXT NOT NULL);
        CREATE TABLE documents (hash TEXT PRIMARY KEY, config TEXT NOT NULL);
        CREATE TABLE revisions (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL, doc TEXT NOT NULL REFERENCES documents (hash), state TEXT NOT NULL, result TEXT, confirm_deadline TEXT, finished_at TEXT);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        PRAGMA user_version = 2;
      `);
      db.prepare(`INSERT INTO tokens (name, hash, created_at) VALUES ('old', ?, '2026-01-01T00:00:00.000Z')`).run(createHash('sha256').update(t).digest());
      db.close();
    }
    using s = Store.open(path);
    assert.deepEqual(s.tokenAuth(t), { id: 1, name: 'old', role: 'admin' });
    assert.equal(s.addToken('new', 'viewer').startsWith('pat_'), true);
    assert.deepEqual(s.listTokens().map((x) => [x.name, x.role]), [['old', 'admin'], ['new', 'viewer']]);
  });

  it('an existing token or user name is a NameTakenError in a sentence, not a SQLite error', () => {
    using s = Store.open(join(dir, 'names.db'));
    s.addToken('ops');
    assert.throws(() => s.addToken('ops'), (e: Error) => e instanceof NameTakenError && e.message === 'a token named "ops" already exists');
    s.addUser('alice', 'viewer', 'scrypt$x');
    assert.throws(() => s.addUser('alice', 'admin', 'scrypt$y'), (e: Error) => e instanceof NameTakenError && e.message === 'a user named "alice" already exists');
    assert.ok(s.health().ok, 'not a store failure');
  });

  it('sessions end after the idle timeout and after their lifetime, and with their user or token', () => {
    using s = Store.open(join(dir, 'sessions.db'));
    const u = s.addUser('bob', 'operator', 'scrypt$x');
    const t0 = new Date('2026-01-01T00:00:00Z');
    const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
    const a = s.createSession({ userId: u.id, idleSeconds: 600, lifetimeSeconds: 3600 }, t0);
    assert.equal(a.info.expiresAt, at(600).toISOString());
    assert.equal(s.sessionBySecret(a.secret, at(300))?.user, 'bob');
    // used at 300 s: idle until 900 s
    assert.equal(s.sessionBySecret(a.secret, at(850))?.role, 'operator');
    assert.equal(s.sessionBySecret(a.secret, at(1451)), undefined, 'idle for more than 600 s since 850 s');
    // kept in use, it still ends at its lifetime
    const b = s.createSession({ userId: u.id, idleSeconds: 600, lifetimeSeconds: 3600 }, t0);
    for (let x = 500; x < 3600; x += 500) assert.ok(s.sessionBySecret(b.secret, at(x)), `alive at ${x} s`);
    assert.equal(s.sessionBySecret(b.secret, at(3600)), undefined, 'lifetime over');
    assert.equal(s.sessionBySecret('not-a-secret', at(1)), undefined);
    // a role change applies to open sessions; a new password or removing the user ends them; a token's end with the token
    const c = s.createSession({ userId: u.id, idleSeconds: 600, lifetimeSeconds: 3600 });
    assert.equal(s.sessionBySecret(c.secret)?.role, 'operator');
    assert.equal(s.setUserRole('bob', 'viewer'), true);
    assert.equal(s.sessionBySecret(c.secret)?.role, 'viewer');
    assert.equal(s.setUserRole('nobody', 'viewer'), false);
    s.setUserPassword('bob', 'scrypt$new');
    assert.equal(s.sessionBySecret(c.secret), undefined);
    const d = s.createSession({ userId: u.id, idleSeconds: 600, lifetimeSeconds: 3600 });
    s.removeUser('bob');
    assert.equal(s.sessionBySecret(d.secret), undefined);
    s.addToken('ci', 'viewer');
    const tok = s.listTokens().find((x) => x.name === 'ci')!;
    const e = s.createSession({ tokenId: tok.id, idleSeconds: 600, lifetimeSeconds: 3600 });
    assert.deepEqual([s.sessionBySecret(e.secret)?.user, s.sessionBySecret(e.secret)?.via, s.sessionBySecret(e.secret)?.role], ['ci', 'token', 'viewer']);
    s.setTokenRole('ci', 'operator');
    assert.equal(s.sessionBySecret(e.secret)?.role, 'operator');
    s.removeToken('ci');
    assert.equal(s.sessionBySecret(e.secret), undefined);
    assert.deepEqual(s.listSessions(), []);
  });
});
