import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import { forwardingIntent } from '../../src/routing/forwarding.js';
import { compileSysctls } from '../../src/routing/sysctl.js';
import { compileRoutes } from '../../src/routing/routes.js';
import { contains } from '../../src/net/address.js';
import { carryInto, snapshotFromJson } from '../../src/nft/carry.js';
import { compileFirewall } from '../../src/nft/compile.js';
import { compileFrr } from '../../src/services/frr/compile.js';
import { renderFrrConf } from '../../src/services/frr/render.js';
import { frrForwarding } from '../../src/routing/forwarding.js';

function config(doc: unknown) {
  const v = validateDocument(doc as ConfigInput, () => '');
  assert.ok(v.validated, v.issues.map(formatIssue).join('\n'));
  return v.validated.config;
}

const lanWan = [
  { name: 'lan0', zone: 'lan', addresses: ['10.0.0.1/24'] },
  { name: 'wan0', zone: 'wan', addresses: ['192.0.2.1/24'] },
];

describe('forwarding', () => {
  it('is left alone when nothing forwards, implied by NAT/forwards/VPN/routes, and an explicit value wins', () => {
    assert.deepEqual(forwardingIntent(config({ interfaces: lanWan })), {});
    assert.deepEqual(forwardingIntent(config({ interfaces: lanWan, firewall: {} })), {}, 'a default-deny firewall forwards nothing');
    const masq = config({ interfaces: lanWan, firewall: { outboundNat: [{ name: 'm', interface: 'wan0' }] } });
    assert.deepEqual(forwardingIntent(masq), { ipv4: true, reason: 'firewall.outboundNat' });
    assert.equal(forwardingIntent(config({ routing: { routes: [{ prefix: '0.0.0.0/0', via: '192.0.2.254' }] } })).ipv4, true);
    assert.equal(forwardingIntent(config({ interfaces: lanWan, firewall: { zones: [{ name: 'lan', forward: 'accept' }] } })).ipv4, true);
    // IPv6 too once an interface has an IPv6 address
    const v6 = config({ interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['2001:db8::1/64'] }], firewall: { portForwards: [{ name: 'w', interface: 'wan0', port: 80, target: '10.0.0.2' }] } });
    assert.deepEqual(forwardingIntent(v6), { ipv4: true, ipv6: true, reason: 'firewall.portForwards' });
    assert.deepEqual(forwardingIntent(config({ routing: { forwarding: true } })), { ipv4: true, ipv6: true });
    assert.deepEqual(forwardingIntent(config({ interfaces: lanWan, firewall: { outboundNat: [{ name: 'm', interface: 'wan0' }] }, routing: { forwarding: false } })), { ipv4: false, ipv6: false });
    assert.deepEqual(forwardingIntent(config({ interfaces: lanWan, firewall: { outboundNat: [{ name: 'm', interface: 'wan0' }] }, routing: { forwarding: { ipv6: false } } })), { ipv4: true, ipv6: false, reason: 'firewall.outboundNat' });
  });

  it('compiles to per-namespace sysctls, rp_filter on all/default/each managed interface, bridge netfilter', () => {
    const s = compileSysctls({ config: config({ interfaces: lanWan, routing: { forwarding: true, rpFilter: 'loose', bridgeNetfilter: false } }) }).settings;
    assert.deepEqual(
      s.map((x) => `${x.key}=${x.value}`),
      [
        'net/ipv4/ip_forward=1',
        'net/ipv6/conf/all/forwarding=1',
        'net/ipv4/conf/all/rp_filter=2',
        'net/ipv4/conf/default/rp_filter=2',
        'net/ipv4/conf/lan0/rp_filter=2',
        'net/ipv4/conf/wan0/rp_filter=2',
        'net/bridge/bridge-nf-call-iptables=0',
        'net/bridge/bridge-nf-call-ip6tables=0',
        'net/bridge/bridge-nf-call-arptables=0',
      ],
    );
    assert.deepEqual(compileSysctls({ config: config({}) }).settings, []);
  });

  it('FRR renders the same forwarding the kernel settings apply', () => {
    const c = config({ interfaces: lanWan, routing: { forwarding: { ipv6: false }, bgp: { asn: 1 } } });
    const { model } = compileFrr(c.routing, frrForwarding(c));
    const conf = renderFrrConf(model!, '/tmp/x.log');
    assert.match(conf, /^ip forwarding$/m);
    assert.match(conf, /^no ipv6 forwarding$/m);
  });
});

describe('kernel routes', () => {
  it('compiles v4/v6 routes with canonical prefixes and default metrics', () => {
    const { desired, issues } = compileRoutes({
      config: config({ interfaces: lanWan, routing: { routes: [{ prefix: '0.0.0.0/0', via: '192.0.2.254' }, { prefix: '2001:DB8::/32', via: 'fe80::1', interface: 'wan0' }, { prefix: '10.9.0.0/16', blackhole: true, metric: 5 }] } }),
    });
    assert.deepEqual(issues, []);
    assert.deepEqual(
      desired.routes.map((r) => [r.family, r.dst, r.type, r.via, r.dev, r.metric]),
      [
        [4, '0.0.0.0/0', 'unicast', '192.0.2.254', undefined, 0],
        [6, '2001:db8::/32', 'unicast', 'fe80::1', 'wan0', 1024],
        [4, '10.9.0.0/16', 'blackhole', undefined, undefined, 5],
      ],
    );
    assert.deepEqual(desired.connected, [
      { dev: 'lan0', prefix: '10.0.0.1/24' },
      { dev: 'wan0', prefix: '192.0.2.1/24' },
    ]);
  });

  it('reports each bad route with its path', () => {
    const { issues } = compileRoutes({
      config: config({
        routing: {
          routes: [
            { prefix: '10.1.0.0/8', via: '192.0.2.1' },
            { prefix: '2001:db8::/32', via: '192.0.2.1' },
            { prefix: '10.2.0.0/16' },
            { prefix: '10.3.0.0/16', via: '192.0.2.1', blackhole: true },
            { prefix: '2001:db8:1::/48', via: 'fe80::1' },
            { prefix: '10.4.0.0' , via: '192.0.2.1' },
            { prefix: '0.0.0.0/0', via: '192.0.2.1' },
            { prefix: '0.0.0.0/0', via: '192.0.2.2' },
          ],
        },
      }),
    });
    assert.deepEqual(issues.map(formatIssue), [
      'routing.routes[0].prefix: "10.1.0.0/8" has host bits set; did you mean 10.0.0.0/8?',
      'routing.routes[1].via: gateway 192.0.2.1 is not in the family of 2001:db8::/32',
      'routing.routes[2]: give a gateway (via and/or interface) or blackhole: true, not both and not neither',
      'routing.routes[3]: give a gateway (via and/or interface) or blackhole: true, not both and not neither',
      'routing.routes[4].interface: a link-local gateway (fe80::1) needs an interface',
      'routing.routes[5].prefix: "10.4.0.0" needs a prefix length (e.g. 10.4.0.0/32)',
      'routing.routes[7].prefix: 0.0.0.0/0 metric 0 is already routing.routes[6] (give another metric for a backup route)',
    ]);
  });

  it('contains() tells connected gateways from others', () => {
    assert.equal(contains('192.0.2.1/24', '192.0.2.254'), true);
    assert.equal(contains('192.0.2.1/24', '192.0.3.1'), false);
    assert.equal(contains('2001:db8:63::1/64', '2001:db8:63::2'), true);
    assert.equal(contains('2001:db8:63::1/64', '2001:db8:64::2'), false);
    assert.equal(contains('192.0.2.1/24', '2001:db8::1'), false);
  });
});

describe('nftables counters carried across a table replacement', () => {
  it('writes each rule\'s live count into the new script by chain and comment, never inside a quoted string', () => {
    const json = JSON.stringify({
      nftables: [
        { rule: { chain: 'forward', comment: 'patronus:rule:a#v4', expr: [{ counter: { packets: 5, bytes: 500 } }, { accept: null }] } },
        { rule: { chain: 'forward', comment: 'patronus:rule:b', expr: [{ counter: { packets: 7, bytes: 700 } }, { drop: null }] } },
        { rule: { chain: 'input', comment: 'patronus:rule:b', expr: [{ counter: { packets: 9, bytes: 900 } }, { drop: null }] } },
        { rule: { chain: 'forward', comment: 'patronus:rule:zero', expr: [{ counter: { packets: 0, bytes: 0 } }] } },
        { rule: { chain: 'group_x', comment: 'patronus:group:x', expr: [{ counter: { packets: 3, bytes: 30 } }] } },
      ],
    });
    const script = [
      'table inet patronus {',
      '\tchain forward {',
      '\t\tip saddr 10.0.0.0/8 log prefix "counter : " counter accept comment "patronus:rule:a#v4"',
      '\t\tcounter drop comment "patronus:rule:b"',
      '\t\tcounter drop comment "patronus:rule:new"',
      '\t}',
      '\tchain input {',
      '\t\tiifname "a_counter" counter drop comment "patronus:rule:b"',
      '\t}',
      '}',
      'add rule inet patronus_mwan group_x counter jump gw_a comment "patronus:group:x"',
    ].join('\n');
    const out = carryInto(script, snapshotFromJson(json)).split('\n');
    assert.equal(out[2], '\t\tip saddr 10.0.0.0/8 log prefix "counter : " counter packets 5 bytes 500 accept comment "patronus:rule:a#v4"');
    assert.equal(out[3], '\t\tcounter packets 7 bytes 700 drop comment "patronus:rule:b"');
    assert.equal(out[4], '\t\tcounter drop comment "patronus:rule:new"');
    assert.equal(out[7], '\t\tiifname "a_counter" counter packets 9 bytes 900 drop comment "patronus:rule:b"');
    assert.equal(out[10], 'add rule inet patronus_mwan group_x counter packets 3 bytes 30 jump gw_a comment "patronus:group:x"');
  });

  it('the rendered firewall carries counters into every counted rule', () => {
    const c = config({ interfaces: lanWan, firewall: { rules: [{ name: 'r1', from: 'lan', action: 'accept' }] } });
    const { desired } = compileFirewall({ config: c, aliases: new Map(), openings: [], readFile: () => '' });
    const json = JSON.stringify({ nftables: [{ rule: { chain: 'forward', comment: 'patronus:rule:r1', expr: [{ counter: { packets: 2, bytes: 20 } }] } }] });
    assert.match(carryInto(desired.script, snapshotFromJson(json)), /iifname @zone_lan counter packets 2 bytes 20 accept comment "patronus:rule:r1"/);
  });
});

describe('a gateway group owning the default route', () => {
  const gateways = {
    gateways: [
      { name: 'a', interface: 'wan1', nextHop: '172.16.1.1' },
      { name: 'b', interface: 'wan2', nextHop: '172.16.2.1' },
      { name: 'c', interface: 'wan3', nextHop: '172.16.3.1' },
    ],
    groups: [{ name: 'g', members: [{ gateway: 'a', weight: 3 }, { gateway: 'b', weight: 1 }, { gateway: 'c', tier: 2 }] }],
    defaultRoute: 'g',
  };
  it('routes via the active members (multipath by weight), the next tier on failure, the first tier when none is up', async () => {
    const { compileGateways, defaultRouteArgs } = await import('../../src/multiwan/compile.js');
    const c = config({ interfaces: [{ name: 'wan1' }, { name: 'wan2' }, { name: 'wan3' }], gateways });
    const { desired, issues } = compileGateways({ config: c, aliases: new Map(), openings: [], readFile: () => '' });
    assert.deepEqual(issues, []);
    const head = ['-4', 'route', 'replace', 'default', 'proto', '248'];
    assert.deepEqual(defaultRouteArgs(desired, new Map()), [...head, 'nexthop', 'via', '172.16.1.1', 'dev', 'wan1', 'weight', '3', 'nexthop', 'via', '172.16.2.1', 'dev', 'wan2', 'weight', '1']);
    assert.deepEqual(defaultRouteArgs(desired, new Map([['a', false]])), [...head, 'via', '172.16.2.1', 'dev', 'wan2']);
    assert.deepEqual(defaultRouteArgs(desired, new Map([['a', false], ['b', false]])), [...head, 'via', '172.16.3.1', 'dev', 'wan3']);
    assert.equal(defaultRouteArgs(desired, new Map([['a', false], ['b', false], ['c', false]]))!.filter((x) => x === 'nexthop').length, 2);
  });
  it('refuses an unknown group and a second owner of the default route', async () => {
    const { compileGateways } = await import('../../src/multiwan/compile.js');
    const c = config({ interfaces: [{ name: 'wan1' }, { name: 'wan2' }, { name: 'wan3' }], gateways: { ...gateways, defaultRoute: 'nope' }, routing: { routes: [{ prefix: '0.0.0.0/0', via: '172.16.1.1' }] } });
    const { issues } = compileGateways({ config: c, aliases: new Map(), openings: [], readFile: () => '' });
    assert.deepEqual(issues.map(formatIssue), [
      'gateways.defaultRoute: unknown group "nope" (groups: g)',
      'gateways.defaultRoute: routing.routes[0] is the IPv4 default route already: one owner (or give that route a metric)',
    ]);
  });
});

describe('interfaces Patronus creates (bridge, vlan, bond, pppoe)', () => {
  it('compiles each kind to its ip link arguments (for kernels that have them), parents first', async () => {
    const { compileLinks } = await import('../../src/interfaces/links.js');
    const c = config({
      interfaces: [
        { name: 'br0', kind: 'bridge', zone: 'lan', ports: ['eth1.10', 'bond0'], stp: true, addresses: ['10.0.0.1/24'] },
        { name: 'eth1.10', kind: 'vlan', zone: 'lan', parent: 'eth1', vlanId: 10 },
        { name: 'bond0', kind: 'bond', zone: 'lan', ports: ['eth2', 'eth3'], bondMode: '802.3ad' },
        { name: 'ppp0', kind: 'pppoe', zone: 'wan', parent: 'eth0', pppoe: { username: 'me@isp', passwordFile: '/etc/patronus/ppp' } },
      ],
      firewall: { portForwards: [{ name: 'w', interface: 'ppp0', port: 80, target: '10.0.0.5' }] },
    });
    const { desired, issues } = compileLinks({ config: c });
    assert.deepEqual(issues, []);
    assert.deepEqual(desired.links.map((l) => l.name), ['eth1.10', 'bond0', 'br0', 'ppp0']);
    const by = new Map(desired.links.map((l) => [l.name, l]));
    assert.deepEqual(by.get('eth1.10')!.create, ['link', 'add', 'link', 'eth1', 'name', 'eth1.10', 'type', 'vlan', 'protocol', '802.1Q', 'id', '10']);
    assert.deepEqual(by.get('bond0')!.create, ['link', 'add', 'name', 'bond0', 'type', 'bond', 'mode', '802.3ad', 'miimon', '100']);
    assert.deepEqual(by.get('br0')!.create, ['link', 'add', 'name', 'br0', 'type', 'bridge', 'stp_state', '1']);
    assert.deepEqual(by.get('br0')!.hairpinPorts, ['eth1.10', 'bond0'], 'a port forward target lives on the bridge');
    assert.deepEqual(by.get('ppp0')!.create, []);
  });

  it('renders pppd options with the password quoted, no default route or DNS from pppd', async () => {
    const { pppdOptions } = await import('../../src/interfaces/links.js');
    const text = pppdOptions({ name: 'ppp0', parent: 'eth0', pppoe: { username: 'me@isp', passwordFile: 'x', serviceName: 'fast' } }, 'se"cret');
    for (const line of ['plugin pppoe.so', 'nic-eth0', 'ifname ppp0', 'user "me@isp"', 'password "se\\"cret"', 'rp_pppoe_service "fast"', 'nodefaultroute', 'nodetach', 'persist']) {
      assert.ok(text.split('\n').includes(line), `${line} in\n${text}`);
    }
  });

  it('reports misuse with paths: ports of another zone, twice, with addresses; missing vlan fields; fields of another kind', async () => {
    const { compileLinks } = await import('../../src/interfaces/links.js');
    const c = config({
      interfaces: [
        { name: 'br0', kind: 'bridge', zone: 'lan', ports: ['dmz0', 'lan1', 'br0'] },
        { name: 'br1', kind: 'bridge', zone: 'lan', ports: ['lan1', 'lan2'], vlanId: 3 },
        { name: 'dmz0', zone: 'dmz' },
        { name: 'lan2', zone: 'lan', addresses: ['10.0.0.1/24'] },
        { name: 'v1', kind: 'vlan', zone: 'lan' },
        { name: 'eth9', stp: true },
      ],
    });
    assert.deepEqual(compileLinks({ config: c }).issues.map(formatIssue), [
      'interfaces[0].ports[0]: "dmz0" is an interface of zone "dmz" (interfaces[2]): a port carries its bridge\'s zone ("lan"); remove it from one of them',
      'interfaces[0].ports[2]: "br0" cannot be a port of itself',
      'interfaces[1].vlanId: not used with kind bridge',
      'interfaces[1].ports[0]: "lan1" is already a port of "br0"',
      'interfaces[1].ports[1]: "lan2" has addresses (interfaces[3].addresses): a port carries none, put them on "br1"',
      'interfaces[4].parent: a VLAN needs its parent interface',
      'interfaces[4].vlanId: a VLAN needs its 802.1Q id (1-4094)',
      'interfaces[5].stp: needs a kind (bridge, vlan, bond or pppoe): only interfaces Patronus creates have it',
    ]);
  });
});

describe('WAN DHCP client', () => {
  it('one client per dhcp interface; the first owns the default route unless a gateway group does; conflicts refused', async () => {
    const { compileDhcpClients, hookScript } = await import('../../src/services/dhclient/dhclient.js');
    const two = config({ interfaces: [{ name: 'wan0', zone: 'wan', dhcp: true }, { name: 'wan1', zone: 'wan', dhcp: true }] });
    assert.deepEqual(compileDhcpClients({ config: two }).desired.clients.map((c) => [c.interface, c.defaultRoute]), [['wan0', true], ['wan1', false]]);
    const bad = config({ interfaces: [{ name: 'wan0', zone: 'wan', dhcp: true, addresses: ['192.0.2.1/24'] }], routing: { routes: [{ prefix: '0.0.0.0/0', via: '192.0.2.254' }] } });
    assert.deepEqual(compileDhcpClients({ config: bad }).issues.map(formatIssue), [
      'interfaces[0].dhcp: an interface gets its IPv4 address either by DHCP or from addresses:, not both',
      'interfaces[0].dhcp: routing.routes[0] is the IPv4 default route already; the DHCP lease would replace it (give that route a metric, or drop it)',
    ]);
    const script = hookScript(true);
    assert.doesNotMatch(script, /resolv\.conf\s*$/m);
    assert.doesNotMatch(script, /(>|cp|mv|tee)\s*\S*resolv/);
    assert.match(script, /^default_route=1$/m);
    assert.match(hookScript(false), /^default_route=0$/m);
  });
});

describe('IPv6 LAN: router advertisements and v6 port forwards', () => {
  it('advertises the /64 of the interface by default, with RDNSS/DNSSL and flags; radvd.conf', async () => {
    const { compileRa, renderRadvdConf } = await import('../../src/services/radvd/radvd.js');
    const c = config({ interfaces: [{ name: 'lan0', addresses: ['10.0.0.1/24', '2001:db8:1::1/64'] }], ra: { interfaces: [{ interface: 'lan0', dns: ['2001:db8:1::1'], searchDomains: ['lan.example'], managed: true, maxIntervalSeconds: 30 }] } });
    const { desired, issues } = compileRa({ config: c });
    assert.deepEqual(issues, []);
    assert.deepEqual(desired!.interfaces[0]!.prefixes, ['2001:db8:1::/64']);
    const conf = renderRadvdConf(desired!);
    for (const l of ['interface lan0 {', '\tAdvManagedFlag on;', '\tMaxRtrAdvInterval 30;', '\tMinRtrAdvInterval 10;', '\tprefix 2001:db8:1::/64 {', '\tRDNSS 2001:db8:1::1 {', '\tDNSSL lan.example {']) assert.ok(conf.split('\n').includes(l), `${JSON.stringify(l)} in\n${conf}`);
    assert.equal(compileRa({ config: config({}) }).desired, null);
  });

  it('refuses overlapping prefixes, non-/64 SLAAC prefixes, unmanaged interfaces and interfaces without a prefix', async () => {
    const { compileRa } = await import('../../src/services/radvd/radvd.js');
    const c = config({
      interfaces: [{ name: 'lan0', addresses: ['2001:db8:1::1/64'] }, { name: 'lan1' }],
      ra: { interfaces: [{ interface: 'lan0' }, { interface: 'lan1', prefixes: ['2001:db8:1::/48', '2001:db8:2::1/64'] }, { interface: 'lan9', prefixes: ['2001:db8:9::/64'] }, { interface: 'lan1' }] },
    });
    assert.deepEqual(compileRa({ config: c }).issues.map(formatIssue), [
      'ra.interfaces[1].prefixes[0]: 2001:db8:1::/48: SLAAC needs a /64 (or autonomous: false)',
      'ra.interfaces[1].prefixes[0]: 2001:db8:1::/48 overlaps 2001:db8:1::/64 (ra.interfaces[0].interface): one prefix, one link',
      'ra.interfaces[1].prefixes[1]: "2001:db8:2::1/64" has host bits set; did you mean 2001:db8:2::/64?',
      'ra.interfaces[2].interface: "lan9" is not a managed interface (add it under interfaces:)',
      'ra.interfaces[3].interface: "lan1" is already ra.interfaces[1]',
      'ra.interfaces[3].prefixes: no prefix to advertise: give prefixes, or an IPv6 address to interface "lan1"',
    ]);
  });

  it('an IPv6 port forward compiles to DNAT66 with [addr]:port, its filter and hairpin in ip6', () => {
    const c = config({ interfaces: [{ name: 'wan0', zone: 'wan' }, { name: 'lan0' }], firewall: { portForwards: [{ name: 'w6', interface: 'wan0', port: 8080, target: '2001:db8:1::80', targetPort: 80 }, { name: 'bad', interface: 'wan0', port: 81, target: '2001:db8:1::81', destination: '192.0.2.1' }] } });
    const { desired, issues } = compileFirewall({ config: c, aliases: new Map(), openings: [], readFile: () => '' });
    assert.deepEqual(issues.map(formatIssue), ['firewall.portForwards[1].destination: destination 192.0.2.1 and target 2001:db8:1::81 are not of one family']);
    assert.match(desired.script, /iifname "wan0" meta nfproto ipv6 fib daddr type local meta l4proto tcp th dport 8080 counter dnat ip6 to \[2001:db8:1::80\]:80 comment "patronus:pf:w6#dnat"/);
    assert.match(desired.script, /iifname "wan0" ip6 daddr 2001:db8:1::80 meta l4proto tcp th dport 80 ct status dnat counter accept/);
    assert.match(desired.script, /meta mark & 0x40000000 == 0x40000000 ip6 daddr 2001:db8:1::80 .* accept comment "patronus:pf:w6#hairpin-filter"/);
  });
});

describe('stateful DHCPv6 (kea-dhcp6)', () => {
  it('renders Dhcp6 with the instance paths and refuses pools outside, overlaps and unmanaged interfaces', async () => {
    const { compileKea6, renderKea6 } = await import('../../src/services/kea6/kea6.js');
    const { instancePaths } = await import('../../src/services/common/service.js');
    const ok = compileKea6({ config: config({ interfaces: [{ name: 'lan0' }], dhcp6: { subnets: [{ subnet: '2001:db8:1::/64', interface: 'lan0', pools: ['2001:db8:1::100-2001:db8:1::1ff'], dnsServers: ['2001:db8:1::1'] }] } }) });
    assert.deepEqual(ok.issues, []);
    const d6 = renderKea6(ok.desired!, instancePaths('/s', 'kea6')).Dhcp6 as Record<string, any>;
    assert.equal(d6['data-directory'], '/s/services/kea6');
    assert.equal(d6['lease-database'].name, '/s/services/kea6/leases6.csv');
    assert.deepEqual(d6.subnet6[0].pools, [{ pool: '2001:db8:1::100 - 2001:db8:1::1ff' }]);
    assert.deepEqual(d6.subnet6[0]['option-data'], [{ name: 'dns-servers', data: '2001:db8:1::1' }]);
    const bad = compileKea6({ config: config({ interfaces: [{ name: 'lan0' }], dhcp6: { subnets: [{ subnet: '2001:db8:1::/64', interface: 'lan0', pools: ['2001:db8:2::1-2001:db8:2::9'] }, { subnet: '2001:db8:1::/56', interface: 'lan9', pools: ['2001:db8:1::1-2001:db8:1::2'] }] } }) });
    assert.deepEqual(bad.issues.map(formatIssue), [
      'dhcp6.subnets[0].pools[0]: "2001:db8:2::1-2001:db8:2::9" is not inside 2001:db8:1::/64',
      'dhcp6.subnets[1].interface: "lan9" is not a managed interface (add it under interfaces:)',
      'dhcp6.subnets[1].subnet: overlaps dhcp6.subnets[0]',
    ]);
  });
});

describe('NPTv6-style prefix translation', () => {
  it('compiles to prefix snat/dnat maps and refuses mismatched or non-IPv6 prefixes', () => {
    const c = config({
      interfaces: [{ name: 'wan0', zone: 'wan' }],
      firewall: {
        prefixTranslation: [
          { name: 'ok', interface: 'wan0', internal: 'fd00:1::/64', external: '2001:db8:1::/64' },
          { name: 'len', interface: 'wan0', internal: 'fd00:2::/64', external: '2001:db8:2::/56' },
          { name: 'v4', interface: 'wan0', internal: '10.0.0.0/24', external: '2001:db8:3::/64' },
          { name: 'if', interface: 'wan9', internal: 'fd00:4::/64', external: '2001:db8:4::/64' },
        ],
      },
    });
    const { desired, issues } = compileFirewall({ config: c, aliases: new Map(), openings: [], readFile: () => '' });
    assert.deepEqual(issues.map(formatIssue), [
      'firewall.prefixTranslation[1].external: 2001:db8:2::/56 is a /56, the internal prefix a /64: a prefix translation maps prefixes of one length',
      'firewall.prefixTranslation[2].internal: "10.0.0.0/24" is not an IPv6 prefix',
      'firewall.prefixTranslation[3].interface: interface "wan9" is not in interfaces:',
    ]);
    assert.match(desired.script, /oifname "wan0" ip6 saddr fd00:1::\/64 counter snat ip6 prefix to ip6 saddr map \{ fd00:1::\/64 : 2001:db8:1::\/64 \} comment "patronus:npt:ok#out"/);
    assert.match(desired.script, /iifname "wan0" ip6 daddr 2001:db8:1::\/64 counter dnat ip6 prefix to ip6 daddr map \{ 2001:db8:1::\/64 : fd00:1::\/64 \} comment "patronus:npt:ok#in"/);
  });
});
