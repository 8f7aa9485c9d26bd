/**
 * Control-plane benchmark: resident memory of a running `patronus serve`
 * whose revision holds one fast-path country rule (the GeoIP database is
 * read at compile time), at start and after applies through the server.
 * Real server process in a fresh namespace pair, the real-size CC0 country
 * database from npm.
 *
 *   node dist/bench/control/serve-rss.js [--country NZ] [--applies 3] [--cli dist/src/cli/main.js] [--node-args=--max-semi-space-size=4]
 *
 * --country '' runs the same server with a prefix rule instead (no GeoIP: the baseline).
 * --applies N: N `patronus apply` of the same document through the server, a rule renamed each time
 * (so each is a new revision that recompiles the country); VmRSS right after each CLI exits and 2 s
 * later (the server gives freed C-heap pages back 1 s after an apply).
 * --cli runs another build of the CLI (e.g. a checkout of main) for a before/after comparison;
 * --node-args passes flags to the server's node (space-separated).
 * --unit-env FILE: the server runs with the Environment= settings of this systemd unit (default:
 * dist-files/patronus.service, as the init system starts it: NODE_OPTIONS, MALLOC_ARENA_MAX...;
 * the state dir stays the bench's); --unit-env '' runs it with the bench's own environment.
 * --snapshots DIR: V8 heap snapshots of the server (SIGUSR2, written to DIR) at "ready +2 s" and at the end,
 * to compare what an apply leaves behind (the snapshot itself raises the RSS: read the rows before it).
 * --smaps DIR: copies of /proc/PID/smaps at "ready +2 s" and at the end (which mappings grew).
 *
 * Prints, per moment: VmRSS, VmHWM (peak), the anonymous and file-backed parts
 * (/proc/PID/smaps_rollup) and the server's own V8 figures from its /metrics
 * (heap used/total, external); a printed table, not a timed test.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { controlLab } from '../lib/control.js';
import { markdownTable } from '../harness/report.js';
import { freePort } from '../lib/ports.js';

const { values } = parseArgs({
  options: {
    country: { type: 'string', default: 'NZ' },
    applies: { type: 'string', default: '3' },
    cli: { type: 'string', default: fileURLToPath(new URL('../../src/cli/main.js', import.meta.url)) },
    'node-args': { type: 'string', default: '' },
    snapshots: { type: 'string' },
    smaps: { type: 'string' },
    'unit-env': { type: 'string', default: fileURLToPath(new URL('../../../dist-files/patronus.service', import.meta.url)) },
  },
});
const GEO_DB = fileURLToPath(new URL('../../../node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb', import.meta.url));

const MB = 1024 * 1024;

/** VmRSS, VmHWM and the anonymous / file-backed parts of a process, MB. */
function memory(pid: number): { rss: number; hwm: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (text: string, k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) / 1024;
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return { rss: kb(status, 'VmRSS'), hwm: kb(status, 'VmHWM'), anon: kb(rollup, 'Anonymous'), file: kb(status, 'RssFile') };
}

function document(country: string, i: number): string {
  return country
    ? `interfaces:\n  - name: wan0\n    zone: wan\nfastpath:\n  interfaces: [{ name: wan0 }]\n  geoip: { database: ${GEO_DB} }\n  rules:\n    - { name: block-country${i || ''}, countries: [${country}], action: drop }\n`
    : `interfaces:\n  - name: wan0\n    zone: wan\nfastpath:\n  interfaces: [{ name: wan0 }]\n  rules:\n    - { name: block-net${i || ''}, source: 198.51.100.0/24, action: drop }\n`;
}

/** The Environment= settings of a systemd unit (PATRONUS_STATE_DIR left out: the bench has its own). */
function unitEnvironment(unit: string): Record<string, string> {
  const env: Record<string, string> = {};
  if (!unit) return env;
  for (const m of readFileSync(unit, 'utf8').matchAll(/^Environment=([A-Z_]+)=(.*)$/gm)) if (m[1] !== 'PATRONUS_STATE_DIR') env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  return env;
}

async function main(): Promise<void> {
  const cli = resolve(values.cli!);
  const applies = Number(values.applies);
  const nodeArgs = values['node-args']!.split(' ').filter(Boolean);
  if (values.snapshots) nodeArgs.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${resolve(values.snapshots)}`);
  const L = await controlLab();
  const stateDir = join(L.stateDir, 'serve');
  mkdirSync(stateDir, { mode: 0o700 });
  const config = join(L.stateDir, 'seed.yaml');
  writeFileSync(config, document(values.country!, 0));
  const base = `http://127.0.0.1:${await freePort()}`;
  const env = unitEnvironment(values['unit-env']!);
  const server = execa('node', [...nodeArgs, cli, '--netns', L.fw.name, '--state-dir', stateDir, 'serve', '--listen', base.slice('http://'.length), '--config', config], { reject: false, all: true, env });
  const rows: string[][] = [];
  try {
    const ready = await execa('node', [cli, '--server', base, 'wait-ready', '--timeout', '180'], { reject: false, timeout: 200_000 });
    if (ready.exitCode !== 0) throw new Error(`server not ready: ${ready.stderr}\n${server.exitCode === null ? 'running' : (await server).all}`);
    const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
    let entries = '?';
    const row = async (when: string) => {
      const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(60_000) })).text();
      const v = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / MB;
      entries = /^patronus_map_entries\{subsystem="fastpath",map="src_v4"\} (\d+)$/m.exec(text)?.[1] ?? entries;
      // read after the scrape: its own garbage is part of what a scraped server holds
      const m = memory(server.pid!);
      rows.push([when, m.rss.toFixed(0), m.hwm.toFixed(0), m.anon.toFixed(0), m.file.toFixed(0), v('nodejs_heap_size_used_bytes').toFixed(1), v('nodejs_heap_size_total_bytes').toFixed(1), v('nodejs_external_memory_bytes').toFixed(1)]);
      console.error(rows.at(-1)!.join('  '));
    };
    await row('ready');
    await sleep(2000); // the first drift check has run; the start-up trim is done
    await row('ready +2 s');
    const snapshot = async (name: string) => {
      if (values.smaps) writeFileSync(join(values.smaps, `smaps-${name}`), readFileSync(`/proc/${server.pid}/smaps`));
      if (!values.snapshots) return;
      server.kill('SIGUSR2');
      await sleep(10_000); // written synchronously by the server; it answers again once done
    };
    await snapshot('ready');
    const file = join(L.stateDir, 'apply.yaml');
    for (let i = 1; i <= applies; i++) {
      writeFileSync(file, document(values.country!, i));
      const r = await execa('node', [cli, '--server', base, '--token', token, 'apply', file], { reject: false, timeout: 300_000 });
      if (r.exitCode !== 0) throw new Error(`apply ${i} failed: ${r.stderr}`);
      await row(`apply ${i}`);
      await sleep(2000);
      await row(`apply ${i} +2 s`);
    }
    await snapshot('end');
    console.log(`\n# patronus serve with one country rule (${values.country || 'none: one prefix rule'}; src_v4 entries ${entries}); ${cli} ${nodeArgs.join(' ')}; environment ${JSON.stringify(env)}; ${new Date().toISOString()}\n`);
    console.log(markdownTable(['when', 'VmRSS', 'VmHWM (peak)', 'anonymous', 'file-backed', 'V8 heap used', 'V8 heap total', 'external'], rows));
    console.log('(MB; the V8 and external figures are the server\'s own nodejs_* series)');
  } finally {
    if (server.exitCode === null) server.kill('SIGTERM');
    await server.catch(() => undefined);
    await L.teardown();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
