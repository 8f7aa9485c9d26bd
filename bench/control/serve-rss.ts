/**
 * Control-plane benchmark: resident memory of a running `patronus serve`
 * whose revision holds one fast-path country rule (the GeoIP database is
 * read at compile time). Real server process in a fresh namespace pair,
 * the real-size CC0 country database from npm.
 *
 *   node dist/bench/control/serve-rss.js [--country NZ] [--cli dist/src/cli/main.js]
 *
 * --country '' runs the same server with a prefix rule instead (no GeoIP: the baseline).
 *
 * --cli runs another build of the CLI (e.g. a checkout of main) for a
 * before/after comparison. Prints VmRSS and VmHWM (peak) of the server
 * after it is ready and after 3 scrapes; a printed table, not a timed test.
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
    cli: { type: 'string', default: fileURLToPath(new URL('../../src/cli/main.js', import.meta.url)) },
  },
});
const GEO_DB = fileURLToPath(new URL('../../../node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb', import.meta.url));


function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function main(): Promise<void> {
  const cli = resolve(values.cli!);
  const L = await controlLab();
  const stateDir = join(L.stateDir, 'serve');
  mkdirSync(stateDir, { mode: 0o700 });
  const config = join(L.stateDir, 'seed.yaml');
  writeFileSync(
    config,
    values.country
      ? `interfaces:\n  - name: wan0\n    zone: wan\nfastpath:\n  interfaces: [{ name: wan0 }]\n  geoip: { database: ${GEO_DB} }\n  rules:\n    - { name: block-country, countries: [${values.country}], action: drop }\n`
      : `interfaces:\n  - name: wan0\n    zone: wan\nfastpath:\n  interfaces: [{ name: wan0 }]\n  rules:\n    - { name: block-net, source: 198.51.100.0/24, action: drop }\n`,
  );
  const base = `http://127.0.0.1:${await freePort()}`;
  const server = execa('node', [cli, '--netns', L.fw.name, '--state-dir', stateDir, 'serve', '--listen', base.slice('http://'.length), '--config', config], { reject: false, all: true });
  const rows: string[][] = [];
  try {
    const ready = await execa('node', [cli, '--server', base, 'wait-ready', '--timeout', '180'], { reject: false });
    if (ready.exitCode !== 0) throw new Error(`server not ready: ${ready.stderr}\n${server.exitCode === null ? 'running' : (await server).all}`);
    await sleep(2000); // the first drift check compiles the revision once more
    const m0 = memory(server.pid!);
    rows.push(['ready (+2 s)', m0.rss.toFixed(0), m0.hwm.toFixed(0)]);
    const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
    let rules = '';
    for (let i = 0; i < 3; i++) {
      const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
      rules = /^patronus_map_entries\{subsystem="fastpath",map="src_v4"\} (\d+)$/m.exec(text)?.[1] ?? '?';
    }
    const m1 = memory(server.pid!);
    rows.push(['after 3 scrapes', m1.rss.toFixed(0), m1.hwm.toFixed(0)]);
    console.log(`\n# patronus serve with one country rule (${values.country}; src_v4 entries ${rules}); ${cli}; ${new Date().toISOString()}\n`);
    console.log(markdownTable(['when', 'VmRSS (MB)', 'VmHWM, peak (MB)'], rows));
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
