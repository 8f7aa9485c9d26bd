/**
 * How the CLI reaches Patronus: over REST to the running server (default),
 * or directly on the store and the kernel (--direct: no server needed; the
 * engine's cross-process lock keeps it from racing a running server).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, type ApplyReport, type ConfigSource, type Plan, type ProgressEvent } from '../apply/engine.js';
import { Store, type Revision } from '../store/store.js';
import { Host } from '../system/host.js';
import { createMetrics } from '../metrics/metrics.js';
import { ConfigError, formatFileIssue, formatIssue, formatPath } from '../config/issues.js';
import { DEFAULT_STATE_DIR, LAB_STATE_DIR } from '../api/serve.js';
import { DriftMonitor } from '../drift/monitor.js';
import { jsonSafe } from '../api/json.js';

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
  apply(src: ConfigSource, opts: { message: string; confirmWithin?: number }): Promise<ApplyReport>;
  confirm(): Promise<Revision>;
  rollback(to?: number): Promise<ApplyReport>;
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
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.base), {
        method,
        headers: { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code;
      throw new Error(`cannot reach the Patronus server at ${this.base} (${cause ?? (e as Error).message}); is \`patronus serve\` running? (or use --direct)`);
    }
    const text = await res.text();
    const json = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new RemoteError(res.status, json ?? {});
    return json as T;
  }

  private body(src: ConfigSource) {
    return { ...('text' in src ? { config: src.text, ...(src.format ? { format: src.format } : {}) } : { config: src.document }), ...(src.allowEmpty ? { allowEmpty: true } : {}) };
  }

  async validate(src: ConfigSource) {
    await this.call('POST', '/api/v1/config/validate', this.body(src));
  }
  plan(src: ConfigSource) {
    return this.call<Plan>('POST', '/api/v1/config/plan', this.body(src));
  }
  apply(src: ConfigSource, opts: { message: string; confirmWithin?: number }) {
    return this.call<ApplyReport>('POST', '/api/v1/config/apply', { ...this.body(src), ...opts });
  }
  confirm() {
    return this.call<Revision>('POST', '/api/v1/config/confirm', {});
  }
  rollback(to?: number) {
    return this.call<ApplyReport>('POST', '/api/v1/config/rollback', to !== undefined ? { to } : {});
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

export class DirectClient implements Client {
  readonly engine: Engine;
  private readonly store: Store;

  constructor(opts: { stateDir: string; netns?: string; readOnly?: boolean; onProgress?: (e: ProgressEvent) => void }) {
    const db = join(opts.stateDir, 'patronus.db');
    // validation changes nothing: without a store yet, it must not create one (nor the state dir)
    this.store = Store.open(opts.readOnly && !existsSync(db) ? ':memory:' : db);
    this.engine = new Engine({ host: new Host({ stateDir: opts.stateDir, ...(opts.netns ? { netns: opts.netns } : {}) }), store: this.store });
    if (opts.onProgress) this.engine.on('progress', opts.onProgress);
  }

  async validate(src: ConfigSource) {
    await this.engine.compile(src);
  }
  plan(src: ConfigSource) {
    return this.engine.plan(src);
  }
  async apply(src: ConfigSource, opts: { message: string; confirmWithin?: number }) {
    return this.engine.apply(src, { author: process.env.SUDO_USER ?? process.env.USER ?? 'cli', ...opts });
  }
  confirm() {
    return this.engine.confirm();
  }
  rollback(to?: number) {
    return this.engine.rollback({ ...(to !== undefined ? { to } : {}), author: process.env.SUDO_USER ?? process.env.USER ?? 'cli' });
  }
  /** The engine's status and a drift check (reported only: the CLI never repairs behind the server's back). */
  async status() {
    const d = await new DriftMonitor(this.engine, { mode: 'report' }).check();
    const s = this.engine.status();
    return { ...s, running: d.state === 'drift' ? null : s.running, drift: d };
  }
  async services() {
    return Promise.all(
      this.engine.subsystems
        .filter((s) => s.status)
        .map(async (s): Promise<ServiceRow> => {
          try {
            return { subsystem: s.name, status: jsonSafe(await s.status!(this.engine.host)) };
          } catch (e) {
            return { subsystem: s.name, error: (e as Error).message };
          }
        }),
    );
  }
  async rules() {
    const s = await createMetrics(this.engine, { processMetrics: false }).snapshot();
    return {
      rules: s.bySubsystem.flatMap((x) => (x.metrics?.rules ?? []).map((r) => ({ subsystem: x.subsystem, rule: r.rule, action: r.action ?? null, packets: Number(r.packets), bytes: Number(r.bytes), ...(r.limited !== undefined ? { rateLimited: Number(r.limited) } : {}) }))),
      verdicts: s.bySubsystem.flatMap((x) => (x.metrics?.verdicts ?? []).map((v) => ({ subsystem: x.subsystem, direction: v.direction ?? 'ingress', verdict: v.verdict, packets: Number(v.packets), bytes: Number(v.bytes) }))),
    };
  }
  async revisions(limit: number) {
    return this.store.list({ limit, withConfig: false });
  }
  async close() {
    this.engine.close();
    this.store.close();
  }
}

/** The token: --token, $PATRONUS_TOKEN, or the admin token `serve` wrote in its state dir. */
export function findToken(explicit: string | undefined, stateDir: string | undefined): string | undefined {
  if (explicit) return explicit;
  if (process.env.PATRONUS_TOKEN) return process.env.PATRONUS_TOKEN;
  for (const dir of [stateDir, process.env.PATRONUS_STATE_DIR, DEFAULT_STATE_DIR, LAB_STATE_DIR]) {
    if (!dir) continue;
    const f = join(dir, 'admin.token');
    if (existsSync(f)) {
      try {
        return readFileSync(f, 'utf8').trim();
      } catch {
        // not readable by this user: go on, the server will answer 401
      }
    }
  }
  return undefined;
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
