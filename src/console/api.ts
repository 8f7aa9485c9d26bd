/**
 * The console's API client. Types come from the server's OpenAPI document
 * (generated/api.d.ts, made by the build with openapi-typescript): no API
 * shape is written by hand here.
 *
 * Credentials: the session cookie (httpOnly, SameSite=Strict, set by POST
 * /api/v1/session) and the CSRF token that comes with it, kept in memory only
 * and sent as X-CSRF-Token on every mutation; after a reload GET
 * /api/v1/session hands it back. Nothing goes to localStorage.
 */
import type { components, paths } from './generated/api';

export type Schemas = components['schemas'];
export type DashboardFrame = Schemas['DashboardFrame'];
export type FirewallEvent = Get<'/api/v1/events'>['events'][number];

type JsonError<T> = T extends { responses: { 400: { content: { 'application/json': infer R } } } } ? R : never;
/** The one error shape every route answers with (src/api/errors.ts), as the document declares it for a 400. */
export type ErrorBody = JsonError<paths['/api/v1/config/validate']['post']>;
type JsonOk<T> = T extends { responses: { 200: { content: { 'application/json': infer R } } } } ? R : unknown;
type JsonBody<T> = T extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;
export type Get<P extends keyof paths> = JsonOk<paths[P]['get']>;
export type Post<P extends keyof paths> = JsonOk<paths[P]['post']>;
export type PostBody<P extends keyof paths> = JsonBody<paths[P]['post']>;
export type Delete<P extends keyof paths> = JsonOk<paths[P]['delete']>;

export type Role = Post<'/api/v1/session'>['role'];
export interface Identity {
  user: string;
  role: Role;
  kind: 'session' | 'token';
}

let csrfToken: string | undefined;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: Partial<ErrorBody> | undefined,
  ) {
    super(message);
  }
}

function headers(method: string, json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  if (json) h['content-type'] = 'application/json';
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
    const b = json as Partial<ErrorBody> | undefined;
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
      message = (JSON.parse(text) as ErrorBody).message;
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
    const s = await request<Get<'/api/v1/session'>>('GET', '/api/v1/session');
    csrfToken = s.csrfToken;
    return { user: s.user, role: s.role, kind: 'session' };
  } catch {
    return undefined;
  }
}

export async function signIn(form: { user: string; password: string } | { token: string }): Promise<Identity> {
  const s = await request<Post<'/api/v1/session'>>('POST', '/api/v1/session', form);
  csrfToken = s.csrfToken;
  return { user: s.user, role: s.role, kind: 'session' };
}

export async function signOut(): Promise<void> {
  await request('DELETE', '/api/v1/session').catch(() => undefined);
  csrfToken = undefined;
}

/**
 * Server-sent events over fetch (fetch gives the status of a refused stream, which EventSource hides):
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
            message = (JSON.parse(text) as ErrorBody).message;
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
