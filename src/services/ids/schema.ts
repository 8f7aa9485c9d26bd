/**
 * The `ids:` section: Suricata in IDS mode (af-packet) on chosen interfaces,
 * its alerts ingested from eve.json, and optionally each alert's source
 * dropped by the XDP fast path for a while (auto-block).
 *
 *   ids:
 *     enabled: true
 *     interfaces: [wan0]
 *     homeNet: [10.0.0.0/8, lan_nets]
 *     rules:
 *       custom:
 *         - 'alert tcp any any -> $HOME_NET 22 (msg:"SSH from outside"; flags:S; sid:1000001; rev:1; classtype:attempted-recon;)'
 *       update: true               # suricata-update (ET Open) when installed
 *     autoBlock:
 *       enabled: true
 *       maxSeverity: 2             # 1 (highest) .. 4: block alerts at least this severe
 *       ttl: 3600
 */
import { z } from 'zod';

const RULE_ACTIONS = /^(alert|drop|pass|reject|rejectsrc|rejectdst|rejectboth)\s/;

export const suricataRuleField = z
  .string()
  .min(10)
  .max(8192)
  .refine((s) => !/[\r\n]/.test(s), 'a rule is one line')
  .refine((s) => RULE_ACTIONS.test(s.trim()), 'must start with a rule action (alert, drop, pass, reject)')
  .refine((s) => /\(.*\bsid\s*:\s*\d+\s*;.*\)\s*$/.test(s), 'must end with an option list "( ... )" that has a sid');

const networkList = z.array(z.string().min(1)).describe('prefixes, addresses or network alias names');

export const autoBlockSchema = z
  .object({
    enabled: z.boolean().default(false).describe('drop the source of matching alerts in the XDP fast path'),
    maxSeverity: z.number().int().min(1).max(4).default(1).describe('block alerts whose severity is this or more severe (1 is the most severe)'),
    signatureIds: z.array(z.number().int().min(1)).default([]).describe('when not empty: only alerts with these signature ids block'),
    excludeSignatureIds: z.array(z.number().int().min(1)).default([]).describe('alerts with these signature ids never block'),
    ttl: z.number().int().min(1).max(30 * 86400).default(3600).describe('seconds a source stays blocked (renewed by every further alert)'),
    exempt: networkList.default([]).describe('sources never blocked (your own and partner networks)'),
    blockHomeNet: z.boolean().default(false).describe('also block sources inside homeNet (off: an alert from inside only alerts)'),
  })
  .strict();

export const idsSchema = z
  .object({
    enabled: z.boolean().default(false).describe('run Suricata'),
    interfaces: z.array(z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name')).default([]).describe('interfaces Suricata watches (af-packet, IDS mode: it sees copies, never holds packets)'),
    homeNet: networkList.default(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']).describe("Suricata's $HOME_NET"),
    externalNet: networkList.optional().describe("Suricata's $EXTERNAL_NET; default: everything outside homeNet"),
    rules: z
      .object({
        custom: z.array(suricataRuleField).default([]).describe('rules written to patronus.rules'),
        files: z.array(z.string().regex(/^\/[^\s"']+$/, 'must be an absolute path without spaces or quotes')).default([]).describe('further rule files, loaded as they are'),
        update: z.boolean().default(false).describe('fetch and merge rule sets with suricata-update (needs it installed; runs before start and on every apply)'),
        disabledSignatureIds: z.array(z.number().int().min(1)).default([]).describe('signature ids suricata-update disables'),
      })
      .strict()
      .default({ custom: [], files: [], update: false, disabledSignatureIds: [] })
      .describe('rule sets'),
    autoBlock: autoBlockSchema.default({ enabled: false, maxSeverity: 1, signatureIds: [], excludeSignatureIds: [], ttl: 3600, exempt: [], blockHomeNet: false }).describe('alert -> XDP block list'),
    recentAlerts: z.number().int().min(10).max(100_000).default(1000).describe('how many recent alerts the API keeps'),
  })
  .strict()
  .default({
    enabled: false,
    interfaces: [],
    homeNet: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'],
    rules: { custom: [], files: [], update: false, disabledSignatureIds: [] },
    autoBlock: { enabled: false, maxSeverity: 1, signatureIds: [], excludeSignatureIds: [], ttl: 3600, exempt: [], blockHomeNet: false },
    recentAlerts: 1000,
  });

export type IdsConfig = z.infer<typeof idsSchema>;
export type AutoBlockConfig = z.infer<typeof autoBlockSchema>;
