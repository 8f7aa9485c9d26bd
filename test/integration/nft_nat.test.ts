/**
 * nftables filtering and NAT with real TCP/UDP through a gateway namespace
 * running Patronus' rules (Host({netns})):
 *
 *   out (203.0.113.2) --wan0-- gw --lan0-- srv (10.0.1.10)
 *                               \--dmz0-- dmz (10.0.2.10, 1:1 as 198.51.100.10)
 *
 * Port forward 203.0.113.1:8080 -> 10.0.1.10:80 (+ hairpin), masquerade of
 * LAN/DMZ on wan0, 1:1 NAT for the DMZ host, default deny from WAN,
 * established flows across a reload, invalid/mid-stream packets dropped and
 * counted, a broken script changing nothing.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { startServer, connectOnce, Session, type FlowServer } from '../lib/flows.js';
import { Host } from '../../src/system/host.js';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { nftSubsystem, NftError, listTable } from '../../src/nft/subsystem.js';
import type { NftDesired } from '../../src/nft/compile.js';
import { formatIssue } from '../../src/config/issues.js';
import type { ServiceOpening } from '../../src/apply/subsystem.js';

/** what the services would declare: the gateway's own port 2222 open on the WAN, nothing else */
const OPENINGS: ServiceOpening[] = [{ service: 'admin', proto: 'tcp', port: 2222, interfaces: ['wan0'] }];

function compile(doc: ConfigInput): NftDesired {
  const v = validateDocument(doc, () => '');
  assert.ok(v.validated, v.issues.map(formatIssue).join('\n'));
  const { desired, issues } = nftSubsystem.compile({ openings: OPENINGS, config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' });
  assert.deepEqual(issues, []);
  return desired;
}

const baseDoc = (extraRules: unknown[] = []): ConfigInput =>
  ({
    interfaces: [
      { name: 'wan0', zone: 'wan' },
      { name: 'lan0', zone: 'lan' },
      { name: 'dmz0', zone: 'dmz' },
    ],
    aliases: [{ name: 'inside', type: 'network', entries: ['10.0.1.0/24', '10.0.2.0/24'] }],
    firewall: {
      defaults: { input: 'drop', forward: 'drop' },
      zones: [
        { name: 'lan', input: 'accept', forward: 'accept' },
        { name: 'dmz', input: 'drop', forward: 'accept' },
        { name: 'wan', input: 'drop', forward: 'drop', log: 'wan-drop' },
      ],
      rules: [
        { name: 'dmz-7000', from: 'wan', to: 'dmz', protocol: 'tcp', destination: ['10.0.2.10'], ports: [7000], action: 'accept', log: 'dmz-in' },
        { name: 'dmz-7001', from: 'wan', protocol: 'tcp', destination: ['10.0.2.10'], ports: [7001], action: 'reject' },
        ...extraRules,
      ],
      portForwards: [{ name: 'http', interface: 'wan0', protocol: 'tcp', port: 8080, target: '10.0.1.10', targetPort: 80 }, { name: 'dns', interface: 'wan0', protocol: 'udp', port: 5353, target: '10.0.1.10', targetPort: 53 }],
      outboundNat: [{ name: 'inside-out', interface: 'wan0', source: ['inside'], type: 'masquerade' }],
      oneToOne: [{ name: 'dmzhost', interface: 'wan0', external: '198.51.100.10', internal: '10.0.2.10' }],
    },
  }) as ConfigInput;

describe('nftables NAT and stateful filtering in namespaces', { timeout: 300_000, skip: missing('netns', { cmd: 'nft' }, { cmd: 'conntrack' }) }, () => {
  const lab = new Lab();
  let out: Netns, gw: Netns, srv: Netns, dmz: Netns;
  let host: Host;
  let stateDir: string;
  const servers: FlowServer[] = [];
  const counter = async (key: string) => (await nftSubsystem.readCounters(host)).find((c) => c.key === key)?.packets ?? 0;

  before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'pt-nft-'));
    [out, gw, srv, dmz] = [await lab.ns('out'), await lab.ns('gw'), await lab.ns('srv'), await lab.ns('dmz')];
    await lab.veth({ ns: out, dev: 'eth0', address: '203.0.113.2/24' }, { ns: gw, dev: 'wan0', address: '203.0.113.1/24' });
    await lab.veth({ ns: srv, dev: 'eth0', address: '10.0.1.10/24' }, { ns: gw, dev: 'lan0', address: '10.0.1.1/24' });
    await lab.veth({ ns: dmz, dev: 'eth0', address: '10.0.2.10/24' }, { ns: gw, dev: 'dmz0', address: '10.0.2.1/24' });
    await gw.sysctl('net.ipv4.ip_forward', '1');
    await srv.ip('route', 'add', 'default', 'via', '10.0.1.1');
    await dmz.ip('route', 'add', 'default', 'via', '10.0.2.1');
    // the outside only knows the WAN address, plus the 1:1 block routed to the gateway, plus (for the deny test) the inside
    await out.ip('route', 'add', '198.51.100.0/24', 'via', '203.0.113.1');
    await out.ip('route', 'add', '10.0.0.0/16', 'via', '203.0.113.1');
    host = new Host({ netns: gw.name, stateDir });
    servers.push(await startServer(srv, 'tcp', '0.0.0.0', 80, 'srv'));
    servers.push(await startServer(srv, 'udp', '0.0.0.0', 53, 'srv-udp'));
    servers.push(await startServer(dmz, 'tcp', '0.0.0.0', 7000, 'dmz'));
    servers.push(await startServer(out, 'tcp', '0.0.0.0', 9000, 'out'));
    servers.push(await startServer(out, 'udp', '0.0.0.0', 9001, 'out-udp'));
    servers.push(await startServer(gw, 'tcp', '0.0.0.0', 2222, 'gw-admin'));
    servers.push(await startServer(gw, 'tcp', '0.0.0.0', 2223, 'gw-other'));
    const desired = compile(baseDoc());
    assert.deepEqual(await nftSubsystem.validate!(desired, host), []);
    await nftSubsystem.apply(desired, host);
  });

  after(async () => {
    for (const s of servers) s.stop();
    await lab.teardown();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('applies atomically and plans nothing more afterwards (idempotent)', async () => {
    const desired = compile(baseDoc());
    assert.deepEqual(await nftSubsystem.plan(desired, host), []);
    await nftSubsystem.apply(desired, host);
    assert.deepEqual(await nftSubsystem.plan(desired, host), []);
    // the table is the only one, and it is ours
    const { stdout } = await gw.nsenter('nft', ['list', 'tables']);
    assert.equal(stdout.trim(), 'table inet patronus');
  });

  it('port forward: the outside reaches 203.0.113.1:8080 -> 10.0.1.10:80 with its own address', async () => {
    const before = await counter('pf:http');
    const r = await connectOnce(out, 'tcp', '203.0.113.1', 8080);
    console.log(`# port forward tcp: ${r.line} (${r.ms.toFixed(0)} ms)`);
    assert.ok(r.ok, r.line);
    assert.equal(r.server, 'srv');
    assert.equal(r.peer, '203.0.113.2');
    const u = await connectOnce(out, 'udp', '203.0.113.1', 5353);
    console.log(`# port forward udp: ${u.line}`);
    assert.equal(u.server, 'srv-udp');
    assert.equal(u.peer, '203.0.113.2');
    assert.ok((await counter('pf:http')) >= before + 2, 'DNAT and filter rule both counted');
  });

  it('default deny from the WAN: the inside is not reachable directly, and the drop is counted', async () => {
    const before = await counter('policy:forward:wan');
    const r = await connectOnce(out, 'tcp', '10.0.1.10', 80, 700);
    assert.equal(r.ok, false, r.line);
    assert.ok((await counter('policy:forward:wan')) > before);
  });

  it('masquerade: the server outside sees the WAN address (TCP and UDP)', async () => {
    const r = await connectOnce(srv, 'tcp', '203.0.113.2', 9000);
    console.log(`# masquerade tcp: ${r.line}`);
    assert.equal(r.peer, '203.0.113.1');
    const u = await connectOnce(srv, 'udp', '203.0.113.2', 9001);
    console.log(`# masquerade udp: ${u.line}`);
    assert.equal(u.peer, '203.0.113.1');
    assert.ok((await counter('snat:inside-out')) >= 2);
  });

  it('1:1 NAT both ways: 198.51.100.10 reaches 10.0.2.10, which goes out as 198.51.100.10', async () => {
    const inbound = await connectOnce(out, 'tcp', '198.51.100.10', 7000);
    console.log(`# 1:1 inbound: ${inbound.line}`);
    assert.equal(inbound.server, 'dmz');
    assert.equal(inbound.peer, '203.0.113.2');
    const outbound = await connectOnce(dmz, 'tcp', '203.0.113.2', 9000);
    console.log(`# 1:1 outbound: ${outbound.line}`);
    assert.equal(outbound.peer, '198.51.100.10');
    assert.ok((await counter('rule:dmz-7000')) >= 1);
    assert.ok((await counter('1to1:dmzhost')) >= 2);
    // the 1:1 mapping opens nothing by itself: another port stays closed
    const closed = await connectOnce(out, 'tcp', '198.51.100.10', 7002, 700);
    assert.equal(closed.ok, false);
  });

  it('reject answers at once with a TCP reset (a drop would time out)', async () => {
    const r = await connectOnce(out, 'tcp', '198.51.100.10', 7001, 2000);
    console.log(`# reject: ${r.line} after ${r.ms.toFixed(0)} ms`);
    assert.match(r.line, /ECONNREFUSED/);
    assert.ok((await counter('rule:dmz-7001')) >= 1);
  });

  it('openings: the gateway opens exactly the ports services declared, on their interfaces', async () => {
    const open = await connectOnce(out, 'tcp', '203.0.113.1', 2222);
    assert.equal(open.server, 'gw-admin', open.line);
    assert.ok((await counter('opening:admin-tcp-2222')) >= 1);
    const before = await counter('policy:input:wan');
    assert.equal((await connectOnce(out, 'tcp', '203.0.113.1', 2223, 700)).ok, false, 'an undeclared port stays closed');
    assert.ok((await counter('policy:input:wan')) > before);
    // the LAN zone's input policy is accept: both reachable from inside
    assert.equal((await connectOnce(srv, 'tcp', '10.0.1.1', 2223)).server, 'gw-other');
  });

  it('hairpin: inside clients reach the forward on the WAN address, masqueraded so replies come back', async () => {
    const fromDmz = await connectOnce(dmz, 'tcp', '203.0.113.1', 8080);
    console.log(`# hairpin from dmz: ${fromDmz.line}`);
    assert.equal(fromDmz.server, 'srv');
    assert.equal(fromDmz.peer, '10.0.1.1');
    // same subnet as the server (here: the server itself) only works with the hairpin masquerade
    const fromLan = await connectOnce(srv, 'tcp', '203.0.113.1', 8080);
    console.log(`# hairpin from lan: ${fromLan.line}`);
    assert.equal(fromLan.server, 'srv');
    assert.equal(fromLan.peer, '10.0.1.1');
    assert.ok((await counter('builtin:hairpin-masquerade')) >= 2);
  });

  it('an established connection survives a rule reload; the plan shows the change', async () => {
    const s = new Session(out, '203.0.113.1', 8080);
    try {
      assert.match((await s.next()) ?? 'nothing', /^srv peer=203\.0\.113\.2/);
      s.send('before');
      assert.equal(await s.next(), 'srv echo before');
      const changed = compile(baseDoc([{ name: 'extra', from: 'wan', protocol: 'udp', ports: [9999], action: 'reject' }]));
      const plan = await nftSubsystem.plan(changed, host);
      console.log(`# plan:\n${plan.map((c) => `#   ${c.action} ${c.object}\n${(c.detail ?? '').replace(/^/gm, '#     ')}`).join('\n')}`);
      assert.equal(plan.length, 1);
      assert.equal(plan[0]!.object, 'table inet patronus chain forward');
      assert.match(plan[0]!.detail!, /^\+ .*udp dport 9999 .*reject.*patronus:rule:extra/m);
      await nftSubsystem.apply(changed, host);
      s.send('after');
      assert.equal(await s.next(), 'srv echo after');
      assert.deepEqual(await nftSubsystem.plan(changed, host), []);
    } finally {
      s.close();
      await nftSubsystem.apply(compile(baseDoc()), host);
    }
  });

  it('mid-stream packets without a connection (conntrack flushed) are dropped and counted', async () => {
    const s = new Session(srv, '203.0.113.2', 9000);
    try {
      assert.match((await s.next()) ?? 'nothing', /^out peer=203\.0\.113\.1/);
      s.send('one');
      assert.equal(await s.next(), 'out echo one');
      const before = (await counter('builtin:forward-new-not-syn')) + (await counter('builtin:forward-invalid'));
      await gw.nsenter('conntrack', ['-F']);
      s.send('two');
      assert.equal(await s.next(1000), undefined, 'an ACK with no connection must not pass');
      const after = (await counter('builtin:forward-new-not-syn')) + (await counter('builtin:forward-invalid'));
      console.log(`# dropped mid-stream packets: new-not-syn=${await counter('builtin:forward-new-not-syn')} invalid=${await counter('builtin:forward-invalid')}`);
      assert.ok(after > before, `drop counters ${before} -> ${after}`);
      // what the metrics module exports
      const m = await nftSubsystem.metrics!(host);
      console.log(`# verdicts: ${m.verdicts!.map((v) => `${v.verdict}=${v.packets}`).join(' ')}`);
      assert.ok(Number(m.verdicts!.find((v) => v.verdict === 'invalid')?.packets) >= after);
      assert.deepEqual(m.rules!.find((r) => r.rule === 'pf:http')?.action, 'dnat');
      assert.deepEqual(m.rules!.find((r) => r.rule === 'snat:inside-out')?.action, 'masquerade');
    } finally {
      s.close();
    }
  });

  it('a broken script changes nothing; the operator sees nft\'s error', async () => {
    const good = await listTable(host);
    const desired = compile(baseDoc());
    const breakIt = (t: string) => t.replace('chain forward {', 'chain forward {\n\t\tip saddr @no_such_set accept');
    // the script starts with its skeleton (the table without set elements): both broken alike
    const broken: NftDesired = { ...desired, script: breakIt(desired.script), skeleton: breakIt(desired.skeleton) };
    const issues = await nftSubsystem.validate!(broken, host);
    assert.equal(issues.length, 1);
    console.log(`# validate: ${issues[0]!.message.split('\n').join('\n#   ')}`);
    assert.match(issues[0]!.message, /Error/);
    await assert.rejects(nftSubsystem.apply(broken, host), (e: unknown) => {
      assert.ok(e instanceof NftError);
      assert.match(e.message, /no_such_set/);
      return true;
    });
    assert.equal(await listTable(host), good);
    // the rules still work
    assert.ok((await connectOnce(out, 'tcp', '203.0.113.1', 8080)).ok);
  });

  it('nft accepts everything the compiler emits (IPv4/IPv6 alias sets, reject, log, openings, every NAT kind)', async () => {
    const v = validateDocument(
      {
        interfaces: [
          { name: 'wan0', zone: 'wan' },
          { name: 'lan0', zone: 'lan' },
        ],
        aliases: [
          { name: 'mixed', type: 'network', entries: ['10.0.0.0/8', '10.1.0.0/16', '192.0.2.1', '2001:db8::/32', '2001:db8:1::/48'] },
          { name: 'ports', type: 'port', entries: ['22', '80-90', '85-100'] },
        ],
        firewall: {
          zones: [{ name: 'wan', input: 'reject', forward: 'drop', log: 'wan' }],
          rules: [
            { name: 'a', from: 'wan', to: 'lan', source: ['mixed'], protocol: 'tcp_udp', ports: ['ports'], sourcePorts: ['1024-65535'], action: 'reject', log: 'a' },
            { name: 'b', direction: 'input', protocol: 'icmpv6', source: ['2001:db8::/32'], action: 'accept' },
            { name: 'c', protocol: 'icmp', destination: ['mixed', '203.0.113.0/24'], action: 'drop' },
            { name: 'd', protocol: 'udp', ports: [53], action: 'reject' },
          ],
          portForwards: [{ name: 'p', interface: 'wan0', protocol: 'tcp_udp', port: '1000-1010', target: '10.0.1.10', targetPort: 2000, source: ['192.0.2.0/24'], destination: '203.0.113.1', log: 'pf' }],
          outboundNat: [{ name: 'm', interface: 'wan0' }, { name: 's', interface: 'wan0', type: 'snat', address: '203.0.113.9', source: ['mixed'] }, { name: 'n', interface: 'wan0', type: 'none', destination: ['2001:db8::/32'] }],
          oneToOne: [{ name: 'o', interface: 'wan0', external: '203.0.113.20', internal: '10.0.1.20' }],
        },
      },
      () => '',
    );
    assert.ok(v.validated, v.issues.map(formatIssue).join('\n'));
    const { desired, issues } = nftSubsystem.compile({
      openings: [
        { service: 'wg', proto: 'udp', port: 51820, interfaces: ['wan0'] },
        { service: 'ha', proto: 'vrrp', interfaces: [] },
        { service: 'ipsec', proto: 'esp', interfaces: ['wan0'] },
        { service: 'ospf', proto: 'ospf', interfaces: ['lan0'] },
        { service: 'ping', proto: 'icmp', interfaces: [] },
        { service: 'dns', proto: 'tcp', port: 53, interfaces: ['lan0', 'wan0'] },
      ],
      config: v.validated.config,
      aliases: v.validated.aliases,
      readFile: () => '',
    });
    assert.deepEqual(issues, []);
    assert.deepEqual(await nftSubsystem.validate!(desired, host), []);
  });

  it('leaves other tables alone and removes only its own on teardown', async () => {
    await gw.nsenter('nft', ['add', 'table', 'ip', 'hosts_own']);
    await gw.nsenter('nft', ['add', 'chain', 'ip', 'hosts_own', 'c']);
    await nftSubsystem.apply(compile(baseDoc()), host);
    await nftSubsystem.teardown!(host);
    const { stdout } = await execa('nsenter', [`--net=${gw.path}`, '--', 'nft', 'list', 'tables']);
    assert.equal(stdout.trim(), 'table ip hosts_own');
    assert.deepEqual(await nftSubsystem.readCounters(host), []);
  });
});
