/**
 * The `openvpn` section: OpenVPN servers (with a CA and certificates that
 * Patronus makes) and clients (that connect to another server with a
 * profile or certificate files).
 */
import { z } from 'zod';
import { hostField, identifierField, ipAddressField, linuxInterfaceField, portField, prefixField } from '../common/fields.js';
import { CERT_NAME } from '../../certificates/schema.js';

export const DATA_CIPHERS = ['AES-256-GCM', 'AES-128-GCM', 'CHACHA20-POLY1305'] as const;

const dataCiphers = z
  .array(z.enum(DATA_CIPHERS))
  .min(1)
  .default(['AES-256-GCM', 'AES-128-GCM'])
  .describe('AEAD data-channel ciphers, in order of preference (data-ciphers)');

const ipv4Prefix = prefixField.refine((s) => !s.includes(':'), 'must be an IPv4 prefix');
const ipv6Prefix = prefixField.refine((s) => s.includes(':'), 'must be an IPv6 prefix');

export const openvpnServerClientSchema = z
  .object({
    name: identifierField.describe("the client's certificate common name; only listed clients may connect (ccd-exclusive)"),
    address: ipAddressField.optional().describe('fixed tunnel address inside the server network (ifconfig-push)'),
    routes: z.array(ipv4Prefix).default([]).describe('IPv4 networks behind this client (iroute + route on the server)'),
  })
  .strict();

export const openvpnServerSchema = z
  .object({
    name: identifierField.describe('server name (CA, files and metrics labels)'),
    enabled: z.boolean().default(true).describe('run this server'),
    device: linuxInterfaceField.optional().describe('tun interface name (default ovpn-<name>)'),
    proto: z.enum(['udp', 'tcp']).default('udp').describe('transport protocol'),
    port: portField.default(1194).describe('port to listen on'),
    local: ipAddressField.optional().describe('address to bind to (default: all)'),
    network: ipv4Prefix.describe('IPv4 tunnel network; the server takes its first address (server directive, topology subnet)'),
    network6: ipv6Prefix.optional().describe('IPv6 tunnel network (server-ipv6)'),
    pushRoutes: z.array(ipv4Prefix).default([]).describe('networks pushed to clients as routes through the tunnel'),
    redirectGateway: z.boolean().default(false).describe('make clients send all traffic through the tunnel'),
    dns: z.array(ipAddressField).default([]).describe('DNS servers pushed to clients'),
    domain: hostField.optional().describe('DNS search domain pushed to clients'),
    clientToClient: z.boolean().default(false).describe('let clients reach each other through the server'),
    dataCiphers,
    keepalive: z
      .object({ interval: z.number().int().min(1).max(3600).describe('seconds between pings'), timeout: z.number().int().min(2).max(7200).describe('seconds without traffic before a peer is dropped') })
      .strict()
      .default({ interval: 10, timeout: 60 })
      .describe('keepalive (ping / ping-restart)'),
    maxClients: z.number().int().min(1).max(65535).optional().describe('limit on connected clients'),
    remoteHost: hostField.optional().describe('public host name or address clients connect to (written into exported profiles and the server certificate)'),
    certificate: z
      .string()
      .regex(CERT_NAME, 'must name a certificate of certificates.issue')
      .optional()
      .describe(
        "a certificate of certificates.issue (ACME) to present instead of one from the server's own CA; clients still log in with certificates of the server CA, and their profiles verify the server by the certificate's name and the ACME CA's root. A renewal restarts the server (OpenVPN reads its certificate only at start): connected clients reconnect at once",
      ),
    clients: z.array(openvpnServerClientSchema).default([]).describe('clients allowed to connect; each gets a certificate from the server CA'),
    verb: z.number().int().min(0).max(11).default(3).describe('log verbosity'),
  })
  .strict();

export const openvpnClientSchema = z
  .object({
    name: identifierField.describe('client instance name'),
    enabled: z.boolean().default(true).describe('run this client'),
    device: linuxInterfaceField.optional().describe('tun interface name (default ovpn-<name>)'),
    profile: z.string().min(1).optional().describe('path of an .ovpn profile with inline certificates (e.g. one exported by a Patronus server); the fields below override it'),
    remote: hostField.optional().describe('server host name or address (required without a profile)'),
    port: portField.default(1194).describe('server port'),
    proto: z.enum(['udp', 'tcp']).default('udp').describe('transport protocol'),
    caFile: z.string().min(1).optional().describe('CA certificate (PEM) that signed the server certificate'),
    certFile: z.string().min(1).optional().describe('client certificate (PEM)'),
    keyFile: z.string().min(1).optional().describe('client private key (PEM, keep it 0600)'),
    tlsCryptFile: z.string().min(1).optional().describe('tls-crypt key shared with the server'),
    dataCiphers,
    verb: z.number().int().min(0).max(11).default(3).describe('log verbosity'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.profile) return;
    for (const f of ['remote', 'caFile', 'certFile', 'keyFile'] as const) {
      if (!c[f]) ctx.addIssue({ code: 'custom', path: [f], message: `required when no profile is given` });
    }
  });

export const openvpnSchema = z
  .object({
    servers: z.array(openvpnServerSchema).default([]).describe('OpenVPN servers'),
    clients: z.array(openvpnClientSchema).default([]).describe('OpenVPN client connections'),
  })
  .strict()
  .default({ servers: [], clients: [] })
  .superRefine((s, ctx) => {
    const names = new Map<string, string>();
    const devices = new Map<string, string>();
    const ports = new Map<string, string>();
    const check = (kind: 'servers' | 'clients', n: number, name: string, device: string | undefined, enabled: boolean) => {
      if (names.has(name)) ctx.addIssue({ code: 'custom', path: [kind, n, 'name'], message: `name "${name}" is already used by ${names.get(name)}` });
      names.set(name, `${kind}[${n}]`);
      const dev = device ?? `ovpn-${name}`;
      if (!device && dev.length > 15) ctx.addIssue({ code: 'custom', path: [kind, n, 'device'], message: `default device name "${dev}" is longer than 15 characters: set device` });
      if (enabled && devices.has(dev)) ctx.addIssue({ code: 'custom', path: [kind, n, 'device'], message: `device "${dev}" is already used by ${devices.get(dev)}` });
      if (enabled) devices.set(dev, `${kind}[${n}]`);
    };
    s.servers.forEach((v, n) => {
      check('servers', n, v.name, v.device, v.enabled);
      const key = `${v.proto}/${v.port}`;
      if (v.enabled && ports.has(key)) ctx.addIssue({ code: 'custom', path: ['servers', n, 'port'], message: `${key} is already used by ${ports.get(key)}` });
      if (v.enabled) ports.set(key, `servers[${n}]`);
      const seen = new Set<string>();
      v.clients.forEach((c, k) => {
        if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['servers', n, 'clients', k, 'name'], message: `client "${c.name}" is listed twice` });
        seen.add(c.name);
      });
      if (v.keepalive.timeout <= v.keepalive.interval) ctx.addIssue({ code: 'custom', path: ['servers', n, 'keepalive', 'timeout'], message: 'must be longer than the interval' });
    });
    s.clients.forEach((v, n) => check('clients', n, v.name, v.device, v.enabled));
  });

export type OpenvpnConfig = z.infer<typeof openvpnSchema>;
export type OpenvpnServerConfig = z.infer<typeof openvpnServerSchema>;
export type OpenvpnClientConfig = z.infer<typeof openvpnClientSchema>;
