/**
 * Control-plane benchmark: how long the engine takes to apply a revision
 * (validate + compile + every subsystem's converge + store commit) as the
 * rule count grows, and how long a Prometheus scrape of the live counters
 * takes. Runs against the real kernel in a fresh namespace pair, with the
 * real subsystem registry.
 *
 *   node dist/bench/control/apply.js [--reps 3] [--counts 10,1000,10000]
 *
 * Series: fast-path rules (capped by the BPF object's rule capacity, 1024),
 * nftables rules, and both at once. Each point: apply from the empty
 * configuration ("initial"), then the same set with one rule changed
 * ("incremental"); the median of --reps runs, min-max in brackets.
 * Prints Markdown tables and writes bench/results/control-<time>/ (apply.md,
 * apply.svg).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { FILTER_MAX_RULES } from '../../src/fastpath/layout.js';
import { controlLab } from '../lib/control.js';
import { fmt, markdownTable, summarize, svgPlot, type Series, type Summary } from '../harness/report.js';
import { domains } from '../../src/domains.js';

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    counts: { type: 'string', default: '10,1000,10000' },
    scrapes: { type: 'string', default: '20' },
  },
});
const reps = Number(values.reps);
const counts = values.counts!.split(',').map(Number);

type Kind = 'fastpath' | 'nftables' | 'both';

function addr(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

/** A document with n rules of the given kind; `variant` changes one rule (for the incremental apply). */
function documentFor(kind: Kind, n: number, variant = 0): Record<string, unknown> {
  const fastRules = kind === 'nftables' ? 0 : Math.min(n, FILTER_MAX_RULES);
  const nftRules = kind === 'fastpath' ? 0 : n;
  return {
    interfaces: [{ name: 'wan0', zone: 'wan' }],
    fastpath: {
      interfaces: fastRules ? [{ name: 'wan0' }] : [],
      rules: Array.from({ length: fastRules }, (_, i) => ({
        name: `fp${i}`,
        source: `${addr(i + 1)}/32`,
        protocol: 'tcp',
        destinationPorts: 1000 + (i % 60000) + (i === 0 ? variant : 0),
        action: 'drop',
      })),
    },
    firewall: {
      rules: Array.from({ length: nftRules }, (_, i) => ({
        name: `nft${i}`,
        direction: 'input',
        from: 'wan',
        protocol: 'tcp',
        source: [addr(i + 1)],
        ports: [1000 + (i % 60000) + (i === 0 ? variant : 0)],
        action: 'accept',
      })),
    },
  };
}

async function main(): Promise<void> {
  const L = await controlLab();
  const store = Store.open(join(L.stateDir, 'patronus.db'));
  const engine = new Engine({ domains, host: L.host, store });
  const results: { kind: Kind; n: number; initial: Summary; incremental: Summary; rulesApplied: string; validate: Summary; slowest: string }[] = [];
  const scrape: { what: string; t: Summary; samples: number }[] = [];
  try {
    for (const kind of ['fastpath', 'nftables', 'both'] as Kind[]) {
      for (const n of counts) {
        if (kind === 'fastpath' && n > FILTER_MAX_RULES && counts.includes(FILTER_MAX_RULES)) continue;
        const initial: number[] = [];
        const incremental: number[] = [];
        const validate: number[] = [];
        let slowest = '';
        for (let r = 0; r < reps; r++) {
          await engine.apply({ document: {}, allowEmpty: true }, { author: 'bench', message: 'empty' });
          let t0 = performance.now();
          const report = await engine.apply({ document: documentFor(kind, n) }, { author: 'bench', message: `${kind} ${n}` });
          initial.push(performance.now() - t0);
          // before the revision is created: parse, schema, aliases, compile, every validate hook
          validate.push(performance.now() - t0 - report.durationMs);
          slowest = [...report.steps].sort((a, b) => b.ms - a.ms).slice(0, 3).map((x) => `${x.subsystem} ${x.ms.toFixed(0)}`).join(', ');
          t0 = performance.now();
          await engine.apply({ document: documentFor(kind, n, 1) }, { author: 'bench', message: `${kind} ${n} changed` });
          incremental.push(performance.now() - t0);
        }
        const fp = kind === 'nftables' ? 0 : Math.min(n, FILTER_MAX_RULES);
        const nft = kind === 'fastpath' ? 0 : n;
        const row = { kind, n, initial: summarize(initial), incremental: summarize(incremental), rulesApplied: `${fp} fast path + ${nft} nft`, validate: summarize(validate), slowest };
        results.push(row);
        console.log(`${kind.padEnd(8)} ${String(n).padStart(6)} rules (${row.rulesApplied}): initial ${fmt(row.initial, 1, 0)} ms, incremental ${fmt(row.incremental, 1, 0)} ms`);
      }
    }

    // scrape time with 1k rules' counters (fast path 1000 + nftables 1000 rules, all counting)
    await engine.apply({ document: documentFor('both', 1000) }, { author: 'bench', message: 'scrape' });
    const metrics = createMetrics(engine);
    const scrapes = Number(values.scrapes);
    let lines = 0;
    const times: number[] = [];
    await metrics.registry.metrics(); // warm up
    for (let i = 0; i < scrapes; i++) {
      const t0 = performance.now();
      const text = await metrics.registry.metrics();
      times.push(performance.now() - t0);
      lines = text.split('\n').filter((l) => l.startsWith('patronus_rule_')).length;
    }
    scrape.push({ what: 'full /metrics scrape (1000 fast-path + 1000 nft rules)', t: summarize(times), samples: lines });
    for (const s of engine.subsystems.filter((x) => x.metrics)) {
      const t: number[] = [];
      for (let i = 0; i < scrapes; i++) {
        const t0 = performance.now();
        await s.metrics!(engine.host);
        t.push(performance.now() - t0);
      }
      scrape.push({ what: `${s.name}.metrics() alone`, t: summarize(t), samples: 0 });
    }
  } finally {
    engine.close();
    store.close();
    await L.teardown();
  }

  const md = [
    '# Control plane: apply and scrape times',
    '',
    `Median of ${reps} runs (min–max), milliseconds. Machine: ${process.arch}, Node ${process.version}. Real kernel in a fresh namespace, every subsystem of the registry.`,
    `Fast-path rules are capped at ${FILTER_MAX_RULES} (the BPF object's rule capacity); larger counts apply ${FILTER_MAX_RULES} fast-path rules.`,
    '',
    markdownTable(
      ['series', 'rules', 'applied', 'initial apply (ms)', 'of which validate+compile', 'slowest steps, last initial apply (ms)', 'incremental apply (ms)'],
      results.map((r) => [r.kind, String(r.n), r.rulesApplied, fmt(r.initial, 1, 0), fmt(r.validate, 1, 0), r.slowest, fmt(r.incremental, 1, 0)]),
    ),
    '## Scrape',
    '',
    markdownTable(['what', 'time (ms)', 'patronus_rule_* samples'], scrape.map((s) => [s.what, fmt(s.t, 1, 1), s.samples ? String(s.samples) : '']))
  ].join('\n');
  console.log(`\n${md}`);

  const dir = join('bench', 'results', `control-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'apply.md'), md);
  const series: Series[] = [];
  for (const kind of ['fastpath', 'nftables', 'both'] as Kind[]) {
    for (const phase of ['initial', 'incremental'] as const) {
      series.push({ label: `${kind} ${phase}`, points: results.filter((r) => r.kind === kind).map((r) => ({ x: r.n, y: r[phase] })) });
    }
  }
  writeFileSync(join(dir, 'apply.svg'), svgPlot({ title: 'Apply time by rule count', xLabel: 'rules', yLabel: 'ms', logX: true, logY: true, series }));
  console.log(`results in ${dir}/`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
