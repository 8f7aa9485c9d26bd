/**
 * How long the fast path takes to take in big prefix sets: compile (pure),
 * the first write of a generation, a full swap to a different set (hitless
 * apply), and the in-kernel classification cost per packet at that size
 * (bpf_prog_test_run repeat). Then a full GeoIP country database: walk the
 * mmdb tree, compile a rule naming every country, apply it.
 * Not a test: prints tables and writes an SVG under bench/results/.
 *
 *   node dist/bench/fastpath-load.js [--counts 1000,10000,100000,200000] [--reps 3]
 *        [--families 4,6] [--geoip FILE.mmdb] [--no-geoip] [--out DIR]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileFastpath } from '../src/fastpath/compile.js';
import { FastpathDataPlane, removePins } from '../src/fastpath/dataplane.js';
import { GeoIpDatabase } from '../src/fastpath/geoip.js';
import { fastpathSchema } from '../src/fastpath/schema.js';
import { frame } from './lib/packets.js';
import { markdownTable, summarize, fmt, svgPlot, type Summary } from './harness/report.js';

const argv = process.argv.slice(2);
const get = (k: string) => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const counts = (get('--counts') ?? '1000,10000,100000,200000').split(',').map(Number);
const reps = Number(get('--reps') ?? 3);
const families = (get('--families') ?? '4,6').split(',').map(Number) as (4 | 6)[];
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const geoFile = get('--geoip') ?? path.join(root, 'node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb');
const out = get('--out') ?? path.join(root, 'bench/results', `fastpath-load-${new Date().toISOString().replace(/[:.]/g, '-')}`);
const CAP = 1 << 20;

/** n distinct prefixes: v4 /24s from 16.0.0.0 up, v6 /48s from 2a00:: up (deterministic). */
function prefixes(family: 4 | 6, n: number, offset: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = i + offset;
    out.push(family === 4 ? `${16 + (s >> 16)}.${(s >> 8) & 255}.${s & 255}.0/24` : `2a00:${(s >> 16).toString(16)}:${(s & 0xffff).toString(16)}::/48`);
  }
  return out;
}

const config = (rules: unknown[]) =>
  fastpathSchema.parse({ interfaces: [{ name: 'lo' }], rules, capacity: { prefixes: CAP, portPrefixes: 1024, rateLimitSources: 1024, blocklist: 1024 } });

async function main() {
  mkdirSync(out, { recursive: true });
  const pinDir = mkdtempSync('/sys/fs/bpf/pt-bench-load-');
  const dp = await FastpathDataPlane.open({ pinDir, capacity: { prefixes: CAP, portPrefixes: 1024, rateLimitSources: 1024, blocklist: 1024 } });
  const lo = () => 1; // test_run classifies as received on lo; nothing is attached
  const rows: string[][] = [];
  const series: Record<string, { x: number; y: Summary }[]> = {};
  try {
    for (const family of families) {
      for (const n of counts) {
        const comp: number[] = [];
        const first: number[] = [];
        const swap: number[] = [];
        const ns: number[] = [];
        for (let r = 0; r < reps; r++) {
          await dp.apply(compileFastpath({ fastpath: config([]), aliases: new Map() }).desired, lo); // both generations empty
          await dp.apply(compileFastpath({ fastpath: config([]), aliases: new Map() }).desired, lo);
          let t = performance.now();
          const a = compileFastpath({ fastpath: config([{ name: 'drop-set', source: prefixes(family, n, 0), action: 'drop' }]), aliases: new Map() }).desired;
          comp.push(performance.now() - t);
          t = performance.now();
          await dp.apply(a, lo);
          first.push(performance.now() - t);
          const b = compileFastpath({ fastpath: config([{ name: 'drop-set-b', source: prefixes(family, n, n), action: 'drop' }]), aliases: new Map() }).desired;
          await dp.apply(b, lo); // fills the other generation
          t = performance.now();
          await dp.apply(a, lo); // a full swap: every entry of the shadow generation replaced
          swap.push(performance.now() - t);
          const inside = family === 4 ? frame({ src: '16.0.0.9', dst: '10.0.0.2' }) : frame({ src: '2a00:0:0::9', dst: '2001:db8::2' });
          ns.push((await dp.xdp.testRun({ data: inside, repeat: 200_000 })).duration);
        }
        const s = { comp: summarize(comp), first: summarize(first), swap: summarize(swap), ns: summarize(ns) };
        rows.push([`IPv${family}`, String(n), fmt(s.comp, 1, 0), fmt(s.first, 1, 0), fmt(s.swap, 1, 0), fmt(s.ns, 1, 1)]);
        (series[`apply (swap), IPv${family}`] ??= []).push({ x: n, y: s.swap });
        (series[`compile, IPv${family}`] ??= []).push({ x: n, y: s.comp });
        process.stderr.write(`# IPv${family} ${n}: compile ${fmt(s.comp, 1, 0)} ms, first write ${fmt(s.first, 1, 0)} ms, swap ${fmt(s.swap, 1, 0)} ms, ${fmt(s.ns, 1, 1)} ns/pkt\n`);
      }
    }
    const table1 = markdownTable(['family', 'prefixes', 'compile ms', 'first write ms', 'hitless swap ms', 'classify ns/pkt'], rows);

    let table2 = '';
    if (!argv.includes('--no-geoip')) {
      let t = performance.now();
      const geo = GeoIpDatabase.open(geoFile);
      const walk = performance.now() - t;
      const all = geo.countries();
      t = performance.now();
      const { desired, issues } = compileFastpath({ fastpath: config([{ name: 'all-countries', countries: all, action: 'drop' }]), aliases: new Map(), geoip: geo });
      const comp = performance.now() - t;
      if (issues.length) throw new Error(issues.map((i) => i.message).join('; '));
      t = performance.now();
      await dp.apply(desired, lo);
      const apply = performance.now() - t;
      const ns = (await dp.xdp.testRun({ data: frame({ src: '1.178.10.1' }), repeat: 200_000 })).duration;
      table2 = markdownTable(
        ['database', 'networks', 'countries', 'walk ms', 'compile ms', 'v4 entries', 'v6 entries', 'apply ms', 'classify ns/pkt'],
        [[path.basename(geoFile), String(geo.networks), String(all.length), walk.toFixed(0), comp.toFixed(0), String(desired.fields.src_v4.length), String(desired.fields.src_v6.length), apply.toFixed(0), ns.toFixed(1)]],
      );
    }
    const report = `# Fast-path load times\n\n${new Date().toISOString()}, ${reps} repetitions, median (min–max)\n\n${table1}\n${table2}`;
    process.stdout.write(report);
    writeFileSync(path.join(out, 'fastpath-load.md'), report);
    writeFileSync(
      path.join(out, 'fastpath-load.svg'),
      svgPlot({ title: 'Fast path: time to take in a prefix set', xLabel: 'prefixes in one rule', yLabel: 'ms', logX: true, logY: true, series: Object.entries(series).map(([label, points]) => ({ label, points })) }),
    );
    process.stderr.write(`# wrote ${out}\n`);
  } finally {
    dp.destroy();
    removePins(pinDir);
    rmSync(pinDir, { recursive: true, force: true });
  }
}

await main();
