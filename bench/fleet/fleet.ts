/**
 * Fleet benchmark: N simulated nodes against a real 3-member etcd cluster
 * on loopback. Each node is the real FleetAgent (lease, registration,
 * desired-document watch, status reports) with the kernel side stubbed
 * behind the same NodeDriver interface (apply takes --apply-ms, health is
 * instant). The controller is the real one (central validation of every
 * node's composed document, waves, status polling).
 *
 *   node dist/bench/fleet/fleet.js [--agents 100,300,1000] [--per-client 10] [--reps 2] [--apply-ms 50]
 *
 * Measures per agent count: registration time, rollout time to the last
 * node (canary 1, waves 10%,50%,100%) with the validation share, one-key
 * watch fan-out latency (one put, N watchers), etcd CPU seconds and RSS per
 * member, database size. Agents share gRPC connections (--per-client agents
 * per etcd client: 1000 connections from one process would measure this
 * process, not etcd). Prints a table and writes bench/results/fleet-<time>/.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { Etcd3 } from 'etcd3';
import { EtcdCluster } from '../lib/etcd.js';
import { FleetAgent, type NodeDriver } from '../../src/fleet/agent.js';
import { FleetController } from '../../src/fleet/controller.js';
import { centralValidator } from '../../src/fleet/validate.js';
import { domains } from '../../src/domains.js';
import { FleetKeys } from '../../src/fleet/model.js';
import { fmt, markdownTable, summarize, svgPlot, type Series, type Summary } from '../harness/report.js';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '100,300,1000' },
    'per-client': { type: 'string', default: '10' },
    reps: { type: 'string', default: '2' },
    'apply-ms': { type: 'string', default: '50' },
  },
});
const COUNTS = values.agents!.split(',').map(Number);
const PER_CLIENT = Number(values['per-client']);
const REPS = Number(values.reps);
const APPLY_MS = Number(values['apply-ms']);

/** The kernel side, stubbed: apply sleeps, health passes, revisions count up. */
class StubDriver implements NodeDriver {
  revision = 1;
  pending: number | undefined;
  rollout: string | undefined;
  async apply(_doc: unknown, meta: { message: string }) {
    await new Promise((r) => setTimeout(r, APPLY_MS));
    this.pending = ++this.revision;
    this.rollout = /^fleet rollout ([^\s:]+)/.exec(meta.message)?.[1];
    return { revision: this.revision };
  }
  async health() {
    return { ok: true, checks: [{ name: 'drift', ok: true, detail: 'stub' }] };
  }
  async confirm() {
    this.pending = undefined;
  }
  async rollBack() {
    return --this.revision;
  }
  info() {
    return { revision: this.revision, ...(this.rollout ? { rollout: this.rollout } : {}), drift: 'ok' as const, health: 'ok' as const };
  }
}

const doc = (rule: string) => ({
  interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['192.0.2.2/24'] }],
  firewall: { rules: [{ name: 'allow-ping', direction: 'input', from: 'wan', protocol: 'icmp', action: 'accept' }, { name: rule, direction: 'input', from: 'wan', protocol: 'tcp', ports: [8080], action: 'accept' }] },
});

interface Row {
  agents: number;
  register: Summary;
  rollout: Summary;
  validate: Summary;
  fanout: Summary;
  etcdCpu: number;
  etcdCpuRollout: number;
  etcdRssMb: number;
  dbMb: number;
}

async function dbSize(etcd: EtcdCluster): Promise<number> {
  const r = await execa('etcdctl', ['--endpoints', etcd.endpoints.join(','), 'endpoint', 'status', '-w', 'json'], { env: { ETCDCTL_API: '3' } });
  return Math.max(...(JSON.parse(r.stdout) as { Status: { dbSize: number } }[]).map((s) => s.Status.dbSize));
}

async function runCount(n: number): Promise<Row> {
  const etcd = await EtcdCluster.start();
  const clients: Etcd3[] = [];
  const agents: FleetAgent[] = [];
  try {
    const hosts = etcd.endpoints;
    for (let i = 0; i < Math.ceil(n / PER_CLIENT); i++) clients.push(new Etcd3({ hosts }));
    const admin = new Etcd3({ hosts });
    clients.push(admin);
    const keys = new FleetKeys('/bench/');
    const controller = new FleetController(admin, centralValidator(domains), { keys, pollMs: 250 });
    const group = 'bench';
    // overlays: each node an address of its own (the composed documents differ)
    for (let i = 0; i < n; i++) await controller.setOverlay(group, `node${i}`, { interfaces: [{ name: 'wan0', addresses: ['192.0.2.2/24', `10.${(i >> 8) & 255}.${i & 255}.1/24`] }] });
    const cpu0 = etcd.usage().reduce((a, u) => a + u.cpuSeconds, 0);

    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      agents.push(new FleetAgent({ client: clients[Math.floor(i / PER_CLIENT)]!, keys, node: `node${i}`, group, labels: { site: `s${i % 10}` }, version: 'bench', driver: new StubDriver(), leaseTtlSeconds: 10, heartbeatMs: 5000, log: () => undefined }).start());
    }
    for (;;) {
      const online = (await controller.nodes(group)).filter((r) => r.online).length;
      if (online === n) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const register = performance.now() - t0;

    const cpuBeforeRollouts = etcd.usage().reduce((a, u) => a + u.cpuSeconds, 0);
    const rollouts: number[] = [];
    const validations: number[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      const t1 = performance.now();
      let validated = 0;
      const r = await controller.rollout({
        group,
        document: doc(`allow-${rep}`),
        canary: 1,
        waves: ['10%', '50%', '100%'],
        confirmWithin: 120,
        onEvent: (line) => {
          if (line.startsWith('rolling out')) validated = performance.now() - t1;
        },
      });
      if (r.state !== 'completed') throw new Error(`rollout ${r.id}: ${r.state}: ${r.reason}`);
      rollouts.push(performance.now() - t1);
      validations.push(validated);
    }

    const cpuPerRollout = (etcd.usage().reduce((a, u) => a + u.cpuSeconds, 0) - cpuBeforeRollouts) / REPS;

    // watch fan-out: every agent's client watches one key n times over (a watcher per agent), one put
    const fanKey = '/bench/fanout';
    const watchers = await Promise.all(agents.map((_, i) => clients[Math.floor(i / PER_CLIENT)]!.watch().key(fanKey).create()));
    const fanouts: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      const got: number[] = [];
      const t2 = performance.now();
      const all = new Promise<void>((resolve) => {
        for (const w of watchers)
          w.once('put', () => {
            got.push(performance.now() - t2);
            if (got.length === watchers.length) resolve();
          });
      });
      await admin.put(fanKey).value(String(rep));
      await all;
      fanouts.push(Math.max(...got));
    }
    await Promise.all(watchers.map((w) => w.cancel()));

    const crashed = await etcd.crashed();
    if (crashed.length) throw new Error(`etcd members exited during the run: ${crashed.join('\n')}`);
    const usage = etcd.usage();
    const row: Row = {
      agents: n,
      register: summarize([register]),
      rollout: summarize(rollouts),
      validate: summarize(validations),
      fanout: summarize(fanouts),
      etcdCpu: usage.reduce((a, u) => a + u.cpuSeconds, 0) - cpu0,
      etcdCpuRollout: cpuPerRollout,
      etcdRssMb: Math.max(...usage.map((u) => u.rssBytes)) / 2 ** 20,
      dbMb: (await dbSize(etcd)) / 2 ** 20,
    };
    console.error(`${n} agents: register ${register.toFixed(0)} ms, rollout median ${row.rollout.median.toFixed(0)} ms (validation ${row.validate.median.toFixed(0)} ms), fan-out ${row.fanout.median.toFixed(1)} ms, etcd CPU ${row.etcdCpu.toFixed(1)} s, RSS ${row.etcdRssMb.toFixed(0)} MiB`);
    return row;
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    for (const c of clients) c.close();
    await etcd.stop();
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const n of COUNTS) rows.push(await runCount(n));
  const md = [
    `# Fleet on etcd: ${COUNTS.join(', ')} simulated agents, 3-member etcd 3.4 on loopback`,
    '',
    `Real FleetAgent and FleetController; kernel side stubbed (apply ${APPLY_MS} ms, health instant). ${PER_CLIENT} agents per gRPC connection. Rollout: canary 1, waves 10%,50%,100%, ${REPS} repetitions (median [min-max]). Everything (etcd members, agents, controller) shares this machine's 2 cores.`,
    '',
    markdownTable(
      ['agents', 'registration (ms)', 'rollout to all (ms)', 'of which validation (ms)', 'watch fan-out, 1 put to N watchers (ms)', 'etcd CPU per rollout (s, 3 members)', 'etcd CPU, whole run (s)', 'etcd RSS max (MiB)', 'db size (MiB)'],
      rows.map((r) => [String(r.agents), fmt(r.register, 1, 0), fmt(r.rollout, 1, 0), fmt(r.validate, 1, 0), fmt(r.fanout, 1, 1), r.etcdCpuRollout.toFixed(1), r.etcdCpu.toFixed(1), r.etcdRssMb.toFixed(0), r.dbMb.toFixed(1)]),
    ),
  ].join('\n');
  console.log(md);
  const dir = join('bench', 'results', `fleet-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'fleet.md'), md);
  const series: Series[] = [
    { label: 'rollout to all', points: rows.map((r) => ({ x: r.agents, y: r.rollout })) },
    { label: 'of which validation', points: rows.map((r) => ({ x: r.agents, y: r.validate })) },
    { label: 'registration', points: rows.map((r) => ({ x: r.agents, y: r.register })) },
    { label: 'watch fan-out', points: rows.map((r) => ({ x: r.agents, y: r.fanout })) },
  ];
  writeFileSync(join(dir, 'fleet.svg'), svgPlot({ title: 'Fleet on etcd: time by number of agents', xLabel: 'agents', yLabel: 'ms', logX: true, logY: true, series }));
  console.log(`results in ${dir}/`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
