/**
 * Issue 13's control-plane targets, every one in one run against one real
 * `patronus serve` (started with the systemd unit's environment, as the
 * init system starts it: MALLOC_ARENA_MAX=2...), in fresh namespaces:
 *
 * - server RSS with a country rule loaded (NZ, the CC0 geo-whois-asn-country
 *   database from npm): VmRSS 2 s after ready, and 2 s and 35 s after one
 *   apply of it (the idle spare workers are stopped after 30 s);
 * - one-rule apply through the running server: the REST call alone (POST
 *   /config/apply from this process, to the committed report), the server's
 *   own apply time, and `patronus apply FILE` as a process;
 * - 100k prefixes (an alias in a fast-path rule) from `patronus apply` to
 *   committed (the first large document of the server included);
 * - every country of the GeoIP database (~1M networks) through `patronus apply`
 *   (countries: in one rule; countries-each: a rule per country, so nothing
 *   is merged across countries),
 *   --reps times, each after two one-rule revisions (so neither generation
 *   holds a country: every repetition writes them all);
 * - swap of a 10k-prefix set (A → B, disjoint) under traffic: a live-frames
 *   generator (bench/trafficgen) sends 64-byte UDP from 4096 sources into the
 *   fast path's interface from 1.2 s before the swap until 1 s after it
 *   committed: half from sources in neither set (port 9, always
 *   allowed), a quarter from A (port 10: dropped, passes after the swap), a
 *   quarter from B (port 11: passes, dropped after). The receiver counts each
 *   port in an nft prerouting chain of its own table (after XDP): allowed
 *   packets lost = half of what the receiving veth took minus what reached
 *   port 9's counter (the generator walks its frame table in order, so the
 *   share is exact to ±2 frames). The swap's time: the REST apply to
 *   committed, and the server's own apply time;
 * - /metrics p50 of 20 scrapes (GET /metrics over HTTP, --gap ms apart, so
 *   some scrapes run a fresh drift check) at 1k and 10k nftables rules.
 *
 * Every fast-path document has the same capacity (2M prefixes, enough for
 * every country), so no timed apply reloads the data plane for a capacity
 * change. The swap runs before the 100k and country documents: the shadow
 * generation still holds the revision before the last one, so the first
 * apply after a 1M-prefix revision deletes those entries (seconds), whatever
 * its own size. Before each timed apply the bench waits for /healthz (the drift
 * check of the running revision, as the drift loop has run between an
 * operator's applies).
 *
 *   node dist/bench/control/targets.js [--reps 3] [--gap 1100] [--only rss,one,swap,100k,countries,countries-each,metrics] [--cli dist/src/cli/main.js] [--prof DIR]
 *
 * Prints one Markdown table (target, limit, measured median (min–max),
 * met or not) with the load average before and after each part; a
 * benchmark, never a pass/fail test.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, loadavg, arch, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { Topology, RX_DEV, DST4 } from '../harness/topology.js';
import { TrafficGen } from '../harness/trafficgen.js';
import { prefixAt } from '../harness/workload.js';
import { frame } from '../lib/packets.js';
import { fmt, markdownTable, summarize, type Summary } from '../harness/report.js';
import { freePort } from '../lib/ports.js';

const PARTS = ['rss', 'one', 'swap', '100k', 'countries', 'countries-each', 'metrics'];
const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    gap: { type: 'string', default: '1100' },
    scrapes: { type: 'string', default: '20' },
    only: { type: 'string' },
    cli: { type: 'string', default: fileURLToPath(new URL('../../src/cli/main.js', import.meta.url)) },
    'unit-env': { type: 'string', default: fileURLToPath(new URL('../../../dist-files/patronus.service', import.meta.url)) },
    /** write the server's CPU profiles (node --cpu-prof: the main thread and each worker) into this directory */
    prof: { type: 'string' },
  },
});
const reps = Number(values.reps);
const only = new Set(values.only ? values.only.split(',').filter(Boolean) : PARTS);
const GEO_DB = fileURLToPath(new URL('../../../node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb', import.meta.url));
const load = () => loadavg()[0]!.toFixed(1);
const log = (s: string) => console.error(`# ${new Date().toISOString().slice(11, 19)} load ${load()}: ${s}`);

const iface = { interfaces: [{ name: RX_DEV, zone: 'wan' }], api: { bodyLimit: 64 << 20 } };
const bigCapacity = { prefixes: 2_000_000 };
const fp = (rest: Record<string, unknown>) => ({ interfaces: [{ name: RX_DEV }], capacity: bigCapacity, ...rest });

function oneRule(port: number): unknown {
  return { ...iface, fastpath: fp({ rules: [{ name: 'r1', source: '198.51.100.0/24', protocol: 'tcp', destinationPorts: port, action: 'drop' }] }) };
}
function prefixes(n: number, offset = 0): string[] {
  return Array.from({ length: n }, (_, j) => {
    const i = j * 2 + offset; // every other /24: no merging
    return `${10 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}.0/24`;
  });
}
function bigAlias(n: number, offset = 0): unknown {
  return { ...iface, aliases: [{ name: 'big', type: 'network', entries: prefixes(n, offset) }], fastpath: fp({ rules: [{ name: 'drop-big', source: 'big', action: 'drop' }] }) };
}
function countries(codes: string[], name = 'drop-countries'): unknown {
  return { ...iface, fastpath: fp({ geoip: { database: GEO_DB }, rules: [{ name, countries: codes, action: 'drop' }] }) };
}
/** every country in a rule of its own (a counter per country): no merging across countries */
function countriesEach(codes: string[]): unknown {
  return { ...iface, fastpath: fp({ geoip: { database: GEO_DB }, rules: codes.map((cc) => ({ name: `drop-${cc}`, countries: [cc], action: 'drop' })) }) };
}
/** 10k /24s from 16.0.0.0, even slots; set 1 is the next 10k (disjoint); odd slots are in neither */
const SWAP_N = 10_000;
function swapSet(which: 0 | 1): string[] {
  return Array.from({ length: SWAP_N }, (_, i) => prefixAt(4, 2 * (i + which * SWAP_N)));
}
function swapDoc(which: 0 | 1): unknown {
  return { ...iface, aliases: [{ name: 'swap', type: 'network', entries: swapSet(which) }], fastpath: fp({ rules: [{ name: 'drop-set', source: 'swap', action: 'drop' }] }) };
}
function nftRules(n: number): unknown {
  const addr = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return { ...iface, firewall: { rules: Array.from({ length: n }, (_, i) => ({ name: `nft${i}`, direction: 'input', from: 'wan', protocol: 'tcp', source: [addr(i + 1)], ports: [1000 + (i % 60000)], action: 'accept' })) } };
}

function rssMb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}
/** The Environment= settings of the systemd unit (its state dir left out: the bench has its own). */
function unitEnvironment(unit: string): Record<string, string> {
  const env: Record<string, string> = {};
  if (!unit) return env;
  for (const m of readFileSync(unit, 'utf8').matchAll(/^Environment=([A-Z_]+)=(.*)$/gm)) if (m[1] !== 'PATRONUS_STATE_DIR') env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  return env;
}

interface Row {
  target: string;
  limit: string;
  measured: string;
  met: string;
  load: string;
}

async function main(): Promise<void> {
  const cli = resolve(values.cli!);
  const env = unitEnvironment(values['unit-env']!);
  const dir = mkdtempSync(join(tmpdir(), 'pt-targets-'));
  const stateDir = join(dir, 'serve');
  mkdirSync(stateDir, { mode: 0o700 });
  const file = (name: string, doc: unknown) => {
    const p = join(dir, name);
    writeFileSync(p, JSON.stringify(doc));
    return p;
  };
  const rows: Row[] = [];
  const started = new Date();
  const loadStart = loadavg().map((x) => x.toFixed(1)).join(' ');
  const topo = await Topology.create();
  const gen = await TrafficGen.create(topo.sender, 'gen0');
  const base = `http://127.0.0.1:${await freePort()}`;
  const seed = only.has('rss') ? countries(['NZ'], 'block-country') : oneRule(1);
  const prof = values.prof ? ['--cpu-prof', '--cpu-prof-dir', resolve(values.prof)] : [];
  const server = execa('node', [...prof, cli, '--netns', topo.receiver.name, '--state-dir', stateDir, 'serve', '--listen', base.slice('http://'.length), '--config', file('seed.json', seed)], { reject: false, all: true, env });
  try {
    const ready = await execa('node', [cli, '--server', base, 'wait-ready', '--timeout', '180'], { reject: false, timeout: 200_000 });
    if (ready.exitCode !== 0) throw new Error(`server not ready: ${ready.stderr}\n${server.exitCode === null ? 'running' : (await server).all}`);
    const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
    const cliApply = async (path: string) => {
      const t0 = performance.now();
      const r = await execa('node', [cli, '--server', base, '--state-dir', stateDir, '--json', 'apply', path], { reject: false, timeout: 600_000 });
      const wall = performance.now() - t0;
      if (r.exitCode !== 0) throw new Error(`patronus apply ${path} exited ${r.exitCode}: ${r.stderr || r.stdout}`.slice(0, 2000));
      const report = JSON.parse(r.stdout) as { durationMs: number; state: string };
      if (report.state !== 'committed') throw new Error(`patronus apply ${path}: revision ${report.state}`);
      return { wall, server: report.durationMs };
    };
    /** POST /config/apply from this process (no CLI process), to the committed report */
    const restApply = async (doc: unknown) => {
      const body = JSON.stringify({ config: doc, message: 'bench' });
      const t0 = performance.now();
      const res = await fetch(`${base}/api/v1/config/apply`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(600_000) });
      const text = await res.text();
      const wall = performance.now() - t0;
      if (!res.ok) throw new Error(`POST /config/apply: HTTP ${res.status}: ${text.slice(0, 2000)}`);
      const report = JSON.parse(text) as { durationMs: number; state: string; steps?: { subsystem: string; ms: number }[] };
      if (report.state !== 'committed') throw new Error(`POST /config/apply: revision ${report.state}`);
      const slow = [...(report.steps ?? [])].sort((x, y) => y.ms - x.ms).slice(0, 4).map((x) => `${x.subsystem} ${x.ms.toFixed(0)}`).join(', ');
      if (process.env.PT_TARGETS_VERBOSE) log(`REST apply ${wall.toFixed(0)} ms, server ${report.durationMs.toFixed(0)} ms: ${slow}`);
      return { wall, server: report.durationMs };
    };
    /**
     * Before each timed apply: GET /healthz, which waits for the drift check of the running revision
     * (as the drift loop, every 5 s, has run between an operator's applies): an apply leaves alone the
     * unchanged subsystems a check vouched for, and converges the others again.
     */
    const settle = async () => {
      await (await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(120_000) })).text();
      await sleep(300);
    };
    const s = (xs: number[]) => summarize(xs);
    const met = (x: Summary, limit: number) => (x.median <= limit ? 'met' : 'not met');
    const row = (target: string, limit: string, measured: string, ok: string, l0: string) => {
      rows.push({ target, limit, measured, met: ok, load: `${l0} → ${load()}` });
      log(`${target}: ${measured} (${ok})`);
    };

    if (only.has('rss')) {
      const l0 = load();
      await sleep(2000);
      const atReady = rssMb(server.pid!);
      await cliApply(file('rss-nz.json', countries(['NZ'], 'block-country-2')));
      await sleep(2000);
      const afterApply = rssMb(server.pid!);
      // the spare compile and parse workers started a second after the apply are stopped after 30 s idle
      await sleep(33_000);
      const settled = rssMb(server.pid!);
      const steady = Math.max(atReady, settled);
      row(`server RSS with a country rule (NZ), unit environment ${JSON.stringify(env)}`, '≤ 150 MB', `${atReady.toFixed(0)} MB at ready +2 s; after an apply of it: ${afterApply.toFixed(0)} MB at +2 s (an idle spare compile worker), ${settled.toFixed(0)} MB at +35 s`, steady <= 150 ? 'met' : 'not met', l0);
    }

    if (only.has('one')) {
      const l0 = load();
      const rest: number[] = [];
      const srv: number[] = [];
      const proc: number[] = [];
      await restApply(oneRule(2)); // the revision this series changes
      for (let i = 0; i < reps * 2; i++) {
        await settle();
        const m = await restApply(oneRule(3 + (i % 2)));
        rest.push(m.wall);
        srv.push(m.server);
      }
      for (let i = 0; i < reps * 2; i++) {
        await settle();
        const m = await cliApply(file(`one-${i % 2}.json`, oneRule(5 + (i % 2))));
        proc.push(m.wall);
      }
      row('one-rule apply through the running server: REST call to committed', '≤ 150 ms', `${fmt(s(rest), 1, 0)} ms (server's apply ${fmt(s(srv), 1, 0)} ms)`, met(s(rest), 150), l0);
      row('one-rule apply: `patronus apply` as a process (node start included)', '(≤ 150 ms)', `${fmt(s(proc), 1, 0)} ms`, met(s(proc), 150), l0);
    }

    if (only.has('swap')) {
      const l0 = load();
      // the receiver's own books: one named counter per destination port, before Patronus' tables (priority -500)
      const nft = (script: string) => topo.receiver.exec('nft', ['-f', '-'], { input: script });
      await nft('table ip pt_targets {\n counter p9 { }\n counter p10 { }\n counter p11 { }\n chain pre {\n  type filter hook prerouting priority -500; policy accept;\n  udp dport 9 counter name p9\n  udp dport 10 counter name p10\n  udp dport 11 counter name p11\n }\n}\n');
      const counters = async () => {
        const { stdout } = await topo.receiver.exec('nft', ['-j', 'list', 'counters', 'table', 'ip', 'pt_targets']);
        const c = new Map<string, number>();
        for (const x of (JSON.parse(stdout) as { nftables: { counter?: { name: string; packets: number } }[] }).nftables) if (x.counter) c.set(x.counter.name, x.counter.packets);
        const { stdout: eth } = await topo.receiver.exec('ethtool', ['-S', RX_DEV]);
        const rx = Number(/rx_queue_0_xdp_packets:\s+(\d+)/.exec(eth)?.[1] ?? NaN);
        return { p9: c.get('p9') ?? NaN, p10: c.get('p10') ?? NaN, p11: c.get('p11') ?? NaN, rx };
      };
      // 4096 frames, in order: two allowed (port 9, sources in the gaps), one from A (port 10), one from B (port 11)
      const a = swapSet(0);
      const b = swapSet(1);
      const host = (p: string, k: number) => p.replace(/\.0\/24$/, `.${1 + (k % 254)}`);
      const frames: Buffer[] = [];
      for (let i = 0; i < 4096; i++) {
        const k = i >> 2;
        const kind = i % 4;
        const src = kind < 2 ? host(prefixAt(4, 2 * ((k * 7 + kind) % (2 * SWAP_N)) + 1), k) : host((kind === 2 ? a : b)[(k * 13) % SWAP_N]!, k);
        frames.push(frame({ src, dst: DST4, proto: 'udp', sport: 1024 + i, dport: kind < 2 ? 9 : kind === 2 ? 10 : 11, srcMac: topo.txMac, dstMac: topo.rxMac, payload: 22 }));
      }
      const table = { family: 4 as const, data: Buffer.concat(frames), len: 64, count: frames.length, matching: 2048, sampleMiss: frames[0]! };
      const swapRest: number[] = [];
      const swapSrv: number[] = [];
      const losses: number[] = [];
      const notes: string[] = [];
      for (let r = 0; r < reps; r++) {
        await restApply(swapDoc(0));
        await settle();
        const c0 = await counters();
        // traffic from 1.2 s before the swap until 1 s after it committed, however long it takes
        const run = gen.start(table, { duration: 600, cpus: [0] });
        let m: { wall: number; server: number };
        try {
          await sleep(1200);
          m = await restApply(swapDoc(1));
          await sleep(1000);
        } finally {
          run.stop();
        }
        const g = await run.done;
        await sleep(200);
        const c1 = await counters();
        const d = { p9: c1.p9 - c0.p9, p10: c1.p10 - c0.p10, p11: c1.p11 - c0.p11, rx: c1.rx - c0.rx };
        const lost = Math.max(0, Math.round(d.rx / 2) - d.p9);
        swapRest.push(m.wall);
        swapSrv.push(m.server);
        losses.push(lost);
        const n = `sent ${g.sent}, received ${d.rx} (${(d.rx / g.seconds / 1e6).toFixed(2)} Mpps), allowed ${d.p9} of ${Math.round(d.rx / 2)}, A passed ${d.p10} of ${Math.round(d.rx / 4)}, B passed ${d.p11} of ${Math.round(d.rx / 4)}`;
        notes.push(n);
        log(`swap #${r + 1}: ${m.wall.toFixed(0)} ms (server ${m.server.toFixed(0)} ms), allowed lost ${lost}; ${n}`);
        if (d.rx !== g.sent) log(`swap #${r + 1}: the receiving veth took ${d.rx} of ${g.sent} frames sent (ring full?)`);
      }
      await nft('delete table ip pt_targets\n');
      const maxLost = Math.max(...losses);
      row('swap of a 10k-prefix set under traffic (REST apply to committed; allowed packets lost, receiver-counted ±2)', '≤ 100 ms, 0 lost', `${fmt(s(swapRest), 1, 0)} ms (server's apply ${fmt(s(swapSrv), 1, 0)} ms); lost ${losses.join(', ')}; last run: ${notes.at(-1)}`, s(swapRest).median <= 100 && maxLost <= 2 ? 'met' : 'not met', l0);
    }

    if (only.has('100k')) {
      const l0 = load();
      const wall: number[] = [];
      const srv: number[] = [];
      const docs = [file('big-a.json', bigAlias(100_000)), file('big-b.json', bigAlias(100_000, 1))];
      for (let i = 0; i < reps; i++) {
        await settle();
        const m = await cliApply(docs[i % 2]!);
        wall.push(m.wall / 1000);
        srv.push(m.server / 1000);
        log(`100k #${i + 1}: ${(m.wall / 1000).toFixed(3)} s (server ${(m.server / 1000).toFixed(3)} s)`);
      }
      row('100k prefixes, `patronus apply` to committed (first: the server\'s first large document)', '≤ 1 s', `${fmt(s(wall), 1, 3)} s [${wall.map((x) => x.toFixed(2)).join(', ')}] (server's apply ${fmt(s(srv), 1, 3)} s)`, met(s(wall), 1), l0);
    }

    for (const part of ['countries', 'countries-each'] as const) {
      if (!only.has(part)) continue;
      const l0 = load();
      const { GeoIpDatabase } = await import('../../src/fastpath/geoip.js');
      const codes = GeoIpDatabase.open(GEO_DB).countries();
      const wall: number[] = [];
      const srv: number[] = [];
      const all = file(`${part}.json`, part === 'countries' ? countries(codes) : countriesEach(codes));
      for (let i = 0; i < reps; i++) {
        if (i > 0) {
          // two small revisions: neither generation holds a country any more, so each repetition writes all of them
          await restApply(oneRule(7));
          await restApply(oneRule(8));
        }
        await settle();
        const m = await cliApply(all);
        wall.push(m.wall / 1000);
        srv.push(m.server / 1000);
        log(`${part} #${i + 1}: ${(m.wall / 1000).toFixed(3)} s (server ${(m.server / 1000).toFixed(3)} s)`);
      }
      row(`full country database (${codes.length} countries${part === 'countries' ? ' in one rule' : ', a rule each'}), \`patronus apply\` to committed (both generations without countries before each)`, '≤ 5 s', `${fmt(s(wall), 1, 2)} s [${wall.map((x) => x.toFixed(2)).join(', ')}] (server's apply ${fmt(s(srv), 1, 2)} s)`, met(s(wall), 5), l0);
    }

    if (only.has('metrics')) {
      for (const [n, limit] of [[1000, 50], [10_000, 200]] as const) {
        const l0 = load();
        await restApply(nftRules(n));
        const scrape = async () => {
          const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(60_000) });
          const text = await res.text();
          if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`);
          return text;
        };
        await scrape();
        const samples = (await scrape()).split('\n').filter((l) => l.startsWith('patronus_rule_packets_total{subsystem="nftables"')).length;
        const t: number[] = [];
        for (let i = 0; i < Number(values.scrapes); i++) {
          await sleep(Number(values.gap));
          const t0 = performance.now();
          await scrape();
          t.push(performance.now() - t0);
        }
        row(`/metrics at ${n} nftables rules (${samples} rule series), p50 of ${t.length} scrapes ${values.gap} ms apart`, `≤ ${limit} ms`, `${fmt(s(t), 1, 1)} ms`, met(s(t), limit), l0);
      }
    }
  } finally {
    if (server.exitCode === null) server.kill('SIGTERM');
    await Promise.race([server.catch(() => undefined), sleep(30_000)]);
    if (server.exitCode === null) server.kill('SIGKILL');
    await gen.close();
    await topo.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    `\n# issue 13 control-plane targets; ${cli}; ${started.toISOString()}; ${arch()}, ${cpus().length} cores, Node ${process.version}; load average at start ${loadStart}, at end ${loadavg().map((x) => x.toFixed(1)).join(' ')}\n`,
  );
  console.log(markdownTable(['target', 'limit', 'measured: median (min–max)', '', 'load (1 min) before → after'], rows.map((r) => [r.target, r.limit, r.measured, r.met, r.load])));
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
