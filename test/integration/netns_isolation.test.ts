/**
 * Issue 11 item 7: two Patronus instances in two network namespaces, each
 * started inside its namespace with nsenter and without --netns (child
 * processes, as `nsenter --net=... patronus serve` would run), must not
 * share a pin root, adopt each other's programs or replace each other's
 * rules. Both namespaces name their interface e0, so ifindexes and names
 * can coincide. Pinning a data plane of one namespace under the pin root
 * of another is refused with a clear error, with or without an owner mark.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { queryXdp } from '../../src/bpf/index.js';
import { inNetns } from '../../src/system/netns.js';
import { removePins } from '../../src/fastpath/dataplane.js';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';

const CHILD = fileURLToPath(new URL('../lib/netns_instance_child.js', import.meta.url));

interface ChildOut {
  bpfRoot: string;
  state?: string;
  error?: string;
  xdpProgId?: number;
  rules?: string[];
}

function doc(rules: { name: string; port: number }[]) {
  return {
    version: 1,
    fastpath: {
      interfaces: [{ name: 'e0', defaultPolicy: 'pass' }],
      rules: rules.map((r) => ({ name: r.name, protocol: 'udp', destinationPorts: r.port, action: 'drop' })),
    },
  };
}

/** Runs an instance inside ns (nsenter, no --netns), without the test-only netns guard. */
async function instance(ns: Netns, stateDir: string, document: unknown, bpfRoot?: string): Promise<ChildOut> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'PATRONUS_REQUIRE_NETNS' && !k.startsWith('NODE_TEST')) env[k] = v;
  const r = await execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, CHILD, stateDir, JSON.stringify(document), ...(bpfRoot ? [bpfRoot] : [])], {
    env,
    extendEnv: false,
    reject: false,
    timeout: 120_000,
  });
  assert.equal(r.exitCode, 0, `instance in ${ns.name}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildOut;
}

describe('instances in two network namespaces (nsenter, no --netns)', { timeout: 300_000, skip: missing('netns', { cmd: 'nsenter' }, { file: '/sys/fs/bpf' }) }, () => {
  const lab = new Lab();
  let a: Netns;
  let b: Netns;
  const dir = mkdtempSync(path.join(tmpdir(), 'pt-netnsiso-'));
  const stateA = path.join(dir, 'a');
  const stateB = path.join(dir, 'b');
  const roots = new Set<string>();
  const progOn = (ns: Netns) => inNetns(ns.name, () => queryXdp(ifindex.get(ns.name)!).progId);
  const ifindex = new Map<string, number>();

  before(async () => {
    a = await lab.ns('a');
    b = await lab.ns('b');
    await lab.veth({ ns: a, dev: 'e0', address: '10.93.0.1/24' }, { ns: b, dev: 'e0', address: '10.93.0.2/24' });
    ifindex.set(a.name, await a.ifindex('e0'));
    ifindex.set(b.name, await b.ifindex('e0'));
  });
  after(async () => {
    await lab.teardown();
    for (const r of roots) {
      removePins(path.join(r, 'fastpath'));
      rmSync(r, { recursive: true, force: true });
    }
    rmSync(dir, { recursive: true, force: true });
  });

  let outA: ChildOut;
  let outB: ChildOut;

  it('each instance gets a pin root of its own namespace and state dir, and runs its own rules', async () => {
    outA = await instance(a, stateA, doc([{ name: 'drop-a', port: 19 }]));
    roots.add(outA.bpfRoot);
    outB = await instance(b, stateB, doc([{ name: 'drop-b', port: 7 }]));
    roots.add(outB.bpfRoot);
    assert.equal(outA.error, undefined, outA.error);
    assert.equal(outB.error, undefined, outB.error);
    assert.equal(outA.state, 'committed');
    assert.equal(outB.state, 'committed');
    assert.notEqual(outA.bpfRoot, outB.bpfRoot);
    assert.match(outA.bpfRoot, new RegExp(`^/sys/fs/bpf/patronus-net${statSync(a.path).ino}-[0-9a-f]{12}$`));
    assert.match(outB.bpfRoot, new RegExp(`^/sys/fs/bpf/patronus-net${statSync(b.path).ino}-[0-9a-f]{12}$`));
    assert.notEqual(outA.xdpProgId, outB.xdpProgId);
    assert.deepEqual(outA.rules, ['drop-a']);
    assert.deepEqual(outB.rules, ['drop-b']);
    assert.equal(progOn(a), outA.xdpProgId, 'A runs its own program');
    assert.equal(progOn(b), outB.xdpProgId, 'B runs its own program');
    assert.deepEqual(readdirSync(path.join(outA.bpfRoot, 'fastpath')).filter((f) => f.startsWith('owner_netns_')), [`owner_netns_${statSync(a.path).ino}`]);
  });

  it('a new apply in one namespace adopts its own data plane and leaves the other alone', async () => {
    const again = await instance(a, stateA, doc([{ name: 'drop-a', port: 19 }, { name: 'drop-a2', port: 17 }]));
    assert.equal(again.error, undefined, again.error);
    assert.equal(again.bpfRoot, outA.bpfRoot, 'the same instance finds the same pin root again');
    assert.equal(again.xdpProgId, outA.xdpProgId, 'adopted, not reloaded');
    assert.deepEqual(again.rules, ['drop-a', 'drop-a2']);
    assert.equal(progOn(b), outB.xdpProgId, 'B still runs its program');
    const b2 = await instance(b, stateB, doc([{ name: 'drop-b', port: 7 }]));
    assert.equal(b2.xdpProgId, outB.xdpProgId);
    assert.deepEqual(b2.rules, ['drop-b'], "B's rules are its own");
  });

  it("pointing an instance at another namespace's pin root is refused, nothing changes", async () => {
    const r = await instance(b, stateB, doc([{ name: 'intruder', port: 9 }]), outA.bpfRoot);
    assert.match(r.error ?? '', new RegExp(`refusing to adopt the data plane pinned at ${outA.bpfRoot}/fastpath: it belongs to network namespace net:\\[${statSync(a.path).ino}\\]`));
    assert.match(r.error ?? '', /Two Patronus instances share this pin root/);
    assert.equal(progOn(a), outA.xdpProgId);
    assert.equal(progOn(b), outB.xdpProgId);
    const check = await instance(a, stateA, doc([{ name: 'drop-a', port: 19 }, { name: 'drop-a2', port: 17 }]));
    assert.deepEqual(check.rules, ['drop-a', 'drop-a2']);
  });

  it('pins without an owner mark (an older Patronus) are adopted only where their interfaces run them', async () => {
    const pinDir = path.join(outA.bpfRoot, 'fastpath');
    for (const f of readdirSync(pinDir)) if (f.startsWith('owner_netns_')) rmSync(path.join(pinDir, f), { recursive: true });
    const r = await instance(b, stateB, doc([{ name: 'intruder', port: 9 }]), outA.bpfRoot);
    assert.match(r.error ?? '', /refusing to adopt .* it runs on interfaces \(ifindex \d+\) that are not in this network namespace/);
    assert.equal(progOn(b), outB.xdpProgId);
    // its own namespace adopts it and marks it again
    const own = await instance(a, stateA, doc([{ name: 'drop-a', port: 19 }]));
    assert.equal(own.error, undefined, own.error);
    assert.equal(own.xdpProgId, outA.xdpProgId);
    assert.ok(existsSync(path.join(pinDir, `owner_netns_${statSync(a.path).ino}`)));
  });
});
