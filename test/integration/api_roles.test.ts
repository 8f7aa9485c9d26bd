/**
 * Roles, console users and sessions over real HTTP (the server listens on
 * 127.0.0.1:0 with the same store a `patronus serve` would use; no
 * subsystems, so nothing here touches a network or the kernel):
 * - the role matrix: for every route in /openapi.json (and the hidden ones)
 *   no credentials -> 401, every role below the route's x-patronus-role -> 403,
 *   its own role -> neither (a harmless request: bad body, unknown id);
 * - sign-in by password and by token, the cookie's flags, CSRF refused without
 *   or with a wrong X-CSRF-Token, sign-out and revocation, sessions in the
 *   store surviving a restart, the sign-in limit (429 with Retry-After);
 * - a viewer reads documents with their secrets redacted and cannot export
 *   keys; the metrics role reads /metrics and nothing else;
 * - the CLI: token add --role, user add with the password on stdin.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { buildServer, type ServerOptions } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { ROLES, rolesBelow, type Role, type RouteRole } from '../../src/api/auth/roles.js';
import { hashPassword } from '../../src/api/auth/passwords.js';
import { defaultRouteRole } from '../../src/api/auth/auth.js';
import { domains } from '../../src/domains.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/**
 * A secret in the committed document (BGP's TCP MD5 password: WireGuard and
 * IPsec keys live in files, never in the document): it may reach no viewer
 * (nor anyone: the API redacts secrets for every role).
 */
const BGP_PASSWORD = 'bgp-Sekr1t-pw';
const SECRET_DOCUMENT = {
  interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['192.0.2.2/24'] }],
  wireguard: { interfaces: [{ name: 'wg0', listenPort: 51820, addresses: ['10.99.0.1/24'], peers: [{ name: 'laptop', generateKey: true, allowedIps: ['10.99.0.2/32'] }] }] },
  routing: { bgp: { asn: 65001, neighbors: [{ address: '192.0.2.1', remoteAs: 65002, password: BGP_PASSWORD }] } },
};

/** Path parameters for the matrix: ids that exist nowhere, so handlers answer 404 or 400 and change nothing. */
const PARAMS: Record<string, string> = { id: '999999', interface: 'nosuch0', peer: 'nobody', server: 'nosuch', client: 'nobody', address: '192.0.2.250' };

/**
 * A request per mutating operation that the handler refuses without changing
 * anything. A new mutating route must be added here (the matrix says so).
 */
const HARMLESS: Record<string, { body?: unknown; expect: number }> = {
  'POST /api/v1/session': { body: {}, expect: 400 },
  'DELETE /api/v1/session': { expect: 400 }, // a bearer token has no session to end
  'DELETE /api/v1/sessions/{id}': { expect: 404 },
  'POST /api/v1/config/validate': { body: {}, expect: 400 },
  'POST /api/v1/config/plan': { body: {}, expect: 400 },
  'POST /api/v1/config/apply': { body: {}, expect: 400 },
  'POST /api/v1/config/confirm': { expect: 409 }, // nothing awaits confirmation
  'POST /api/v1/config/rollback': { body: { to: 999999 }, expect: 409 },
  'POST /api/v1/ha/sync': { expect: 409 }, // not an HA primary
  'DELETE /api/v1/ids/blocks/{address}': { expect: 409 }, // no IDS engine runs
};

/** Routes /openapi.json does not list, with the role each must declare. */
const HIDDEN: Record<string, RouteRole> = {
  'GET /healthz': 'public',
  'GET /schema.json': 'public',
  'GET /metrics': 'metrics',
  'GET /openapi.json': 'viewer',
  // the web console's files (src/api/console.ts): the app, no data
  'GET /': 'public',
  'GET /console': 'public',
  'GET /console/*': 'public',
};

interface Answer {
  status: number;
  text: string;
  json: any;
  headers: Headers;
}

describe('roles, users and sessions over HTTP', { timeout: 300_000 }, () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  let base: string;
  const tokens = {} as Record<Role, string>;
  const password = 'correct horse battery';

  const start = async (extra: Partial<ServerOptions> = {}) => {
    app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }), loginLimit: { failures: 5, windowMs: 20_000 }, ...extra });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  };

  const call = async (method: string, path: string, o: { token?: string; cookie?: string; csrf?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer> => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.cookie) headers.cookie = o.cookie;
    if (o.csrf !== undefined) headers['x-csrf-token'] = o.csrf;
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${base}${path}`, { method, headers, ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}) });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, text, json, headers: res.headers };
  };

  /** Signs in; returns the cookie to send back and what the server answered. */
  const signIn = async (body: unknown) => {
    const r = await call('POST', '/api/v1/session', { body });
    const setCookie = r.headers.get('set-cookie') ?? '';
    return { ...r, setCookie, cookie: setCookie.split(';')[0]! };
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-roles-'));
    store = Store.open(join(dir, 'patronus.db'));
    // no subsystems: nothing is applied to any kernel; documents are still validated and recorded
    engine = new Engine({ domains, host: new Host({ netns: 'pt-000000-unused', stateDir: dir }), store, subsystems: [] });
    const r = await engine.apply({ document: SECRET_DOCUMENT }, { author: 'setup', message: 'secrets' });
    assert.equal(r.state, 'committed', JSON.stringify(r));
    for (const role of ROLES) tokens[role] = store.addToken(`t-${role}`, role);
    for (const role of ROLES) store.addUser(`u-${role}`, role, await hashPassword(password));
    await start();
  });
  after(async () => {
    await app?.close();
    engine?.close();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('role matrix: every route refuses no credentials (401) and each role below its own (403), and accepts its own', async () => {
    const doc = (await call('GET', '/openapi.json', { token: tokens.viewer })).json as { paths: Record<string, Record<string, { 'x-patronus-role'?: RouteRole }>> };
    const routes: [string, string, RouteRole][] = [];
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        const role = op['x-patronus-role'];
        assert.ok(role === 'public' || ROLES.includes(role as Role), `${method.toUpperCase()} ${path} declares x-patronus-role (got ${role})`);
        routes.push([method.toUpperCase(), path, role!]);
      }
    }
    for (const [key, role] of Object.entries(HIDDEN)) routes.push([key.split(' ')[0]!, key.split(' ')[1]!, role]);
    // nothing escapes: every route the server has (but HEAD twins) is in the matrix, with the role it declared
    const served = [...app.routeRoles].filter(([k]) => !k.startsWith('HEAD '));
    const walked = new Map(routes.map(([m, p, r]) => [`${m} ${p.replace(/\{(\w+)\}/g, ':$1')}`, r]));
    for (const [k, role] of served) assert.equal(walked.get(k), role, `${k}: in the matrix with role ${role}`);
    assert.equal(walked.size, served.length);

    const failures: string[] = [];
    for (const [method, path, role] of routes) {
      const url = path.replace(/\{(\w+)\}/g, (_, p: string) => PARAMS[p] ?? 'x');
      const key = `${method} ${path}`;
      const harmless = HARMLESS[key];
      if (method !== 'GET' && !harmless) {
        failures.push(`${key}: add a harmless request for it to HARMLESS in this test`);
        continue;
      }
      const opts = harmless?.body !== undefined ? { body: harmless.body } : {};
      if (role !== 'public') {
        const anon = await call(method, url, opts);
        if (anon.status !== 401) failures.push(`${key} without credentials: ${anon.status}, want 401`);
        for (const below of rolesBelow(role)) {
          const r = await call(method, url, { ...opts, token: tokens[below] });
          if (r.status !== 403) failures.push(`${key} as ${below} (route needs ${role}): ${r.status}, want 403`);
          else if (!r.json?.message?.includes(`needs the ${role} role`)) failures.push(`${key} as ${below}: 403 without saying which role it needs: ${r.text}`);
        }
      }
      const own = await call(method, url, { ...opts, ...(role === 'public' ? {} : { token: tokens[role] }) });
      if (own.status === 401 || own.status === 403) failures.push(`${key} as ${role}: ${own.status}, want it accepted: ${own.text.slice(0, 200)}`);
      else if (harmless && own.status !== harmless.expect) failures.push(`${key} as ${role}: ${own.status}, want ${harmless.expect}: ${own.text.slice(0, 200)}`);
    }
    assert.deepEqual(failures, []);
    // the store did not change: still the one revision
    assert.equal(store.count(), 1);
  });

  it('the declared roles: reads are viewer, changes operator, key exports admin', () => {
    const role = (k: string) => app.routeRoles.get(k);
    assert.equal(role('GET /api/v1/config'), 'viewer');
    assert.equal(role('GET /api/v1/revisions/:id'), 'viewer');
    for (const k of ['POST /api/v1/config/apply', 'POST /api/v1/config/confirm', 'POST /api/v1/config/rollback', 'POST /api/v1/config/plan']) assert.equal(role(k), 'operator', k);
    assert.equal(role('GET /api/v1/vpn/wireguard/:interface/peers/:peer/config'), 'admin');
    assert.equal(role('GET /api/v1/vpn/openvpn/:server/clients/:client/profile'), 'admin');
    assert.equal(role('GET /metrics'), 'metrics');
  });

  it('a viewer reads the document and its revision without the BGP password, and cannot export WireGuard or OpenVPN keys', async () => {
    const s = await signIn({ user: 'u-viewer', password });
    assert.equal(s.status, 200, s.text);
    for (const auth of [{ token: tokens.viewer }, { cookie: s.cookie }]) {
      const cfg = await call('GET', '/api/v1/config', auth);
      assert.equal(cfg.status, 200, cfg.text);
      assert.equal(cfg.json.config.routing.bgp.neighbors[0].password, '[redacted]');
      assert.equal(cfg.json.config.routing.bgp.neighbors[0].remoteAs, 65002, 'the rest of the document is there');
      const rev = await call('GET', `/api/v1/revisions/${cfg.json.revision}`, auth);
      assert.equal(rev.status, 200, rev.text);
      for (const r of [cfg, rev]) {
        assert.ok(!r.text.includes(BGP_PASSWORD), 'no BGP password');
      }
      const wg = await call('GET', '/api/v1/vpn/wireguard/wg0/peers/laptop/config', auth);
      assert.equal(wg.status, 403, wg.text);
      assert.equal((await call('GET', '/api/v1/vpn/openvpn/ovpn0/clients/laptop/profile', auth)).status, 403);
    }
    // an operator cannot export keys either; an admin gets past the role check (the key was never generated here: 409)
    assert.equal((await call('GET', '/api/v1/vpn/wireguard/wg0/peers/laptop/config', { token: tokens.operator })).status, 403);
    const admin = await call('GET', '/api/v1/vpn/wireguard/wg0/peers/laptop/config', { token: tokens.admin });
    assert.ok(admin.status !== 401 && admin.status !== 403, `admin: ${admin.status} ${admin.text}`);
  });

  it('the metrics role reads /metrics and nothing else, and cannot open a console session', async () => {
    const m = await call('GET', '/metrics', { token: tokens.metrics });
    assert.equal(m.status, 200);
    assert.match(m.text, /^# HELP /m);
    for (const path of ['/api/v1/status', '/api/v1/config', '/api/v1/whoami', '/openapi.json']) assert.equal((await call('GET', path, { token: tokens.metrics })).status, 403, path);
    for (const body of [{ token: tokens.metrics }, { user: 'u-metrics', password }]) {
      const s = await signIn(body);
      assert.equal(s.status, 403, s.text);
      assert.equal(s.setCookie, '', 'no cookie');
    }
  });

  it('sign-in sets an HttpOnly, SameSite=Strict session cookie with an expiry (not Secure over plain HTTP) and returns the CSRF token', async () => {
    const s = await signIn({ user: 'u-operator', password });
    assert.equal(s.status, 200, s.text);
    assert.deepEqual(Object.keys(s.json).sort(), ['csrfToken', 'expiresAt', 'kind', 'role', 'sessionId', 'user', 'via']);
    assert.equal(s.json.user, 'u-operator');
    assert.equal(s.json.role, 'operator');
    assert.equal(s.json.kind, 'session');
    const expires = Date.parse(s.json.expiresAt);
    assert.ok(expires > Date.now() && expires <= Date.now() + 3600_000 + 5000, `idle expiry within the hour: ${s.json.expiresAt}`);
    const attrs = s.setCookie.split(';').map((x) => x.trim());
    assert.match(attrs[0]!, /^patronus_session=[\w-]{43}$/);
    assert.ok(attrs.includes('HttpOnly'), s.setCookie);
    assert.ok(attrs.includes('SameSite=Strict'), s.setCookie);
    assert.ok(attrs.includes('Path=/'), s.setCookie);
    assert.ok(attrs.includes(`Max-Age=${12 * 3600}`), s.setCookie);
    assert.ok(!attrs.includes('Secure'), 'not Secure over plain HTTP');
    assert.ok(!s.text.includes(attrs[0]!.split('=')[1]!), 'the cookie secret is not in the body');
    const who = await call('GET', '/api/v1/whoami', { cookie: s.cookie });
    assert.equal(who.status, 200, who.text);
    assert.deepEqual({ user: who.json.user, role: who.json.role, kind: who.json.kind, csrfToken: who.json.csrfToken }, { user: 'u-operator', role: 'operator', kind: 'session', csrfToken: s.json.csrfToken });
    const session = await call('GET', '/api/v1/session', { cookie: s.cookie });
    assert.deepEqual(session.json, who.json, 'GET /session answers as /whoami');
    const tokenWho = await call('GET', '/api/v1/whoami', { token: tokens.admin });
    assert.deepEqual(tokenWho.json, { user: 't-admin', role: 'admin', kind: 'token' });
    // wrong password, unknown user, bad token: 401, no cookie
    for (const body of [{ user: 'u-operator', password: 'wrong password' }, { user: 'nobody', password }, { token: 'pat_nope' }]) {
      const bad = await signIn(body);
      assert.equal(bad.status, 401, JSON.stringify(body));
      assert.equal(bad.setCookie, '');
    }
  });

  it('sign-in with the wrong fields: 400 that says which fields it takes, at path "body" (not "body." and "Invalid input")', async () => {
    for (const body of [{ name: 'u-operator', password }, {}]) {
      const r = await signIn(body);
      assert.equal(r.status, 400, r.text);
      assert.deepEqual(r.json.issues, [{ path: 'body', message: 'expected {"user", "password"} (a console user) or {"token"} (an API token)' }]);
      assert.equal(r.setCookie, '');
    }
  });

  it('sign-in with a token opens a session with that token\'s role', async () => {
    const s = await signIn({ token: tokens.operator });
    assert.equal(s.status, 200, s.text);
    assert.equal(s.json.user, 't-operator');
    assert.equal(s.json.role, 'operator');
    assert.equal(s.json.via, 'token');
    const r = await call('POST', '/api/v1/config/validate', { cookie: s.cookie, csrf: s.json.csrfToken, body: { config: SECRET_DOCUMENT } });
    assert.equal(r.status, 200, r.text);
    // a revision applied in a user's session names the user as its author
    const u = await signIn({ user: 'u-operator', password });
    const doc = { ...SECRET_DOCUMENT, interfaces: [{ ...SECRET_DOCUMENT.interfaces[0]!, description: 'by a session' }] };
    const applied = await call('POST', '/api/v1/config/apply', { cookie: u.cookie, csrf: u.json.csrfToken, body: { config: doc, message: 'from the console' } });
    assert.equal(applied.status, 200, applied.text);
    const rev = await call('GET', `/api/v1/revisions/${applied.json.revision}`, { token: tokens.viewer });
    assert.deepEqual([rev.json.author, rev.json.message], ['u-operator', 'from the console']);
  });

  it('CSRF: a cookie-signed request that changes something needs the session\'s X-CSRF-Token; reads and bearer requests do not', async () => {
    const s = await signIn({ user: 'u-operator', password });
    const body = { config: SECRET_DOCUMENT };
    const none = await call('POST', '/api/v1/config/validate', { cookie: s.cookie, body });
    assert.equal(none.status, 403, none.text);
    assert.match(none.json.message, /X-CSRF-Token/);
    const wrong = await call('POST', '/api/v1/config/validate', { cookie: s.cookie, csrf: `${s.json.csrfToken.slice(0, -1)}${s.json.csrfToken.endsWith('A') ? 'B' : 'A'}`, body });
    assert.equal(wrong.status, 403, wrong.text);
    // another session's token is wrong for this one
    const other = await signIn({ user: 'u-operator', password });
    assert.equal((await call('POST', '/api/v1/config/validate', { cookie: s.cookie, csrf: other.json.csrfToken, body })).status, 403);
    assert.equal((await call('POST', '/api/v1/config/validate', { cookie: s.cookie, csrf: s.json.csrfToken, body })).status, 200);
    assert.equal((await call('GET', '/api/v1/status', { cookie: s.cookie })).status, 200, 'reads need no CSRF token');
    assert.equal((await call('POST', '/api/v1/config/validate', { token: tokens.operator, body })).status, 200, 'bearer requests need none');
    // sign-out is a change too
    assert.equal((await call('DELETE', '/api/v1/session', { cookie: s.cookie })).status, 403);
    // a viewer session with the right token is still only a viewer
    const v = await signIn({ user: 'u-viewer', password });
    const apply = await call('POST', '/api/v1/config/apply', { cookie: v.cookie, csrf: v.json.csrfToken, body });
    assert.equal(apply.status, 403, apply.text);
    assert.match(apply.json.message, /needs the operator role; user "u-viewer" has viewer/);
  });

  it('sign-out and revocation end sessions; a non-admin sees and revokes only its own, an admin all', async () => {
    const a = await signIn({ user: 'u-viewer', password });
    const b = await signIn({ user: 'u-viewer', password });
    const op = await signIn({ user: 'u-operator', password });
    const mine = await call('GET', '/api/v1/sessions', { cookie: a.cookie });
    assert.equal(mine.status, 200, mine.text);
    assert.ok(mine.json.every((x: { user: string }) => x.user === 'u-viewer'), 'only its own');
    assert.deepEqual(mine.json.filter((x: { current: boolean }) => x.current).map((x: { id: string }) => x.id), [a.json.sessionId]);
    assert.ok(mine.json.some((x: { id: string }) => x.id === b.json.sessionId));
    assert.ok(!mine.json.some((x: { id: string }) => x.id === op.json.sessionId));
    // somebody else's session is not found for a viewer
    assert.equal((await call('DELETE', `/api/v1/sessions/${op.json.sessionId}`, { cookie: a.cookie, csrf: a.json.csrfToken })).status, 404);
    assert.equal((await call('GET', '/api/v1/whoami', { cookie: op.cookie })).status, 200, 'still signed in');
    // revoke its own other session
    const rv = await call('DELETE', `/api/v1/sessions/${b.json.sessionId}`, { cookie: a.cookie, csrf: a.json.csrfToken });
    assert.equal(rv.status, 200, rv.text);
    const gone = await call('GET', '/api/v1/whoami', { cookie: b.cookie });
    assert.equal(gone.status, 401);
    assert.match(gone.headers.get('set-cookie') ?? '', /^patronus_session=; .*Max-Age=0/, 'the dead cookie is cleared');
    // an admin lists everyone's and revokes the operator's
    const all = await call('GET', '/api/v1/sessions', { token: tokens.admin });
    assert.ok(all.json.some((x: { id: string }) => x.id === op.json.sessionId) && all.json.some((x: { id: string }) => x.id === a.json.sessionId));
    assert.equal((await call('DELETE', `/api/v1/sessions/${op.json.sessionId}`, { token: tokens.admin })).status, 200);
    assert.equal((await call('GET', '/api/v1/whoami', { cookie: op.cookie })).status, 401);
    // sign-out
    const out = await call('DELETE', '/api/v1/session', { cookie: a.cookie, csrf: a.json.csrfToken });
    assert.equal(out.status, 200, out.text);
    assert.match(out.headers.get('set-cookie') ?? '', /^patronus_session=; .*Max-Age=0/);
    assert.equal((await call('GET', '/api/v1/whoami', { cookie: a.cookie })).status, 401);
    // removing a user or token ends its sessions
    const t = await signIn({ token: tokens.viewer });
    const u = await signIn({ user: 'u-admin', password });
    store.addUser('temp', 'viewer', await hashPassword(password));
    const tmp = await signIn({ user: 'temp', password });
    assert.equal((await call('GET', '/api/v1/whoami', { cookie: tmp.cookie })).status, 200);
    store.removeUser('temp');
    assert.equal((await call('GET', '/api/v1/whoami', { cookie: tmp.cookie })).status, 401);
    assert.equal((await call('GET', '/api/v1/whoami', { cookie: t.cookie })).status, 200);
    assert.equal((await call('GET', '/api/v1/whoami', { cookie: u.cookie })).status, 200);
  });

  it('an event stream (SSE) ends when its session is revoked, signed out or its user removed, or its bearer token removed', async () => {
    /** Opens GET /api/v1/events?follow=1 with the cookie or a bearer token; resolves `ended` when the server closes it. */
    const follow = async (cookie: string, token?: string) => {
      const res = await fetch(`${base}/api/v1/events?follow=1&heartbeat=0.5`, { headers: token ? { authorization: `Bearer ${token}` } : { cookie } });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      await reader.read(); // the stream's first lines: it is open
      const ended = (async () => {
        try {
          while (!(await reader.read()).done);
        } catch {
          /* a reset ends it too */
        }
        return Date.now();
      })();
      return { ended, stop: () => reader.cancel().catch(() => undefined) };
    };
    const within = async (p: Promise<number>, ms: number, what: string) => {
      const t0 = Date.now();
      const end = await Promise.race([p, new Promise<'open'>((r) => setTimeout(() => r('open'), ms).unref())]);
      assert.notEqual(end, 'open', `${what}: the stream was still open after ${ms} ms`);
      return (end as number) - t0;
    };
    const a = await signIn({ user: 'u-viewer', password });
    const sa = await follow(a.cookie);
    assert.equal((await call('DELETE', `/api/v1/sessions/${a.json.sessionId}`, { token: tokens.admin })).status, 200);
    await within(sa.ended, 30_000, 'revoked');
    const b = await signIn({ user: 'u-viewer', password });
    const sb = await follow(b.cookie);
    assert.equal((await call('DELETE', '/api/v1/session', { cookie: b.cookie, csrf: b.json.csrfToken })).status, 200);
    await within(sb.ended, 30_000, 'signed out');
    // removed outside the server (patronus user remove): noticed by the periodic check (every 10 s)
    store.addUser('streamer', 'viewer', await hashPassword(password));
    const c = await signIn({ user: 'streamer', password });
    const sc = await follow(c.cookie);
    const temp = store.addToken('streamer', 'viewer');
    const sd = await follow('', temp);
    store.removeUser('streamer');
    store.removeToken('streamer');
    await within(sc.ended, 40_000, 'user removed');
    await within(sd.ended, 40_000, 'token removed');
    for (const x of [sa, sb, sc, sd]) await x.stop();
  });

  it('sessions live in the store (0600): they survive a server restart', async () => {
    const s = await signIn({ user: 'u-admin', password });
    await app.close();
    store.close();
    store = Store.open(join(dir, 'patronus.db'));
    engine.close();
    engine = new Engine({ domains, host: new Host({ netns: 'pt-000000-unused', stateDir: dir }), store, subsystems: [] });
    await start();
    const who = await call('GET', '/api/v1/whoami', { cookie: s.cookie });
    assert.equal(who.status, 200, who.text);
    assert.equal(who.json.user, 'u-admin');
    for (const f of ['patronus.db', 'patronus.db-wal']) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
  });

  it('sign-in limit: after 5 failures a minute (20 s here) every attempt gets 429 with Retry-After, even the right password', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await signIn({ user: 'u-viewer', password: `wrong ${i}` })).status, 401, `failure ${i + 1}`);
    const locked = await signIn({ user: 'u-viewer', password });
    assert.equal(locked.status, 429, locked.text);
    const retry = Number(locked.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 20, `Retry-After ${retry}`);
    assert.equal(locked.setCookie, '');
    // the address is limited too: another user, or a token, from here
    assert.equal((await signIn({ token: tokens.admin })).status, 429);
    // once the window passes, the right password works again
    const deadline = Date.now() + 60_000;
    let ok: number;
    do {
      await new Promise((r) => setTimeout(r, 500));
      ok = (await signIn({ user: 'u-viewer', password })).status;
    } while (ok === 429 && Date.now() < deadline);
    assert.equal(ok, 200);
  });

  it('CLI: token add --role, an existing name refused in a sentence, user add with the password on stdin', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'pt-roles-cli-'));
    const run = (args: string[], input?: string) => execa('node', [cli, '--state-dir', stateDir, ...args], { reject: false, ...(input !== undefined ? { input } : {}) });
    try {
      const add = await run(['--json', 'token', 'add', 'prometheus', '--role', 'metrics']);
      assert.equal(add.exitCode, 0, add.stderr);
      assert.equal(JSON.parse(add.stdout).role, 'metrics');
      const again = await run(['token', 'add', 'prometheus', '--role', 'metrics']);
      assert.equal(again.exitCode, 2);
      assert.match(again.stderr, /a token named "prometheus" already exists/);
      assert.doesNotMatch(again.stderr, /SQLITE|UNIQUE|constraint/i);
      const bad = await run(['token', 'add', 'x', '--role', 'root']);
      assert.equal(bad.exitCode, 2);
      assert.match(bad.stderr, /"root" is not a role \(metrics, viewer, operator, admin\)/);
      assert.equal((await run(['token', 'add', 'legacy'])).exitCode, 0);
      assert.equal((await run(['token', 'add', 'ci'])).exitCode, 0);
      assert.equal((await run(['token', 'role', 'ci', 'operator'])).exitCode, 0);
      const list = JSON.parse((await run(['--json', 'token', 'list'])).stdout) as { name: string; role: string }[];
      assert.deepEqual(list.map((t) => [t.name, t.role]), [['prometheus', 'metrics'], ['legacy', 'admin'], ['ci', 'operator']]);
      const short = await run(['user', 'add', 'alice', '--role', 'operator'], 'short\n');
      assert.equal(short.exitCode, 2);
      assert.match(short.stderr, /at least 8 characters/);
      const u = await run(['user', 'add', 'alice', '--role', 'operator'], 'a long enough password\n');
      assert.equal(u.exitCode, 0, u.stderr);
      const dup = await run(['user', 'add', 'alice'], 'a long enough password\n');
      assert.equal(dup.exitCode, 2);
      assert.match(dup.stderr, /a user named "alice" already exists/);
      using s = Store.open(join(stateDir, 'patronus.db'));
      const stored = s.user('alice')!;
      assert.equal(stored.role, 'operator');
      assert.match(stored.passwordHash, /^scrypt\$32768\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe('routes without a declared role', { timeout: 300_000 }, () => {
  let dir: string;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  after(async () => {
    await app?.close();
    engine?.close();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('need admin, unless a plugin gives its routes a default (defaultRouteRole, for e.g. @fastify/static)', async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-roles-default-'));
    store = Store.open(join(dir, 'patronus.db'));
    engine = new Engine({ domains, host: new Host({ netns: 'pt-000000-unused', stateDir: dir }), store, subsystems: [] });
    app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }) });
    app.get('/no-role', async () => ({ ok: true }));
    await app.register(async (scope) => {
      defaultRouteRole(scope, 'public');
      scope.get('/console/app.js', async () => ({ ok: true }));
      scope.get('/console/private', { config: { role: 'viewer' } }, async () => ({ ok: true }));
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const viewer = store.addToken('v', 'viewer');
    const admin = store.addToken('a', 'admin');
    const get = (path: string, token?: string) => fetch(`${base}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {}).then((r) => r.status);
    assert.equal(await get('/no-role'), 401);
    assert.equal(await get('/no-role', viewer), 403);
    assert.equal(await get('/no-role', admin), 200);
    assert.equal(await get('/console/app.js'), 200);
    assert.equal(await get('/console/private'), 401);
    assert.equal(await get('/console/private', viewer), 200);
    assert.equal(app.routeRoles.get('GET /console/app.js'), 'public');
    assert.equal(app.routeRoles.get('GET /no-role'), 'admin');
    // an unknown path: 401 without credentials, 404 with any
    assert.equal(await get('/nope'), 401);
    assert.equal(await get('/nope', viewer), 404);
  });
});
