/**
 * Unbound for real: a gateway namespace runs the resolver Patronus renders,
 * a client namespace queries it with dig, and an upstream namespace runs a
 * second Unbound holding the "internet" (local-data), reached over UDP.
 *
 *   client (10.53.0.2) --lan0-- gw (10.53.0.1 | 10.54.0.1) --wan0-- upstream (10.54.0.2)
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { compileWith, mustCompile, readFile } from '../lib/services.js';
import { validateDocument } from '../../src/domains.js';
import { Host } from '../../src/system/host.js';
import { startDaemon, stopDaemon, DaemonError } from '../../src/services/common/daemon.js';
import { instancePaths } from '../../src/services/common/service.js';
import { unboundSubsystem } from '../../src/services/unbound/subsystem.js';
import type { UnboundStatus } from '../../src/services/unbound/unbound.js';
import { formatIssue } from '../../src/config/issues.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { domain as dnsDomain } from '../../src/services/unbound/domain.js';
import { firstOutput } from '../lib/children.js';

const ldnsSkip = missing({ cmd: 'ldns-keygen' }, { cmd: 'ldns-signzone' });
const skip = missing('netns', { cmd: 'openssl' }, { cmd: 'unbound' }, { cmd: 'unbound-checkconf' }, { cmd: 'unbound-control' }, { cmd: 'dig' });

describe('unbound (dns:) with real daemons', { timeout: 300_000, skip }, () => {
  const lab = new Lab();
  let gw: Netns, client: Netns, upstream: Netns;
  let dir: string;
  let host: Host;
  let signed: { zonefile: string; ds: string; otherDs: string } | undefined;
  const upstreamSpec = () => ({
    name: 'upstream-unbound',
    command: 'unbound',
    args: ['-d', '-c', path.join(dir, 'upstream.conf')],
    pidFile: path.join(dir, 'upstream.pid'),
    daemonWritesPid: true,
    logFile: path.join(dir, 'upstream.log'),
  });

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-unbound-'));
    gw = await lab.ns('gw');
    client = await lab.ns('cl');
    upstream = await lab.ns('up');
    await lab.veth({ ns: gw, dev: 'lan0', address: '10.53.0.1/24' }, { ns: client, dev: 'eth0', address: '10.53.0.2/24' });
    await lab.veth({ ns: gw, dev: 'wan0', address: '10.54.0.1/24' }, { ns: upstream, dev: 'eth0', address: '10.54.0.2/24' });
    host = new Host({ netns: gw.name, stateDir: path.join(dir, 'state') });

    await makeCerts(dir);
    signed = ldnsSkip ? undefined : await signZone(dir);
    // the "internet": an independent Unbound answering from local-data, over UDP/TCP and DNS over TLS
    writeFileSync(
      path.join(dir, 'upstream.conf'),
      [
        'server:',
        '  username: ""',
        '  chroot: ""',
        `  directory: "${dir}"`,
        `  pidfile: "${path.join(dir, 'upstream.pid')}"`,
        '  use-syslog: no',
        '  interface: 10.54.0.2',
        '  interface: 10.54.0.2@853',
        '  tls-port: 853',
        `  tls-service-key: "${path.join(dir, 'up.key')}"`,
        `  tls-service-pem: "${path.join(dir, 'up.pem')}"`,
        '  access-control: 0.0.0.0/0 allow',
        '  module-config: "iterator"',
        '  local-zone: "example.org." static',
        '  local-data: "www.example.org. 300 IN A 192.0.2.80"',
        '  local-data: "ok.ads.example.org. 300 IN A 192.0.2.81"',
        '  local-zone: "test." static',
        '  local-data: "svc.test. 300 IN A 192.0.2.53"',
        ...(signed ? ['auth-zone:', '  name: "secure.example."', `  zonefile: "${signed.zonefile}"`, '  for-downstream: yes', '  for-upstream: no'] : []),
        '',
      ].join('\n'),
    );
    await startDaemon(new Host({ netns: upstream.name, stateDir: dir }), upstreamSpec());

    writeFileSync(path.join(dir, 'ads.txt'), '# ad servers\nads.example.org\ntracker.example.net.\nnot a domain line\n\nads.example.org\n');
    writeFileSync(path.join(dir, 'malware.hosts'), '127.0.0.1 localhost\n0.0.0.0 malware.example.com # bad\n0.0.0.0 ads.example.org\n::1 ip6-localhost\n');
  });

  after(async () => {
    try {
      await unboundSubsystem.teardown?.(host);
      await stopDaemon(upstreamSpec());
    } finally {
      await lab.teardown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const doc = (dns: Record<string, unknown>) => ({
    interfaces: [
      { name: 'lan0', zone: 'lan' },
      { name: 'wan0', zone: 'wan' },
    ],
    dns: {
      enabled: true,
      mode: 'forward',
      upstreams: [{ address: '10.54.0.2' }],
      forwardZones: [{ name: 'test', servers: [{ address: '10.54.0.2' }] }],
      listen: { interfaces: ['lan0'], addresses: ['127.0.0.1'] },
      dnssec: { enabled: false },
      records: [
        { type: 'A', name: 'nas.lan.example', address: '10.53.0.10' },
        { type: 'AAAA', name: 'nas.lan.example', address: '2001:db8::10' },
        { type: 'CNAME', name: 'files.lan.example', target: 'nas.lan.example' },
        { type: 'MX', name: 'lan.example', preference: 5, exchange: 'mail.lan.example' },
        { type: 'PTR', name: '10.53.0.10', target: 'nas.lan.example' },
        { type: 'TXT', name: 'lan.example', text: 'v=spf1 "quoted" -all' },
        { type: 'SRV', name: '_ldap._tcp.lan.example', priority: 1, weight: 2, port: 389, target: 'nas.lan.example' },
      ],
      blocklists: [
        { name: 'ads', file: path.join(dir, 'ads.txt'), format: 'domains', answer: 'nxdomain' },
        { name: 'malware', file: path.join(dir, 'malware.hosts'), format: 'hosts', answer: 'null' },
      ],
      allowlist: ['ok.ads.example.org'],
      ...dns,
    },
  });

  const dig = async (name: string, type = 'A', server = '10.53.0.1') => {
    const r = await client.exec('dig', ['+time=2', '+tries=3', `@${server}`, name, type], { reject: false });
    const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? `no answer (${r.stdout.trim().split('\n').pop()})`;
    const answers = r.stdout
      .split('\n;; ANSWER SECTION:\n')[1]
      ?.split('\n\n')[0]
      ?.split('\n')
      .map((l) => l.split(/\s+/).slice(3).join(' ')) ?? [];
    return { status, answers };
  };

  it('answers local records, blocks listed names, forwards the rest upstream', async () => {
    const desired = mustCompile(unboundSubsystem, doc({}));
    assert.deepEqual(await unboundSubsystem.validate!(desired, host), []);
    assert.deepEqual((await unboundSubsystem.plan(desired, host)).find((c) => c.action === 'start'), { action: 'start', object: 'unbound' });
    await unboundSubsystem.apply(desired, host);

    assert.deepEqual(await dig('nas.lan.example'), { status: 'NOERROR', answers: ['A 10.53.0.10'] });
    assert.deepEqual(await dig('nas.lan.example', 'AAAA'), { status: 'NOERROR', answers: ['AAAA 2001:db8::10'] });
    assert.equal((await dig('files.lan.example')).answers[0], 'CNAME nas.lan.example.');
    assert.deepEqual(await dig('lan.example', 'MX'), { status: 'NOERROR', answers: ['MX 5 mail.lan.example.'] });
    assert.deepEqual(await dig('10.0.53.10.in-addr.arpa', 'PTR'), { status: 'NOERROR', answers: ['PTR nas.lan.example.'] });
    assert.deepEqual(await dig('lan.example', 'TXT'), { status: 'NOERROR', answers: ['TXT "v=spf1 \\"quoted\\" -all"'] });
    assert.deepEqual(await dig('_ldap._tcp.lan.example', 'SRV'), { status: 'NOERROR', answers: ['SRV 1 2 389 nas.lan.example.'] });

    // blocked: NXDOMAIN list (subdomains too), null list answers 0.0.0.0 / ::
    assert.equal((await dig('ads.example.org')).status, 'NXDOMAIN');
    assert.equal((await dig('deep.tracker.example.net')).status, 'NXDOMAIN');
    assert.deepEqual(await dig('malware.example.com'), { status: 'NOERROR', answers: ['A 0.0.0.0'] });
    assert.deepEqual(await dig('malware.example.com', 'AAAA'), { status: 'NOERROR', answers: ['AAAA ::'] });
    // allowlisted name under a blocked parent is forwarded
    assert.deepEqual(await dig('ok.ads.example.org'), { status: 'NOERROR', answers: ['A 192.0.2.81'] });

    // forwarded to the upstream namespace (default forward and the reserved test. zone)
    assert.deepEqual(await dig('www.example.org'), { status: 'NOERROR', answers: ['A 192.0.2.80'] });
    assert.deepEqual(await dig('svc.test'), { status: 'NOERROR', answers: ['A 192.0.2.53'] });
    assert.equal((await dig('nothing.example.org')).status, 'NXDOMAIN');

    const status = (await unboundSubsystem.status!(host)) as { running: boolean; detail: UnboundStatus };
    assert.equal(status.running, true);
    assert.deepEqual(
      status.detail.blocklists.map(({ name, domains, duplicates, invalid }) => ({ name, domains, duplicates, invalid })),
      [
        { name: 'ads', domains: 2, duplicates: 0, invalid: 1 },
        { name: 'malware', domains: 1, duplicates: 1, invalid: 0 },
      ],
    );
    const s = status.detail.stats.summary;
    assert.ok(s.queries >= 15, `queries counted: ${s.queries}`);
    assert.ok((s.byRcode.NXDOMAIN ?? 0) >= 3, `NXDOMAIN answers counted: ${JSON.stringify(s.byRcode)}`);
    assert.ok((s.byType.SRV ?? 0) >= 1 && (s.byType.MX ?? 0) >= 1, `per-type counts: ${JSON.stringify(s.byType)}`);

    // the same numbers on the Prometheus endpoint
    const metrics = createMetrics({ domains: [dnsDomain], subsystems: [unboundSubsystem], host, on: () => undefined } as never, { processMetrics: false });
    assert.match(await metrics.registry.getSingleMetricAsString('patronus_dns_queries_total'), /^patronus_dns_queries_total\{type="SRV"\} [1-9]/m);
    assert.match(await metrics.registry.getSingleMetricAsString('patronus_dns_answers_total'), /^patronus_dns_answers_total\{rcode="NXDOMAIN"\} [3-9]/m);
    assert.match(await metrics.registry.getSingleMetricAsString('patronus_dns_blocklist_domains'), /^patronus_dns_blocklist_domains\{list="ads"\} 2$/m);
    assert.match(await metrics.registry.getSingleMetricAsString('patronus_service_up'), /^patronus_service_up\{service="unbound"\} 1$/m);

    // a second apply of the same config changes nothing
    assert.deepEqual(await unboundSubsystem.plan(desired, host), []);
  });

  it('reloads changed records and access control; counters stay monotonic', async () => {
    const before = ((await unboundSubsystem.status!(host)) as { detail: UnboundStatus }).detail;
    const pid = before.pid;
    const input = doc({});
    (input.dns.records as unknown[]).push({ type: 'A', name: 'new.lan.example', address: '10.53.0.11' });
    const desired = mustCompile(unboundSubsystem, input);
    const plan = await unboundSubsystem.plan(desired, host);
    assert.ok(plan.some((c) => c.action === 'reload'), JSON.stringify(plan));
    await unboundSubsystem.apply(desired, host);
    assert.deepEqual(await dig('new.lan.example'), { status: 'NOERROR', answers: ['A 10.53.0.11'] });
    const after1 = ((await unboundSubsystem.status!(host)) as { detail: UnboundStatus }).detail;
    assert.equal(after1.pid, pid, 'a reload keeps the process');
    assert.ok(after1.stats.summary.queries > before.stats.summary.queries, `queries ${before.stats.summary.queries} -> ${after1.stats.summary.queries}`);

    // an access-control entry overrides the listen interface's allow
    const refused = doc({ access: [{ network: '10.53.0.2/32', action: 'refuse' }] });
    await unboundSubsystem.apply(mustCompile(unboundSubsystem, refused), host);
    assert.equal((await dig('nas.lan.example')).status, 'REFUSED');

    // listen changes need a restart (new pid); counters still only grow
    const moved = doc({ listen: { interfaces: ['lan0'], addresses: ['127.0.0.1'], port: 5353 } });
    await unboundSubsystem.apply(mustCompile(unboundSubsystem, moved), host);
    const after2 = ((await unboundSubsystem.status!(host)) as { detail: UnboundStatus }).detail;
    assert.notEqual(after2.pid, pid);
    const r = await client.exec('dig', ['+time=2', '+tries=3', '-p', '5353', '@10.53.0.1', 'nas.lan.example', '+short']);
    assert.equal(r.stdout.trim(), '10.53.0.10');
    assert.ok(after2.stats.summary.queries >= after1.stats.summary.queries);
  });

  it('openings are DNS on the listen interfaces only', () => {
    const { validated } = validateDocument(doc({}), readFile);
    assert.deepEqual(unboundSubsystem.openings!(validated!.config), [
      { service: 'unbound', proto: 'udp', port: 53, interfaces: ['lan0'] },
      { service: 'unbound', proto: 'tcp', port: 53, interfaces: ['lan0'] },
    ]);
    const off = validateDocument({ ...doc({}), dns: { enabled: false } }, readFile);
    assert.deepEqual(unboundSubsystem.openings!(off.validated!.config), []);
  });

  it('forwards over DNS over TLS, verifying the upstream certificate', async () => {
    const dot = (tlsName: string) =>
      mustCompile(unboundSubsystem, doc({ tls: true, tlsCaBundle: path.join(dir, 'ca.pem'), upstreams: [{ address: '10.54.0.2', tlsName }], forwardZones: [] }));
    await unboundSubsystem.apply(dot('upstream.test'), host);
    assert.deepEqual(await dig('www.example.org'), { status: 'NOERROR', answers: ['A 192.0.2.80'] });
    // the same server under a name its certificate does not carry: refused by verification
    // (a name not in the cache: a reload keeps the cache)
    await unboundSubsystem.apply(dot('impostor.test'), host);
    assert.equal((await dig('ok.ads.example.org')).status, 'SERVFAIL');

    await unboundSubsystem.apply(mustCompile(unboundSubsystem, doc({})), host);
  });

  it('validates DNSSEC with a configured trust anchor', { skip: ldnsSkip }, async () => {
    const secure = (ds: string) =>
      mustCompile(
        unboundSubsystem,
        doc({ dnssec: { enabled: true, trustAnchors: [ds] }, forwardZones: [{ name: 'secure.example', servers: [{ address: '10.54.0.2' }], insecure: false }] }),
      );
    await unboundSubsystem.apply(secure(signed!.ds), host);
    const good = await client.exec('dig', ['+time=2', '+tries=3', '+dnssec', '@10.53.0.1', 'www.secure.example', 'A']);
    assert.match(good.stdout, /status: NOERROR/);
    assert.match(good.stdout, /flags: [a-z ]*\bad\b/, `authenticated data flag:\n${good.stdout}`);
    assert.match(good.stdout, /IN\s+A\s+192\.0\.2\.99/);
    // an anchor that does not match the zone's key: the answers are bogus
    await unboundSubsystem.apply(secure(signed!.otherDs), host);
    assert.equal((await dig('ns.secure.example')).status, 'SERVFAIL');
    await unboundSubsystem.apply(mustCompile(unboundSubsystem, doc({})), host);
  });

  it('rejects invalid config with path-qualified issues before touching the daemon', async () => {
    const pidBefore = ((await unboundSubsystem.status!(host)) as { detail: UnboundStatus }).detail.pid;
    const confBefore = readFileSync(instancePaths(host.stateDir, 'unbound').file('unbound.conf'), 'utf8');
    const bad = doc({
      listen: { interfaces: ['nope0'] },
      records: [{ type: 'A', name: 'x.lan', address: '10.0.0.300' }],
      blocklists: [{ name: 'gone', file: path.join(dir, 'missing.txt') }],
    });
    const r1 = compileWith(unboundSubsystem, bad);
    assert.deepEqual(r1.issues.map(formatIssue), ['dns.records[0].address: must be an IPv4 address']);
    bad.dns.records = [];
    const r2 = compileWith(unboundSubsystem, bad);
    assert.deepEqual(r2.issues.map((i) => formatIssue(i).split(':')[0]), ['dns.listen.interfaces[0]', 'dns.blocklists[0].file']);
    assert.match(formatIssue(r2.issues[1]!), /cannot read blocklist .*missing\.txt/);
    const r3 = compileWith(unboundSubsystem, doc({ mode: 'forward', upstreams: [], tls: true }));
    assert.deepEqual(r3.issues.map((i) => formatIssue(i).split(':')[0]), ['dns.upstreams']);
    const r4 = compileWith(unboundSubsystem, doc({ tls: true, upstreams: [{ address: '10.54.0.2' }] }));
    assert.deepEqual(r4.issues.map((i) => formatIssue(i).split(':')[0]), ['dns.upstreams[0].tlsName']);
    // the checker rejects what the schema cannot know (an interface with no address here)
    await gw.ip('link', 'add', 'lo9', 'type', 'veth', 'peer', 'name', 'lo9p').catch(() => undefined);
    const noAddr = mustCompile(unboundSubsystem, { ...doc({ listen: { interfaces: ['lo9'] } }), interfaces: [{ name: 'lo9' }] });
    const checked = await unboundSubsystem.validate!(noAddr, host);
    assert.equal(checked.length, 1);
    assert.deepEqual(checked[0]!.path, ['dns']);
    assert.match(checked[0]!.message, /unbound-checkconf/);
    // nothing running changed
    assert.equal(((await unboundSubsystem.status!(host)) as { detail: UnboundStatus }).detail.pid, pidBefore);
    assert.equal(readFileSync(instancePaths(host.stateDir, 'unbound').file('unbound.conf'), 'utf8'), confBefore);
  });

  it('a daemon that cannot start makes apply throw with its log', async () => {
    await unboundSubsystem.teardown!(host);
    assert.equal(existsSync(instancePaths(host.stateDir, 'unbound').dir), false);
    // passes the checker, but another process holds the port
    const squatter = gw.spawn(process.execPath, ['-e', 'require("net").createServer().listen(5399, "127.0.0.1", () => console.log("ok")); setTimeout(() => {}, 60000)']);
    try {
      await firstOutput(squatter, 'a process holding 127.0.0.1:5399');
      const desired = mustCompile(unboundSubsystem, doc({ listen: { interfaces: [], addresses: ['127.0.0.1'], port: 5399 } }));
      assert.deepEqual(await unboundSubsystem.validate!(desired, host), []);
      await assert.rejects(unboundSubsystem.apply(desired, host), (e: unknown) => {
        assert.ok(e instanceof DaemonError, String(e));
        assert.match(e.message, /unbound/);
        assert.match(e.log, /bind|address already in use/i);
        return true;
      });
      assert.equal(((await unboundSubsystem.status!(host)) as { running: boolean }).running, false);
    } finally {
      squatter.kill('SIGKILL');
    }
  });
});

/** A CA and a server certificate for upstream.test (DNS over TLS upstream). */
async function makeCerts(dir: string): Promise<void> {
  const f = (n: string) => path.join(dir, n);
  const ossl = (args: string[]) => execa('openssl', args);
  await ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=Patronus test CA']);
  await ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('up.key'), '-out', f('up.csr'), '-subj', '/CN=upstream.test']);
  writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:upstream.test\nextendedKeyUsage=serverAuth\n');
  await ossl(['x509', '-req', '-in', f('up.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('up.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
}

/** A zone signed with a fresh ECDSA key; its DS, and the DS of an unrelated key. */
async function signZone(dir: string): Promise<{ zonefile: string; ds: string; otherDs: string }> {
  const zone = path.join(dir, 'secure.example.zone');
  writeFileSync(
    zone,
    ['$ORIGIN secure.example.', '$TTL 300', '@ IN SOA ns.secure.example. admin.secure.example. 1 3600 600 86400 300', '@ IN NS ns', 'ns IN A 10.54.0.2', 'www IN A 192.0.2.99', ''].join('\n'),
  );
  const keygen = async () => (await execa('ldns-keygen', ['-a', 'ECDSAP256SHA256', '-k', 'secure.example'], { cwd: dir })).stdout.trim();
  const key = await keygen();
  const other = await keygen();
  await execa('ldns-signzone', ['-f', `${zone}.signed`, zone, key], { cwd: dir });
  const ds = (base: string) => readFileSync(path.join(dir, `${base}.ds`), 'utf8').trim();
  return { zonefile: `${zone}.signed`, ds: ds(key), otherDs: ds(other) };
}
