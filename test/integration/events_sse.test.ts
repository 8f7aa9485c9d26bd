/**
 * The event stream's backpressure over real HTTP: a follower that stops
 * reading loses events (counted on the server, and told with an
 * `event: dropped` message once it reads again) instead of making the
 * server queue them; a reader that keeps up loses none; filters and resume
 * by Last-Event-ID.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { EventHub, type NewEvent } from '../../src/events/hub.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { domains } from '../../src/domains.js';

const ev = (i: number, over: Partial<NewEvent> = {}): NewEvent => ({
  time: new Date().toISOString(),
  source: 'xdp',
  rule: 'flood',
  verdict: 'rule_drop',
  iface: 'wan0',
  direction: 'ingress',
  src: `10.0.${(i >> 8) & 255}.${i & 255}`,
  dst: '192.0.2.2',
  proto: 'udp',
  sport: 1000 + (i % 60000),
  dport: 9,
  sampleRate: 1,
  ...over,
});

describe('event stream backpressure (SSE)', { timeout: 300_000, skip: missing('netns') }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  let port: number;
  let token: string;
  const hub = new EventHub(1000);

  before(async () => {
    L = await controlLab();
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store });
    token = store.addToken('viewer-test', 'viewer');
    app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }), events: hub });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(async () => {
    await app?.close();
    engine?.close();
    store?.close();
    await L?.teardown();
  });

  /** A raw HTTP client whose reading we control. */
  function rawFollow(query: string, headers: Record<string, string> = {}) {
    // the server's end of this connection: what it has queued for the client is its writableLength
    let server: Socket | undefined;
    app.server.once('connection', (s: Socket) => (server = s));
    const sock = connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    let text = '';
    sock.on('data', (d) => (text += d.toString()));
    sock.write(`GET /api/v1/events?follow=1${query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
    return { sock, text: () => text, server: () => server };
  }

  async function waitFor(what: string, fn: () => boolean, ms = 30_000): Promise<void> {
    const end = Date.now() + ms;
    while (!fn()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('a client that stops reading loses events, counted, and is told how many when it reads again', async () => {
    const c = rawFollow('&rule=flood');
    try {
      await waitFor('the stream to open', () => c.text().includes('patronus events'));
      await waitFor('the follower', () => hub.followerCount === 1);
      assert.ok(c.server(), "the server's end of the connection");
      c.sock.pause(); // stop reading: the kernel buffers fill, then the server's write() says no
      const before = hub.counters.followerDropped;
      const N = 200_000;
      let queued = 0;
      for (let i = 0; i < N; i++) {
        hub.publish(ev(i, { prefix: 'x'.repeat(200) }));
        if (i % 10_000 === 0) {
          queued = Math.max(queued, c.server()!.writableLength);
          await new Promise((r) => setImmediate(r));
        }
      }
      queued = Math.max(queued, c.server()!.writableLength);
      const dropped = hub.counters.followerDropped - before;
      assert.ok(dropped > N / 2, `${dropped} of ${N} events were dropped for the paused client (the rest fit in socket buffers)`);
      // the server did not keep what it could not send (200k events of ~450 bytes would be ~90 MB):
      // what it holds for this client beyond the kernel's socket buffers stays within a write or two
      assert.ok(queued < 1 << 20, `no per-client queue: ${queued} bytes queued in the server for the paused client`);
      c.sock.resume();
      hub.publish(ev(N));
      await waitFor('the dropped notice', () => /event: dropped\ndata: \{"dropped":\d+\}/.test(c.text()));
      const told = Number(/event: dropped\ndata: \{"dropped":(\d+)\}/.exec(c.text())![1]);
      assert.ok(told > 0 && told <= dropped);
    } finally {
      c.sock.destroy();
    }
    await waitFor('the follower to go', () => hub.followerCount === 0);
    const m = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${store.addToken('m', 'metrics')}` } });
    assert.match(await m.text(), /patronus_events_dropped_total\{source="any",stage="follower"\} [1-9]/);
  });

  it('a reader that keeps up gets every event, in order, filtered; Last-Event-ID resumes', async () => {
    await waitFor('no follower left from before', () => hub.followerCount === 0);
    const c = rawFollow('&src=10.9.0.0/16');
    await waitFor('the follower', () => hub.followerCount === 1);
    const first = hub.lastId;
    for (let i = 0; i < 300; i++) {
      hub.publish(ev(i, { src: `10.9.0.${i % 250}` }));
      hub.publish(ev(i, { src: '172.16.0.1' })); // filtered out
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await waitFor('300 events', () => (c.text().match(/\ndata: /g) ?? []).length >= 300);
    const ids = [...c.text().matchAll(/id: (\d+)\ndata: (.*)\n/g)].map((m) => ({ id: Number(m[1]), e: JSON.parse(m[2]!) }));
    assert.equal(ids.length, 300);
    assert.ok(ids.every((x, i) => x.e.src.startsWith('10.9.') && (i === 0 || x.id > ids[i - 1]!.id)));
    assert.ok(!c.text().includes('event: dropped'));
    c.sock.destroy();
    // resume after the 100th: the ring still holds them
    const r = rawFollow('&src=10.9.0.0/16', { 'Last-Event-ID': String(ids[99]!.id) });
    await waitFor('the resumed backlog', () => (r.text().match(/\ndata: /g) ?? []).length >= 200);
    const resumed = [...r.text().matchAll(/id: (\d+)\n/g)].map((m) => Number(m[1]));
    assert.equal(resumed[0], ids[100]!.id);
    assert.ok(resumed.every((id) => id > first));
    r.sock.destroy();
  });
});
