/**
 * The fast-path compiler: validated `fastpath:` section -> the contents of
 * every classification map, for one generation. Pure: aliases come resolved,
 * countries through a CountryResolver; nothing here touches the system.
 *
 * Each match field becomes a set of prefixes (addresses; protocol+port
 * blocks; TCP flag values), and every prefix gets the bit vector of rules
 * that field value allows: its own rules, plus those of every shorter prefix
 * containing it (a longest-prefix lookup returns one entry, so that entry
 * must carry its ancestors' rules), plus rules that do not constrain the
 * field (the zero-length prefix). The program ANDs one vector per field.
 *
 * Capacity limits are checked here, so an oversize rule set fails
 * validation with a path, never halfway through an apply.
 */
import { append, resolveNetworkRef, resolvePortRef, type AliasTable, type PortRange } from '../aliases/aliases.js';
import { prefixBytes, type Prefix } from '../net/address.js';
import type { Issue, IssuePath } from '../config/issues.js';
import type { CountryResolver, GeoPrefix } from './geoip.js';
import { buildCrossproduct } from './crossproduct.js';
import { ACTION, BITS_BYTES, V6_CLASSES, V6_HASH, V6_LENGTHS, DIR4_CHUNKS, DIR4_CLASSES, DIR_CHUNK, DIR_TRIE, FEAT, PORT_CLASSES, FILTER_FLAGS_PER_GEN, FILTER_FLAGS_UNKNOWN, FILTER_MAX_RULES, LOG_FLAGS, LPM_FIELDS, emptyBits, setBit, type GenConfig, type LogConfig, type LpmField } from './layout.js';
import { TCP_FLAG_NAMES, type FastpathConfig, type FastpathRuleConfig } from './schema.js';

/** One LPM map's entries: data bytes (without the generation byte), prefix length, rule bits. */
export interface LpmEntry {
  data: Buffer;
  length: number;
  bits: Buffer;
}

export interface CompiledRule {
  name: string;
  index: number;
  action: keyof typeof ACTION;
  pps: bigint;
  pktBurst: bigint;
  bps: bigint;
  byteBurst: bigint;
}

export interface CompiledInterface {
  name: string;
  mode: 'auto' | 'native' | 'generic';
  egress: boolean;
  /** xpClass: the entry's class in the crossproduct tables (0 without them) */
  ingress: { defaultPolicy: 'pass' | 'drop'; bits: Buffer; xpClass?: number };
  egressPolicy: { defaultPolicy: 'pass' | 'drop'; bits: Buffer; xpClass?: number };
}

export interface FastpathCapacity {
  rules: number;
  prefixes: number;
  portPrefixes: number;
  rateLimitSources: number;
  blocklist: number;
}

/** Everything the data plane writes for one rule-set generation. */
export interface FastpathDesired {
  interfaces: CompiledInterface[];
  rules: CompiledRule[];
  fields: Record<LpmField, LpmEntry[]>;
  /** FILTER_FLAGS_PER_GEN vectors: index = TCP flags byte, 256 = unknown (non-TCP, later fragments) */
  tcpFlags: Buffer[];
  countRules: Buffer;
  /** which lookups the program makes for this generation, and the vectors of the skipped ones */
  genConfig: GenConfig;
  /** IPv4 address fields as DIR-16-8 tables (absent: that field uses its trie alone) */
  dir4: { src_v4?: Dir4; dst_v4?: Dir4 };
  /** IPv6 address fields through the /16 table and per-length hash (absent: that field uses its trie alone) */
  dir6: { src_v6?: Dir6; dst_v6?: Dir6 };
  /** TCP/UDP ports of each port field as arrays (absent: that field uses its trie alone) */
  ports: { sport?: PortArrays; dport?: PortArrays };
  capacity: FastpathCapacity;
  /** drop events: what logs, at which rate (rate 0: nothing) */
  log: LogConfig;
  /** IPv4 TCP/UDP crossproduct cells (crossproduct.ts; absent: the bit vectors classify everything) */
  xp?: { cells: Uint16Array };
  /** which classifier the generation uses for large rule sets, and why (plan, status) */
  classifier: string;
}

/**
 * When a generation gets crossproduct tables: `auto` beyond one bit-vector
 * word (64 rules; smaller sets keep the one-word AND, which is as cheap),
 * `on` whenever they fit (tests), `off` never. The environment variable
 * PATRONUS_FASTPATH_CROSSPRODUCT (auto|on|off) sets the default.
 */
export type CrossproductMode = 'auto' | 'on' | 'off';

export interface CompileInput {
  fastpath: FastpathConfig;
  aliases: AliasTable;
  /** needed only when a rule names countries */
  geoip?: CountryResolver;
  /** path of this section in the document, for issues */
  base?: IssuePath;
  crossproduct?: CrossproductMode;
}

function crossproductMode(input: CompileInput): CrossproductMode {
  const env = process.env.PATRONUS_FASTPATH_CROSSPRODUCT;
  return input.crossproduct ?? (env === 'on' || env === 'off' ? env : 'auto');
}

const PROTO_NUM: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132, gre: 47, esp: 50, ah: 51 };

export function compileFastpath(input: CompileInput): { desired: FastpathDesired; issues: Issue[] } {
  const { fastpath: fp, aliases, geoip } = input;
  const base = input.base ?? ['fastpath'];
  const issues: Issue[] = [];
  const capacity: FastpathCapacity = { ...fp.capacity };
  const ifaceNames = new Set(fp.interfaces.map((i) => i.name));
  const egressIfaces = new Set(fp.interfaces.filter((i) => i.egress.enabled).map((i) => i.name));

  if (fp.rules.length > capacity.rules) {
    issues.push({ path: [...base, 'rules'], message: `${fp.rules.length} rules exceed the capacity of ${capacity.rules} (fastpath.capacity.rules, at most ${FILTER_MAX_RULES})` });
  }

  const items: Record<LpmField, { data: Buffer; length: number; rule: number }[]> = {
    src_v4: [],
    dst_v4: [],
    src_v6: [],
    dst_v6: [],
    sport: [],
    dport: [],
  };
  const wildcard: Record<LpmField, Buffer> = Object.fromEntries(LPM_FIELDS.map((f) => [f, emptyBits()])) as Record<LpmField, Buffer>;
  const flagsBits = Array.from({ length: FILTER_FLAGS_PER_GEN }, () => emptyBits());
  const countRules = emptyBits();
  const rules: CompiledRule[] = [];
  const geoWanted: { cc: string; v4f: LpmField; v6f: LpmField; rule: number }[] = [];
  const ifaceRules = new Map<string, { in: number[]; out: number[] }>([...ifaceNames].map((n) => [n, { in: [], out: [] }]));

  fp.rules.slice(0, FILTER_MAX_RULES).forEach((rule, index) => {
    const path = [...base, 'rules', index];
    rules.push(compileAction(rule, index));
    if (rule.action === 'count') setBit(countRules, index);

    // interfaces and direction
    const dir = rule.direction === 'out' ? 'out' : 'in';
    rule.interfaces.forEach((n, j) => {
      if (!ifaceNames.has(n)) issues.push({ path: [...path, 'interfaces', j], message: `"${n}" is not a fastpath interface (fastpath.interfaces)` });
      else if (dir === 'out' && !egressIfaces.has(n)) issues.push({ path: [...path, 'interfaces', j], message: `interface "${n}" does not have egress.enabled; an "out" rule cannot apply there` });
    });
    for (const n of rule.interfaces.length ? rule.interfaces : [...ifaceNames]) ifaceRules.get(n)?.[dir].push(index);

    // addresses
    for (const side of ['source', 'destination'] as const) {
      const refs = rule[side] === undefined ? [] : Array.isArray(rule[side]) ? (rule[side] as string[]) : [rule[side] as string];
      const countries = (side === 'source' ? rule.countries : rule.destinationCountries) ?? [];
      const v4f: LpmField = side === 'source' ? 'src_v4' : 'dst_v4';
      const v6f: LpmField = side === 'source' ? 'src_v6' : 'dst_v6';
      if (refs.length === 0 && countries.length === 0) {
        setBit(wildcard[v4f], index);
        setBit(wildcard[v6f], index);
        continue;
      }
      const prefixes: Prefix[] = [];
      const ccs: { cc: string; path: IssuePath }[] = [];
      refs.forEach((ref, j) => {
        const p = Array.isArray(rule[side]) ? [...path, side, j] : [...path, side];
        try {
          const r = resolveNetworkRef(ref, aliases);
          append(prefixes, r.prefixes);
          for (const cc of r.countries) ccs.push({ cc, path: p });
        } catch (e) {
          issues.push({ path: p, message: (e as Error).message });
        }
      });
      countries.forEach((c, j) => {
        const p = [...path, side === 'source' ? 'countries' : 'destinationCountries', j];
        const alias = aliases.get(c);
        if (alias) {
          if (alias.type !== 'country') issues.push({ path: p, message: `alias "${c}" is a ${alias.type} alias, not a country alias` });
          else for (const cc of alias.countries) ccs.push({ cc, path: p });
        } else if (/^[A-Za-z]{2}$/.test(c)) ccs.push({ cc: c.toUpperCase(), path: p });
        else issues.push({ path: p, message: `"${c}" is neither an ISO country code nor a country alias` });
      });
      for (const p of prefixes) {
        items[p.family === 4 ? v4f : v6f].push({ data: prefixBytes(p), length: p.length, rule: index });
      }
      for (const { cc, path: p } of ccs) {
        if (!geoip) issues.push({ path: p, message: `country ${cc} needs a GeoIP database (fastpath.geoip.database)` });
        else if (!geoip.has(cc)) issues.push({ path: p, message: `country ${cc} is not in the GeoIP database` });
        else geoWanted.push({ cc, v4f, v6f, rule: index });
      }
    }

    // protocol and ports (ICMP type/code ride in the destination "port")
    const protos = rule.protocol === undefined ? [] : (Array.isArray(rule.protocol) ? rule.protocol : [rule.protocol]).map((p) => (typeof p === 'number' ? p : PROTO_NUM[p]!));
    const portField = (field: 'sourcePorts' | 'destinationPorts'): PortRange[] | undefined => {
      const v = rule[field];
      if (v === undefined) return undefined;
      const refs = Array.isArray(v) ? v : [v];
      const out: PortRange[] = [];
      refs.forEach((ref, j) => {
        try {
          append(out, resolvePortRef(ref, aliases));
        } catch (e) {
          issues.push({ path: Array.isArray(v) ? [...path, field, j] : [...path, field], message: (e as Error).message });
        }
      });
      return out;
    };
    const sports = portField('sourcePorts');
    let dports = portField('destinationPorts');
    if (rule.icmpType !== undefined) {
      const t = rule.icmpType << 8;
      dports = rule.icmpCode !== undefined ? [{ from: t | rule.icmpCode, to: t | rule.icmpCode }] : [{ from: t, to: t | 0xff }];
    }
    for (const [field, ranges] of [
      ['sport', sports],
      ['dport', dports],
    ] as const) {
      if (protos.length === 0) {
        setBit(wildcard[field], index);
        continue;
      }
      for (const proto of new Set(protos)) {
        if (!ranges) {
          items[field].push({ data: Buffer.from([proto, 0, 0]), length: 8, rule: index });
          continue;
        }
        for (const r of ranges) {
          for (const b of rangeToPrefixes(r.from, r.to)) {
            items[field].push({ data: Buffer.from([proto, b.start >> 8, b.start & 0xff]), length: 8 + b.length, rule: index });
          }
        }
      }
    }

    // TCP flags
    if (rule.tcpFlags === undefined) {
      for (const v of flagsBits) setBit(v, index);
    } else {
      const { value, mask } = parseTcpFlags(rule.tcpFlags);
      for (let f = 0; f < 256; f++) if ((f & mask) === value) setBit(flagsBits[f]!, index);
    }
  });

  // countries last, all at once: one pass over the GeoIP database for every country set named. A rule's
  // countries on one side are one set: their networks as one union, adjacent ones merged across countries
  // (every country in one rule: ~80k map entries instead of ~1M)
  if (geoip && geoWanted.length) {
    const sets = new Map<string, { ccs: Set<string>; v4f: LpmField; v6f: LpmField; rule: number }>();
    for (const { cc, v4f, v6f, rule } of geoWanted) {
      const k = `${rule}:${v4f}`;
      let set = sets.get(k);
      if (!set) sets.set(k, (set = { ccs: new Set(), v4f, v6f, rule }));
      set.ccs.add(cc);
    }
    geoip.prepare?.([...sets.values()].map((s) => [...s.ccs]));
    for (const { ccs, v4f, v6f, rule } of sets.values()) {
      const parts = geoip.union ? [geoip.union([...ccs])] : [...ccs].map((cc) => geoip.prefixes(cc));
      const push = (f: LpmField, list: GeoPrefix[]) => {
        for (const g of list) items[f].push({ data: g.data, length: g.length, rule });
      };
      for (const cp of parts) {
        push(v4f, cp.v4);
        push(v6f, cp.v6);
      }
    }
  }

  const fields = Object.fromEntries(LPM_FIELDS.map((f) => [f, buildLpm(items[f], wildcard[f], fieldBytes(f))])) as Record<LpmField, LpmEntry[]>;
  for (const f of LPM_FIELDS) {
    const limit = f === 'sport' || f === 'dport' ? capacity.portPrefixes : capacity.prefixes;
    if (fields[f].length > limit) {
      issues.push({
        path: [...base, 'capacity', f === 'sport' || f === 'dport' ? 'portPrefixes' : 'prefixes'],
        message: `${describeField(f)} needs ${fields[f].length} map entries, more than the capacity of ${limit}${topContributor(items[f], base)}`,
      });
    }
  }

  const bitsOf = (list: number[]) => {
    const b = emptyBits();
    for (const r of list) setBit(b, r);
    return b;
  };
  const interfaces: CompiledInterface[] = fp.interfaces.map((i) => ({
    name: i.name,
    mode: i.mode,
    egress: i.egress.enabled,
    ingress: { defaultPolicy: i.defaultPolicy, bits: bitsOf(ifaceRules.get(i.name)!.in) },
    egressPolicy: { defaultPolicy: i.egress.defaultPolicy, bits: bitsOf(ifaceRules.get(i.name)!.out) },
  }));

  // rules that can never apply anywhere are almost certainly a mistake
  fp.rules.forEach((r, index) => {
    const applies = (i: CompiledInterface) => {
      const bits = r.direction === 'out' ? (i.egress ? i.egressPolicy.bits : undefined) : i.ingress.bits;
      return bits !== undefined && (bits[index >> 3]! & (1 << (index & 7))) !== 0;
    };
    if (fp.interfaces.length && !interfaces.some(applies)) {
      if (!issues.some((x) => x.path.length > base.length + 2 && x.path[base.length + 1] === index)) {
        issues.push({ path: [...base, 'rules', index, 'direction'], message: `rule "${r.name}" applies on no interface (direction ${r.direction})` });
      }
    }
  });

  const genConfig = genConfigOf(fields, flagsBits, countRules, rules.length);
  const dir4: FastpathDesired['dir4'] = {};
  for (const f of ['src_v4', 'dst_v4'] as const) {
    if (!(genConfig.features & FEAT[f])) continue;
    const d = buildDir4(fields[f]);
    if (!d) continue; // more distinct vectors than the class table holds: the trie alone
    dir4[f] = d;
    genConfig.features |= f === 'src_v4' ? FEAT.src_v4_dir : FEAT.dst_v4_dir;
  }
  const dir6: FastpathDesired['dir6'] = {};
  const v6Len: [number[], number[]] = [[], []];
  for (const [fi, f] of (['src_v6', 'dst_v6'] as const).entries()) {
    if (!(genConfig.features & FEAT[f])) continue;
    const d = buildDir6(fields[f]);
    if (!d) continue; // too many lengths or vectors: the trie alone
    dir6[f] = d;
    v6Len[fi] = d.lengths;
    genConfig.features |= f === 'src_v6' ? FEAT.src_v6_dir : FEAT.dst_v6_dir;
  }
  genConfig.v6Len = v6Len;
  const ports: FastpathDesired['ports'] = {};
  for (const f of ['sport', 'dport'] as const) {
    if (!(genConfig.features & FEAT[f])) continue;
    const p = buildPortArrays(fields[f]);
    if (!p) continue;
    ports[f] = p;
    genConfig.features |= f === 'sport' ? FEAT.sport_arr : FEAT.dport_arr;
  }
  const log = compileLog(fp);
  if (log.rate > 0) genConfig.features |= FEAT.log;
  const desired: FastpathDesired = { interfaces, rules, fields, tcpFlags: flagsBits, countRules, genConfig, dir4, dir6, ports, capacity, log, classifier: '' };
  desired.classifier = addCrossproduct(desired, crossproductMode(input));
  return { desired, issues };
}

/** Crossproduct tables for the generation where the mode wants them and they fit; what it got, in words. */
function addCrossproduct(d: FastpathDesired, mode: CrossproductMode): string {
  const plain = d.genConfig.words <= 1 ? 'one-word bit vectors' : 'bit vectors';
  if (mode === 'off') return `${plain} (crossproduct off)`;
  if (mode === 'auto' && d.genConfig.words <= 1) return plain;
  const entries = d.interfaces.flatMap((i) => [i.ingress, ...(i.egress ? [i.egressPolicy] : [])]);
  const xp = buildCrossproduct({
    rules: d.rules.length,
    features: d.genConfig.features,
    base4: d.genConfig.base[0],
    count: d.countRules,
    dir4: d.dir4,
    ports: d.ports,
    tcpFlags: d.tcpFlags,
    ifaceBits: entries.map((e) => e.bits),
  });
  if ('reason' in xp) return `${plain}: no crossproduct, ${xp.reason}`;
  entries.forEach((e, i) => (e.xpClass = xp.ifaceClass[i]!));
  d.xp = { cells: xp.cells };
  d.genConfig.xp = xp.chains;
  d.genConfig.features |= FEAT.crossproduct;
  const g = (p: { left: string[]; right: string[] }) => `(${p.left.join(',')})(${p.right.join(',')})`;
  return `crossproduct: ${xp.stats.cells} cells, tcp ${g(xp.stats.tcp)} udp ${g(xp.stats.udp)}`;
}

/**
 * Which drops report events (filter_log.h): a drop or rate-limit rule logs
 * when it says log: true, or when fastpath.log.drops is on and it does not
 * say log: false; drops also brings the default-drop policy and the
 * blocklist. Nothing logs: rate 0, and the program never looks (FEAT.log off).
 */
export function compileLog(fp: FastpathConfig): LogConfig {
  const rules = emptyBits();
  let any = false;
  fp.rules.slice(0, FILTER_MAX_RULES).forEach((r, i) => {
    if (r.action !== 'drop' && r.action !== 'rate-limit') return;
    if (r.log ?? fp.log.drops) {
      setBit(rules, i);
      any = true;
    }
  });
  const flags = fp.log.drops ? LOG_FLAGS.defaultDrop | LOG_FLAGS.blocked : 0;
  if (!any && !flags) return { rate: 0, burst: 0, flags: 0, rules };
  return { rate: fp.log.rate, burst: fp.log.burst ?? fp.log.rate, flags, rules };
}

/** A port field's TCP and UDP ports as class arrays (see filter_common.h). */
export interface PortArrays {
  tcp: Uint32Array;
  udp: Uint32Array;
  classes: Buffer[];
}

/**
 * The longest-prefix result of every TCP and UDP port of a port field, by
 * painting its entries (zero-length, protocol-only, then port prefixes by
 * length) into one 65536-entry array per protocol; each distinct vector gets
 * a class. Undefined when there are more than PORT_CLASSES vectors.
 */
export function buildPortArrays(entries: LpmEntry[]): PortArrays | undefined {
  const { classes, classOf } = classTable();
  const sorted = [...entries].sort((a, b) => a.length - b.length);
  const root = sorted.find((e) => e.length === 0);
  const paint = (proto: number): Uint32Array | undefined => {
    const best: (LpmEntry | undefined)[] = new Array(65536).fill(root);
    for (const e of sorted) {
      if (e.length < 8 || e.data[0] !== proto) continue;
      const n = 2 ** (24 - e.length);
      const start = ((e.data[1]! << 8) | e.data[2]!) & ~(n - 1);
      best.fill(e, start, start + n);
    }
    const out = new Uint32Array(65536);
    for (let i = 0; i < 65536; i++) {
      const e = best[i];
      if (!e) return undefined; // no zero-length entry: leave this field to the trie
      out[i] = classOf(e.bits);
      if (classes.length > PORT_CLASSES) return undefined;
    }
    return out;
  };
  const tcp = paint(6);
  const udp = tcp && paint(17);
  return tcp && udp ? { tcp, udp, classes } : undefined;
}

/** One IPv4 field as DIR-16-8 (see filter_common.h): what the data plane writes for it. */
export interface Dir4 {
  /** 65536 entries: class, DIR_CHUNK | chunk, or DIR_TRIE */
  dir16: Uint32Array;
  /** chunk k: 256 entries (class or DIR_TRIE) for the /24s of one /16 */
  chunks: Uint32Array[];
  /** class id -> bit vector */
  classes: Buffer[];
}

/**
 * Paints an IPv4 field's LPM entries (each vector already carries its
 * ancestors' rules) into DIR-16-8 so that every address maps to the vector
 * its longest matching prefix has: entries in order of length, each painting
 * the /16 slots or /24 chunk slots it covers; a prefix longer than /24 marks
 * its /24 for the trie, as does a /16 needing a chunk once chunks run out.
 * Undefined when the field has more distinct vectors than DIR4_CLASSES.
 */
export function buildDir4(entries: LpmEntry[]): Dir4 | undefined {
  const { classes, classOf } = classTable();
  const dir16 = new Uint32Array(65536).fill(DIR_TRIE);
  const chunks: Uint32Array[] = [];
  const sorted = [...entries].sort((a, b) => a.length - b.length);
  for (const e of sorted) {
    const c = classOf(e.bits);
    if (classes.length > DIR4_CLASSES) return undefined;
    const hi = (e.data[0]! << 8) | e.data[1]!;
    if (e.length <= 16) {
      const n = 1 << (16 - e.length);
      dir16.fill(c, hi & ~(n - 1), (hi & ~(n - 1)) + n);
      continue;
    }
    let slot = dir16[hi]!;
    if (slot === DIR_TRIE) continue; // no chunk left for this /16: the trie answers all of it
    if (!(slot & DIR_CHUNK)) {
      if (chunks.length >= DIR4_CHUNKS) {
        dir16[hi] = DIR_TRIE;
        continue;
      }
      chunks.push(new Uint32Array(256).fill(slot));
      slot = dir16[hi] = (DIR_CHUNK | (chunks.length - 1)) >>> 0;
    }
    const chunk = chunks[slot & (DIR4_CHUNKS - 1)]!;
    const b2 = e.data[2]!;
    if (e.length <= 24) {
      const n = 1 << (24 - e.length);
      chunk.fill(c, b2 & ~(n - 1), (b2 & ~(n - 1)) + n);
    } else chunk[b2] = DIR_TRIE;
  }
  return { dir16, chunks, classes };
}

/** One IPv6 field's first stage (see filter_common.h): what the data plane writes for it. */
export interface Dir6 {
  /** 65536 entries by the top 16 bits: class, or V6_HASH | length mask << 16 | class */
  dir16: Uint32Array;
  /** the distinct prefix lengths in (16, 64] of the hash, longest first (bit i of a mask: lengths[i]) */
  lengths: number[];
  /** hash entries: length, top 64 bits masked to it (host-order value), class or DIR_TRIE */
  hash: { len: number; hi: bigint; cls: number }[];
  /** class id -> bit vector */
  classes: Buffer[];
}

const ALL64 = (1n << 64n) - 1n;
/** The top `len` of 64 bits. */
export function mask64(len: number): bigint {
  return len === 0 ? 0n : (ALL64 << BigInt(64 - len)) & ALL64;
}

/**
 * An IPv6 field's LPM entries (each vector already carries its ancestors'
 * rules) as the /16 table plus per-length hash entries: prefixes of /16 and
 * shorter are painted into the /16 slots in order of length; longer ones up
 * to /64 become hash entries of their length, and their /16 slot records
 * that the length occurs below it; a prefix longer than /64 turns its /64
 * into a DIR_TRIE entry (the trie answers there). Undefined when the field
 * has no zero-length entry, more than V6_LENGTHS distinct lengths in
 * (16, 64] or more than V6_CLASSES distinct vectors: the trie alone.
 */
export function buildDir6(entries: LpmEntry[]): Dir6 | undefined {
  const root = entries.find((e) => e.length === 0);
  if (!root) return undefined;
  const lens = new Set<number>();
  for (const e of entries) if (e.length > 16) lens.add(Math.min(e.length, 64));
  if (lens.size > V6_LENGTHS) return undefined;
  const lengths = [...lens].sort((a, b) => b - a);
  const bitOf = new Map(lengths.map((l, i) => [l, 1 << i]));
  const { classes, classOf } = classTable();
  const dir16 = new Uint32Array(65536).fill(classOf(root.bits));
  const slotMask = new Uint8Array(65536);
  const hash = new Map<string, { len: number; hi: bigint; cls: number }>();
  const sorted = [...entries].sort((a, b) => a.length - b.length);
  for (const e of sorted) {
    if (e.length === 0) continue;
    const c = classOf(e.bits);
    if (classes.length > V6_CLASSES) return undefined;
    const top = (e.data[0]! << 8) | e.data[1]!;
    if (e.length <= 16) {
      const n = 1 << (16 - e.length);
      dir16.fill(c, top & ~(n - 1), (top & ~(n - 1)) + n);
      continue;
    }
    const len = Math.min(e.length, 64);
    const hi = e.data.readBigUInt64BE(0) & mask64(len);
    const key = `${len}:${hi}`;
    if (e.length > 64) hash.set(key, { len, hi, cls: DIR_TRIE });
    else if (hash.get(key)?.cls !== DIR_TRIE) hash.set(key, { len, hi, cls: c });
    slotMask[top]! |= bitOf.get(len)!;
  }
  for (let i = 0; i < 65536; i++) if (slotMask[i]) dir16[i] = (V6_HASH | (slotMask[i]! << 16) | dir16[i]!) >>> 0;
  return { dir16, lengths, hash: [...hash.values()], classes };
}

/** The class an address (16 bytes) gets through a Dir6 (what the program computes), or DIR_TRIE. */
export function resolveDir6(d: Dir6, addr: Buffer): number {
  const e = d.dir16[(addr[0]! << 8) | addr[1]!]!;
  if (!(e & V6_HASH)) return e;
  const m = (e >>> 16) & 0xff;
  const hi = addr.readBigUInt64BE(0);
  for (let i = 0; i < d.lengths.length; i++) {
    if (!(m & (1 << i))) continue;
    const len = d.lengths[i]!;
    const h = d.hash.find((x) => x.len === len && x.hi === (hi & mask64(len)));
    if (h) return h.cls;
  }
  return e & 0xffff;
}

/**
 * Pay per feature: a field whose map holds only its zero-length entry (no
 * rule constrains it) is not looked up by the program; that entry's vector
 * is ANDed into the family's base vector instead, which gives the same AND
 * for every packet. TCP flags likewise when all 257 vectors are equal.
 */
export function genConfigOf(fields: Record<LpmField, LpmEntry[]>, tcpFlags: Buffer[], countRules: Buffer, rules: number): GenConfig {
  const base: [Buffer, Buffer] = [Buffer.alloc(BITS_BYTES, 0xff), Buffer.alloc(BITS_BYTES, 0xff)];
  const and = (dst: Buffer, v: Buffer) => {
    for (let i = 0; i < BITS_BYTES; i++) dst[i]! &= v[i]!;
  };
  let features = 0;
  for (const f of LPM_FIELDS) {
    const only = fields[f].length === 1 && fields[f][0]!.length === 0 ? fields[f][0]!.bits : undefined;
    if (!only) {
      features |= FEAT[f];
      continue;
    }
    const fams = f.endsWith('v4') ? [0] : f.endsWith('v6') ? [1] : [0, 1];
    for (const i of fams) and(base[i]!, only);
  }
  if (tcpFlags.some((v) => !v.equals(tcpFlags[0]!))) features |= FEAT.flags;
  else for (const b of base) and(b, tcpFlags[0]!);
  if (countRules.some((b) => b !== 0)) features |= FEAT.count;
  return { features, words: Math.ceil(rules / 64), base, count: Buffer.from(countRules) };
}

/** "syn,!ack" -> value/mask over the TCP flags byte. */
export function parseTcpFlags(text: string): { value: number; mask: number } {
  let value = 0;
  let mask = 0;
  for (const part of text.split(',')) {
    const neg = part.startsWith('!');
    const bit = 1 << TCP_FLAG_NAMES.indexOf(part.replace('!', '') as (typeof TCP_FLAG_NAMES)[number]);
    mask |= bit;
    if (!neg) value |= bit;
  }
  return { value, mask };
}

/** Splits a port range into aligned prefix blocks (at most ~30). */
export function rangeToPrefixes(from: number, to: number): { start: number; length: number }[] {
  const out: { start: number; length: number }[] = [];
  let cur = from;
  while (cur <= to) {
    let size = cur === 0 ? 65536 : cur & -cur;
    while (cur + size - 1 > to) size >>= 1;
    out.push({ start: cur, length: 16 - Math.log2(size) });
    cur += size;
  }
  return out;
}

function compileAction(rule: FastpathRuleConfig, index: number): CompiledRule {
  const rl = rule.rateLimit;
  const pps = BigInt(rl?.packetsPerSecond ?? 0);
  const bps = BigInt(rl?.bytesPerSecond ?? 0);
  return {
    name: rule.name,
    index,
    action: rule.action,
    pps,
    pktBurst: rl?.packetBurst !== undefined ? BigInt(rl.packetBurst) : pps,
    bps,
    byteBurst: rl?.byteBurst !== undefined ? BigInt(rl.byteBurst) : bps,
  };
}

function fieldBytes(f: LpmField): number {
  return f.endsWith('v4') ? 4 : f.endsWith('v6') ? 16 : 3;
}

function describeField(f: LpmField): string {
  return {
    src_v4: 'source IPv4',
    dst_v4: 'destination IPv4',
    src_v6: 'source IPv6',
    dst_v6: 'destination IPv6',
    sport: 'source port',
    dport: 'destination port',
  }[f];
}

function topContributor(list: { rule: number }[], base: IssuePath): string {
  const n = new Map<number, number>();
  for (const i of list) n.set(i.rule, (n.get(i.rule) ?? 0) + 1);
  const top = [...n.entries()].sort((a, b) => b[1] - a[1])[0];
  return top ? ` (most from ${[...base, 'rules'].join('.')}[${top[0]}]: ${top[1]})` : '';
}

/** Compares the first `bits` bits of two equal-length buffers. */
function samePrefix(a: Buffer, b: Buffer, bits: number): boolean {
  const full = bits >> 3;
  for (let i = 0; i < full; i++) if (a[i] !== b[i]) return false;
  const rest = bits & 7;
  if (!rest) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[full]! & mask) === (b[full]! & mask);
}

/**
 * Turns (prefix, rule) pairs into LPM entries whose vectors include every
 * containing prefix's rules. Sorted by address then length, a stack of open
 * ancestors gives each prefix its nearest containing one. Identical results
 * share one Buffer (a country's thousands of prefixes hold one vector).
 *
 * Built for 10^5-10^6 items: one backing buffer for every entry's address
 * bytes, a sort key per item (a number for IPv4 and ports, a short latin1
 * string for IPv6) and duplicates found as neighbours after the sort,
 * instead of a Buffer and a Map key per item and Buffer.compare in the sort.
 */
function buildLpm(list: { data: Buffer; length: number; rule: number }[], wildcard: Buffer, bytes: number): LpmEntry[] {
  const n = list.length;
  const store = Buffer.alloc(n * bytes);
  const numeric = bytes <= 4;
  // sort keys (address bytes, then length) by list index, and the list's order by key (stable: ties keep
  // list order); a list already in key order (alias files, the GeoIP walk, the compiler's own order) is not sorted
  const numKeys = numeric ? new Float64Array(n) : undefined;
  const strKeys: string[] = numeric ? [] : new Array<string>(n);
  let sorted = true;
  for (let i = 0; i < n; i++) {
    const it = list[i]!;
    const off = i * bytes;
    it.data.copy(store, off, 0, bytes);
    if (numKeys) {
      let v = 0;
      for (let b = 0; b < bytes; b++) v = v * 256 + store[off + b]!;
      const k = v * 256 + it.length;
      numKeys[i] = k;
      if (i && k < numKeys[i - 1]!) sorted = false;
    } else {
      const k = store.toString('latin1', off, off + bytes) + String.fromCharCode(it.length);
      strKeys[i] = k;
      if (i && k < strKeys[i - 1]!) sorted = false;
    }
  }
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  if (!sorted) {
    if (numKeys) order.sort((a, b) => numKeys[a]! - numKeys[b]! || a - b);
    else order.sort((a, b) => (strKeys[a]! < strKeys[b]! ? -1 : strKeys[a]! > strKeys[b]! ? 1 : a - b));
  }
  const sameKey = numKeys ? (a: number, b: number) => numKeys[a] === numKeys[b] : (a: number, b: number) => strKeys[a] === strKeys[b];

  const root = { data: Buffer.alloc(bytes), length: 0, bits: wildcard };
  const out: LpmEntry[] = [root];
  const stack: LpmEntry[] = [root];
  const memo = new Map<Buffer, Map<string, Buffer>>();
  for (let j = 0; j < n; ) {
    // one address/length: every rule that names it
    const first = order[j]!;
    const rules: number[] = [];
    let end = j;
    while (end < n && sameKey(order[end]!, first)) rules.push(list[order[end++]!]!.rule);
    j = end;
    const length = list[first]!.length;
    const data = store.subarray(first * bytes, first * bytes + bytes);
    if (length === 0 && data.every((b) => b === 0)) {
      // the zero-length prefix is the root: its own rules join the wildcard's
      root.bits = Buffer.from(wildcard);
      for (const r of rules) setBit(root.bits, r);
      continue;
    }
    while (stack.length > 1 && !(stack[stack.length - 1]!.length <= length && samePrefix(stack[stack.length - 1]!.data, data, stack[stack.length - 1]!.length))) stack.pop();
    const parent = stack[stack.length - 1]!;
    const ownKey = rules.length === 1 ? String(rules[0]) : [...new Set(rules)].sort((a, b) => a - b).join(',');
    let m = memo.get(parent.bits);
    if (!m) memo.set(parent.bits, (m = new Map()));
    let bits = m.get(ownKey);
    if (!bits) {
      bits = Buffer.from(parent.bits);
      for (const r of rules) setBit(bits, r);
      m.set(ownKey, bits);
    }
    const entry = { data, length, bits };
    out.push(entry);
    stack.push(entry);
  }
  return out;
}

export { BITS_BYTES, FILTER_FLAGS_UNKNOWN };

/**
 * Class ids for bit vectors: equal content, one class (looked up by Buffer
 * identity first, as compiled entries share their vectors).
 */
function classTable(): { classes: Buffer[]; classOf: (bits: Buffer) => number } {
  const classes: Buffer[] = [];
  const byBuf = new Map<Buffer, number>();
  const byContent = new Map<string, number>();
  const classOf = (bits: Buffer): number => {
    let c = byBuf.get(bits);
    if (c !== undefined) return c;
    const k = bits.toString('latin1');
    c = byContent.get(k);
    if (c === undefined) {
      c = classes.length;
      classes.push(bits);
      byContent.set(k, c);
    }
    byBuf.set(bits, c);
    return c;
  };
  return { classes, classOf };
}
