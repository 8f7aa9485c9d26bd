/**
 * In-kernel cost of one packet through each XDP classifier, alone:
 * bpf_prog_test_run with `repeat` (hot cache, no NIC, no generator), so the
 * figures do not depend on how loaded the machine is as much as live traffic
 * does. Every figure is the median (and min–max) of --samples calls, each the
 * average over --repeat runs of one frame.
 *
 *   reference      bench/trafficgen/lpm_drop.bpf.c: one LPM trie lookup, drop
 *   patronus       src/fastpath through FastpathDataPlane (the real maps)
 *   xdp-filter     Debian xdp-tools' xdp-filter, loaded on a veth in a fresh
 *                  namespace, run through its libxdp dispatcher (bpftool prog run)
 *
 * Rule sets: 1 prefix (one drop rule on a /16); 100k prefixes (one drop rule
 * whose source list holds 100k /24s); 1024 rules (1023 non-matching rules on
 * prefixes, ports and protocols ahead of the drop rule; through the
 * crossproduct tables, and again with them off: the bit vectors); IPv6: one drop rule
 * on 2a00::/16, on 1k and on 100k /48s (Patronus and the reference). Frames: 64-byte UDP,
 * "match" from inside the dropped prefix, "miss" from outside.
 *
 * --budget adds a per-feature cost table: Patronus with one feature switched
 * on at a time (what each lookup costs on top of the fixed work).
 *
 * --cold: the cost with cold caches, which the hot loop cannot show: before
 * every sample the process overwrites a buffer on its CPU (pin the run with
 * taskset; --cold-bytes, default 64 MB: the program's maps, its code, the
 * frame's page and the kernel's own lines leave every cache level and the
 * TLBs; 256 KB leaves L3 and most TLB entries alone), then runs the frame
 * once (repeat 1: the kernel times that single run). Reference, Patronus (1 prefix, 1024 rules) and
 * xdp-filter (1 rule, its dispatcher pinned and run like the others) round-robin,
 * each sample also taken hot (repeat --repeat) right after; cold minus hot is
 * what the cache misses of one packet cost.
 *
 * --hot: the same round-robin without the evictions (match and miss, hot).
 * --const (with --cold or --hot): adds the PROTOTYPE constant-rule program
 * (bench/trafficgen/const_filter.bpf.c; 1 rule, and 8 atoms with the match
 * last) and the floor (a program that reads the Ethernet header and drops).
 *
 *   node dist/bench/classify.js [--samples 7] [--repeat 200000] [--only patronus,reference,xdp-filter] [--budget] [--interleave | --cold | --hot] [--const] [--out DIR]
 * Not a test: prints a table and writes classify.md/.json under bench/results/.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, release, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { BpfObject, BpfProgram, codecs } from '../src/bpf/index.js';
import { parsePrefix } from '../src/net/address.js';
import { projectRoot } from '../src/bpf/addon.js';
import { compileFastpath, type CrossproductMode } from '../src/fastpath/compile.js';
import { FastpathDataPlane, removePins } from '../src/fastpath/dataplane.js';
import { fastpathSchema, type FastpathConfig } from '../src/fastpath/schema.js';
import { Lab } from './lib/netns.js';
import { frame } from './lib/packets.js';
import { fmt, markdownTable, summarize, type Summary } from './harness/report.js';
import { rules1024 as sharedRules1024, rulesSmall } from './harness/rules.js';
import { ConstFilter, constConfig } from './harness/constfilter.js';

const argv = process.argv.slice(2);
const get = (k: string) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const SAMPLES = Number(get('--samples') ?? 7);
const REPEAT = Number(get('--repeat') ?? 200_000);
/** --cold: bytes written between samples (64 MB: every cache level and the TLBs; 256 KB: L1 and most of L2 only) */
const COLD_BYTES = Number(get('--cold-bytes') ?? 64 << 20);
const only = get('--only')?.split(',');
const want = (id: string) => !only || only.includes(id);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const out = get('--out') ?? path.join(root, 'bench/results', `classify-${new Date().toISOString().replace(/[:.]/g, '-')}`);
const CAP = 262144;

const MATCH = frame({ src: '16.0.1.9', dst: '10.0.0.2', proto: 'udp', sport: 40000, dport: 9, payload: 22 });
const MISS = frame({ src: '203.0.113.9', dst: '10.0.0.2', proto: 'udp', sport: 40000, dport: 9, payload: 22 });
const MATCH6 = frame({ src: '2a00:0:1::9', dst: '2001:db8::2', proto: 'udp', sport: 40000, dport: 9, payload: 2 });
const MISS6 = frame({ src: '2001:db8:ffff::9', dst: '2001:db8::2', proto: 'udp', sport: 40000, dport: 9, payload: 2 });
/** n /48s from 2a00::/48 up: the IPv6 match frame's 2a00:0:1::9 sits in the second one. */
const SLASH48 = (n: number) => Array.from({ length: n }, (_, i) => `2a00:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::/48`);

/** 100k /24s from 16.0.0.0 up: the match frame's 16.0.1.9 sits in the second one. */
const SLASH24 = (n: number) => Array.from({ length: n }, (_, i) => `${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`);

export interface Row {
  path: string;
  ruleSet: string;
  kind: 'match' | 'miss';
  ns: Summary;
}

async function sample(run: () => Promise<number>): Promise<Summary> {
  await run(); // warm
  const xs: number[] = [];
  for (let i = 0; i < SAMPLES; i++) xs.push(await run());
  return summarize(xs);
}

/** 1023 rules no 16.0.0.0/16 UDP-to-9 frame matches, then the drop rule. */
const rules1024 = () => sharedRules1024('16.0.0.0/16', 'drop');

/** xp: the compiler's crossproduct mode (default auto: tables beyond 64 rules) */
const RULE_SETS: { id: string; rules: () => FastpathConfig['rules']; v6?: boolean; xp?: CrossproductMode }[] = [
  { id: '1 prefix', rules: () => [{ name: 'drop', source: '16.0.0.0/16', action: 'drop', direction: 'in', interfaces: [] }] },
  { id: '100k prefixes', rules: () => [{ name: 'drop', source: SLASH24(100_000), action: 'drop', direction: 'in', interfaces: [] }] },
  { id: '1024 rules', rules: rules1024 },
  { id: '1024 rules, bit vectors (crossproduct off)', rules: rules1024, xp: 'off' },
  { id: 'IPv6, 1 prefix (/16)', v6: true, rules: () => [{ name: 'drop', source: '2a00::/16', action: 'drop', direction: 'in', interfaces: [] }] },
  { id: 'IPv6, 1k /48s', v6: true, rules: () => [{ name: 'drop', source: SLASH48(1000), action: 'drop', direction: 'in', interfaces: [] }] },
  { id: 'IPv6, 100k /48s', v6: true, rules: () => [{ name: 'drop', source: SLASH48(100_000), action: 'drop', direction: 'in', interfaces: [] }] },
];
/**
 * --const (PROTOTYPE, bench/trafficgen/const_filter.bpf.c): the rule set as
 * load-time constants. "1 rule": the drop rule on 16.0.0.0/16; "8 atoms":
 * seven rules no match frame matches (prefixes, ports, protocols, a count
 * rule on another source) ahead of it.
 */
const CONST_SETS: { id: string; rules: () => FastpathConfig['rules'] }[] = [
  { id: '1 prefix', rules: () => fastpathSchema.parse({ rules: [{ name: 'drop', source: '16.0.0.0/16', action: 'drop' }] }).rules },
  { id: '8 atoms (7 non-matching ahead)', rules: () => rulesSmall('16.0.0.0/16', 'drop') },
];

const V6_SETS: [string, string[]][] = [
  ['IPv6, 1 prefix (/16)', ['2a00::/16']],
  ['IPv6, 1k /48s', SLASH48(1000)],
  ['IPv6, 100k /48s', SLASH48(100_000)],
];

async function patronus(rows: Row[]): Promise<void> {
  const pinDir = mkdtempSync('/sys/fs/bpf/pt-bench-cls-');
  const capacity = { prefixes: CAP, portPrefixes: 4096, rateLimitSources: 1024, blocklist: 1024 };
  // a data plane that fails to open leaves no pin directory behind either
  const dp = await FastpathDataPlane.open({ pinDir, capacity }).catch((e: unknown) => {
    removePins(pinDir);
    throw e;
  });
  try {
    for (const rs of RULE_SETS) {
      const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: 'pass' }], rules: rs.rules(), capacity: { ...capacity, rules: 1024 } });
      const { desired, issues } = compileFastpath({ fastpath, aliases: new Map(), ...(rs.xp ? { crossproduct: rs.xp } : {}) });
      if (issues.length) throw new Error(`patronus ${rs.id}: ${issues.map((i) => i.message).join('; ')}`);
      process.stderr.write(`# patronus ${rs.id}: ${desired.classifier}\n`);
      await dp.apply(desired, () => 1); // test_run classifies as received on lo
      for (const [kind, f, want] of [['match', rs.v6 ? MATCH6 : MATCH, 1], ['miss', rs.v6 ? MISS6 : MISS, 2]] as const) {
        const r = await dp.xdp.testRun({ data: f });
        if (r.retval !== want) throw new Error(`patronus ${rs.id} ${kind}: verdict ${r.retval}, expected ${want}`);
        rows.push({ path: 'patronus', ruleSet: rs.id, kind, ns: await sample(async () => (await dp.xdp.testRun({ data: f, repeat: REPEAT })).duration) });
        log(rows.at(-1)!);
      }
    }
  } finally {
    dp.destroy();
    removePins(pinDir);
  }
}

/**
 * --interleave: every IPv4 rule set in a data plane of its own, loaded at
 * once, and the samples taken round-robin over them (sample 1 of every rule
 * set and frame, then sample 2, ...): on a shared machine a slow stretch
 * (here whole seconds at ~2.7x) then hits every row alike instead of the
 * rows that ran in it. Medians and the minimum are both reported.
 */
async function patronusInterleaved(rows: Row[]): Promise<void> {
  const capacity = { prefixes: CAP, portPrefixes: 4096, rateLimitSources: 1024, blocklist: 1024 };
  const planes: { rs: (typeof RULE_SETS)[number]; dp: FastpathDataPlane; pinDir: string }[] = [];
  try {
    for (const rs of RULE_SETS.filter((x) => !x.v6)) {
      const pinDir = mkdtempSync('/sys/fs/bpf/pt-bench-cls-');
      const dp = await FastpathDataPlane.open({ pinDir, capacity }).catch((e: unknown) => {
        removePins(pinDir);
        throw e;
      });
      planes.push({ rs, dp, pinDir });
      const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: 'pass' }], rules: rs.rules(), capacity: { ...capacity, rules: 1024 } });
      const { desired, issues } = compileFastpath({ fastpath, aliases: new Map(), ...(rs.xp ? { crossproduct: rs.xp } : {}) });
      if (issues.length) throw new Error(`patronus ${rs.id}: ${issues.map((i) => i.message).join('; ')}`);
      process.stderr.write(`# patronus ${rs.id}: ${desired.classifier}\n`);
      await dp.apply(desired, () => 1);
    }
    const runs = planes.flatMap(({ rs, dp }) =>
      ([['match', MATCH, 1], ['miss', MISS, 2]] as const).map(([kind, f, verdict]) => ({ rs, dp, kind, f, verdict, xs: [] as number[] })),
    );
    for (const r of runs) {
      const got = (await r.dp.xdp.testRun({ data: r.f })).retval;
      if (got !== r.verdict) throw new Error(`patronus ${r.rs.id} ${r.kind}: verdict ${got}, expected ${r.verdict}`);
      await r.dp.xdp.testRun({ data: r.f, repeat: REPEAT }); // warm
    }
    for (let i = 0; i < SAMPLES; i++) for (const r of runs) r.xs.push((await r.dp.xdp.testRun({ data: r.f, repeat: REPEAT })).duration);
    for (const r of runs) {
      rows.push({ path: 'patronus', ruleSet: r.rs.id, kind: r.kind, ns: summarize(r.xs) });
      log(rows.at(-1)!);
    }
  } finally {
    for (const { dp, pinDir } of planes) {
      dp.destroy();
      removePins(pinDir);
    }
  }
}

interface BudgetRow {
  what: string;
  ns: Summary;
}

/** Patronus with one feature at a time, on the 64-byte UDP (or TCP) match frame. */
async function budget(out: BudgetRow[]): Promise<void> {
  const pinDir = mkdtempSync('/sys/fs/bpf/pt-bench-bud-');
  const capacity = { prefixes: CAP, portPrefixes: 4096, rateLimitSources: 1024, blocklist: 1024 };
  // a data plane that fails to open leaves no pin directory behind either
  const dp = await FastpathDataPlane.open({ pinDir, capacity }).catch((e: unknown) => {
    removePins(pinDir);
    throw e;
  });
  const tcp = frame({ src: '16.0.1.9', dst: '10.0.0.2', proto: 'tcp', sport: 40000, dport: 22, payload: 10 });
  const v6 = frame({ src: '2a00:0:1::9', dst: '2001:db8::2', proto: 'udp', sport: 40000, dport: 9, payload: 2 });
  const slash32s = Array.from({ length: 1000 }, (_, i) => `16.0.1.${(i % 250) + 1}`).slice(0, 250);
  const cases: { what: string; rules: unknown[]; data?: Buffer; block?: string }[] = [
    { what: 'no rule: parse, generation, interface slot, verdict counter, default', rules: [] },
    { what: 'one rule, no match field: + action, rule counter', rules: [{ name: 'd', action: 'drop' }] },
    { what: 'IPv4 source, 1 prefix (DIR-16-8)', rules: [{ name: 'd', source: '16.0.0.0/16', action: 'drop' }] },
    { what: 'IPv4 source, 100k /24s (DIR-16-8, chunk)', rules: [{ name: 'd', source: SLASH24(100_000), action: 'drop' }] },
    { what: 'IPv4 source, 100k /24s, every other one (DIR-16-8, bitmap)', rules: [{ name: 'd', source: Array.from({ length: 100_000 }, (_, i) => `${16 + (i >> 15)}.${(i >> 7) & 255}.${(i & 127) * 2 + 1}.0/24`), action: 'drop' }] },
    { what: 'IPv4 source, 250 /32s in the packet\'s /24 (trie below /24)', rules: [{ name: 'd', source: slash32s, action: 'drop' }] },
    { what: 'IPv4 source + destination (two DIR lookups)', rules: [{ name: 'd', source: '16.0.0.0/16', destination: '10.0.0.0/8', action: 'drop' }] },
    { what: 'IPv6 source, 1 prefix (/16 table)', rules: [{ name: 'd', source: '2a00::/16', action: 'drop' }], data: v6 },
    { what: 'IPv6 source, 100k /48s (/16 table + one hash length)', rules: [{ name: 'd', source: Array.from({ length: 100_000 }, (_, i) => `2a00:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::/48`), action: 'drop' }], data: v6 },
    { what: 'protocol + destination port (source and destination port arrays)', rules: [{ name: 'd', protocol: 'tcp', destinationPorts: 22, action: 'drop' }], data: tcp },
    { what: '+ TCP flags (array)', rules: [{ name: 'd', protocol: 'tcp', destinationPorts: 22, tcpFlags: 'syn', action: 'drop' }], data: tcp },
    { what: 'blocklist holding one other address (+ LRU hash lookup)', rules: [{ name: 'd', action: 'drop' }], block: '192.0.2.1' },
    { what: 'a count rule ahead of the drop (bpf_loop)', rules: [{ name: 'c', action: 'count' }, { name: 'd', action: 'drop' }] },
  ];
  try {
    for (const c of cases) {
      const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: 'pass' }], rules: c.rules, capacity: { ...capacity, rules: 1024 } });
      const { desired, issues } = compileFastpath({ fastpath, aliases: new Map() });
      if (issues.length) throw new Error(`budget ${c.what}: ${issues.map((i) => i.message).join('; ')}`);
      await dp.apply(desired, () => 1);
      if (c.block) dp.block(c.block, 0);
      const data = c.data ?? MATCH;
      const r = await dp.xdp.testRun({ data });
      if (r.retval !== (c.rules.length ? 1 : 2)) throw new Error(`budget ${c.what}: verdict ${r.retval}`);
      out.push({ what: `${c.what} [${dp.lookups().join(', ') || 'no lookups'}]`, ns: await sample(async () => (await dp.xdp.testRun({ data, repeat: REPEAT })).duration) });
      process.stderr.write(`# budget ${c.what}: ${fmt(out.at(-1)!.ns, 1, 1)} ns\n`);
      if (c.block) dp.unblock(c.block);
    }
  } finally {
    dp.destroy();
    removePins(pinDir);
  }
}

async function reference(rows: Row[]): Promise<void> {
  using obj = BpfObject.open(path.join(projectRoot(), 'bench/trafficgen/build/lpm_drop.bpf.o'));
  obj.setMapMaxEntries('src_v4', CAP).setMapMaxEntries('src_v6', CAP);
  await obj.load();
  const prog = obj.program('xdp_lpm_drop');
  const v4 = obj.map('src_v4', codecs.lpmV4Key, codecs.u32);
  for (const [id, prefixes] of [['1 prefix', ['16.0.0.0/16']], ['100k prefixes', SLASH24(100_000)]] as const) {
    await v4.clear();
    await v4.setMany(prefixes.map((p) => [parsePrefix(p), 1] as const));
    for (const [kind, f] of [['match', MATCH], ['miss', MISS]] as const) {
      rows.push({ path: 'reference', ruleSet: id, kind, ns: await sample(async () => (await prog.testRun({ data: f, repeat: REPEAT })).duration) });
      log(rows.at(-1)!);
    }
  }
  v4.close();
  const v6 = obj.map('src_v6', codecs.lpmV6Key, codecs.u32);
  for (const [id, prefixes] of V6_SETS) {
    await v6.clear();
    await v6.setMany(prefixes.map((p) => [parsePrefix(p), 1] as const));
    for (const [kind, f] of [['match', MATCH6], ['miss', MISS6]] as const) {
      const r = await prog.testRun({ data: f });
      if (r.retval !== (kind === 'match' ? 1 : 2)) throw new Error(`reference ${id} ${kind}: verdict ${r.retval}`);
      rows.push({ path: 'reference', ruleSet: id, kind, ns: await sample(async () => (await prog.testRun({ data: f, repeat: REPEAT })).duration) });
      log(rows.at(-1)!);
    }
  }
  v6.close();
  prog.close();
}

/**
 * xdp-filter matches exact addresses (hash maps), not prefixes: "1 rule" is
 * one source address (the match frame's); "1024 rules" is 1023 other
 * addresses and ports plus that one. Loaded in native mode on a veth in a
 * fresh namespace (nsenter keeps /sys/fs/bpf, where libxdp pins), run with
 * bpftool through the attached libxdp dispatcher, as live traffic runs it.
 */
async function xdpFilter(rows: Row[]): Promise<void> {
  const lab = new Lab();
  const dir = mkdtempSync(path.join(tmpdir(), 'pt-cls-'));
  try {
    const ns = await lab.ns('xf');
    const peer = await lab.ns('xfp');
    await lab.veth({ ns, dev: 'xf0' }, { ns: peer, dev: 'xf1' });
    for (const [kind, f] of [['match', MATCH], ['miss', MISS]] as const) writeFileSync(path.join(dir, kind), f);
    for (const features of ['all', 'ipv4']) {
      await ns.nsenter('xdp-filter', ['load', '-m', 'native', '-f', features, 'xf0']);
      try {
        const idx = await ns.ifindex('xf0');
        const { stdout } = await execa('ip', ['-n', ns.name, '-j', '-d', 'link', 'show', 'dev', 'xf0']);
        const xdp = (JSON.parse(stdout) as { xdp?: { prog?: { id: number } } }[])[0]?.xdp?.prog?.id;
        if (!xdp) throw new Error(`xdp-filter: no program attached to xf0 (ifindex ${idx})`);
        const run = async (kind: string): Promise<{ ret: number; ns: number }> => {
          const r = await execa('bpftool', ['prog', 'run', 'id', String(xdp), 'data_in', path.join(dir, kind), 'repeat', String(REPEAT)]);
          const m = /Return value: (\d+), duration \(average\): (\d+)ns/.exec(r.stdout + r.stderr);
          if (!m) throw new Error(`bpftool prog run: unexpected output ${r.stdout} ${r.stderr}`);
          return { ret: Number(m[1]), ns: Number(m[2]) };
        };
        for (const [id, n] of [['1 rule', 1], ['1024 rules', 1024]] as const) {
          await ns.nsenter('xdp-filter', ['ip', '-m', 'src', '16.0.1.9']);
          for (let i = 0; i < n - 1; i++) {
            // the extra rules: other sources, and some destination ports
            if (i % 2 === 0) await ns.nsenter('xdp-filter', ['ip', '-m', 'src', `10.${(i >> 8) & 255}.${i & 255}.1`]);
            else if (features === 'all') await ns.nsenter('xdp-filter', ['port', '-m', 'dst', '-p', 'tcp', String(1000 + i)]);
            else await ns.nsenter('xdp-filter', ['ip', '-m', 'src', `10.${(i >> 8) & 255}.${i & 255}.1`]);
          }
          for (const kind of ['match', 'miss'] as const) {
            const want = kind === 'match' ? 1 : 2;
            const first = await run(kind);
            if (first.ret !== want) throw new Error(`xdp-filter ${features} ${id} ${kind}: verdict ${first.ret}, expected ${want}`);
            rows.push({ path: `xdp-filter (features ${features})`, ruleSet: id, kind, ns: await sample(async () => (await run(kind)).ns) });
            log(rows.at(-1)!);
          }
        }
      } finally {
        await ns.nsenter('xdp-filter', ['unload', 'xf0'], { reject: false });
      }
    }
  } finally {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * --cold (see the header): every program of the comparison round-robin, each
 * sample once after evicting the caches (repeat 1) and once hot.
 */
async function coldRun(rows: Row[]): Promise<void> {
  const evict = Buffer.alloc(COLD_BYTES);
  const capacity = { prefixes: CAP, portPrefixes: 4096, rateLimitSources: 1024, blocklist: 1024 };
  const lab = new Lab();
  const dir = mkdtempSync(path.join(tmpdir(), 'pt-cls-'));
  const planes: { dp: FastpathDataPlane; pinDir: string }[] = [];
  const cleanups: (() => void)[] = [];
  let xfLoaded: { ns: Awaited<ReturnType<Lab['ns']>> } | undefined;
  try {
    const progs: { id: string; ruleSet: string; run: (data: Buffer, repeat: number) => Promise<{ retval: number; duration: number }> }[] = [];
    // the single-LPM reference, 1 prefix
    const obj = BpfObject.open(path.join(projectRoot(), 'bench/trafficgen/build/lpm_drop.bpf.o'));
    cleanups.push(() => obj[Symbol.dispose]());
    obj.setMapMaxEntries('src_v4', CAP).setMapMaxEntries('src_v6', CAP);
    await obj.load();
    const ref = obj.program('xdp_lpm_drop');
    cleanups.push(() => ref.close());
    const v4 = obj.map('src_v4', codecs.lpmV4Key, codecs.u32);
    await v4.setMany([[parsePrefix('16.0.0.0/16'), 1] as const]);
    v4.close();
    progs.push({ id: 'reference', ruleSet: '1 prefix', run: (data, repeat) => ref.testRun({ data, repeat }) });
    for (const rs of RULE_SETS.filter((x) => x.id === '1 prefix' || x.id === '1024 rules')) {
      const pinDir = mkdtempSync('/sys/fs/bpf/pt-bench-cls-');
      const dp = await FastpathDataPlane.open({ pinDir, capacity }).catch((e: unknown) => {
        removePins(pinDir);
        throw e;
      });
      planes.push({ dp, pinDir });
      const fastpath = fastpathSchema.parse({ interfaces: [{ name: 'lo', defaultPolicy: 'pass' }], rules: rs.rules(), capacity: { ...capacity, rules: 1024 } });
      const { desired, issues } = compileFastpath({ fastpath, aliases: new Map() });
      if (issues.length) throw new Error(`patronus ${rs.id}: ${issues.map((i) => i.message).join('; ')}`);
      await dp.apply(desired, () => 1);
      progs.push({ id: 'patronus', ruleSet: rs.id, run: (data, repeat) => dp.xdp.testRun({ data, repeat }) });
    }
    if (want('xdp-filter')) {
      // xdp-filter -f ipv4 with one source rule, its libxdp dispatcher pinned so this process runs it
      const ns = await lab.ns('xf');
      const peer = await lab.ns('xfp');
      await lab.veth({ ns, dev: 'xf0' }, { ns: peer, dev: 'xf1' });
      await ns.nsenter('xdp-filter', ['load', '-m', 'native', '-f', 'ipv4', 'xf0']);
      xfLoaded = { ns };
      await ns.nsenter('xdp-filter', ['ip', '-m', 'src', '16.0.1.9']);
      const { stdout } = await execa('ip', ['-n', ns.name, '-j', '-d', 'link', 'show', 'dev', 'xf0']);
      const id = (JSON.parse(stdout) as { xdp?: { prog?: { id: number } } }[])[0]?.xdp?.prog?.id;
      if (!id) throw new Error('xdp-filter: no program attached to xf0');
      const pin = path.join(mkdtempSync('/sys/fs/bpf/pt-bench-xf-'), 'prog');
      await execa('bpftool', ['prog', 'pin', 'id', String(id), pin]);
      cleanups.push(() => rmSync(path.dirname(pin), { recursive: true, force: true }));
      const prog = BpfProgram.openPinned(pin);
      cleanups.push(() => prog.close());
      progs.push({ id: 'xdp-filter (features ipv4)', ruleSet: '1 rule', run: (data, repeat) => prog.testRun({ data, repeat }) });
    }
    if (argv.includes('--const')) {
      // PROTOTYPE: the rule set as load-time constants, and the floor (read the Ethernet header, drop)
      for (const rs of CONST_SETS) {
        const c = constConfig(rs.rules(), [{ name: 'lo', ifindex: 1, defaultPolicy: 'pass' }]);
        if ('reason' in c) throw new Error(`const ${rs.id}: ${c.reason}`);
        const cf = await ConstFilter.load(c);
        cleanups.push(() => cf.close());
        progs.push({ id: 'const (prototype)', ruleSet: rs.id, run: (data, repeat) => cf.prog.testRun({ data, repeat }) });
      }
      const floor = await ConstFilter.load({ ifaces: [], atoms: [] }, undefined, 'xdp_floor');
      cleanups.push(() => floor.close());
      progs.push({ id: 'floor (read Ethernet, drop)', ruleSet: '-', run: (data, repeat) => floor.prog.testRun({ data, repeat }) });
    }
    const runs = progs.map((p) => ({ ...p, cold: [] as number[], hot: [] as number[], hotMiss: [] as number[] }));
    for (const r of runs) {
      const got = (await r.run(MATCH, 1)).retval;
      if (got !== 1) throw new Error(`cold: ${r.id} ${r.ruleSet}: verdict ${got} on the match frame, expected 1 (drop)`);
      const miss = (await r.run(MISS, 1)).retval;
      if (!r.id.startsWith('floor') && miss !== 2) throw new Error(`cold: ${r.id} ${r.ruleSet}: verdict ${miss} on the miss frame, expected 2 (pass)`);
    }
    const hotOnly = argv.includes('--hot');
    for (let i = 0; i < SAMPLES; i++) {
      for (const r of runs) {
        if (!hotOnly) {
          evict.fill(i & 255);
          r.cold.push((await r.run(MATCH, 1)).duration);
        }
        r.hot.push((await r.run(MATCH, REPEAT)).duration);
        if (hotOnly) r.hotMiss.push((await r.run(MISS, REPEAT)).duration);
      }
    }
    for (const r of runs) {
      if (!hotOnly) {
        rows.push({ path: r.id, ruleSet: `${r.ruleSet}, cold`, kind: 'match', ns: summarize(r.cold) });
        log(rows.at(-1)!);
      }
      rows.push({ path: r.id, ruleSet: `${r.ruleSet}, hot`, kind: 'match', ns: summarize(r.hot) });
      log(rows.at(-1)!);
      if (hotOnly) {
        rows.push({ path: r.id, ruleSet: `${r.ruleSet}, hot`, kind: 'miss', ns: summarize(r.hotMiss) });
        log(rows.at(-1)!);
      }
    }
  } finally {
    for (const c of cleanups.reverse()) c();
    for (const { dp, pinDir } of planes) {
      dp.destroy();
      removePins(pinDir);
    }
    if (xfLoaded) await xfLoaded.ns.nsenter('xdp-filter', ['unload', 'xf0'], { reject: false });
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

function log(r: Row): void {
  process.stderr.write(`# ${r.path}, ${r.ruleSet}, ${r.kind}: ${fmt(r.ns, 1, 1)} ns\n`);
}

async function main(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const rows: Row[] = [];
  const started = new Date();
  if (argv.includes('--cold') || argv.includes('--hot')) await coldRun(rows);
  else {
    if (want('reference')) await reference(rows);
    if (want('patronus')) await (argv.includes('--interleave') ? patronusInterleaved(rows) : patronus(rows));
    if (want('xdp-filter')) await xdpFilter(rows);
  }
  const bud: BudgetRow[] = [];
  if (argv.includes('--budget')) await budget(bud);
  const load = (await execa('cat', ['/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ');
  let md =
    `# XDP classifier alone: in-kernel ns per packet\n\n` +
    `${started.toISOString()}, ${hostname()}, Linux ${release()}, ${cpus().length}× ${cpus()[0]?.model ?? '?'}; ` +
    `load average at the end ${load}. bpf_prog_test_run, repeat ${REPEAT}, ${SAMPLES} samples${argv.includes('--interleave') ? ' (Patronus: round-robin over its rule sets)' : ''}${argv.includes('--hot') ? ' (round-robin over the programs, hot: repeat as stated)' : ''}${argv.includes('--cold') ? ` (cold: one run after a ${COLD_BYTES >> 10} KB write on this CPU, round-robin over the programs; hot: repeat as stated, right after)` : ''}: median (min–max) ns/packet.\n\n` +
    markdownTable(
      ['path', 'rule set', 'match', 'miss'],
      [...new Set(rows.map((r) => `${r.path}|${r.ruleSet}`))].map((k) => {
        const [p, rs] = k.split('|') as [string, string];
        const cell = (kind: string) => {
          const r = rows.find((x) => x.path === p && x.ruleSet === rs && x.kind === kind);
          return r ? fmt(r.ns, 1, 1) : '–';
        };
        return [p, rs, cell('match'), cell('miss')];
      }),
    );
  const budgetMd = bud.length
    ? `\n## Per-packet cost budget (Patronus, one feature at a time)\n\n` +
      markdownTable(['rule set [lookups the generation makes]', 'ns/packet', 'over the fixed work'], bud.map((b) => [b.what, fmt(b.ns, 1, 1), `${(b.ns.median - bud[0]!.ns.median).toFixed(0)}`]))
    : '';
  md += budgetMd;
  process.stdout.write(md);
  writeFileSync(path.join(out, 'classify.md'), md);
  writeFileSync(path.join(out, 'classify.json'), JSON.stringify({ started, repeat: REPEAT, samples: SAMPLES, rows, budget: bud }, null, 2));
  process.stderr.write(`# wrote ${out}\n`);
}

await main();
