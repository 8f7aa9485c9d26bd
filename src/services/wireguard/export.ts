/**
 * Client configuration export for peers whose keys Patronus generated: the
 * wg-quick text a client imports, and the same text as a QR code (SVG) for
 * the mobile apps. This is the one place a private key leaves the key store,
 * on an explicit request for that one peer.
 */
import { parsePrefix } from '../../net/address.js';
import { interfaceKeys, peerKeyFile, peerPresharedKey, publicKeyOf, readSecret } from './keys.js';
import type { WireguardInterfaceConfig } from './schema.js';

export interface ClientExport {
  /** wg-quick(8) format */
  text: string;
  /** the same text as a QR code */
  svg: string;
}

export class ExportError extends Error {
  override name = 'ExportError';
}

/**
 * Builds the client config of `peerName` on interface `iface` (from the
 * validated document). The peer must have generateKey: true and the
 * interface a clientExport section (its public endpoint).
 */
export async function exportClientConfig(stateDir: string, iface: WireguardInterfaceConfig, peerName: string): Promise<ClientExport> {
  const peer = iface.peers.find((p) => p.name === peerName);
  if (!peer) throw new ExportError(`wireguard interface ${iface.name} has no peer "${peerName}"`);
  if (!peer.generateKey) throw new ExportError(`wireguard peer ${iface.name}/${peerName}: its key is not kept by Patronus (set generateKey: true to export a client config)`);
  if (!iface.clientExport) throw new ExportError(`wireguard interface ${iface.name}: set clientExport.endpoint (the address clients reach it at) to export client configs`);
  const privateKey = readSecret(stateDir, peerKeyFile(iface.name, peerName));
  if (!privateKey) throw new ExportError(`wireguard peer ${iface.name}/${peerName}: no key yet (apply the configuration first)`);
  const server = interfaceKeys(stateDir, iface.name);
  const ex = iface.clientExport;
  // the client's own addresses are the peer's host routes on the server side
  const addresses = peer.allowedIps.map((a) => parsePrefix(a)).filter((p) => p.length === (p.family === 4 ? 32 : 128)).map((p) => `${p.address}/${p.length}`);
  const lines = ['[Interface]', `# ${peerName} on ${iface.name} (exported by Patronus)`, `PrivateKey = ${privateKey}`];
  if (addresses.length) lines.push(`Address = ${addresses.join(', ')}`);
  if (ex.dns.length) lines.push(`DNS = ${ex.dns.join(', ')}`);
  lines.push('', '[Peer]', `PublicKey = ${server.publicKey}`);
  if (peer.presharedKey) lines.push(`PresharedKey = ${peerPresharedKey(stateDir, iface.name, peerName)}`);
  lines.push(`AllowedIPs = ${ex.allowedIps.join(', ')}`, `Endpoint = ${ex.endpoint}`);
  if (ex.persistentKeepalive) lines.push(`PersistentKeepalive = ${ex.persistentKeepalive}`);
  const text = `${lines.join('\n')}\n`;
  // loaded here, not at the top: every process that loads the services (the server, each compile worker) paid for it
  const { default: QRCode } = await import('qrcode');
  const svg = await QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  return { text, svg };
}

/** The public key Patronus holds for a generated peer (what the server side uses). */
export function generatedPeerPublicKey(stateDir: string, iface: string, peerName: string): string | undefined {
  const priv = readSecret(stateDir, peerKeyFile(iface, peerName));
  return priv ? publicKeyOf(priv) : undefined;
}
