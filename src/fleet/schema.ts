import { z } from 'zod';
import { hostField, identifierField, ipAddressField, portField } from '../services/common/fields.js';

/**
 * Health probes a node runs after it applies a fleet revision under
 * commit-confirm (src/fleet/health.ts): the revision is confirmed only when
 * the drift check is clean and every probe passes, else it rolls back. They
 * run inside the node's network namespace, so they see what its traffic sees.
 */
const probeBase = {
  name: identifierField.describe('probe name (reported in the node status and the rollout history)'),
  timeoutSeconds: z.number().min(0.1).max(30).default(2).describe('how long one attempt may take'),
};

export const probeSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ping'), ...probeBase, target: ipAddressField.describe('address that must answer an ICMP echo') }).strict(),
  z.object({ type: z.literal('tcp'), ...probeBase, target: hostField.describe('host that must accept a TCP connection'), port: portField.describe('TCP port') }).strict(),
  z
    .object({
      type: z.literal('dns'),
      ...probeBase,
      server: ipAddressField.describe('resolver to ask'),
      query: z.string().min(1).max(253).regex(/^[A-Za-z0-9_.-]+$/, 'must be a domain name').describe('name to look up (A record)'),
      expect: ipAddressField.optional().describe('an address the answer must contain (default: any answer)'),
    })
    .strict(),
]);
export type Probe = z.infer<typeof probeSchema>;

export const healthSchema = z
  .object({
    probes: z.array(probeSchema).max(64).default([]).describe('checks that must pass before a fleet revision is confirmed'),
    settleSeconds: z.number().min(0).max(300).default(0.5).describe('wait this long after the apply before the first check (daemons starting, routes converging)'),
    attempts: z.number().int().min(1).max(20).default(3).describe('a failing check is tried again this many times in all (1 s apart) before the revision is rolled back'),
  })
  .strict()
  .prefault({})
  .superRefine((h, ctx) => {
    const seen = new Set<string>();
    h.probes.forEach((p, i) => {
      if (seen.has(p.name)) ctx.addIssue({ code: 'custom', path: ['probes', i, 'name'], message: `probe name "${p.name}" is used twice` });
      seen.add(p.name);
    });
  });
export type HealthConfig = z.infer<typeof healthSchema>;
