/**
 * The CLI's --direct mode: the engine, store and kernel in this process
 * (loaded only for --direct: src/cli/client.ts says why).
 */
import { domains } from '../domains.js';
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { Engine, type ConfigSource, type ProgressEvent } from '../apply/engine.js';
import { Store } from '../store/store.js';
import { Host } from '../system/host.js';
import { createMetrics } from '../metrics/metrics.js';
import { DriftMonitor } from '../drift/monitor.js';
import { jsonSafe } from '../api/json.js';
import type { Client, ServiceRow } from './client.js';

export class DirectClient implements Client {
  readonly engine: Engine;
  private readonly store: Store;

  constructor(opts: { stateDir: string; netns?: string; readOnly?: boolean; onProgress?: (e: ProgressEvent) => void }) {
    const db = join(opts.stateDir, 'patronus.db');
    // validation changes nothing: without a store yet, it must not create one (nor the state dir)
    this.store = Store.open(opts.readOnly && !existsSync(db) ? ':memory:' : db);
    this.engine = new Engine({ host: new Host({ stateDir: opts.stateDir, ...(opts.netns ? { netns: opts.netns } : {}) }), store: this.store, domains });
    if (opts.onProgress) this.engine.on('progress', opts.onProgress);
  }

  async validate(src: ConfigSource) {
    await this.engine.compile(src);
  }
  plan(src: ConfigSource) {
    return this.engine.plan(src);
  }
  async apply(src: ConfigSource, opts: { message: string; confirmWithin?: number }) {
    return this.engine.apply(src, { author: unixUser(), ...opts });
  }
  confirm() {
    return this.engine.confirm();
  }
  rollback(to?: number) {
    return this.engine.rollback({ ...(to !== undefined ? { to } : {}), author: unixUser() });
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

/**
 * The Unix user a --direct revision is recorded under (docs/control-plane.md
 * "Revisions"): the sudo caller, $USER, else the process's own account (no
 * $USER under cron, systemd units or a bare `ip netns exec`), "cli" only
 * when even that cannot be read.
 */
function unixUser(): string {
  const env = process.env.SUDO_USER || process.env.USER;
  if (env) return env;
  try {
    return userInfo().username;
  } catch {
    return 'cli';
  }
}
