/**
 * The `wireguard` section: WireGuard interfaces and their peers. Private
 * keys never appear here: Patronus generates each interface's key (and, on
 * request, a peer's key for client export) and keeps it under its state
 * directory with mode 0600.
 */
import { z } from 'zod';
import { endpointField, hostField, identifierField, interfaceAddressField, ipAddressField, linuxInterfaceField, portField, prefixField } from '../common/fields.js';

const WG_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$/;

export const wireguardPeerSchema = z
  .object({
    name: identifierField.describe('peer name (used for generated keys, client export and metrics labels)'),
    publicKey: z.string().regex(WG_KEY, 'must be a WireGuard public key (44 base64 characters)').optional().describe("the peer's public key; omit it and set generateKey to let Patronus make the peer's key pair"),
    generateKey: z.boolean().default(false).describe("Patronus generates and keeps the peer's key pair, so a complete client config can be exported"),
    presharedKey: z.boolean().default(false).describe('use a pre-shared key for this peer (generated and kept by Patronus, mode 0600)'),
    allowedIps: z.array(prefixField).min(1).describe('prefixes routed to this peer and accepted from it (cryptokey routing)'),
    endpoint: endpointField.optional().describe('host:port to reach the peer at; omit for roaming clients'),
    persistentKeepalive: z.number().int().min(1).max(65535).optional().describe('seconds between keepalives (useful behind NAT)'),
    description: z.string().max(200).optional().describe('free text for operators'),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (!p.publicKey && !p.generateKey) ctx.addIssue({ code: 'custom', path: ['publicKey'], message: 'give the peer\'s publicKey, or set generateKey: true' });
    if (p.publicKey && p.generateKey) ctx.addIssue({ code: 'custom', path: ['generateKey'], message: 'generateKey cannot be combined with a given publicKey' });
  });

export const wireguardClientExportSchema = z
  .object({
    endpoint: endpointField.describe('public host:port clients use to reach this interface'),
    dns: z.array(z.union([ipAddressField, hostField])).default([]).describe('DNS servers (and search domains) written into exported client configs'),
    allowedIps: z.array(prefixField).default(['0.0.0.0/0', '::/0']).describe('what clients route into the tunnel'),
    persistentKeepalive: z.number().int().min(1).max(65535).optional().describe('keepalive written into exported client configs'),
  })
  .strict();

export const wireguardInterfaceSchema = z
  .object({
    name: linuxInterfaceField.describe('interface name, e.g. wg0'),
    enabled: z.boolean().default(true).describe('bring this interface up'),
    listenPort: portField.optional().describe('UDP port to listen on (default 51820)'),
    addresses: z.array(interfaceAddressField).default([]).describe('addresses on the tunnel interface, e.g. 10.8.0.1/24'),
    mtu: z.number().int().min(1280).max(9000).default(1420).describe('interface MTU'),
    fwmark: z.number().int().min(1).max(0xffffffff).optional().describe('firewall mark for the tunnel\'s own UDP packets (policy routing)'),
    routeAllowedIps: z.boolean().default(true).describe('add routes for the peers\' allowed IPs through this interface (default routes 0.0.0.0/0 and ::/0 are never added: use gateways for that)'),
    implementation: z.enum(['auto', 'kernel', 'userspace']).default('auto').describe('kernel module or wireguard-go; auto uses the kernel when it has WireGuard'),
    clientExport: wireguardClientExportSchema.optional().describe('what exported client configs for generated peers contain'),
    peers: z.array(wireguardPeerSchema).default([]).describe('peers of this interface'),
    description: z.string().max(200).optional().describe('free text for operators'),
  })
  .strict()
  .superRefine((i, ctx) => {
    const names = new Set<string>();
    const keys = new Set<string>();
    i.peers.forEach((p, n) => {
      if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['peers', n, 'name'], message: `peer "${p.name}" is listed twice` });
      names.add(p.name);
      if (p.publicKey) {
        if (keys.has(p.publicKey)) ctx.addIssue({ code: 'custom', path: ['peers', n, 'publicKey'], message: 'two peers have the same public key' });
        keys.add(p.publicKey);
      }
    });
  });

export const wireguardSchema = z
  .object({
    interfaces: z.array(wireguardInterfaceSchema).default([]).describe('WireGuard interfaces'),
  })
  .strict()
  .default({ interfaces: [] })
  .superRefine((s, ctx) => {
    const names = new Set<string>();
    const ports = new Map<number, string>();
    s.interfaces.forEach((i, n) => {
      if (names.has(i.name)) ctx.addIssue({ code: 'custom', path: ['interfaces', n, 'name'], message: `interface "${i.name}" is listed twice` });
      names.add(i.name);
      const port = i.listenPort ?? 51820;
      if (i.enabled && ports.has(port)) ctx.addIssue({ code: 'custom', path: ['interfaces', n, 'listenPort'], message: `UDP port ${port} is already used by interface "${ports.get(port)}"` });
      if (i.enabled) ports.set(port, i.name);
    });
  });

export type WireguardConfig = z.infer<typeof wireguardSchema>;
export type WireguardInterfaceConfig = z.infer<typeof wireguardInterfaceSchema>;
export type WireguardPeerConfig = z.infer<typeof wireguardPeerSchema>;
