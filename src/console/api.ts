/**
 * The console's API client. Types come from the server's OpenAPI document
 * (generated/api.d.ts, made by the build with openapi-typescript): no API
 * shape is written by hand here.
 *
 * Credentials: the session cookie (httpOnly, set by POST /api/v1/session) and
 * the CSRF token that comes with it, kept in memory only, sent as
 * X-CSRF-Token on every mutation. A server without sessions (no
 * /api/v1/session route) is signed in to with an API token, also kept in
 * memory only and sent as a bearer header: nothing goes to localStorage.
 */
import type { components, paths } from './generated/api';

export type Schemas = components['schemas'];
export type DashboardFrame = Schemas['DashboardFrame'];

type JsonOk<T> = T extends { responses: { 200: { content: { 'application/json': infer R } } } } ? R : unknown;
type JsonBody<T> = T extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;
export type Get<P extends keyof paths> = JsonOk<paths[P]['get']>;
export type Post<P extends keyof paths> = JsonOk<paths[P]['post']>;
export type PostBody<P extends keyof paths> = JsonBody<paths[P]['post']>;

export type Role = 'admin' | 'operator' | 'viewer' | 'metrics';
export interface Identity {
  user: string;
  role: Role;
  kind: 'session' | 'token';
}

let csrfToken: string | undefined;
let bearer: string | undefined;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: { message?: string; issues?: { path: string; message: string; line?: number; column?: number }[]; report?: unknown } | undefined,
  ) {
    super(message);
  }
}

function headers(method: string, json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  if (json) h['content-type'] = 'application/json';
  if (bearer) h.authorization = `Bearer ${bearer}`;
  if (method !== 'GET' && csrfToken) h['x-csrf-token'] = csrfToken;
  return h;
}

export async function request<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, { method, credentials: 'same-origin', headers: headers(method, body !== undefined), ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  if (!res.ok) {
    const b = json as { message?: string } | undefined;
    if (res.status === 401 && onSignedOut) onSignedOut();
    throw new ApiError(res.status, b?.message ?? `${method} ${path}: HTTP ${res.status}`, typeof json === 'object' ? (json as ApiError['body']) : undefined);
  }
  return json as T;
}

/** Text or binary exports (wg-quick config, QR code SVG, .ovpn profile). */
export async function download(path: string): Promise<Blob> {
  const res = await fetch(path, { credentials: 'same-origin', headers: headers('GET', false) });
  if (!res.ok) {
    const text = await res.text();
    let message = `GET ${path}: HTTP ${res.status}`;
    try {
      message = (JSON.parse(text) as { message: string }).message;
    } catch {}
    throw new ApiError(res.status, message, undefined);
  }
  return res.blob();
}

export const get = <P extends keyof paths>(path: P, query = ''): Promise<Get<P>> => request('GET', `${path}${query}`);
export const post = <P extends keyof paths>(path: P, body?: PostBody<P>): Promise<Post<P>> => request('POST', path, body ?? {});

let onSignedOut: (() => void) | undefined;
export function whenSignedOut(f: () => void): void {
  onSignedOut = f;
}

/** The identity of this browser's session, or undefined when signed out. */
export async function resume(): Promise<Identity | undefined> {
  try {
    // GET /api/v1/session hands back the csrf token of the cookie's session (it lives in memory only)
    const s = await request<{ csrfToken?: string; role: Role; user: string }>('GET', '/api/v1/session');
    csrfToken = s.csrfToken;
    return { user: s.user, role: s.role, kind: 'session' };
  } catch {
    return undefined;
  }
}

export async function signIn(form: { user: string; password: string } | { token: string }): Promise<Identity> {
  const res = await fetch('/api/v1/session', { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: JSON.stringify(form) });
  // a server without console sessions answers 404, or 401 from its bearer-only gate
  const sessionless = res.status === 404 || (res.status === 401 && /bearer token/i.test(await res.clone().text()));
  if (sessionless && 'token' in form) {
    // a server without console sessions: the token itself, in memory, as a bearer header
    bearer = form.token;
    try {
      await request('GET', '/api/v1/status');
    } catch (e) {
      bearer = undefined;
      throw e instanceof ApiError && e.status === 401 ? new ApiError(401, 'invalid token', undefined) : e;
    }
    return { user: 'token', role: 'admin', kind: 'token' };
  }
  const text = await res.text();
  const body = (text ? JSON.parse(text) : {}) as { csrfToken?: string; role?: Role; user?: string; message?: string };
  if (!res.ok) throw new ApiError(res.status, body.message ?? `sign-in failed: HTTP ${res.status}`, body);
  csrfToken = body.csrfToken;
  return { user: body.user ?? ('user' in form ? form.user : 'token'), role: body.role ?? 'viewer', kind: 'session' };
}

export async function signOut(): Promise<void> {
  if (bearer) bearer = undefined;
  else await request('DELETE', '/api/v1/session').catch(() => undefined);
  csrfToken = undefined;
}

/**
 * Server-sent events over fetch (EventSource cannot send a bearer header):
 * calls onEvent for each event until the returned stop() is called; reconnects
 * after a dropped connection.
 */
export function stream(path: string, onEvent: (event: string, data: string) => void, onState?: (connected: boolean, error?: string) => void): () => void {
  const ctl = new AbortController();
  let stopped = false;
  const run = async () => {
    while (!stopped) {
      try {
        const res = await fetch(path, { credentials: 'same-origin', headers: { ...headers('GET', false), accept: 'text/event-stream' }, signal: ctl.signal });
        if (!res.ok || !res.body) {
          if (res.status === 401 && onSignedOut) onSignedOut();
          const text = await res.text().catch(() => '');
          let message = `HTTP ${res.status}`;
          try {
            message = (JSON.parse(text) as { message: string }).message;
          } catch {}
          onState?.(false, message);
          if (res.status === 401 || res.status === 403 || res.status === 404) return;
        } else {
          onState?.(true);
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value;
            let i: number;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              let event = 'message';
              const data: string[] = [];
              for (const line of block.split('\n')) {
                if (line.startsWith('event:')) event = line.slice(6).trim();
                else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
              }
              if (data.length) onEvent(event, data.join('\n'));
            }
          }
          onState?.(false, 'stream ended');
        }
      } catch (e) {
        if (stopped) return;
        onState?.(false, (e as Error).message);
      }
      await new Promise((r) => setTimeout(r, 1500));
    }
  };
  void run();
  return () => {
    stopped = true;
    ctl.abort();
  };
}
