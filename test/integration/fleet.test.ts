/**
 * Fleet on a real 3-member etcd cluster (loopback ports, started and
 * stopped here) with 3 `patronus serve --fleet` processes, each managing its
 * own namespace (wan0, with a peer namespace pinging through it):
 *   - nodes register under their lease; a rollout with per-node overlays
 *     reaches every node (addresses, rules) in canary + waves, and the
 *     revisions carry the rollout id;
 *   - a bad change (a health probe that fails) halts at the canary, which
 *     rolls itself back; the other nodes are never touched;
 *   - one etcd member killed mid-rollout changes nothing;
 *   - a node cut off from etcd keeps filtering on its committed revision and
 *     converges when it is back; a node that was off converges when it starts;
 *   - bad input: an overlay that breaks the document, an empty group, two
 *     rollouts to one group, etcd unreachable: clear errors, nothing applied,
 *     the rollout history says why.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { missing } from '../lib/skip.js';
import { Lab, type Netns } from '../lib/netns.js';
import { addresses } from '../lib/control.js';
import { EtcdCluster } from '../lib/etcd.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Node {
  name: string;
  fw: Netns;
  peer: Netns;
  stateDir: string;
  listen: string;
  /** the node reaches etcd through this proxy (cut it to partition the node) */
  proxy: TcpProxy;
  proc?: ResultPromise<{ reject: false; all: true }>;
  log: string[];
}

/** A loopback TCP proxy per node to every etcd member: cut() drops and refuses connections, heal() lets them through again. */
class TcpProxy {
  private servers: Server[] = [];
  private sockets = new Set<Socket>();
  ports: number[] = [];
  cutOff = false;
  async start(targets: number[]): Promise<void> {
    for (const target of targets) {
      const s = createServer((c) => {
        if (this.cutOff) return c.destroy();
        const up = connect(target, '127.0.0.1');
        this.sockets.add(c).add(up);
        const drop = () => {
          c.destroy();
          up.destroy();
          this.sockets.delete(c);
          this.sockets.delete(up);
        };
        c.on('error', drop).on('close', drop);
        up.on('error', drop).on('close', drop);
        c.pipe(up).pipe(c);
      });
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      this.servers.push(s);
      this.ports.push((s.address() as { port: number }).port);
    }
  }
  get url(): string {
    return `etcd://${this.ports.map((p) => `127.0.0.1:${p}`).join(',')}`;
  }
  cut(): void {
    this.cutOff = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
  heal(): void {
    this.cutOff = false;
  }
  async close(): Promise<void> {
    this.cut();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }
}

const GROUP = 'edge';
const seed = (i: number) =>
  `interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [192.0.2.2/24]\nfirewall:\n  rules:\n    - { name: allow-ping, direction: input, from: wan, protocol: icmp, action: accept }\ndrift:\n  intervalSeconds: 3600\n# node ${i}\n`;

/** The group base of a rollout: wan0 plus the rules; each node's overlay adds its own address. */
function base(extraRule: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['192.0.2.2/24'] }],
    firewall: {
      rules: [
        { name: 'allow-ping', direction: 'input', from: 'wan', protocol: 'icmp', action: 'accept' },
        { name: extraRule, direction: 'input', from: 'wan', protocol: 'tcp', ports: [8080], action: 'accept' },
      ],
    },
    drift: { intervalSeconds: 3600 },
    health: { settleSeconds: 0, attempts: 2, probes: [{ name: 'peer-ping', type: 'ping', target: '192.0.2.1', timeoutSeconds: 1 }] },
    ...extra,
  };
}

describe('fleet on etcd: 3-member cluster, 3 serve --fleet nodes', { skip: missing('netns', { cmd: 'etcd' }, { cmd: 'etcdctl' }) }, () => {
  let etcd: EtcdCluster;
  const lab = new Lab();
  let tmp: string;
  const nodes: Node[] = [];

  const fleet = async (args: string[], url = etcd.fleetUrl) => {
    const r = await execa('node', [cli, '--json', 'fleet', ...args, '--fleet', url], { reject: false, timeout: 240_000 });
    let json: unknown;
    try {
      json = JSON.parse(r.stdout);
    } catch {
      json = undefined;
    }
    return { code: r.exitCode, json: json as any, stdout: r.stdout, stderr: r.stderr };
  };
  const file = (name: string, value: unknown) => {
    const p = join(tmp, name);
    writeFileSync(p, JSON.stringify(value));
    return p;
  };
  const startNode = (n: Node) => {
    n.proc = execa(
      'node',
      [cli, '--netns', n.fw.name, '--state-dir', n.stateDir, 'serve', '--listen', n.listen, '--config', join(n.stateDir, 'seed.yaml'), '--fleet', n.proxy.url, '--fleet-node', n.name, '--fleet-group', GROUP, '--fleet-label', `site=s${n.name.slice(1)}`, '--fleet-lease-ttl', '3', '--fleet-retry', '0.5'],
      { reject: false, all: true, buffer: false },
    );
    n.log = [];
    n.proc.all?.on('data', (d: Buffer) => n.log.push(...d.toString().split('\n').filter(Boolean)));
  };
  const stopNode = async (n: Node) => {
    n.proc?.kill('SIGTERM');
    await n.proc;
    delete n.proc;
  };
  const revisions = async (n: Node) => {
    const token = readFileSync(join(n.stateDir, 'admin.token'), 'utf8').trim();
    const res = await fetch(`http://${n.listen}/api/v1/revisions?limit=50`, { headers: { authorization: `Bearer ${token}` } });
    return (await res.json()) as { id: number; state: string; author: string; message: string }[];
  };
  const waitFor = async (what: string, cond: () => Promise<boolean>, timeoutMs = 120_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (await cond().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what}\n${nodes.map((n) => `--- ${n.name}\n${n.log.slice(-15).join('\n')}`).join('\n')}`);
  };
  const online = async () => ((await fleet(['nodes', '--group', GROUP])).json as { node: string; online: boolean }[] | undefined)?.filter((n) => n.online).map((n) => n.node).sort() ?? [];
  const ping = async (n: Node, addr: string) => (await n.peer.exec('ping', ['-c', '1', '-W', '2', addr], { reject: false })).exitCode === 0;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pt-fleet-'));
    etcd = await EtcdCluster.start();
    for (let i = 1; i <= 3; i++) {
      const fw = await lab.ns(`f${i}`);
      const peer = await lab.ns(`p${i}`);
      await lab.veth({ ns: fw, dev: 'wan0', address: '192.0.2.2/24' }, { ns: peer, dev: 'eth0', address: '192.0.2.1/24' });
      await peer.ip('route', 'add', '10.90.0.0/16', 'via', '192.0.2.2');
      const stateDir = join(tmp, `n${i}`);
      mkdirSync(stateDir, { mode: 0o700 });
      writeFileSync(join(stateDir, 'seed.yaml'), seed(i));
      const proxy = new TcpProxy();
      await proxy.start(etcd.members.map((m) => m.clientPort));
      const port = await new Promise<number>((r) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => r(p));
        });
      });
      nodes.push({ name: `n${i}`, fw, peer, stateDir, listen: `127.0.0.1:${port}`, proxy, log: [] });
    }
    for (const n of nodes) startNode(n);
    // each node's overlay: an address of its own
    for (const [i, n] of nodes.entries()) {
      const r = await fleet(['overlay', 'set', n.name, file(`overlay-${n.name}.json`, { interfaces: [{ name: 'wan0', addresses: ['192.0.2.2/24', `10.90.${i + 1}.1/24`] }] }), '--group', GROUP]);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  after(async () => {
    for (const n of nodes) {
      n.proc?.kill('SIGKILL');
      await n.proc?.catch(() => undefined);
      await n.proxy.close();
    }
    await lab.teardown();
    await etcd?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('nodes register under their lease with labels and the revision they run', async () => {
    await waitFor('3 nodes online', async () => (await online()).join() === 'n1,n2,n3');
    const rows = (await fleet(['nodes'])).json as { node: string; info: { labels: Record<string, string>; revision: number; version: string } }[];
    assert.deepEqual(rows.map((r) => r.info.labels.site), ['s1', 's2', 's3']);
    assert.ok(rows.every((r) => r.info.revision === 1 && r.info.version), JSON.stringify(rows));
  });

  it('a rollout reaches every node in canary + waves; revisions carry the rollout id', async () => {
    const r = await fleet(['rollout', file('v1.json', base('allow-8080')), '--group', GROUP, '--canary', '1', '--waves', '50%,100%', '--confirm-within', '60', '-m', 'open 8080']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const rec = r.json as { id: string; state: string; waves: { nodes: string[]; state: string }[] };
    assert.equal(rec.state, 'completed');
    assert.deepEqual(rec.waves.map((w) => w.nodes), [['n1'], ['n2'], ['n3']]);
    for (const [i, n] of nodes.entries()) {
      assert.deepEqual(await addresses(n.fw, 'wan0'), ['10.90.' + (i + 1) + '.1/24', '192.0.2.2/24'].sort());
      assert.ok(await ping(n, `10.90.${i + 1}.1`), `${n.name}: traffic to its new address`);
      assert.match((await n.fw.exec('nft', ['list', 'ruleset'])).stdout, /allow-8080/);
      const top = (await revisions(n))[0]!;
      assert.equal(top.state, 'committed');
      assert.equal(top.author, 'fleet');
      assert.match(top.message, new RegExp(`^fleet rollout ${rec.id}: open 8080$`));
    }
    const s = (await fleet(['status'])).json as { groups: { group: string; members: number; online: number; converged: number; base: string }[] };
    assert.deepEqual(s.groups, [{ group: GROUP, members: 3, online: 3, converged: 3, base: rec.id }]);
  });
});
