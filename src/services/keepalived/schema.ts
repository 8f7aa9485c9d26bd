/**
 * The `ha:` section: VRRP virtual addresses run by keepalived, and the
 * configuration sync from a primary to its secondary (src/ha/sync.ts).
 *
 * Both nodes carry the same instances (the primary pushes them); what
 * differs per node is local: `role` picks `priority` or `backupPriority`,
 * and `nodeName` / `sync` are never pushed.
 */
import { addressFamily, parseAddressWithLength } from '../../net/address.js';
import { z } from 'zod';

const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;
const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/;
/** one argument of a tracked script: keepalived splits its script line on spaces and honours quotes, so neither may appear */
const SCRIPT_ARG = /^[A-Za-z0-9_@%+=:,./-]{1,200}$/;

const ifname = z.string().regex(IFNAME, 'must be a Linux interface name (1-15 characters)');
const name = z.string().regex(NAME, 'must start with a letter and hold only letters, digits, _ and - (max 32)');

export const vipSchema = z.string().refine((s) => parseAddressWithLength(s) !== undefined, 'must be an address with optional prefix length, e.g. 192.0.2.254/24');

export const trackInterfaceSchema = z
  .object({
    name: ifname.describe('interface whose link state is tracked'),
    weight: z.number().int().min(-254).max(254).optional().describe('added to the priority while the interface is down (negative lowers it); without a weight a down interface puts the instance in FAULT'),
  })
  .strict();

export const vrrpInstanceSchema = z
  .object({
    name: name.describe('instance name (shown in events and metrics)'),
    interface: ifname.describe('interface VRRP adverts are sent on; virtual addresses go there unless they name another'),
    virtualRouterId: z.number().int().min(1).max(255).describe('VRID: the same on both nodes, unique per network segment'),
    priority: z.number().int().min(1).max(254).default(150).describe('priority on the primary (role: primary)'),
    backupPriority: z.number().int().min(1).max(254).default(100).describe('priority on the secondary (role: secondary); lower than priority'),
    version: z.union([z.literal(2), z.literal(3)]).default(3).describe('VRRP version: 3 allows sub-second adverts and IPv6'),
    advertInterval: z.number().min(0.01).max(255).default(1).describe('seconds between adverts (VRRPv3: multiples of 0.01; VRRPv2: whole seconds); the backup takes over after about 3 intervals'),
    preempt: z.boolean().default(true).describe('a higher-priority node takes the addresses back when it returns'),
    preemptDelay: z.number().int().min(0).max(1000).default(0).describe('seconds a returning higher-priority node waits before taking over'),
    virtualAddresses: z.array(vipSchema).min(1).describe('virtual addresses (with prefix length) the master holds'),
    trackInterfaces: z.array(trackInterfaceSchema).default([]).describe('interfaces whose link state moves the instance'),
    trackScripts: z.array(name).default([]).describe('names of ha.scripts whose result moves the instance'),
    garpMasterDelay: z.number().int().min(0).max(255).default(1).describe('seconds after becoming master before the second round of gratuitous ARPs'),
  })
  .strict();

export const trackScriptSchema = z
  .object({
    name: name.describe('script name referenced by instances'),
    command: z
      .array(z.string().regex(SCRIPT_ARG, 'letters, digits and _@%+=:,./- only (keepalived splits on spaces and quotes)'))
      .min(1)
      .describe('program and arguments, run directly (no shell); exit 0 means healthy'),
    interval: z.number().int().min(1).max(3600).default(2).describe('seconds between runs'),
    timeout: z.number().int().min(1).max(3600).optional().describe('seconds before a run counts as failed'),
    rise: z.number().int().min(1).max(100).default(1).describe('successes before healthy'),
    fall: z.number().int().min(1).max(100).default(1).describe('failures before failed'),
    weight: z.number().int().min(-254).max(254).default(0).describe('added to the priority while failing (negative) or healthy (positive); 0 puts the instance in FAULT while failing'),
  })
  .strict();

export const haSyncEtcdSchema = z
  .object({
    url: z.string().regex(/^etcds?:\/\/[^/?#]+\/?$/, 'must be etcd://host:port[,host:port...] (or etcds:// for TLS)').describe("the etcd cluster's client endpoints, as the fleet connection takes them"),
    pair: name.describe('name of the HA pair: both nodes use the key <prefix>ha/<pair>/document'),
    prefix: z.string().regex(/^\/[A-Za-z0-9_./-]*\/$/, 'must start and end with /').default('/patronus/').describe('key prefix'),
    caFile: z.string().min(1).optional().describe('PEM CA certificate of the etcd servers (TLS)'),
    certFile: z.string().min(1).optional().describe('client certificate (mutual TLS)'),
    keyFile: z.string().min(1).optional().describe('client key (mutual TLS)'),
    user: z.string().min(1).optional().describe('etcd user (auth on)'),
    passwordFile: z.string().min(1).optional().describe("file holding that user's password"),
  })
  .strict();

export const haSyncSchema = z
  .object({
    transport: z.enum(['rest', 'etcd']).default('rest').describe("rest: the primary pushes to the secondary's REST API; etcd: the primary publishes to an etcd key the secondary watches (set ha.sync on both nodes)"),
    peer: z.string().regex(/^https?:\/\/[A-Za-z0-9.\-:[\]]+(:\d{1,5})?\/?$/, 'must be http(s)://host:port of the peer\'s Patronus API').optional().describe("the secondary's Patronus REST API, e.g. https://10.0.0.2:9180 (transport: rest)"),
    tokenFile: z.string().min(1).optional().describe('file holding the bearer token for the peer API (never put the token itself in the document) (transport: rest)'),
    caFile: z.string().min(1).optional().describe('PEM CA certificate to verify an https peer'),
    etcd: haSyncEtcdSchema.optional().describe('the etcd the pair syncs through (transport: etcd)'),
    sections: z
      .array(z.string().regex(/^[a-z]+$/))
      .default(['aliases', 'fastpath', 'firewall', 'dns', 'dhcp', 'qos', 'ids', 'ha'])
      .describe('top-level sections pushed to the peer (node-local ones such as interfaces, routing, api stay local; of ha only instances, scripts and groups are pushed)'),
    intervalSeconds: z.number().int().min(5).max(86400).default(60).describe('how often the primary checks the peer for drift (etcd: republishes; the secondary re-reads the key)'),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.transport === 'rest') {
      if (!s.peer) ctx.addIssue({ code: 'custom', path: ['peer'], message: 'required with transport: rest' });
      if (!s.tokenFile) ctx.addIssue({ code: 'custom', path: ['tokenFile'], message: 'required with transport: rest' });
    } else if (!s.etcd) ctx.addIssue({ code: 'custom', path: ['etcd'], message: 'required with transport: etcd' });
  });

const prefixOrAddress = z.string().refine((s) => parseAddressWithLength(s) !== undefined, 'must be an address or a prefix, e.g. 192.0.2.7 or 192.0.2.0/24');

export const conntrackSyncSchema = z
  .object({
    enabled: z.boolean().default(true).describe('false stops conntrackd but keeps the settings'),
    interface: ifname.describe('link the state updates travel on: a dedicated link between the two nodes (recommended) or a shared one'),
    localAddress: z.string().refine((s) => addressFamily(s) !== 0, 'must be an IPv4 or IPv6 address').describe("this node's address on that link (local, never synced)"),
    peerAddress: z.string().refine((s) => addressFamily(s) !== 0, 'must be an IPv4 or IPv6 address').describe("the other node's address on that link (same family)"),
    port: z.number().int().min(1).max(65535).default(3780).describe('UDP port of the state updates (opened on the interface)'),
    protocols: z
      .array(z.enum(['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'dccp']))
      .min(1)
      .default(['tcp', 'udp', 'icmp', 'icmpv6'])
      .describe('protocols whose connections are replicated'),
    ignoreAddresses: z.array(prefixOrAddress).default([]).describe('addresses or prefixes whose connections are not replicated, e.g. this node\'s own (loopback and both sync-link addresses always are)'),
  })
  .strict();

export const keepalivedSchema = z
  .object({
    enabled: z.boolean().default(true).describe('false stops keepalived (the addresses are released) but keeps the configuration'),
    role: z.enum(['primary', 'secondary']).default('primary').describe('this node: primary uses each instance\'s priority, secondary its backupPriority (local, never synced)'),
    nodeName: name.optional().describe('router_id in keepalived (default: the host name) (local, never synced)'),
    instances: z.array(vrrpInstanceSchema).default([]).describe('VRRP instances'),
    scripts: z.array(trackScriptSchema).default([]).describe('health checks instances can track'),
    groups: z
      .array(z.object({ name: name, instances: z.array(name).min(2) }).strict())
      .default([])
      .describe('instances that always change state together (vrrp_sync_group), e.g. the LAN and WAN sides of a router'),
    sync: haSyncSchema.optional().describe('push the configuration to the secondary after every apply (set on the primary only; local, never synced)'),
    conntrackSync: conntrackSyncSchema
      .optional()
      .describe('replicate connection-tracking state to the other node with conntrackd (FT-FW), committed into the kernel when this node becomes master, so established connections survive a failover (set on both nodes; local, never synced)'),
  })
  .strict()
  .prefault({});

export type KeepalivedConfig = z.infer<typeof keepalivedSchema>;
export type VrrpInstance = z.infer<typeof vrrpInstanceSchema>;
export type TrackScript = z.infer<typeof trackScriptSchema>;
export type HaSyncConfig = z.infer<typeof haSyncSchema>;
export type ConntrackSyncConfig = z.infer<typeof conntrackSyncSchema>;
/** fields of ha: that belong to one node and are never pushed to the peer */
export const HA_LOCAL_FIELDS = ['role', 'nodeName', 'sync', 'enabled', 'conntrackSync'] as const;
