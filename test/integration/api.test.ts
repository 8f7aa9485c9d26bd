/**
 * End to end over real HTTP: the server runs in-process on 127.0.0.1:0 with
 * the real subsystem registry, managing a test namespace. Configs go in over
 * REST; the kernel state in the namespace and the counters on /metrics come
 * out. Then the bad-input table: every case gets a clear 4xx and changes
 * neither the kernel nor the store.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { missing } from '../lib/skip.js';
import { controlLab, addresses, type ControlLab } from '../lib/control.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'ping' });
const BODY_LIMIT = 64 * 1024;

describe('REST API end to end', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  let base: string;
  let token: string;

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined && typeof body !== 'string' ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: res.status, json, text, headers: res.headers };
  };

  // the ruleset without counter values (traffic may move them)
  const nftRuleset = async () => (await L.fw.exec('nft', ['list', 'ruleset'])).stdout.replace(/packets \d+ bytes \d+/g, '');

  before(async () => {
    L = await controlLab();
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store });
    const r = await engine.reconcile({ text: 'interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [10.10.0.1/24]\n' });
    assert.equal(r.error, undefined);
    token = store.addToken('tester');
    app = await buildServer({ engine, store, metrics: createMetrics(engine), bodyLimit: BODY_LIMIT });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address() as { port: number };
    base = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => {
    await app?.close();
    engine?.close();
    store?.close();
    await L?.teardown();
  });

  it('serves /healthz without a token and the OpenAPI document with one', async () => {
    const h = await fetch(`${base}/healthz`);
    assert.equal(h.status, 200);
    assert.equal(((await h.json()) as { status: string }).status, 'ok');
    const o = await call('GET', '/openapi.json');
    assert.equal(o.status, 200);
    assert.equal(o.json.openapi.startsWith('3.'), true);
    assert.ok(o.json.paths['/api/v1/config/apply'].post.requestBody, 'apply has a documented body');
  });

  it('applies a YAML config over HTTP and the kernel in the namespace follows', async () => {
    const yaml = [
      'interfaces:',
      '  - name: wan0',
      '    zone: wan',
      '    addresses: [10.10.0.1/24, 10.20.0.1/24, "2001:db8:20::1/64"]',
      'firewall:',
      '  rules:',
      '    - { name: allow-ping, direction: input, from: wan, protocol: icmp, action: accept }',
      'fastpath:',
      '  interfaces: [{ name: wan0 }]',
      '  rules:',
      '    - { name: count-icmp, protocol: icmp, action: count }',
      '    - { name: drop-discard, protocol: udp, destinationPorts: 9, action: drop }',
      '',
    ].join('\n');
    const plan = await call('POST', '/api/v1/config/plan', { config: yaml });
    assert.equal(plan.status, 200, plan.text);
    assert.match(plan.json.text, /\+ address 10\.20\.0\.1\/24 on wan0/);
    const r = await call('POST', '/api/v1/config/apply?message=add%20second%20net', yaml, { 'content-type': 'application/yaml' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.state, 'committed');
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.10.0.1/24', '10.20.0.1/24', '192.0.2.2/24', '2001:db8:20::1/64']);
    const link = JSON.parse((await L.fw.ip('-j', 'link', 'show', 'dev', 'wan0')).stdout)[0];
    assert.ok(link.xdp, 'an XDP program is attached to wan0');
    assert.match((await L.fw.exec('nft', ['list', 'table', 'inet', 'patronus'])).stdout, /patronus:rule:allow-ping/);
    const rev = await call('GET', `/api/v1/revisions/${r.json.revision}`);
    assert.equal(rev.json.author, 'tester');
    assert.equal(rev.json.message, 'add second net');
    const cfg = await call('GET', '/api/v1/config');
    assert.equal(cfg.json.revision, r.json.revision);
  });

  it('counts real traffic on /metrics', async () => {
    const first = (await call('GET', '/metrics')).text;
    const before = metricValue(first, 'patronus_interface_receive_packets_total', { interface: 'wan0' });
    const rule = (text: string, name: string) => metricValue(text, 'patronus_rule_packets_total', { subsystem: 'nftables', rule: name });
    const [pingBefore, estBefore] = [rule(first, 'rule:allow-ping'), rule(first, 'builtin:input-established')];
    // the firewall (real nftables in the namespace) drops input from wan except what allow-ping accepts
    await L.peer.exec('ping', ['-c', '5', '-i', '0.05', '-W', '1', '192.0.2.2']);
    const text = (await call('GET', '/metrics')).text;
    const after = metricValue(text, 'patronus_interface_receive_packets_total', { interface: 'wan0' });
    assert.ok(after - before >= 5, `received packets went ${before} -> ${after}`);
    // stateful: the first echo request opens the connection through allow-ping, the other four are established
    const [pingAfter, estAfter] = [rule(text, 'rule:allow-ping'), rule(text, 'builtin:input-established')];
    assert.equal(pingAfter - pingBefore, 1, `allow-ping counted ${pingBefore} -> ${pingAfter}`);
    assert.equal(estAfter - estBefore, 4, `established counted ${estBefore} -> ${estAfter}`);
    assert.ok(metricValue(text, 'patronus_rule_bytes_total', { subsystem: 'nftables', rule: 'rule:allow-ping' }) >= 84);
    // the fast path sees every packet (stateless): count-icmp counted all five requests
    const fp = (name: string, t: string) => metricValue(t, 'patronus_rule_packets_total', { subsystem: 'fastpath', rule: name });
    assert.equal(fp('count-icmp', text) - fp('count-icmp', first), 5);
    assert.ok(metricValue(text, 'patronus_map_capacity_entries', { subsystem: 'fastpath', map: 'actions' }) > 0);
    const rules = await call('GET', '/api/v1/rules');
    assert.equal(rules.json.rules.find((r: { rule: string }) => r.rule === 'rule:allow-ping').packets, pingAfter);
    assert.match(text, /^# TYPE patronus_apply_duration_seconds histogram$/m);
    assert.match(text, /^patronus_applies_total\{result="committed"\} \d+$/m);
    assert.match(text, /^process_cpu_seconds_total /m);
    assert.equal(metricValue(text, 'patronus_revision_committed', {}), store.current()!.id);
    // that every metric the Grafana dashboard queries exists is checked against a full `patronus serve`
    // (HA sync and drift metrics included) in serve_process.test.ts
    const ifs = await call('GET', '/api/v1/interfaces');
    const wan = ifs.json.find((i: { interface: string }) => i.interface === 'wan0');
    assert.equal(wan.zone, 'wan');
    assert.ok(wan.rxPackets >= 5);
  });

  it('rolls back over HTTP', async () => {
    const r = await call('POST', '/api/v1/config/rollback', {});
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.state, 'committed');
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.10.0.1/24', '192.0.2.2/24']);
    const list = await call('GET', '/api/v1/revisions?limit=1');
    assert.match(list.json[0].message, /^rollback to revision \d+$/);
  });

  it('rolls back by itself when an apply is not confirmed in time', async () => {
    const committed = store.current()!.id;
    // 5 s: the checks below (addresses, the 409) must run before the deadline; with 1 s a loaded machine could
    // pass it first, and the 'busy' apply of an empty document would then have gone through
    const r = await call('POST', '/api/v1/config/apply', { config: { interfaces: [{ name: 'wan0', addresses: ['10.30.0.1/24'] }] }, confirmWithin: 5 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.state, 'confirming');
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.30.0.1/24', '192.0.2.2/24']);
    const busy = await call('POST', '/api/v1/config/apply', { config: {}, allowEmpty: true });
    assert.equal(busy.status, 409);
    assert.match(busy.json.message, /awaits confirmation/);
    assert.ok(Date.now() < Date.parse(r.json.confirmDeadline), 'the checks above ran before the deadline');
    // waited for generously (a loaded machine): what is asserted is that it happens, not how fast
    const end = Date.parse(r.json.confirmDeadline) + 30_000;
    while (store.get(r.json.revision)!.state === 'confirming' || !(store.get(r.json.revision)!.result as { rollback?: unknown }).rollback) {
      assert.ok(Date.now() < end, 'no rollback within 30 s of the deadline');
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(store.get(r.json.revision)!.state, 'rolled_back');
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.10.0.1/24', '192.0.2.2/24']);
    assert.equal(store.current()!.id, committed);
    // and one confirmed in time stays
    const ok = await call('POST', '/api/v1/config/apply', { config: { interfaces: [{ name: 'wan0', addresses: ['10.10.0.1/24', '10.40.0.1/24'] }] }, confirmWithin: 30 });
    const c = await call('POST', '/api/v1/config/confirm');
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.id, ok.json.revision);
    assert.equal(store.current()!.id, ok.json.revision);
  });

  describe('bad input: clear 4xx, nothing changes', () => {
    const wan = (extra: string) => `interfaces:\n  - name: wan0\n${extra}`;
    const cases: { name: string; method?: string; path?: string; body?: unknown; headers?: Record<string, string>; status: number; expect: RegExp; issue?: RegExp }[] = [
      { name: 'malformed YAML', body: 'interfaces:\n  - name: wan0\n    addresses: [10.0.0.1/24\n', headers: { 'content-type': 'application/yaml' }, status: 400, expect: /invalid YAML/, issue: /^line \d+, column \d+$/ },
      { name: 'malformed YAML inside JSON', body: { config: 'interfaces: [\n' }, status: 400, expect: /invalid YAML/ },
      { name: 'malformed JSON document text', body: { config: '{"interfaces": [,]}' }, status: 400, expect: /invalid JSON/ },
      { name: 'malformed JSON request body', body: '{"config": {', headers: { 'content-type': 'application/json' }, status: 400, expect: /JSON/ },
      { name: 'wrong type in the document', body: { config: { interfaces: 'wan0' } }, status: 400, expect: /interfaces: /, issue: /^interfaces$/ },
      { name: 'wrong type in the request', body: { config: {}, confirmWithin: 'soon' }, status: 400, expect: /confirmWithin/ },
      { name: 'unknown field', body: { config: { interfacez: [] } }, status: 400, expect: /interfacez/ },
      { name: 'invalid prefix in an alias', body: { config: { aliases: [{ name: 'bad', type: 'network', entries: ['10.0.0.300/24'] }] } }, status: 400, expect: /"10\.0\.0\.300\/24" is not a valid IPv4 or IPv6 prefix/, issue: /^aliases\[0\]\.entries\[0\]$/ },
      { name: 'invalid interface address', body: { config: wan('    addresses: ["10.0.0.1/40"]\n') }, status: 400, expect: /prefix length must be 0-32/, issue: /^interfaces\[0\]\.addresses\[0\]$/ },
      { name: 'invalid port', body: { config: { aliases: [{ name: 'p', type: 'port', entries: ['70000'] }] } }, status: 400, expect: /ports are 0-65535/, issue: /^aliases\[0\]\.entries\[0\]$/ },
      { name: 'unknown alias', body: { config: { aliases: [{ name: 'a', type: 'network', entries: ['nope'] }] } }, status: 400, expect: /unknown alias "nope"/ },
      { name: 'alias cycle', body: { config: { aliases: [{ name: 'a', type: 'network', entries: ['b'] }, { name: 'b', type: 'network', entries: ['a'] }] } }, status: 400, expect: /alias cycle: a -> b -> a|alias cycle: b -> a -> b/ },
      { name: 'rule capacity exceeded', body: { config: { fastpath: { capacity: { rules: 1 }, rules: [{ name: 'a', action: 'drop' }, { name: 'b', action: 'drop' }] } } }, status: 400, expect: /2 rules exceed the capacity of 1/, issue: /^fastpath\.rules$/ },
      { name: 'fast-path rule with an invalid port', body: { config: { fastpath: { rules: [{ name: 'a', protocol: 'tcp', destinationPorts: 65536, action: 'drop' }] } } }, status: 400, expect: /fastpath\.rules\[0\]\.destinationPorts/ },
      { name: 'fast-path rule with an unknown alias', body: { config: { fastpath: { rules: [{ name: 'a', source: 'nosuch', action: 'drop' }] } } }, status: 400, expect: /unknown alias "nosuch"/, issue: /^fastpath\.rules\[0\]\.source/ },
      { name: 'interface that does not exist', body: { config: { interfaces: [{ name: 'nosuch0', addresses: ['10.1.1.1/24'] }] } }, status: 400, expect: /interface "nosuch0" does not exist/, issue: /^interfaces\[0\]\.name$/ },
      { name: 'oversized body', body: { config: { interfaces: [{ name: 'wan0', description: 'x'.repeat(BODY_LIMIT) }] } }, status: 413, expect: /too large/i },
      { name: 'missing token', headers: { authorization: '' }, body: { config: {} }, status: 401, expect: /missing bearer token/ },
      { name: 'invalid token', headers: { authorization: 'Bearer pat_nottherightone' }, body: { config: {} }, status: 401, expect: /invalid token/ },
      { name: 'wrong auth scheme', headers: { authorization: 'Basic dXNlcjpwYXNz' }, body: { config: {} }, status: 401, expect: /Bearer/ },
      { name: 'token on /metrics too', method: 'GET', path: '/metrics', headers: { authorization: '' }, status: 401, expect: /missing bearer token/ },
      { name: 'rollback to a revision that does not exist', path: '/api/v1/config/rollback', body: { to: 99999 }, status: 409, expect: /revision 99999 does not exist/ },
      { name: 'confirm with nothing pending', path: '/api/v1/config/confirm', body: {}, status: 409, expect: /no revision awaits confirmation/ },
      { name: 'unknown route', method: 'GET', path: '/api/v1/nope', status: 404, expect: /no route GET \/api\/v1\/nope/ },
    ];

    for (const c of cases) {
      it(c.name, async () => {
        const revisions = store.count();
        const committed = store.current()!.id;
        const kernel = await addresses(L.fw, 'wan0');
        const ruleset = await nftRuleset();
        const r = await call(c.method ?? 'POST', c.path ?? '/api/v1/config/apply', c.body, c.headers);
        assert.equal(r.status, c.status, r.text);
        assert.equal(typeof r.json, 'object', `JSON error body: ${r.text}`);
        assert.equal(r.json.statusCode, c.status);
        assert.match(r.json.message, c.expect);
        if (c.issue) assert.ok(r.json.issues.some((i: { path: string }) => c.issue!.test(i.path)), JSON.stringify(r.json.issues));
        assert.equal(store.count(), revisions, 'no revision recorded');
        assert.equal(store.current()!.id, committed);
        assert.deepEqual(await addresses(L.fw, 'wan0'), kernel, 'addresses unchanged');
        assert.equal(await nftRuleset(), ruleset, 'nftables unchanged');
      });
    }

    it('validate reports every issue of a document at once', async () => {
      const r = await call('POST', '/api/v1/config/validate', {
        config: { interfaces: [{ name: 'wan0', addresses: ['300.1.1.1/24'], mtu: 5 }], aliases: [{ name: 'a', type: 'port', entries: ['99999'] }] },
      });
      assert.equal(r.status, 400);
      assert.deepEqual(r.json.issues.map((i: { path: string }) => i.path).sort(), ['aliases[0].entries[0]', 'interfaces[0].addresses[0]', 'interfaces[0].mtu']);
    });
  });
});

/** The value of one sample in a Prometheus text exposition (0 when absent). */
function metricValue(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(',').filter(Boolean);
    if (want.every((w) => have.includes(w))) return Number(m[3]);
  }
  return 0;
}
