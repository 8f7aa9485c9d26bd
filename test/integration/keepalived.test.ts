/**
 * keepalived under Patronus: two routers and a client on one bridged
 * segment, each in its own namespace. The virtual address answers on the
 * primary; the primary's link going down moves it to the secondary within
 * the VRRP master-down interval (measured and printed); the primary takes
 * it back when it returns (preemption). Then configuration sync: two real
 * Patronus REST servers (engine + store), the primary pushes an applied
 * change to the secondary, which applies and confirms it; drift introduced
 * on the secondary is reported and healed.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { execa } from 'execa';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Lab, type Netns } from '../lib/netns.js';
import { hasCommand, missing } from '../lib/skip.js';
import { applyDocument } from '../lib/subsystem.js';
import { Host } from '../../src/system/host.js';
import { keepalivedSubsystem } from '../../src/services/keepalived/subsystem.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { watchHaEvents, type HaEvent, type HaStatus } from '../../src/services/keepalived/module.js';
import { instancePaths } from '../../src/services/common/service.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { HaSync, registerHaSyncMetrics, type SyncReport } from '../../src/ha/sync.js';
import { ConfigError } from '../../src/config/issues.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns', { cmd: 'keepalived' }, { cmd: 'ping' });
const ADVERT = 0.1;
const VIP = '10.20.0.254';

function ha(role: 'primary' | 'secondary', extra: Record<string, unknown> = {}) {
  return {
    interfaces: [{ name: 'eth0', zone: 'lan' }],
    firewall: {},
    ha: {
      role,
      nodeName: role === 'primary' ? 'fw-a' : 'fw-b',
      instances: [{ name: 'LAN', interface: 'eth0', virtualRouterId: 51, priority: 150, backupPriority: 100, advertInterval: ADVERT, virtualAddresses: [`${VIP}/24`] }],
      ...extra,
    },
  };
}

async function hasAddress(ns: Netns, addr: string): Promise<boolean> {
  const { stdout } = await ns.ip('-j', 'addr', 'show', 'dev', 'eth0');
  return (JSON.parse(stdout) as { addr_info: { local: string }[] }[])[0]!.addr_info.some((a) => a.local === addr);
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000, everyMs = 20): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The MAC the client resolved `ip` to (after a ping). */
async function neighborMac(ns: Netns, ip: string): Promise<string | undefined> {
  const { stdout } = await ns.ip('-j', 'neigh', 'show', ip);
  return (JSON.parse(stdout) as { lladdr?: string }[])[0]?.lladdr;
}

describe('keepalived VRRP between two namespaces', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let sw: Netns, n1: Netns, n2: Netns, cl: Netns;
  let dir: string;
  let h1: Host, h2: Host;

  before(async () => {
    sw = await lab.ns('sw');
    n1 = await lab.ns('ka1');
    n2 = await lab.ns('ka2');
    cl = await lab.ns('cl');
    await sw.ip('link', 'add', 'br0', 'type', 'bridge');
    await sw.ip('link', 'set', 'br0', 'up');
    for (const [ns, addr, port] of [[n1, '10.20.0.1/24', 'p1'], [n2, '10.20.0.2/24', 'p2'], [cl, '10.20.0.100/24', 'p3']] as const) {
      await lab.veth({ ns, dev: 'eth0', address: addr }, { ns: sw, dev: port });
      await sw.ip('link', 'set', port, 'master', 'br0');
    }
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-ka-'));
    h1 = new Host({ netns: n1.name, stateDir: path.join(dir, 'n1') });
    h2 = new Host({ netns: n2.name, stateDir: path.join(dir, 'n2') });
  });

  after(async () => {
    for (const h of [h1, h2]) await keepalivedSubsystem.teardown?.(h).catch((e) => console.error(`# teardown ${h.where}: ${e}`));
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the virtual address answers on the primary', async () => {
    await applyDocument(keepalivedSubsystem, h2, ha('secondary'));
    await applyDocument(keepalivedSubsystem, h1, ha('primary'));
    const ms = await waitUntil('the VIP on the primary', () => hasAddress(n1, VIP));
    console.log(`# primary became master ${ms.toFixed(0)} ms after apply`);
    assert.equal(await hasAddress(n2, VIP), false);
    await cl.exec('ping', ['-c3', '-i0.2', '-W1', VIP]);
    assert.equal(await neighborMac(cl, VIP), await n1.mac('eth0'));
    await waitUntil('the status to say MASTER/BACKUP', async () => {
      const [s1, s2] = (await Promise.all([keepalivedSubsystem.status!(h1), keepalivedSubsystem.status!(h2)])) as { detail: HaStatus }[];
      return s1!.detail.instances[0]!.state === 'MASTER' && s2!.detail.instances[0]!.state === 'BACKUP';
    });
  });

  it("the primary's link going down moves the address to the secondary within the master-down interval", async () => {
    const events: HaEvent[] = [];
    const watcher = watchHaEvents(instancePaths(h2.stateDir, 'keepalived'), 20);
    watcher.on('event', (e) => events.push(e));
    try {
      // RFC 5798: master down interval = 3 x advert + skew, skew = (256 - priority) / 256 x advert
      const masterDown = 3 * ADVERT + ((256 - 100) / 256) * ADVERT;
      const wall0 = Date.now() / 1000;
      await n1.ip('link', 'set', 'eth0', 'down');
      const ms = await waitUntil('the VIP on the secondary', () => hasAddress(n2, VIP), 30_000, 5);
      await waitUntil('the MASTER event', async () => events.some((e) => e.name === 'LAN' && e.state === 'MASTER'), 15_000);
      const ev = events.find((e) => e.name === 'LAN' && e.state === 'MASTER')!;
      console.log(
        `# failover: VIP on the secondary ${ms.toFixed(0)} ms after link down (master-down interval ${(masterDown * 1000).toFixed(0)} ms, advert ${ADVERT * 1000} ms); ` +
          `keepalived's notify script ran at +${((ev.time - wall0) * 1000).toFixed(0)} ms`,
      );
      // the address must move within the master-down interval plus what polling and a loaded VM add (a 2-core CI
      // machine shared by parallel tests: generous, yet below the interval the default 1 s advert would give)
      assert.ok(ms < masterDown * 1000 + 2500, `failover took ${ms.toFixed(0)} ms`);
      await cl.exec('ping', ['-c3', '-i0.2', '-W1', VIP]);
      assert.equal(await neighborMac(cl, VIP), await n2.mac('eth0'), 'the client now reaches the secondary (gratuitous ARP)');
      const s2 = ((await keepalivedSubsystem.status!(h2)) as { detail: HaStatus }).detail.instances[0]!;
      assert.equal(s2.state, 'MASTER');
      assert.equal(s2.stateCode, 2);
      assert.ok((s2.transitions.MASTER ?? 0) >= 1);
    } finally {
      watcher.close();
    }
  });

  it('the primary takes the address back when its link returns (preempt)', async () => {
    await n1.ip('link', 'set', 'eth0', 'up');
    const ms = await waitUntil('the VIP back on the primary', async () => (await hasAddress(n1, VIP)) && !(await hasAddress(n2, VIP)));
    console.log(`# preempt: primary master again ${ms.toFixed(0)} ms after link up`);
  });

  it('bad input is rejected with paths before keepalived is touched', async () => {
    const pid = ((await keepalivedSubsystem.status!(h1)) as { detail: HaStatus }).detail.pid;
    const doc = ha('primary', { scripts: [{ name: 'chk', command: ['curl', '-s'] }] }) as any;
    doc.ha.instances[0].trackScripts = ['nope'];
    doc.ha.instances[0].backupPriority = 200;
    doc.ha.instances.push({ ...doc.ha.instances[0], name: 'LAN2' });
    await assert.rejects(applyDocument(keepalivedSubsystem, h1, doc), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /ha\.instances\[0\]\.trackScripts\[0\]: no script named "nope"/);
      assert.match(e.message, /ha\.instances\[0\]\.backupPriority: backupPriority \(200\) must be lower than priority \(150\)/);
      assert.match(e.message, /ha\.instances\[1\]\.virtualRouterId: VRID 51 is already used by instance "LAN" on eth0/);
      assert.match(e.message, /ha\.scripts\[0\]\.command\[0\]: "curl" must be an absolute path/);
      return true;
    });
    // keepalived's own checker (in the namespace): an interface that does not exist there
    const bad = ha('primary') as any;
    bad.ha.instances[0].interface = 'nope0';
    await assert.rejects(applyDocument(keepalivedSubsystem, h1, bad), /keepalived -t exited \d+.*nope0/);
    assert.equal(((await keepalivedSubsystem.status!(h1)) as { detail: HaStatus }).detail.pid, pid, 'keepalived untouched');
    assert.equal(await hasAddress(n1, VIP), true);
  });

  describe('configuration sync over the REST API', () => {
    const servers: { store: Store; engine: Engine; app: FastifyInstance; base: string }[] = [];
    let sync: HaSync;
    const tokenFile = () => path.join(dir, 'peer.token');
    const caFile = () => path.join(dir, 'peer-ca.pem');

    let tls: { cert: string; key: string } | undefined;
    before(async () => {
      if (hasCommand('openssl')) {
        await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'peer.key'), '-out', caFile()]);
        tls = { cert: readFileSync(caFile(), 'utf8'), key: readFileSync(path.join(dir, 'peer.key'), 'utf8') };
      } else console.log('# openssl missing: the secondary serves plain HTTP');
      for (const host of [h1, h2]) {
        const store = Store.open(path.join(host.stateDir, 'patronus.db'));
        // with the firewall: its default drops new input, so VRRP works only through keepalived's opening
        const engine = new Engine({ domains, host, store, subsystems: [nftSubsystem, keepalivedSubsystem] });
        const metrics = createMetrics(engine, { processMetrics: false });
        // the primary runs sync, wired as `patronus serve` does
        if (host === h1) {
          sync = new HaSync(store).attach(engine);
          registerHaSyncMetrics(metrics.registry, sync);
        }
        // the secondary serves HTTPS with its own certificate: sync verifies it against ha.sync.caFile
        const https = host === h2 ? tls : undefined;
        const app = await buildServer({ engine, store, metrics, ...(host === h1 ? { haSync: sync } : {}), ...(https ? { https } : {}) });
        await app.listen({ host: '127.0.0.1', port: 0 });
        servers.push({ store, engine, app, base: `${https ? 'https' : 'http'}://127.0.0.1:${(app.server.address() as { port: number }).port}` });
      }
      writeFileSync(tokenFile(), `${servers[1]!.store.addToken('ha-primary')}\n`, { mode: 0o600 });
      await servers[1]!.engine.apply({ document: ha('secondary') }, { author: 'test', message: 'secondary set-up' });
    });

    after(async () => {
      for (const [i, s] of servers.entries()) {
        await nftSubsystem.teardown?.([h1, h2][i]!).catch(() => undefined);
        await s.app.close();
        s.engine.close();
        s.store.close();
      }
    });

    it('a change applied on the primary reaches the secondary, which applies and confirms it', async () => {
      const [p, s] = servers as [(typeof servers)[0], (typeof servers)[0]];
      const doc = ha('primary', {
        sync: { peer: s.base, tokenFile: tokenFile(), ...(tls ? { caFile: caFile() } : {}), sections: ['aliases', 'ha'] },
        instances: [
          ...ha('primary').ha.instances,
          { name: 'LAN6', interface: 'eth0', virtualRouterId: 52, advertInterval: ADVERT, virtualAddresses: ['10.20.0.253/24'] },
        ],
      }) as Record<string, any>;
      doc.aliases = [{ name: 'office', type: 'network', entries: ['198.51.100.0/24'] }];
      const reports: SyncReport[] = [];
      sync.on('report', (r) => reports.push(r));

      const t0 = performance.now();
      const res = await fetch(`${p.base}/api/v1/config/apply`, {
        method: 'POST',
        headers: { authorization: `Bearer ${p.store.addToken('operator')}`, 'content-type': 'application/json' },
        body: JSON.stringify({ config: doc, message: 'second VIP' }),
      });
      assert.equal(res.status, 200, await res.clone().text());
      const applied = (await res.json()) as { revision: number };
      await waitUntil('a sync report', async () => reports.length > 0, 30_000);
      const r = reports[0]!;
      console.log(`# sync: primary revision ${applied.revision} pushed as peer revision ${r.pushed?.revision} in ${(performance.now() - t0).toFixed(0)} ms (differing before: ${r.differing.join(', ')})`);
      assert.equal(r.error, undefined);
      assert.equal(r.inSync, true);
      assert.deepEqual(r.differing, ['aliases', 'ha']);
      assert.equal(r.pushed?.state, 'committed');
      assert.equal(r.peer.syncedFrom, applied.revision);
      assert.equal(r.peer.hash, r.primary.hash);

      // the secondary's committed revision: the primary's sections, its own local fields
      const cur = s.store.current()!;
      assert.equal(cur.id, r.pushed!.revision);
      assert.match(cur.message, new RegExp(`^ha-sync: primary revision ${applied.revision} sha256:${r.primary.hash}`));
      const cfg = cur.config as Record<string, any>;
      assert.equal(cfg.ha.role, 'secondary');
      assert.equal(cfg.ha.nodeName, 'fw-b');
      assert.equal(cfg.ha.sync, undefined, 'the sync settings stay on the primary');
      assert.deepEqual(cfg.aliases, doc.aliases);
      assert.deepEqual(cfg.interfaces, ha('secondary').interfaces);

      // and its keepalived runs the new instance as backup while the primary holds the new address
      await waitUntil('10.20.0.253 on the primary', () => hasAddress(n1, '10.20.0.253'));
      await waitUntil('LAN6 BACKUP on the secondary', async () => {
        const st = ((await keepalivedSubsystem.status!(h2)) as { detail: HaStatus }).detail;
        return st.instances.some((i) => i.name === 'LAN6' && i.state === 'BACKUP' && i.priority === 100);
      });
      assert.equal(await hasAddress(n2, '10.20.0.253'), false);
      // the adverts reached the secondary through the firewall's VRRP opening (else it would be master too)
      const { stdout: ruleset } = await n2.nsenter('nft', ['list', 'table', 'inet', 'patronus']);
      assert.match(ruleset, /iifname "eth0" meta l4proto vrrp counter packets [1-9]\d* .*keepalived-vrrp/, ruleset);

      // what operators see: the sync report on the primary's API, VRRP state and sync state on /metrics
      const get = (base: string, store: Store, p: string) =>
        new Promise<string>((resolve, reject) => {
          const url = new URL(p, base);
          const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { headers: { authorization: `Bearer ${store.addToken(`t${Math.random()}`)}` }, ...(tls ? { ca: tls.cert } : {}) }, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${p}: ${res.statusCode} ${body}`))));
          });
          req.on('error', reject);
          req.end();
        });
      const api = JSON.parse(await get(servers[0]!.base, servers[0]!.store, '/api/v1/ha/sync')) as SyncReport;
      assert.equal(api.inSync, true);
      assert.equal(api.primary.revision, applied.revision);
      assert.match(await get(servers[0]!.base, servers[0]!.store, '/metrics'), new RegExp(`patronus_ha_sync_in_sync\\{peer="${s.base}"\\} 1`));
      const m2 = await get(s.base, s.store, '/metrics');
      assert.match(m2, /patronus_vrrp_state\{instance="LAN6"\} 1/);
      assert.match(m2, /patronus_vrrp_state\{instance="LAN"\} 1/);
      assert.match(m2, /patronus_service_up\{service="keepalived"\} 1/);
      // the primary's state file follows its VIP (keepalived adds the address, then runs the notify script):
      // waiting for the VIP above does not mean the state is recorded yet
      await waitUntil("the primary's /metrics to say LAN6 is master", async () => /patronus_vrrp_state\{instance="LAN6"\} 2/.test(await get(servers[0]!.base, servers[0]!.store, '/metrics')), 30_000, 200);
    });

    it('drift on the secondary is reported, then healed by a push', async () => {
      const [, s] = servers as [(typeof servers)[0], (typeof servers)[0]];
      const local = structuredClone(s.store.current()!.config) as Record<string, any>;
      local.aliases[0].entries.push('203.0.113.0/24');
      await s.engine.apply({ document: local }, { author: 'someone', message: 'local edit on the secondary' });

      const drift = (await sync.check())!;
      assert.equal(drift.inSync, false);
      assert.deepEqual(drift.differing, ['aliases']);
      assert.notEqual(drift.peer.hash, drift.primary.hash);
      assert.equal(drift.peer.syncedFrom, null, 'the latest peer revision did not come from the primary');

      const healed = (await sync.run())!;
      assert.equal(healed.error, undefined);
      assert.equal(healed.inSync, true);
      assert.deepEqual((s.store.current()!.config as Record<string, any>).aliases[0].entries, ['198.51.100.0/24']);
      assert.equal((await sync.check())!.inSync, true);
    });

    it('a commit-confirm change is pushed only once it is confirmed', async () => {
      const [p, s] = servers as [(typeof servers)[0], (typeof servers)[0]];
      const doc = structuredClone(p.store.current()!.config) as Record<string, any>;
      doc.aliases = [{ name: 'office', type: 'network', entries: ['192.0.2.0/24'] }];
      const reports: SyncReport[] = [];
      const onReport = (r: SyncReport) => reports.push(r);
      sync.on('report', onReport);
      try {
        const applied = await p.engine.apply({ document: doc }, { author: 'test', message: 'try this', confirmWithin: 30 });
        assert.equal(applied.state, 'confirming');
        await new Promise((r) => setTimeout(r, 600));
        assert.equal(reports.length, 0, 'nothing pushed while the change may still roll back');
        assert.deepEqual((s.store.current()!.config as Record<string, any>).aliases[0].entries, ['198.51.100.0/24']);
        await p.engine.confirm();
        await waitUntil('the push after confirmation', async () => reports.some((r) => r.pushed), 30_000);
        assert.equal(reports.at(-1)!.inSync, true);
        assert.deepEqual((s.store.current()!.config as Record<string, any>).aliases[0].entries, ['192.0.2.0/24']);
      } finally {
        sync.off('report', onReport);
      }
    });

    it('refuses to push to a peer that is not configured as the secondary', async () => {
      const [, s] = servers as [(typeof servers)[0], (typeof servers)[0]];
      const local = structuredClone(s.store.current()!.config) as Record<string, any>;
      local.ha.role = 'primary';
      local.aliases = [];
      await s.engine.apply({ document: local }, { author: 'someone', message: 'mistake' });
      const r = (await sync.run())!;
      assert.equal(r.inSync, false);
      assert.match(r.error ?? '', /does not have ha\.role: secondary/);
    });

    it('an https peer whose certificate is not trusted is not talked to', async (t) => {
      if (!tls) return t.skip('needs openssl for a test certificate');
      const [p, s] = servers as [(typeof servers)[0], (typeof servers)[0]];
      assert.match(s.base, /^https:/);
      const doc = structuredClone(p.store.current()!.config) as Record<string, any>;
      delete doc.ha.sync.caFile;
      await p.engine.apply({ document: doc }, { author: 'test', message: 'no CA' });
      const r = (await sync.run())!;
      assert.equal(r.inSync, false);
      assert.match(r.error ?? '', /self[- ]signed certificate/);
    });
  });
});
