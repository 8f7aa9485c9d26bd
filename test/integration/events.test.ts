/**
 * The firewall event log end to end: a real `patronus serve` in a test
 * namespace with the fast path on wan0, traffic from the peer namespace,
 * and the events coming out over GET /api/v1/events, the server-sent event
 * stream (?follow=1) and `patronus log -f`.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { sendUdp } from '../lib/udptraffic.js';
import { freePort } from '../../bench/lib/ports.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));


async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Ev {
  id: number;
  time: string;
  source: string;
  rule: string;
  verdict: string;
  iface: string;
  src: string;
  dst: string;
  proto: string;
  sport: number;
  dport: number;
  sampleRate: number;
}

const SEED = `interfaces:
  - name: wan0
    zone: wan
    addresses: [192.0.2.2/24]
fastpath:
  interfaces: [{ name: wan0 }]
  rules:
    - { name: drop-udp-9, protocol: udp, destinationPorts: 9, action: drop }
  log: { drops: true, rate: 100 }
firewall:
  rules:
    - { name: nft-drop-7777, direction: input, from: wan, protocol: udp, ports: [7777], action: drop, log: nftdrop }
drift:
  intervalSeconds: 3600
`;

describe('firewall event log: serve, SSE, patronus log -f', { timeout: 300_000, skip: missing('netns') }, () => {
  let L: ControlLab;
  let server: ResultPromise<{ reject: false; all: true }>;
  let base: string;
  let token: string;
  const get = async (path: string) => {
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, json: (await res.json()) as any };
  };

  before(async () => {
    L = await controlLab();
    const stateDir = join(L.stateDir, 'serve');
    mkdirSync(stateDir, { mode: 0o700 });
    const config = join(L.stateDir, 'seed.yaml');
    writeFileSync(config, SEED);
    base = `http://127.0.0.1:${await freePort()}`;
    server = execa('node', [cli, '--netns', L.fw.name, '--state-dir', stateDir, 'serve', '--listen', base.slice('http://'.length), '--config', config], { reject: false, all: true });
    const r = await execa('node', [cli, '--server', base, 'wait-ready', '--timeout', '180'], { reject: false });
    assert.equal(r.exitCode, 0, `${r.stderr}\nserver: ${server.exitCode === null ? 'running' : `exited ${server.exitCode}: ${server.all}`}`);
    token = readFileSync(join(stateDir, 'admin.token'), 'utf8').trim();
  });
  after(async () => {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    await server?.catch(() => undefined);
    await L?.teardown();
  });

  it('a packet the fast path drops is an event with its fields (GET /api/v1/events, filters)', async () => {
    const ev = await waitFor('the drop event', async () => {
      await sendUdp(L.peer, '192.0.2.2', 9, 20, 100, ['192.0.2.1']);
      return (await get('/api/v1/events?rule=drop-udp-9')).json.events[0] as Ev | undefined;
    });
    assert.deepEqual(
      { source: ev.source, rule: ev.rule, verdict: ev.verdict, iface: ev.iface, src: ev.src, dst: ev.dst, proto: ev.proto, dport: ev.dport },
      { source: 'xdp', rule: 'drop-udp-9', verdict: 'rule_drop', iface: 'wan0', src: '192.0.2.1', dst: '192.0.2.2', proto: 'udp', dport: 9 },
    );
    assert.ok(ev.sport > 0 && ev.sampleRate >= 1);
    assert.equal((await get('/api/v1/events?src=198.51.100.0/24')).json.events.length, 0, 'a source filter that does not match');
    assert.ok((await get('/api/v1/events?src=192.0.2.0/24&iface=wan0&source=xdp')).json.events.length > 0);
    const bad = await get('/api/v1/events?src=not-a-net');
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.json), /src/);
  });

  it('a packet an nftables rule with log drops is an event from NFLOG', async () => {
    const ev = await waitFor('the nft event', async () => {
      await sendUdp(L.peer, '192.0.2.2', 7777, 20, 100, ['192.0.2.1']);
      return (await get('/api/v1/events?source=nft')).json.events[0] as (Ev & { prefix?: string }) | undefined;
    });
    assert.deepEqual(
      { source: ev.source, rule: ev.rule, verdict: ev.verdict, iface: ev.iface, src: ev.src, dst: ev.dst, proto: ev.proto, dport: ev.dport, sampleRate: ev.sampleRate, prefix: ev.prefix },
      { source: 'nft', rule: 'nft-drop-7777', verdict: 'drop', iface: 'wan0', src: '192.0.2.1', dst: '192.0.2.2', proto: 'udp', dport: 7777, sampleRate: 1, prefix: 'nftdrop' },
    );
    assert.ok(Math.abs(Date.parse(ev.time) - Date.now()) < 120_000);
  });

  it('the SSE stream delivers an event', async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/api/v1/events?follow=1&rule=drop-udp-9&heartbeat=0.5`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = (res.body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    const sending = (async () => {
      for (let i = 0; i < 60 && !ac.signal.aborted; i++) await sendUdp(L.peer, '192.0.2.2', 9, 10, 200, ['192.0.2.1']);
    })();
    let text = '';
    let heartbeat = false;
    // heartbeats keep the stream busy: bound the wait for the event itself
    const deadline = Date.now() + 60_000;
    const giveUp = setTimeout(() => ac.abort(), 90_000);
    try {
      while (!/\ndata: /.test(text) || !heartbeat) {
        assert.ok(Date.now() < deadline, `no event and heartbeat on the stream within 60 s: ${text.slice(-500)}`);
        const r = await reader.next();
        assert.ok(!r.done, 'stream ended early');
        text += Buffer.from(r.value).toString();
        heartbeat ||= /: heartbeat/.test(text);
      }
    } finally {
      clearTimeout(giveUp);
      ac.abort();
      await sending;
    }
    const data = /id: (\d+)\ndata: (.*)\n/.exec(text)!;
    const ev = JSON.parse(data[2]!) as Ev;
    assert.equal(ev.id, Number(data[1]));
    assert.equal(ev.rule, 'drop-udp-9');
    assert.equal(ev.source, 'xdp');
  });

  it('`patronus log -f` prints a dropped packet', async () => {
    const log = execa('node', [cli, '--server', base, '--token', token, '--json', 'log', '-f', '--rule', 'drop-udp-9'], { reject: false, buffer: false });
    let out = '';
    log.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const line = await waitFor('a line from patronus log -f', async () => {
        await sendUdp(L.peer, '192.0.2.2', 9, 10, 200, ['192.0.2.1']);
        return out.split('\n').find((l) => l.startsWith('{'));
      });
      const ev = JSON.parse(line) as Ev;
      assert.equal(ev.rule, 'drop-udp-9');
      assert.equal(ev.src, '192.0.2.1');
    } finally {
      log.kill('SIGTERM');
      await log;
    }
    // the human form of the recent events
    const r = await execa('node', [cli, '--server', base, '--token', token, 'log', '--rule', 'drop-udp-9', '-n', '1'], { reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /xdp\s+rule_drop\s+drop-udp-9 wan0 192\.0\.2\.1:\d+ -> 192\.0\.2\.2:9 udp/);
  });

  it('metrics count emitted events per rule', async () => {
    const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    const text = await res.text();
    const emitted = /patronus_log_events_total\{subsystem="fastpath",rule="drop-udp-9"\} (\d+)/.exec(text);
    assert.ok(emitted && Number(emitted[1]) > 0, 'patronus_log_events_total for the rule');
    assert.match(text, /patronus_log_rate_events_per_second\{subsystem="fastpath",rule="drop-udp-9"\} 100/);
    assert.match(text, /patronus_events_published_total\{source="xdp"\} [1-9]/);
  });
});
