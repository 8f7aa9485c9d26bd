/**
 * Alert -> block: which alerts make their source dropped by the fast path,
 * and for how long. The block list itself is the fast path's (XDP map with
 * expiry in the kernel); this file only sees the small BlockList interface.
 */
import { contains, isAddress, parsePrefix, type Prefix } from '../../net/address.js';
import type { EveAlert } from './eve.js';

/** What auto-block needs from the data plane (FastpathDataPlane implements it). */
export interface BlockList {
  block(address: string, ttlSeconds: number): void | Promise<void>;
  unblock(address: string): unknown;
  /** releases handles (the data plane itself keeps running) */
  close?(): void;
}

export interface AutoBlockPolicy {
  maxSeverity: number;
  signatureIds: number[];
  excludeSignatureIds: number[];
  ttl: number;
  /** never blocked: exempt prefixes, plus homeNet unless blockHomeNet */
  exempt: Prefix[];
}

export interface BlockDecision {
  address: string;
  ttl: number;
}

/** Pure: whether this alert blocks, and whom. */
export function decideBlock(a: EveAlert, p: AutoBlockPolicy): BlockDecision | { skip: string } {
  if (a.severity > p.maxSeverity) return { skip: `severity ${a.severity} is below the threshold ${p.maxSeverity}` };
  if (p.signatureIds.length && !p.signatureIds.includes(a.signatureId)) return { skip: `signature ${a.signatureId} is not in autoBlock.signatureIds` };
  if (p.excludeSignatureIds.includes(a.signatureId)) return { skip: `signature ${a.signatureId} is excluded` };
  // a rule with `target:` names the attacker; otherwise the packet's source
  const address = a.source ?? a.srcIp;
  if (!isAddress(address)) return { skip: `"${address}" is not an address` };
  if (p.exempt.some((x) => contains(x, address))) return { skip: `${address} is exempt` };
  return { address, ttl: p.ttl };
}

export function parsePrefixes(list: string[]): Prefix[] {
  return list.map((s) => parsePrefix(s));
}

export interface BlockEvent {
  address: string;
  ttl: number;
  signatureId: number;
  at: number;
}

/**
 * Applies decisions to a BlockList. Each further alert from a blocked source
 * renews its TTL, at most once a second per address (an attack can raise
 * thousands of alerts a second; one map write a second is enough).
 */
export class AutoBlocker {
  private readonly lastWrite = new Map<string, number>();
  /** what this blocker has blocked and not yet seen expire or unblocked: address -> expiry (ms; Infinity for ttl 0) */
  private readonly active = new Map<string, number>();
  readonly recent: BlockEvent[] = [];
  blocks = 0;
  errors = 0;
  lastError?: string;

  constructor(
    private policy: AutoBlockPolicy,
    private blockList: BlockList | undefined,
  ) {}

  setPolicy(p: AutoBlockPolicy): void {
    this.policy = p;
  }

  setBlockList(b: BlockList | undefined): void {
    this.blockList = b;
  }

  /** The sources this blocker put on the block list that are still there (by their TTL), oldest first. */
  current(now = Date.now()): { address: string; expiresAt: string | null }[] {
    const out: { address: string; expiresAt: string | null }[] = [];
    for (const [address, until] of this.active) {
      if (until <= now) this.active.delete(address);
      else out.push({ address, expiresAt: until === Infinity ? null : new Date(until).toISOString() });
    }
    return out;
  }

  /**
   * Takes a source off the block list (an operator's unblock). Whether it was
   * listed; undefined when no block list is loaded. A further alert from it
   * blocks it again right away.
   */
  async unblock(address: string): Promise<boolean | undefined> {
    if (!this.blockList) return undefined;
    const removed = Boolean(await this.blockList.unblock(address));
    this.active.delete(address);
    this.lastWrite.delete(address);
    return removed;
  }

  async onAlert(a: EveAlert, now = Date.now()): Promise<BlockDecision | undefined> {
    const d = decideBlock(a, this.policy);
    if ('skip' in d) return undefined;
    const last = this.lastWrite.get(d.address);
    if (last !== undefined && now - last < 1000) return d;
    if (!this.blockList) {
      this.errors++;
      this.lastError = `cannot block ${d.address} (signature ${a.signatureId}): no fast-path block list is loaded`;
      return undefined;
    }
    try {
      await this.blockList.block(d.address, d.ttl);
    } catch (e) {
      this.errors++;
      this.lastError = `block ${d.address} (signature ${a.signatureId}): ${(e as Error).message}`;
      return undefined;
    }
    this.lastWrite.set(d.address, now);
    if (this.lastWrite.size > 100_000) this.lastWrite.clear();
    this.blocks++;
    this.active.set(d.address, d.ttl > 0 ? now + d.ttl * 1000 : Infinity);
    if (this.active.size > 100_000) this.active.delete(this.active.keys().next().value!);
    this.recent.push({ address: d.address, ttl: d.ttl, signatureId: a.signatureId, at: now });
    if (this.recent.length > 1000) this.recent.shift();
    return d;
  }
}
