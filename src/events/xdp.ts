/**
 * Fast-path drop events: reads the data plane's `log_events` ring buffer
 * (bpf/include/filter_log.h) and publishes each record as a FirewallEvent.
 * The kernel already rate-limited them per rule; each record says how many
 * drops it stands for (sampleRate).
 *
 * The ring is found by its pin (`<pinDir>/log_events`) and looked at again
 * every second: a data plane loaded later, or replaced by an upgrade or a
 * capacity change (new maps), is picked up without a restart. One reader per
 * ring: readers of one ring share its consumer position, so only the server
 * reads it (everyone else asks the API).
 */
import { existsSync } from 'node:fs';
import { BpfError, RingBufferReader, codecs, openPinnedMap } from '../bpf/index.js';
import type { NativeMap } from '../bpf/native.js';
import { monotonicNs } from '../fastpath/dataplane.js';
import { FILTER_NAME_LEN, LOG_EVENT_SIZE, LOG_SLOT_BLOCKED, LOG_SLOT_DEFAULT, VERDICTS } from '../fastpath/layout.js';
import type { EventHub, NewEvent } from './hub.js';

export interface XdpEventSourceOptions {
  /** the fast path's pin directory (fastpathPinDir(host)) */
  pinDir: string;
  /** ifindex -> name in the data plane's namespace */
  linkNames: () => Promise<Map<number, string>>;
  /** how often to look for a (new) ring, ms */
  pollMs?: number;
}

export const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6', 132: 'sctp', 47: 'gre', 50: 'esp', 51: 'ah' };

export class XdpEventSource {
  private reader: RingBufferReader | undefined;
  private ringId = 0;
  private names: NativeMap | undefined;
  private readonly ruleNames = new Map<number, string>();
  private links = new Map<number, string>();
  private linksAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly hub: EventHub,
    private readonly opts: XdpEventSourceOptions,
  ) {}

  /** Starts reading (when a data plane runs) and watching for one. */
  async start(): Promise<void> {
    await this.refreshLinks();
    this.check();
    this.timer = setInterval(() => this.check(), this.opts.pollMs ?? 1000);
    this.timer.unref();
  }

  /** True while a ring is being read. */
  get reading(): boolean {
    return this.reader !== undefined;
  }

  /** Opens the pinned ring when there is one and it is not the one being read. */
  check(): void {
    if (this.closed) return;
    this.ruleNames.clear(); // slots are reused by other rules across applies
    const path = `${this.opts.pinDir}/log_events`;
    if (!existsSync(path)) {
      this.stopReading();
      return;
    }
    let ring: NativeMap;
    try {
      ring = openPinnedMap(path);
    } catch (e) {
      if (e instanceof BpfError && e.code === 'ENOENT') return this.stopReading();
      throw e;
    }
    try {
      if (ring.info.id === this.ringId && this.reader) return;
      this.stopReading();
      this.names = openPinnedMap(`${this.opts.pinDir}/rule_names`);
      this.reader = new RingBufferReader(ring, (records, dropped) => this.onRecords(records, dropped));
      this.ringId = ring.info.id;
    } finally {
      ring.close(); // the reader holds its own dup
    }
  }

  private stopReading(): void {
    this.reader?.close();
    this.reader = undefined;
    this.names?.close();
    this.names = undefined;
    this.ringId = 0;
  }

  private onRecords(records: Buffer[], dropped: number): void {
    if (dropped) this.hub.readerLost('xdp', dropped);
    // copies: the batch buffer is reused by nothing, but decoding may wait for interface names
    const list = records.filter((r) => r.length >= LOG_EVENT_SIZE).map((r) => Buffer.from(r));
    this.chain = this.chain.then(async () => {
      for (const r of list) {
        if (this.closed) return;
        const ifindex = r.readUInt32LE(8);
        if (!this.links.has(ifindex) && Date.now() - this.linksAt > 200) await this.refreshLinks();
        this.hub.publish(this.decode(r));
      }
    }).catch(() => {});
  }

  private async refreshLinks(): Promise<void> {
    this.linksAt = Date.now();
    try {
      this.links = await this.opts.linkNames();
    } catch {
      /* keep the names we had */
    }
  }

  /** struct log_event -> event (filter_log.h). */
  decode(r: Buffer): NewEvent {
    const timeNs = r.readBigUInt64LE(0);
    const ifindex = r.readUInt32LE(8);
    const slot = r.readUInt32LE(12);
    const sample = r.readUInt32LE(16);
    const verdict = r[24]!;
    const dir = r[25]!;
    const family = r[26]!;
    const l4 = r[27]!;
    const ageMs = Number(monotonicNs() - timeNs) / 1e6;
    const addr = (off: number) => (family === 4 ? codecs.ipv4.decode(r.subarray(off, off + 4)) : codecs.ipv6.decode(r.subarray(off, off + 16)));
    return {
      time: new Date(Date.now() - Math.max(0, ageMs)).toISOString(),
      source: 'xdp',
      rule: this.ruleName(slot),
      verdict: VERDICTS[verdict] ?? String(verdict),
      iface: this.links.get(ifindex) ?? String(ifindex),
      direction: dir === 1 ? 'egress' : 'ingress',
      src: addr(32),
      dst: addr(48),
      proto: PROTO_NAMES[l4] ?? String(l4),
      sport: r.readUInt16LE(28),
      dport: r.readUInt16LE(30),
      sampleRate: Math.max(1, sample),
    };
  }

  private ruleName(slot: number): string {
    if (slot >= LOG_SLOT_BLOCKED && slot < LOG_SLOT_BLOCKED + 2) return 'blocklist';
    if (slot >= LOG_SLOT_DEFAULT && slot < LOG_SLOT_DEFAULT + 2) return 'default';
    let n = this.ruleNames.get(slot);
    if (n === undefined) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(slot);
      const v = this.names?.lookup(k);
      n = v ? v.subarray(0, Math.max(0, v.indexOf(0) === -1 ? FILTER_NAME_LEN : v.indexOf(0))).toString('utf8') : '';
      if (!n) n = `slot ${slot}`;
      this.ruleNames.set(slot, n);
    }
    return n;
  }

  /** Waits until every record received so far is published (tests). */
  async settled(): Promise<void> {
    await this.chain;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.stopReading();
  }
}
