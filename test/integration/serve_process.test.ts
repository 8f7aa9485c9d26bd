/**
 * `patronus serve` as the init system runs it (dist-files/patronus.service,
 * patronus.openrc): a real child process on a test namespace.
 *   - readiness: `patronus wait-ready` (ExecStartPost / start_post) returns
 *     only once the server answers, and by then the rule set is in place;
 *   - /metrics of the real server passes `promtool check metrics` (and the
 *     same naming rules checked here), with the standard process_* metrics and
 *     patronus_build_info;
 *   - reload (SIGHUP, ExecReload) repairs drift now and keeps serving;
 *   - SIGTERM stops it cleanly (exit 0).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { missing, hasCommand } from '../lib/skip.js';
import { controlLab, addresses, type ControlLab } from '../lib/control.js';
import { freePort } from '../../bench/lib/ports.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string };

/** Problems with metric names and types by the rules promtool applies (the ones that can be checked from the text). */
function lintExposition(text: string): string[] {
  const problems: string[] = [];
  const help = new Set<string>();
  for (const line of text.split('\n')) {
    const h = /^# HELP (\S+) /.exec(line);
    if (h) help.add(h[1]!);
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (!t) continue;
    const [, name, type] = t as unknown as [string, string, string];
    if (!/^[a-z_:][a-z0-9_:]*$/.test(name)) problems.push(`${name}: not snake_case`);
    if (type === 'counter' && !name.endsWith('_total')) problems.push(`${name}: counter without _total`);
    if (type !== 'counter' && name.endsWith('_total')) problems.push(`${name}: ${type} named _total (only counters end in _total)`);
    if (type !== 'gauge' && name.endsWith('_info')) problems.push(`${name}: ${type} named _info (info metrics are gauges)`);
    if (/_(milliseconds|millis|ms|microseconds|kilobytes|megabytes)(_|$)/.test(name)) problems.push(`${name}: not in base units (seconds, bytes)`);
    if (!help.has(name)) problems.push(`${name}: no HELP`);
  }
  return problems;
}


describe('patronus serve under an init system', { timeout: 300_000, skip: missing('netns') }, () => {
  let L: ControlLab;
  let server: ResultPromise<{ reject: false; all: true }>;
  let base: string;
  let stateDir: string;
  /** the server's output so far (stdout and stderr) */
  let output = '';
  const get = async (path: string) => {
    const token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, text: await res.text() };
  };

  before(async () => {
    L = await controlLab();
    stateDir = join(L.stateDir, 'serve');
    mkdirSync(stateDir, { mode: 0o700 });
    const config = join(L.stateDir, 'seed.yaml');
    // a long drift interval: after the first check only a reload (SIGHUP) repairs within the test
    writeFileSync(config, 'interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [10.80.0.1/24]\nfirewall:\n  rules:\n    - { name: allow-ping, direction: input, from: wan, protocol: icmp, action: accept }\ndrift:\n  intervalSeconds: 3600\n');
    base = `http://127.0.0.1:${await freePort()}`;
    server = execa('node', [cli, '--netns', L.fw.name, '--state-dir', stateDir, 'serve', '--listen', base.slice('http://'.length), '--config', config], { reject: false, all: true });
    server.all?.on('data', (d: Buffer) => (output += d.toString()));
  });
  after(async () => {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    await server?.catch(() => undefined);
    await L?.teardown();
  });

  it('wait-ready returns once the server answers, and the rule set is in place by then', async () => {
    const r = await execa('node', [cli, '--server', base, 'wait-ready', '--timeout', '120'], { reject: false });
    assert.equal(r.exitCode, 0, `${r.stderr}\nserver: ${server.exitCode === null ? 'running' : `exited ${server.exitCode}`}`);
    assert.match(r.stdout, /: ready \(HTTP 200\)$/);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.80.0.1/24', '192.0.2.2/24']);
    assert.match((await L.fw.exec('nft', ['list', 'ruleset'])).stdout, /allow-ping/);
  });

  it('/metrics: promtool check metrics is clean; process_* unprefixed; patronus_build_info', async () => {
    await L.peer.exec('ping', ['-c', '3', '-i', '0.2', '-W', '1', '192.0.2.2']);
    const m = await get('/metrics');
    assert.equal(m.status, 200, m.text);
    assert.deepEqual(lintExposition(m.text), []);
    assert.match(m.text, /^# TYPE process_cpu_seconds_total counter$/m);
    assert.match(m.text, /^process_resident_memory_bytes \d+/m);
    assert.match(m.text, /^process_start_time_seconds \d+/m);
    assert.doesNotMatch(m.text, /^patronus_process_/m);
    assert.match(m.text, new RegExp(`^patronus_build_info\\{version="${pkg.version.replace(/\./g, '\\.')}",revision="[^"]*"\\} 1$`, 'm'));
    assert.match(m.text, /^patronus_rule_packets_total\{subsystem="nftables",rule="rule:allow-ping",action="accept"\} [1-9]/m);
    if (!hasCommand('promtool')) {
      // CI installs it (scripts/setup.sh: prometheus); elsewhere the checks above stand in
      assert.ok(process.env.CI !== 'true', 'promtool missing under CI (Debian package prometheus)');
      return;
    }
    const p = await execa('promtool', ['check', 'metrics'], { input: m.text, reject: false });
    assert.equal(p.exitCode, 0, `${p.stdout}${p.stderr}`);
    assert.equal(`${p.stdout}${p.stderr}`.trim(), '');
  });

  it('the Grafana dashboard: every query exists, every patronus_* family has a panel, all scoped by $instance', async () => {
    const text = (await get('/metrics')).text;
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const dashboard = JSON.parse(readFileSync(fileURLToPath(new URL('../../../docs/grafana-dashboard.json', import.meta.url)), 'utf8')) as {
      templating: { list: { name: string; query?: unknown }[] };
      panels: { title: string; targets: { expr: string }[] }[];
    };
    assert.ok(dashboard.templating.list.some((v) => v.name === 'instance'), 'an instance variable');
    const used = new Set<string>();
    for (const p of dashboard.panels) {
      for (const t of p.targets) {
        for (const m of t.expr.matchAll(/\b((?:patronus|process|nodejs)_[a-z_]+)(\{[^}]*\})?/g)) {
          const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
          used.add(family);
          assert.ok(families.has(family), `${p.title}: ${m[1]} is not exported`);
          assert.match(m[2] ?? '', /instance=~"\$instance"/, `${p.title}: ${m[1]} scoped by $instance`);
        }
      }
    }
    const unused = [...families].filter((f) => f.startsWith('patronus_') && !used.has(f));
    assert.deepEqual(unused, [], 'every patronus_* family has a panel');
  });

  it('SIGHUP (ExecReload) repairs drift now and keeps serving', async () => {
    // the first periodic check must be over (it starts 1 s after the server, and takes seconds on a loaded
    // machine: a fixed 2.5 s wait let it repair the deletion below); the next one is an hour away
    for (const end = Date.now() + 60_000; !/patronus: drift loop: first check ok .*next in 3600 s/.test(output); await new Promise((r) => setTimeout(r, 100))) {
      assert.ok(Date.now() < end && server.exitCode === null, `the drift loop's first check did not end within 60 s:\n${output}`);
    }
    await L.fw.ip('addr', 'del', '10.80.0.1/24', 'dev', 'wan0');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['192.0.2.2/24'], 'nothing repairs without the reload');
    server.kill('SIGHUP');
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !(await addresses(L.fw, 'wan0')).includes('10.80.0.1/24')) await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.80.0.1/24', '192.0.2.2/24']);
    assert.equal(server.exitCode, null, 'still running after SIGHUP');
    assert.equal((await get('/api/v1/status')).status, 200);
  });

  it('SIGTERM: closes and exits 0, the rule set stays', async () => {
    server.kill('SIGTERM');
    const r = await server;
    assert.equal(r.exitCode, 0, r.all);
    assert.match(r.all ?? '', /drift loop: first check ok \(revision \d+, reconcile auto\), next in 3600 s/);
    assert.match(r.all ?? '', /SIGHUP: checking drift now/);
    assert.match(r.all ?? '', /SIGTERM: closing/);
    assert.match((await L.fw.exec('nft', ['list', 'ruleset'])).stdout, /allow-ping/);
  });
});
