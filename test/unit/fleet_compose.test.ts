import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compose } from '../../src/fleet/compose.js';
import { parseFleetUrl } from '../../src/fleet/connect.js';
import { healthOf } from '../../src/fleet/health.js';
import { validateDocument } from '../../src/domains.js';

describe('fleet: base + overlay', () => {
  const base = {
    interfaces: [
      { name: 'wan0', zone: 'wan', addresses: ['192.0.2.2/24'] },
      { name: 'lan0', zone: 'lan', addresses: ['10.0.0.1/24'] },
    ],
    ha: { instances: [{ name: 'vi1', priority: 100, virtualAddresses: ['10.0.0.254/24'] }] },
    firewall: { rules: [{ name: 'a', action: 'accept' }] },
    drift: { intervalSeconds: 5 },
  };

  it('merges objects key by key and named lists item by item; other lists are replaced', () => {
    const out = compose(base, { interfaces: [{ name: 'wan0', addresses: ['198.51.100.7/24'] }, { name: 'dmz0', zone: 'dmz' }], ha: { instances: [{ name: 'vi1', priority: 90 }] }, drift: { intervalSeconds: 10 } });
    assert.deepEqual(out, {
      interfaces: [
        { name: 'wan0', zone: 'wan', addresses: ['198.51.100.7/24'] },
        { name: 'lan0', zone: 'lan', addresses: ['10.0.0.1/24'] },
        { name: 'dmz0', zone: 'dmz' },
      ],
      ha: { instances: [{ name: 'vi1', priority: 90, virtualAddresses: ['10.0.0.254/24'] }] },
      firewall: { rules: [{ name: 'a', action: 'accept' }] },
      drift: { intervalSeconds: 10 },
    });
    assert.equal(base.interfaces[0]!.addresses[0], '192.0.2.2/24', 'the base is not modified');
  });

  it('null removes a key; no overlay is the base', () => {
    assert.deepEqual(compose(base, { ha: null, firewall: null, interfaces: null }), { drift: { intervalSeconds: 5 } });
    assert.deepEqual(compose(base, undefined), base);
  });
});

describe('fleet: --fleet URL', () => {
  it('etcd:// and etcds:// with host:port lists; anything else is refused with the reason', () => {
    assert.deepEqual(parseFleetUrl('etcd://127.0.0.1:2379,[::1]:2381,etcd-a.example:2379'), { tls: false, hosts: ['127.0.0.1:2379', '[::1]:2381', 'etcd-a.example:2379'] });
    assert.equal(parseFleetUrl('etcds://e1:2379').tls, true);
    assert.throws(() => parseFleetUrl('http://e1:2379'), /must be etcd:\/\/host:port/);
    assert.throws(() => parseFleetUrl('etcd://e1'), /endpoint "e1" is not host:port/);
    assert.throws(() => parseFleetUrl('etcd://e1:99999'), /endpoint "e1:99999" is not host:port/);
  });
});

describe('fleet: health probes in the document', () => {
  it('the health section validates each probe kind and refuses duplicate names', () => {
    const ok = validateDocument({ health: { probes: [{ name: 'gw', type: 'ping', target: '192.0.2.1' }, { name: 'web', type: 'tcp', target: 'www.example', port: 443 }, { name: 'dns', type: 'dns', server: '192.0.2.53', query: 'example.org', expect: '192.0.2.80' }] } }, () => '');
    assert.deepEqual(ok.issues, []);
    assert.equal(healthOf(ok.validated!.config).probes.length, 3);
    const bad = validateDocument({ health: { probes: [{ name: 'a', type: 'ping', target: 'nope' }, { name: 'a', type: 'tcp', target: '192.0.2.1', port: 0 }, { name: 'c', type: 'smtp' }] } }, () => '');
    const paths = bad.issues.map((i) => i.path.join('.'));
    assert.ok(paths.includes('health.probes.0.target'), paths.join());
    assert.ok(paths.includes('health.probes.1.port'), paths.join());
    assert.ok(paths.includes('health.probes.2.type'), paths.join());
    assert.equal(healthOf({}).attempts, 3, 'defaults without a section');
  });
});
