/**
 * The fast path on a real veth in lab namespaces, configured through the
 * subsystem: UDP from several source addresses of the sender, counted at
 * the receiver. Covers verdicts and exact counters, hitless rule-set
 * replacement under traffic, and a SIGKILLed control plane whose successor
 * adopts the running data plane.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { createInterface } from 'node:readline';
import { validateDocument } from '../../src/domains.js';
import { queryXdp, unpin } from '../../src/bpf/index.js';
import { compileFastpathSection, fastpathSubsystem, observeFastpath, openFastpath } from '../../src/fastpath/subsystem.js';
import { IncompatibleDataPlaneError, removePins } from '../../src/fastpath/dataplane.js';
import { Host } from '../../src/system/host.js';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { UdpReceiver, sendUdp, startUdp, settle, expectAtLeast } from '../lib/udptraffic.js';

const CHILD = fileURLToPath(new URL('../lib/fastpath_child.js', import.meta.url));

describe('fast path with real traffic through a veth', { timeout: 300_000, skip: missing('netns') }, () => {
  const lab = new Lab();
  let a: Netns;
  let b: Netns;
  let host: Host;
  let bpfRoot: string;
  let stateDir: string;
  let rx: UdpReceiver;
  // control-plane children run outside the lab namespaces (teardown would not find them): killed in after
  const controlPlanes: ResultPromise[] = [];

  before(async () => {
    a = await lab.ns('a');
    b = await lab.ns('b');
    await lab.veth({ ns: a, dev: 'eth0', address: '192.0.2.1/24' }, { ns: b, dev: 'eth0', address: '192.0.2.2/24' });
    for (const extra of ['192.0.2.11/24', '192.0.2.12/24', '192.0.2.13/24']) await a.ip('addr', 'add', extra, 'dev', 'eth0');
    for (const v6 of ['2001:db8::1/64', '2001:db8::11/64']) await a.ip('addr', 'add', v6, 'dev', 'eth0', 'nodad');
    await b.ip('addr', 'add', '2001:db8::2/64', 'dev', 'eth0', 'nodad');
    bpfRoot = mkdtempSync('/sys/fs/bpf/pt-fp-');
    stateDir = mkdtempSync(join(tmpdir(), 'pt-fp-'));
    host = new Host({ netns: b.name, stateDir, bpfRoot });
    rx = await UdpReceiver.start(b, '::', 0);
    // neighbours resolved before counting starts
    await a.exec('ping', ['-c', '3', '-i', '0.2', '-W', '1', '192.0.2.2']);
    await a.exec('ping', ['-6', '-c', '3', '-i', '0.2', '-W', '1', '2001:db8::2']);
  });
  after(async () => {
    rx?.stop();
    for (const c of controlPlanes) c.kill('SIGKILL');
    try {
      if (host) await fastpathSubsystem.teardown!(host);
    } finally {
      if (bpfRoot) removePins(join(bpfRoot, 'fastpath'));
      if (bpfRoot) rmSync(bpfRoot, { recursive: true, force: true });
      if (stateDir) rmSync(stateDir, { recursive: true, force: true });
      await lab.teardown();
    }
  });

  const doc = (rules: unknown[], defaultPolicy: 'pass' | 'drop' = 'pass') => ({ fastpath: { interfaces: [{ name: 'eth0', defaultPolicy }], rules } });
  async function apply(document: unknown) {
    const { validated, issues } = validateDocument(document, () => '');
    assert.deepEqual(issues, []);
    const { desired, issues: ci } = compileFastpathSection(validated!.config.fastpath, validated!);
    assert.deepEqual(ci, []);
    await fastpathSubsystem.apply(desired, host);
    return desired;
  }
  const v4 = (addr: string) => `::ffff:${addr}`; // the receiver is dual-stack
  /**
   * A rule's count since `from` once it reaches `want` (at most 10 s): dropped datagrams never reach the
   * receiver, so its standing still does not say they were judged (a loaded machine defers the veth's NAPI
   * poll to ksoftirqd). Exactness is still asserted by the caller.
   */
  async function ruleCountReaching(dp: { ruleCounters(): { name: string; packets: bigint }[] }, rule: string, from: bigint, want: bigint): Promise<bigint> {
    const n = () => dp.ruleCounters().find((r) => r.name === rule)!.packets - from;
    for (const end = Date.now() + 10_000; n() < want && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
    return n();
  }
  const delta = (after: Record<string, number>, before: Record<string, number>, k: string) => (after[k] ?? 0) - (before[k] ?? 0);

  it('drops, rate-limits and passes by source address with exact counters', async () => {
    const desired = await apply(
      doc([
        { name: 'drop-11', source: '192.0.2.11', protocol: 'udp', action: 'drop' },
        { name: 'limit-12', source: '192.0.2.12', protocol: 'udp', action: 'rate-limit', rateLimit: { packetsPerSecond: 50, packetBurst: 20 } },
        { name: 'drop-v6-11', source: '2001:db8::11', protocol: 'udp', action: 'drop' },
        { name: 'pass-lan-udp', source: ['192.0.2.0/24', '2001:db8::/64'], protocol: 'udp', action: 'pass' },
      ]),
    );
    using dp = observeFastpath(host);
    assert.equal(dp.interfaces()[0]!.ingress.xdpMode, 'native');
    assert.deepEqual(await fastpathSubsystem.plan(desired, host), [], 'nothing left to change after apply');

    const c0 = new Map(dp.ruleCounters().map((r) => [r.name, r]));
    const before = await rx.counts();
    const [sent4, sent6] = await Promise.all([
      sendUdp(a, '192.0.2.2', rx.port, 200, 1000, ['192.0.2.1', '192.0.2.11', '192.0.2.12', '192.0.2.13']),
      sendUdp(a, '2001:db8::2', rx.port, 200, 1000, ['2001:db8::1', '2001:db8::11']),
    ]);
    const got = await settle(rx, { ...expectAtLeast(before, sent4, ['192.0.2.1', '192.0.2.13'], v4), ...expectAtLeast(before, sent6, ['2001:db8::1']) });
    // the receiver standing still says nothing about datagrams the fast path dropped after the last one it
    // got: a loaded machine defers the veth's NAPI poll to ksoftirqd. Read once every sent datagram has a
    // verdict (at most 10 s); the counts are still asserted exactly below.
    let c1 = new Map(dp.ruleCounters().map((r) => [r.name, r]));
    const d = (n: string, f: 'packets' | 'limited' = 'packets') => Number(c1.get(n)![f] - c0.get(n)![f]);
    const judged = () => d('drop-11') + d('drop-v6-11') + d('pass-lan-udp') + d('limit-12');
    const total = Object.values(sent4).reduce((a, b) => a + b, 0) + Object.values(sent6).reduce((a, b) => a + b, 0);
    for (const end = Date.now() + 10_000; judged() < total && Date.now() < end; c1 = new Map(dp.ruleCounters().map((r) => [r.name, r]))) await new Promise((r) => setTimeout(r, 50));

    assert.ok(sent4['192.0.2.1']! > 150, `sender managed ${JSON.stringify(sent4)}`);
    assert.equal(delta(got, before, v4('192.0.2.1')), sent4['192.0.2.1']);
    assert.equal(delta(got, before, v4('192.0.2.13')), sent4['192.0.2.13']);
    assert.equal(delta(got, before, v4('192.0.2.11')), 0);
    assert.equal(delta(got, before, '2001:db8::1'), sent6['2001:db8::1']);
    assert.equal(delta(got, before, '2001:db8::11'), 0);
    assert.equal(d('drop-11'), sent4['192.0.2.11']);
    assert.equal(d('drop-v6-11'), sent6['2001:db8::11']);
    assert.equal(d('pass-lan-udp'), sent4['192.0.2.1']! + sent4['192.0.2.13']! + sent6['2001:db8::1']!);
    // every datagram from .12 was judged by the limiter; those it passed arrived
    assert.equal(d('limit-12'), sent4['192.0.2.12']);
    const passed12 = delta(got, before, v4('192.0.2.12'));
    assert.equal(passed12, d('limit-12') - d('limit-12', 'limited'));
    // burst 20 + 50/s over the ~1 s the sender ran (fewer when a loaded machine bunches the sends)
    assert.ok(passed12 >= 30 && passed12 <= 80, `rate-limited source passed ${passed12} of ${sent4['192.0.2.12']}`);
  });

  it('plans map entries added and removed against the running rule set', async () => {
    await apply(doc([{ name: 'drop-a', source: '192.0.2.11', action: 'drop' }, { name: 'drop-b', source: '198.51.100.0/24', action: 'drop' }]));
    const { validated } = validateDocument(doc([{ name: 'drop-a', source: '192.0.2.12', action: 'drop' }, { name: 'drop-c', source: '198.51.100.0/24', action: 'drop' }]), () => '');
    const { desired } = compileFastpathSection(validated!.config.fastpath, validated!);
    const plan = (await fastpathSubsystem.plan(desired, host)).map((c) => `${c.action} ${c.object}${c.detail ? `: ${c.detail}` : ''}`);
    assert.deepEqual(plan.sort(), [
      'add map src_v4 entry: 192.0.2.12/32 -> rules drop-a (#0)',
      'add rule drop-c: #1 drop',
      'remove map src_v4 entry: 192.0.2.11/32',
      'remove rule drop-b',
    ]);
    // port entries read as protocol name and port, and name the rules they allow (not "protocol 17 port 19/16 -> rules 0,1,2")
    const withPort = validateDocument(doc([{ name: 'drop-a', source: '192.0.2.11', action: 'drop' }, { name: 'drop-b', source: '198.51.100.0/24', action: 'drop' }, { name: 'drop-chargen', protocol: 'udp', destinationPorts: 19, action: 'drop' }]), () => '');
    const portPlan = (await fastpathSubsystem.plan(compileFastpathSection(withPort.validated!.config.fastpath, withPort.validated!).desired, host)).map((c) => `${c.action} ${c.object}${c.detail ? `: ${c.detail}` : ''}`);
    assert.ok(portPlan.includes('add map dport entry: udp port 19 -> rules drop-a (#0), drop-b (#1), drop-chargen (#2)'), portPlan.join('\n'));
  });

  it('filters egress with tc: an out rule drops by destination, other traffic leaves', async () => {
    await apply({
      fastpath: {
        interfaces: [{ name: 'eth0', egress: { enabled: true, defaultPolicy: 'pass' } }],
        rules: [{ name: 'no-udp-to-13', direction: 'out', destination: '192.0.2.13', protocol: 'udp', action: 'drop' }],
      },
    });
    const rx1 = await UdpReceiver.start(a, '192.0.2.1', 0);
    const rx13 = await UdpReceiver.start(a, '192.0.2.13', rx1.port);
    try {
      using dp = observeFastpath(host);
      assert.equal(dp.interfaces()[0]!.egress.attached, true);
      const c0 = dp.ruleCounters()[0]!.packets;
      const [to1, to13] = await Promise.all([sendUdp(b, '192.0.2.1', rx1.port, 200, 500, ['192.0.2.2']), sendUdp(b, '192.0.2.13', rx1.port, 200, 500, ['192.0.2.2'])]);
      const got1 = await settle(rx1, expectAtLeast({}, to1, ['192.0.2.2']));
      const got13 = await settle(rx13);
      assert.equal(got1['192.0.2.2'], to1['192.0.2.2']);
      assert.equal(got13['192.0.2.2'] ?? 0, 0);
      assert.equal(dp.ruleCounters()[0]!.packets - c0, BigInt(to13['192.0.2.2']!));
    } finally {
      rx1.stop();
      rx13.stop();
    }
    // turning egress off detaches the tc program
    await apply(doc([]));
    using dp = observeFastpath(host);
    assert.equal(dp.interfaces()[0]!.egress.attached, false);
  });

  it('replaces the rule set many times under traffic: no allowed packet lost, no denied packet passed', async () => {
    const filler = (n: number, seed: number) => Array.from({ length: n }, (_, i) => ({ name: `filler-${seed}-${i}`, source: `10.${seed}.${i >> 8}.${i & 255}`, protocol: 'tcp', destinationPorts: 1000 + i, action: 'drop' }));
    // X: deny first, allow all, default drop. Y: 300 other rules, allow .1, deny everything, default pass.
    // Mixing X's vectors with Y's actions (or defaults) would pass .11 or drop .1.
    const X = doc([{ name: 'deny-11', source: '192.0.2.11', action: 'drop' }, ...filler(100, 1), { name: 'allow-all', action: 'pass' }], 'drop');
    const Y = doc([...filler(300, 2), { name: 'allow-1', source: '192.0.2.1', action: 'pass' }, { name: 'deny-all', protocol: 'udp', action: 'drop' }], 'pass');
    const dX = await apply(X);
    const dY = await apply(Y);
    // swap through the data plane itself, as fast as it goes (the subsystem adds
    // validation, compilation and interface lookups around the same call)
    using dp = await openFastpath(host);
    const ifindex = await host.ifindex('eth0');
    const before = await rx.counts();
    // traffic until at least 10 swaps and 3 s have passed (a fixed 3 s of traffic allowed fewer swaps on a
    // loaded machine: 'only N swaps' failed while nothing was wrong); at most 120 s
    const traffic = startUdp(a, '192.0.2.2', rx.port, 2000, 120_000, ['192.0.2.1', '192.0.2.11']);
    let swaps = 0;
    let sent: Record<string, number>;
    try {
      for (const t0 = Date.now(); (swaps < 10 || Date.now() - t0 < 3000) && !traffic.done; swaps++) await dp.apply(swaps % 2 ? dY : dX, () => ifindex);
    } finally {
      sent = await traffic.stop();
    }
    const got = await settle(rx, expectAtLeast(before, sent, ['192.0.2.1'], v4));
    console.log(`# ${swaps} rule-set swaps under traffic; sent ${JSON.stringify(sent)}`);
    assert.ok(swaps >= 10, `only ${swaps} rule-set swaps happened during the traffic`);
    assert.ok(sent['192.0.2.1']! > 1500, `sender managed ${JSON.stringify(sent)}`);
    assert.equal(delta(got, before, v4('192.0.2.1')), sent['192.0.2.1'], `allowed packets lost across ${swaps} swaps`);
    assert.equal(delta(got, before, v4('192.0.2.11')), 0, `denied packets passed across ${swaps} swaps`);
  });

  it('keeps filtering while the control plane is SIGKILLed and restarted, and the new one adopts the data plane', async () => {
    const document = doc([
      { name: 'deny-11', source: '192.0.2.11', protocol: 'udp', action: 'drop' },
      { name: 'allow-udp', protocol: 'udp', action: 'pass' },
    ]);
    const startChild = async () => {
      const child = execa(process.execPath, [CHILD, b.name, stateDir, bpfRoot, JSON.stringify(document)], { reject: false, buffer: false, stdin: 'ignore' });
      controlPlanes.push(child);
      const it = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      let err = '';
      child.stderr!.on('data', (x: Buffer) => (err += x.toString()));
      let timer: NodeJS.Timeout | undefined;
      try {
        // generous: a loaded machine takes its time to start node, compile and load
        const line = await Promise.race([it.next(), new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`control plane child did not apply within 60 s: ${err}`)), 60000)))]);
        if (line.done) throw new Error(`control plane child exited: ${err}`);
        return { child, info: JSON.parse(String(line.value)) as { pinnedBefore: boolean; progId: number } };
      } catch (e) {
        child.kill('SIGKILL'); // it runs outside the lab namespaces: teardown would not find it
        throw e;
      } finally {
        clearTimeout(timer);
      }
    };
    // start from nothing: the first child loads, the second adopts
    await fastpathSubsystem.teardown!(host);
    const first = await startChild();
    assert.equal(first.info.pinnedBefore, false);
    const ifindex = await host.ifindex('eth0');
    let c0: bigint;
    {
      using dp = observeFastpath(host);
      c0 = dp.ruleCounters().find((r) => r.name === 'deny-11')!.packets;
    }
    const before = await rx.counts();
    // traffic across the kill, the checks and the second start, stopped 500 ms after the adoption
    // (a fixed 6 s could end before the second control plane ran on a loaded machine)
    const traffic = startUdp(a, '192.0.2.2', rx.port, 1000, 120_000, ['192.0.2.1', '192.0.2.11']);
    try {
      await new Promise((r) => setTimeout(r, 500));
      first.child.kill('SIGKILL');
      await (first.child as ResultPromise).catch(() => {});
      // while no control plane runs, the program stays attached and filtering (wait for 300 packets, not a fixed time)
      const mid = await rx.counts();
      let midLater = mid;
      for (const end = Date.now() + 5000; Date.now() < end && delta(midLater, mid, v4('192.0.2.1')) <= 300; midLater = await rx.counts()) await new Promise((r) => setTimeout(r, 100));
      assert.equal(host.inNetns(() => queryXdp(ifindex)).progId, first.info.progId);
      assert.ok(delta(midLater, mid, v4('192.0.2.1')) > 300, 'allowed traffic kept flowing with no control plane');
      assert.equal(delta(midLater, mid, v4('192.0.2.11')), 0);
      const second = await startChild();
      try {
        assert.equal(second.info.pinnedBefore, true, 'the restarted control plane found the pinned data plane');
        assert.equal(second.info.progId, first.info.progId, 'adopted, not reloaded: the program id is unchanged');
        assert.equal(traffic.done, false, 'traffic ran while the second control plane adopted the data plane');
        await new Promise((r) => setTimeout(r, 500));
        const sent = await traffic.stop();
        const got = await settle(rx, expectAtLeast(before, sent, ['192.0.2.1'], v4));
        assert.equal(delta(got, before, v4('192.0.2.1')), sent['192.0.2.1']);
        assert.equal(delta(got, before, v4('192.0.2.11')), 0);
        using dp = observeFastpath(host);
        // counters were adopted too: they cover the whole run, across both control planes
        assert.equal(await ruleCountReaching(dp, 'deny-11', c0, BigInt(sent['192.0.2.11']!)), BigInt(sent['192.0.2.11']!));
        assert.equal(host.inNetns(() => queryXdp(ifindex)).progId, first.info.progId);
      } finally {
        second.child.kill('SIGKILL');
        await (second.child as ResultPromise).catch(() => {});
      }
    } finally {
      if (!traffic.done) await traffic.stop().catch(() => {});
    }
  });

  it('changes map sizes under traffic by swapping in a new data plane atomically (counters and blocklist kept)', async () => {
    const rules = [
      { name: 'deny-11', source: '192.0.2.11', protocol: 'udp', action: 'drop' },
      { name: 'allow-udp', protocol: 'udp', action: 'pass' },
    ];
    await apply({ fastpath: { interfaces: [{ name: 'eth0' }], rules } });
    let oldId: number;
    let c0: bigint;
    {
      using dp = observeFastpath(host);
      oldId = dp.xdp.info.id;
      c0 = dp.ruleCounters().find((r) => r.name === 'deny-11')!.packets;
      dp.block('192.0.2.13', 0);
    }
    const before = await rx.counts();
    // traffic from 500 ms before the swap to 500 ms after it, however long it takes (a fixed 2 s could end first)
    const traffic = startUdp(a, '192.0.2.2', rx.port, 1000, 120_000, ['192.0.2.1', '192.0.2.11', '192.0.2.13']);
    let sent: Record<string, number>;
    try {
      await new Promise((r) => setTimeout(r, 500));
      const bigger = { fastpath: { interfaces: [{ name: 'eth0' }], rules, capacity: { prefixes: 4096, portPrefixes: 512 } } };
      const { validated } = validateDocument(bigger, () => '');
      const { desired } = compileFastpathSection(validated!.config.fastpath, validated!);
      const plan = await fastpathSubsystem.plan(desired, host);
      assert.ok(plan.some((c) => c.action === 'restart' && c.object === 'data plane' && /prefixes 262144 -> 4096/.test(c.detail ?? '')), JSON.stringify(plan));
      await fastpathSubsystem.apply(desired, host);
      assert.equal(traffic.done, false, 'traffic ran through the swap');
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      sent = await traffic.stop();
    }
    const got = await settle(rx, expectAtLeast(before, sent, ['192.0.2.1'], v4));
    using dp = observeFastpath(host);
    assert.notEqual(dp.xdp.info.id, oldId, 'a new program was swapped in');
    assert.equal(host.inNetns(() => queryXdp(dp.interfaces()[0]!.ifindex)).progId, dp.xdp.info.id);
    assert.equal(dp.capacity.prefixes, 4096);
    assert.equal(delta(got, before, v4('192.0.2.1')), sent['192.0.2.1'], 'allowed packets lost during the swap');
    assert.equal(delta(got, before, v4('192.0.2.11')), 0);
    assert.equal(delta(got, before, v4('192.0.2.13')), 0, 'the blocklist was carried over');
    assert.equal(await ruleCountReaching(dp, 'deny-11', c0, BigInt(sent['192.0.2.11']!)), BigInt(sent['192.0.2.11']!), 'counters carried over');
    assert.deepEqual(dp.listBlocked(), [{ address: '192.0.2.13' }]);
    dp.unblock('192.0.2.13');
  });

  it('replaces a pinned data plane of another Patronus version under traffic (upgrade)', async () => {
    const rules = [
      { name: 'deny-11', source: '192.0.2.11', protocol: 'udp', action: 'drop' },
      { name: 'allow-udp', protocol: 'udp', action: 'pass' },
    ];
    const desired = await apply({ fastpath: { interfaces: [{ name: 'eth0' }], rules } });
    const pinDir = join(bpfRoot, 'fastpath');
    let oldId: number;
    {
      using dp = observeFastpath(host);
      oldId = dp.xdp.info.id;
    }
    // an older build's pins: one map this build needs is not there
    unpin(join(pinDir, 'gen_meta'));
    assert.throws(() => observeFastpath(host), IncompatibleDataPlaneError, 'observers never load programs');
    const plan = await fastpathSubsystem.plan(desired, host);
    assert.ok(plan.some((c) => c.action === 'change' && /another Patronus version/.test(c.detail ?? '')), JSON.stringify(plan));

    const before = await rx.counts();
    const traffic = startUdp(a, '192.0.2.2', rx.port, 1000, 120_000, ['192.0.2.1', '192.0.2.11']);
    let sent: Record<string, number>;
    try {
      await new Promise((r) => setTimeout(r, 500));
      await fastpathSubsystem.apply(desired, host);
      assert.equal(traffic.done, false, 'traffic ran through the upgrade');
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      sent = await traffic.stop();
    }
    const got = await settle(rx, expectAtLeast(before, sent, ['192.0.2.1'], v4));
    using dp = observeFastpath(host);
    assert.notEqual(dp.xdp.info.id, oldId, 'the new build\'s program runs');
    assert.equal(host.inNetns(() => queryXdp(dp.interfaces()[0]!.ifindex)).progId, dp.xdp.info.id);
    assert.equal(existsSync(`${pinDir}_old`), false, 'the superseded pins are gone');
    assert.equal(delta(got, before, v4('192.0.2.1')), sent['192.0.2.1'], 'allowed packets lost during the upgrade');
    assert.equal(delta(got, before, v4('192.0.2.11')), 0, 'denied packets passed during the upgrade');
  });
});
