/**
 * GitOps policies and rollout control against a real (1-member) etcd and
 * real git, through the `patronus fleet` CLI. The nodes are two real
 * FleetAgents in this process with the kernel side stubbed (as in
 * bench/fleet): the full path to real nodes' kernels is
 * test/integration/fleet.test.ts; here it is what the watcher and the
 * controller decide:
 *   - a remote repository (file:// URL, mirrored) whose .patronus-fleet.yaml
 *     says policy tag: a commit waits until a tag fleet/* points at it;
 *   - policy approval: it waits for `patronus fleet approve`, which refuses
 *     commits it has not seen or that are not waiting;
 *   - an unknown policy and an invalid document: recorded, nothing rolled
 *     out, the rollout history says why;
 *   - --verify-signatures with ssh-signed commits: an unsigned commit is
 *     refused, a signed one goes out;
 *   - `patronus fleet abort` halts a running rollout: the canary gets its
 *     previous desired document back;
 *   - `patronus fleet validate --node`.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Etcd3 } from 'etcd3';
import { missing } from '../lib/skip.js';
import { EtcdCluster } from '../lib/etcd.js';
import { FleetAgent, type NodeDriver } from '../../src/fleet/agent.js';
import { FleetController } from '../../src/fleet/controller.js';
import { etcdClient } from '../../src/fleet/connect.js';
import { centralValidator } from '../../src/fleet/validate.js';
import { domains } from '../../src/domains.js';
import type { GitopsRecord, RolloutRecord } from '../../src/fleet/model.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const GROUP = 'ops';

/** The kernel side stubbed: apply records what it was given; health waits while `gate` is set. */
class StubDriver implements NodeDriver {
  revision = 1;
  applied: { message: string; document: unknown }[] = [];
  gate: Promise<void> | undefined;
  checking = false;
  async apply(document: unknown, meta: { message: string }) {
    this.applied.push({ message: meta.message, document });
    return { revision: ++this.revision };
  }
  async health() {
    this.checking = true;
    await this.gate;
    this.checking = false;
    return { ok: true, checks: [{ name: 'drift', ok: true, detail: 'stub' }] };
  }
  async confirm() {}
  async rollBack() {
    return --this.revision;
  }
  info() {
    return { revision: this.revision, drift: 'ok' as const, health: 'ok' as const };
  }
}

const doc = (rule: string, port = 8080) => ({
  interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['192.0.2.2/24'] }],
  firewall: { rules: [{ name: rule, direction: 'input', from: 'wan', protocol: 'tcp', ports: [port], action: 'accept' }] },
});

describe('fleet GitOps policies, signatures and abort (real etcd, real git, stubbed kernels)', { timeout: 300_000, skip: missing({ cmd: 'etcd' }, { cmd: 'etcdctl' }, { cmd: 'git' }, { cmd: 'ssh-keygen' }) }, () => {
  let etcd: EtcdCluster | undefined;
  let tmp: string;
  let admin: Etcd3 | undefined;
  let controller: FleetController;
  const clients: Etcd3[] = [];
  const agents: FleetAgent[] = [];
  const stubs: Record<string, StubDriver> = {};
  let bare: string;
  let work: string;

  const fleet = async (args: string[]) => {
    // TMPDIR: the watcher's mirror of a remote lands in this test's directory
    const r = await execa('node', [cli, '--json', 'fleet', ...args, '--fleet', etcd!.fleetUrl], { reject: false, timeout: 120_000, env: { TMPDIR: tmp } });
    let json: any;
    try {
      json = JSON.parse(r.stdout);
    } catch {
      json = undefined;
    }
    return { code: r.exitCode, json, stdout: r.stdout, stderr: r.stderr };
  };
  const git = (...args: string[]) => execa('git', ['-C', work, '-c', 'user.name=tester', '-c', 'user.email=tester@example.test', ...args], { timeout: 60_000 });
  /** writes the files, commits (signed with the ssh key when asked) and pushes; returns the commit */
  const commit = async (files: Record<string, string>, message: string, sign = false) => {
    for (const [f, text] of Object.entries(files)) writeFileSync(join(work, f), text);
    await git('add', '-A');
    await git(...(sign ? ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${join(tmp, 'signer')}`] : []), 'commit', '-q', ...(sign ? ['-S'] : []), '-m', message);
    await git('push', '-q', 'origin', 'main');
    return (await git('rev-parse', 'HEAD')).stdout.trim();
  };
  const gitops = (...extra: string[]) => fleet(['gitops', '--repo', `file://${bare}`, '--branch', 'main', '--group', GROUP, '--once', '--confirm-within', '30', ...extra]);
  const rollouts = async () => (await controller.rollouts(50)) as RolloutRecord[];
  const appliedCount = () => Object.values(stubs).reduce((a, s) => a + s.applied.length, 0);
  const waitFor = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (await cond()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pt-gitops-'));
    etcd = await EtcdCluster.start({ members: 1 });
    admin = etcdClient({ url: etcd.fleetUrl });
    controller = new FleetController(admin, centralValidator(domains));
    for (const node of ['a1', 'a2']) {
      const client = etcdClient({ url: etcd.fleetUrl });
      clients.push(client);
      stubs[node] = new StubDriver();
      agents.push(new FleetAgent({ client, node, group: GROUP, version: 'test', driver: stubs[node]!, leaseTtlSeconds: 5, heartbeatMs: 1000, retryMs: 200, log: () => undefined }).start());
    }
    await waitFor('2 agents online', async () => (await controller.nodes(GROUP)).filter((n) => n.online).length === 2);
    // the repository: a bare "remote" and a working clone that pushes to it
    bare = join(tmp, 'origin.git');
    work = join(tmp, 'work');
    await execa('git', ['init', '-q', '--bare', '-b', 'main', bare]);
    await execa('git', ['clone', '-q', bare, work]);
    await git('checkout', '-q', '-b', 'main');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tester', '-f', join(tmp, 'signer')]);
    writeFileSync(join(tmp, 'allowed_signers'), `tester@example.test ${readFileSync(join(tmp, 'signer.pub'), 'utf8')}`);
  });

  after(async () => {
    for (const s of Object.values(stubs)) s.gate = undefined;
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    for (const c of clients) c.close();
    admin?.close();
    await etcd?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  let tagged: string;
  it('policy tag (from .patronus-fleet.yaml of a remote): the commit waits until a tag fleet/* points at it', async () => {
    tagged = await commit({ 'patronus.yaml': JSON.stringify(doc('allow-1')), '.patronus-fleet.yaml': 'policy: tag\n' }, 'open 8080');
    const first = await gitops();
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(first.json.map((r: GitopsRecord) => [r.commit, r.state, r.policy]), [[tagged, 'waiting-for-tag', 'tag']]);
    assert.match(first.json[0].detail, /valid for 2 node\(s\); plan: a1: interfaces, firewall; a2: interfaces, firewall; policy tag: waiting for a tag fleet\/\* on it$/);
    assert.equal(appliedCount(), 0, 'nothing rolled out before the tag');
    const seen = await fleet(['commits', '--group', GROUP]);
    assert.deepEqual(seen.json.map((r: GitopsRecord) => [r.commit, r.state]), [[tagged, 'waiting-for-tag']]);
    // asked again without a tag: still waiting, still nothing
    assert.equal((await gitops()).json[0].state, 'waiting-for-tag');
    assert.equal(appliedCount(), 0);
    await git('tag', 'fleet/v1', tagged);
    await git('push', '-q', 'origin', 'fleet/v1');
    const second = await gitops();
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(second.json.map((r: GitopsRecord) => [r.commit, r.state]), [[tagged, 'rolled-out']]);
    for (const s of Object.values(stubs)) {
      assert.equal(s.applied.length, 1);
      assert.match(s.applied[0]!.message, new RegExp(`^fleet rollout r\\S+ \\(git ${tagged}\\): open 8080$`));
    }
    assert.equal((await rollouts())[0]!.git?.commit, tagged);
  });

  it('policy approval: the commit waits for `patronus fleet approve`, which refuses what it has not seen', async () => {
    const c = await commit({ 'patronus.yaml': JSON.stringify(doc('allow-2', 8081)), '.patronus-fleet.yaml': 'policy: approval\n' }, 'open 8081');
    const first = await gitops();
    assert.deepEqual(first.json.map((r: GitopsRecord) => [r.commit, r.state]), [[c, 'waiting-for-approval']]);
    assert.match(first.json[0].detail, new RegExp(`waiting for patronus fleet approve ${c.slice(0, 12)} --group ${GROUP}$`));
    assert.equal(appliedCount(), 2);
    const unknown = await fleet(['approve', 'deadbeef00', '--group', GROUP]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.json.error.message, /commit deadbeef00 has not been seen by the GitOps watcher of group ops: nothing to approve/);
    const notHex = await fleet(['approve', 'HEAD', '--group', GROUP]);
    assert.notEqual(notHex.code, 0);
    assert.match(notHex.json.error.message, /commit "HEAD" is not a commit hash/);
    const ok = await fleet(['approve', c.slice(0, 10), '--group', GROUP, '--by', 'alice', '-m', 'change 42']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.json.commit, c);
    const second = await gitops();
    assert.deepEqual(second.json.map((r: GitopsRecord) => [r.commit, r.state]), [[c, 'rolled-out']]);
    for (const s of Object.values(stubs)) assert.match(s.applied.at(-1)!.message, new RegExp(`\\(git ${c}\\): open 8081 \\(approved by alice: change 42\\)$`));
    // approving it again: it is no longer waiting
    const again = await fleet(['approve', c, '--group', GROUP]);
    assert.equal(again.code, 1);
    assert.match(again.json.error.message, /is rolled-out: only a commit waiting for approval can be approved/);
  });

  it('bad input: an unknown policy and an invalid document are recorded, nothing rolled out, the rollout history says why', async () => {
    const before = appliedCount();
    const badPolicy = await commit({ 'patronus.yaml': JSON.stringify(doc('allow-3', 8082)), '.patronus-fleet.yaml': 'policy: yolo\n' }, 'try yolo');
    const badDoc = await commit({ 'patronus.yaml': 'firewall:\n  rules:\n    - { name: x, action: maybe }\n', '.patronus-fleet.yaml': 'policy: auto\n' }, 'broken');
    const r = await gitops();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.json.map((x: GitopsRecord) => [x.commit, x.state]), [[badPolicy, 'invalid'], [badDoc, 'invalid']]);
    assert.equal(r.json[0].detail, '.patronus-fleet.yaml: policy: "yolo" is not one of auto, tag, approval');
    assert.match(r.json[1].detail, /^node a1: patronus\.yaml: firewall\.rules\[0\]\.action/);
    assert.equal(appliedCount(), before, 'nothing applied anywhere');
    const [newest, older] = await rollouts();
    assert.deepEqual([newest!.state, newest!.git?.commit, older!.state, older!.git?.commit], ['failed', badDoc, 'failed', badPolicy]);
    assert.match(older!.reason!, new RegExp(`^git commit ${badPolicy.slice(0, 12)} invalid, not rolled out: \\.patronus-fleet\\.yaml: policy: "yolo"`));
    assert.match(newest!.reason!, /invalid, not rolled out: node a1: patronus\.yaml: firewall\.rules\[0\]\.action/);
    assert.deepEqual(newest!.waves, []);
    assert.equal((await fleet(['commits', '--group', GROUP])).json[0].rollout, newest!.id);
    const approve = await fleet(['approve', badDoc, '--group', GROUP]);
    assert.equal(approve.code, 1);
    assert.match(approve.json.error.message, /is invalid \(node a1: .*\): only a commit waiting for approval can be approved/);
  });

  it('--verify-signatures: an unsigned commit is refused and recorded; an ssh-signed one goes out', async () => {
    const before = appliedCount();
    const unsigned = await commit({ 'patronus.yaml': JSON.stringify(doc('allow-4', 8083)) }, 'unsigned change');
    const verify = ['--verify-signatures', '--allowed-signers', join(tmp, 'allowed_signers')];
    const r = await gitops(...verify);
    assert.deepEqual(r.json.map((x: GitopsRecord) => [x.commit, x.state]), [[unsigned, 'unsigned']]);
    assert.match(r.json[0].detail, /^signature not verified: /);
    assert.equal(appliedCount(), before);
    assert.match((await rollouts())[0]!.reason!, new RegExp(`^git commit ${unsigned.slice(0, 12)} unsigned, not rolled out: signature not verified`));
    const signed = await commit({ 'patronus.yaml': JSON.stringify(doc('allow-5', 8084)) }, 'signed change', true);
    const r2 = await gitops(...verify);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(r2.json.map((x: GitopsRecord) => [x.commit, x.state]), [[signed, 'rolled-out']]);
    assert.equal(appliedCount(), before + 2);
    // the flags are checked before anything runs
    const lone = await gitops('--allowed-signers', join(tmp, 'allowed_signers'));
    assert.equal(lone.code, 1);
    assert.match(lone.json.error.message, /--allowed-signers needs --verify-signatures/);
  });

  it('patronus fleet abort halts a running rollout; the canary gets its previous desired document back', async () => {
    const previous = (await controller.nodes(GROUP)).find((n) => n.node === 'a1')!.desiredRollout;
    assert.ok(previous);
    const a1 = stubs.a1!;
    let release!: () => void;
    a1.gate = new Promise<void>((r) => (release = r));
    const path = join(tmp, 'slow.json');
    writeFileSync(path, JSON.stringify(doc('allow-6', 8085)));
    const bg = execa('node', [cli, '--json', 'fleet', 'rollout', path, '--group', GROUP, '--canary', '1', '--waves', '100%', '--confirm-within', '60', '--fleet', etcd!.fleetUrl], { reject: false, timeout: 120_000 });
    try {
      let err = '';
      bg.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      await waitFor('the canary to be checking its health', () => a1.checking && /canary: published to a1/.test(err));
      const id = /^(r\S+): /m.exec(err)![1]!;
      const aborted = await fleet(['abort', id]);
      assert.equal(aborted.code, 0, aborted.stderr);
      assert.equal(aborted.json.state, 'aborted');
      assert.match(aborted.json.reason, /^aborted by request during canary; back to their previous document: a1: /);
      const done = await bg;
      assert.equal(done.exitCode, 1);
      assert.equal(JSON.parse(done.stdout).state, 'aborted');
      const rows = await controller.nodes(GROUP);
      assert.equal(rows.find((n) => n.node === 'a1')!.desiredRollout, previous, 'a1 desired: the previous rollout again');
      assert.equal(rows.find((n) => n.node === 'a2')!.desiredRollout, previous, 'a2 never got the aborted one');
      assert.equal((await fleet(['status'])).json.groups[0].running, undefined, 'the lock is free');
      // once its check ends, a1 converges to the previous document again
      release();
      await waitFor('a1 back on the previous rollout', async () => (await controller.nodes(GROUP)).find((n) => n.node === 'a1')!.converged);
      assert.match(a1.applied.at(-1)!.message, new RegExp(`^fleet rollout ${previous} `));
    } finally {
      release?.();
      a1.gate = undefined;
      bg.kill('SIGKILL');
      await bg.catch(() => undefined);
    }
  });

  it('patronus fleet validate --node: one member only; a node outside the group is refused', async () => {
    const path = join(tmp, 'v.json');
    writeFileSync(path, JSON.stringify(doc('allow-7', 8086)));
    const one = await fleet(['validate', path, '--group', GROUP, '--node', 'a2']);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(one.json, { valid: true, members: ['a2'] });
    const other = await fleet(['validate', path, '--group', GROUP, '--node', 'a9']);
    assert.notEqual(other.code, 0);
    assert.match(other.json.error.message, /node a9 is not a member of group ops \(members: a1, a2\)/);
  });
});
