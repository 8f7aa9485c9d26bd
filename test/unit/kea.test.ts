import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { leasesFromCommand, parseLeaseFile } from '../../src/services/kea/leases.js';
import { renderKea, dhcpOpenings } from '../../src/services/kea/kea.js';
import { instancePaths } from '../../src/services/common/service.js';
import { keaSubsystem } from '../../src/services/kea/subsystem.js';
import { compileWith } from '../lib/services.js';
import { formatIssue } from '../../src/config/issues.js';

const HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n';

describe('kea leases', () => {
  it('keeps the last line per address, drops deleted ones, marks expired ones', () => {
    const now = new Date('2026-11-22T00:00:00Z');
    const t = now.getTime() / 1000;
    const csv =
      HEADER +
      `10.0.0.50,52:54:00:AA:00:01,01:52:54:00:aa:00:01,600,${t + 100},1,0,0,nas,0,\n` +
      `10.0.0.100,02:00:00:00:00:02,,600,${t + 50},1,0,0,,0,\n` +
      `10.0.0.100,02:00:00:00:00:02,,0,${t},1,0,0,,0,\n` +
      `10.0.0.9,02:00:00:00:00:03,,600,${t - 10},1,0,0,a&#x2cb,0,\n` +
      `10.0.0.10,02:00:00:00:00:04,,600,${t + 600},1,0,0,,1,\n` +
      `10.0.0.50,52:54:00:aa:00:01,01:52:54:00:aa:00:01,600,${t + 600},1,0,0,nas,0,\n`;
    assert.deepEqual(parseLeaseFile(csv, now), [
      { address: '10.0.0.9', mac: '02:00:00:00:00:03', clientId: undefined, hostname: 'a,b', subnetId: 1, validLifetime: 600, expires: new Date((t - 10) * 1000).toISOString(), state: 'expired' },
      { address: '10.0.0.10', mac: '02:00:00:00:00:04', clientId: undefined, hostname: undefined, subnetId: 1, validLifetime: 600, expires: new Date((t + 600) * 1000).toISOString(), state: 'declined' },
      { address: '10.0.0.50', mac: '52:54:00:aa:00:01', clientId: '01:52:54:00:aa:00:01', hostname: 'nas', subnetId: 1, validLifetime: 600, expires: new Date((t + 600) * 1000).toISOString(), state: 'active' },
    ]);
    assert.deepEqual(parseLeaseFile(''), []);
    assert.throws(() => parseLeaseFile('a,b,c\n'), /not a Kea DHCPv4 lease file/);
    // after lease file cleanup: FILE.1 + FILE.2 + FILE, each with its header; later files win
    const split = csv.split('\n');
    const rotated = [split.slice(0, 3).join('\n'), HEADER + split.slice(3, 5).join('\n'), HEADER + split.slice(5).join('\n')].join('\n');
    assert.deepEqual(parseLeaseFile(rotated, now), parseLeaseFile(csv, now));
  });

  it('reads lease4-get-all answers (lease_cmds hook) into the same shape', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    const t = now.getTime() / 1000;
    assert.deepEqual(
      leasesFromCommand(
        [
          { 'ip-address': '10.0.0.50', 'hw-address': '52:54:00:AA:00:01', 'client-id': '01:52:54:00:aa:00:01', hostname: 'nas', 'subnet-id': 1, 'valid-lft': 600, cltt: t, state: 0 },
          { 'ip-address': '10.0.0.9', 'hw-address': '02:00:00:00:00:03', hostname: '', 'subnet-id': 1, 'valid-lft': 600, cltt: t - 610, state: 0 },
        ],
        now,
      ),
      [
        { address: '10.0.0.9', mac: '02:00:00:00:00:03', clientId: undefined, hostname: undefined, subnetId: 1, validLifetime: 600, expires: new Date((t - 10) * 1000).toISOString(), state: 'expired' },
        { address: '10.0.0.50', mac: '52:54:00:aa:00:01', clientId: '01:52:54:00:aa:00:01', hostname: 'nas', subnetId: 1, validLifetime: 600, expires: new Date((t + 600) * 1000).toISOString(), state: 'active' },
      ],
    );
  });
});

describe('kea rendering', () => {
  const doc = (dhcp: object) => ({ interfaces: [{ name: 'lan0' }, { name: 'lan1' }], dhcp: { enabled: true, ...dhcp } });

  it('renders subnets, pools, options, reservations and per-instance paths', () => {
    const r = compileWith(keaSubsystem, doc({
      dnsServers: ['10.0.0.1'],
      domainName: 'lan.example.',
      subnets: [
        { subnet: '10.0.0.0/24', interface: 'lan0', pools: ['10.0.0.100 - 10.0.0.199'], router: '10.0.0.1', reservations: [{ mac: '52:54:00:AA:00:01', address: '10.0.0.5', hostname: 'nas' }] },
        { id: 7, subnet: '10.1.0.0/24', interface: 'lan1', dnsServers: ['1.1.1.1', '9.9.9.9'], validLifetime: 120 },
      ],
    }));
    assert.deepEqual(r.issues, []);
    const k = renderKea(r.desired!.model!, instancePaths('/s', 'kea'), '/usr/lib/kea/hooks').Dhcp4 as Record<string, any>;
    assert.deepEqual(k['interfaces-config'].interfaces, ['lan0', 'lan1']);
    // bounded lease file (cleanup hourly); leases read through the lease_cmds hook
    assert.deepEqual(k['lease-database'], { type: 'memfile', persist: true, name: '/s/services/kea/leases4.csv', 'lfc-interval': 3600 });
    assert.deepEqual(k['hooks-libraries'], [{ library: '/usr/lib/kea/hooks/libdhcp_lease_cmds.so' }]);
    assert.deepEqual(k['control-socket'], { 'socket-type': 'unix', 'socket-name': '/s/services/kea/run/kea4.sock' });
    assert.deepEqual(k.subnet4[0], {
      id: 1,
      subnet: '10.0.0.0/24',
      interface: 'lan0',
      pools: [{ pool: '10.0.0.100 - 10.0.0.199' }],
      'option-data': [
        { name: 'routers', data: '10.0.0.1' },
        { name: 'domain-name-servers', data: '10.0.0.1' },
        { name: 'domain-name', data: 'lan.example' },
      ],
      reservations: [{ 'hw-address': '52:54:00:aa:00:01', 'ip-address': '10.0.0.5', hostname: 'nas' }],
    });
    assert.equal(k.subnet4[1].id, 7);
    assert.equal(k.subnet4[1]['valid-lifetime'], 120);
    assert.deepEqual(k.subnet4[1]['option-data'][0], { name: 'domain-name-servers', data: '1.1.1.1, 9.9.9.9' });
    assert.deepEqual(dhcpOpenings(r.desired!.model!.config), [{ service: 'kea', proto: 'udp', port: 67, interfaces: ['lan0', 'lan1'] }]);
  });

  it('path-qualified issues', () => {
    assert.deepEqual(compileWith(keaSubsystem, doc({})).issues.map(formatIssue), ['dhcp.subnets: the DHCP server needs at least one subnet']);
    assert.deepEqual(
      compileWith(keaSubsystem, doc({ subnets: [{ id: 3, subnet: '10.0.0.0/24', interface: 'lan0' }, { id: 3, subnet: '10.9.0.0/33', interface: 'lan1', pools: ['10.9.0.9-10.9.0.1'] }] })).issues.map(formatIssue),
      ['dhcp.subnets[1].id: subnet id 3 is already used by subnets[0]', 'dhcp.subnets[1].subnet: "10.9.0.0/33" is not an IPv4 network (address/0-32)'],
    );
  });
});
