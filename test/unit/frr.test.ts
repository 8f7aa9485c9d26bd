import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import { compileFrr } from '../../src/services/frr/compile.js';
import { renderFrrConf } from '../../src/services/frr/render.js';
import { frrOpenings } from '../../src/services/frr/module.js';
import { bgpPeers, ospfNeighbors, routeCounts } from '../../src/services/frr/status.js';
import { policyFingerprints, refreshCommand, refreshesFor } from '../../src/services/frr/refresh.js';

function compile(routing: unknown) {
  const { validated, issues } = validateDocument({ routing } as ConfigInput, () => '');
  if (!validated) return { model: null, issues: issues.map(formatIssue), config: undefined };
  const r = compileFrr(validated.config.routing);
  return { ...r, issues: r.issues.map(formatIssue), config: validated.config };
}

describe('FRR compile', () => {
  it('an empty or disabled section runs nothing', () => {
    assert.equal(compile(undefined).model, null);
    assert.equal(compile({ enabled: false, static: [{ prefix: '10.0.0.0/8', blackhole: true }] }).model, null);
  });

  it('runs only the daemons the section needs', () => {
    assert.deepEqual(compile({ static: [{ prefix: '10.0.0.0/8', blackhole: true }] }).model!.daemons, ['zebra', 'staticd']);
    assert.deepEqual(compile({ bgp: { asn: 1 } }).model!.daemons, ['zebra', 'bgpd']);
    assert.deepEqual(compile({ bgp: { asn: 1, rpki: { caches: [{ host: 'rtr.example' }] } } }).model!.modules, { bgpd: ['rpki'] });
  });

  it('reports every cross-field problem with its path', () => {
    const { model, issues } = compile({
      static: [{ prefix: '10.1.0.0/8', via: '192.0.2.1' }, { prefix: '2001:db8::/32', via: '192.0.2.1' }, { prefix: '10.0.0.0/8' }],
      ospf: { areas: [{ id: 0, type: 'stub', interfaces: [{ name: 'eth0', helloInterval: 5, deadInterval: 5 }] }, { id: '0.0.0.1', interfaces: [{ name: 'eth0' }] }] },
      bgp: { asn: 65000, neighbors: [{ address: '192.0.2.1', remoteAs: 1, prefixListIn: 'V6', routeMapOut: 'MISSING', hold: 2, keepalive: 1 }], networks: ['192.0.2.7/24'] },
      prefixLists: [
        { name: 'V6', entries: [{ action: 'permit', prefix: '2001:db8::/32', le: 16 }] },
        { name: 'MIXED', entries: [{ action: 'permit', prefix: '10.0.0.0/8' }, { action: 'deny', prefix: '::/0' }] },
      ],
      routeMaps: [{ name: 'RM', entries: [{ seq: 10, action: 'permit', match: { prefixList: 'NOPE' } }] }],
    });
    assert.equal(model, null);
    assert.deepEqual(issues.sort(), [
      'routing.bgp.neighbors[0].hold: hold time must be 0 or 3-65535 seconds',
      'routing.bgp.neighbors[0].prefixListIn: prefix-list "V6" is IPv6 but neighbor 192.0.2.1 is IPv4',
      'routing.bgp.neighbors[0].routeMapOut: no route-map named "MISSING" (routing.routeMaps)',
      'routing.bgp.networks[0]: "192.0.2.7/24" has host bits set; did you mean 192.0.2.0/24?',
      'routing.ospf.areas[0].interfaces[0].deadInterval: deadInterval (5) must exceed helloInterval (5)',
      'routing.ospf.areas[0].type: the backbone area (0.0.0.0) cannot be stub or nssa',
      'routing.ospf.areas[1].interfaces[0].name: interface eth0 is already in area 0.0.0.0 (an interface belongs to one area)',
      'routing.prefixLists[0].entries[0].le: le 16 must be longer than /32, at least ge, and at most 128',
      'routing.prefixLists[1].entries[1].prefix: prefix-list "MIXED" mixes IPv4 and IPv6 entries (use one list per family)',
      'routing.routeMaps[0].entries[0].match.prefixList: no prefix-list named "NOPE" (routing.routeMaps)'.replace('routing.routeMaps)', 'routing.prefixLists)'),
      'routing.static[0].prefix: "10.1.0.0/8" has host bits set; did you mean 10.0.0.0/8?',
      'routing.static[1].via: next hop 192.0.2.1 is not in the family of 2001:db8::/32',
      'routing.static[2]: give a next hop (via and/or interface) or blackhole: true, not both and not neither',
    ]);
  });

  it('rejects text that would break out of its frr.conf line', () => {
    const { issues } = compile({ bgp: { asn: 1, neighbors: [{ address: '192.0.2.1', remoteAs: 2, description: 'x\nrouter bgp 666' }] } });
    assert.match(issues.join('\n'), /routing\.bgp\.neighbors\[0\]\.description: printable ASCII, one line/);
  });
});

describe('FRR render', () => {
  it('writes OSPF per interface, BGP per address family, policy by family', () => {
    const { model, issues } = compile({
      routerId: '10.255.0.1',
      static: [
        { prefix: '198.51.100.0/24', blackhole: true },
        { prefix: '0.0.0.0/0', via: '192.0.2.1', distance: 200 },
        { prefix: '2001:db8:1::/48', interface: 'eth1' },
      ],
      ospf: { areas: [{ id: 1, type: 'nssa', noSummary: true, interfaces: [{ name: 'eth1', network: 'point-to-point', helloInterval: 1, deadInterval: 3, cost: 7 }, { name: 'lo', passive: true }] }], redistribute: ['static'], defaultOriginate: 'always' },
      bgp: {
        asn: 64512,
        neighbors: [
          { address: '192.0.2.1', remoteAs: 64496, keepalive: 1, hold: 3, routeMapOut: 'OUT' },
          { address: '2001:db8::2', remoteAs: 'external', prefixListOut: 'V6' },
        ],
        networks: ['198.51.100.0/24', '2001:db8:1::/48'],
      },
      prefixLists: [
        { name: 'V4', entries: [{ action: 'permit', prefix: '198.51.100.0/24' }] },
        { name: 'V6', entries: [{ action: 'permit', prefix: '2001:db8:1::/48', le: 64 }] },
      ],
      routeMaps: [{ name: 'OUT', entries: [{ seq: 10, action: 'permit', match: { prefixList: 'V4' }, set: { asPathPrepend: [64512, 64512], community: ['64512:1', 'no-export'], localPreference: 200 } }] }],
    });
    assert.deepEqual(issues, []);
    const conf = renderFrrConf(model!, '/x/frr.log');
    for (const line of [
      'log file /x/frr.log informational',
      'ip forwarding',
      'ip route 198.51.100.0/24 blackhole',
      'ip route 0.0.0.0/0 192.0.2.1 200',
      'ipv6 route 2001:db8:1::/48 eth1',
      'ip prefix-list V4 seq 5 permit 198.51.100.0/24',
      'ipv6 prefix-list V6 seq 5 permit 2001:db8:1::/48 le 64',
      'route-map OUT permit 10\n match ip address prefix-list V4\n set local-preference 200\n set as-path prepend 64512 64512\n set community 64512:1 no-export\nexit',
      'interface eth1\n ip ospf area 0.0.0.1\n ip ospf network point-to-point\n ip ospf cost 7\n ip ospf hello-interval 1\n ip ospf dead-interval 3\nexit',
      'interface lo\n ip ospf area 0.0.0.1\n ip ospf passive\nexit',
      ' ospf router-id 10.255.0.1',
      ' area 0.0.0.1 nssa no-summary',
      ' default-information originate always',
      'router bgp 64512\n bgp router-id 10.255.0.1\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast',
      ' neighbor 192.0.2.1 timers 1 3',
      ' address-family ipv4 unicast\n  network 198.51.100.0/24\n  neighbor 192.0.2.1 activate\n  neighbor 192.0.2.1 route-map OUT out\n exit-address-family',
      ' address-family ipv6 unicast\n  network 2001:db8:1::/48\n  neighbor 2001:db8::2 activate\n  neighbor 2001:db8::2 prefix-list V6 out\n exit-address-family',
    ]) {
      assert.ok(conf.includes(line), `missing:\n${line}\n--- in ---\n${conf}`);
    }
    assert.ok(!conf.includes('hello-interval 10'), 'defaults are not written');
  });

  it('openings: OSPF on non-passive interfaces, BGP where the neighbors are', () => {
    const { config } = compile({
      ospf: { areas: [{ id: 0, interfaces: [{ name: 'eth1' }, { name: 'lo', passive: true }] }] },
      bgp: { asn: 1, neighbors: [{ address: '192.0.2.1', remoteAs: 2, interface: 'eth0' }] },
    });
    assert.deepEqual(frrOpenings(config!), [
      { service: 'frr', proto: 'ospf', interfaces: ['eth1'] },
      { service: 'frr', proto: 'tcp', port: 179, interfaces: ['eth0'] },
    ]);
    const { config: c2 } = compile({ bgp: { asn: 1, neighbors: [{ address: '192.0.2.1', remoteAs: 2, interface: 'eth0' }, { address: '192.0.2.9', remoteAs: 3 }] } });
    assert.deepEqual(frrOpenings(c2!), [{ service: 'frr', proto: 'tcp', port: 179, interfaces: [] }]);
  });
});

describe('FRR policy refresh', () => {
  const base = () => ({
    bgp: {
      asn: 65000,
      neighbors: [
        { address: '192.0.2.1', remoteAs: 1, prefixListIn: 'IN', routeMapOut: 'OUT' },
        { address: '2001:db8::1', remoteAs: 2, routeMapIn: 'OUT' },
        { address: '192.0.2.9', remoteAs: 3 },
      ],
    },
    prefixLists: [
      { name: 'IN', entries: [{ action: 'permit', prefix: '10.0.0.0/8', le: 24 }] },
      { name: 'EXPORT', entries: [{ action: 'permit', prefix: '192.0.2.0/24' }] },
    ],
    routeMaps: [{ name: 'OUT', entries: [{ seq: 10, action: 'permit', match: { prefixList: 'EXPORT' } }] }],
  });
  const refreshes = (edit: (r: any) => void) => {
    const before = compile(base()).model!;
    const doc = base();
    edit(doc);
    const after = compile(doc).model!;
    return refreshesFor(policyFingerprints(before), policyFingerprints(after), after).map((r) => `${r.address} ${r.direction}`);
  };

  it('refreshes exactly the neighbors and directions whose policy changed', () => {
    assert.deepEqual(refreshes(() => {}), []);
    // a prefix-list's entries: only the neighbor using it, inbound
    assert.deepEqual(refreshes((r) => r.prefixLists[0].entries.push({ action: 'deny', prefix: '0.0.0.0/0', le: 32 })), ['192.0.2.1 in']);
    // a prefix-list matched by a route-map: every neighbor using that route-map, in its direction
    assert.deepEqual(refreshes((r) => (r.prefixLists[1].entries[0].prefix = '198.51.100.0/24')), ['192.0.2.1 out', '2001:db8::1 in']);
    // attaching a list, next-hop-self
    assert.deepEqual(refreshes((r) => (r.bgp.neighbors[2].prefixListIn = 'IN')), ['192.0.2.9 in']);
    assert.deepEqual(refreshes((r) => (r.bgp.neighbors[2].nextHopSelf = true)), ['192.0.2.9 out']);
    // unrelated changes and new or shut-down neighbors need no refresh
    assert.deepEqual(refreshes((r) => r.bgp.networks = ['192.0.2.0/24']), []);
    assert.deepEqual(refreshes((r) => r.bgp.neighbors.push({ address: '192.0.2.10', remoteAs: 4, prefixListIn: 'IN' })), []);
    assert.deepEqual(refreshes((r) => { r.bgp.neighbors[0].shutdown = true; r.prefixLists[0].entries[0].le = 32; }), []);
  });

  it('one command per neighbor, in its own address family', () => {
    assert.equal(refreshCommand({ address: '192.0.2.1', direction: 'in' }), 'clear bgp ipv4 unicast 192.0.2.1 soft in');
    assert.equal(refreshCommand({ address: '2001:db8::1', direction: 'out' }), 'clear bgp ipv6 unicast 2001:db8::1 soft out');
  });
});

describe('FRR status parsing', () => {
  it('flattens vtysh JSON into per-peer and per-protocol numbers', () => {
    const peers = bgpPeers({ ipv4Unicast: { as: 65001, routerId: '1.1.1.1', peers: { '10.9.0.2': { remoteAs: 65002, state: 'Established', pfxRcd: 3, pfxSnt: 1, peerUptimeMsec: 5000 } } } });
    assert.deepEqual(peers, { asn: 65001, routerId: '1.1.1.1', peers: [{ address: '10.9.0.2', afi: 'ipv4Unicast', remoteAs: 65002, state: 'Established', established: true, prefixesReceived: 3, prefixesSent: 1, uptimeMs: 5000 }] });
    assert.deepEqual(ospfNeighbors({ neighbors: { '2.2.2.2': [{ nbrState: 'Full/-', ifaceAddress: '10.9.0.2', ifaceName: 'eth1:10.9.0.1' }] } }), [
      { routerId: '2.2.2.2', address: '10.9.0.2', interface: 'eth1', state: 'Full/-', full: true },
    ]);
    const rc = routeCounts({ routes: [{ type: 'connected', rib: 2, fib: 2 }, { type: 'ebgp', rib: 3, fib: 3 }, { type: 'ibgp', rib: 1, fib: 0 }], routesTotal: 6, routesTotalFib: 5 });
    assert.deepEqual(rc, { total: { rib: 6, fib: 5 }, byProtocol: { connected: { rib: 2, fib: 2 }, bgp: { rib: 4, fib: 3 } } });
  });
});
