/**
 * Control-plane benchmark: which commands the engine runs (and how long
 * each takes) for one apply, one plan and one drift check, in a fresh
 * namespace with the real subsystem registry. Every command is a process
 * spawn, and a spawn from the server blocks its event loop for milliseconds
 * on this machine: the count is what to cut.
 *
 *   node dist/bench/control/spawns.js
 */
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { DriftMonitor } from '../../src/drift/monitor.js';
import { controlLab } from '../lib/control.js';
import { markdownTable } from '../harness/report.js';
import { domains } from '../../src/domains.js';

type Call = { cmd: string; ms: number };
const calls: Call[] = [];
const run = Host.prototype.run;
Host.prototype.run = async function (this: Host, cmd, args, opts) {
  const t0 = performance.now();
  try {
    return await run.call(this, cmd, args, opts);
  } finally {
    calls.push({ cmd: `${cmd} ${args.slice(0, 3).join(' ')}`, ms: performance.now() - t0 });
  }
};

const doc = (port: number) => ({
  interfaces: [{ name: 'wan0', zone: 'wan' }],
  fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'r1', source: '198.51.100.0/24', protocol: 'tcp', destinationPorts: port, action: 'drop' }] },
});

async function main(): Promise<void> {
  const L = await controlLab();
  const store = Store.open(':memory:');
  const engine = new Engine({ domains, host: L.host, store });
  const rows: string[][] = [];
  const measure = async (what: string, fn: () => Promise<unknown>) => {
    calls.length = 0;
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    const by = new Map<string, { n: number; ms: number }>();
    for (const c of calls) {
      const e = by.get(c.cmd) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += c.ms;
      by.set(c.cmd, e);
    }
    const top = [...by].sort((a, b) => b[1].n - a[1].n).slice(0, 8).map(([k, v]) => `${k} ×${v.n}`).join('; ');
    rows.push([what, ms.toFixed(0), String(calls.length), calls.reduce((a, c) => a + c.ms, 0).toFixed(0), top]);
  };
  try {
    await engine.apply({ document: doc(1) }, { author: 'bench', message: '' });
    await measure('apply, one rule changed (no drift check since the last apply: every subsystem)', () => engine.apply({ document: doc(2) }, { author: 'bench', message: '' }));
    await measure('plan, one rule changed', () => engine.plan({ document: doc(4) }));
    const drift = new DriftMonitor(engine, { mode: 'report' });
    await measure('drift check', () => drift.check());
    // as `serve` runs it: the drift loop's last clean check lets an apply skip what it does not change
    engine.cleanState = () => drift.cleanState();
    for (let i = 0; i < 3; i++) {
      await drift.check({ maxAgeMs: 0 });
      await measure('apply, one rule changed, after a clean drift check (as serve)', () => engine.apply({ document: doc(10 + i) }, { author: 'bench', message: '' }));
    }
    console.log(markdownTable(['operation', 'ms', 'commands', 'sum of command ms', 'most frequent'], rows));
  } finally {
    engine.close();
    store.close();
    await L.teardown();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
