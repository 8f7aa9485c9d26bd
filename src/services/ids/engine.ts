/**
 * The IDS runtime inside the control plane: one engine per Host (state
 * directory) follows Suricata's eve.json, keeps recent alerts and counts for
 * the API and metrics, and feeds auto-block.
 *
 * It lives as long as the process that applied the config (the server); its
 * timers do not keep a one-shot CLI process alive. The block list comes from
 * a provider, by default the fast path's pinned data plane of the same Host.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import { AlertStore, FileTail, parseEveLine, type EveAlert } from './eve.js';
import { AutoBlocker, parsePrefixes, type AutoBlockPolicy, type BlockList } from './autoblock.js';
import type { IdsModel } from './suricata.js';
import { FastpathDataPlane, type FastpathView } from '../../fastpath/dataplane.js';
import { fastpathPinDir } from '../../fastpath/subsystem.js';

export type BlockListProvider = (host: Host) => Promise<BlockList | undefined>;

export interface IdsEngineOptions {
  eveFile: string;
  /** where the tail position is kept (survives control-plane restarts) */
  positionFile?: string;
  model: Pick<IdsModel, 'autoBlock' | 'recentAlerts'>;
  /** a fixed block list, or a provider asked when one is needed (again at most every 5 s while it has none) */
  blockList?: BlockList;
  blockListProvider?: () => Promise<BlockList | undefined>;
  pollMs?: number;
}

export class IdsEngine {
  readonly store: AlertStore;
  readonly blocker: AutoBlocker;
  private readonly tail: FileTail;
  private autoBlock: boolean;
  /** alert handling is serialized so blocks happen in alert order */
  private chain: Promise<void> = Promise.resolve();
  tailErrors = 0;
  lastTailError?: string;
  private blockList: BlockList | undefined;
  private lastAcquire = 0;

  constructor(readonly opts: IdsEngineOptions) {
    this.store = new AlertStore(opts.model.recentAlerts);
    this.autoBlock = opts.model.autoBlock.enabled;
    this.blockList = opts.blockList;
    this.blocker = new AutoBlocker(policyOf(opts.model), opts.blockList);
    this.tail = new FileTail(opts.eveFile, (lines) => this.onLines(lines), {
      pollMs: opts.pollMs ?? 100,
      ...(opts.positionFile ? { positionFile: opts.positionFile } : {}),
      onError: (e) => {
        this.tailErrors++;
        this.lastTailError = `${opts.eveFile}: ${e.message}`;
      },
    });
  }

  start(): void {
    this.tail.start();
  }

  stop(): void {
    this.tail.stop();
    // a block list we acquired (the fast path's maps) is ours to close; the data plane keeps running
    if (!this.opts.blockList) this.blockList?.close?.();
    this.blockList = undefined;
    this.blocker.setBlockList(undefined);
  }

  /** Reads what is new right away (tests and the API use it; the timer does the same). */
  async poll(): Promise<void> {
    this.tail.poll();
    await this.chain;
  }

  update(model: Pick<IdsModel, 'autoBlock' | 'recentAlerts'>): void {
    this.autoBlock = model.autoBlock.enabled;
    this.blocker.setPolicy(policyOf(model));
    this.store.setCapacity(model.recentAlerts);
  }

  private async ensureBlockList(): Promise<void> {
    if (this.blockList || !this.opts.blockListProvider) return;
    if (Date.now() - this.lastAcquire < 5000) return;
    this.lastAcquire = Date.now();
    try {
      this.blockList = await this.opts.blockListProvider();
    } catch (e) {
      this.blocker.errors++;
      this.blocker.lastError = `cannot open the fast-path block list: ${(e as Error).message}`;
    }
    this.blocker.setBlockList(this.blockList);
  }

  /** Waits until every alert read so far has been handled (blocks written). */
  async settled(): Promise<void> {
    await this.chain;
  }

  private onLines(lines: string[]): void {
    const alerts: EveAlert[] = [];
    for (const line of lines) {
      try {
        const a = parseEveLine(line);
        if (a) alerts.push(a);
      } catch (e) {
        this.store.malformed++;
        this.store.lastMalformed = `${(e as Error).message}: ${line.slice(0, 200)}`;
      }
    }
    for (const a of alerts) this.store.add(a);
    if (!this.autoBlock || !alerts.length) return;
    this.chain = this.chain.then(async () => {
      await this.ensureBlockList();
      for (const a of alerts) await this.blocker.onAlert(a);
    });
  }

  /**
   * Takes a source (canonical address text) off the fast path's block list,
   * after the alerts read so far are handled (so a pending block cannot undo
   * it). Whether it was listed; undefined when no block list can be opened
   * (no fast path runs).
   */
  async unblock(address: string): Promise<boolean | undefined> {
    await this.chain;
    this.lastAcquire = 0; // an operator asks now: do not wait out the acquire throttle
    await this.ensureBlockList();
    return this.blocker.unblock(address);
  }

  summary() {
    return {
      alerts: this.store.total,
      bySeverity: Object.fromEntries([...this.store.bySeverity].sort((a, b) => a[0] - b[0])),
      signatures: this.store.signatures().slice(0, 50),
      malformedLines: this.store.malformed,
      ...(this.store.lastMalformed ? { lastMalformed: this.store.lastMalformed } : {}),
      autoBlock: {
        enabled: this.autoBlock,
        blocks: this.blocker.blocks,
        current: this.blocker.current(),
        errors: this.blocker.errors,
        ...(this.blocker.lastError ? { lastError: this.blocker.lastError } : {}),
        recent: this.blocker.recent.slice(-20),
      },
      ...(this.tailErrors ? { tailErrors: this.tailErrors, lastTailError: this.lastTailError } : {}),
    };
  }
}

function policyOf(m: Pick<IdsModel, 'autoBlock'>): AutoBlockPolicy {
  const a = m.autoBlock;
  return { maxSeverity: a.maxSeverity, signatureIds: a.signatureIds, excludeSignatureIds: a.excludeSignatureIds, ttl: a.ttl, exempt: parsePrefixes(a.exempt) };
}

// ---------------------------------------------------------------------------
// one engine per Host

const engines = new Map<string, IdsEngine>();
let provider: BlockListProvider = fastpathBlockList;

/** Replaces where auto-block finds its block list (the server may hand in its own data plane). */
export function setBlockListProvider(p: BlockListProvider): void {
  provider = p;
}

export function idsEngine(host: Host): IdsEngine | undefined {
  return engines.get(key(host));
}

/** Starts (or updates) the Host's engine for a model; stops it for null. */
export async function syncEngine(host: Host, model: IdsModel | null, files: { eveFile: string; positionFile: string }): Promise<IdsEngine | undefined> {
  const k = key(host);
  const existing = engines.get(k);
  if (!model) {
    existing?.stop();
    engines.delete(k);
    return undefined;
  }
  if (existing && existing.opts.eveFile === files.eveFile) {
    existing.update(model);
    return existing;
  }
  existing?.stop();
  const e = new IdsEngine({ eveFile: files.eveFile, positionFile: files.positionFile, model, blockListProvider: () => provider(host) });
  e.start();
  engines.set(k, e);
  return e;
}

export function stopEngine(host: Host): void {
  engines.get(key(host))?.stop();
  engines.delete(key(host));
}

function key(host: Host): string {
  return `${host.netns ?? ''}\0${path.resolve(host.stateDir)}`;
}

/**
 * The fast path's block list: its data plane pinned for this Host, adopted
 * (never loaded from here). undefined while no fast path runs.
 */
async function fastpathBlockList(host: Host): Promise<BlockList | undefined> {
  const pinDir = fastpathPinDir(host);
  if (!FastpathDataPlane.isPinned(pinDir)) return undefined;
  return new PinnedBlockList(pinDir, (fn) => host.inNetns(fn));
}

/**
 * The fast path's block list through its pins. The fast path may be
 * reloaded under us (a capacity change pins new maps): before each write the
 * pin's inode is compared with the one opened, and a changed pin is opened
 * again, so blocks never go into a map no program reads.
 */
class PinnedBlockList implements BlockList {
  private dp: FastpathView | undefined;
  private ino = -1;

  constructor(
    private readonly pinDir: string,
    private readonly inNs: <T>(fn: () => T) => T,
  ) {}

  private async current(): Promise<FastpathView> {
    const ino = pinInode(`${this.pinDir}/block_v4`);
    if (this.dp && ino === this.ino) return this.dp;
    this.dp?.close();
    this.dp = undefined;
    if (!FastpathDataPlane.isPinned(this.pinDir)) throw new Error(`no fast path is pinned at ${this.pinDir}`);
    this.dp = FastpathDataPlane.observe({ pinDir: this.pinDir, inNetns: this.inNs });
    this.ino = ino;
    return this.dp;
  }

  async block(address: string, ttlSeconds: number): Promise<void> {
    (await this.current()).block(address, ttlSeconds);
  }

  async unblock(address: string): Promise<boolean> {
    return (await this.current()).unblock(address);
  }

  close(): void {
    this.dp?.close();
    this.dp = undefined;
  }
}

function pinInode(p: string): number {
  try {
    return statSync(p).ino;
  } catch {
    return -1;
  }
}
