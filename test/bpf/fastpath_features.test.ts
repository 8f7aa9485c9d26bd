/**
 * Pay per feature under bpf_prog_test_run: a generation looks up only the
 * fields its rules constrain (gen_config.features) and the blocklist only
 * while it holds entries (block_active). Each fixture asserts the kernel
 * state (which lookups the active generation makes) and then the verdicts
 * and counters, so a skipped lookup that changed a verdict fails here.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { XDP } from '../../src/bpf/index.js';
import { compileFastpath } from '../../src/fastpath/compile.js';
import { FastpathDataPlane, removePins, type VerdictCounters } from '../../src/fastpath/dataplane.js';
import { fastpathSchema, type FastpathConfig } from '../../src/fastpath/schema.js';
import type { Verdict } from '../../src/fastpath/layout.js';
import { frame, TCP } from '../lib/packets.js';
import { missing } from '../lib/skip.js';

const CAP = { prefixes: 1024, portPrefixes: 1024, rateLimitSources: 1024, blocklist: 1024 };

function config(rules: unknown[], interfaces: unknown[] = [{ name: 'lo', defaultPolicy: 'pass' }]): FastpathConfig {
  return fastpathSchema.parse({ interfaces, rules, capacity: CAP });
}

describe('fast path: lookups only for the fields the rules use', { timeout: 300_000, skip: missing('root') }, () => {
  let pinDir: string;
  let dp: FastpathDataPlane;
  const ifindexOf = (n: string) => (n === 'lo' ? 1 : n === 'big0' ? 70000 : 424242);

  before(async () => {
    pinDir = mkdtempSync('/sys/fs/bpf/pt-fastpath-feat-');
    dp = await FastpathDataPlane.open({ pinDir, capacity: CAP });
  });
  after(() => {
    dp?.close();
    if (pinDir) removePins(pinDir);
  });

  async function apply(cfg: FastpathConfig): Promise<void> {
    const { desired, issues } = compileFastpath({ fastpath: cfg, aliases: new Map() });
    assert.deepEqual(issues, []);
    await dp.apply(desired, ifindexOf);
  }

  async function check(name: string, data: Buffer, verdict: number, counts: Verdict[], rules: string[] = []) {
    const v0 = dp.verdictCounters().ingress;
    const r0 = new Map(dp.ruleCounters().map((c) => [c.name, c.packets]));
    const r = await dp.xdp.testRun({ data });
    assert.equal(r.retval, verdict, `${name}: verdict`);
    const v1 = dp.verdictCounters().ingress;
    for (const k of Object.keys(v1) as Verdict[]) {
      assert.equal((v1 as VerdictCounters)[k].packets - (v0 as VerdictCounters)[k].packets, counts.includes(k) ? 1n : 0n, `${name}: verdict counter ${k}`);
    }
    for (const c of dp.ruleCounters()) assert.equal(c.packets - (r0.get(c.name) ?? 0n), rules.includes(c.name) ? 1n : 0n, `${name}: rule counter ${c.name}`);
  }

  it('source prefixes only: one lookup; a port rule turns the port lookups on and matches', async () => {
    await apply(config([{ name: 'drop-src', source: '198.51.100.0/24', action: 'drop' }]));
    assert.deepEqual(dp.lookups(), ['src_v4', 'src_v4_dir']);
    await check('source rule', frame({ src: '198.51.100.9', proto: 'tcp', dport: 22 }), XDP.DROP, ['rule_drop'], ['drop-src']);
    await check('other source, no other rule', frame({ src: '10.1.1.1', proto: 'tcp', dport: 22 }), XDP.PASS, ['default_pass']);

    await apply(config([
      { name: 'drop-src', source: '198.51.100.0/24', action: 'drop' },
      { name: 'drop-ssh', protocol: 'tcp', destinationPorts: 22, action: 'drop' },
    ]));
    // protocol + port constrain both port maps (the protocol rides in the port key)
    assert.deepEqual(dp.lookups(), ['src_v4', 'sport', 'dport', 'src_v4_dir', 'sport_arr', 'dport_arr']);
    await check('port rule now matches', frame({ src: '10.1.1.1', proto: 'tcp', dport: 22 }), XDP.DROP, ['rule_drop'], ['drop-ssh']);
    await check('other port', frame({ src: '10.1.1.1', proto: 'tcp', dport: 23 }), XDP.PASS, ['default_pass']);
    await check('other protocol, same port', frame({ src: '10.1.1.1', proto: 'udp', dport: 22 }), XDP.PASS, ['default_pass']);
    await check('source rule still first', frame({ src: '198.51.100.9', proto: 'tcp', dport: 22 }), XDP.DROP, ['rule_drop'], ['drop-src']);
  });

  it('a field used by only one family: the other family does not match that rule', async () => {
    await apply(config([
      { name: 'v6-only', source: '2001:db8:bad::/48', action: 'drop' },
      { name: 'dst-v4', destination: '10.99.0.0/16', action: 'drop' },
    ]));
    assert.deepEqual(dp.lookups(), ['dst_v4', 'src_v6', 'dst_v4_dir', 'src_v6_dir']);
    // IPv4 skips its source lookup: the IPv6-only rule must still not apply to it
    await check('v4 packet, v6-only rule', frame({ src: '10.1.1.1', dst: '10.1.1.2' }), XDP.PASS, ['default_pass']);
    await check('v4 destination rule', frame({ src: '10.1.1.1', dst: '10.99.1.2' }), XDP.DROP, ['rule_drop'], ['dst-v4']);
    // IPv6 skips its destination lookup: the IPv4-only destination rule must not apply
    await check('v6 packet in the v6 rule', frame({ src: '2001:db8:bad::1', dst: '2001:db8::2' }), XDP.DROP, ['rule_drop'], ['v6-only']);
    await check('v6 packet outside it', frame({ src: '2001:db8:bae::1', dst: '2001:db8::2' }), XDP.PASS, ['default_pass']);
  });

  it('rules without any match field and TCP flags: no field lookup, then the flags lookup', async () => {
    await apply(config([
      { name: 'count-all', action: 'count' },
      { name: 'drop-all', action: 'drop' },
    ]));
    assert.deepEqual(dp.lookups(), []);
    await check('every packet: counted, then dropped', frame({ src: '10.1.1.1' }), XDP.DROP, ['rule_drop'], ['count-all', 'drop-all']);

    await apply(config([
      { name: 'syn-drop', protocol: 'tcp', tcpFlags: 'syn,!ack', action: 'drop' },
    ]));
    assert.deepEqual(dp.lookups(), ['sport', 'dport', 'flags', 'sport_arr', 'dport_arr']);
    await check('SYN', frame({ src: '10.1.1.1', proto: 'tcp', dport: 80, tcpFlags: TCP.SYN }), XDP.DROP, ['rule_drop'], ['syn-drop']);
    await check('SYN+ACK', frame({ src: '10.1.1.1', proto: 'tcp', dport: 80, tcpFlags: TCP.SYN | TCP.ACK }), XDP.PASS, ['default_pass']);
  });

  it('ports by array for TCP and UDP; ICMP and later fragments through the tries', async () => {
    await apply(config([
      { name: 'tcp-range', protocol: 'tcp', destinationPorts: '8000-8100', action: 'drop' },
      { name: 'udp-src', protocol: 'udp', sourcePorts: 53, action: 'pass' },
      { name: 'echo', protocol: 'icmp', icmpType: 8, action: 'drop' },
      { name: 'udp-any', protocol: 'udp', action: 'drop' },
    ]));
    assert.deepEqual(dp.lookups(), ['sport', 'dport', 'sport_arr', 'dport_arr']);
    await check('TCP in the range', frame({ src: '10.1.1.1', proto: 'tcp', dport: 8050 }), XDP.DROP, ['rule_drop'], ['tcp-range']);
    await check('TCP just above', frame({ src: '10.1.1.1', proto: 'tcp', dport: 8101 }), XDP.PASS, ['default_pass']);
    await check('UDP from port 53', frame({ src: '10.1.1.1', proto: 'udp', sport: 53, dport: 8050 }), XDP.PASS, ['rule_pass'], ['udp-src']);
    await check('UDP from elsewhere', frame({ src: '10.1.1.1', proto: 'udp', sport: 54, dport: 8050 }), XDP.DROP, ['rule_drop'], ['udp-any']);
    await check('ICMP echo (trie)', frame({ src: '10.1.1.1', proto: 'icmp', icmpType: 8 }), XDP.DROP, ['rule_drop'], ['echo']);
    await check('ICMP reply (trie)', frame({ src: '10.1.1.1', proto: 'icmp', icmpType: 0 }), XDP.PASS, ['default_pass']);
    await check('later UDP fragment: no ports, protocol-only rule (trie)', frame({ src: '10.1.1.1', proto: 'udp', sport: 53, fragOffset: 100 }), XDP.DROP, ['rule_drop', 'fragment'], ['udp-any']);
  });

  it('IPv4 through DIR-16-8 tables: /16 slots, /24 chunks, and the trie below /24', async () => {
    await apply(config([
      { name: 'pass-host', source: '10.1.2.3', action: 'pass' },
      { name: 'drop-28', source: '10.1.2.16/28', action: 'drop' },
      { name: 'pass-24', source: '10.1.2.0/24', action: 'pass' },
      { name: 'drop-8', source: '10.0.0.0/8', action: 'drop' },
      { name: 'drop-dst', destination: ['192.0.2.0/24', '198.51.100.128/25'], action: 'drop' },
    ]));
    assert.deepEqual(dp.lookups(), ['src_v4', 'dst_v4', 'src_v4_dir', 'dst_v4_dir']);
    const d = (dst: string) => ({ dst, proto: 'udp' as const, dport: 7 });
    await check('/32 inside a /24 holding longer prefixes (trie)', frame({ src: '10.1.2.3', ...d('10.9.9.9') }), XDP.PASS, ['rule_pass'], ['pass-host']);
    await check('/28 (trie)', frame({ src: '10.1.2.20', ...d('10.9.9.9') }), XDP.DROP, ['rule_drop'], ['drop-28']);
    await check('rest of that /24 (trie)', frame({ src: '10.1.2.200', ...d('10.9.9.9') }), XDP.PASS, ['rule_pass'], ['pass-24']);
    await check('another /24 of the same /16 (chunk)', frame({ src: '10.1.3.1', ...d('10.9.9.9') }), XDP.DROP, ['rule_drop'], ['drop-8']);
    await check('another /16 of the /8 (top table)', frame({ src: '10.200.3.1', ...d('10.9.9.9') }), XDP.DROP, ['rule_drop'], ['drop-8']);
    await check('outside every prefix', frame({ src: '11.0.0.1', ...d('10.9.9.9') }), XDP.PASS, ['default_pass']);
    await check('destination /24 (chunk)', frame({ src: '11.0.0.1', ...d('192.0.2.77') }), XDP.DROP, ['rule_drop'], ['drop-dst']);
    await check('destination /25 (trie)', frame({ src: '11.0.0.1', ...d('198.51.100.200') }), XDP.DROP, ['rule_drop'], ['drop-dst']);
    await check('destination, other half of that /24 (trie)', frame({ src: '11.0.0.1', ...d('198.51.100.100') }), XDP.PASS, ['default_pass']);
  });

  it('blocklist: looked up only while it holds entries', async () => {
    await apply(config([{ name: 'pass-all', action: 'pass' }]));
    assert.deepEqual(dp.blocklistChecked(), { v4: false, v6: false });
    dp.block('10.7.7.7', 0);
    assert.deepEqual(dp.blocklistChecked(), { v4: true, v6: false });
    await check('blocked', frame({ src: '10.7.7.7' }), XDP.DROP, ['blocked']);
    dp.block('2001:db8::7', 0);
    assert.deepEqual(dp.blocklistChecked(), { v4: true, v6: true });
    await check('blocked v6', frame({ src: '2001:db8::7', dst: '2001:db8::2' }), XDP.DROP, ['blocked']);
    dp.unblock('10.7.7.7');
    assert.deepEqual(dp.blocklistChecked(), { v4: false, v6: true });
    await check('unblocked', frame({ src: '10.7.7.7' }), XDP.PASS, ['rule_pass'], ['pass-all']);
    // an expired entry is dropped from the list (and the lookup with it) when the list is read
    dp.unblock('2001:db8::7');
    dp.block('2001:db8::8', 0.05);
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual(dp.listBlocked(), []);
    assert.deepEqual(dp.blocklistChecked(), { v4: false, v6: false });
  });

  it('interfaces by slot: unmanaged until configured, unmanaged again when removed, large ifindexes too', async () => {
    await apply(config([{ name: 'drop-all', action: 'drop' }], [{ name: 'wan0' }, { name: 'big0' }]));
    await check('lo not configured', frame({ src: '10.1.1.1' }), XDP.PASS, ['unmanaged']);
    assert.deepEqual(dp.interfaces().map((i) => i.ifindex).sort((a, b) => a - b), [70000, 424242], 'wan0 and big0 (beyond the direct array)');
    await apply(config([{ name: 'drop-all', action: 'drop' }], [{ name: 'wan0' }, { name: 'lo' }]));
    await check('lo configured now', frame({ src: '10.1.1.1' }), XDP.DROP, ['rule_drop'], ['drop-all']);
    assert.deepEqual(dp.interfaces().map((i) => i.ifindex).sort((a, b) => a - b), [1, 424242]);
    await apply(config([{ name: 'drop-all', action: 'drop' }], [{ name: 'wan0' }]));
    await check('lo removed again', frame({ src: '10.1.1.1' }), XDP.PASS, ['unmanaged']);
    assert.deepEqual(dp.interfaces().map((i) => i.ifindex), [424242]);
  });
});
