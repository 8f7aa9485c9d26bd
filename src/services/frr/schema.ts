/**
 * The `routing:` section: static routes, OSPFv2 and BGP run by FRR, plus the
 * prefix-lists and route-maps BGP policy refers to. Checks that need more
 * than one field (references, families, duplicates) live in compile.ts so
 * they can be reported with their document paths all at once.
 */
import { isIPv4, addressFamily } from '../../net/address.js';
import { z } from 'zod';
import { kernelRoutingFields } from '../../routing/schema.js';

const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;
/** FRR object names (prefix-list, route-map): one word, no config syntax. */
const POLICY_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/;
/** Free text that ends up on one line of frr.conf: printable ASCII, no line breaks. */
const LINE_TEXT = /^[\x20-\x7e]{1,80}$/;

const ipv4 = z.string().refine((s) => isIPv4(s), 'must be an IPv4 address');
const address = z.string().refine((s) => addressFamily(s) !== 0, 'must be an IPv4 or IPv6 address');
/** Checked for syntax and host bits in compile (with the value shown in the message). */
const prefixText = z.string().min(1).describe('an IPv4 or IPv6 prefix, e.g. 10.0.0.0/8 or 2001:db8::/32');
const ifname = z.string().regex(IFNAME, 'must be a Linux interface name (1-15 characters)');
const policyName = z.string().regex(POLICY_NAME, 'must start with a letter and hold only letters, digits, _ . - (max 63)');
const asn = z.number().int().min(1).max(4294967295);

export const staticRouteSchema = z
  .object({
    prefix: prefixText.describe('destination prefix (IPv4 or IPv6)'),
    via: address.optional().describe('next-hop address (same family as prefix)'),
    interface: ifname.optional().describe('outgoing interface (alone for on-link routes, or with via)'),
    blackhole: z.boolean().default(false).describe('drop traffic to the prefix (no via/interface)'),
    distance: z.number().int().min(1).max(255).optional().describe('administrative distance (default 1)'),
  })
  .strict();

export const ospfInterfaceSchema = z
  .object({
    name: ifname.describe('interface that runs OSPF in this area (its addresses are announced)'),
    passive: z.boolean().default(false).describe('announce its networks but send no hellos (no adjacency; no opening)'),
    network: z.enum(['broadcast', 'point-to-point']).default('broadcast').describe('OSPF network type; point-to-point skips DR election on two-router links'),
    cost: z.number().int().min(1).max(65535).optional().describe('interface cost (default from the reference bandwidth)'),
    priority: z.number().int().min(0).max(255).optional().describe('DR election priority (0: never DR)'),
    helloInterval: z.number().int().min(1).max(65535).default(10).describe('seconds between hellos'),
    deadInterval: z.number().int().min(1).max(65535).default(40).describe('seconds without a hello before the neighbor is dead (must exceed helloInterval)'),
    retransmitInterval: z.number().int().min(1).max(65535).optional().describe('seconds between LSA retransmissions'),
  })
  .strict();

export const ospfAreaSchema = z
  .object({
    id: z
      .union([ipv4, z.number().int().min(0).max(4294967295)])
      .describe('area id, dotted (0.0.0.0) or a number (0)'),
    type: z.enum(['normal', 'stub', 'nssa']).default('normal').describe('area type'),
    noSummary: z.boolean().default(false).describe('totally stubby / NSSA: no inter-area summaries into the area (stub and nssa only)'),
    interfaces: z.array(ospfInterfaceSchema).default([]).describe('interfaces in this area'),
  })
  .strict();

export const ospfSchema = z
  .object({
    routerId: ipv4.optional().describe('OSPF router id (default: routing.routerId, else FRR picks the highest address)'),
    areas: z.array(ospfAreaSchema).min(1).describe('areas and the interfaces in each'),
    redistribute: z.array(z.enum(['connected', 'static', 'bgp', 'kernel'])).default([]).describe('route sources announced as external (type 2) routes'),
    defaultOriginate: z.enum(['never', 'ifPresent', 'always']).default('never').describe('announce a default route: never, when this router has one, or always'),
    spfTimers: z
      .object({
        delayMs: z.number().int().min(0).max(600000).default(0).describe('wait after a change before running SPF'),
        holdMs: z.number().int().min(0).max(600000).default(50).describe('initial hold between SPF runs'),
        maxHoldMs: z.number().int().min(0).max(600000).default(5000).describe('maximum hold between SPF runs'),
      })
      .strict()
      .prefault({})
      .describe('SPF throttling (fast by default: small networks converge in a second)'),
    lsaTimers: z
      .object({
        minIntervalMs: z.number().int().min(0).max(5000).default(5000).describe('minimum time between originations of the same LSA (RFC 2328 MinLSInterval: 5000)'),
        minArrivalMs: z.number().int().min(0).max(600000).default(1000).describe('minimum time between accepting the same LSA from a neighbor (RFC 2328 MinLSArrival: 1000)'),
      })
      .strict()
      .prefault({})
      .describe('LSA throttling: lower both to 0 on small, stable networks to converge in about a second'),
    referenceBandwidthMbps: z.number().int().min(1).max(4294967).optional().describe('reference bandwidth for cost calculation'),
  })
  .strict();

export const bgpNeighborSchema = z
  .object({
    address: address.describe('neighbor address (IPv4 or IPv6)'),
    remoteAs: z.union([asn, z.enum(['internal', 'external'])]).describe('peer AS number, or internal/external'),
    description: z.string().regex(LINE_TEXT, 'printable ASCII, one line, max 80 characters').optional().describe('free text shown in status'),
    password: z.string().regex(/^[\x21-\x7e]{1,80}$/, 'printable ASCII without spaces, max 80 characters').optional().describe('TCP MD5 password'),
    interface: ifname.optional().describe('interface the neighbor is reached through: BGP (179/tcp) is opened there only (default: every managed interface)'),
    updateSource: z.union([address, ifname]).optional().describe('source address or interface of the session'),
    ebgpMultihop: z.number().int().min(1).max(255).optional().describe('allow an eBGP peer this many hops away'),
    nextHopSelf: z.boolean().default(false).describe('announce routes to this peer with our address as next hop'),
    keepalive: z.number().int().min(0).max(65535).optional().describe('keepalive seconds (with hold)'),
    hold: z.number().int().min(0).max(65535).optional().describe('hold time seconds: 0 or 3-65535 (with keepalive)'),
    connectRetry: z.number().int().min(1).max(65535).optional().describe('seconds between connection attempts'),
    prefixListIn: policyName.optional().describe('prefix-list filtering routes received'),
    prefixListOut: policyName.optional().describe('prefix-list filtering routes announced'),
    routeMapIn: policyName.optional().describe('route-map applied to routes received'),
    routeMapOut: policyName.optional().describe('route-map applied to routes announced'),
    maxPrefixes: z.number().int().min(1).max(4294967295).optional().describe('tear the session down when the peer sends more prefixes'),
    shutdown: z.boolean().default(false).describe('configured but administratively down'),
  })
  .strict();

export const bgpSchema = z
  .object({
    asn: asn.describe('local AS number'),
    routerId: ipv4.optional().describe('BGP router id (default: routing.routerId, else FRR picks one)'),
    neighbors: z.array(bgpNeighborSchema).default([]).describe('BGP peers'),
    networks: z.array(prefixText).default([]).describe('prefixes to announce (announced only while a matching route is in the routing table)'),
    redistribute: z.array(z.enum(['connected', 'static', 'ospf', 'kernel'])).default([]).describe('route sources announced into BGP'),
    requirePolicy: z
      .boolean()
      .default(false)
      .describe('RFC 8212: exchange nothing with eBGP peers that have no route-map (FRR default on; off here so simple setups work)'),
    rpki: z
      .object({
        caches: z
          .array(
            z
              .object({
                host: z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/, 'must be a host name or address').describe('RPKI cache (RTR) server'),
                port: z.number().int().min(1).max(65535).default(323).describe('RTR port'),
                preference: z.number().int().min(1).max(255).default(1).describe('lower is preferred'),
              })
              .strict(),
          )
          .min(1),
      })
      .strict()
      .optional()
      .describe('RPKI origin validation (needs FRR built with rpki: Debian package frr-rpki-rtrlib)'),
  })
  .strict();

export const prefixListSchema = z
  .object({
    name: policyName.describe('prefix-list name (referenced by neighbors and route-maps)'),
    entries: z
      .array(
        z
          .object({
            seq: z.number().int().min(1).max(4294967295).optional().describe('sequence number (default: 5, 10, 15... in order)'),
            action: z.enum(['permit', 'deny']),
            prefix: prefixText,
            ge: z.number().int().min(0).max(128).optional().describe('match prefixes at least this long'),
            le: z.number().int().min(0).max(128).optional().describe('match prefixes at most this long'),
          })
          .strict(),
      )
      .min(1)
      .describe('entries, all of one address family'),
  })
  .strict();

export const routeMapSchema = z
  .object({
    name: policyName.describe('route-map name'),
    entries: z
      .array(
        z
          .object({
            seq: z.number().int().min(1).max(65535).describe('sequence number (entries are evaluated in order)'),
            action: z.enum(['permit', 'deny']),
            match: z
              .object({
                prefixList: policyName.optional().describe('prefix-list the route must match'),
                metric: z.number().int().min(0).max(4294967295).optional().describe('MED the route must carry'),
              })
              .strict()
              .prefault({}),
            set: z
              .object({
                localPreference: z.number().int().min(0).max(4294967295).optional(),
                metric: z.number().int().min(0).max(4294967295).optional().describe('MED'),
                weight: z.number().int().min(0).max(65535).optional(),
                asPathPrepend: z.array(asn).max(10).optional().describe('AS numbers to prepend'),
                community: z
                  .array(z.string().regex(/^(\d{1,5}:\d{1,5}|no-export|no-advertise|local-AS|graceful-shutdown|blackhole)$/, 'must be AA:NN or a well-known community'))
                  .optional()
                  .describe('communities to set (replaces existing ones)'),
                nextHop: address.optional(),
              })
              .strict()
              .prefault({}),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

export const frrSchema = z
  .object({
    enabled: z.boolean().default(true).describe('false stops FRR but keeps the configuration'),
    routerId: ipv4.optional().describe('router id shared by OSPF and BGP unless they set their own'),
    // forwarding, rpFilter, bridgeNetfilter and kernel routes: src/routing/
    ...kernelRoutingFields,
    logLevel: z.enum(['debugging', 'informational', 'notifications', 'warnings', 'errors']).default('informational').describe('level of FRR log (frr.log in the instance directory)'),
    static: z.array(staticRouteSchema).default([]).describe('static routes FRR holds (staticd): use them when OSPF/BGP redistribute them; routes alone belong in routing.routes (no daemon)'),
    ospf: ospfSchema.optional().describe('OSPFv2'),
    bgp: bgpSchema.optional().describe('BGP'),
    prefixLists: z.array(prefixListSchema).default([]).describe('prefix-lists for BGP policy'),
    routeMaps: z.array(routeMapSchema).default([]).describe('route-maps for BGP policy'),
  })
  .strict()
  .prefault({});

export type FrrConfig = z.infer<typeof frrSchema>;
export type StaticRoute = z.infer<typeof staticRouteSchema>;
export type OspfConfig = z.infer<typeof ospfSchema>;
export type BgpConfig = z.infer<typeof bgpSchema>;
export type BgpNeighbor = z.infer<typeof bgpNeighborSchema>;
export type PrefixList = z.infer<typeof prefixListSchema>;
export type RouteMap = z.infer<typeof routeMapSchema>;
