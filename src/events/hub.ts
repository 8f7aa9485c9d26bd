/**
 * The firewall event log: what the fast path (XDP drop events, src/events/xdp.ts)
 * and nftables (NFLOG, src/events/nflog.ts) report, kept in a bounded ring of
 * recent events and fanned out to followers (the SSE stream behind
 * `GET /api/v1/events?follow=1`, the console, `patronus log -f`).
 *
 * Nothing here grows without bound: the ring holds `capacity` events, and a
 * follower that cannot keep up loses events (counted, and told) instead of
 * queueing them (see src/events/routes.ts).
 */
import { z } from 'zod';
import { contains, parsePrefix, type Prefix } from '../net/address.js';

export const EVENT_SOURCES = ['xdp', 'nft'] as const;
export type EventSource = (typeof EVENT_SOURCES)[number];

/** One event, as the API serves it (the contract the console and the CLI read). */
export const firewallEventSchema = z.object({
  id: z.number().int().describe('sequence number of this event in this server (SSE id; ?after= / Last-Event-ID resume after it)'),
  time: z.string().describe('when the kernel saw the packet (ISO 8601)'),
  source: z.enum(EVENT_SOURCES).describe('xdp: the fast path (BPF ring buffer); nft: nftables (NFLOG)'),
  rule: z.string().describe('rule name; fast path: "default" for an interface default-drop policy, "blocklist" for the dynamic blocklist; nft: the rule/policy name'),
  verdict: z.string().describe('fast path: rule_drop, rate_drop, default_drop, blocked; nft: drop, reject, accept'),
  iface: z.string().describe('interface the packet came in on (ifindex as text when it has no name)'),
  direction: z.enum(['ingress', 'egress']).describe('ingress (XDP, nft input/forward) or egress (tc)'),
  src: z.string(),
  dst: z.string(),
  proto: z.string().describe('tcp, udp, icmp, icmpv6 or the protocol number'),
  sport: z.number().int().describe('source port; 0 without ports'),
  dport: z.number().int().describe('destination port; ICMP: type << 8 | code'),
  sampleRate: z.number().int().min(1).describe('packets this event stands for: 1 + those the per-rule limiter suppressed since the previous event of the rule'),
  prefix: z.string().optional().describe('nft: the rule\'s log prefix'),
});
export type FirewallEvent = z.infer<typeof firewallEventSchema>;

export const eventFilterSchema = z
  .object({
    rule: z.string().max(128).optional().describe('only this rule'),
    src: z
      .string()
      .max(64)
      .refine((s) => sourcePrefix(s) !== undefined, 'must be an IPv4/IPv6 address or prefix (CIDR)')
      .optional()
      .describe('only sources in this address or prefix'),
    iface: z.string().max(32).optional().describe('only this interface'),
    source: z.enum(EVENT_SOURCES).optional().describe('only xdp or nft events'),
  })
  .strict();
export type EventFilter = z.infer<typeof eventFilterSchema>;

/** A predicate for a filter (the source prefix parsed once). */
export function eventMatcher(f: EventFilter): (e: FirewallEvent) => boolean {
  const net = f.src !== undefined ? sourcePrefix(f.src) : undefined;
  return (e) =>
    (f.rule === undefined || e.rule === f.rule) &&
    (f.iface === undefined || e.iface === f.iface) &&
    (f.source === undefined || e.source === f.source) &&
    (net === undefined || contains(net, e.src));
}

/** The filter's source prefix (an address is its host prefix; host bits are allowed), undefined when it is none. */
function sourcePrefix(s: string): Prefix | undefined {
  try {
    return parsePrefix(s);
  } catch {
    return undefined;
  }
}

export type NewEvent = Omit<FirewallEvent, 'id'>;

export interface EventCounters {
  /** events published, by source */
  published: Record<EventSource, number>;
  /** records lost before they became events: the reader thread's queue towards JS was full, the netlink socket overflowed */
  readerDropped: Record<EventSource, number>;
  /** events not delivered to a follower that could not keep up */
  followerDropped: number;
}

export type Follower = (e: FirewallEvent) => void;

export class EventHub {
  private readonly ring: FirewallEvent[] = [];
  private head = 0;
  private seq = 0;
  private readonly followers = new Set<Follower>();
  readonly counters: EventCounters = { published: { xdp: 0, nft: 0 }, readerDropped: { xdp: 0, nft: 0 }, followerDropped: 0 };

  constructor(readonly capacity = 10_000) {}

  publish(e: NewEvent): FirewallEvent {
    const ev = { id: ++this.seq, ...e };
    if (this.ring.length < this.capacity) this.ring.push(ev);
    else {
      this.ring[this.head] = ev;
      this.head = (this.head + 1) % this.capacity;
    }
    this.counters.published[e.source]++;
    for (const f of this.followers) f(ev);
    return ev;
  }

  /** Records a source lost before they became events. */
  readerLost(source: EventSource, n: number): void {
    this.counters.readerDropped[source] += n;
  }

  /** The newest `limit` events matching, oldest first; after: only those with a larger id. */
  recent(filter: EventFilter = {}, limit = 100, after = 0): FirewallEvent[] {
    const match = eventMatcher(filter);
    const out: FirewallEvent[] = [];
    for (let i = this.ring.length - 1; i >= 0 && out.length < limit; i--) {
      const e = this.ring[(this.head + i) % this.ring.length]!;
      if (e.id <= after) break;
      if (match(e)) out.push(e);
    }
    return out.reverse();
  }

  /** Calls f for every event published from now on, until the returned function is called. */
  follow(f: Follower): () => void {
    this.followers.add(f);
    return () => this.followers.delete(f);
  }

  get followerCount(): number {
    return this.followers.size;
  }

  get lastId(): number {
    return this.seq;
  }
}
