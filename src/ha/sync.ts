/**
 * Configuration sync from the HA primary to its secondary, over the peer's
 * ordinary REST API (the same engine, revisions and commit-confirm as any
 * other change):
 *
 *   1. the synced part of the primary's last committed revision: the
 *      sections in ha.sync.sections, and of ha: everything but the node-local
 *      fields (role, nodeName, sync, enabled);
 *   2. GET  /api/v1/config on the peer, and compare per-section SHA-256
 *      hashes of canonical JSON: equal -> in sync, nothing to do;
 *   3. otherwise the peer's document keeps its own local sections and
 *      fields, takes the primary's synced ones, and is applied with
 *      POST /api/v1/config/apply {confirmWithin}: the revision message names
 *      the primary's revision and hash;
 *   4. the primary reads the peer's pending document back, checks its hash,
 *      and POST /api/v1/config/confirm. A push that cut the sync path (a bad
 *      firewall rule) is never confirmed, so the peer rolls itself back.
 *
 * Drift (someone changed a synced section on the secondary) is found by the
 * same comparison, on every apply and every ha.sync.intervalSeconds; it is
 * reported (status(), the 'report' event, metrics) and healed by a push.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { HA_LOCAL_FIELDS, type HaSyncConfig } from '../services/keepalived/schema.js';
import type { Engine, ApplyReport } from '../apply/engine.js';
import type { Revision } from '../store/store.js';
import { Gauge, type Registry } from 'prom-client';

type Doc = Record<string, unknown>;

export interface SyncReport {
  /** ISO time of the check */
  at: string;
  inSync: boolean;
  primary: { revision: number | null; hash: string };
  peer: { url: string; revision: number | null; hash: string | null; /** primary revision named by the peer's revision message */ syncedFrom: number | null };
  /** synced sections whose content differs (drift), before any push */
  differing: string[];
  /** set when this check pushed: the peer revision it created and confirmed */
  pushed?: { revision: number; state: string };
  error?: string;
}

/** The sections and ha: fields that travel to the peer. */
export function syncedPart(doc: Doc, sections: readonly string[]): Doc {
  const out: Doc = {};
  for (const s of sections) {
    if (!(s in doc) || doc[s] === undefined) continue;
    out[s] = s === 'ha' ? omit(doc.ha as Doc, HA_LOCAL_FIELDS) : doc[s];
  }
  return out;
}

/** Per-section hashes of canonical JSON (key order never matters). */
export function sectionHashes(part: Doc, sections: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of sections) out[s] = sha256(canonicalJson(part[s] ?? null));
  return out;
}

export function syncHash(part: Doc): string {
  return sha256(canonicalJson(part));
}

/** The peer's document with the primary's synced part in place of its own. */
export function mergeForPeer(peerDoc: Doc, primaryDoc: Doc, sections: readonly string[]): Doc {
  const out: Doc = { ...peerDoc };
  const synced = syncedPart(primaryDoc, sections);
  for (const s of sections) {
    if (s === 'ha') {
      const local = pick((peerDoc.ha ?? {}) as Doc, HA_LOCAL_FIELDS);
      const merged = { ...((synced.ha as Doc | undefined) ?? {}), ...local };
      if (Object.keys(merged).length) out.ha = merged;
      else delete out.ha;
    } else if (s in synced) out[s] = synced[s];
    else delete out[s];
  }
  return out;
}

export interface HaSyncSource {
  /** the primary's last committed revision */
  current(): Revision | undefined;
}

/**
 * The primary's side. Reads ha.sync from its own last committed revision on
 * every run, so turning sync on, off or at another peer is an ordinary apply.
 */
export class HaSync extends EventEmitter<{ report: [SyncReport]; error: [Error] }> {
  private last: SyncReport | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SyncReport | undefined> | undefined;
  private engine: Engine | undefined;
  private onApplied = (r: ApplyReport) => {
    const push = () => void this.run().catch((e) => this.emit('error', e as Error));
    if (r.state === 'committed') push();
    // a commit-confirm revision is pushed once it is confirmed (never while it may still roll back)
    else if (r.state === 'confirming') void this.engine?.waitForConfirmation(r.revision).then((ok) => ok && push(), (e) => this.emit('error', e as Error));
  };

  constructor(
    private readonly source: HaSyncSource,
    private readonly opts: { readFile?: (p: string) => string; confirmWithinSeconds?: number; timeoutMs?: number } = {},
  ) {
    super();
  }

  /** Pushes after every committed apply of `engine`, and checks every ha.sync.intervalSeconds. */
  attach(engine: Engine): this {
    this.engine = engine;
    engine.on('applied', this.onApplied);
    const tick = () => {
      const cfg = this.config();
      this.timer = setTimeout(() => void this.run().catch((e) => this.emit('error', e as Error)).finally(tick), (cfg?.sync.intervalSeconds ?? 60) * 1000);
      this.timer.unref();
    };
    tick();
    return this;
  }

  detach(engine: Engine): void {
    engine.off('applied', this.onApplied);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  status(): SyncReport | undefined {
    return this.last;
  }

  /** Compare, and push when the peer differs. Undefined when sync is not configured. Runs one at a time. */
  run(opts: { push?: boolean } = {}): Promise<SyncReport | undefined> {
    const next = (this.running ?? Promise.resolve(undefined)).catch(() => undefined).then(() => this.runOnce(opts.push ?? true));
    this.running = next;
    return next;
  }

  /** Compare only (drift report), never push. */
  check(): Promise<SyncReport | undefined> {
    return this.run({ push: false });
  }

  private config(): { doc: Doc; revision: Revision; sync: HaSyncConfig } | undefined {
    // ha.sync as validated and defaulted by the engine (the raw document is what is synced); the
    // stored document is read only when sync is configured (a large one is megabytes to read and parse)
    const ha = this.engine?.committedConfig()?.ha;
    if (!ha?.sync || ha.sync.transport !== 'rest' || ha.role !== 'primary') return undefined;
    const revision = this.source.current();
    if (!revision) return undefined;
    const doc = (revision.config ?? {}) as Doc;
    return { doc, revision, sync: ha.sync };
  }

  private async runOnce(push: boolean): Promise<SyncReport | undefined> {
    const cfg = this.config();
    if (!cfg) return undefined;
    const { doc, revision, sync } = cfg;
    const part = syncedPart(doc, sync.sections);
    const hash = syncHash(part);
    const report: SyncReport = {
      at: new Date().toISOString(),
      inSync: false,
      primary: { revision: revision.id, hash },
      peer: { url: sync.peer ?? '', revision: null, hash: null, syncedFrom: null },
      differing: [],
    };
    try {
      const api = new PeerApi(sync, this.opts.readFile ?? ((p) => readFileSync(p, 'utf8')), this.opts.timeoutMs ?? 30_000);
      const peer = await api.currentConfig();
      const peerPart = syncedPart(peer.config, sync.sections);
      report.peer.revision = peer.revision;
      report.peer.hash = syncHash(peerPart);
      report.peer.syncedFrom = peer.revision !== null ? await api.syncedFrom(peer.revision) : null;
      const mine = sectionHashes(part, sync.sections);
      const theirs = sectionHashes(peerPart, sync.sections);
      report.differing = sync.sections.filter((s) => mine[s] !== theirs[s]);
      report.inSync = report.differing.length === 0;
      if (!report.inSync && push) {
        // a peer that does not say it is the secondary would come up with the primary's priorities
        if ((peer.config.ha as Doc | undefined)?.role !== 'secondary') {
          throw new Error(`peer ${sync.peer} does not have ha.role: secondary in its configuration; set it there once before syncing`);
        }
        const merged = mergeForPeer(peer.config, doc, sync.sections);
        const applied = await api.apply(merged, `ha-sync: primary revision ${revision.id} sha256:${hash}`, this.opts.confirmWithinSeconds ?? 30);
        if (applied.state === 'confirming') {
          // what the peer is running now must be exactly what was sent before it is kept
          const pending = await api.pendingConfig();
          const pendingHash = pending ? syncHash(syncedPart(pending, sync.sections)) : null;
          if (pendingHash !== hash) throw new Error(`peer revision ${applied.revision} holds sha256:${pendingHash}, not the pushed sha256:${hash}; left unconfirmed (it rolls back by itself)`);
          await api.confirm();
        }
        const after = await api.currentConfig();
        report.pushed = { revision: applied.revision, state: after.revision === applied.revision ? 'committed' : applied.state };
        report.peer.revision = after.revision;
        report.peer.hash = syncHash(syncedPart(after.config, sync.sections));
        report.peer.syncedFrom = revision.id;
        report.inSync = report.peer.hash === hash;
        if (!report.inSync) report.error = `peer still differs after the push (sha256:${report.peer.hash})`;
      }
    } catch (e) {
      report.error = (e as Error).message;
    }
    this.last = report;
    this.emit('report', report);
    return report;
  }
}

/** The few calls sync needs from the peer's REST API. */
class PeerApi {
  private readonly token: string;
  private readonly ca: string | undefined;

  constructor(
    private readonly sync: HaSyncConfig,
    readFile: (p: string) => string,
    private readonly timeoutMs: number,
  ) {
    try {
      this.token = readFile(sync.tokenFile ?? '').trim();
    } catch (e) {
      throw new Error(`ha.sync.tokenFile: cannot read ${sync.tokenFile}: ${(e as Error).message}`);
    }
    this.ca = sync.caFile ? readFile(sync.caFile) : undefined;
  }

  async currentConfig(): Promise<{ revision: number | null; config: Doc }> {
    const r = await this.call('GET', '/api/v1/config');
    if (r.status === 404) return { revision: null, config: {} };
    this.expect(r, 200, 'GET /api/v1/config');
    return { revision: r.json.revision ?? null, config: (r.json.config ?? {}) as Doc };
  }

  async pendingConfig(): Promise<Doc | undefined> {
    const r = await this.call('GET', '/api/v1/config');
    this.expect(r, 200, 'GET /api/v1/config');
    return r.json.pending?.config as Doc | undefined;
  }

  /** The primary revision a peer revision was synced from (its message), if any. */
  async syncedFrom(revision: number): Promise<number | null> {
    const r = await this.call('GET', `/api/v1/revisions/${revision}`);
    if (r.status !== 200) return null;
    const m = /^ha-sync: primary revision (\d+)/.exec(String(r.json.message ?? ''));
    return m ? Number(m[1]) : null;
  }

  async apply(config: Doc, message: string, confirmWithin: number): Promise<{ revision: number; state: string }> {
    const r = await this.call('POST', '/api/v1/config/apply', { config, message, confirmWithin });
    this.expect(r, 200, 'POST /api/v1/config/apply');
    return { revision: r.json.revision, state: r.json.state };
  }

  async confirm(): Promise<void> {
    const r = await this.call('POST', '/api/v1/config/confirm');
    this.expect(r, 200, 'POST /api/v1/config/confirm');
  }

  private expect(r: { status: number; json: any; text: string }, status: number, what: string): void {
    if (r.status !== status) throw new Error(`peer ${this.sync.peer}: ${what} answered ${r.status}: ${r.json?.message ?? r.text.slice(0, 500)}`);
  }

  private call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
    const peer = this.sync.peer ?? '';
    const url = new URL(path, peer.endsWith('/') ? peer : `${peer}/`);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method,
          headers: { authorization: `Bearer ${this.token}`, ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
          ...(this.ca ? { ca: this.ca } : {}),
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: any;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, json, text });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`peer ${this.sync.peer}: ${method} ${path} timed out after ${this.timeoutMs} ms`)));
      req.on('error', (e) => reject(new Error(`peer ${this.sync.peer}: ${method} ${path}: ${e.message}`)));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }
}

export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function omit(o: Doc, keys: readonly string[]): Doc {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([k]) => !keys.includes(k)));
}

function pick(o: Doc, keys: readonly string[]): Doc {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([k]) => keys.includes(k)));
}

/**
 * patronus_ha_sync_in_sync (1/0), patronus_ha_sync_ok (last run without
 * error), patronus_ha_sync_primary_revision / _peer_revision, and
 * patronus_ha_sync_last_run_timestamp_seconds, from the last report.
 */
export function registerHaSyncMetrics(registry: Registry, sync: HaSync): void {
  const gauge = (name: string, help: string, value: (r: SyncReport) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['peer'],
      registers: [registry],
      collect() {
        this.reset();
        const r = sync.status();
        if (r) this.set({ peer: r.peer.url }, value(r));
      },
    });
  gauge('patronus_ha_sync_in_sync', 'Whether the peer holds the synced sections of the last committed revision (1) or drifted (0)', (r) => (r.inSync ? 1 : 0));
  gauge('patronus_ha_sync_ok', 'Whether the last sync run reached the peer without error', (r) => (r.error ? 0 : 1));
  gauge('patronus_ha_sync_primary_revision', 'Revision of this node the last sync compared', (r) => r.primary.revision ?? 0);
  gauge('patronus_ha_sync_peer_revision', "The peer's committed revision at the last sync", (r) => r.peer.revision ?? 0);
  gauge('patronus_ha_sync_last_run_timestamp_seconds', 'When the last sync ran (unix seconds)', (r) => Date.parse(r.at) / 1000);
}
