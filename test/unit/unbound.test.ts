import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseBlocklist } from '../../src/services/unbound/blocklist.js';
import { buildStats, foldCounters, parseStatsText } from '../../src/services/unbound/stats.js';
import { recordRR, renderUnbound, dnsOpenings } from '../../src/services/unbound/unbound.js';
import { reverseName } from '../../src/net/address.js';
import { instancePaths } from '../../src/services/common/service.js';
import { unboundSubsystem } from '../../src/services/unbound/subsystem.js';
import { compileWith } from '../lib/services.js';
import { formatIssue } from '../../src/config/issues.js';

const files: Record<string, string> = {
  '/l/hosts': '# hosts\n127.0.0.1 localhost\n0.0.0.0 a.example.com b.example.com # two\n::1 ip6-localhost\n0.0.0.0 a.example.com\n0.0.0.0\n',
  '/l/domains': 'c.example.com\nA.Example.com.\nbad_domain!\nnotld\n1.2.3.4\n',
  '/usr/share/dns/root.key': '. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n',
};
const read = (p: string) => {
  const f = files[p];
  if (f === undefined) throw new Error('ENOENT: no such file or directory');
  return f;
};
const doc = (dns: object) => ({ interfaces: [{ name: 'lan0' }], dns: { enabled: true, listen: { interfaces: ['lan0'] }, ...dns } });

describe('unbound blocklists', () => {
  it('parses hosts and domain formats, counting junk', () => {
    assert.deepEqual(parseBlocklist(files['/l/hosts']!, 'hosts'), { domains: ['a.example.com', 'b.example.com'], invalid: 1 });
    assert.deepEqual(parseBlocklist(files['/l/domains']!, 'domains'), { domains: ['c.example.com', 'a.example.com'], invalid: 3 });
    assert.deepEqual(parseBlocklist(files['/l/hosts']! + files['/l/domains']!, 'auto').domains, ['a.example.com', 'b.example.com', 'c.example.com']);
  });

  it('counts per list, first list wins, allowlist and local names exempt', () => {
    const r = compileWith(
      unboundSubsystem,
      doc({
        blocklists: [
          { name: 'h', file: '/l/hosts', format: 'hosts', answer: 'null' },
          { name: 'd', file: '/l/domains' },
        ],
        allowlist: ['b.example.com'],
        records: [{ type: 'A', name: 'c.example.com', address: '10.0.0.1' }],
      }),
      read,
    );
    assert.deepEqual(r.issues, []);
    const bl = r.desired!.model!.blocklists.map(({ name, domains, duplicates, invalid, list }) => ({ name, domains, duplicates, invalid, list }));
    assert.deepEqual(bl, [
      { name: 'h', domains: 1, duplicates: 0, invalid: 1, list: ['a.example.com'] },
      { name: 'd', domains: 0, duplicates: 1, invalid: 3, list: [] },
    ]);
    const files = renderUnbound(r.desired!.model!, instancePaths('/s', 'unbound'));
    assert.match(files.find((f) => f.path === 'blocklist-h.conf')!.content, /^\tlocal-zone: "a\.example\.com\." always_null$/m);
    assert.match(files.find((f) => f.path === 'records.conf')!.content, /^\tlocal-zone: "b\.example\.com\." transparent$/m);
    assert.deepEqual(JSON.parse(files.find((f) => f.path === 'blocklists.json')!.content)[0], { name: 'h', file: '/l/hosts', answer: 'null', domains: 1, duplicates: 0, invalid: 1 });
  });
});

describe('unbound rendering', () => {
  it('renders every record type; TXT quotes are escaped', () => {
    assert.equal(recordRR({ type: 'TXT', name: 't.example', ttl: 60, text: `a"b'c\\d` }), 't.example. 60 IN TXT "a\\034b\\039c\\092d"');
    assert.equal(recordRR({ type: 'SRV', name: '_x._tcp.Example.', ttl: 1, priority: 1, weight: 2, port: 3, target: 'h.example' }), '_x._tcp.example. 1 IN SRV 1 2 3 h.example.');
    assert.equal(recordRR({ type: 'PTR', name: '2001:db8::1', ttl: 5, target: 'h.example' }).split(' ')[0], '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.');
    assert.equal(reverseName('192.0.2.7'), '7.2.0.192.in-addr.arpa');
    assert.equal(reverseName('::ffff:192.0.2.7').slice(0, 24), '7.0.2.0.0.0.0.c.f.f.f.f.');
    const long = recordRR({ type: 'TXT', name: 't.example', ttl: 60, text: 'x'.repeat(300) });
    assert.match(long, /IN TXT "x{255}" "x{45}"$/);
  });

  it('forward mode with TLS, DNSSEC anchor, per-instance paths', () => {
    const r = compileWith(unboundSubsystem, doc({ mode: 'forward', tls: true, upstreams: [{ address: '9.9.9.9', tlsName: 'dns.quad9.net' }], forwardZones: [{ name: 'test', servers: [{ address: '10.0.0.53', port: 5353 }] }] }), (p) => (p.startsWith('/etc/ssl') ? 'pem' : read(p)));
    assert.deepEqual(r.issues, []);
    const conf = renderUnbound(r.desired!.model!, instancePaths('/s', 'unbound'))[0]!.content;
    for (const line of [
      'pidfile: "/s/services/unbound/run/unbound.pid"',
      'username: ""',
      'chroot: ""',
      'control-interface: "/s/services/unbound/run/control.sock"',
      'trust-anchor-file: "/usr/share/dns/root.key"',
      'module-config: "validator iterator"',
      'tls-cert-bundle: "/etc/ssl/certs/ca-certificates.crt"',
      'forward-addr: 9.9.9.9@853#dns.quad9.net',
      'forward-addr: 10.0.0.53@5353',
      'local-zone: "test." nodefault',
      'domain-insecure: "test."',
    ])
      assert.ok(conf.includes(line), `${line}\n${conf}`);
  });

  it('reports path-qualified issues', () => {
    const r = compileWith(unboundSubsystem, doc({ listen: { interfaces: ['eth9'] }, dnssec: { trustAnchorFile: '/nope' }, records: [{ type: 'MX', name: 'bad name', exchange: 'x' }] }), read);
    assert.deepEqual(r.issues.map((i) => formatIssue(i).split(':')[0]), ['dns.records[0].name']);
    const r2 = compileWith(unboundSubsystem, doc({ listen: { interfaces: ['eth9'] }, dnssec: { trustAnchorFile: '/nope' } }), read);
    assert.deepEqual(r2.issues.map((i) => formatIssue(i).split(':')[0]), ['dns.listen.interfaces[0]', 'dns.dnssec.trustAnchorFile']);
    const r3 = compileWith(unboundSubsystem, doc({ records: [{ type: 'TXT', name: 'x.example', text: 'line\nbreak' }] }), read);
    assert.deepEqual(r3.issues.map((i) => formatIssue(i)), ['dns.records[0].text: printable ASCII only']);
  });

  it('disabled means nothing to run and no openings', () => {
    const r = compileWith(unboundSubsystem, {}, read);
    assert.equal(r.desired!.model, null);
  });
});

describe('unbound stats', () => {
  it('folds counters across reloads; gauges stay live', () => {
    const live1 = parseStatsText('thread0.num.queries=4\ntotal.num.queries=4\nnum.query.type.A=3\nnum.answer.rcode.NXDOMAIN=1\nmem.cache.rrset=1000\ntime.up=5.5\nhistogram.000000.000000.to.000000.000001=2\n');
    assert.deepEqual(live1, { 'total.num.queries': 4, 'num.query.type.A': 3, 'num.answer.rcode.NXDOMAIN': 1, 'mem.cache.rrset': 1000, 'time.up': 5.5 });
    const base = foldCounters({}, live1);
    assert.deepEqual(base, { 'total.num.queries': 4, 'num.query.type.A': 3, 'num.answer.rcode.NXDOMAIN': 1 });
    const s = buildStats(base, parseStatsText('total.num.queries=2\nnum.query.type.AAAA=2\nmem.cache.rrset=800\n'));
    assert.equal(s.summary.queries, 6);
    assert.deepEqual(s.summary.byType, { A: 3, AAAA: 2 });
    assert.deepEqual(s.gauges, { 'mem.cache.rrset': 800 });
  });

  it('openings follow listen interfaces and non-loopback addresses', () => {
    const base = { enabled: true, listen: { interfaces: [], addresses: ['127.0.0.1'], port: 53 } } as never;
    assert.deepEqual(dnsOpenings(base), []);
    const withAddr = { enabled: true, listen: { interfaces: ['lan0'], addresses: ['10.0.0.1'], port: 53 } } as never;
    assert.deepEqual(dnsOpenings(withAddr).map((o) => `${o.proto}/${o.port}@${o.interfaces.join(',') || '*'}`), ['udp/53@lan0', 'tcp/53@lan0', 'udp/53@*', 'tcp/53@*']);
  });
});
