/**
 * nftables read over netlink (src/nft/netlink.ts) against nft itself, in a
 * lab namespace: the rule counters /metrics reads from an NFT_MSG_GETRULE
 * dump equal what `nft -j list table` gives for every kind of rule
 * (verdicts, jump, reject, NAT, masquerade, vmap, mark, log), with real
 * packets counted; the ruleset generation changes with every transaction,
 * and the drift check's listing follows a change made behind its back.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { controlLab, type ControlLab } from '../lib/control.js';
import { missing } from '../lib/skip.js';
import { dumpRuleCounts, dumpRules, ruleCounters, rulesetGeneration } from '../../src/nft/netlink.js';
import { countersFromJson, groupCounters, liveTable, listTable, metricsFromCounters, metricsFromCounts, nftSubsystem, readCounters, runScript } from '../../src/nft/subsystem.js';

const SCRIPT = `table inet patronus {
  set blocked {
    type ipv4_addr
    flags interval
    elements = { 10.9.0.0/16 }
  }
  chain sub {
    ip saddr 10.8.0.0/16 counter drop comment "patronus:rule:sub-drop"
    counter return comment "patronus:rule:sub-return"
  }
  chain input {
    type filter hook input priority 0; policy accept;
    ct state invalid counter drop comment "patronus:builtin:input-invalid"
    ip saddr @blocked counter drop comment "patronus:rule:blocked"
    meta l4proto icmp counter jump sub comment "patronus:rule:ping"
    tcp dport 1 counter reject with tcp reset comment "patronus:rule:rej"
    udp dport 2 counter log prefix "x " accept comment "patronus:rule:logged"
    tcp dport 3 counter meta mark set 0x2 comment "patronus:rule:marked"
    counter tcp dport vmap { 4 : accept, 5 : drop } comment "patronus:rule:vm"
    meta l4proto icmp counter accept comment "patronus:rule:ping#2"
    counter accept comment "not patronus"
    tcp dport 6 accept comment "patronus:rule:no-counter"
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    tcp dport 8080 counter dnat ip to 192.0.2.9:80 comment "patronus:pf:web"
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "wan0" ip saddr 10.1.0.0/16 counter masquerade comment "patronus:nat:out"
    oifname "wan0" ip saddr 10.2.0.0/16 counter snat ip to 192.0.2.2 comment "patronus:nat:snat"
  }
}
`;

describe('nftables over netlink', { skip: missing('netns') }, () => {
  let L: ControlLab;
  const inNs = <T>(fn: () => T) => L.host.inNetns(fn);

  before(async () => {
    L = await controlLab();
    await runScript(L.host, SCRIPT, 'test');
    // real packets: pings from the peer count on the icmp rules
    const r = await execa('ip', ['netns', 'exec', L.peer.name, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '192.0.2.2'], { reject: false, timeout: 20_000 });
    assert.equal(r.exitCode, 0, r.stderr);
  });
  after(async () => {
    await L?.teardown();
  });

  it('reads the same rule counters as nft -j list table', async () => {
    const json = await L.host.run('nft', ['-j', 'list', 'table', 'inet', 'patronus']);
    const fromNft = countersFromJson(json.stdout);
    const rules = await dumpRules(inNs, 'inet', 'patronus');
    assert.ok(rules);
    const fromNetlink = groupCounters(ruleCounters(rules));
    assert.deepEqual(fromNetlink, fromNft);
    const byKey = new Map(fromNetlink.map((c) => [c.key, c]));
    // what each rule does, as nft's JSON names it
    assert.deepEqual(
      Object.fromEntries([...byKey].map(([k, c]) => [k, c.rules.map((r) => r.action).join(',')])),
      {
        'builtin:input-invalid': 'drop',
        'rule:blocked': 'drop',
        'rule:ping': 'jump,accept',
        'rule:rej': 'reject',
        'rule:logged': 'accept',
        'rule:marked': 'mark',
        'rule:vm': 'vmap',
        'rule:sub-drop': 'drop',
        'rule:sub-return': 'return',
        'pf:web': 'dnat',
        'nat:out': 'masquerade',
        'nat:snat': 'snat',
      },
    );
    assert.ok(byKey.get('rule:ping')!.packets >= 6, `pings counted twice (jump + accept): ${byKey.get('rule:ping')!.packets}`);
    assert.ok(byKey.get('rule:ping')!.bytes > 0);
    // readCounters (status, REST) goes through the same dump
    assert.deepEqual(await readCounters(L.host), fromNft);
    // /metrics: the dump's numbers summed through a plan per ruleset give what the counters by object give
    const want = metricsFromCounters(fromNft);
    assert.deepEqual(metricsFromCounts((await dumpRuleCounts(inNs, 'inet', 'patronus'))!), want);
    assert.ok(want.rules.length === 12 && want.verdicts.some((v) => v.verdict === 'invalid'), JSON.stringify(want));
  });

  it('a kept dump layout reads new counters, and a changed rule (same handle, same length) is parsed again', async () => {
    const key = `test ${L.stateDir}`;
    const fresh = async () => (await dumpRules(inNs, 'inet', 'patronus'))!;
    assert.deepEqual(await dumpRules(inNs, 'inet', 'patronus', key), await fresh());
    const ping = (rules: Awaited<ReturnType<typeof fresh>>) => rules.filter((r) => r.comment === 'patronus:rule:ping#2').map((r) => r.counter!.packets)[0]!;
    const before = ping((await dumpRules(inNs, 'inet', 'patronus', key))!);
    const r = await execa('ip', ['netns', 'exec', L.peer.name, 'ping', '-c', '2', '-i', '0.2', '-W', '2', '192.0.2.2'], { reject: false, timeout: 20_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    const kept = (await dumpRules(inNs, 'inet', 'patronus', key))!;
    assert.equal(ping(kept), before + 2, 'the kept layout reads the new counter values');
    assert.deepEqual(kept, await fresh());
    // dumpRuleCounts reads the kept layout too, and its sums follow the new numbers (the plan is kept with the layout)
    const counts = (await dumpRuleCounts(inNs, 'inet', 'patronus', key))!;
    assert.equal(counts.rules, (await dumpRuleCounts(inNs, 'inet', 'patronus', key))!.rules, 'the same counted rules while the ruleset is unchanged');
    assert.deepEqual(metricsFromCounts(counts), metricsFromCounters(groupCounters(ruleCounters(kept))));
    // the same rule replaced in place: same handle; "reject" -> "accept" with a comment of the same length
    const rej = kept.find((x) => x.comment === 'patronus:rule:rej')!;
    await L.host.run('nft', ['replace', 'rule', 'inet', 'patronus', 'input', 'handle', String(rej.handle), 'tcp', 'dport', '1', 'counter', 'accept', 'comment', '"patronus:rule:rex"']);
    const after = (await dumpRules(inNs, 'inet', 'patronus', key))!;
    assert.deepEqual(after, await fresh());
    const rex = after.find((x) => x.handle === rej.handle)!;
    assert.equal(rex.comment, 'patronus:rule:rex');
    assert.equal(rex.action, 'accept');
    // ... and so are the sums: the replaced rule is its own object now
    const m = metricsFromCounts((await dumpRuleCounts(inNs, 'inet', 'patronus', key))!);
    assert.deepEqual(m, metricsFromCounters(groupCounters(ruleCounters(after))));
    assert.deepEqual(m.rules.find((r) => r.rule === 'rule:rex'), { rule: 'rule:rex', action: 'accept', packets: 0, bytes: 0 });
    assert.equal(m.rules.find((r) => r.rule === 'rule:rej'), undefined);
  });

  it('a table that does not exist reads as no rules', async () => {
    assert.deepEqual(await dumpRules(inNs, 'inet', 'patronus_none'), []);
  });

  it('the ruleset generation moves with every transaction, and the drift listing follows it', async () => {
    const g0 = await rulesetGeneration(inNs);
    assert.equal(await rulesetGeneration(inNs), g0, 'reading changes nothing');
    const before = await liveTable(L.host);
    assert.equal(before, await listTable(L.host));
    // a change behind Patronus' back (another tool): a new generation, a new listing
    await L.host.run('nft', ['add', 'rule', 'inet', 'patronus', 'input', 'tcp', 'dport', '7', 'counter', 'accept']);
    assert.notEqual(await rulesetGeneration(inNs), g0);
    const after = await liveTable(L.host);
    assert.match(after!, /tcp dport 7 counter accept/);
    assert.equal(after, await listTable(L.host));
    await L.host.run('nft', ['delete', 'table', 'inet', 'patronus']);
    assert.equal(await liveTable(L.host), undefined);
    assert.deepEqual(await readCounters(L.host), []);
    assert.deepEqual(await nftSubsystem.metrics!(L.host), { rules: [], verdicts: [] });
  });
});
