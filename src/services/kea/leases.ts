/**
 * Kea's memfile lease file as structured data. Kea appends one CSV line per
 * change (grant, renew, release, expiry); with lease file cleanup off
 * (lfc-interval 0) the last line for an address is its current state, and a
 * line with valid_lifetime 0 means the lease was deleted.
 */
import { ipv4ToNumber } from '../../net/address.js';

export interface DhcpLease {
  address: string;
  /** lower case, colon separated */
  mac: string;
  clientId: string | undefined;
  hostname: string | undefined;
  subnetId: number;
  /** seconds the lease was granted for */
  validLifetime: number;
  /** when it runs out (ISO 8601) */
  expires: string;
  state: 'active' | 'declined' | 'expired';
}

const STATES: Record<string, DhcpLease['state']> = { '0': 'active', '1': 'declined', '2': 'expired' };

/** Current leases from the CSV text (deleted leases dropped; ones past expiry marked expired). */
export function parseLeaseFile(text: string, now: Date = new Date()): DhcpLease[] {
  const lines = text.split('\n').filter((l) => l.trim());
  if (!lines.length) return [];
  const header = lines[0]!.split(',');
  const col = (name: string) => header.indexOf(name);
  const [iAddr, iHw, iCid, iValid, iExpire, iSubnet, iHost, iState] = ['address', 'hwaddr', 'client_id', 'valid_lifetime', 'expire', 'subnet_id', 'hostname', 'state'].map(col) as number[];
  if (iAddr! < 0 || iExpire! < 0) throw new Error(`not a Kea DHCPv4 lease file (header: ${lines[0]})`);
  const latest = new Map<string, DhcpLease | null>();
  for (const line of lines.slice(1)) {
    const f = line.split(',');
    const address = f[iAddr!];
    if (!address) continue;
    const validLifetime = Number(f[iValid!] ?? 0);
    if (validLifetime === 0) {
      latest.set(address, null);
      continue;
    }
    const expireSec = Number(f[iExpire!]);
    const state = STATES[f[iState!] ?? '0'] ?? 'active';
    latest.set(address, {
      address,
      mac: (f[iHw!] ?? '').toLowerCase(),
      clientId: f[iCid!] || undefined,
      hostname: unescape(f[iHost!] ?? '') || undefined,
      subnetId: Number(f[iSubnet!] ?? 0),
      validLifetime,
      expires: new Date(expireSec * 1000).toISOString(),
      state: state === 'active' && expireSec * 1000 < now.getTime() ? 'expired' : state,
    });
  }
  return [...latest.values()].filter((l): l is DhcpLease => l !== null).sort((a, b) => cmpIp(a.address, b.address));
}

/** Kea writes commas inside fields as "&#x2c". */
function unescape(s: string): string {
  return s.replace(/&#x2c/g, ',');
}

function cmpIp(a: string, b: string): number {
  return ipv4ToNumber(a) - ipv4ToNumber(b);
}
