import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateDocument, type ConfigInput } from '../../src/config/document.js';
import { formatIssue } from '../../src/config/issues.js';
import { forwardingIntent } from '../../src/routing/forwarding.js';
import { compileSysctls } from '../../src/routing/sysctl.js';
import { compileRoutes, contains } from '../../src/routing/routes.js';
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
