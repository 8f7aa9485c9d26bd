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
    this.recent.push({ address: d.address, ttl: d.ttl, signatureId: a.signatureId, at: now });
    if (this.recent.length > 1000) this.recent.shift();
    return d;
  }
}
