import { z } from 'zod';
import { CERT_NAME } from '../certificates/schema.js';

/**
 * The REST API and metrics endpoint. Read when `patronus serve` starts
 * (changing it takes effect at the next start); command-line flags win.
 */
export const apiSchema = z
  .object({
    listen: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port (IPv6 in brackets)').default('127.0.0.1:9180').describe('address and port to listen on; loopback by default'),
    tls: z
      .union([
        z
          .object({
            cert: z.string().min(1).describe('PEM certificate file'),
            key: z.string().min(1).describe('PEM private key file'),
          })
          .strict(),
        z
          .object({
            certificate: z.string().regex(CERT_NAME, 'must name a certificate of certificates.issue').describe('a certificate of certificates.issue (ACME): served from its first issuance, switched to each renewal without a restart'),
          })
          .strict(),
      ])
      .optional()
      .describe('serve HTTPS: certificate and key files, or an ACME certificate by name'),
    bodyLimit: z.number().int().min(1024).max(64 << 20).default(8 << 20).describe('largest request body accepted, in bytes (larger ones get 413)'),
    metricsRequireToken: z.boolean().default(true).describe('whether /metrics needs a bearer token (role metrics or above) like the rest of the API (/healthz never does)'),
    sessions: z
      .object({
        idleTimeout: z.number().int().min(60).max(7 * 86400).default(3600).describe('seconds: a console session unused this long ends'),
        lifetime: z.number().int().min(300).max(30 * 86400).default(12 * 3600).describe('seconds: a console session ends this long after sign-in, however much it is used'),
      })
      .strict()
      .prefault({})
      .describe('console sessions (POST /api/v1/session): the cookie lasts `lifetime`; the server also ends it after `idleTimeout` without a request'),
  })
  .strict()
  .prefault({});
export type ApiConfig = z.infer<typeof apiSchema>;
