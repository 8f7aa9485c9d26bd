/**
 * HA configuration sync through etcd (ha.sync.transport: etcd), instead of
 * the primary pushing to the secondary's REST API (src/ha/sync.ts):
 *
 *   - the primary publishes the synced part of its last committed revision
 *     (the same selection and the same SHA-256 of canonical JSON as the REST
 *     push) to <prefix>ha/<pair>/document, as
 *     {revision, hash, part}, after every committed apply and every
 *     ha.sync.intervalSeconds;
 *   - the secondary watches that key (and re-reads it every intervalSeconds,
 *     so it converges after etcd comes back), checks the hash, and applies
 *     its own document with the primary's synced part in place through the
 *     engine, as the REST apply handler does: a revision with author
 *     ha-sync and the message "ha-sync: primary revision N sha256:H";
 *     nothing is applied when the hash equals what it runs; a document that
 *     fails the hash, the schema or the apply is refused and recorded
 *     (status(), the 'report' event).
 *
 * etcd unreachable only makes publishing or reading fail (reported, retried);
 * it never changes the running revision on either node.
 */
import { EventEmitter } from 'node:events';
import type { Etcd3, Watcher } from 'etcd3';
import type { HaSyncConfig } from '../services/keepalived/schema.js';
import type { Engine, ApplyReport } from '../apply/engine.js';
import { syncedPart, syncHash, mergeForPeer, canonicalJson, type HaSyncSource } from './sync.js';

type Doc = Record<string, unknown>;

export interface EtcdSyncReport {
  at: string;
  role: 'primary' | 'secondary';
  key: string;
  /** primary: what it published; secondary: what it found in the key */
  revision: number | null;
  hash: string | null;
  /** secondary: the revision it applied (absent: nothing to do or refused) */
  applied?: { revision: number; state: string };
  inSync: boolean;
  error?: string;
  /** secondary: the error is a refusal of the published document (retried at intervalSeconds, not sooner) */
  refused?: boolean;
}

export interface PublishedDocument {
  revision: number;
  hash: string;
  part: Doc;
}

export function haSyncKey(sync: HaSyncConfig): string {
  return `${sync.etcd!.prefix}ha/${sync.etcd!.pair}/document`;
}

export class HaEtcdSync extends EventEmitter<{ report: [EtcdSyncReport]; error: [Error] }> {
  private last: EtcdSyncReport | undefined;
  private timer: NodeJS.Timeout | undefined;
  private client: { id: string; etcd: Etcd3; watcher?: Watcher; watching?: boolean; key: string } | undefined;
  /** the last published hash this secondary refused, and why (not retried until the primary publishes another) */
  private refused: { hash: string; error: string } | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private engine: Engine | undefined;
  private stopped = false;
  private onApplied = (r: ApplyReport) => {
    if (r.state === 'committed') this.kick();
    else if (r.state === 'confirming') void this.engine?.waitForConfirmation(r.revision).then((ok) => ok && this.kick(), (e) => this.emit('error', e as Error));
  };

  constructor(
    private readonly source: HaSyncSource,
    private readonly opts: { retryMs?: number } = {},
  ) {
    super();
  }

  attach(engine: Engine): this {
    this.engine = engine;
    engine.on('applied', this.onApplied);
    this.kick();
    return this;
  }

  async detach(): Promise<void> {
    this.stopped = true;
    this.engine?.off('applied', this.onApplied);
    if (this.timer) clearTimeout(this.timer);
    await this.queue.catch(() => undefined);
    await this.closeClient();
  }

  status(): EtcdSyncReport | undefined {
    return this.last;
  }

  /** Run now (serialised), then again after intervalSeconds, or sooner after an error. */
  kick(): void {
    if (this.stopped) return;
    this.queue = this.queue
      .catch(() => undefined)
      .then(() => this.runOnce())
      .then(
        (r) => this.schedule(r),
        (e) => {
          this.emit('error', e as Error);
          this.schedule(undefined);
        },
      );
  }

  private schedule(r: EtcdSyncReport | undefined): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const cfg = this.config();
    if (!cfg) return;
    const ms = r?.error && !r.refused ? (this.opts.retryMs ?? 2000) : cfg.sync.intervalSeconds * 1000;
    this.timer = setTimeout(() => this.kick(), ms);
    this.timer.unref();
  }

  private config(): { doc: Doc; revision: number; sync: HaSyncConfig; role: 'primary' | 'secondary' } | undefined {
    // ha.sync as validated and defaulted by the engine (the raw document is what is synced); the
    // stored document is read only when sync is configured (a large one is megabytes to read and parse)
    const ha = this.engine?.committedConfig()?.ha;
    if (!ha?.sync || ha.sync.transport !== 'etcd' || !ha.sync.etcd) return undefined;
    const revision = this.source.current();
    if (!revision) return undefined;
    const doc = (revision.config ?? {}) as Doc;
    return { doc, revision: revision.id, sync: ha.sync, role: ha.role };
  }

  private async connect(sync: HaSyncConfig): Promise<{ etcd: Etcd3; key: string }> {
    const e = sync.etcd!;
    const id = canonicalJson(e);
    if (this.client?.id === id) return this.client;
    await this.closeClient();
    const { etcdClient } = await import('../fleet/connect.js');
    const etcd = etcdClient({
      url: e.url,
      ...(e.caFile ? { ca: e.caFile } : {}),
      ...(e.certFile ? { cert: e.certFile } : {}),
      ...(e.keyFile ? { key: e.keyFile } : {}),
      ...(e.user ? { user: e.user } : {}),
      ...(e.passwordFile ? { passwordFile: e.passwordFile } : {}),
    });
    this.client = { id, etcd, key: haSyncKey(sync) };
    return this.client;
  }

  private async closeClient(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (!c) return;
    await c.watcher?.cancel().catch(() => undefined);
    c.etcd.close();
  }

  private async runOnce(): Promise<EtcdSyncReport | undefined> {
    const cfg = this.config();
    if (!cfg) {
      await this.closeClient();
      return undefined;
    }
    const key = haSyncKey(cfg.sync);
    const report: EtcdSyncReport = { at: new Date().toISOString(), role: cfg.role, key, revision: null, hash: null, inSync: false };
    try {
      const c = await this.connect(cfg.sync);
      if (cfg.role === 'primary') {
        const part = syncedPart(cfg.doc, cfg.sync.sections);
        const hash = syncHash(part);
        report.revision = cfg.revision;
        report.hash = hash;
        // written again whenever the key holds anything else (another revision, or a document someone tampered with)
        const value = JSON.stringify({ revision: cfg.revision, hash, part } satisfies PublishedDocument);
        if ((await c.etcd.get(key).string()) !== value) await c.etcd.put(key).value(value);
        report.inSync = true;
      } else {
        this.ensureWatch(key);
        const value = await c.etcd.get(key).string();
        if (value !== null) Object.assign(report, await this.receive(value, key));
        else report.inSync = false;
      }
    } catch (e) {
      report.error = `ha sync through etcd (${key}): ${(e as Error).message}`;
    }
    this.record(report);
    return report;
  }

  private ensureWatch(key: string): void {
    const c = this.client;
    if (!c || c.watching) return;
    c.watching = true;
    const pending = c.etcd.watch().key(key).create();
    pending.then(
      (w) => {
        if (this.client !== c) return void w.cancel().catch(() => undefined);
        c.watcher = w;
        w.on('put', (kv) => {
          const value = kv.value.toString();
          this.queue = this.queue
            .catch(() => undefined)
            .then(async () => {
              const cfg = this.config();
              if (!cfg || cfg.role !== 'secondary' || this.client !== c) return;
              this.record({ at: new Date().toISOString(), role: 'secondary', key, revision: null, hash: null, inSync: false, ...(await this.receive(value, key)) });
            })
            .catch((e) => this.emit('error', e as Error));
        });
        // the client reconnects the watch by itself; errors are only reported
        w.on('error', (e) => this.emit('error', new Error(`ha sync: watch of ${key}: ${(e as Error).message}`)));
      },
      () => {
        c.watching = false; // etcd down: the next re-read creates the watch again
      },
    );
  }

  /** Secondary: check a published document and apply it when it differs from what runs. */
  private async receive(value: string, key: string): Promise<Partial<EtcdSyncReport>> {
    const cfg = this.config();
    if (!cfg || !this.engine) return { error: 'ha.sync is not set to transport: etcd on this node' };
    const pub = safeJson(value) as Partial<PublishedDocument> | undefined;
    if (!pub || typeof pub.hash !== 'string' || typeof pub.revision !== 'number' || !pub.part || typeof pub.part !== 'object' || Array.isArray(pub.part)) {
      return { refused: true, error: `${key}: refused: not a published HA document ({revision, hash, part})` };
    }
    const out: Partial<EtcdSyncReport> = { revision: pub.revision, hash: pub.hash };
    const part = syncedPart(pub.part, cfg.sync.sections);
    const hash = syncHash(part);
    if (hash !== pub.hash) return { ...out, refused: true, error: `${key}: refused primary revision ${pub.revision}: its content hashes to sha256:${hash}, not the published sha256:${pub.hash}` };
    const mine = syncHash(syncedPart(cfg.doc, cfg.sync.sections));
    if (mine === hash) return { ...out, inSync: true };
    if (this.refused?.hash === hash) return { ...out, refused: true, error: this.refused.error };
    // an apply that ran and failed (rolled back) is not tried again for the same document; a refusal
    // before anything ran (validation, another revision awaiting confirmation) is tried again at intervalSeconds
    const refuse = (error: string, remember: boolean) => {
      if (remember) this.refused = { hash, error };
      return { ...out, refused: true, error };
    };
    const merged = mergeForPeer(cfg.doc, part, cfg.sync.sections);
    try {
      const r = await this.engine.apply({ document: merged }, { author: 'ha-sync', message: `ha-sync: primary revision ${pub.revision} sha256:${hash}` });
      if (r.state !== 'committed') return { ...refuse(`primary revision ${pub.revision} refused: revision ${r.revision} ${r.state}${r.error ? `: ${r.error}` : ''}`, true), applied: { revision: r.revision, state: r.state } };
      return { ...out, applied: { revision: r.revision, state: r.state }, inSync: true };
    } catch (e) {
      return refuse(`primary revision ${pub.revision} refused: ${(e as Error).message}`, false);
    }
  }

  private record(r: EtcdSyncReport): void {
    this.last = r;
    this.emit('report', r);
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
