/**
 * The `certificates:` section: certificates from an ACME CA (Let's Encrypt,
 * a private step-ca, Debian's pebble for tests) for what Patronus serves
 * over TLS: the API/console (`api.tls.certificate`), DNS over TLS
 * (`dns.listen.tls.certificate`), OpenVPN servers (`openvpn.servers[].certificate`)
 * and IPsec gateways (`ipsec.connections[].certificate`). Issued on apply,
 * renewed before expiry by the drift loop.
 */
import { z } from 'zod';

/** A host name a public CA can validate: no trailing dot, no wildcard (http-01 cannot prove wildcards). */
const HOSTNAME = /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$/;
export const CERT_NAME = /^[a-z][a-z0-9-]{0,31}$/;

const listen = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):\d{1,5}$/, 'must be host:port (IPv6 in brackets)');

export const acmeSchema = z
  .object({
    directory: z.url({ protocol: /^https?$/ }).describe("the ACME server's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory"),
    email: z.email().optional().describe('contact address for the ACME account (expiry notices)'),
    termsOfServiceAgreed: z.literal(true).describe("you agree to the ACME CA's terms of service (must be true)"),
    directoryCaFile: z.string().min(1).optional().describe("PEM file of the CA that signs the ACME server's own HTTPS certificate (private or test CAs; public CAs need none)"),
    rootCaFile: z
      .string()
      .regex(/^\/[^\n\0]*$/, 'must be an absolute path')
      .optional()
      .describe("PEM file with the root CA certificate the ACME CA's certificates chain up to, when it is not in the system's trust store (a private CA, pebble): exported OpenVPN profiles carry that root for clients to verify the server"),
    http01Listen: listen.default('0.0.0.0:80').describe('where the http-01 challenge responder listens while an order is pending (the CA connects to port 80 of each name); the firewall opens its port'),
    renewDaysBefore: z.number().int().min(1).max(3650).default(30).describe('renew a certificate this many days before it expires'),
  })
  .strict();

export const certificateSchema = z
  .object({
    name: z.string().regex(CERT_NAME, 'must be lower-case letters, digits and -, starting with a letter (at most 32)').describe('what consumers (api.tls.certificate, ...) call it'),
    domains: z
      .array(z.string().regex(HOSTNAME, 'must be a host name such as fw.example.org (no wildcard, no trailing dot)'))
      .min(1)
      .max(100)
      .describe('names in the certificate; the first is its common name. Each must resolve to this firewall for http-01'),
    keyType: z.enum(['ecdsa-p256', 'rsa-2048']).default('ecdsa-p256').describe('key type (a new key at every issuance)'),
  })
  .strict();

export const certificatesSchema = z
  .object({
    acme: acmeSchema.optional().describe('the ACME account every certificate is ordered with'),
    issue: z.array(certificateSchema).default([]).describe('certificates to obtain and keep renewed'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.issue.length && !c.acme) ctx.addIssue({ code: 'custom', path: ['acme'], message: 'certificates to issue need an ACME account (certificates.acme)' });
    const seen = new Set<string>();
    c.issue.forEach((cert, i) => {
      if (seen.has(cert.name)) ctx.addIssue({ code: 'custom', path: ['issue', i, 'name'], message: `certificate "${cert.name}" is defined twice` });
      seen.add(cert.name);
    });
  })
  .prefault({});

export type AcmeConfig = z.infer<typeof acmeSchema>;
export type CertificateConfig = z.infer<typeof certificateSchema>;
export type CertificatesConfig = z.infer<typeof certificatesSchema>;
