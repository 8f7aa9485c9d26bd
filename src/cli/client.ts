/**
 * How the CLI reaches Patronus: over REST to the running server (default),
 * or directly on the store and the kernel (--direct: no server needed; the
 * engine's cross-process lock keeps it from racing a running server;
 * src/cli/direct.ts).
 *
 * This module stays light on purpose: every REST command loads it, and a
 * CLI that imported the engine, the schemas and the subsystems spent ~1 s of
 * CPU starting before it sent anything (more than a one-rule apply takes on
 * the server).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sourceText } from '../config/source-text.js';
import type { ApplyReport, ConfigSource, Plan, ProgressEvent } from '../apply/engine.js';
import type { Revision } from '../store/store.js';
import { ConfigError, formatFileIssue, formatIssue, formatPath } from '../config/issues.js';
import { DEFAULT_STATE_DIR, LAB_STATE_DIR } from '../api/state-dir.js';
import { trace } from '../system/trace.js';

export interface RuleRow {
  subsystem: string;
  rule: string;
  action: string | null;
  packets: number;
  bytes: number;
  /** rate-limit rules: packets over the limit (dropped) */
  rateLimited?: number;
}

/** GET /api/v1/services: each subsystem's status (free-form, JSON-safe) or the error reading it. */
export type ServiceRow = { subsystem: string; status?: unknown; error?: string };

export interface Client {
  validate(src: ConfigSource): Promise<void>;
  plan(src: ConfigSource): Promise<Plan>;
  apply(src: ConfigSource, opts: { message: string; confirmWithin?: number; onProgress?: (e: ProgressEvent) => void }): Promise<ApplyReport>;
  confirm(): Promise<Revision>;
  rollback(to?: number, opts?: { onProgress?: (e: ProgressEvent) => void }): Promise<ApplyReport>;
  status(): Promise<unknown>;
  services(): Promise<ServiceRow[]>;
  rules(): Promise<{ rules: RuleRow[]; verdicts: { subsystem: string; direction: string; verdict: string; packets: number; bytes: number }[] }>;
  revisions(limit: number): Promise<Revision[]>;
  close(): Promise<void>;
}

/** A failure the server reported (its JSON error body). */
export class RemoteError extends Error {
  constructor(
    readonly statusCode: number,
    readonly body: { message?: string; issues?: { path: string; message: string; line?: number; column?: number }[]; report?: unknown },
  ) {
    super(body.message ?? `HTTP ${statusCode}`);
    this.name = 'RemoteError';
  }
}

export class RestClient implements Client {
  constructor(
    private readonly base: string,
    private readonly token: string | undefined,
    /** where the token came from (findTokenWithOrigin), named when the server answers 401 */
    private readonly tokenOrigin?: string,
  ) {}

  /** The server's error; a 401 also says which token was refused, or where none was found. */
  private refused(status: number, json: RemoteError['body'] | undefined): RemoteError {
    const body = json ?? {};
    if (status !== 401 || !this.tokenOrigin) return new RemoteError(status, body);
    return new RemoteError(status, { ...body, message: `${body.message ?? 'unauthorized'} (${this.tokenOrigin})` });
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.base), {
        method,
        headers: { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (e) {
      throw requestFailure(e, this.base, `${method} ${path}`);
    }
    const text = await res.text();
    const json = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw this.refused(res.status, json);
    return json as T;
  }

  private body(src: ConfigSource) {
    return { ...('document' in src ? { config: src.document } : { config: sourceText(src), ...(src.format ? { format: src.format } : {}) }), ...(src.allowEmpty ? { allowEmpty: true } : {}) };
  }

  async validate(src: ConfigSource) {
    await this.call('POST', '/api/v1/config/validate', this.body(src));
  }
  plan(src: ConfigSource) {
    return this.call<Plan>('POST', '/api/v1/config/plan', this.body(src));
  }
  /**
   * Streams (Accept: application/x-ndjson): the server reports each step
   * and a heartbeat every 10 s, so no client timeout cuts off an apply the
   * server is still running, however long it takes.
   */
  apply(src: ConfigSource, opts: { message: string; confirmWithin?: number; onProgress?: (e: ProgressEvent) => void }) {
    const { onProgress, ...fields } = opts;
    return this.streamed('/api/v1/config/apply', { ...this.body(src), ...(src.expect ? { expect: src.expect } : {}), ...fields }, onProgress);
  }

  /** A rollback is an apply of an earlier revision: streamed the same way. */
  rollback(to?: number, opts: { onProgress?: (e: ProgressEvent) => void } = {}) {
    return this.streamed('/api/v1/config/rollback', to !== undefined ? { to } : {}, opts.onProgress);
  }

  private async streamed(path: string, body: unknown, onProgress?: (e: ProgressEvent) => void): Promise<ApplyReport> {
    let res: Response;
    try {
      trace('cli: request');
      res = await fetch(new URL(path, this.base), {
        method: 'POST',
        headers: { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), 'content-type': 'application/json', accept: 'application/x-ndjson, application/json' },
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw requestFailure(e, this.base, `POST ${path}`);
    }
    if (!res.ok || !(res.headers.get('content-type') ?? '').startsWith('application/x-ndjson')) {
      const text = await res.text();
      const json = text ? JSON.parse(text) : undefined;
      if (!res.ok) throw this.refused(res.status, json);
      return json as ApplyReport;
    }
    let pending = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.trim()) continue;
        const o = JSON.parse(line) as { progress?: ProgressEvent; report?: ApplyReport; error?: { statusCode: number } & RemoteError['body'] };
        if (o.progress) onProgress?.(o.progress);
        else if (o.report) return o.report;
        else if (o.error) throw new RemoteError(o.error.statusCode, o.error);
      }
    }
    throw new Error(`the Patronus server at ${this.base} closed the ${path.split('/').at(-1)} stream without a result (see \`patronus status\`)`);
  }

  confirm() {
    return this.call<Revision>('POST', '/api/v1/config/confirm', {});
  }
  status() {
    return this.call('GET', '/api/v1/status');
  }
  services() {
    return this.call<ServiceRow[]>('GET', '/api/v1/services');
  }
  rules() {
    return this.call<Awaited<ReturnType<Client['rules']>>>('GET', '/api/v1/rules');
  }
  revisions(limit: number) {
    return this.call<Revision[]>('GET', `/api/v1/revisions?limit=${limit}`);
  }
  async close() {}
}

/** The token: --token, $PATRONUS_TOKEN, or the admin token `serve` wrote in its state dir (for a server on this machine). */
export function findToken(explicit: string | undefined, stateDir: string | undefined, server?: string): string | undefined {
  return findTokenWithOrigin(explicit, stateDir, server).token;
}

/**
 * The token and where it came from (`--token`, `$PATRONUS_TOKEN`, a file),
 * or, without one, every admin.token file looked at: a 401 then says which
 * token the server refused, or where the CLI looked for one. The admin.token
 * files of this machine ($PATRONUS_STATE_DIR, /var/lib/patronus{,-lab}) are
 * only sent to a server on this machine (a loopback address): `--server
 * https://other-node` must not hand this node's admin token to another host
 * (an explicit --state-dir still names its file).
 */
export function findTokenWithOrigin(explicit: string | undefined, stateDir: string | undefined, server?: string): { token?: string; origin: string } {
  if (explicit) return { token: explicit, origin: 'the token given with --token' };
  if (process.env.PATRONUS_TOKEN) return { token: process.env.PATRONUS_TOKEN, origin: 'the token in $PATRONUS_TOKEN' };
  // --state-dir names its file explicitly; the others are this machine's, for a server on it
  const remote = server !== undefined && !isLoopbackServer(server);
  const looked: string[] = [];
  for (const dir of remote ? [stateDir] : [stateDir, process.env.PATRONUS_STATE_DIR, DEFAULT_STATE_DIR, LAB_STATE_DIR]) {
    if (!dir) continue;
    const f = join(dir, 'admin.token');
    if (looked.some((l) => l.startsWith(`${f} `))) continue;
    if (existsSync(f)) {
      try {
        return { token: readFileSync(f, 'utf8').trim(), origin: `the token in ${f}` };
      } catch (e) {
        // not readable by this user: go on, the server will answer 401
        looked.push(`${f} (${(e as NodeJS.ErrnoException).code ?? 'unreadable'})`);
        continue;
      }
    }
    looked.push(`${f} (missing)`);
  }
  if (remote) return { origin: `no token: none given with --token or $PATRONUS_TOKEN${looked.length ? ` and none in ${looked.join(', ')}` : ''}; this machine's own admin.token files are sent only to a server on this machine (loopback), not to ${server}` };
  return { origin: `no token: none given with --token or $PATRONUS_TOKEN, and no readable admin.token: ${looked.join(', ')}` };
}

/** A server URL whose host is this machine: localhost, 127.0.0.0/8, ::1 (an unparsable URL is not). */
export function isLoopbackServer(server: string): boolean {
  let host: string;
  try {
    host = new URL(server).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return false;
  }
  return host === 'localhost' || host.endsWith('.localhost') || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Human text for any failure, issues one a line. With `file` (the document
 * the command read), issues read like a compiler's, `FILE:LINE:COL: path:
 * message`, which editors and `grep -n` users can jump to.
 */
export function describeError(e: unknown, file?: string): string {
  const line = (i: { path: string; message: string; line?: number; column?: number }) => (file ? formatFileIssue(file, i) : `  ${i.path}: ${i.message}`);
  if (e instanceof ConfigError) return `invalid configuration:\n${e.issues.map((i) => (file ? formatFileIssue(file, { ...i, path: formatPath(i.path) }) : `  ${formatIssue(i)}`)).join('\n')}`;
  if (e instanceof RemoteError) {
    if (e.body.issues?.length) return `${e.statusCode === 400 ? 'rejected' : `HTTP ${e.statusCode}`}:\n${e.body.issues.map(line).join('\n')}`;
    return `HTTP ${e.statusCode}: ${e.message}`;
  }
  return e instanceof Error ? e.message : String(e);
}

/**
 * What a failed fetch means: nothing listening is "cannot reach"; a server
 * that took the request and did not answer in time (undici's 300 s header
 * and body timeouts) may still be working on it, and must not read as down.
 */
export function requestFailure(e: unknown, base: string, what: string): Error {
  const cause = (e as { cause?: { code?: string } }).cause?.code;
  if (cause === 'UND_ERR_HEADERS_TIMEOUT' || cause === 'UND_ERR_BODY_TIMEOUT') {
    return new Error(`${what}: the Patronus server at ${base} took the request but did not answer in time (${cause}); it may still be working on it: see \`patronus status\``);
  }
  return new Error(`cannot reach the Patronus server at ${base} (${cause ?? (e as Error).message}); is \`patronus serve\` running? (or use --direct)`);
}
