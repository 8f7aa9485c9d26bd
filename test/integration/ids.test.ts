/**
 * IDS against real pieces: the eve.json tailer on a real file fed with
 * Suricata 7 alert lines (appends, partial writes, rotation, restart), and
 * auto-block into the real fast path: an alert's source is dropped by the
 * XDP program on a veth within a second (real ICMP traffic stops), and
 * passes again once the TTL runs out, or once an operator unblocks it over
 * the REST API. Suricata itself runs only where it is installed.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { hasCommand, missing } from '../lib/skip.js';
import { eveAlert, eveFlow, eveStats } from '../lib/eve.js';
import { Host } from '../../src/system/host.js';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import type { CompileContext } from '../../src/apply/subsystem.js';
import { fastpathSubsystem, observeFastpath } from '../../src/fastpath/subsystem.js';
import { IdsEngine, idsEngine } from '../../src/services/ids/engine.js';
import { idsSubsystem } from '../../src/services/ids/subsystem.js';
import type { IdsModel } from '../../src/services/ids/suricata.js';
import { syncEngine, stopEngine } from '../../src/services/ids/engine.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { domains } from '../../src/domains.js';

function ctxOf(doc: ConfigInput): CompileContext {
  const v = validateDocument(doc, () => '');
  assert.deepEqual(v.issues.map(formatIssue), []);
  return { openings: [], config: v.validated!.config, aliases: v.validated!.aliases, readFile: () => '' };
}

const model = (over: Partial<IdsModel['autoBlock']> = {}): Pick<IdsModel, 'autoBlock' | 'recentAlerts'> => ({
  recentAlerts: 100,
  autoBlock: { enabled: false, maxSeverity: 2, signatureIds: [], excludeSignatureIds: [], ttl: 3600, exempt: ['10.0.0.0/8'], ...over },
});

describe('eve.json ingestion', { timeout: 300_000 }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-eve-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('follows appends (also split mid-line), skips non-alerts, survives rotation and a restart', async () => {
    const eve = path.join(dir, 'eve.json');
    const position = path.join(dir, 'eve.position');
    writeFileSync(eve, `${eveAlert({ src: '203.0.113.1', dst: '10.0.0.5', sid: 1, signature: 'old, before start', severity: 1 })}\n`);
    let e = new IdsEngine({ eveFile: eve, positionFile: position, model: model(), pollMs: 50 });
    e.start();
    try {
      const a = eveAlert({ src: '203.0.113.7', dst: '10.0.0.5', sid: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2 });
      appendFileSync(eve, `${eveFlow('10.0.0.5', '192.0.2.1')}\n${eveStats()}\n${a.slice(0, 40)}`);
      await e.poll();
      assert.equal(e.store.total, 0, 'nothing before start, and no half line');
      appendFileSync(eve, `${a.slice(40)}\nnot json at all\n`);
      await e.poll();
      assert.equal(e.store.total, 1);
      assert.equal(e.store.recent()[0]!.srcIp, '203.0.113.7');
      assert.equal(e.store.malformed, 1);

      // rotation: the file is renamed and a new one started
      renameSync(eve, `${eve}.1`);
      writeFileSync(eve, `${eveAlert({ src: '198.51.100.3', dst: '10.0.0.6', sid: 2010935, signature: 'ET SCAN Suspicious inbound to MSSQL port 1433', severity: 2, dport: 1433 })}\n`);
      await e.poll();
      assert.deepEqual(e.store.recent().map((x) => x.srcIp), ['198.51.100.3', '203.0.113.7']);
    } finally {
      e.stop();
    }

    // written while the control plane was down: picked up after restart, old lines not re-read
    appendFileSync(eve, `${eveAlert({ src: '192.0.2.99', dst: '10.0.0.7', sid: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2 })}\n`);
    e = new IdsEngine({ eveFile: eve, positionFile: position, model: model(), pollMs: 50 });
    e.start();
    try {
      await e.poll();
      assert.deepEqual(e.store.recent().map((x) => x.srcIp), ['192.0.2.99']);
      // truncation starts over
      writeFileSync(eve, `${eveAlert({ src: '192.0.2.100', dst: '10.0.0.7', sid: 3, signature: 'after truncate', severity: 3 })}\n`);
      await e.poll();
      assert.deepEqual(e.store.signatures().map((s) => [s.signatureId, s.count]), [[3, 1], [2001219, 1]]);
    } finally {
      e.stop();
    }
  });
});

describe('auto-block into the XDP fast path', { timeout: 300_000, skip: missing('netns', { file: '/sys/fs/bpf' }) }, () => {
  const lab = new Lab();
  let atk: Netns;
  let gw: Netns;
  let host: Host;
  let state: string;
  let bpfRoot: string;

  before(async () => {
    atk = await lab.ns('atk');
    gw = await lab.ns('gw');
    await lab.veth({ ns: atk, dev: 'x0', address: '10.88.0.1/24' }, { ns: gw, dev: 'g0', address: '10.88.0.2/24' });
    await atk.ip('addr', 'add', '10.88.0.11/24', 'dev', 'x0'); // a second, exempt source
    state = mkdtempSync(path.join(os.tmpdir(), 'pt-ids-'));
    bpfRoot = mkdtempSync('/sys/fs/bpf/pt-ids-');
    host = new Host({ netns: gw.name, stateDir: state, bpfRoot });
    const ctx = ctxOf({ interfaces: [{ name: 'g0' }], fastpath: { interfaces: [{ name: 'g0', defaultPolicy: 'pass' }], rules: [] } });
    const { desired, issues } = fastpathSubsystem.compile(ctx);
    assert.deepEqual(issues, []);
    await fastpathSubsystem.apply(desired, host);
  });
  after(async () => {
    idsEngine(host)?.stop();
    await fastpathSubsystem.teardown!(host).catch((e) => console.error(`# fastpath teardown: ${e}`));
    await lab.teardown();
    rmSync(state, { recursive: true, force: true });
    rmSync(bpfRoot, { recursive: true, force: true });
  });

  // a dropped echo waits the full timeout, so keep it short; "passes" means one of three echoes answered
  // (a single echo's 1 s can run out on a busy machine), "dropped" that one echo got no answer in 0.5 s
  const ping = async (from = '10.88.0.1', wait = '1', count = 3) => (await atk.nsenter('ping', ['-c', String(count), '-i', '0.2', '-W', wait, '-I', from, '10.88.0.2'], { reject: false })).exitCode === 0;
  const dropped = async (from: string) => !(await ping(from, '0.5', 1));

  it('an alert blocks its source within a second; the block expires after its TTL', async () => {
    const eveDir = path.join(state, 'services', 'ids', 'log');
    mkdirSync(eveDir, { recursive: true });
    const eve = path.join(eveDir, 'eve.json');
    writeFileSync(eve, '');
    // the engine as idsSubsystem.apply starts it, with the real fast-path block list
    // TTL 5 s: the checks below run while the block holds (2 s was tight for process spawns on a loaded machine)
    const TTL = 5;
    const m = { ...model({ enabled: true, ttl: TTL, exempt: ['10.88.0.11/32'] }), interfaces: ['g0'], homeNet: ['10.88.0.2/32'], customRules: [], ruleFiles: [], update: false, disabledSignatureIds: [] } as IdsModel;
    const engine = (await syncEngine(host, m, { eveFile: eve, positionFile: path.join(state, 'services', 'ids', 'eve.position') }))!;
    assert.ok(await ping(), 'traffic passes before any alert');

    const dp = observeFastpath(host);
    try {
      const dropsBefore = dp.verdictCounters().ingress.blocked.packets;
      // below the severity threshold, and from an exempt source: no block
      appendFileSync(eve, `${eveAlert({ src: '10.88.0.1', dst: '10.88.0.2', sid: 2200003, signature: 'SURICATA IPv4 truncated packet', severity: 3, proto: 'ICMP' })}\n`);
      appendFileSync(eve, `${eveAlert({ src: '10.88.0.11', dst: '10.88.0.2', sid: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2 })}\n`);
      const t0 = Date.now();
      appendFileSync(eve, `${eveAlert({ src: '10.88.0.1', dst: '10.88.0.2', sid: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2 })}\n`);
      let blockedAfter = -1;
      // waited for generously; the bound asserted below carries slack for a loaded 2-core CI machine
      while (Date.now() - t0 < 30_000) {
        if (dp.listBlocked().some((b) => b.address === '10.88.0.1')) {
          blockedAfter = Date.now() - t0;
          break;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      console.log(`# alert -> XDP block list in ${blockedAfter} ms`);
      assert.ok(blockedAfter >= 0 && blockedAfter < 1000 + 4000, `blocked after ${blockedAfter} ms`);
      assert.deepEqual(dp.listBlocked().map((b) => b.address), ['10.88.0.1'], 'only the severe alert from a non-exempt source blocked');
      assert.equal(engine.store.total, 3);

      assert.ok(await dropped('10.88.0.1'), 'the blocked source is dropped');
      assert.ok(await ping('10.88.0.11'), 'the exempt source still passes');
      assert.ok(dp.verdictCounters().ingress.blocked.packets > dropsBefore, 'XDP counted the drop as blocked');

      assert.ok(Date.now() - t0 - blockedAfter < TTL * 1000, 'the checks above ran while the block held');
      // TTL from the block: gone after it, traffic passes again
      await new Promise((r) => setTimeout(r, Math.max(0, TTL * 1000 + 100 - (Date.now() - t0 - blockedAfter))));
      assert.deepEqual(dp.listBlocked(), [], 'expired');
      assert.ok(await ping(), 'passes again after the TTL');
      const st = (await idsSubsystem.status!(host)) as { ingest: { autoBlock: { blocks: number; errors: number } } };
      assert.equal(st.ingest.autoBlock.blocks, 1);
      assert.equal(st.ingest.autoBlock.errors, 0);
    } finally {
      dp.close();
    }
  });

  it('an operator unblocks a source over the REST API and its traffic passes again', async () => {
    const eve = path.join(state, 'services', 'ids', 'log', 'eve.json');
    // the same engine (same eve.json), now with a long TTL: only the unblock lets the source through
    const m = { ...model({ enabled: true, ttl: 3600, exempt: ['10.88.0.11/32'] }), interfaces: ['g0'], homeNet: ['10.88.0.2/32'], customRules: [], ruleFiles: [], update: false, disabledSignatureIds: [] } as IdsModel;
    const ids = (await syncEngine(host, m, { eveFile: eve, positionFile: path.join(state, 'services', 'ids', 'eve.position') }))!;
    const store = Store.open(':memory:');
    const engine = new Engine({ domains, host, store, subsystems: [idsSubsystem] });
    const app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }) });
    const dp = observeFastpath(host);
    try {
      appendFileSync(eve, `${eveAlert({ src: '10.88.0.1', dst: '10.88.0.2', sid: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2 })}\n`);
      await ids.poll();
      assert.deepEqual(dp.listBlocked().map((b) => b.address), ['10.88.0.1']);
      assert.ok(await dropped('10.88.0.1'), 'the blocked source is dropped');

      const operator = store.addToken('ids-operator', 'operator');
      const del = (address: string) => app.inject({ method: 'DELETE', url: `/api/v1/ids/blocks/${encodeURIComponent(address)}`, headers: { authorization: `Bearer ${operator}` } });
      const alerts = async () => (await app.inject({ method: 'GET', url: '/api/v1/ids/alerts?limit=1', headers: { authorization: `Bearer ${operator}` } })).json();
      assert.deepEqual((await alerts()).summary.autoBlock.current.map((b: { address: string }) => b.address), ['10.88.0.1'], 'the summary lists the current block');

      const r = await del('10.88.0.1');
      assert.equal(r.statusCode, 200, r.body);
      assert.deepEqual(r.json(), { address: '10.88.0.1', removed: true });
      assert.deepEqual(dp.listBlocked(), [], 'off the XDP block list');
      assert.deepEqual((await alerts()).summary.autoBlock.current, []);
      assert.ok(await ping(), 'the unblocked source passes again');
      assert.deepEqual((await del('10.88.0.1')).json(), { address: '10.88.0.1', removed: false }, 'a second unblock finds nothing');

      const bad = await del('10.88.0.300');
      assert.equal(bad.statusCode, 400);
      assert.equal(bad.json().message, 'address: "10.88.0.300" is not an IPv4 or IPv6 address');
      const viewer = store.addToken('ids-viewer', 'viewer');
      const refused = await app.inject({ method: 'DELETE', url: '/api/v1/ids/blocks/10.88.0.1', headers: { authorization: `Bearer ${viewer}` } });
      assert.equal(refused.statusCode, 403, 'a viewer cannot unblock');
    } finally {
      dp.close();
      await app.close();
      engine.close();
      store.close();
    }
  });
});

describe('alerts over the REST API and /metrics', { timeout: 300_000, skip: missing('netns') }, () => {
  it('serves recent alerts (filtered) and counts them by signature in Prometheus', async () => {
    const lab = new Lab();
    const state = mkdtempSync(path.join(os.tmpdir(), 'pt-ids-api-'));
    const store = Store.open(':memory:');
    let host: Host | undefined;
    try {
      const ns = await lab.ns('api');
      host = new Host({ netns: ns.name, stateDir: state });
      const engine = new Engine({ domains, host, store, subsystems: [idsSubsystem] });
      const app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }) });
      const token = store.addToken('ids-test');
      const get = async (url: string) => {
        const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
        assert.equal(r.statusCode, 200, r.body);
        return r;
      };
      assert.deepEqual((await get('/api/v1/ids/alerts')).json(), { ingesting: false, alerts: [], summary: null });

      const eve = path.join(state, 'eve.json');
      writeFileSync(eve, '');
      const m = { ...model(), interfaces: ['x'], homeNet: ['10.0.0.0/8'], customRules: [], ruleFiles: [], update: false, disabledSignatureIds: [] } as IdsModel;
      const e = (await syncEngine(host, m, { eveFile: eve, positionFile: path.join(state, 'pos') }))!;
      appendFileSync(
        eve,
        [
          eveAlert({ src: '203.0.113.7', dst: '10.0.0.5', sid: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2 }),
          eveAlert({ src: '203.0.113.8', dst: '10.0.0.5', sid: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2 }),
          eveAlert({ src: '198.51.100.4', dst: '10.0.0.9', sid: 2024897, signature: 'ET USER_AGENTS Go HTTP Client User-Agent', severity: 3, dport: 80 }),
        ].join('\n') + '\n',
      );
      await e.poll();
      const all = (await get('/api/v1/ids/alerts')).json();
      assert.equal(all.ingesting, true);
      assert.deepEqual(all.alerts.map((a: { srcIp: string }) => a.srcIp), ['198.51.100.4', '203.0.113.8', '203.0.113.7']);
      assert.deepEqual(all.summary.bySeverity, { 2: 2, 3: 1 });
      const severe = (await get('/api/v1/ids/alerts?severity=2&limit=1')).json();
      assert.deepEqual(severe.alerts.map((a: { srcIp: string }) => a.srcIp), ['203.0.113.8']);
      const bad = await app.inject({ method: 'GET', url: '/api/v1/ids/alerts?severity=9', headers: { authorization: `Bearer ${token}` } });
      assert.equal(bad.statusCode, 400);

      const prom = (await get('/metrics')).body;
      assert.match(prom, /^patronus_ids_alerts_total\{subsystem="ids",signature_id="2001219",signature="ET SCAN Potential SSH Scan",severity="2"\} 2$/m);
      assert.match(prom, /^patronus_ids_alerts_total\{subsystem="ids",signature_id="2024897",signature="ET USER_AGENTS Go HTTP Client User-Agent",severity="3"\} 1$/m);
      assert.match(prom, /^patronus_service_up\{service="suricata"\} 0$/m);
      await app.close();
      engine.close();
    } finally {
      if (host) stopEngine(host);
      store.close();
      await lab.teardown();
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe('suricata daemon', { timeout: 300_000, skip: hasCommand('suricata') ? missing('netns') : 'needs suricata (not installed: this Debian mirror does not package it); its config, rules and eve ingestion are tested without it' }, () => {
  it('starts in IDS mode, alerts on a custom rule, reloads rules, stops', async () => {
    const lab = new Lab();
    const state = mkdtempSync(path.join(os.tmpdir(), 'pt-suricata-'));
    try {
      const a = await lab.ns('sa');
      const b = await lab.ns('sb');
      await lab.veth({ ns: a, dev: 's0', address: '10.89.0.1/24' }, { ns: b, dev: 's1', address: '10.89.0.2/24' });
      const host = new Host({ netns: b.name, stateDir: state });
      const ctx = ctxOf({
        interfaces: [{ name: 's1' }],
        ids: { enabled: true, interfaces: ['s1'], homeNet: ['10.89.0.2/32'], rules: { custom: ['alert icmp any any -> $HOME_NET any (msg:"PATRONUS test ping"; itype:8; sid:9000001; rev:1; classtype:misc-activity;)'] } },
      });
      const { desired, issues } = idsSubsystem.compile(ctx);
      assert.deepEqual(issues, []);
      assert.deepEqual(await idsSubsystem.validate!(desired, host), []);
      await idsSubsystem.apply(desired, host);
      for (let i = 0; i < 3; i++) await a.nsenter('ping', ['-c', '1', '-W', '1', '10.89.0.2'], { reject: false });
      const e = idsEngine(host)!;
      const t0 = Date.now();
      while (e.store.total === 0 && Date.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 200));
      assert.equal(e.store.recent()[0]?.signatureId, 9000001);
      await idsSubsystem.teardown!(host);
    } finally {
      await lab.teardown();
      rmSync(state, { recursive: true, force: true });
    }
  });
});

describe('suricata not installed', { timeout: 300_000, skip: hasCommand('suricata') ? 'suricata is installed here' : missing('netns') }, () => {
  it('validate says so, at ids.enabled, before anything changes', async () => {
    const lab = new Lab();
    const state = mkdtempSync(path.join(os.tmpdir(), 'pt-suricata-'));
    try {
      const n = await lab.ns('sn');
      await lab.veth({ ns: n, dev: 'n0' }, { ns: await lab.ns('sm'), dev: 'n1' });
      const host = new Host({ netns: n.name, stateDir: state });
      const { desired } = idsSubsystem.compile(ctxOf({ interfaces: [{ name: 'n0' }], ids: { enabled: true, interfaces: ['n0'] } }));
      const v = (await idsSubsystem.validate!(desired, host)).map(formatIssue);
      assert.deepEqual(v, ['ids.enabled: Suricata is not installed on this machine (no "suricata" in PATH): install it or set ids.enabled to false']);
      assert.deepEqual(await idsSubsystem.plan(desired, host), [
        { action: 'add', object: 'ids file suricata.yaml' },
        { action: 'add', object: 'ids file rules/patronus.rules' },
        { action: 'add', object: 'ids file classification.config' },
        { action: 'add', object: 'ids file reference.config' },
        { action: 'add', object: 'ids file threshold.config' },
        { action: 'start', object: 'ids' },
      ]);
    } finally {
      await lab.teardown();
      rmSync(state, { recursive: true, force: true });
    }
  });
});
