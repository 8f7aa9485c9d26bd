import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import { compileKeepalived, renderKeepalivedConf, renderNotifyScript } from '../../src/services/keepalived/render.js';
import { compileConntrackd, renderConntrackdConf } from '../../src/services/conntrackd/render.js';
import { conntrackdModule, parseCacheStats } from '../../src/services/conntrackd/module.js';
import { keepalivedOpenings, readHaEvents, readHaStatus } from '../../src/services/keepalived/module.js';
import { instancePaths } from '../../src/services/common/service.js';
import { canonicalJson, mergeForPeer, sectionHashes, syncedPart, syncHash } from '../../src/ha/sync.js';

function compile(ha: unknown) {
  const { validated, issues } = validateDocument({ ha } as ConfigInput, () => '');
  if (!validated) return { model: null, issues: issues.map(formatIssue), config: undefined };
  const r = compileKeepalived(validated.config.ha);
  return { ...r, issues: r.issues.map(formatIssue), config: validated.config };
}

const lan = { name: 'LAN', interface: 'eth1', virtualRouterId: 11, virtualAddresses: ['192.168.1.1/24'] };

describe('keepalived compile and render', () => {
  it('role picks the priority; VRRPv3 sub-second adverts; preemption; tracking', () => {
    const ha = {
      nodeName: 'fw-b',
      role: 'secondary',
      instances: [{ ...lan, advertInterval: 0.05, preemptDelay: 30, trackInterfaces: [{ name: 'eth0', weight: -60 }, { name: 'eth2' }], trackScripts: ['up'] }, { name: 'WAN', interface: 'eth0', virtualRouterId: 10, preempt: false, virtualAddresses: ['203.0.113.10'] }],
      scripts: [{ name: 'up', command: ['/usr/bin/ping', '-c1', '203.0.113.1'], weight: -100, fall: 3 }],
    };
    const { model, issues } = compile(ha);
    assert.deepEqual(issues, []);
    const conf = renderKeepalivedConf(model!, '/s/notify.sh');
    for (const part of [
      'router_id fw-b',
      'enable_script_security',
      'vrrp_script up {\n  script "/usr/bin/ping -c1 203.0.113.1"\n  interval 2\n  rise 1\n  fall 3\n  weight -100\n}',
      'vrrp_instance LAN {\n  state BACKUP\n  interface eth1\n  virtual_router_id 11\n  priority 100\n  version 3\n  advert_int 0.05\n  preempt_delay 30',
      '  virtual_ipaddress {\n    192.168.1.1/24 dev eth1\n  }\n  track_interface {\n    eth0 weight -60\n    eth2\n  }\n  track_script {\n    up\n  }\n  notify "/s/notify.sh"',
      'virtual_router_id 10\n  priority 100\n  version 3\n  advert_int 1\n  nopreempt',
      '203.0.113.10/32 dev eth0',
    ]) {
      assert.ok(conf.includes(part), `missing:\n${part}\n--- in ---\n${conf}`);
    }
    assert.equal(compile({ ...ha, role: 'primary' }).model!.instances[0]!.effectivePriority, 150);
    const grouped = compile({ instances: [lan, { ...lan, name: 'WAN', interface: 'eth0' }], groups: [{ name: 'EDGE', instances: ['LAN', 'WAN'] }] });
    assert.ok(renderKeepalivedConf(grouped.model!, '/s/notify.sh').includes('vrrp_sync_group EDGE {\n  group {\n    LAN\n    WAN\n  }\n  notify "/s/notify.sh"\n}'));
  });

  it('reports problems with paths', () => {
    const { model, issues } = compile({
      instances: [
        { ...lan, version: 2, advertInterval: 0.5, backupPriority: 150, trackScripts: ['missing'] },
        { ...lan, name: 'LAN2', virtualAddresses: ['192.168.1.2/24', '2001:db8::1/64'], advertInterval: 0.123, preempt: false, preemptDelay: 5 },
      ],
      scripts: [{ name: 's', command: ['ping'] }],
      groups: [{ name: 'G', instances: ['LAN', 'NOPE'] }],
    });
    const grouped = compile({
      instances: [{ ...lan, trackInterfaces: [{ name: 'eth0', weight: -10 }], trackScripts: ['w'] }, { ...lan, name: 'B', virtualRouterId: 12 }],
      scripts: [{ name: 'w', command: ['/bin/true'], weight: -20 }],
      groups: [{ name: 'G', instances: ['LAN', 'B'] }],
    });
    assert.deepEqual(grouped.issues.map((i) => i.split(':')[0]), ['ha.instances[0].trackScripts[0]', 'ha.instances[0].trackInterfaces[0].weight']);
    assert.equal(model, null);
    assert.deepEqual(issues.sort(), [
      'ha.groups[0].instances[1]: no instance named "NOPE" (ha.instances)',
      'ha.instances[0].advertInterval: VRRPv2 adverts are whole seconds (use version: 3 for sub-second adverts)',
      'ha.instances[0].backupPriority: backupPriority (150) must be lower than priority (150)',
      'ha.instances[0].trackScripts[0]: no script named "missing" (ha.scripts)',
      'ha.instances[1].advertInterval: VRRPv3 adverts are multiples of 0.01 s',
      'ha.instances[1].preemptDelay: preemptDelay needs preempt: true',
      'ha.instances[1].virtualAddresses: one instance carries addresses of one family (make a second instance for IPv6)',
      'ha.instances[1].virtualRouterId: VRID 11 is already used by instance "LAN" on eth1',
      'ha.scripts[0].command[0]: "ping" must be an absolute path (keepalived does not search PATH)',
    ]);
    const quoted = compile({ instances: [lan], scripts: [{ name: 's', command: ['/bin/sh', '-c', 'rm -rf /"'] }] });
    assert.match(quoted.issues.join('\n'), /ha\.scripts\[0\]\.command\[2\]: letters, digits/);
  });

  it('openings: VRRP on the instance interfaces; nothing when disabled', () => {
    assert.deepEqual(keepalivedOpenings(compile({ instances: [lan, { ...lan, name: 'B', virtualRouterId: 12 }] }).config!), [{ service: 'keepalived', proto: 'vrrp', interfaces: ['eth1'] }]);
    assert.deepEqual(keepalivedOpenings(compile({ enabled: false, instances: [lan] }).config!), []);
  });

  it('reads the state files and event log the notify script writes', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pt-ka-unit-'));
    try {
      const paths = instancePaths(dir, 'keepalived');
      mkdirSync(paths.file('state'), { recursive: true });
      writeFileSync(paths.file('instances.json'), '["LAN","WAN"]\n');
      writeFileSync(paths.file('state/state.LAN'), 'MASTER 1795305699.5 150\n');
      writeFileSync(paths.file('state/events.log'), '1795305699.1 INSTANCE LAN BACKUP 150\n1795305699.5 INSTANCE LAN MASTER 150\n1795305699.5 GROUP EDGE MASTER 0\n1795305700.0 INSTANCE WA');
      const { events, next } = readHaEvents(paths.file('state'));
      assert.equal(events.length, 3, 'the unfinished last line waits');
      assert.deepEqual(events[1], { time: 1795305699.5, kind: 'INSTANCE', name: 'LAN', state: 'MASTER', priority: 150 });
      assert.equal(readHaEvents(paths.file('state'), next).events.length, 0);
      // not running: every instance reports STOP, transitions are still counted
      const st = readHaStatus(paths);
      assert.deepEqual(st.instances[0], { name: 'LAN', state: 'STOP', stateCode: 4, since: 1795305699.5, priority: 150, transitions: { BACKUP: 1, MASTER: 1 } });
      assert.equal(st.instances[1]!.state, 'STOP');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('conntrackd (ha.conntrackSync)', () => {
  const sync = { interface: 'sync0', localAddress: '10.40.0.1', peerAddress: '10.40.0.2' };
  const ctd = (extra: Record<string, unknown>, ha: Record<string, unknown> = {}) => {
    const { validated, issues } = validateDocument({ ha: { instances: [lan], conntrackSync: { ...sync, ...extra }, ...ha } } as ConfigInput, () => '');
    if (!validated) return { model: null, issues: issues.map(formatIssue), config: undefined };
    const r = compileConntrackd(validated.config.ha);
    return { ...r, issues: r.issues.map(formatIssue), config: validated.config };
  };

  it('renders FT-FW over UDP unicast with per-instance paths and the filter', () => {
    const { model, config } = ctd({ ignoreAddresses: ['192.168.1.0/24'] });
    const conf = renderConntrackdConf(model!, { logFile: '/s/ctd.log', lockFile: '/s/run/l', socket: '/s/run/c.ctl' });
    for (const line of ['Mode FTFW {', 'IPv4_address 10.40.0.1', 'IPv4_Destination_Address 10.40.0.2', 'Port 3780', 'Interface sync0', 'LockFile /s/run/l', 'Path /s/run/c.ctl', 'Systemd off', 'IPv6-ICMP', 'IPv4_address 127.0.0.1', 'IPv4_address 192.168.1.0/24']) {
      assert.ok(conf.split('\n').some((l) => l.trim() === line), `conntrackd.conf has "${line}"`);
    }
    assert.deepEqual(conntrackdModule.openings!(config!), [{ service: 'conntrackd', proto: 'udp', port: 3780, interfaces: ['sync0'] }]);
    assert.match(renderConntrackdConf(ctd({ localAddress: '2001:db8::1', peerAddress: '2001:db8::2' }).model!, { logFile: 'l', lockFile: 'k', socket: 's' }), /IPv6_address 2001:db8::1\n\s+IPv6_Destination_Address 2001:db8::2/);
  });

  it('bad input is reported with paths; disabled runs nothing', () => {
    assert.deepEqual(ctd({ peerAddress: '2001:db8::2' }).issues, ['ha.conntrackSync.peerAddress: 2001:db8::2 is not in the family of localAddress 10.40.0.1']);
    assert.deepEqual(ctd({ peerAddress: '10.40.0.1' }).issues, ["ha.conntrackSync.peerAddress: must be the other node's address, not this node's"]);
    assert.match(ctd({ interface: 'bad name' }).issues.join(), /ha\.conntrackSync\.interface/);
    assert.equal(ctd({ enabled: false }).model, null);
    assert.equal(ctd({}, { enabled: false }).model, null);
  });

  it("keepalived's notify script runs the failover steps once per group, never for grouped instances alone", () => {
    const { model } = compile({ instances: [lan, { ...lan, name: 'WAN', virtualRouterId: 12 }], groups: [{ name: 'G', instances: ['LAN', 'WAN'] }], conntrackSync: sync });
    assert.equal(model!.conntrackSync, true);
    const script = renderNotifyScript('/s/state', { conf: '/s/ctd.conf', groupedInstances: ['LAN', 'WAN'] });
    assert.match(script, /MASTER\) ctd -c; ctd -f; ctd -R; ctd -B ;;/);
    assert.match(script, /BACKUP\) ctd -n; ctd -t ;;/);
    assert.match(script, /grouped=' LAN WAN '/);
    assert.doesNotMatch(renderNotifyScript('/s/state'), /conntrackd/);
    assert.equal(compile({ instances: [lan] }).model!.conntrackSync, false);
  });

  it('reads the cache sizes from conntrackd -s', () => {
    const text = 'cache internal:\ncurrent active connections:\t           3\nconnections created:\t\t  1\n\ncache external:\ncurrent active connections:\t           7\n';
    assert.deepEqual(parseCacheStats(text), { internal: 3, external: 7 });
    assert.match(parseCacheStats('garbage').error!, /unexpected/);
  });
});

describe('HA sync documents', () => {
  const primary = {
    interfaces: [{ name: 'eth0', addresses: ['10.0.0.1/24'] }],
    aliases: [{ name: 'a', type: 'network', entries: ['10.0.0.0/8'] }],
    routing: { routerId: '1.1.1.1' },
    ha: { role: 'primary', nodeName: 'a', sync: { peer: 'http://b:9180', tokenFile: '/t' }, instances: [lan] },
  };
  const secondary = {
    interfaces: [{ name: 'eth0', addresses: ['10.0.0.2/24'] }],
    routing: { routerId: '2.2.2.2' },
    firewall: { old: true },
    ha: { role: 'secondary', nodeName: 'b', instances: [] },
  };
  const sections = ['aliases', 'firewall', 'ha'];

  it('pushes synced sections, keeps node-local ones, drops synced sections the primary no longer has', () => {
    const merged = mergeForPeer(secondary, primary, sections);
    assert.deepEqual(merged, {
      interfaces: secondary.interfaces,
      routing: secondary.routing,
      aliases: primary.aliases,
      ha: { role: 'secondary', nodeName: 'b', instances: [lan] },
    });
    assert.equal(syncHash(syncedPart(merged, sections)), syncHash(syncedPart(primary, sections)));
  });

  it('hashes are independent of key order and see every change', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } }), '{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
    const h1 = sectionHashes(syncedPart(primary, sections), sections);
    const h2 = sectionHashes(syncedPart({ ...primary, ha: { ...primary.ha, role: 'secondary', nodeName: 'zz' } }, sections), sections);
    assert.deepEqual(h1, h2, 'local fields do not count as drift');
    const h3 = sectionHashes(syncedPart({ ...primary, aliases: [] }, sections), sections);
    assert.notEqual(h3.aliases, h1.aliases);
    assert.equal(h3.ha, h1.ha);
  });
});
