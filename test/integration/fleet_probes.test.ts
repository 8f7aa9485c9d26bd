/**
 * The health probes a fleet node runs before it confirms a revision
 * (health.probes: ping, TCP connect, DNS lookup), against real targets in a
 * namespace of their own: a DNS server and a TCP listener (test/lib/probe_targets.ts),
 * real ping, dig and connect, run through the node's Host in that
 * namespace. Each kind passes against what answers and fails, with a
 * sentence, against what does not; a failing check is retried `attempts`
 * times and the drift check comes first.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { firstOutput } from '../lib/children.js';
import { Host } from '../../src/system/host.js';
import { healthCheck, healthOf, runProbe } from '../../src/fleet/health.js';
import { healthSchema, type Probe } from '../../src/fleet/schema.js';

const targets = fileURLToPath(new URL('../lib/probe_targets.js', import.meta.url));
const TCP_PORT = 8443;

describe('fleet health probes: ping, TCP connect, DNS lookup inside the node namespace', { timeout: 120_000, skip: missing('netns', { cmd: 'ping' }, { cmd: 'dig' }) }, () => {
  const lab = new Lab();
  let ns: Netns;
  let host: Host;
  let stateDir: string;
  let child: ReturnType<Netns['spawn']> | undefined;

  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'pt-probes-'));
    ns = await lab.ns('probe');
    await ns.ip('address', 'add', '198.51.100.53/32', 'dev', 'lo');
    child = ns.spawn(process.execPath, [targets, '198.51.100.53', String(TCP_PORT), 'www.example.test', '203.0.113.7']);
    assert.match(await firstOutput(child, 'probe targets'), /ready/);
    host = new Host({ netns: ns.name, stateDir });
  });

  after(async () => {
    child?.kill('SIGTERM');
    await child?.catch(() => undefined);
    await lab.teardown();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const probe = (p: Record<string, unknown>) => healthSchema.parse({ probes: [p] }).probes[0] as Probe;

  it('each kind passes against what answers', async () => {
    const ping = await runProbe(host, probe({ name: 'gw', type: 'ping', target: '198.51.100.53', timeoutSeconds: 2 }));
    assert.deepEqual(ping, { name: 'gw', ok: true, detail: 'ping 198.51.100.53: answered' });
    const tcp = await runProbe(host, probe({ name: 'web', type: 'tcp', target: '198.51.100.53', port: TCP_PORT }));
    assert.deepEqual(tcp, { name: 'web', ok: true, detail: `tcp 198.51.100.53:${TCP_PORT}: connected` });
    const dns = await runProbe(host, probe({ name: 'resolver', type: 'dns', server: '198.51.100.53', query: 'www.example.test', expect: '203.0.113.7' }));
    assert.deepEqual(dns, { name: 'resolver', ok: true, detail: 'dns www.example.test @198.51.100.53: 203.0.113.7' });
    // without expect: any address will do
    assert.equal((await runProbe(host, probe({ name: 'any', type: 'dns', server: '198.51.100.53', query: 'www.example.test' }))).ok, true);
  });

  it('each kind fails with a sentence against what does not answer', async () => {
    // no route in this namespace: ping fails at once
    const ping = await runProbe(host, probe({ name: 'gw', type: 'ping', target: '192.0.2.99', timeoutSeconds: 1 }));
    assert.equal(ping.ok, false);
    assert.match(ping.detail, /^ping 192\.0\.2\.99: no answer/);
    const tcp = await runProbe(host, probe({ name: 'web', type: 'tcp', target: '198.51.100.53', port: TCP_PORT + 1, timeoutSeconds: 1 }));
    assert.equal(tcp.ok, false);
    assert.match(tcp.detail, new RegExp(`^tcp 198\\.51\\.100\\.53:${TCP_PORT + 1}: connect ECONNREFUSED`));
    const wrong = await runProbe(host, probe({ name: 'resolver', type: 'dns', server: '198.51.100.53', query: 'www.example.test', expect: '203.0.113.8' }));
    assert.deepEqual(wrong, { name: 'resolver', ok: false, detail: 'dns www.example.test @198.51.100.53: answered [203.0.113.7], expected 203.0.113.8' });
    const nx = await runProbe(host, probe({ name: 'nx', type: 'dns', server: '198.51.100.53', query: 'nothing.example.test' }));
    assert.equal(nx.ok, false);
    assert.match(nx.detail, /^dns nothing\.example\.test @198\.51\.100\.53: answered \[\], expected an address/);
    // nobody listens on 127.0.0.2:53
    const down = await runProbe(host, probe({ name: 'down', type: 'dns', server: '127.0.0.2', query: 'www.example.test', timeoutSeconds: 1 }));
    assert.equal(down.ok, false);
    assert.match(down.detail, /^dns www\.example\.test @127\.0\.0\.2: /);
  });

  it('healthCheck: drift first, then every probe; a failing one is retried `attempts` times and named', async () => {
    let driftCalls = 0;
    const sleeps: number[] = [];
    const health = healthOf({
      health: {
        settleSeconds: 0,
        attempts: 2,
        probes: [
          { name: 'gw', type: 'ping', target: '198.51.100.53' },
          { name: 'web', type: 'tcp', target: '198.51.100.53', port: TCP_PORT + 2, timeoutSeconds: 1 },
          { name: 'resolver', type: 'dns', server: '198.51.100.53', query: 'www.example.test', expect: '203.0.113.7' },
        ],
      },
    });
    const r = await healthCheck({
      host,
      health,
      drift: async () => (++driftCalls, ''),
      sleep: async (ms) => void sleeps.push(ms),
    });
    assert.equal(r.ok, false);
    assert.deepEqual(r.checks.map((c) => [c.name, c.ok]), [['drift', true], ['gw', true], ['web', false], ['resolver', true]]);
    assert.equal(driftCalls, 1);
    assert.deepEqual(sleeps, [1000], 'the failing TCP probe was tried twice, 1 s apart');
    // drift reported: the check fails with what differs
    const d = await healthCheck({ host, health: healthOf({ health: { settleSeconds: 0, attempts: 1 } }), drift: async () => 'nft table inet patronus: missing' });
    assert.deepEqual(d, { ok: false, checks: [{ name: 'drift', ok: false, detail: 'drift: nft table inet patronus: missing' }] });
  });

  it('bad input: two probes with one name, an unknown kind, a query that is no name: path-qualified issues', () => {
    const r = healthSchema.safeParse({
      probes: [
        { name: 'a', type: 'ping', target: '192.0.2.1' },
        { name: 'a', type: 'tcp', target: '192.0.2.1', port: 80 },
        { name: 'b', type: 'http', target: '192.0.2.1' },
        { name: 'c', type: 'dns', server: '192.0.2.1', query: 'bad name!' },
      ],
    });
    assert.equal(r.success, false);
    const issues = r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    assert.ok(issues.some((i) => /^probes\.2\.type: /.test(i)), issues.join('\n'));
    assert.ok(issues.some((i) => /^probes\.3\.query: must be a domain name/.test(i)), issues.join('\n'));
  });
});
