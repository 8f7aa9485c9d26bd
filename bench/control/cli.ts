/**
 * Control-plane benchmark, end to end as an operator sees it: a real
 * `patronus serve` in a fresh namespace pair, and `patronus apply FILE`
 * (the CLI, over REST) timed from the command's start to its exit (the
 * revision committed). Issue 13's control-plane targets:
 *
 * - one rule changed, through the running server (wall time of the CLI
 *   process, and the server's own apply time from its report);
 * - a fast-path rule whose alias holds 100k /24s;
 * - a rule naming every country of the GeoIP database (the CC0
 *   geo-whois-asn-country database from npm, ~1M networks);
 * - the server's RSS with one country rule loaded;
 * - /healthz polled every 20 ms from another process during each apply
 *   (and during a plan of a 1M-prefix document): its slowest answer, the
 *   figure of issue 11 item 12.
 *
 * - a firewall (nftables) rule naming a 1M-prefix alias: plan, apply, plan
 *   of the unchanged document (must be empty) and apply with one prefix
 *   changed, each with /healthz as below (plan1m, fw1m).
 *
 * - /healthz during a validate (refused at the fast path's capacity, after
 *   the whole compile), a plan and three applies of a fast-path rule with 1M
 *   prefixes (initial, every prefix changed, unchanged): p50, p99 and
 *   slowest, the server's own event-loop delay over the phase (its
 *   /metrics: a late answer with a free loop was the poller's or the
 *   scheduler's), the server main thread's CPU time and run-queue wait over the
 *   phase (/proc schedstat), and the load average at the start and end of each phase.
 *
 *   node dist/bench/control/cli.js [--reps 5] [--cli dist/src/cli/main.js] [--skip one,100k,countries,country,plan1m,fw1m,apply1m] [--only ...] [--prof DIR] [--server-nice N] [--server-flags=--trace-gc] [--server-log FILE] [--server-exec 'CMD {pid}']
 *
 * --cli runs another build of the CLI and server (e.g. a checkout of main)
 * for a before/after comparison. Prints a Markdown table (median, min–max);
 * a benchmark, never a pass/fail test.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { arch, cpus, loadavg } from 'node:os';
import { execa, type ResultPromise } from 'execa';
import { controlLab } from '../lib/control.js';
import { fmt, markdownTable, summarize } from '../harness/report.js';
import { freePort } from '../lib/ports.js';

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    cli: { type: 'string', default: fileURLToPath(new URL('../../src/cli/main.js', import.meta.url)) },
    skip: { type: 'string', default: '' },
    /** run only these parts (same names as --skip) */
    only: { type: 'string' },
    country: { type: 'string', default: 'NZ' },
    /** write the server's CPU profile (node --cpu-prof) into this directory */
    prof: { type: 'string' },
    /**
     * start the server in a session of its own (as a service runs: its own
     * autogroup, not the bench's) with this autogroup nice (-20..19; root for
     * < 0): what a systemd unit's CPUWeight= gives it on a machine others load
     */
    'server-nice': { type: 'string' },
    /** extra node flags for the server, space-separated (e.g. --server-flags=--trace-gc) */
    'server-flags': { type: 'string', default: '' },
    /** run this command once the server is ready, `{pid}` replaced by its pid (space-separated argv, no shell; experiments: renice, chrt) */
    'server-exec': { type: 'string' },
    /** write the server's stdout (--trace-gc's lines among others) into this file */
    'server-log': { type: 'string' },
  },
});
const reps = Number(values.reps);
const PARTS = ['one', '100k', 'countries', 'country', 'plan1m', 'fw1m', 'apply1m'];
const only = values.only?.split(',').filter(Boolean);
const skip = new Set([...values.skip!.split(',').filter(Boolean), ...(only ? PARTS.filter((p) => !only.includes(p)) : [])]);
const GEO_DB = fileURLToPath(new URL('../../../node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb', import.meta.url));


function rssMb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

/** The server's event-loop delay since the last call (prom-client resets it at each scrape), ms. */
async function loopDelay(base: string, stateDir: string): Promise<{ max: number; p99: number }> {
  const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const read = (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)`, 'm').exec(text)?.[1] ?? NaN) * 1000;
  return { max: read('nodejs_eventloop_lag_max_seconds'), p99: read('nodejs_eventloop_lag_p99_seconds') };
}

/**
 * The server's main thread as the scheduler saw it (/proc/PID/task/PID/schedstat): ns on a CPU, ns
 * runnable but waiting for one. Its CPU time depends little on the machine's load, the wait is the load.
 */
function mainThreadSched(pid: number): { runMs: number; waitMs: number } {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { runMs: run! / 1e6, waitMs: wait! / 1e6 };
  } catch {
    return { runMs: NaN, waitMs: NaN };
  }
}

/** Polls GET /healthz every 20 ms in its own process until told to stop on stdin; max and p99 latency. */
function pollHealthz(base: string): ResultPromise<{ reject: false; stdin: 'pipe' }> {
  const script = `
    const lat = []; let stop = false;
    process.stdin.on('data', () => (stop = true));
    (async () => {
      while (!stop) {
        const t0 = performance.now();
        try { const r = await fetch(${JSON.stringify(`${base}/healthz`)}); await r.text(); } catch {}
        lat.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 20));
      }
      lat.sort((a, b) => a - b);
      process.stdout.write(JSON.stringify({ n: lat.length, max: lat[lat.length - 1] ?? 0, p99: lat[Math.floor(lat.length * 0.99)] ?? 0, p50: lat[Math.floor(lat.length * 0.5)] ?? 0 }));
      process.exit(0);
    })();`;
  return execa(process.execPath, ['-e', script], { reject: false, stdin: 'pipe' });
}

// the 1M-prefix document is ~20 MB of JSON
const iface = { interfaces: [{ name: 'wan0', zone: 'wan' }], api: { bodyLimit: 64 << 20 } };
const bigCapacity = { prefixes: 2_000_000 };

function oneRule(port: number): unknown {
  return { ...iface, fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'r1', source: '198.51.100.0/24', protocol: 'tcp', destinationPorts: port, action: 'drop' }] } };
}

function prefixes(n: number, offset = 0): string[] {
  return Array.from({ length: n }, (_, j) => {
    const i = j * 2 + offset; // every other /24: no merging
    return `${10 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}.0/24`;
  });
}

function bigAlias(n: number, offset = 0): unknown {
  return {
    ...iface,
    aliases: [{ name: 'big', type: 'network', entries: prefixes(n, offset) }],
    fastpath: { interfaces: [{ name: 'wan0' }], capacity: bigCapacity, rules: [{ name: 'drop-big', source: 'big', action: 'drop' }] },
  };
}

function countries(codes: string[]): unknown {
  return { ...iface, fastpath: { interfaces: [{ name: 'wan0' }], capacity: bigCapacity, geoip: { database: GEO_DB }, rules: [{ name: 'drop-countries', countries: codes, action: 'drop' }] } };
}

async function main(): Promise<void> {
  const cli = resolve(values.cli!);
  const L = await controlLab();
  const stateDir = join(L.stateDir, 'serve');
  mkdirSync(stateDir, { mode: 0o700 });
  const file = (name: string, doc: unknown) => {
    const p = join(L.stateDir, name);
    writeFileSync(p, JSON.stringify(doc));
    return p;
  };
  const base = `http://127.0.0.1:${await freePort()}`;
  const serverNice = values['server-nice'];
  const serverFlags = values['server-flags']!.split(' ').filter(Boolean);
  const server = execa('node', [...serverFlags, ...(values.prof ? ['--cpu-prof', '--cpu-prof-dir', resolve(values.prof)] : []), cli, '--netns', L.fw.name, '--state-dir', stateDir, 'serve', '--listen', base.slice('http://'.length), '--config', file('seed.json', oneRule(1))], { reject: false, all: true, ...(values['server-log'] ? { stdout: { file: resolve(values['server-log']) } } : {}), ...(serverNice !== undefined ? { detached: true } : {}) });
  const serverPid = server.pid!;
  // the server's own autogroup (setsid above): its weight against every other session on the machine
  if (serverNice !== undefined) writeFileSync(`/proc/${server.pid}/autogroup`, serverNice);
  const run = (...args: string[]) => execa('node', [cli, '--server', base, '--state-dir', stateDir, '--json', ...args], { reject: false });
  const rows: string[][] = [];
  const healthRows: string[][] = [];
  try {
    const ready = await execa('node', [cli, '--server', base, 'wait-ready', '--timeout', '180'], { reject: false });
    if (ready.exitCode !== 0) throw new Error(`server not ready: ${ready.stderr}\n${server.exitCode === null ? 'running' : (await server).all}`);
    if (values['server-exec']) {
      const [cmd, ...args] = values['server-exec'].split(' ').filter(Boolean).map((a) => a.replaceAll('{pid}', String(serverPid)));
      const r = await execa(cmd!, args, { reject: false, all: true, timeout: 30_000 });
      console.error(`# server-exec: exit ${r.exitCode}: ${r.all}`);
    }

    /** one timed `patronus apply`; returns CLI wall ms and the server's durationMs */
    const apply = async (path: string, what: string) => {
      const poll = pollHealthz(base);
      await new Promise((r) => setTimeout(r, 200));
      const t0 = performance.now();
      const r = await run('apply', path);
      const wall = performance.now() - t0;
      poll.stdin!.end('stop\n');
      const h = JSON.parse((await poll).stdout as string) as { n: number; max: number; p99: number };
      if (r.exitCode !== 0) throw new Error(`${what}: apply exited ${r.exitCode}: ${r.stderr || r.stdout}`.slice(0, 2000));
      const report = JSON.parse(r.stdout) as { durationMs: number; state: string; steps: { subsystem: string; ms: number }[] };
      if (report.state !== 'committed') throw new Error(`${what}: revision ${report.state}`);
      const slow = [...report.steps].sort((a, b) => b.ms - a.ms).slice(0, 4).map((s) => `${s.subsystem} ${s.ms.toFixed(0)}`).join(', ');
      return { wall, server: report.durationMs, healthMax: h.max, healthP99: h.p99, healthN: h.n, slow };
    };
    const series = async (what: string, docs: string[], n: number) => {
      const wall: number[] = [];
      const srv: number[] = [];
      const hz: number[] = [];
      for (let i = 0; i < n; i++) {
        const m = await apply(docs[i % docs.length]!, what);
        wall.push(m.wall / 1000);
        srv.push(m.server / 1000);
        hz.push(m.healthMax);
        console.error(`# ${what}: ${(m.wall / 1000).toFixed(3)} s (server ${(m.server / 1000).toFixed(3)} s: ${m.slow}), /healthz max ${m.healthMax.toFixed(0)} ms`);
      }
      rows.push([what, fmt(summarize(wall), 1, 3), fmt(summarize(srv), 1, 3)]);
      healthRows.push([`apply: ${what}`, fmt(summarize(hz), 1, 0), '']);
    };

    if (!skip.has('one')) await series('one rule changed (fast path)', [file('one-a.json', oneRule(2)), file('one-b.json', oneRule(3))], reps * 2);
    if (!skip.has('100k')) await series('100k prefixes (alias, fast path)', [file('big-a.json', bigAlias(100_000)), file('big-b.json', bigAlias(100_000, 1))], reps);
    if (!skip.has('countries')) {
      const codes = await countryCodes();
      await series(`every country (${codes.length}) of the GeoIP database`, [file('cc-all.json', countries(codes))], 1);
      await series(`every country, one rule changed`, [file('cc-all-b.json', { ...(countries(codes) as object), fastpath: { ...(countries(codes) as { fastpath: object }).fastpath, rules: [{ name: 'drop-countries', countries: codes, protocol: 'udp', action: 'drop' }] } })], 1);
    }
    if (!skip.has('country')) await series(`one country rule (${values.country})`, [file('cc-one.json', countries([values.country!]))], 1);
    await new Promise((r) => setTimeout(r, 2000));
    rows.push([skip.has('country') ? 'server RSS after the applies above (MB)' : `server RSS with the ${values.country} rule loaded (MB)`, rssMb(server.pid!).toFixed(0), '']);

    const timed = async (what: string, args: string[], expectExit = 0) => {
      const poll = pollHealthz(base);
      await new Promise((r) => setTimeout(r, 200));
      await loopDelay(base, stateDir); // resets the server's event-loop histogram
      const load0 = loadavg()[0]!;
      const sched0 = mainThreadSched(serverPid);
      const t0 = performance.now();
      const r = await run(...args);
      const wall = performance.now() - t0;
      const sched1 = mainThreadSched(serverPid);
      poll.stdin!.end('stop\n');
      const loop = await loopDelay(base, stateDir);
      const load = `${load0.toFixed(1)}–${loadavg()[0]!.toFixed(1)}`;
      const h = JSON.parse((await poll).stdout as string) as { n: number; max: number; p99: number; p50: number };
      if (r.exitCode !== expectExit) throw new Error(`${what}: exited ${r.exitCode}: ${r.stderr || r.stdout}`.slice(0, 2000));
      const server = args[0] === 'apply' ? ((JSON.parse(r.stdout) as { durationMs: number }).durationMs / 1000).toFixed(2) : '';
      if (args[0] === 'plan') console.error(`#   plan: ${r.stdout.replace(/\s+/g, ' ').slice(0, 600)}`);
      console.error(`# ${what}: ${(wall / 1000).toFixed(2)} s (server ${server || '-'} s), /healthz p50 ${h.p50.toFixed(0)} ms, p99 ${h.p99.toFixed(0)} ms, max ${h.max.toFixed(0)} ms (${h.n} answers); server event loop p99 ${loop.p99.toFixed(0)} ms, max ${loop.max.toFixed(0)} ms; server main thread on a CPU ${(sched1.runMs - sched0.runMs).toFixed(0)} ms, waiting for one ${(sched1.waitMs - sched0.waitMs).toFixed(0)} ms; load average ${load}`);
      rows.push([what, (wall / 1000).toFixed(3), server]);
      healthRows.push([`${what} (${(wall / 1000).toFixed(1)} s, load ${load})`, h.max.toFixed(0), h.p99.toFixed(0), h.p50.toFixed(0), `${loop.max.toFixed(0)} (${loop.p99.toFixed(0)})`, `${(sched1.runMs - sched0.runMs).toFixed(0)} / ${(sched1.waitMs - sched0.waitMs).toFixed(0)}`]);
    };
    // the firewall (nftables) path of issue 11 item 12: a rule naming a 1M-prefix alias
    const fwDoc = (offset: number, extra: string[] = []) => ({ ...iface, aliases: [{ name: 'big', type: 'network', entries: [...prefixes(1_000_000, offset), ...extra] }], firewall: { rules: [{ name: 'drop-big', direction: 'input', from: 'wan', source: ['big'], action: 'drop' }] } });
    if (!skip.has('plan1m')) await timed('plan of a 1M-prefix firewall alias', ['plan', file('plan-1m.json', fwDoc(0))]);
    if (!skip.has('fw1m')) {
      const a = file('fw-1m-a.json', fwDoc(0));
      // one prefix changed: the first /24 replaced by one not in the list
      const b = file('fw-1m-b.json', { ...fwDoc(0), aliases: [{ name: 'big', type: 'network', entries: [...prefixes(1_000_000).slice(1), '10.200.1.0/24'] }] });
      await timed('apply a 1M-prefix firewall alias', ['apply', a]);
      await timed('plan of the same document (unchanged)', ['plan', a]);
      await timed('apply 1M-prefix firewall alias, one prefix changed', ['apply', b]);
    }

    if (!skip.has('apply1m')) {
      // issue 11 item 12: /healthz within 100 ms while a 1M-prefix fast-path document is planned and applied
      const a = file('fp-1m-a.json', bigAlias(1_000_000));
      const b = file('fp-1m-b.json', bigAlias(1_000_000, 1));
      // 1M prefixes in a 262144-prefix fast path: refused at fastpath.capacity (exit 2) after the whole compile
      await timed('validate of a 1M-prefix fast-path alias (over capacity: refused)', ['validate', file('fp-1m-small.json', { ...(bigAlias(1_000_000) as object), fastpath: { ...(bigAlias(1_000_000) as { fastpath: object }).fastpath, capacity: { prefixes: 262_144 } } })], 2);
      await timed('plan of a 1M-prefix fast-path alias', ['plan', a]);
      await timed('apply 1M prefixes (fast path)', ['apply', a]);
      await timed('apply 1M prefixes, every prefix changed', ['apply', b]);
      await timed('apply 1M prefixes, unchanged', ['apply', b]);
    }

    console.log(`\n# patronus apply through a running server; ${cli}${serverNice !== undefined ? ` (own session, autogroup nice ${serverNice})` : ''}; ${new Date().toISOString()}; ${arch()}, ${cpus().length} cores, Node ${process.version}\n`);
    console.log(markdownTable(['operation', 'CLI apply to committed (s)', 'server apply (s)'], rows));
    console.log('\n');
    console.log(markdownTable(['during', '/healthz slowest answer (ms)', '/healthz p99 (ms)', '/healthz p50 (ms)', 'server event loop max (p99) (ms)', 'server main thread on CPU / waiting (ms)'], healthRows.map((r) => [...r, '', '', ''].slice(0, 6))));
  } finally {
    if (server.exitCode === null) server.kill('SIGTERM');
    await server.catch(() => undefined);
    await L.teardown();
  }
}

/** every country code of the database, through the public Reader (mmdb-lib). */
async function countryCodes(): Promise<string[]> {
  const { GeoIpDatabase } = await import('../../src/fastpath/geoip.js');
  return GeoIpDatabase.open(GEO_DB).countries();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
