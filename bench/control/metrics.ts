/**
 * Control-plane benchmark: how long a Prometheus scrape takes as the
 * firewall grows. Real kernel in a fresh namespace, the real subsystem
 * registry, metrics created as `patronus serve` creates them (with its drift
 * monitor, so patronus_drift is part of the scrape).
 *
 *   node dist/bench/control/metrics.js [--counts 1000,10000] [--scrapes 20]
 *
 * For each rule count: the full scrape (registry.metrics(), one after the
 * other, every one reading the kernel; --gap ms between them, default 0, so
 * the drift monitor's report younger than 1 s is reused as /healthz does),
 * 8 concurrent scrapes (one shared read), and the parts alone
 * (nftables.metrics(), a fresh drift check as a scrape 15 s after the last
 * one runs, the nft listings). p50 (min–max) in milliseconds; a printed
 * table, not a timed test.
 */
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { DriftMonitor } from '../../src/drift/monitor.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { NFT_FAMILY, NFT_TABLE } from '../../src/nft/compile.js';
import { controlLab } from '../lib/control.js';
import { fmt, markdownTable, summarize, type Summary } from '../harness/report.js';
import { domains } from '../../src/domains.js';

const { values } = parseArgs({
  options: {
    counts: { type: 'string', default: '1000,10000' },
    scrapes: { type: 'string', default: '20' },
    gap: { type: 'string', default: '0' },
  },
});
const counts = values.counts!.split(',').map(Number);
const scrapes = Number(values.scrapes);
const gapMs = Number(values.gap);

function addr(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

function firewall(n: number): Record<string, unknown> {
  return {
    interfaces: [{ name: 'wan0', zone: 'wan' }],
    firewall: {
      rules: Array.from({ length: n }, (_, i) => ({ name: `nft${i}`, direction: 'input', from: 'wan', protocol: 'tcp', source: [addr(i + 1)], ports: [1000 + (i % 60000)], action: 'accept' })),
    },
  };
}

async function times(k: number, f: () => Promise<unknown>, gap = 0): Promise<Summary> {
  const t: number[] = [];
  for (let i = 0; i < k; i++) {
    if (gap) await sleep(gap);
    const t0 = performance.now();
    await f();
    t.push(performance.now() - t0);
  }
  return summarize(t);
}

async function main(): Promise<void> {
  const L = await controlLab();
  const store = Store.open(join(L.stateDir, 'patronus.db'));
  const engine = new Engine({ domains, host: L.host, store });
  const drift = new DriftMonitor(engine);
  const metrics = createMetrics(engine, { drift });
  const rows: string[][] = [];
  try {
    for (const n of counts) {
      await engine.apply({ document: firewall(n) }, { author: 'bench', message: `${n} nft rules` });
      await metrics.registry.metrics(); // warm up (compiles the revision for the drift check once)
      const text = await metrics.registry.metrics();
      const samples = text.split('\n').filter((l) => l.startsWith('patronus_rule_packets_total{subsystem="nftables"')).length;
      // CPU time of this process per scrape (user + system: the netlink dumps are system time), less
      // sensitive to the machine's load than the wall time; `nft`/`ip` children are not counted
      let cpu = 0;
      const full = await times(scrapes, async () => {
        const c0 = process.cpuUsage();
        await metrics.registry.metrics();
        const c = process.cpuUsage(c0);
        cpu += (c.user + c.system) / 1000;
      }, gapMs);
      const concurrent = await times(Math.max(1, Math.floor(scrapes / 4)), () => Promise.all(Array.from({ length: 8 }, () => metrics.registry.metrics())), gapMs);
      const nft = engine.subsystems.find((s) => s.name === 'nftables')!;
      const nftAlone = await times(scrapes, () => nft.metrics!(engine.host));
      const driftAlone = await times(Math.min(scrapes, 5), () => drift.check({ maxAgeMs: 0 }));
      const snap = await times(scrapes, () => metrics.snapshot(), gapMs);
      // each subsystem's reader alone (they run concurrently in a scrape: the slowest sets the pace)
      for (const s of engine.subsystems.filter((x) => x.metrics)) {
        const t = await times(5, () => s.metrics!(engine.host));
        console.error(`# ${n} rules: ${s.name}.metrics() ${fmt(t, 1, 1)} ms`);
      }
      const listJson = await times(scrapes, () => engine.host.run('nft', ['-j', 'list', 'table', NFT_FAMILY, NFT_TABLE]));
      const listCounters = await times(scrapes, () => engine.host.run('nft', ['-j', 'list', 'counters', 'table', NFT_FAMILY, NFT_TABLE], { reject: false }));
      const row = [String(n), String(samples), fmt(full, 1, 1), (cpu / scrapes).toFixed(1), fmt(concurrent, 1, 1), fmt(snap, 1, 1), fmt(nftAlone, 1, 1), fmt(driftAlone, 1, 1), fmt(listJson, 1, 1), fmt(listCounters, 1, 1)];
      console.log(row.join('  '));
      rows.push(row);
    }
  } finally {
    drift.stop();
    engine.close();
    store.close();
    await L.teardown();
  }
  console.log(
    '\n' +
      `# /metrics scrape time by firewall size (ms, p50 (min–max) of ${scrapes}; ${process.arch}, Node ${process.version}, ${new Date().toISOString()}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')})\n\n` +
      markdownTable(
        ['nft rules', 'rule series', 'full scrape', 'full scrape, CPU ms (mean)', '8 concurrent scrapes', 'metrics.snapshot() (every reader)', 'nftables.metrics()', 'drift check (fresh)', 'nft -j list table', 'nft -j list counters table'],
        rows,
      ),
  );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
