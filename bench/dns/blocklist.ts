/**
 * DNS blocklist scaling: how compile (read + parse + dedupe), render,
 * unbound-checkconf, Unbound's start-up and its memory grow with the number
 * of blocked domains, and whether lookups of blocked and local names stay
 * fast. Runs Unbound in a fresh namespace (nothing on the host).
 *
 *   node dist/bench/dns/blocklist.js [--counts 1000,10000,100000,300000] [--reps 3]
 *
 * Prints Markdown tables and writes bench/results/dns-blocklist-<time>/
 * (blocklist.md, blocklist.svg).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { Lab } from '../lib/netns.js';
import { Host } from '../../src/system/host.js';
import { validateDocument } from '../../src/domains.js';
import { instancePaths, writeRendered } from '../../src/services/common/service.js';
import { unboundService } from '../../src/services/unbound/unbound.js';
import { unboundSubsystem } from '../../src/services/unbound/subsystem.js';
import { fmt, markdownTable, summarize, svgPlot, type Series, type Summary } from '../harness/report.js';

const { values } = parseArgs({ options: { counts: { type: 'string', default: '1000,10000,100000,300000' }, reps: { type: 'string', default: '3' } } });
const counts = values.counts.split(',').map(Number);
const reps = Number(values.reps);

interface Point {
  compile: number[];
  render: number[];
  check: number[];
  start: number[];
  rssMiB: number[];
  queryMs: number[];
}

const lab = new Lab();
const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-bench-dns-'));
const results = new Map<number, Point>();
try {
  const ns = await lab.ns('dns');
  await ns.ip('addr', 'add', '127.0.0.53/8', 'dev', 'lo');
  const host = new Host({ netns: ns.name, stateDir: path.join(dir, 'state') });
  for (const n of counts) {
    const file = path.join(dir, `list-${n}.txt`);
    // hosts format, as the large public lists are
    writeFileSync(file, Array.from({ length: n }, (_, i) => `0.0.0.0 ad${i}.tracker${i % 977}.example.com`).join('\n') + '\n');
    const doc = {
      dns: {
        enabled: true,
        mode: 'recursive',
        dnssec: { enabled: false },
        listen: { interfaces: [], addresses: ['127.0.0.53'] },
        records: [{ type: 'A', name: 'local.lan.example', address: '10.0.0.1' }],
        blocklists: [{ name: 'big', file, format: 'hosts', answer: 'nxdomain' }],
      },
    };
    const p: Point = { compile: [], render: [], check: [], start: [], rssMiB: [], queryMs: [] };
    for (let r = 0; r < reps; r++) {
      const read = (f: string) => readFileSync(f, 'utf8');
      let t = performance.now();
      const { validated } = validateDocument(doc, read);
      const { desired } = unboundSubsystem.compile({ openings: [], config: validated!.config, aliases: validated!.aliases, readFile: read });
      p.compile.push(performance.now() - t);
      const model = desired.model!;
      const paths = instancePaths(host.stateDir, 'unbound');
      t = performance.now();
      const files = unboundService.render(model, paths);
      p.render.push(performance.now() - t);
      writeRendered(paths, files);
      t = performance.now();
      const issues = await unboundService.check(model, paths, host);
      if (issues.length) throw new Error(JSON.stringify(issues));
      p.check.push(performance.now() - t);
      t = performance.now();
      await unboundService.start(model, paths, host);
      p.start.push(performance.now() - t);
      const pid = readFileSync(paths.pidFile, 'utf8').trim();
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      p.rssMiB.push(Number(rss) / 1024);
      // 200 lookups (blocked, local, blocked subdomain) in one dig batch
      const batch = path.join(dir, 'batch.txt');
      writeFileSync(batch, Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? `ad${i}.tracker${i % 977}.example.com` : i % 3 === 1 ? 'local.lan.example' : `x.ad${i}.tracker${i % 977}.example.com`)).join('\n') + '\n');
      t = performance.now();
      await execa('nsenter', [`--net=${ns.path}`, '--', 'dig', '+time=2', '+tries=1', '+short', '@127.0.0.53', '-f', batch]);
      p.queryMs.push((performance.now() - t) / 200);
      await unboundService.stop(paths, host);
      rmSync(paths.dir, { recursive: true, force: true });
    }
    results.set(n, p);
    console.error(`# ${n} domains done`);
  }
} finally {
  await lab.teardown();
  rmSync(dir, { recursive: true, force: true });
}

const S = (xs: number[]): Summary => summarize(xs);
const rows = counts.map((n) => {
  const p = results.get(n)!;
  return [String(n), fmt(S(p.compile), 1, 0), fmt(S(p.render), 1, 0), fmt(S(p.check), 1, 0), fmt(S(p.start), 1, 0), fmt(S(p.rssMiB), 1, 1), fmt(S(p.queryMs), 1, 2)];
});
const table = markdownTable(['domains', 'compile ms', 'render ms', 'unbound-checkconf ms', 'start to ready ms', 'Unbound RSS MiB', 'ms per lookup (dig batch)'], rows);
const md = `# DNS blocklist scaling (${new Date().toISOString()})\n\nmedian (min–max) of ${reps} runs; hosts-format file; one Unbound thread.\n\n${table}`;
console.log(md);
const series = (label: string, pick: (p: Point) => number[]): Series => ({ label, points: counts.map((n) => ({ x: n, y: S(pick(results.get(n)!)) })) });
const svg = svgPlot({
  title: 'DNS blocklist: time by list size',
  xLabel: 'blocked domains',
  yLabel: 'ms',
  logX: true,
  logY: true,
  series: [series('compile', (p) => p.compile), series('render', (p) => p.render), series('unbound-checkconf', (p) => p.check), series('start to ready', (p) => p.start)],
});
const out = path.join(path.dirname(new URL(import.meta.url).pathname), '../../../bench/results', `dns-blocklist-${new Date().toISOString().replace(/[:.]/g, '-')}`);
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'blocklist.md'), md);
writeFileSync(path.join(out, 'blocklist.svg'), svg);
console.log(`results: ${out}`);
