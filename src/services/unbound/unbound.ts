/**
 * Unbound as a ServiceModule: one instance under <stateDir>/services/unbound,
 * run in the foreground under direct supervision (its own pid file, no
 * chroot, no user switch, control over a unix socket that needs no
 * certificates). Listen settings live in their own file because Unbound
 * only rebinds on restart; everything else applies with a reload.
 */
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { isAddress, reverseName } from '../../net/address.js';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import type { CompileContext, ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import type { Issue } from '../../config/issues.js';
import { daemonPid, startDaemon, stopDaemon, DaemonError } from '../common/daemon.js';
import type { InstancePaths, RenderedFile, ServiceModule } from '../common/service.js';
import { parseBlocklist } from './blocklist.js';
import type { DnsConfig, DnsRecord, Upstream } from './schema.js';
import { buildStats, foldCounters, parseStatsText, type UnboundStats } from './stats.js';

export interface BlocklistCount {
  name: string;
  file: string;
  answer: 'nxdomain' | 'null';
  /** domains this list blocks (after removing duplicates and allowlisted names) */
  domains: number;
  /** domains already blocked by an earlier list */
  duplicates: number;
  /** lines with no usable domain */
  invalid: number;
}

export interface UnboundModel {
  config: DnsConfig;
  blocklists: (BlocklistCount & { list: string[] })[];
}

export interface UnboundStatus {
  pid: number | undefined;
  blocklists: BlocklistCount[];
  stats: UnboundStats;
}

const SECTION = 'dns';
const CONF = 'unbound.conf';
const LISTEN = 'listen.conf';
const STATS_BASE = 'stats-base.json';
const COUNTS = 'blocklists.json';

export const unboundService: ServiceModule<UnboundModel> = {
  name: 'unbound',

  desired(ctx: CompileContext) {
    const c = ctx.config.dns;
    if (!c.enabled) return { desired: null, issues: [] };
    const issues: Issue[] = [];
    const managed = new Set(ctx.config.interfaces.map((i) => i.name));
    c.listen.interfaces.forEach((name, i) => {
      if (!managed.has(name)) issues.push({ path: [SECTION, 'listen', 'interfaces', i], message: `"${name}" is not a managed interface (add it under interfaces:)` });
    });
    if (c.dnssec.enabled) readable(ctx, c.dnssec.trustAnchorFile, [SECTION, 'dnssec', 'trustAnchorFile'], issues, 'trust anchor');
    if (c.tls || c.forwardZones.some((z) => z.tls)) readable(ctx, c.tlsCaBundle, [SECTION, 'tlsCaBundle'], issues, 'CA bundle');

    // names that have local data or their own forwarding are never blocked
    const exempt = new Set([...c.allowlist, ...c.records.map((r) => recordOwner(r)), ...c.forwardZones.map((z) => z.name)].map(norm));
    const blocked = new Set<string>();
    const blocklists: UnboundModel['blocklists'] = [];
    c.blocklists.forEach((b, i) => {
      let text: string;
      try {
        text = ctx.readFile(b.file);
      } catch (e) {
        issues.push({ path: [SECTION, 'blocklists', i, 'file'], message: `cannot read blocklist ${b.file}: ${(e as Error).message}` });
        return;
      }
      const parsed = parseBlocklist(text, b.format);
      const list: string[] = [];
      let duplicates = 0;
      for (const d of parsed.domains) {
        if (exempt.has(d)) continue;
        if (blocked.has(d)) duplicates++;
        else {
          blocked.add(d);
          list.push(d);
        }
      }
      blocklists.push({ name: b.name, file: b.file, answer: b.answer, domains: list.length, duplicates, invalid: parsed.invalid, list });
    });
    return { desired: issues.length ? null : { config: c, blocklists }, issues };
  },

  render(model, paths) {
    return renderUnbound(model, paths);
  },

  async check(_model, paths, host) {
    const r = await host.run('unbound-checkconf', [paths.file(CONF)], { reject: false });
    if (r.exitCode === 0) return [];
    const out = `${r.stdout}\n${r.stderr}`.split(paths.dir + '/').join('').trim();
    return [{ path: [SECTION], message: `unbound-checkconf rejected the rendered configuration: ${out}` }];
  },

  async start(model, paths, host) {
    await startDaemon(host, {
      name: 'unbound',
      command: 'unbound',
      args: ['-d', '-c', paths.file(CONF)],
      pidFile: paths.pidFile,
      daemonWritesPid: true,
      logFile: paths.logFile,
      ready: async () => (await control(paths, host, ['status'], false)).exitCode === 0,
      // loading blocklists takes ~12 ms per 1000 domains here (bench/dns): leave room for big ones
      readyTimeoutMs: loadBudgetMs(model),
    });
  },

  async reload(model, paths, host, changed) {
    await saveCounters(paths, host);
    if (changed.includes(LISTEN) || changed.some((f) => f.startsWith(`${DOT_CERT}.`))) {
      // interfaces and port are bound once at start-up, the DoT certificate loaded once
      await stopDaemon(daemonSpec(paths));
      await unboundService.start(model, paths, host);
      return;
    }
    // keeps the cache when only zones/records/lists changed; falls back when sizes changed
    const timeout = loadBudgetMs(model);
    const keep = await control(paths, host, ['reload_keep_cache'], false, timeout);
    if (keep.exitCode !== 0) {
      const r = await control(paths, host, ['reload'], false, timeout);
      if (r.exitCode !== 0) throw new DaemonError('unbound', `reload failed: ${(r.stderr || r.stdout).trim()}`, '');
    }
  },

  async stop(paths, host) {
    if (daemonPid(paths.pidFile, 'unbound')) await saveCounters(paths, host).catch(() => undefined);
    await stopDaemon(daemonSpec(paths));
  },

  async running(paths) {
    return daemonPid(paths.pidFile, 'unbound') !== undefined;
  },

  async status(paths, host): Promise<UnboundStatus> {
    return { pid: daemonPid(paths.pidFile, 'unbound'), blocklists: blocklistCounts(paths), stats: await unboundStats(paths, host) };
  },

  openings(config: Config): ServiceOpening[] {
    return dnsOpenings(config.dns);
  },

  certificates(model) {
    const dot = model.config.listen.tls;
    return dot ? [{ name: dot.certificate, file: DOT_CERT }] : [];
  },
};

/** the DoT certificate's copy in the instance dir (.pem, .key) */
const DOT_CERT = 'tls/dot';

/** Query statistics, monotonic across reloads (see stats.ts). */
export async function unboundStats(paths: InstancePaths, host: Host): Promise<UnboundStats> {
  const r = await control(paths, host, ['stats_noreset'], true);
  return buildStats(readBase(paths), parseStatsText(r.stdout));
}

/** How many domains each blocklist loaded (written at apply time). */
export function blocklistCounts(paths: InstancePaths): BlocklistCount[] {
  try {
    return JSON.parse(readFileSync(paths.file(COUNTS), 'utf8')) as BlocklistCount[];
  } catch {
    return [];
  }
}

export function dnsOpenings(c: DnsConfig): ServiceOpening[] {
  if (!c.enabled) return [];
  const port = c.listen.port;
  const out: ServiceOpening[] = [];
  const add = (interfaces: string[]) => {
    out.push({ service: 'unbound', proto: 'udp', port, interfaces }, { service: 'unbound', proto: 'tcp', port, interfaces });
    if (c.listen.tls) out.push({ service: 'unbound', proto: 'tcp', port: c.listen.tls.port, interfaces });
  };
  if (c.listen.interfaces.length) add([...c.listen.interfaces]);
  // an address alone does not say which interface holds it: open on every managed one
  if (c.listen.addresses.some((a) => !isLoopback(a))) add([]);
  return out;
}

export function renderUnbound(model: UnboundModel, paths: InstancePaths): RenderedFile[] {
  const c = model.config;
  const q = quote;
  const validating = c.dnssec.enabled;
  const anyTls = c.tls || c.forwardZones.some((z) => z.tls);
  const server: string[] = [
    'server:',
    `\tverbosity: ${c.logQueries ? 2 : 1}`,
    '\tusername: ""',
    '\tchroot: ""',
    `\tdirectory: ${q(paths.dir)}`,
    `\tpidfile: ${q(paths.pidFile)}`,
    '\tlogfile: ""',
    '\tuse-syslog: no',
    '\tlog-time-ascii: yes',
    `\tlog-queries: ${yn(c.logQueries)}`,
    '\tdo-daemonize: no',
    '\tnum-threads: 1',
    '\tso-reuseport: no',
    // addresses still in duplicate address detection (or added after start) can be bound
    '\tip-freebind: yes',
    '\tstatistics-interval: 0',
    '\tstatistics-cumulative: no',
    '\textended-statistics: yes',
    '\thide-identity: yes',
    '\thide-version: yes',
    '\tqname-minimisation: yes',
    `\tprefetch: ${yn(c.cache.prefetch)}`,
    `\tcache-min-ttl: ${c.cache.minTtl}`,
    `\tcache-max-ttl: ${c.cache.maxTtl}`,
    `\tmodule-config: ${q(validating ? 'validator iterator' : 'iterator')}`,
  ];
  if (validating) {
    // a static anchor file: read at start, never fetched (works offline)
    server.push(`\ttrust-anchor-file: ${q(c.dnssec.trustAnchorFile)}`);
    for (const a of c.dnssec.trustAnchors) server.push(`\ttrust-anchor: ${q(a.trim().replace(/\s+/g, ' '))}`);
    for (const d of c.dnssec.insecureDomains) server.push(`\tdomain-insecure: ${q(fqdn(d))}`);
    for (const z of c.forwardZones) if (z.insecure) server.push(`\tdomain-insecure: ${q(fqdn(z.name))}`);
  }
  if (anyTls) server.push(`\ttls-cert-bundle: ${q(c.tlsCaBundle)}`);
  server.push('\taccess-control: 127.0.0.0/8 allow', '\taccess-control: ::1/128 allow');
  for (const a of c.access) server.push(`\taccess-control: ${a.network} ${a.action}`);
  // forwarded zones may be ones Unbound answers itself by default (test., home.arpa., ...)
  for (const z of c.forwardZones) server.push(`\tlocal-zone: ${q(fqdn(z.name))} nodefault`);

  const files: RenderedFile[] = [];
  server.push(`\tinclude: ${q(paths.file(LISTEN))}`);
  files.push({ path: LISTEN, content: header() + renderListen(c, paths) });
  server.push(`\tinclude: ${q(paths.file('records.conf'))}`);
  files.push({ path: 'records.conf', content: header() + renderRecords(c) });
  for (const b of model.blocklists) {
    const file = `blocklist-${b.name}.conf`;
    const type = b.answer === 'null' ? 'always_null' : 'always_nxdomain';
    server.push(`\tinclude: ${q(paths.file(file))}`);
    files.push({ path: file, content: header() + b.list.map((d) => `\tlocal-zone: ${q(`${d}.`)} ${type}\n`).join('') });
  }

  const control = ['remote-control:', '\tcontrol-enable: yes', `\tcontrol-interface: ${q(controlSocket(paths))}`, '\tcontrol-use-cert: no'];
  const forwards: string[] = [];
  if (c.mode === 'forward') forwards.push(...forwardZone('.', c.upstreams, c.tls));
  for (const z of c.forwardZones) forwards.push(...forwardZone(fqdn(z.name), z.servers, z.tls));

  const conf = header() + [...server, '', ...control, '', ...forwards].join('\n') + '\n';
  files.unshift({ path: CONF, content: conf });
  const counts: BlocklistCount[] = model.blocklists.map(({ list: _list, ...count }) => count);
  files.push({ path: COUNTS, content: JSON.stringify(counts, null, 2) + '\n' });
  return files;
}

// ---------------------------------------------------------------------------

function renderListen(c: DnsConfig, paths: InstancePaths): string {
  const lines = [`\tport: ${c.listen.port}`];
  for (const i of c.listen.interfaces) lines.push(`\tinterface: ${i}`);
  for (const a of c.listen.addresses) lines.push(`\tinterface: ${a}`);
  const dot = c.listen.tls;
  if (dot) {
    // the same addresses again on the DoT port; the certificate is a copy the service framework keeps current
    for (const i of c.listen.interfaces) lines.push(`\tinterface: ${i}@${dot.port}`);
    for (const a of c.listen.addresses) lines.push(`\tinterface: ${a}@${dot.port}`);
    lines.push(`\ttls-port: ${dot.port}`, `\ttls-service-pem: ${quote(paths.file(`${DOT_CERT}.pem`))}`, `\ttls-service-key: ${quote(paths.file(`${DOT_CERT}.key`))}`);
  }
  // clients on a listen interface may query without an access-control entry
  for (const i of c.listen.interfaces) lines.push(`\tinterface-action: ${i} allow`);
  return lines.join('\n') + '\n';
}

function renderRecords(c: DnsConfig): string {
  const lines: string[] = [];
  for (const r of c.records) lines.push(`\tlocal-data: ${quoteRR(recordRR(r))}`);
  const blocking = c.blocklists.length > 0;
  // an allowlisted name under a blocked parent resolves normally
  if (blocking) for (const d of c.allowlist) lines.push(`\tlocal-zone: ${quote(fqdn(d))} transparent`);
  return lines.join('\n') + (lines.length ? '\n' : '');
}

export function recordRR(r: DnsRecord): string {
  const owner = recordOwner(r) + '.';
  const head = `${owner} ${r.ttl} IN ${r.type}`;
  switch (r.type) {
    case 'A':
    case 'AAAA':
      return `${head} ${r.address}`;
    case 'CNAME':
      return `${head} ${fqdn(r.target)}`;
    case 'MX':
      return `${head} ${r.preference} ${fqdn(r.exchange)}`;
    case 'PTR':
      return `${head} ${fqdn(r.target)}`;
    case 'TXT':
      return `${head} ${txtStrings(r.text)}`;
    case 'SRV':
      return `${head} ${r.priority} ${r.weight} ${r.port} ${fqdn(r.target)}`;
  }
}

/** Owner name of a record, lower case, no trailing dot (PTR by address gets its reverse name). */
export function recordOwner(r: DnsRecord): string {
  if (r.type === 'PTR' && isAddress(r.name)) return reverseName(r.name);
  return norm(r.name);
}

/** TXT data as 255-byte character strings, with RFC 1035 \DDD escapes for quotes and backslashes. */
function txtStrings(text: string): string {
  const chunks: string[] = [];
  for (let i = 0; i < text.length || i === 0; i += 255) chunks.push(text.slice(i, i + 255));
  return chunks.map((c) => `"${c.replace(/[\\"']/g, (ch) => `\\${String(ch.charCodeAt(0)).padStart(3, '0')}`)}"`).join(' ');
}

function forwardZone(name: string, servers: readonly Upstream[], tls: boolean): string[] {
  const out = ['forward-zone:', `\tname: ${quote(name)}`, `\tforward-tls-upstream: ${yn(tls)}`];
  for (const s of servers) {
    const port = s.port ?? (tls ? 853 : 53);
    out.push(`\tforward-addr: ${s.address}@${port}${tls && s.tlsName ? `#${norm(s.tlsName)}` : ''}`);
  }
  out.push('');
  return out;
}

function controlSocket(paths: InstancePaths): string {
  return path.join(paths.runDir, 'control.sock');
}

function daemonSpec(paths: InstancePaths) {
  return { name: 'unbound', command: 'unbound', pidFile: paths.pidFile };
}

async function control(paths: InstancePaths, host: Host, args: string[], reject: boolean, timeout = 10_000) {
  return host.run('unbound-control', ['-c', paths.file(CONF), ...args], { reject, timeout });
}

/** Time allowed for loading the configuration: 10 s plus 50 ms per 1000 blocked domains. */
function loadBudgetMs(model: UnboundModel): number {
  return 10_000 + Math.ceil(model.blocklists.reduce((n, b) => n + b.domains, 0) / 20);
}

function readBase(paths: InstancePaths): Record<string, number> {
  try {
    return JSON.parse(readFileSync(paths.file(STATS_BASE), 'utf8')) as Record<string, number>;
  } catch {
    return {};
  }
}

/** Folds the live counters into the saved base before Unbound zeroes them. */
async function saveCounters(paths: InstancePaths, host: Host): Promise<void> {
  const r = await control(paths, host, ['stats_noreset'], false);
  if (r.exitCode !== 0) return; // not answering: nothing to keep
  writeFileSync(paths.file(STATS_BASE), JSON.stringify(foldCounters(readBase(paths), parseStatsText(r.stdout))) + '\n');
}

/** Forgets the saved counters (a fresh instance starts from zero). */
export function resetCounters(paths: InstancePaths): void {
  rmSync(paths.file(STATS_BASE), { force: true });
}

function readable(ctx: CompileContext, file: string, p: (string | number)[], issues: Issue[], what: string): void {
  try {
    ctx.readFile(file);
  } catch (e) {
    issues.push({ path: p, message: `cannot read ${what} ${file}: ${(e as Error).message}` });
  }
}

function isLoopback(a: string): boolean {
  return a.startsWith('127.') || a === '::1';
}

function norm(d: string): string {
  return d.toLowerCase().replace(/\.$/, '');
}

function fqdn(d: string): string {
  return d === '.' ? '.' : `${norm(d)}.`;
}

function yn(b: boolean): string {
  return b ? 'yes' : 'no';
}

/** Values are validated against strict patterns in the schema; paths are ours. */
function quote(s: string): string {
  if (/["\n]/.test(s)) throw new Error(`cannot quote ${JSON.stringify(s)} for unbound.conf`);
  return `"${s}"`;
}

function quoteRR(rr: string): string {
  // TXT data carries double quotes: wrap in single quotes (single quotes inside are \039-escaped)
  if (/['\n]/.test(rr)) throw new Error(`cannot quote ${JSON.stringify(rr)} for unbound.conf`);
  return rr.includes('"') ? `'${rr}'` : `"${rr}"`;
}

function header(): string {
  return '# generated by Patronus: changes here are overwritten\n';
}
