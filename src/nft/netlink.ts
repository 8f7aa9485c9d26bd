/**
 * nftables over netlink, read-only: the ruleset generation (NFT_MSG_GETGEN)
 * and one table's rules with their counters (an NFT_MSG_GETRULE dump), for
 * /metrics and the drift check. `nft -j list table` builds nft's whole cache
 * and prints every rule as JSON (~0.4 s at 10k rules here); the dump is the
 * kernel's own rule list, parsed for what a scrape needs (chain, handle,
 * comment, counter, what the rule does).
 *
 * Message layout (include/uapi/linux/netfilter/nf_tables.h, nfnetlink.h):
 * nlmsghdr, nfgenmsg (family, version, resource id), attributes; rules come
 * back as NFT_MSG_NEWRULE messages ended by NLMSG_DONE.
 */
import { NetlinkError, netlinkExchange } from '../net/netlink.js';
import type { NftRuleCounter } from './subsystem.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWRULE = 6;
const NFT_MSG_GETRULE = 7;
const NFT_MSG_NEWGEN = 15;
const NFT_MSG_GETGEN = 16;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NFPROTO = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 } as const;

// attributes
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_HANDLE = 3;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_RULE_USERDATA = 7;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_COUNTER_BYTES = 1;
const NFTA_COUNTER_PACKETS = 2;
const NFTA_IMMEDIATE_DREG = 1;
const NFTA_IMMEDIATE_DATA = 2;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_NAT_TYPE = 1;
const NFTA_LOOKUP_DREG = 3;
const NFTA_META_SREG = 3;
const NFTA_CT_SREG = 4;
const NFTA_PAYLOAD_SREG = 5;
const NFTA_GEN_ID = 1;
/** libnftnl's rule user data: TLVs of (type u8, length u8); type 0 is the comment (NUL-terminated) */
const NFTNL_UDATA_RULE_COMMENT = 0;

const VERDICTS: Record<number, string> = { 0: 'drop', 1: 'accept', [-3]: 'jump', [-4]: 'goto', [-5]: 'return' };

export type NftFamily = keyof typeof NFPROTO;

/** The netlink answer could not be read completely (records dropped, an error message): the caller falls back to nft. */
export { NetlinkError as NftNetlinkError } from '../net/netlink.js';

/** A request: nlmsghdr + nfgenmsg + attributes. */
function request(type: number, flags: number, family: number, attrs: Buffer[] = []): Buffer {
  const body = Buffer.concat(attrs);
  const msg = Buffer.alloc(16 + 4 + body.length);
  msg.writeUInt32LE(msg.length, 0);
  msg.writeUInt16LE((NFNL_SUBSYS_NFTABLES << 8) | type, 4);
  msg.writeUInt16LE(NLM_F_REQUEST | flags, 6);
  msg.writeUInt32LE(1, 8); // seq
  msg.writeUInt32LE(0, 12); // the kernel fills in our port id
  msg[16] = family;
  msg[17] = 0; // NFNETLINK_V0
  msg.writeUInt16BE(0, 18);
  body.copy(msg, 20);
  return msg;
}

function strAttr(type: number, value: string): Buffer {
  const v = Buffer.from(`${value}\0`, 'utf8');
  const a = Buffer.alloc(4 + ((v.length + 3) & ~3));
  a.writeUInt16LE(4 + v.length, 0);
  a.writeUInt16LE(type, 2);
  v.copy(a, 4);
  return a;
}

/** Calls fn(type, start, end) for each attribute in buf[start, end). */
function attrs(buf: Buffer, start: number, end: number, fn: (type: number, s: number, e: number) => void): void {
  let off = start;
  while (off + 4 <= end) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > end) break;
    fn(buf.readUInt16LE(off + 2) & 0x3fff, off + 4, off + len);
    off += (len + 3) & ~3;
  }
}

function cstr(buf: Buffer, s: number, e: number): string {
  const z = buf.indexOf(0, s);
  return buf.toString('utf8', s, z >= 0 && z < e ? z : e);
}

function u64be(buf: Buffer, s: number): number {
  return Number(buf.readBigUInt64BE(s));
}

/** The ruleset generation of the namespace: every committed nftables transaction changes it. */
export async function rulesetGeneration(inNetns: <T>(fn: () => T) => T): Promise<number> {
  const msgs = await netlinkExchange(inNetns, NETLINK_NETFILTER, request(NFT_MSG_GETGEN, NLM_F_ACK, 0), false);
  for (const m of msgs ?? []) {
    if ((m.readUInt16LE(4) & 0xff) !== NFT_MSG_NEWGEN) continue;
    let id: number | undefined;
    attrs(m, 20, m.length, (t, s) => {
      if (t === NFTA_GEN_ID) id = m.readUInt32BE(s);
    });
    if (id !== undefined) return id;
  }
  throw new NetlinkError('no ruleset generation in the answer');
}

/** One rule of the dump, as a scrape needs it. */
export interface NetlinkRule {
  chain: string;
  handle: number;
  comment?: string;
  /** its (last) counter, when it has one */
  counter?: { packets: number; bytes: number };
  /** what it does, named as nft's JSON does (see ruleAction in subsystem.ts) */
  action: string;
}

/** What an expression does, in the words of nft's JSON statements; undefined: nothing a rule is named by. */
function exprAction(name: string, m: Buffer, s: number, e: number): string | undefined {
  switch (name) {
    case 'immediate': {
      let dreg: number | undefined;
      let code: number | undefined;
      attrs(m, s, e, (t, as, ae) => {
        if (t === NFTA_IMMEDIATE_DREG) dreg = m.readUInt32BE(as);
        else if (t === NFTA_IMMEDIATE_DATA)
          attrs(m, as, ae, (t2, bs, be) => {
            if (t2 === NFTA_DATA_VERDICT) attrs(m, bs, be, (t3, cs) => t3 === NFTA_VERDICT_CODE && (code = m.readInt32BE(cs)));
          });
      });
      return dreg === 0 && code !== undefined ? VERDICTS[code] : undefined;
    }
    case 'nat': {
      let type: number | undefined;
      attrs(m, s, e, (t, as) => t === NFTA_NAT_TYPE && (type = m.readUInt32BE(as)));
      return type === 0 ? 'snat' : type === 1 ? 'dnat' : undefined;
    }
    case 'masq':
      return 'masquerade';
    case 'redir':
      return 'redirect';
    case 'reject':
      return 'reject';
    case 'log':
      return 'log';
    case 'lookup': {
      let verdictMap = false;
      attrs(m, s, e, (t, as) => t === NFTA_LOOKUP_DREG && m.readUInt32BE(as) === 0 && (verdictMap = true));
      return verdictMap ? 'vmap' : undefined;
    }
    case 'meta':
    case 'ct':
    case 'payload': {
      const sreg = name === 'meta' ? NFTA_META_SREG : name === 'ct' ? NFTA_CT_SREG : NFTA_PAYLOAD_SREG;
      let sets = false;
      attrs(m, s, e, (t) => t === sreg && (sets = true));
      return sets ? 'mark' : undefined;
    }
    default:
      return undefined;
  }
}

/** Where a rule message keeps its handle and its (last) counter's two numbers (offsets in the message; -1: none). */
interface Offsets {
  handle: number;
  packets: number;
  bytes: number;
}

/** Pure: one NFT_MSG_NEWRULE message -> the rule (plain loops: a scrape parses 10^4 of them). */
export function parseRule(m: Buffer, at?: Offsets): NetlinkRule | undefined {
  if ((m.readUInt16LE(4) & 0xff) !== NFT_MSG_NEWRULE) return undefined;
  const rule: NetlinkRule = { chain: '', handle: 0, action: 'continue' };
  const end = m.length;
  let off = 20;
  while (off + 4 <= end) {
    const len = m.readUInt16LE(off);
    if (len < 4 || off + len > end) break;
    const t = m.readUInt16LE(off + 2) & 0x3fff;
    const s = off + 4;
    const e = off + len;
    if (t === NFTA_RULE_CHAIN) rule.chain = cstr(m, s, e);
    else if (t === NFTA_RULE_HANDLE) {
      rule.handle = u64be(m, s);
      if (at) at.handle = s;
    }
    else if (t === NFTA_RULE_USERDATA) {
      let u = s;
      while (u + 2 <= e) {
        const ut = m[u]!;
        const ul = m[u + 1]!;
        if (ut === NFTNL_UDATA_RULE_COMMENT) rule.comment = cstr(m, u + 2, Math.min(e, u + 2 + ul));
        u += 2 + ul;
      }
    } else if (t === NFTA_RULE_EXPRESSIONS) parseExpressions(m, s, e, rule, at);
    off += (len + 3) & ~3;
  }
  return rule;
}

/** The expression list of a rule: its counter and what it does. */
function parseExpressions(m: Buffer, start: number, end: number, rule: NetlinkRule, at: Offsets | undefined): void {
  let off = start;
  while (off + 4 <= end) {
    const len = m.readUInt16LE(off);
    if (len < 4 || off + len > end) break;
    if ((m.readUInt16LE(off + 2) & 0x3fff) === NFTA_LIST_ELEM) {
      let name = '';
      let ds = 0;
      let de = 0;
      let o = off + 4;
      const le = off + len;
      while (o + 4 <= le) {
        const l2 = m.readUInt16LE(o);
        if (l2 < 4 || o + l2 > le) break;
        const t2 = m.readUInt16LE(o + 2) & 0x3fff;
        if (t2 === NFTA_EXPR_NAME) name = cstr(m, o + 4, o + l2);
        else if (t2 === NFTA_EXPR_DATA) {
          ds = o + 4;
          de = o + l2;
        }
        o += (l2 + 3) & ~3;
      }
      if (name === 'counter') {
        const c = { packets: 0, bytes: 0 };
        attrs(m, ds, de, (ct, cs) => {
          if (ct === NFTA_COUNTER_PACKETS) {
            c.packets = u64be(m, cs);
            if (at) at.packets = cs;
          } else if (ct === NFTA_COUNTER_BYTES) {
            c.bytes = u64be(m, cs);
            if (at) at.bytes = cs;
          }
        });
        rule.counter = c;
      } else if (ACTION_EXPRS.has(name)) {
        const a = exprAction(name, m, ds, de);
        if (a) rule.action = a;
      }
    }
    off += (len + 3) & ~3;
  }
}

/** Expressions that can say what a rule does (exprAction); the rest (cmp, payload loads, bitwise...) are skipped unparsed. */
const ACTION_EXPRS = new Set(['immediate', 'nat', 'masq', 'redir', 'reject', 'log', 'lookup', 'meta', 'ct', 'payload']);

/**
 * Every rule of one table with its counter (an NFT_MSG_GETRULE dump in the
 * namespace); null when the table does not exist.
 *
 * With `cacheKey` (one per namespace and table), the dump's layout is kept
 * for the next call: while the ruleset has not changed, the kernel sends
 * the same messages with only the counters' numbers different, so those
 * are read at the offsets found last time and the rest of each rule (chain,
 * comment, action: the strings) is reused instead of parsed again (~3 ms
 * instead of ~35 ms at 10k rules). "Not changed" is checked on every
 * message: the dump's generation (nfgenmsg res_id: the ruleset generation,
 * which every committed transaction moves; its low 16 bits), the message's
 * length and the rule's handle must all equal the kept ones, else the whole
 * dump is parsed again.
 */
export async function dumpRules(inNetns: <T>(fn: () => T) => T, family: NftFamily, table: string, cacheKey?: string): Promise<NetlinkRule[] | null> {
  const msgs = await netlinkExchange(inNetns, NETLINK_NETFILTER, request(NFT_MSG_GETRULE, NLM_F_DUMP, NFPROTO[family], [strAttr(NFTA_RULE_TABLE, table)]), true);
  if (msgs === null) {
    if (cacheKey !== undefined) layouts.delete(cacheKey);
    return null;
  }
  const layout = layoutOf(msgs, cacheKey);
  const out: NetlinkRule[] = [];
  for (let i = 0; i < msgs.length; i++) {
    const r = layout.rules[i];
    if (!r) continue;
    const m = msgs[i]!;
    const at = layout.offsets[i]!;
    const rule: NetlinkRule = { chain: r.chain, handle: r.handle, action: r.action };
    if (r.comment !== undefined) rule.comment = r.comment;
    if (r.counter) rule.counter = { packets: at.packets >= 0 ? u64be(m, at.packets) : 0, bytes: at.bytes >= 0 ? u64be(m, at.bytes) : 0 };
    out.push(rule);
  }
  return out;
}

/**
 * The counters of one table's rules for /metrics, without an object per
 * rule: the dump's counted rules (those with a counter and a comment: what
 * ruleCounters keeps), the same array while the ruleset is unchanged (so a
 * caller can keep what it derives from it: WeakMap by `rules`), and their
 * numbers in two arrays, index for index. null when the table does not
 * exist. The same dump, layout and checks as dumpRules.
 */
export async function dumpRuleCounts(inNetns: <T>(fn: () => T) => T, family: NftFamily, table: string, cacheKey?: string): Promise<RuleCounts | null> {
  const msgs = await netlinkExchange(inNetns, NETLINK_NETFILTER, request(NFT_MSG_GETRULE, NLM_F_DUMP, NFPROTO[family], [strAttr(NFTA_RULE_TABLE, table)]), true);
  if (msgs === null) {
    if (cacheKey !== undefined) layouts.delete(cacheKey);
    return null;
  }
  const layout = layoutOf(msgs, cacheKey);
  const c = (layout.counted ??= countedOf(layout));
  const packets = new Float64Array(c.rules.length);
  const bytes = new Float64Array(c.rules.length);
  for (let j = 0; j < c.rules.length; j++) {
    const m = msgs[c.message[j]!]!;
    const p = c.packets[j]!;
    const b = c.bytes[j]!;
    // two u32 halves: the same double as Number(readBigUInt64BE), without a BigInt per number
    if (p >= 0) packets[j] = m.readUInt32BE(p) * 2 ** 32 + m.readUInt32BE(p + 4);
    if (b >= 0) bytes[j] = m.readUInt32BE(b) * 2 ** 32 + m.readUInt32BE(b + 4);
  }
  return { rules: c.rules, packets, bytes };
}

/** dumpRuleCounts' answer: rules[i] counted packets[i] and bytes[i]. */
export interface RuleCounts {
  /** the counted rules as parsed with the layout (without their counter: the numbers are in packets and bytes) */
  rules: readonly CountedRule[];
  packets: Float64Array;
  bytes: Float64Array;
}

export type CountedRule = Omit<NetlinkRule, 'counter'> & { comment: string };

/** The layout of `msgs`: the kept one while every message matches it, else parsed again (and kept under cacheKey). */
function layoutOf(msgs: readonly Buffer[], cacheKey: string | undefined): DumpLayout {
  const kept = cacheKey !== undefined ? layouts.get(cacheKey) : undefined;
  if (kept && sameLayout(kept, msgs)) return kept;
  const layout: DumpLayout = { generation: msgs[0]?.readUInt16BE(18) ?? -1, lengths: [], offsets: [], rules: [] };
  for (const m of msgs) {
    const at: Offsets = { handle: -1, packets: -1, bytes: -1 };
    const r = parseRule(m, at);
    layout.lengths.push(m.length);
    layout.offsets.push(r ? at : undefined);
    layout.rules.push(r);
  }
  if (cacheKey !== undefined) {
    if (layouts.size >= 16 && !layouts.has(cacheKey)) layouts.delete(layouts.keys().next().value!);
    layouts.set(cacheKey, layout);
  }
  return layout;
}

/** A dump as parsed last time: per message its length, where its numbers are, and the rule (counter as then). */
interface DumpLayout {
  generation: number;
  lengths: number[];
  offsets: (Offsets | undefined)[];
  rules: (NetlinkRule | undefined)[];
  /** dumpRuleCounts' view of it, made on first use */
  counted?: { rules: CountedRule[]; message: Int32Array; packets: Int32Array; bytes: Int32Array };
}

/** Kept layouts by dumpRules' cacheKey. */
const layouts = new Map<string, DumpLayout>();

/** Whether every message of `msgs` is the one `layout` was parsed from, but for its counters' numbers. */
function sameLayout(layout: DumpLayout, msgs: readonly Buffer[]): boolean {
  if (msgs.length !== layout.lengths.length || msgs.length === 0) return false;
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i]!;
    if (m.length !== layout.lengths[i] || m.readUInt16BE(18) !== layout.generation) return false;
    const r = layout.rules[i];
    if (!r) {
      if ((m.readUInt16LE(4) & 0xff) === NFT_MSG_NEWRULE) return false;
      continue;
    }
    const at = layout.offsets[i]!;
    if (at.handle < 0 || u64be(m, at.handle) !== r.handle) return false;
  }
  return true;
}

/** The rules of a layout that ruleCounters keeps (a comment and a counter), with where their numbers are. */
function countedOf(layout: DumpLayout): NonNullable<DumpLayout['counted']> {
  const rules: CountedRule[] = [];
  const idx: number[] = [];
  for (let i = 0; i < layout.rules.length; i++) {
    const r = layout.rules[i];
    if (!r?.comment || !r.counter) continue;
    rules.push({ chain: r.chain, handle: r.handle, comment: r.comment, action: r.action });
    idx.push(i);
  }
  return {
    rules,
    message: Int32Array.from(idx),
    packets: Int32Array.from(idx, (i) => layout.offsets[i]!.packets),
    bytes: Int32Array.from(idx, (i) => layout.offsets[i]!.bytes),
  };
}

/** The rules of a dump that carry a comment and a counter, as NftRuleCounter (what countersFromJson reads from nft's JSON). */
export function ruleCounters(rules: readonly NetlinkRule[]): NftRuleCounter[] {
  const out: NftRuleCounter[] = [];
  for (const r of rules) {
    if (!r.comment || !r.counter) continue;
    out.push({ chain: r.chain, handle: r.handle, comment: r.comment, action: r.action, packets: r.counter.packets, bytes: r.counter.bytes });
  }
  return out;
}

const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_GETSETELEM = 13;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_FLAGS = 3;
const NFTA_DATA_VALUE = 1;
const NFT_SET_ELEM_INTERVAL_END = 1;

/**
 * The elements of one set as the kernel holds them (an NFT_MSG_GETSETELEM
 * dump), without nft: its listing of an interval set is superlinear (1M
 * /24s: minutes). `words` keys per element, each `keyWords` u32 (the key's
 * bytes big-endian, zero-padded to a multiple of 4), in dump order; `end[i]`
 * is 1 for an interval-end element. null when the set or table does not
 * exist. The parse yields to the event loop every few milliseconds (a 1M
 * interval set is ~2M elements, ~40 MB of messages).
 */
export async function dumpSetElements(inNetns: <T>(fn: () => T) => T, family: NftFamily, table: string, set: string, keyBytes: number): Promise<SetElementDump | null> {
  const msgs = await netlinkExchange(
    inNetns,
    NETLINK_NETFILTER,
    request(NFT_MSG_GETSETELEM, NLM_F_DUMP, NFPROTO[family], [strAttr(NFTA_SET_ELEM_LIST_TABLE, table), strAttr(NFTA_SET_ELEM_LIST_SET, set)]),
    true,
    // the kernel's rbtree walk restarts from the first element for every ~32 KB batch: quadratic, ~1 min at 1M intervals here
    600_000,
  );
  if (msgs === null) return null;
  const keyWords = (keyBytes + 3) >> 2;
  let cap = 1024;
  let keys = new Uint32Array(cap * keyWords);
  let end = new Uint8Array(cap);
  let n = 0;
  let last = performance.now();
  for (const m of msgs) {
    if ((m.readUInt16LE(4) & 0xff) !== NFT_MSG_NEWSETELEM) continue;
    attrs(m, 20, m.length, (t, s, e) => {
      if (t !== NFTA_SET_ELEM_LIST_ELEMENTS) return;
      attrs(m, s, e, (t2, es, ee) => {
        if (t2 !== NFTA_LIST_ELEM) return;
        let ks = -1;
        let ke = -1;
        let flags = 0;
        attrs(m, es, ee, (t3, as, ae) => {
          if (t3 === NFTA_SET_ELEM_KEY) attrs(m, as, ae, (t4, vs, ve) => t4 === NFTA_DATA_VALUE && ((ks = vs), (ke = ve)));
          else if (t3 === NFTA_SET_ELEM_FLAGS) flags = m.readUInt32BE(as);
        });
        if (ks < 0) return;
        if (n === cap) {
          cap *= 2;
          const k2 = new Uint32Array(cap * keyWords);
          k2.set(keys);
          keys = k2;
          const e2 = new Uint8Array(cap);
          e2.set(end);
          end = e2;
        }
        for (let w = 0; w < keyWords; w++) {
          let v = 0;
          for (let b = 0; b < 4; b++) {
            const at = ks + w * 4 + b;
            v = v * 256 + (at < ke && w * 4 + b < keyBytes ? m[at]! : 0);
          }
          keys[n * keyWords + w] = v;
        }
        end[n] = flags & NFT_SET_ELEM_INTERVAL_END ? 1 : 0;
        n++;
      });
    });
    if (performance.now() - last > 5) {
      await new Promise((r) => setImmediate(r));
      last = performance.now();
    }
  }
  return { keyWords, count: n, keys: keys.subarray(0, n * keyWords), end: end.subarray(0, n) };
}

/** dumpSetElements' answer. */
export interface SetElementDump {
  keyWords: number;
  count: number;
  keys: Uint32Array;
  end: Uint8Array;
}
