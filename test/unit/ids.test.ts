/**
 * IDS: config -> Suricata model and files, eve.json parsing, the alert
 * store, and the auto-block policy.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateDocument } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import type { CompileContext } from '../../src/apply/subsystem.js';
import { instancePaths } from '../../src/services/common/service.js';
import { suricataModule, type IdsModel } from '../../src/services/ids/suricata.js';
import { AlertStore, parseEveLine } from '../../src/services/ids/eve.js';
import { AutoBlocker, decideBlock, parsePrefixes, type BlockList } from '../../src/services/ids/autoblock.js';
import { eveAlert, eveFlow, eveStats } from '../lib/eve.js';

function desired(doc: unknown): { model: IdsModel | null; issues: string[] } {
  const v = validateDocument(doc, () => '');
  if (!v.validated) return { model: null, issues: v.issues.map(formatIssue) };
  const ctx: CompileContext = { openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' };
  const r = suricataModule.desired(ctx);
  return { model: r.desired, issues: r.issues.map(formatIssue) };
}

const doc = {
  interfaces: [{ name: 'wan0' }, { name: 'lan0' }],
  aliases: [{ name: 'partners', type: 'network', entries: ['198.51.100.0/24'] }],
  ids: {
    enabled: true,
    interfaces: ['wan0'],
    homeNet: ['10.1.0.0/16', '2001:db8:1::/48'],
    rules: { custom: ['alert tcp any any -> $HOME_NET 22 (msg:"SSH SYN from outside"; flags:S; sid:1000001; rev:1; classtype:attempted-recon;)'] },
    autoBlock: { enabled: true, maxSeverity: 2, ttl: 600, exempt: ['partners'] },
  },
};

describe('ids model and rendering', () => {
  it('disabled by default: no model, no issues', () => {
    assert.deepEqual(desired({}), { model: null, issues: [] });
  });

  it('resolves networks, exempts homeNet from blocking, renders suricata.yaml and rules', () => {
    const { model, issues } = desired(doc);
    assert.deepEqual(issues, []);
    assert.deepEqual(model!.homeNet, ['10.1.0.0/16', '2001:db8:1::/48']);
    assert.deepEqual(model!.autoBlock.exempt, ['198.51.100.0/24', '10.1.0.0/16', '2001:db8:1::/48']);
    const paths = instancePaths('/var/lib/patronus', 'ids');
    const files = suricataModule.render(model!, paths);
    const yaml = files.find((f) => f.path === 'suricata.yaml')!.content;
    assert.match(yaml, /^    HOME_NET: "\[10\.1\.0\.0\/16,2001:db8:1::\/48\]"$/m);
    assert.match(yaml, /^    EXTERNAL_NET: "!\$HOME_NET"$/m);
    assert.match(yaml, /^af-packet:\n  - interface: "wan0"\n    cluster-id: 99\n    cluster-type: cluster_flow$/m);
    assert.match(yaml, /^rule-files:\n  - "patronus.rules"\n/m);
    assert.match(yaml, /filename: eve.json/);
    assert.match(yaml, /^default-log-dir: "\/var\/lib\/patronus\/services\/ids\/log"$/m);
    assert.equal(files.find((f) => f.path === 'rules/patronus.rules')!.content, `${doc.ids.rules.custom[0]}\n`);
  });

  it('rejects bad config with path-qualified issues', () => {
    const bad = desired({
      interfaces: [{ name: 'wan0' }],
      aliases: [{ name: 'ports', type: 'port', entries: ['22'] }],
      ids: {
        enabled: true,
        interfaces: ['wan0', 'dmz0'],
        homeNet: ['10.0.0.0/8', 'ports'],
        rules: {
          custom: [
            'alert tcp any any -> any 22 (msg:"a"; sid:7; rev:1;)',
            'alert tcp any any -> any 23 (msg:"b"; sid:7; rev:1;)',
          ],
        },
      },
    });
    assert.deepEqual(bad.issues, [
      'ids.interfaces[1]: interface "dmz0" is not listed under interfaces',
      'ids.homeNet[1]: alias "ports" is a port alias, not a network',
      'ids.rules.custom[1]: sid 7 is already used by rules.custom[0]',
    ]);
    const schema = desired({ ids: { enabled: true, interfaces: ['wan0'], rules: { custom: ['alert tcp any any -> any 22 (msg:"no sid";)', 'log everything'] }, autoBlock: { maxSeverity: 9 } } });
    assert.deepEqual(schema.issues, [
      'ids.rules.custom[0]: must end with an option list "( ... )" that has a sid',
      'ids.rules.custom[1]: must start with a rule action (alert, drop, pass, reject)',
      'ids.rules.custom[1]: must end with an option list "( ... )" that has a sid',
      'ids.autoBlock.maxSeverity: Too big: expected number to be <=4',
    ]);
  });
});

describe('eve.json parsing and the alert store', () => {
  it('parses Suricata 7 alert lines and ignores other events', () => {
    const a = parseEveLine(eveAlert({ src: '203.0.113.7', dst: '10.1.0.5', sid: 2001219, signature: 'ET SCAN Potential SSH Scan', severity: 2 }))!;
    assert.equal(a.srcIp, '203.0.113.7');
    assert.equal(a.destIp, '10.1.0.5');
    assert.equal(a.destPort, 22);
    assert.equal(a.proto, 'TCP');
    assert.equal(a.signatureId, 2001219);
    assert.equal(a.severity, 2);
    assert.equal(a.inIface, 'wan0');
    assert.equal(parseEveLine(eveFlow('10.1.0.5', '192.0.2.1')), undefined);
    assert.equal(parseEveLine(eveStats()), undefined);
    assert.throws(() => parseEveLine('{"event_type":"alert","alert":{}}'), /without src_ip/);
    assert.throws(() => parseEveLine('{"event_type":"alert", trunc'));
  });

  it('keeps the newest alerts and counts by signature and severity', () => {
    const s = new AlertStore(3);
    for (let i = 0; i < 5; i++) s.add(parseEveLine(eveAlert({ src: `203.0.113.${i}`, dst: '10.1.0.5', sid: 100 + (i % 2), signature: `sig ${i % 2}`, severity: 1 + (i % 2) }))!);
    assert.equal(s.total, 5);
    assert.deepEqual(s.recent().map((a) => a.srcIp), ['203.0.113.4', '203.0.113.3', '203.0.113.2']);
    assert.deepEqual(s.recent(10, { minSeverity: 1 }).map((a) => a.srcIp), ['203.0.113.4', '203.0.113.2']);
    assert.deepEqual(s.signatures(), [
      { signatureId: 100, signature: 'sig 0', severity: 1, count: 3 },
      { signatureId: 101, signature: 'sig 1', severity: 2, count: 2 },
    ]);
    assert.deepEqual([...s.bySeverity], [[1, 3], [2, 2]]);
  });
});

describe('auto-block policy', () => {
  const policy = { maxSeverity: 2, signatureIds: [], excludeSignatureIds: [2013504], ttl: 600, exempt: parsePrefixes(['10.1.0.0/16', '198.51.100.0/24', '2001:db8:1::/48']) };
  const alert = (over: Partial<Parameters<typeof eveAlert>[0]>) => parseEveLine(eveAlert({ src: '203.0.113.7', dst: '10.1.0.5', sid: 2001219, signature: 'x', severity: 1, ...over }))!;

  it('blocks severe alerts from outside, for the TTL', () => {
    assert.deepEqual(decideBlock(alert({}), policy), { address: '203.0.113.7', ttl: 600 });
    assert.deepEqual(decideBlock(alert({ src: '2001:db8:99::1', dst: '2001:db8:1::5' }), policy), { address: '2001:db8:99::1', ttl: 600 });
    // the rule's target keyword names the attacker even on a reply packet
    assert.deepEqual(decideBlock(alert({ src: '10.1.0.5', dst: '203.0.113.9', source: '203.0.113.9' }), policy), { address: '203.0.113.9', ttl: 600 });
  });

  it('skips what the policy excludes', () => {
    assert.match((decideBlock(alert({ severity: 3 }), policy) as { skip: string }).skip, /severity 3/);
    assert.match((decideBlock(alert({ sid: 2013504 }), policy) as { skip: string }).skip, /excluded/);
    assert.match((decideBlock(alert({ src: '10.1.2.3' }), policy) as { skip: string }).skip, /exempt/);
    assert.match((decideBlock(alert({ src: '2001:db8:1:ff::1' }), policy) as { skip: string }).skip, /exempt/);
    assert.match((decideBlock(alert({}), { ...policy, signatureIds: [1] }) as { skip: string }).skip, /not in autoBlock.signatureIds/);
  });

  it('renews at most once a second per source and reports a missing block list', async () => {
    const calls: [string, number][] = [];
    const list: BlockList = { block: (a, t) => void calls.push([a, t]), unblock: () => true };
    const b = new AutoBlocker(policy, list);
    await b.onAlert(alert({}), 1000);
    await b.onAlert(alert({}), 1500);
    await b.onAlert(alert({}), 2100);
    assert.deepEqual(calls, [['203.0.113.7', 600], ['203.0.113.7', 600]]);
    const none = new AutoBlocker(policy, undefined);
    assert.equal(await none.onAlert(alert({})), undefined);
    assert.match(none.lastError!, /no fast-path block list is loaded/);
  });

  it('lists the sources still blocked; an unblock removes one, and the next alert blocks it again at once', async () => {
    const listed = new Set<string>();
    const list: BlockList = { block: (a) => void listed.add(a), unblock: (a) => listed.delete(a) };
    const b = new AutoBlocker(policy, list);
    await b.onAlert(alert({}), 1000);
    assert.deepEqual(b.current(1000), [{ address: '203.0.113.7', expiresAt: new Date(601_000).toISOString() }]);
    assert.deepEqual(b.current(601_000), [], 'expired by its TTL');
    await b.onAlert(alert({}), 2000);
    assert.equal(await b.unblock('203.0.113.7'), true);
    assert.equal(await b.unblock('203.0.113.7'), false);
    assert.deepEqual(b.current(2000), []);
    await b.onAlert(alert({}), 2100); // within a second of the last write: blocks anyway after an unblock
    assert.deepEqual([...listed], ['203.0.113.7']);
    assert.equal(await new AutoBlocker(policy, undefined).unblock('203.0.113.7'), undefined, 'no block list loaded');
  });
});
