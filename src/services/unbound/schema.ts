/**
 * The `dns:` section: a caching resolver (Unbound) for the networks behind
 * the firewall. Every string that ends up in unbound.conf is checked here
 * against a strict pattern, so nothing a user writes can break out of its
 * quoted value in the rendered file.
 */
import { z } from 'zod';
import { parsePrefix, isIPv4, isIPv6 } from '../../net/address.js';
import { CERT_NAME } from '../../certificates/schema.js';

/** A DNS name, with or without the trailing dot (letters, digits, -, _; labels 1-63). */
export const DOMAIN = /^(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$/;

const domain = z.string().regex(DOMAIN, 'must be a DNS name such as host.example.org');
const ipv4 = z.string().refine((s) => isIPv4(s), 'must be an IPv4 address');
const ipv6 = z.string().refine((s) => isIPv6(s), 'must be an IPv6 address');
const ipAddress = z.string().refine((s) => isIPv4(s) || isIPv6(s), 'must be an IPv4 or IPv6 address');
const ttl = z.number().int().min(0).max(2147483647).default(3600).describe('time to live in seconds');
const u16 = z.number().int().min(0).max(65535);
const network = z.string().refine((s) => {
  try {
    parsePrefix(s);
    return true;
  } catch {
    return false;
  }
}, 'must be an IPv4 or IPv6 network such as 10.0.0.0/8');

/** An upstream resolver: address, port, and for DNS over TLS the name its certificate carries. */
export const upstreamSchema = z
  .object({
    address: ipAddress.describe('upstream resolver address'),
    port: u16.min(1).optional().describe('port (default 53, or 853 with TLS)'),
    tlsName: domain.optional().describe('name in the upstream TLS certificate (DNS over TLS; required when tls is on)'),
  })
  .strict();

const recordBase = { name: domain.describe('owner name (relative names are not completed: write the full name)'), ttl };

/** Local records Unbound answers itself (local-data). */
export const recordSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('A'), ...recordBase, address: ipv4.describe('IPv4 address') }).strict(),
  z.object({ type: z.literal('AAAA'), ...recordBase, address: ipv6.describe('IPv6 address') }).strict(),
  z.object({ type: z.literal('CNAME'), ...recordBase, target: domain.describe('canonical name') }).strict(),
  z.object({ type: z.literal('MX'), ...recordBase, preference: u16.default(10).describe('lower is preferred'), exchange: domain.describe('mail server name') }).strict(),
  z
    .object({ type: z.literal('PTR'), ...recordBase, name: z.union([ipAddress, domain]).describe('address (reverse name is derived) or the full in-addr.arpa/ip6.arpa name'), target: domain.describe('host name the address points to') })
    .strict(),
  z
    .object({
      type: z.literal('TXT'),
      ...recordBase,
      text: z
        .string()
        .max(4000)
        .regex(/^[\x20-\x7e]*$/, 'printable ASCII only')
        .describe('text (split into 255-byte strings as needed)'),
    })
    .strict(),
  z
    .object({
      type: z.literal('SRV'),
      ...recordBase,
      priority: u16.default(0),
      weight: u16.default(0),
      port: u16.describe('service port'),
      target: domain.describe('host providing the service'),
    })
    .strict(),
]);

export const blocklistSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/, 'letters, digits, - and _ (max 40)').describe('list name (used in counts and file names)'),
    file: z.string().min(1).describe('file with the blocked domains'),
    format: z.enum(['domains', 'hosts', 'auto']).default('auto').describe('domains: one name a line; hosts: "0.0.0.0 name..." lines; auto: per line'),
    answer: z.enum(['nxdomain', 'null']).default('nxdomain').describe('nxdomain: the name does not exist; null: 0.0.0.0 and ::'),
  })
  .strict();

export const ACCESS_ACTIONS = ['allow', 'deny', 'refuse', 'allow_snoop', 'deny_non_local', 'refuse_non_local'] as const;

export const unboundSchema = z
  .object({
    enabled: z.boolean().default(false).describe('run the resolver'),
    mode: z.enum(['recursive', 'forward']).default('recursive').describe('recursive: resolve from the root; forward: send every query to the upstreams'),
    upstreams: z.array(upstreamSchema).default([]).describe('resolvers to forward to (mode forward)'),
    tls: z.boolean().default(false).describe('talk to the upstreams over DNS over TLS (port 853 unless given)'),
    tlsCaBundle: z.string().min(1).default('/etc/ssl/certs/ca-certificates.crt').describe('CA certificates that verify the upstreams'),
    forwardZones: z
      .array(
        z
          .object({
            name: domain.describe('zone sent to these servers (also private zones like corp.internal or test)'),
            servers: z.array(upstreamSchema).min(1).describe('servers for the zone'),
            tls: z.boolean().default(false).describe('DNS over TLS to these servers'),
            insecure: z.boolean().default(true).describe('skip DNSSEC validation below this zone (private zones are unsigned)'),
          })
          .strict(),
      )
      .default([])
      .describe('zones forwarded elsewhere than the default'),
    listen: z
      .object({
        interfaces: z.array(z.string().min(1)).default([]).describe('managed interfaces to answer on (their addresses, queries allowed from them)'),
        addresses: z.array(ipAddress).default(['127.0.0.1', '::1']).describe('extra addresses to answer on'),
        port: u16.min(1).default(53).describe('DNS port'),
        tls: z
          .object({
            certificate: z.string().regex(CERT_NAME, 'must name a certificate of certificates.issue').describe('a certificate of certificates.issue (ACME); a renewal restarts the resolver with it'),
            port: u16.min(1).default(853).describe('DNS over TLS port'),
          })
          .strict()
          .optional()
          .describe('also answer DNS over TLS (RFC 7858) on every listen address'),
      })
      .strict()
      .prefault({})
      .describe('where the resolver answers'),
    access: z
      .array(z.object({ network, action: z.enum(ACCESS_ACTIONS).default('allow') }).strict())
      .default([])
      .describe('who may query (besides localhost and clients on listen interfaces), by network'),
    dnssec: z
      .object({
        enabled: z.boolean().default(true).describe('validate DNSSEC'),
        trustAnchorFile: z.string().min(1).default('/usr/share/dns/root.key').describe('root trust anchor (DS/DNSKEY); the default is Debian dns-root-data, kept current by the package, so nothing is fetched at start'),
        insecureDomains: z.array(domain).default([]).describe('domains not validated (unsigned private zones)'),
        trustAnchors: z
          .array(z.string().regex(/^[A-Za-z0-9_.-]+\.?\s+(?:\d+\s+)?(?:IN\s+)?(?:DS|DNSKEY)\s+[0-9A-Za-z+/= ]+$/, 'must be a DS or DNSKEY record such as "corp.example. DS 12345 13 2 ABCD..."'))
          .default([])
          .describe('extra trust anchors (DS or DNSKEY records) for signed private zones'),
      })
      .strict()
      .prefault({})
      .describe('DNSSEC validation'),
    records: z.array(recordSchema).default([]).describe('local records answered by the resolver'),
    blocklists: z.array(blocklistSchema).default([]).describe('files of domains to block (subdomains included)'),
    allowlist: z.array(domain).default([]).describe('names never blocked even when a blocklist has them'),
    cache: z
      .object({
        minTtl: z.number().int().min(0).max(86400).default(0).describe('cache-min-ttl'),
        maxTtl: z.number().int().min(1).max(604800).default(86400).describe('cache-max-ttl'),
        prefetch: z.boolean().default(true).describe('refresh popular names before they expire'),
      })
      .strict()
      .prefault({})
      .describe('cache tuning'),
    logQueries: z.boolean().default(false).describe('log every query (verbose)'),
  })
  .strict()
  .prefault({})
  .superRefine((c, ctx) => {
    if (c.enabled && c.mode === 'forward' && c.upstreams.length === 0) ctx.addIssue({ code: 'custom', path: ['upstreams'], message: 'mode forward needs at least one upstream' });
    if (c.tls) c.upstreams.forEach((u, i) => u.tlsName || ctx.addIssue({ code: 'custom', path: ['upstreams', i, 'tlsName'], message: 'DNS over TLS needs the name in the upstream certificate' }));
    c.forwardZones.forEach((z, i) => {
      if (z.tls) z.servers.forEach((u, j) => u.tlsName || ctx.addIssue({ code: 'custom', path: ['forwardZones', i, 'servers', j, 'tlsName'], message: 'DNS over TLS needs the name in the server certificate' }));
    });
    const names = new Set<string>();
    c.blocklists.forEach((b, i) => {
      if (names.has(b.name)) ctx.addIssue({ code: 'custom', path: ['blocklists', i, 'name'], message: `blocklist "${b.name}" is listed twice` });
      names.add(b.name);
    });
    const zones = new Set<string>();
    c.forwardZones.forEach((z, i) => {
      const n = z.name.toLowerCase().replace(/\.$/, '');
      if (zones.has(n)) ctx.addIssue({ code: 'custom', path: ['forwardZones', i, 'name'], message: `zone "${z.name}" is forwarded twice` });
      zones.add(n);
    });
  });

export type DnsConfig = z.infer<typeof unboundSchema>;
export type DnsRecord = z.infer<typeof recordSchema>;
export type Upstream = z.infer<typeof upstreamSchema>;
