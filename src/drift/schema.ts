import { z } from 'zod';

/**
 * The drift loop (src/drift/monitor.ts): how often the running system is
 * compared with the revision it should run, and what happens on a difference.
 */
export const driftSchema = z
  .object({
    reconcile: z
      .enum(['auto', 'report', 'off'])
      .default('auto')
      .describe('auto: report drift (/healthz 503, patronus_drift) and repair it by applying the revision again to the drifted subsystems, with backoff; report: report only; off: no drift checks'),
    intervalSeconds: z.number().min(0.5).max(3600).default(5).describe('seconds between periodic checks (every /healthz, status and scrape checks too, reusing a result younger than 1 s)'),
    maxBackoffSeconds: z.number().min(1).max(86400).default(60).describe('longest wait between repairs of a subsystem that keeps drifting (a daemon that keeps dying): 1 s, doubling up to this'),
  })
  .strict()
  .prefault({});
export type DriftConfig = z.infer<typeof driftSchema>;
