/**
 * The `ipsec` section: IKEv2 connections run by strongSwan (charon +
 * swanctl): site-to-site with a pre-shared key or certificates, and
 * road-warrior responders that hand out addresses from pools.
 */
import { z } from 'zod';
import { hostField, identifierField, ipAddressField, prefixField } from '../common/fields.js';
import { CERT_NAME } from '../../certificates/schema.js';

/** IKE identities go into swanctl.conf quoted: no quotes, backslashes, braces or newlines. */
const identityField = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9@._:=,/ *+-]+$/, 'must be an IKE identity (FQDN, address, email, or a DN such as "CN=vpn.example.net") without quotes or braces');

/** strongSwan proposal keywords: algorithms joined by "-". */
const proposalField = z.string().regex(/^[a-z0-9_]+(-[a-z0-9_]+)*$/, 'must be a strongSwan proposal such as aes256gcm16-prfsha256-ecp256');

const absolutePath = z.string().regex(/^\/[^\n\0]*$/, 'must be an absolute path');

const trafficSelector = z.union([z.literal('dynamic'), prefixField]);

export const ipsecChildSchema = z
  .object({
    name: identifierField.describe('CHILD_SA name'),
    localTs: z.array(trafficSelector).default(['dynamic']).describe('local traffic selectors (prefixes; "dynamic" = this end\'s address or virtual IP)'),
    remoteTs: z.array(trafficSelector).default(['dynamic']).describe("remote traffic selectors (prefixes; \"dynamic\" = the peer's address or virtual IP)"),
    espProposals: z.array(proposalField).min(1).default(['aes256gcm16-ecp256', 'aes256gcm16']).describe('ESP proposals (the DH group enables PFS on rekeying)'),
    startAction: z
      .enum(['start', 'trap', 'none'])
      .optional()
      .describe('start: bring the tunnel up at once; trap: on first matching packet (kernel ESP only); none: wait for the peer. Default: start when remoteAddresses are given, else none'),
    closeAction: z.enum(['none', 'start', 'trap']).default('none').describe('what to do when the peer closes the CHILD_SA'),
    dpdAction: z.enum(['clear', 'restart', 'trap']).default('restart').describe('what to do when dead peer detection declares the peer dead'),
    rekeyTime: z.number().int().min(60).max(86_400 * 7).default(3600).describe('seconds between CHILD_SA rekeyings'),
  })
  .strict();

export const ipsecPoolSchema = z
  .object({
    name: identifierField.describe('pool name, referenced by connections'),
    addresses: prefixField.describe('virtual IP range handed to road-warrior clients, e.g. 10.99.0.0/24'),
    dns: z.array(ipAddressField).default([]).describe('DNS servers announced to clients'),
  })
  .strict();

export const ipsecConnectionSchema = z
  .object({
    name: identifierField.describe('connection name'),
    enabled: z.boolean().default(true).describe('load this connection'),
    localAddresses: z.array(hostField).default([]).describe('local addresses IKE uses (default: any)'),
    remoteAddresses: z.array(z.union([hostField, prefixField])).default([]).describe('peer addresses or ranges (empty: any peer, a road-warrior responder)'),
    auth: z.enum(['psk', 'cert']).describe('psk: pre-shared key; cert: certificate made by Patronus\'s IPsec CA'),
    pskFile: z.string().min(1).optional().describe('file holding the pre-shared key (auth: psk); keep it 0600, at least 20 characters'),
    localId: identityField.optional().describe('our IKE identity (auth: cert: also the certificate\'s CN and subjectAltName; default: our address)'),
    remoteId: identityField.optional().describe("the peer's IKE identity (default: any)"),
    certificate: z
      .string()
      .regex(CERT_NAME, 'must name a certificate of certificates.issue')
      .optional()
      .describe(
        "auth: cert: a certificate of certificates.issue (ACME) to authenticate with instead of one from Patronus's IPsec CA (localId then defaults to its first domain). A renewal loads the new certificate into the running charon: established SAs stay up, new ones use it",
      ),
    remoteCaFile: absolutePath.optional().describe("CA certificate (PEM) that signed the peer's certificate (auth: cert; default: Patronus's own IPsec CA)"),
    proposals: z.array(proposalField).min(1).default(['aes256gcm16-prfsha256-ecp256', 'aes256-sha256-modp3072']).describe('IKE proposals'),
    pools: z.array(identifierField).default([]).describe('pools to assign road-warrior clients virtual IPs from'),
    requestVirtualIp: z.boolean().default(false).describe('ask the peer for a virtual IP (road-warrior client)'),
    dpdDelay: z.number().int().min(0).max(3600).default(30).describe('seconds between dead peer detection checks (0: off)'),
    mobike: z.boolean().default(true).describe('MOBIKE (peers may change addresses)'),
    children: z.array(ipsecChildSchema).min(1).describe('CHILD_SAs (the tunnels) of this connection'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.auth === 'psk' && !c.pskFile) ctx.addIssue({ code: 'custom', path: ['pskFile'], message: 'required with auth: psk' });
    if (c.auth === 'psk' && c.remoteCaFile) ctx.addIssue({ code: 'custom', path: ['remoteCaFile'], message: 'only used with auth: cert' });
    if (c.auth === 'cert' && c.pskFile) ctx.addIssue({ code: 'custom', path: ['pskFile'], message: 'only used with auth: psk' });
    if (c.auth === 'psk' && c.certificate) ctx.addIssue({ code: 'custom', path: ['certificate'], message: 'only used with auth: cert' });
    if (c.auth === 'cert' && !c.localId && !c.certificate) ctx.addIssue({ code: 'custom', path: ['localId'], message: 'required with auth: cert (it names the certificate Patronus makes), unless certificate names an ACME one' });
    if (c.auth === 'cert' && c.localId && !/^[A-Za-z0-9.:-]+$/.test(c.localId)) {
      ctx.addIssue({ code: 'custom', path: ['localId'], message: 'with auth: cert, must be a host name or IP address (it becomes the certificate\'s subjectAltName)' });
    }
    if (c.requestVirtualIp && c.pools.length) ctx.addIssue({ code: 'custom', path: ['requestVirtualIp'], message: 'a connection either hands out pool addresses or asks for one, not both' });
    const names = new Set<string>();
    c.children.forEach((ch, n) => {
      if (names.has(ch.name)) ctx.addIssue({ code: 'custom', path: ['children', n, 'name'], message: `child "${ch.name}" is listed twice` });
      names.add(ch.name);
    });
  });

export const ipsecSchema = z
  .object({
    backend: z
      .enum(['auto', 'kernel', 'libipsec'])
      .default('auto')
      .describe('where ESP runs: kernel XFRM, or strongSwan\'s userspace libipsec over a TUN device (kernel-libipsec); auto probes the kernel for ESP'),
    pools: z.array(ipsecPoolSchema).default([]).describe('virtual IP pools for road-warrior clients'),
    connections: z.array(ipsecConnectionSchema).default([]).describe('IKEv2 connections'),
  })
  .strict()
  .default({ backend: 'auto', pools: [], connections: [] })
  .superRefine((s, ctx) => {
    const pools = new Set<string>();
    s.pools.forEach((p, n) => {
      if (pools.has(p.name)) ctx.addIssue({ code: 'custom', path: ['pools', n, 'name'], message: `pool "${p.name}" is listed twice` });
      pools.add(p.name);
    });
    const names = new Set<string>();
    s.connections.forEach((c, n) => {
      if (names.has(c.name)) ctx.addIssue({ code: 'custom', path: ['connections', n, 'name'], message: `connection "${c.name}" is listed twice` });
      names.add(c.name);
      c.pools.forEach((p, k) => {
        if (!pools.has(p)) ctx.addIssue({ code: 'custom', path: ['connections', n, 'pools', k], message: `no pool named "${p}" in ipsec.pools` });
      });
    });
  });

export type IpsecConfig = z.infer<typeof ipsecSchema>;
export type IpsecConnectionConfig = z.infer<typeof ipsecConnectionSchema>;
