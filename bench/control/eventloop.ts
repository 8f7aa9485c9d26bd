/**
 * Control-plane benchmark: how long the engine's main thread is held while a
 * fast-path rule with many prefixes is validated, planned and applied
 * (issue 11 item 12), by prefix count. In-process, against the real kernel
 * in a fresh namespace pair, with the real subsystem registry: each phase
 * runs with perf_hooks' monitorEventLoopDelay on (10 ms resolution), and
 * reports its duration and the event loop's p50/p99/max delay. Large
 * documents are compiled in a worker thread (src/apply/check-worker.ts);
 * the figures show what is left on the main thread (rebuilding the compiled
 * entries, the data plane's diff and batch encoding, garbage collection).
 *
 *   node dist/bench/control/eventloop.js [--reps 1] [--counts 100000,300000,1000000]
 *
 * Phases per count: validate, plan, apply (initial: nothing loaded), apply
 * of the other half of the /24s (every prefix changes), apply of the same
 * document again (unchanged). Prints a Markdown table and writes
 * bench/results/eventloop-<time>/ (eventloop.md, eventloop.svg).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { controlLab } from '../lib/control.js';
import { domains } from '../../src/domains.js';
import { fmt, markdownTable, summarize, svgPlot, type Series, type Summary } from '../harness/report.js';

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '1' },
    counts: { type: 'string', default: '100000,300000,1000000' },
  },
});
const reps = Number(values.reps);
const counts = values.counts!.split(',').map(Number);
const PHASES = ['validate', 'plan', 'apply', 'apply changed', 'apply unchanged'] as const;
type Phase = (typeof PHASES)[number];

/** A fast-path rule dropping n /24s (every other one from `offset`), the data plane sized for them. */
function documentFor(n: number, offset: number): Record<string, unknown> {
  const entries = Array.from({ length: n }, (_, j) => {
    const i = j * 2 + offset;
    return `${10 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}.0/24`;
  });
  return {
    interfaces: [{ name: 'wan0', zone: 'wan' }],
    aliases: [{ name: 'big', type: 'network', entries }],
    fastpath: { interfaces: [{ name: 'wan0' }], capacity: { prefixes: Math.max(262_144, n * 2) }, rules: [{ name: 'drop-big', source: 'big', action: 'drop' }] },
  };
}

interface Sample {
  ms: number;
  p50: number;
  p99: number;
  max: number;
}

async function measure(fn: () => Promise<unknown>): Promise<Sample> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const t0 = performance.now();
  try {
    await fn();
  } finally {
    h.disable();
  }
  return { ms: performance.now() - t0, p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
}

async function main(): Promise<void> {
  const L = await controlLab();
  const results: { n: number; phase: Phase; ms: Summary; p50: Summary; p99: Summary; max: Summary }[] = [];
  try {
    for (const n of counts) {
      const samples = new Map<Phase, Sample[]>(PHASES.map((p) => [p, []]));
      for (let r = 0; r < reps; r++) {
        const store = Store.open(join(L.stateDir, `eventloop-${n}-${r}.db`));
        const engine = new Engine({ domains, host: L.host, store, confirmGuard: false });
        try {
          const a = documentFor(n, 0);
          const b = documentFor(n, 1);
          const meta = { author: 'bench', message: `${n} prefixes` };
          samples.get('validate')!.push(await measure(() => engine.validate({ document: a })));
          samples.get('plan')!.push(await measure(() => engine.plan({ document: a })));
          samples.get('apply')!.push(await measure(() => engine.apply({ document: a }, meta)));
          samples.get('apply changed')!.push(await measure(() => engine.apply({ document: b }, meta)));
          samples.get('apply unchanged')!.push(await measure(() => engine.apply({ document: b }, meta)));
        } finally {
          for (const s of [...engine.subsystems].reverse()) await s.teardown?.(L.host).catch(() => {});
          engine.close();
          store.close();
        }
      }
      for (const phase of PHASES) {
        const s = samples.get(phase)!;
        const row = { n, phase, ms: summarize(s.map((x) => x.ms)), p50: summarize(s.map((x) => x.p50)), p99: summarize(s.map((x) => x.p99)), max: summarize(s.map((x) => x.max)) };
        console.log(`${n} ${phase}: ${fmt(row.ms, 1, 0)} ms; event loop p99 ${fmt(row.p99, 1, 0)} ms, max ${fmt(row.max, 1, 0)} ms`);
        results.push(row);
      }
    }
  } finally {
    await L.teardown();
  }
  const md =
    `# Event loop during validate, plan and apply of a fast-path rule with n prefixes\n\n` +
    `\`node dist/bench/control/eventloop.js --reps ${reps} --counts ${counts.join(',')}\`; ${new Date().toISOString()}, Node ${process.version}; ms, median (min–max)\n\n` +
    markdownTable(
      ['prefixes', 'phase', 'duration', 'event loop p50', 'event loop p99', 'event loop max'],
      results.map((r) => [String(r.n), r.phase, fmt(r.ms, 1, 0), fmt(r.p50, 1, 0), fmt(r.p99, 1, 0), fmt(r.max, 1, 0)]),
    );
  console.log(`\n${md}`);
  const dir = join('bench', 'results', `eventloop-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'eventloop.md'), md);
  const series: Series[] = PHASES.map((phase) => ({ label: `${phase}, event loop max`, points: results.filter((r) => r.phase === phase).map((r) => ({ x: r.n, y: r.max })) }));
  writeFileSync(join(dir, 'eventloop.svg'), svgPlot({ title: 'Longest event-loop delay by prefix count', xLabel: 'prefixes', yLabel: 'ms', logX: true, logY: true, series }));
  console.log(`results in ${dir}/`);
}

main().catch((e: Error) => {
  console.error(e);
  process.exitCode = 1;
});
