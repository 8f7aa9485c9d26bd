/**
 * The one declarative document. Each section's schema lives with its domain
 * (src/<domain>/schema.ts); this file only assembles them and runs the
 * checks that cross sections (alias references, interface names).
 */
import { z } from 'zod';
import { interfacesSchema } from '../interfaces/schema.js';
import { aliasesSchema, resolveAliases, type AliasTable, type FileReader } from '../aliases/aliases.js';
import { fastpathSchema } from '../fastpath/schema.js';
import { firewallSchema } from '../nft/schema.js';
import { gatewaysSchema } from '../multiwan/schema.js';
import { wireguardSchema } from '../services/wireguard/schema.js';
import { openvpnSchema } from '../services/openvpn/schema.js';
import { ipsecSchema } from '../services/ipsec/schema.js';
import { unboundSchema } from '../services/unbound/schema.js';
import { keaSchema } from '../services/kea/schema.js';
import { raSchema } from '../services/radvd/schema.js';
import { dhcp6Schema } from '../services/kea6/schema.js';
import { frrSchema } from '../services/frr/schema.js';
import { keepalivedSchema } from '../services/keepalived/schema.js';
import { qosSchema } from '../services/qos/schema.js';
import { idsSchema } from '../services/ids/schema.js';
import { apiSchema } from '../api/schema.js';
import { driftSchema } from '../drift/schema.js';
import { certificatesSchema } from '../certificates/schema.js';
import { healthSchema } from '../fleet/schema.js';
import { fromZod, type Issue } from './issues.js';
import { locateIssues } from './locate.js';

export const documentSchema = z
  .object({
    version: z.literal(1).default(1).describe('document format version'),
    interfaces: interfacesSchema.describe('interfaces Patronus manages'),
    aliases: aliasesSchema.describe('named sets of networks, ports and countries'),
    fastpath: fastpathSchema.describe('stateless XDP/tc filtering'),
    firewall: firewallSchema.describe('stateful filtering and NAT (nftables)'),
    gateways: gatewaysSchema.describe('multi-WAN gateways, groups and policy routing'),
    wireguard: wireguardSchema.describe('WireGuard interfaces and peers'),
    openvpn: openvpnSchema.describe('OpenVPN servers and clients'),
    ipsec: ipsecSchema.describe('IPsec (strongSwan) connections'),
    dns: unboundSchema.describe('DNS resolver (Unbound)'),
    dhcp: keaSchema.describe('DHCPv4 server (Kea)'),
    dhcp6: dhcp6Schema.describe('stateful DHCPv6 server (Kea) for LANs whose RA sets the M flag'),
    ra: raSchema.describe('IPv6 router advertisements (radvd): SLAAC prefixes, DNS (RDNSS)'),
    routing: frrSchema.describe('dynamic routing (FRR)'),
    ha: keepalivedSchema.describe('high availability (keepalived VRRP)'),
    qos: qosSchema.describe('traffic shaping (tc)'),
    ids: idsSchema.describe('intrusion detection (Suricata)'),
    certificates: certificatesSchema.describe('ACME certificates for the API/console and TLS services, renewed before expiry'),
    api: apiSchema.describe('REST API and metrics endpoint'),
    drift: driftSchema.describe('drift checks against the running revision and self-repair'),
    health: healthSchema.describe('health probes a fleet node runs before it confirms a revision from a rollout'),
  })
  .strict();

export type Config = z.infer<typeof documentSchema>;
export type ConfigInput = z.input<typeof documentSchema>;

export interface Validated {
  config: Config;
  aliases: AliasTable;
}

/**
 * Validates a parsed document: schema, then alias resolution. Returns every
 * issue found, with line and column when the document was parsed from text;
 * `validated` is set only when there are none.
 */
export function validateDocument(input: unknown, readFile: FileReader): { validated?: Validated; issues: Issue[] } {
  const stages = validateDocumentStages(input, readFile);
  for (;;) {
    const step = stages.next();
    if (step.done) return step.value;
  }
}

/**
 * validateDocument in two stages (schema, then aliases): an async caller
 * lets its event loop run at the `yield` (each is seconds for a document
 * with a million prefixes; src/apply/engine.ts).
 */
export function* validateDocumentStages(input: unknown, readFile: FileReader): Generator<void, { validated?: Validated; issues: Issue[] }, void> {
  const parsed = documentSchema.safeParse(input ?? {});
  yield;
  if (!parsed.success) {
    // report alias problems together with schema problems elsewhere
    const issues = fromZod(parsed.error);
    const raw = input && typeof input === 'object' ? (input as { aliases?: unknown }).aliases : undefined;
    const aliases = aliasesSchema.safeParse(raw);
    if (aliases.success) issues.push(...resolveAliases(aliases.data, readFile).issues);
    return { issues: locateIssues(input, issues) };
  }
  const config = parsed.data;
  const { table, issues } = resolveAliases(config.aliases, readFile);
  if (issues.length) return { issues: locateIssues(input, issues) };
  return { validated: { config, aliases: table }, issues: [] };
}
