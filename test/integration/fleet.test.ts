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
import { freePort } from '../../bench/lib/ports.js';

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

describe('fleet on etcd: 3-member cluster, 3 serve --fleet nodes', { timeout: 540_000, skip: missing('netns', { cmd: 'etcd' }, { cmd: 'etcdctl' }) }, () => {
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
  /** a rollout in the background; `reached(re)` resolves when its progress on stderr matches */
  const rolloutInBackground = (args: string[]) => {
    const proc = execa('node', [cli, '--json', 'fleet', ...args, '--fleet', etcd.fleetUrl], { reject: false, timeout: 240_000 });
    let err = '';
    const waiters: { re: RegExp; resolve: () => void }[] = [];
    proc.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      for (const w of waiters.splice(0)) if (w.re.test(err)) w.resolve();
      else waiters.push(w);
    });
    return {
      reached: (re: RegExp) => new Promise<void>((resolve, reject) => {
        if (re.test(err)) return resolve();
        waiters.push({ re, resolve });
        void proc.then(() => reject(new Error(`the rollout ended before ${re}: ${err}`)));
      }),
      done: proc.then((r) => ({ code: r.exitCode, json: JSON.parse(r.stdout) as any, stdout: r.stdout, stderr: r.stderr })),
    };
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
      // a node that died is a failure now, not after the timeout
      const dead = nodes.find((n) => n.proc && n.proc.exitCode !== null);
      if (dead) throw new Error(`${dead.name} exited ${dead.proc!.exitCode} while waiting for ${what}:\n${dead.log.slice(-20).join('\n')}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what}\n${nodes.map((n) => `--- ${n.name}\n${n.log.slice(-15).join('\n')}`).join('\n')}`);
  };
  const online = async () => ((await fleet(['nodes', '--group', GROUP])).json as { node: string; online: boolean }[] | undefined)?.filter((n) => n.online).map((n) => n.node).sort() ?? [];
  const ping = async (n: Node, addr: string) => (await n.peer.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', addr], { reject: false })).exitCode === 0; // one answer of three

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
      const port = await freePort();
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
    // the same through the REST API of any node
    const token = readFileSync(join(nodes[0]!.stateDir, 'admin.token'), 'utf8').trim();
    const res = await fetch(`http://${nodes[0]!.listen}/api/v1/fleet/nodes?group=${GROUP}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { node: string; online: boolean }[]).map((r) => [r.node, r.online]), [['n1', true], ['n2', true], ['n3', true]]);
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
  const nft = async (n: Node) => (await n.fw.exec('nft', ['list', 'ruleset'])).stdout;
  const desiredOf = async () => Object.fromEntries(((await fleet(['nodes', '--group', GROUP])).json as { node: string; desiredRollout?: string }[]).map((r) => [r.node, r.desiredRollout]));

  it('a bad change (a health probe fails) halts at the canary, which rolls itself back; the rest is never touched', async () => {
    const before = await desiredOf();
    const topBefore = await Promise.all(nodes.map(async (n) => (await revisions(n))[0]!.id));
    const bad = base('allow-9090', { health: { settleSeconds: 0, attempts: 1, probes: [{ name: 'backend', type: 'tcp', target: '192.0.2.1', port: 9, timeoutSeconds: 1 }] } });
    const r = await fleet(['rollout', file('bad.json', bad), '--group', GROUP, '--canary', '1', '--waves', '100%', '--confirm-within', '30']);
    assert.equal(r.code, 1, r.stderr);
    const rec = r.json as { id: string; state: string; reason: string; waves: { nodes: string[]; state: string; results?: Record<string, { state: string; error?: string }> }[] };
    assert.equal(rec.state, 'halted');
    assert.match(rec.reason, /^canary failed, later waves not started: n1: failed \(health check failed: backend: tcp 192\.0\.2\.1:9: .*rolled back to revision \d+\)/);
    assert.deepEqual(rec.waves.map((w) => w.state), ['failed', 'pending']);
    const n1 = await revisions(nodes[0]!);
    assert.equal(n1[0]!.state, 'rolled_back');
    assert.match(n1[0]!.message, new RegExp(`^fleet rollout ${rec.id}`));
    assert.doesNotMatch(await nft(nodes[0]!), /allow-9090/);
    assert.match(await nft(nodes[0]!), /allow-8080/, 'the canary runs its previous revision again');
    assert.ok(await ping(nodes[0]!, '10.90.1.1'));
    for (const [i, n] of nodes.entries()) if (i > 0) assert.equal((await revisions(n))[0]!.id, topBefore[i], `${n.name} untouched`);
    assert.deepEqual(await desiredOf(), before, 'the canary got its previous desired document back');
    const list = (await fleet(['rollouts'])).json as { id: string; state: string; reason?: string }[];
    assert.equal(list[0]!.id, rec.id);
    assert.match(list[0]!.reason ?? '', /backend/);
  });

  it('one etcd member killed mid-rollout changes nothing', async () => {
    const p = rolloutInBackground(['rollout', file('v2.json', base('allow-8081', { health: { settleSeconds: 1, probes: [] } })), '--group', GROUP, '--canary', '1', '--waves', '100%', '--confirm-within', '60']);
    await p.reached(/canary: published to n1/);
    await etcd.kill('m1');
    const r = await p.done;
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal((r.json as { state: string }).state, 'completed');
    for (const n of nodes) assert.match(await nft(n), /allow-8081/, n.name);
    await etcd.restart('m1');
    await etcd.waitHealthy(60_000);
  });

  it('a node cut off from etcd keeps filtering on its revision, and converges when it is back', async () => {
    const n3 = nodes[2]!;
    n3.proxy.cut();
    await waitFor('n3 offline (lease expired)', async () => (await online()).join() === 'n1,n2');
    const r = await fleet(['rollout', file('v3.json', base('allow-8082')), '--group', GROUP, '--canary', '1', '--waves', '100%', '--confirm-within', '60']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((r.json as { offline: string[] }).offline, ['n3']);
    assert.equal(n3.proc?.exitCode, null, 'n3 still serving');
    assert.ok(await ping(n3, '10.90.3.1'), 'n3 still passes allowed traffic');
    assert.match(await nft(n3), /allow-8081/);
    assert.doesNotMatch(await nft(n3), /allow-8082/);
    // the node notices on its own clock (its lease keep-alives fail), maybe after etcd expired the lease
    await waitFor('n3 to say etcd is unreachable', async () => n3.log.some((l) => /fleet: etcd unreachable .*keeping revision \d+ running/.test(l)), 60_000);
    n3.proxy.heal();
    await waitFor('n3 converges', async () => /allow-8082/.test(await nft(n3)));
    await waitFor('n3 reports healthy', async () => ((await fleet(['nodes', '--group', GROUP])).json as { node: string; converged: boolean }[]).every((x) => x.converged));
    assert.ok(n3.log.some((l) => /fleet: back in touch with etcd after/.test(l)), n3.log.join('\n'));
  });

  it('a node that was off during a rollout converges when it starts, also when etcd is unreachable at first', async () => {
    const n2 = nodes[1]!;
    await stopNode(n2);
    await waitFor('n2 offline', async () => (await online()).join() === 'n1,n3');
    const r = await fleet(['rollout', file('v4.json', base('allow-8083')), '--group', GROUP, '--canary', '1', '--waves', '100%', '--confirm-within', '60']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((r.json as { offline: string[] }).offline, ['n2']);
    // etcd unreachable at start: serve runs its committed revision and retries
    n2.proxy.cut();
    startNode(n2);
    const ready = await execa('node', [cli, '--server', `http://${n2.listen}`, 'wait-ready', '--timeout', '120'], { reject: false });
    assert.equal(ready.exitCode, 0, ready.stderr);
    await waitFor('n2 says etcd is unreachable', async () => n2.log.some((l) => /fleet: etcd unreachable/.test(l)), 30_000);
    assert.match(await nft(n2), /allow-8082/, 'n2 runs its last committed revision');
    assert.doesNotMatch(await nft(n2), /allow-8083/);
    assert.ok(await ping(n2, '10.90.2.1'));
    n2.proxy.heal();
    await waitFor('n2 converges', async () => /allow-8083/.test(await nft(n2)));
    assert.match((await revisions(n2))[0]!.message, /^fleet rollout r/);
  });

  it('bad input: broken overlay, empty group, two rollouts at once, etcd unreachable: clear errors, nothing applied, history says why', async () => {
    const before = await desiredOf();
    // an overlay that breaks the document for one node: nothing published anywhere
    const brokenOverlay = file('broken.json', { interfaces: [{ name: 'wan0', addresses: ['192.0.2.2/24', 'not-an-address'] }] });
    const refused = await fleet(['overlay', 'set', 'n2', brokenOverlay, '--group', GROUP]);
    assert.notEqual(refused.code, 0, 'checked over the group base, refused');
    assert.match(JSON.stringify(refused.json), /"path":"node n2\.interfaces\[0\]\.addresses\[1\]"/);
    assert.deepEqual((await fleet(['overlay', 'get', 'n2', '--group', GROUP])).json, { interfaces: [{ name: 'wan0', addresses: ['192.0.2.2/24', '10.90.2.1/24'] }] }, 'nothing stored');
    // stored anyway (--force): the rollout refuses it
    assert.equal((await fleet(['overlay', 'set', 'n2', brokenOverlay, '--group', GROUP, '--force'])).code, 0);
    const v = await fleet(['validate', file('v5.json', base('allow-8084')), '--group', GROUP]);
    assert.notEqual(v.code, 0);
    assert.match(JSON.stringify(v.json), /"path":"node n2\.interfaces\[0\]\.addresses\[1\]"/);
    const broken = await fleet(['rollout', file('v5.json', base('allow-8084')), '--group', GROUP, '--confirm-within', '30']);
    assert.equal(broken.code, 1);
    assert.equal(broken.json.state, 'failed');
    assert.match(broken.json.reason, /^invalid for 1 of 3 node\(s\), nothing published: node n2: interfaces\[0\]\.addresses\[1\]: /);
    assert.deepEqual(await desiredOf(), before);
    for (const n of nodes) assert.doesNotMatch(await nft(n), /allow-8084/);
    assert.equal((await fleet(['overlay', 'set', 'n2', file('overlay-n2.json', { interfaces: [{ name: 'wan0', addresses: ['192.0.2.2/24', '10.90.2.1/24'] }] }), '--group', GROUP])).code, 0);
    // a group nobody joined
    const empty = await fleet(['rollout', file('v5.json', base('allow-8084')), '--group', 'nobody']);
    assert.equal(empty.code, 1);
    assert.match(empty.json.reason, /group nobody has no members/);
    // two rollouts to one group: the second is refused while the first runs (its canary settles
    // long enough that two CLI round trips on a loaded machine fit in)
    const slow = base('allow-8085', { health: { settleSeconds: 15, probes: [] } });
    const first = rolloutInBackground(['rollout', file('slow.json', slow), '--group', GROUP, '--canary', '1', '--waves', '100%', '--confirm-within', '60']);
    await first.reached(/canary: published to n1/);
    const firstId = ((await fleet(['rollouts'])).json as { id: string; state: string }[]).find((x) => x.state === 'running')!.id;
    const second = await fleet(['rollout', file('v5.json', base('allow-8084')), '--group', GROUP]);
    assert.equal(second.code, 1);
    assert.match(second.json.reason, new RegExp(`group ${GROUP} already has rollout ${firstId} running`));
    assert.equal((await first.done).json.state, 'completed');
    for (const n of nodes) assert.doesNotMatch(await nft(n), /allow-8084/);
    const history = (await fleet(['rollouts', '-n', '50'])).json as { state: string; reason?: string }[];
    assert.ok(history.some((h) => h.state === 'failed' && /already has rollout/.test(h.reason ?? '')));
    assert.ok(history.some((h) => h.state === 'failed' && /no members/.test(h.reason ?? '')));
    // etcd unreachable: a clear error naming the cluster
    const down = await fleet(['status'], 'etcd://127.0.0.1:1');
    assert.notEqual(down.code, 0);
    assert.match(down.json.error.message, /etcd 127\.0\.0\.1:1 unreachable/);
  });

  it('GitOps: each new commit is validated and rolled out with its hash; an invalid commit is recorded and never rolled out', async () => {
    const repo = join(tmp, 'repo');
    mkdirSync(repo);
    const git = (...args: string[]) => execa('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args]);
    await git('init', '-q', '-b', 'main');
    writeFileSync(join(repo, 'patronus.yaml'), JSON.stringify(base('allow-8086')));
    await git('add', '.');
    await git('commit', '-q', '-m', 'open 8086');
    const head = (await git('rev-parse', 'HEAD')).stdout.trim();
    const g = await fleet(['gitops', '--repo', repo, '--branch', 'main', '--group', GROUP, '--once', '--confirm-within', '60']);
    assert.equal(g.code, 0, g.stderr);
    assert.deepEqual((g.json as { commit: string; state: string }[]).map((x) => [x.commit, x.state]), [[head, 'rolled-out']]);
    for (const n of nodes) {
      assert.match(await nft(n), /allow-8086/);
      assert.match((await revisions(n))[0]!.message, new RegExp(`^fleet rollout r\\S+ \\(git ${head}\\): open 8086$`));
    }
    // `patronus revisions` on a node shows the commit hash
    const shown = await execa('node', [cli, '--server', `http://${nodes[0]!.listen}`, '--state-dir', nodes[0]!.stateDir, 'revisions', '-n', '1'], { reject: false, timeout: 60_000 });
    assert.equal(shown.exitCode, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`fleet +fleet rollout r\\S+ \\(git ${head}\\): open 8086`));
    assert.match((await git('notes', '--ref', 'patronus', 'show', head)).stdout, /rolled-out/);
    // an invalid document in the next commit
    writeFileSync(join(repo, 'patronus.yaml'), 'firewall:\n  rules:\n    - { name: x, action: maybe }\n');
    await git('commit', '-q', '-am', 'broken');
    const bad = (await git('rev-parse', 'HEAD')).stdout.trim();
    const g2 = await fleet(['gitops', '--repo', repo, '--branch', 'main', '--group', GROUP, '--once']);
    assert.equal(g2.code, 0, g2.stderr);
    const rec = (g2.json as { commit: string; state: string; detail: string }[])[0]!;
    assert.equal(rec.commit, bad);
    assert.equal(rec.state, 'invalid');
    assert.match(rec.detail, /node n1: patronus\.yaml: firewall\.rules\[0\]\.action/);
    assert.match((await git('notes', '--ref', 'patronus', 'show', bad)).stdout, /invalid/);
    for (const n of nodes) assert.match(await nft(n), /allow-8086/);
    // the rollout history says why the commit was not rolled out; nothing was published for it
    const list = (await fleet(['rollouts'])).json as { state: string; reason?: string; git?: { commit: string }; waves: unknown[] }[];
    assert.equal(list[0]!.git?.commit, bad);
    assert.equal(list[0]!.state, 'failed');
    assert.deepEqual(list[0]!.waves, []);
    assert.match(list[0]!.reason ?? '', new RegExp(`^git commit ${bad.slice(0, 12)} invalid, not rolled out: node n1: patronus\\.yaml: firewall\\.rules\\[0\\]\\.action`));
    assert.equal(list.find((x) => x.state === 'completed')?.git?.commit, head);
  });
  it('REST on any node: start a rollout (202), follow it to the end, abort refuses a finished one', async () => {
    const n1 = nodes[0]!;
    const token = readFileSync(join(n1.stateDir, 'admin.token'), 'utf8').trim();
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`http://${n1.listen}/api/v1${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
      return { status: res.status, json: (await res.json()) as any };
    };
    const started = await call('POST', '/fleet/rollouts', { group: GROUP, config: base('allow-8087'), canary: 1, waves: ['100%'], confirmWithin: 60, message: 'via REST' });
    assert.equal(started.status, 202, JSON.stringify(started.json));
    const id = started.json.id as string;
    await waitFor('the REST rollout to complete', async () => (await call('GET', `/fleet/rollouts/${id}`)).json.state === 'completed');
    for (const n of nodes) assert.match(await nft(n), /allow-8087/, n.name);
    const abort = await call('POST', `/fleet/rollouts/${id}/abort`);
    assert.equal(abort.status, 409);
    assert.match(abort.json.message, new RegExp(`rollout ${id} is completed: nothing to abort`));
    const bad = await call('POST', '/fleet/rollouts', { group: GROUP, config: base('allow-8088'), waves: ['50%'] });
    assert.equal(bad.status, 400);
    assert.match(bad.json.message, /--waves: the last wave must be 100% \(50%\)/);
    // what the GitOps watcher recorded (the test above): newest first, an invalid commit cannot be approved
    const commits = await call('GET', `/fleet/commits?group=${GROUP}`);
    assert.equal(commits.status, 200);
    assert.deepEqual(commits.json.map((c: { state: string }) => c.state), ['invalid', 'rolled-out']);
    const approve = await call('POST', `/fleet/commits/${commits.json[0].commit}/approve`, { group: GROUP });
    assert.equal(approve.status, 409);
    assert.match(approve.json.message, /is invalid \(.*\): only a commit waiting for approval can be approved/);
    assert.equal((await call('POST', '/fleet/commits/nothex/approve', { group: GROUP })).status, 400);
  });
});
