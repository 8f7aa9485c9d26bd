/**
 * The fleet agent inside `patronus serve --fleet`: registers the node under
 * a lease (NodeInfo, refreshed when it changes), watches the node's desired
 * document and brings the node to it through its NodeDriver: apply under
 * commit-confirm, health check, confirm or roll back, and report the
 * outcome (status/<node>).
 *
 * The firewall never depends on etcd: the agent only ever asks the local
 * engine to apply a complete document, and a node that cannot reach etcd
 * keeps running its last committed revision. The agent runs sessions in a
 * loop: a session grants a lease, registers, reads the desired document
 * (converging to it), then follows the watch until the lease is lost; then
 * the agent says so once, retries every `retryMs`, and converges again when
 * it is back (the desired document is read afresh, so nothing missed while
 * away is lost).
 */
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import type { Etcd3, Lease, Watcher } from 'etcd3';
import { FleetKeys, type Desired, type NodeInfo, type NodeStatus } from './model.js';

/** The node side the agent drives: the engine in production, a stub in the bench. */
export interface NodeDriver {
  /**
   * Applies the document as a new local revision awaiting confirmation
   * within `confirmWithin` seconds. `unchanged`: the node already runs it.
   * Throws when it cannot be applied (invalid here, apply failed and rolled
   * back, a local confirmation pending).
   */
  apply(document: unknown, meta: { message: string; confirmWithin: number }): Promise<{ revision: number; unchanged?: boolean }>;
  /** Drift check and the document's probes. */
  health(document: unknown): Promise<{ ok: boolean; checks: { name: string; ok: boolean; detail: string }[] }>;
  /** Confirms the pending revision; throws when it was rolled back meanwhile. */
  confirm(revision: number): Promise<void>;
  /** Rolls back the pending revision; returns the revision the node went back to. */
  rollBack(revision: number, reason: string): Promise<number | null>;
  /** What the node reports in its registration. */
  info(): Pick<NodeInfo, 'revision' | 'rollout' | 'drift' | 'health' | 'counters'>;
}

export interface AgentOptions {
  client: Etcd3;
  keys?: FleetKeys;
  node: string;
  group: string;
  labels?: Record<string, string>;
  version: string;
  driver: NodeDriver;
  /** lease TTL in seconds (default 10): a node silent this long is offline */
  leaseTtlSeconds?: number;
  /** how often the registration is compared with the node's state (default 2000 ms) */
  heartbeatMs?: number;
  /** the counter summary is rewritten at most this often (default 60 000 ms; each write is an etcd revision) */
  reportMs?: number;
  /** wait between attempts while etcd is unreachable (default 2000 ms) */
  retryMs?: number;
  log?: (line: string) => void;
}

type Events = { status: [NodeStatus]; connected: []; disconnected: [Error]; error: [Error] };

export class FleetAgent extends EventEmitter<Events> {
  readonly keys: FleetKeys;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private session: { lease: Lease; watcher?: Watcher; end: (e: Error) => void } | undefined;
  /** one desired document at a time; a newer one waits in `next` (only the newest is kept) */
  private busy: Promise<void> = Promise.resolve();
  private next: string | undefined;
  private handling = false;
  private lastOutcome: { key: string; status: NodeStatus } | undefined;
  private lastInfo = '';
  private lastInfoAt = 0;
  private readonly startedAt = new Date().toISOString();
  private reconnectedAt: string | undefined;
  private unreachableSince: number | undefined;
  /** true while a session holds a lease */
  connected = false;

  constructor(readonly opts: AgentOptions) {
    super();
    this.keys = opts.keys ?? new FleetKeys();
  }

  private log(line: string): void {
    (this.opts.log ?? ((l: string) => console.log(l)))(`fleet: ${line}`);
  }

  start(): this {
    if (this.running) return this;
    this.running = true;
    this.loop = this.run();
    return this;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.session?.end(new Error('stopping'));
    this.wake?.();
    await this.loop;
    await this.busy.catch(() => undefined);
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        await this.runSession();
      } catch (e) {
        if (!this.running) break;
        const err = e as Error;
        if (this.connected) {
          this.connected = false;
          this.emit('disconnected', err);
        }
        if (this.unreachableSince === undefined) {
          this.unreachableSince = Date.now();
          const info = this.opts.driver.info();
          this.log(`etcd unreachable (${oneLine(err.message)}): keeping revision ${info.revision ?? 'none'} running, retrying every ${(this.retryMs / 1000).toFixed(1)} s`);
        }
      }
      if (!this.running) break;
      await new Promise<void>((r) => {
        this.wake = r;
        // jitter: a fleet that lost etcd together does not come back in one burst
        setTimeout(r, this.retryMs * (0.75 + Math.random() * 0.5)).unref();
      });
    }
  }

  private get retryMs(): number {
    return this.opts.retryMs ?? 2000;
  }

  /** One lease: register, converge, follow the watch; rejects when the lease is lost. */
  private async runSession(): Promise<void> {
    const { client } = this.opts;
    const ttl = this.opts.leaseTtlSeconds ?? 10;
    const lease = client.lease(ttl, { autoKeepAlive: true });
    let end!: (e: Error) => void;
    const ended = new Promise<never>((_, reject) => (end = reject));
    ended.catch(() => undefined);
    lease.on('lost', (e) => end(e));
    this.session = { lease, end };
    let heartbeat: NodeJS.Timeout | undefined;
    try {
      await Promise.race([lease.grant(), ended]);
      this.lastInfo = '';
      await this.register(lease);
      await client.put(this.keys.member(this.opts.group, this.opts.node)).value(JSON.stringify({ node: this.opts.node, group: this.opts.group, labels: this.opts.labels ?? {}, since: this.startedAt }));
      const res = await client.get(this.keys.desired(this.opts.node)).exec();
      if (this.unreachableSince !== undefined) {
        this.reconnectedAt = new Date().toISOString();
        this.log(`back in touch with etcd after ${((Date.now() - this.unreachableSince) / 1000).toFixed(1)} s: converging to the desired configuration`);
        this.unreachableSince = undefined;
        await this.register(lease, true);
      }
      this.connected = true;
      this.emit('connected');
      const kv = res.kvs[0];
      if (kv) this.enqueue(kv.value.toString());
      const watcher = await client
        .watch()
        .key(this.keys.desired(this.opts.node))
        .startRevision(String(BigInt(res.header.revision) + 1n))
        .create();
      this.session.watcher = watcher;
      watcher.on('put', (kv) => this.enqueue(kv.value.toString()));
      watcher.on('error', (e) => end(e));
      heartbeat = setInterval(() => {
        this.register(lease).catch(() => undefined);
      }, this.opts.heartbeatMs ?? 2000);
      await ended;
    } finally {
      clearInterval(heartbeat);
      const watcher = this.session?.watcher;
      this.session = undefined;
      await watcher?.cancel().catch(() => undefined);
      lease.release();
      if (!this.running) await lease.revoke().catch(() => undefined);
    }
  }

  /** Publishes NodeInfo under the lease when it changed (the counters: every reportMs). */
  private async register(lease: Lease, force = false): Promise<void> {
    const d = this.opts.driver.info();
    const body: Omit<NodeInfo, 'seenAt'> = {
      node: this.opts.node,
      group: this.opts.group,
      labels: this.opts.labels ?? {},
      version: this.opts.version,
      ...d,
      startedAt: this.startedAt,
      ...(this.reconnectedAt ? { reconnectedAt: this.reconnectedAt } : {}),
    };
    // what matters (revision, drift, health) is written when it changes; the counters alone at most every reportMs
    const { counters: _c, ...state } = body;
    const text = JSON.stringify(state);
    if (!force && text === this.lastInfo && Date.now() - this.lastInfoAt < (this.opts.reportMs ?? 60_000)) return;
    await lease.put(this.keys.node(this.opts.node)).value(JSON.stringify({ ...body, seenAt: new Date().toISOString() } satisfies NodeInfo));
    this.lastInfo = text;
    this.lastInfoAt = Date.now();
  }

  private enqueue(value: string): void {
    this.next = value;
    if (this.handling) return;
    this.handling = true;
    this.busy = (async () => {
      try {
        while (this.next !== undefined) {
          const v = this.next;
          this.next = undefined;
          await this.handle(v).catch((e: Error) => this.emit('error', e));
        }
      } finally {
        this.handling = false;
      }
    })();
  }

  /** Brings the node to one desired document and reports the outcome. */
  private async handle(value: string): Promise<void> {
    let desired: Desired;
    try {
      desired = JSON.parse(value) as Desired;
    } catch (e) {
      this.log(`desired configuration for ${this.opts.node} is not JSON (ignored): ${(e as Error).message}`);
      return;
    }
    const key = `${desired.rollout}:${createHash('sha256').update(JSON.stringify(desired.document)).digest('hex')}`;
    // a document that failed here is not tried again (the controller restores the previous one); report it again
    if (this.lastOutcome?.key === key && this.lastOutcome.status.state === 'failed') {
      await this.report(this.lastOutcome.status);
      return;
    }
    const prior = await this.opts.client.get(this.keys.status(this.opts.node)).json().catch(() => null) as NodeStatus | null;
    if (prior && prior.rollout === desired.rollout && prior.state === 'failed' && !this.lastOutcome) {
      this.lastOutcome = { key, status: prior };
      return;
    }
    const status = await this.bringTo(desired);
    this.lastOutcome = { key, status };
    await this.report(status);
    await this.refreshRegistration();
  }

  private async bringTo(desired: Desired): Promise<NodeStatus> {
    const { driver, node } = this.opts;
    const base = { node, rollout: desired.rollout };
    const now = () => new Date().toISOString();
    await this.report({ ...base, state: 'applying', at: now() }).catch(() => undefined);
    const message = `fleet rollout ${desired.rollout}${desired.git ? ` (git ${desired.git.commit})` : ''}${desired.message ? `: ${desired.message}` : ''}`;
    let applied: { revision: number; unchanged?: boolean };
    try {
      applied = await driver.apply(desired.document, { message, confirmWithin: desired.confirmWithin });
    } catch (e) {
      this.log(`rollout ${desired.rollout}: apply failed: ${oneLine((e as Error).message)}`);
      return { ...base, state: 'failed', error: `apply: ${oneLine((e as Error).message)}`, revision: driver.info().revision, at: now() };
    }
    if (applied.unchanged) {
      const h = await driver.health(desired.document);
      return { ...base, state: h.ok ? 'healthy' : 'failed', unchanged: true, revision: applied.revision, checks: h.checks, ...(h.ok ? {} : { error: `health check: ${failures(h.checks)} (the node already ran this document: nothing to roll back)` }), at: now() };
    }
    await this.report({ ...base, state: 'checking', revision: applied.revision, at: now() }).catch(() => undefined);
    const h = await driver.health(desired.document).catch((e: Error) => ({ ok: false, checks: [{ name: 'health', ok: false, detail: e.message }] }));
    if (h.ok) {
      try {
        await driver.confirm(applied.revision);
        this.log(`rollout ${desired.rollout}: revision ${applied.revision} healthy and confirmed`);
        return { ...base, state: 'healthy', revision: applied.revision, checks: h.checks, at: now() };
      } catch (e) {
        return { ...base, state: 'failed', error: `confirm: ${oneLine((e as Error).message)}`, revision: driver.info().revision, checks: h.checks, at: now() };
      }
    }
    const reason = `health check failed: ${failures(h.checks)}`;
    let back: number | null = null;
    try {
      back = await driver.rollBack(applied.revision, reason);
    } catch (e) {
      return { ...base, state: 'failed', error: `${reason}; rollback: ${oneLine((e as Error).message)}`, checks: h.checks, at: now() };
    }
    this.log(`rollout ${desired.rollout}: ${reason}: rolled back to ${back === null ? 'the empty configuration' : `revision ${back}`}`);
    return { ...base, state: 'failed', error: `${reason}; rolled back to ${back === null ? 'the empty configuration' : `revision ${back}`}`, revision: back, checks: h.checks, at: now() };
  }

  private async report(status: NodeStatus): Promise<void> {
    this.emit('status', status);
    await this.opts.client.put(this.keys.status(this.opts.node)).value(JSON.stringify(status));
  }

  private async refreshRegistration(): Promise<void> {
    const s = this.session;
    if (s) await this.register(s.lease).catch(() => undefined);
  }
}

function failures(checks: { name: string; ok: boolean; detail: string }[]): string {
  return checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('; ') || 'failed';
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
