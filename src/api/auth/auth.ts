/**
 * Authentication and authorization for every route, in one onRequest hook:
 *
 * - who: `Authorization: Bearer <token>` (an API token, stored hashed), or
 *   the `patronus_session` cookie of a console session (POST /api/v1/session
 *   with a user's password or a token). A bearer header wins over a cookie.
 * - may they: the route's `config.role` (src/api/auth/roles.ts) against the
 *   principal's role; a route that declares none needs admin.
 * - CSRF: a request authenticated by the cookie that changes something
 *   (POST, PUT, PATCH, DELETE) must carry `X-CSRF-Token`, the value sign-in
 *   and /whoami return. It is derived from the session's secret (SHA-256 of a
 *   label and the secret), so a page on another origin, which can make the
 *   browser send the cookie but cannot read it, cannot know it. Bearer
 *   requests need none: browsers never add that header by themselves.
 *
 * The cookie is HttpOnly, SameSite=Strict, Path=/, Secure when the server
 * speaks TLS, with Max-Age the absolute lifetime; the server also ends a
 * session unused for the idle timeout. Sessions live in the store (they
 * survive a restart) and follow their user or token: removing it, changing
 * its role or a user's password applies to its open sessions at once.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { SessionInfo, Store } from '../../store/store.js';
import { errorBody } from '../errors.js';
import { allows, type Role, type RouteRole } from './roles.js';
import { decoyHash, verifyPassword } from './passwords.js';
import { DEFAULT_LOGIN_LIMIT, LoginLimiter, addressKey, type LoginLimitOptions } from './login-limit.js';

export const SESSION_COOKIE = 'patronus_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface SessionTimes {
  /** a session unused this long ends (seconds) */
  idleTimeout: number;
  /** a session ends this long after sign-in whatever its use (seconds) */
  lifetime: number;
}

export const DEFAULT_SESSION_TIMES: SessionTimes = { idleTimeout: 3600, lifetime: 12 * 3600 };

export interface AuthOptions {
  store: Store;
  /** mark the cookie Secure (the server speaks TLS) */
  secureCookie: boolean;
  sessions?: SessionTimes;
  loginLimit?: LoginLimitOptions;
  /** the REST prefix the session routes live under */
  prefix: string;
}

/** Who made a request (set by the hook on every authenticated request). */
export interface Principal {
  /** the user's name, or the token's */
  user: string;
  role: Role;
  kind: 'session' | 'token';
  /** a token's id (bearer requests, and sessions opened with a token) */
  tokenId?: number;
  /** a user's id (sessions opened with a password) */
  userId?: number;
  session?: SessionInfo;
  csrfToken?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** "METHOD url" -> the role each route declared (HEAD routes included) */
    routeRoles: Map<string, RouteRole>;
  }
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** how often open streams check that their session still lives */
const STREAM_RECHECK_MS = 10_000;

/**
 * Installs the hook and the session routes. Call before any route is added
 * (the onRoute hook records every route's role).
 */
export function installAuth(app: FastifyInstance, opts: AuthOptions): void {
  const { store } = opts;
  const times = opts.sessions ?? DEFAULT_SESSION_TIMES;
  const limiter = new LoginLimiter(opts.loginLimit ?? DEFAULT_LOGIN_LIMIT);

  app.decorateRequest('principal', null);
  // the route options objects, read when asked: an onRoute hook of a plugin (defaultRouteRole) may set the role after this one ran
  const routes: { key: string; route: { config?: { role?: RouteRole } } }[] = [];
  app.decorate('routeRoles', { getter: () => new Map(routes.map((r) => [r.key, r.route.config?.role ?? 'admin'])) });
  app.addHook('onRoute', (route) => {
    for (const m of [route.method].flat()) routes.push({ key: `${m} ${route.url}`, route });
  });

  app.addHook('onRequest', async (req, reply) => {
    const need: RouteRole = req.routeOptions.config?.role ?? 'admin';
    if (need === 'public' && !req.is404) return;
    const who = authenticate(req);
    if ('error' in who) {
      if (who.clearCookie) clearCookie(reply, opts.secureCookie);
      reply.header('www-authenticate', who.invalid ? 'Bearer realm="patronus", error="invalid_token"' : 'Bearer realm="patronus"');
      return reply.code(401).send(errorBody(401, who.error));
    }
    if (who.kind === 'session' && MUTATING.has(req.method) && !sameSecret(req.headers[CSRF_HEADER], who.csrfToken!)) {
      return reply.code(403).send(errorBody(403, `a request signed in by the ${SESSION_COOKIE} cookie that changes something needs the X-CSRF-Token header of its session (sign-in and /api/v1/whoami return it)`));
    }
    // an unknown path: any signed-in principal learns it is unknown (404), nobody else does
    if (req.is404) return;
    if (!allows(who.role, need)) {
      return reply.code(403).send(errorBody(403, `${req.method} ${req.routeOptions.url} needs the ${need} role; ${who.kind === 'token' ? 'token' : 'user'} "${who.user}" has ${who.role}`));
    }
    req.principal = who;
    track(who.session ? who.session.id : `token:${who.tokenId}`, reply.raw);
  });

  // Responses still streaming (server-sent events) of each session or bearer token: they were
  // authorized when they began, so they end when their session does (sign-out and revocation at
  // once; expiry, a removed user or token, a password change within STREAM_RECHECK_MS)
  const streams = new Map<string, Set<ServerResponse>>();
  const track = (id: string, res: ServerResponse) => {
    let set = streams.get(id);
    if (!set) streams.set(id, (set = new Set()));
    set.add(res);
    res.once('close', () => {
      set.delete(res);
      if (!set.size && streams.get(id) === set) streams.delete(id);
    });
  };
  const endStreams = (id: string, except?: ServerResponse) => {
    for (const res of streams.get(id) ?? []) if (res !== except && res.headersSent) res.end();
  };
  const recheck = setInterval(() => {
    for (const id of streams.keys()) if (id.startsWith('token:') ? !store.hasToken(Number(id.slice(6))) : !store.session(id)) endStreams(id);
  }, STREAM_RECHECK_MS);
  recheck.unref();
  app.addHook('onClose', async () => clearInterval(recheck));

  /** The principal of a request, or why there is none. */
  function authenticate(req: FastifyRequest): Principal | { error: string; invalid?: boolean; clearCookie?: boolean } {
    const header = req.headers.authorization;
    // an empty header is no header (as before roles)
    if (header) {
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      if (!m) return { error: 'Authorization header must be "Bearer <token>"' };
      const t = store.tokenAuth(m[1]!);
      if (!t) return { error: 'invalid token', invalid: true };
      return { user: t.name, role: t.role, kind: 'token', tokenId: t.id };
    }
    const secret = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (secret === undefined) return { error: `missing bearer token (Authorization: Bearer <token>) or ${SESSION_COOKIE} cookie (POST /api/v1/session)` };
    const s = store.sessionBySecret(secret);
    if (!s) return { error: 'the session has expired or was signed out or revoked: sign in again', invalid: true, clearCookie: true };
    return {
      user: s.user,
      role: s.role,
      kind: 'session',
      ...(s.userId !== null ? { userId: s.userId } : {}),
      ...(s.tokenId !== null ? { tokenId: s.tokenId } : {}),
      session: s,
      csrfToken: csrfFor(secret),
    };
  }

  const r = app.withTypeProvider<ZodTypeProvider>();
  const P = opts.prefix;

  r.post(`${P}/session`, { config: { role: 'public' }, schema: { summary: 'Sign in (a console user and password, or an API token): sets the session cookie and returns the CSRF token', body: signInBody } }, async (req, reply) => {
    const b = req.body;
    const byUser = 'user' in b;
    const keys = [addressKey(req.ip), ...(byUser ? [`user:${b.user}`] : [])];
    const wait = limiter.retryAfter(keys);
    if (wait > 0) return tooMany(reply, wait);
    let owner: { userId: number } | { tokenId: number } | undefined;
    let role: Role | undefined;
    if (byUser) {
      const u = store.user(b.user);
      // an unknown name costs the same scrypt as a wrong password: timing does not tell which names exist
      const ok = await verifyPassword(b.password, u?.passwordHash ?? (await decoyHash()));
      if (u && ok) {
        owner = { userId: u.id };
        role = u.role;
      }
    } else {
      const t = store.tokenAuth(b.token);
      if (t) {
        owner = { tokenId: t.id };
        role = t.role;
      }
    }
    if (!owner || !role) {
      limiter.fail(keys);
      return reply.code(401).send(errorBody(401, byUser ? 'wrong user name or password' : 'invalid token'));
    }
    if (byUser) limiter.succeed(`user:${b.user}`);
    if (!allows(role, 'viewer')) return reply.code(403).send(errorBody(403, `the ${role} role cannot sign in to the console (it may read /metrics only)`));
    const { secret, info } = store.createSession({ ...owner, idleSeconds: times.idleTimeout, lifetimeSeconds: times.lifetime, address: req.ip, ...(req.headers['user-agent'] ? { userAgent: req.headers['user-agent'] } : {}) });
    reply.header('set-cookie', `${SESSION_COOKIE}=${secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${times.lifetime}${opts.secureCookie ? '; Secure' : ''}`);
    reply.header('cache-control', 'no-store');
    return { user: info.user, role: info.role, kind: 'session' as const, via: info.via, sessionId: info.id, csrfToken: csrfFor(secret), expiresAt: info.expiresAt };
  });

  r.delete(`${P}/session`, { config: { role: 'viewer' }, schema: { summary: 'Sign out: ends the session of the cookie and clears it' } }, async (req, reply) => {
    const p = req.principal!;
    if (p.kind !== 'session') return reply.code(400).send(errorBody(400, 'this request is signed in by a bearer token, not a session cookie: there is no session to sign out of (DELETE /api/v1/sessions/{id} ends another one)'));
    store.removeSession(p.session!.id);
    endStreams(p.session!.id, reply.raw);
    clearCookie(reply, opts.secureCookie);
    return { signedOut: p.session!.id };
  });

  const whoami = async (req: FastifyRequest) => {
    const p = req.principal!;
    return {
      user: p.user,
      role: p.role,
      kind: p.kind,
      ...(p.session ? { via: p.session.via, sessionId: p.session.id, csrfToken: p.csrfToken!, expiresAt: p.session.expiresAt } : {}),
    };
  };
  r.get(`${P}/whoami`, { config: { role: 'viewer' }, schema: { summary: 'Who this request is signed in as: user (or token) name, role, session or token; for a session its CSRF token and expiry' } }, whoami);
  // the same answer where a console resuming after a reload looks for its session (and its CSRF token, kept in memory only)
  r.get(`${P}/session`, { config: { role: 'viewer' }, schema: { summary: 'The session of the cookie (as /whoami): user, role, CSRF token, expiry' } }, whoami);

  r.get(`${P}/sessions`, { config: { role: 'viewer' }, schema: { summary: 'Open console sessions, newest first: every one for an admin, otherwise your own' } }, async (req) => {
    const p = req.principal!;
    const list = p.role === 'admin' ? store.listSessions() : store.listSessions(p.userId !== undefined ? { userId: p.userId } : { tokenId: p.tokenId! });
    return list.map((s) => sessionJson(s, p));
  });

  r.delete(`${P}/sessions/:id`, { config: { role: 'viewer' }, schema: { summary: 'Revoke a session (your own; an admin any)', params: z.object({ id: z.string().min(1).max(64) }) } }, async (req, reply) => {
    const p = req.principal!;
    const s = store.session(req.params.id);
    // somebody else's session is "not found" to a non-admin: its id says nothing
    if (!s || (p.role !== 'admin' && !owns(p, s))) return reply.code(404).send(errorBody(404, `no session ${req.params.id}${p.role === 'admin' ? '' : ' of yours'}`));
    store.removeSession(s.id);
    endStreams(s.id, reply.raw);
    if (p.session?.id === s.id) clearCookie(reply, opts.secureCookie);
    return { revoked: s.id };
  });
}

/**
 * For an encapsulated plugin whose routes cannot carry options (e.g.
 * @fastify/static's): every route it adds that declares no role gets `role`.
 *   app.register(async (scope) => { defaultRouteRole(scope, 'public'); await scope.register(fastifyStatic, ...) })
 */
export function defaultRouteRole(scope: FastifyInstance, role: RouteRole): void {
  scope.addHook('onRoute', (route) => {
    route.config = { ...route.config, role: route.config?.role ?? role };
  });
}

const signInBody = z.union([
  z.object({ user: z.string().min(1).max(64).describe('console user (patronus user add)'), password: z.string().min(1).max(1024) }).strict(),
  z.object({ token: z.string().min(1).max(256).describe('an API token (patronus token add)') }).strict(),
], { error: 'expected {"user", "password"} (a console user) or {"token"} (an API token)' });

/** The session as the API shows it (whose it is by name, not by row id). */
function sessionJson(s: SessionInfo, p: Principal) {
  const { userId: _u, tokenId: _t, ...rest } = s;
  return { ...rest, current: p.session?.id === s.id };
}

function owns(p: Principal, s: SessionInfo): boolean {
  return p.userId !== undefined ? s.userId === p.userId : p.tokenId !== undefined && s.tokenId === p.tokenId;
}

function tooMany(reply: FastifyReply, seconds: number): FastifyReply {
  reply.header('retry-after', String(seconds));
  return reply.code(429).send(errorBody(429, `too many failed sign-ins from this address or for this user: try again in ${seconds} s`));
}

function clearCookie(reply: FastifyReply, secure: boolean): void {
  reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`);
}

/** The CSRF token of a session: a one-way function of its secret. */
function csrfFor(secret: string): string {
  return createHash('sha256').update('patronus-csrf\0').update(secret).digest('base64url');
}

function sameSecret(given: string | string[] | undefined, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** One cookie's value from a Cookie header (RFC 6265 pairs separated by "; "). */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim() || undefined;
  }
  return undefined;
}
