/**
 * Drift: the kernel and the daemons pulled away from the committed revision
 * by hand, with real traffic, and /healthz telling the truth at each step.
 *
 *   peer (192.0.2.1, .11, .12) --eth0/wan0-- fw (192.0.2.2: XDP, nft, Unbound, UDP receiver)
 *
 * The revision drops UDP from .11 in the fast path and from .12 in nftables
 * and accepts the rest of the test port. Faults: the veth deleted and
 * recreated (new ifindex: XDP gone, address gone), a hand-deleted nft rule,
 * a SIGKILLed Unbound. With reconcile auto the periodic loop (stopped while
 * a fault is injected, so the 503 is observed deterministically) repairs
 * each; with reconcile report nothing is repaired and 503 persists.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { DriftMonitor, type DriftReport } from '../../src/drift/monitor.js';
import { daemonPid } from '../../src/services/common/daemon.js';
import { instancePaths } from '../../src/services/common/service.js';
import { subsystems as registry } from '../../src/domains.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { UdpReceiver, sendUdp, settle, expectAtLeast } from '../lib/udptraffic.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'nft' }, { cmd: 'unbound' }, { cmd: 'unbound-checkconf' }, { cmd: 'unshare' });
const PORT = 40999;
const SOURCES = ['192.0.2.1', '192.0.2.11', '192.0.2.12'];
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

describe('drift: detected, reported by /healthz, repaired', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  let drift: DriftMonitor;
  let app: FastifyInstance;
  let base: string;
  let token: string;
  let rx: UdpReceiver | undefined;
  const reports: DriftReport[] = [];

  const document = (reconcile: 'auto' | 'report') => ({
    interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['192.0.2.2/24'] }],
    fastpath: {
      interfaces: [{ name: 'wan0', defaultPolicy: 'pass' }],
      rules: [
        { name: 'drop-11', source: ['192.0.2.11'], protocol: 'udp', action: 'drop' },
        { name: 'limit-13', source: ['192.0.2.13'], protocol: 'udp', action: 'rate-limit', rateLimit: { packetsPerSecond: 20, packetBurst: 5 } },
      ],
    },
    firewall: {
      rules: [
        { name: 'deny-12', direction: 'input', from: 'wan', protocol: 'udp', source: ['192.0.2.12'], action: 'drop' },
        { name: 'allow-test', direction: 'input', from: 'wan', protocol: 'udp', ports: [PORT], action: 'accept' },
      ],
    },
    dns: { enabled: true, mode: 'forward', upstreams: [{ address: '192.0.2.1' }], listen: { addresses: ['127.0.0.1'] }, dnssec: { enabled: false } },
    drift: { reconcile, intervalSeconds: 1, maxBackoffSeconds: 4 },
  });

  /** /healthz reuses a check younger than 1 s: after injecting a fault, wait that out. */
  const fresh = () => new Promise((r) => setTimeout(r, 1100));
  const healthz = async () => {
    const res = await fetch(`${base}/healthz`);
    return { status: res.status, body: (await res.json()) as { status: string; drift: { subsystem: string; object: string; reason: string }[]; revision: number } };
  };
  const api = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
    return { status: res.status, json: (await res.json()) as any };
  };
  /** Polls /healthz until `pred` holds (the loop runs every second; generous for a loaded machine). */
  const until = async (what: string, pred: (h: Awaited<ReturnType<typeof healthz>>) => boolean, ms = 30_000) => {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
      last = await healthz();
      if (pred(last)) return last;
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last /healthz: ${last.status} ${JSON.stringify(last.body)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  /** Datagrams from each source that reached the receiver in fw, for 100 sent from each. */
  const traffic = async () => {
    const before = await rx!.counts();
    const sent = await sendUdp(L.peer, '192.0.2.2', PORT, 200, 500, SOURCES);
    const got = await settle(rx!, expectAtLeast(before, sent, ['192.0.2.1']));
    const out: Record<string, { sent: number; got: number }> = {};
    for (const s of SOURCES) out[s] = { sent: sent[s]!, got: (got[s] ?? 0) - (before[s] ?? 0) };
    return out;
  };
  const assertFiltered = (t: Awaited<ReturnType<typeof traffic>>, when: string) => {
    assert.ok(t['192.0.2.1']!.sent > 50, `${when}: the sender managed ${JSON.stringify(t)}`);
    assert.equal(t['192.0.2.1']!.got, t['192.0.2.1']!.sent, `${when}: allowed traffic lost: ${JSON.stringify(t)}`);
    assert.equal(t['192.0.2.11']!.got, 0, `${when}: fast-path-denied traffic passed: ${JSON.stringify(t)}`);
    assert.equal(t['192.0.2.12']!.got, 0, `${when}: nft-denied traffic passed: ${JSON.stringify(t)}`);
  };
  const unboundPid = () => daemonPid(instancePaths(L.stateDir, 'unbound').pidFile, 'unbound');
  const recreateVeth = async () => {
    await L.fw.ip('link', 'del', 'wan0');
    await L.lab.veth({ ns: L.fw, dev: 'wan0' }, { ns: L.peer, dev: 'eth0', address: '192.0.2.1/24' });
    for (const a of ['192.0.2.11/24', '192.0.2.12/24', '192.0.2.13/24']) await L.peer.ip('addr', 'add', a, 'dev', 'eth0');
  };

  before(async () => {
    L = await controlLab();
    for (const a of ['192.0.2.11/24', '192.0.2.12/24', '192.0.2.13/24']) await L.peer.ip('addr', 'add', a, 'dev', 'eth0');
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store });
    token = store.addToken('tester');
    drift = new DriftMonitor(engine);
    drift.on('report', (r) => reports.push(r));
    app = await buildServer({ engine, store, drift, metrics: createMetrics(engine, { processMetrics: false, drift }) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    rx = await UdpReceiver.start(L.fw, '0.0.0.0', PORT);
  });
  after(async () => {
    drift?.stop();
    rx?.stop();
    try {
      for (const s of [...registry].reverse()) await s.teardown?.(L.host).catch((e: Error) => console.error(`# teardown ${s.name}: ${e.message}`));
    } finally {
      await app?.close();
      engine?.close();
      store?.close();
      await L?.teardown();
    }
  });

  it('applies the revision: /healthz 200, traffic filtered, /api/v1/services 200 with the fast path on', async () => {
    const r = await api('/api/v1/config/apply', { method: 'POST', body: JSON.stringify({ config: document('auto'), message: 'drift baseline' }) });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const h = await healthz();
    assert.equal(h.status, 200, JSON.stringify(h.body));
    assert.deepEqual(h.body.drift, []);
    // what a check costs here (interfaces, routes, sysctls, fast path, nft, multi-WAN, QoS, every daemon)
    const costs: number[] = [];
    for (let i = 0; i < 5; i++) costs.push((await drift.check({ maxAgeMs: 0 })).ms);
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) await healthz();
    console.log(`# drift check: ${costs.join(', ')} ms; /healthz ${((performance.now() - t0) / 50).toFixed(1)} ms per request (reused result)`);
    assertFiltered(await traffic(), 'after apply');

    const services = await api('/api/v1/services');
    assert.equal(services.status, 200, JSON.stringify(services.json));
    const fp = services.json.find((x: { subsystem: string }) => x.subsystem === 'fastpath').status;
    assert.equal(fp.running, true);
    assert.equal(fp.interfaces[0].name, 'wan0');
    assert.equal(fp.interfaces[0].ingress.attached, true);
    assert.equal(typeof fp.rules[0].packets, 'number');
    const ub = services.json.find((x: { subsystem: string }) => x.subsystem === 'unbound').status;
    assert.equal(ub.pid, unboundPid());
    assert.ok(ub.uptimeSeconds >= 0, JSON.stringify(ub));
    // every subsystem's own status is plain JSON (no bigint, Map, Buffer): what the route serialises as is
    for (const s of registry.filter((x) => x.status)) {
      const raw = await s.status!(L.host);
      assert.doesNotThrow(() => JSON.stringify(raw), `${s.name}.status() is not JSON-serialisable`);
      assert.deepEqual(JSON.parse(JSON.stringify(raw)), raw, `${s.name}.status() loses values in JSON (Map, Set, Buffer, undefined in arrays...)`);
    }
    // the rate-limited count per rule: REST, /metrics, CLI
    await sendUdp(L.peer, '192.0.2.2', PORT, 200, 500, ['192.0.2.13']);
    const rules = (await api('/api/v1/rules')).json.rules as { rule: string; packets: number; rateLimited?: number }[];
    const limit = rules.find((x) => x.rule === 'limit-13')!;
    assert.ok(limit.rateLimited! >= 50 && limit.rateLimited! < limit.packets, JSON.stringify(limit));
    assert.equal(rules.find((x) => x.rule === 'drop-11')!.rateLimited, undefined);
    const scrape = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } }).then((x) => x.text());
    const series = Number(/^patronus_rule_rate_limited_packets_total\{subsystem="fastpath",rule="limit-13"\} (\d+)$/m.exec(scrape)?.[1]);
    assert.ok(series >= limit.rateLimited!, scrape.split('\n').filter((l) => l.includes('rate_limited')).join('\n'));
    const cli = (...args: string[]) => execa('node', [CLI, '--server', base, '--token', token, ...args], { reject: false });
    const cliRules = await cli('rules');
    assert.match(cliRules.stdout, /limit-13\s+rate-limit\s+\d+\s+\S+( \S+)?\s+\d+/, cliRules.stdout);
    // patronus status: fast-path interfaces with program ids and modes, map fill, nft table, daemons with pids
    const st = await cli('status');
    assert.equal(st.exitCode, 0, st.stderr);
    assert.match(st.stdout, new RegExp(`wan0\\s+\\d+\\s+id ${fp.xdpProgramId}\\s+native`), st.stdout);
    assert.match(st.stdout, /src_v4\s+[\d,]+\s+[\d,]+\s+[\d.]+ %/, st.stdout);
    assert.match(st.stdout, /nftables\s+table inet patronus: \d+ rule/, st.stdout);
    assert.match(st.stdout, new RegExp(`unbound\\s+running, pid ${unboundPid()}, up \\d+ s`), st.stdout);
    assert.match(st.stdout, /drift\s+none: the system runs revision 1/, st.stdout);

    // only configured services have patronus_service_up
    const m = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } }).then((x) => x.text());
    assert.deepEqual(m.match(/^patronus_service_up\{.*$/gm), ['patronus_service_up{service="unbound"} 1']);
    assert.match(m, /^patronus_drift\{subsystem="fastpath"\} 0$/m);
  });

  it('interface deleted and recreated: 503 naming it, then repaired by the loop; denied traffic dropped again', async () => {
    await recreateVeth();
    await fresh();
    const h = await healthz();
    assert.equal(h.status, 503, JSON.stringify(h.body));
    const objects = h.body.drift.map((i) => `${i.subsystem} ${i.object}`);
    assert.ok(objects.includes('fastpath xdp wan0'), objects.join(', '));
    assert.ok(objects.includes('interfaces address 192.0.2.2/24 on wan0'), objects.join(', '));
    // the truth it tells: on the new interface nothing filters (and the address is gone)
    const metrics = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } }).then((x) => x.text());
    assert.match(metrics, /^patronus_drift\{subsystem="fastpath"\} [1-9]/m);

    const repairsBefore = reports.flatMap((r) => r.repairs).length;
    drift.start();
    const ok = await until('the loop to repair the recreated interface', (x) => x.status === 200);
    drift.stop();
    assert.deepEqual(ok.body.drift, []);
    const repaired = reports.flatMap((r) => r.repairs).slice(repairsBefore);
    assert.ok(repaired.some((x) => x.subsystem === 'fastpath' && x.ok), JSON.stringify(repaired));
    assert.ok(repaired.some((x) => x.subsystem === 'interfaces' && x.ok), JSON.stringify(repaired));
    await L.peer.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', '192.0.2.2'], { reject: false }); // ARP resolved before the counted traffic
    assertFiltered(await traffic(), 'after the repair');
    // and an apply after a recreation works (the old ifindex is followed, not queried: no ENODEV)
    await recreateVeth();
    const again = await api('/api/v1/config/apply', { method: 'POST', body: JSON.stringify({ config: document('auto'), message: 'apply over a recreated interface' }) });
    assert.equal(again.status, 200, JSON.stringify(again.json));
    assert.equal((await healthz()).status, 200);
    await L.peer.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', '192.0.2.2'], { reject: false }); // ARP resolved before the counted traffic
    assertFiltered(await traffic(), 'after an apply over a recreated interface');
  });

  it('hand-deleted nft rule: 503 naming the chain and rule, then the committed table is restored', async () => {
    const rule = await nftRule(L, 'deny-12');
    await L.fw.exec('nft', ['delete', 'rule', 'inet', 'patronus', rule.chain, 'handle', String(rule.handle)]);
    await fresh();
    const h = await healthz();
    assert.equal(h.status, 503);
    // exactly the one rule, named
    const items = h.body.drift.filter((i) => i.subsystem === 'nftables');
    assert.equal(items.length, 1, JSON.stringify(h.body.drift));
    assert.ok(items[0]!.object === `table inet patronus chain ${rule.chain}` && /^missing: .*"patronus:rule:deny-12(#v4)?"$/.test(items[0]!.reason), JSON.stringify(items));
    const leaked = await traffic();
    assert.ok(leaked['192.0.2.12']!.got > 0, `with the rule gone .12 passes (what 503 reports): ${JSON.stringify(leaked)}`);

    drift.start();
    await until('the nft table to be restored', (x) => x.status === 200);
    drift.stop();
    await nftRule(L, 'deny-12');
    assertFiltered(await traffic(), 'after the table was restored');
  });

  it('killed Unbound: 503 naming it, then restarted by the loop', async () => {
    const pid = unboundPid();
    assert.ok(pid);
    process.kill(pid, 'SIGKILL');
    await waitGone(pid);
    await fresh();
    const h = await healthz();
    assert.equal(h.status, 503);
    assert.ok(h.body.drift.some((i) => i.subsystem === 'unbound' && i.object === 'unbound' && /not running/.test(i.reason)), JSON.stringify(h.body.drift));
    const m = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } }).then((x) => x.text());
    assert.match(m, /^patronus_service_up\{service="unbound"\} 0$/m);

    drift.start();
    await until('unbound to be restarted', (x) => x.status === 200);
    drift.stop();
    const restarted = unboundPid();
    assert.ok(restarted && restarted !== pid, `unbound runs again under a new pid (was ${pid}, now ${restarted})`);
    const dig = await L.fw.exec('unbound-control', ['-c', join(instancePaths(L.stateDir, 'unbound').dir, 'unbound.conf'), 'status'], { reject: false });
    assert.equal(dig.exitCode, 0, dig.stderr || dig.stdout);
  });

  it('a daemon that keeps dying is restarted with backoff', async () => {
    drift.start();
    const kills: number[] = [];
    const t0 = Date.now();
    // kill it each time it comes back, 3 times: the waits between repairs must grow (1 s, 2 s, 4 s cap)
    for (let i = 0; i < 3; i++) {
      const pid = await waitFor(() => unboundPid(), 30_000, 'unbound to be restarted');
      kills.push(Date.now() - t0);
      process.kill(pid, 'SIGKILL');
      await waitGone(pid);
    }
    await until('unbound to be restarted after the last kill', (x) => x.status === 200);
    drift.stop();
    const attempts = reports.flatMap((r) => r.repairs).filter((x) => x.subsystem === 'unbound').map((x) => x.attempt);
    assert.ok(Math.max(...attempts) >= 3, `repairs counted in a row: ${attempts.join(',')}`);
    const waits = kills.slice(1).map((t, i) => t - kills[i]!);
    assert.ok(waits[1]! >= 1500, `the second wait (${waits[1]} ms) follows a 2 s backoff; waits ${waits.join(', ')}`);
  });

  it('reconcile: report: nothing is repaired and 503 persists', async () => {
    const r = await api('/api/v1/config/apply', { method: 'POST', body: JSON.stringify({ config: document('report'), message: 'report only' }) });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal((await healthz()).status, 200);
    const rule = await nftRule(L, 'deny-12');
    await L.fw.exec('nft', ['delete', 'rule', 'inet', 'patronus', rule.chain, 'handle', String(rule.handle)]);
    const pid = unboundPid()!;
    process.kill(pid, 'SIGKILL');
    await waitGone(pid);
    const reportsBefore = reports.length;
    drift.start();
    // at least four loop periods (1 s each) that saw the drift: counted, not slept (a loaded machine stretches them)
    await waitFor(() => (reports.slice(reportsBefore).filter((r) => r.mode === 'report').length >= 4 ? true : undefined), 60_000, 'four report-mode drift checks');
    const h = await healthz();
    drift.stop();
    assert.equal(h.status, 503);
    const subs = new Set(h.body.drift.map((i) => i.subsystem));
    assert.ok(subs.has('nftables') && subs.has('unbound'), JSON.stringify(h.body.drift));
    assert.equal(unboundPid(), undefined, 'unbound was not restarted');
    await assert.rejects(nftRule(L, 'deny-12'), /no rule/);
    assert.equal(reports.at(-1)!.repairs.length, 0);
    assert.equal(reports.at(-1)!.mode, 'report');
  });
});

async function nftRule(L: ControlLab, name: string): Promise<{ chain: string; handle: number }> {
  const r = await L.fw.exec('nft', ['-j', '-a', 'list', 'table', 'inet', 'patronus']);
  for (const item of (JSON.parse(r.stdout) as { nftables: { rule?: { chain: string; handle: number; comment?: string } }[] }).nftables) {
    if (item.rule?.comment?.includes(name)) return { chain: item.rule.chain, handle: item.rule.handle };
  }
  throw new Error(`no rule with comment ${name}`);
}

async function waitGone(pid: number): Promise<void> {
  await waitFor(() => (alive(pid) ? undefined : true), 30_000, `pid ${pid} to exit`);
}

/** A live, non-zombie process (a SIGKILLed daemon's zombie lingers until its parent reaps it). */
function alive(pid: number): boolean {
  try {
    return !/^ [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^\d+ \(.*\)/, ''));
  } catch {
    return false;
  }
}

async function waitFor<T>(fn: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
