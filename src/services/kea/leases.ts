/**
 * Kea's leases as structured data, from the lease_cmds hook's
 * `lease4-get-all` answer (the normal path: the daemon holds its leases in
 * memory) or, when the daemon is not running, from the memfile lease files.
 * Kea appends one CSV line per change (grant, renew, release, expiry); the
 * last line for an address is its current state, and a line with
 * valid_lifetime 0 means the lease was deleted. Lease file cleanup (LFC)
 * keeps the files bounded: the complete history is FILE.1 (the last
 * cleanup's output), FILE.2 (the file being cleaned up) and FILE, in that
 * order, so parse their concatenation.
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

/** One lease as lease4-get-all reports it (Kea's lease_cmds hook). */
export interface KeaLease4 {
  'ip-address': string;
  'hw-address'?: string;
  'client-id'?: string;
  hostname?: string;
  'subnet-id': number;
  'valid-lft': number;
  cltt: number;
  state: number;
}

/** Leases from lease4-get-all (ones past expiry marked expired). */
export function leasesFromCommand(leases: readonly KeaLease4[], now: Date = new Date()): DhcpLease[] {
  return leases
    .map((l): DhcpLease => {
      const expireSec = l.cltt + l['valid-lft'];
      const state = STATES[String(l.state)] ?? 'active';
      return {
        address: l['ip-address'],
        mac: (l['hw-address'] ?? '').toLowerCase(),
        clientId: l['client-id'] || undefined,
        hostname: l.hostname || undefined,
        subnetId: l['subnet-id'],
        validLifetime: l['valid-lft'],
        expires: new Date(expireSec * 1000).toISOString(),
        state: state === 'active' && expireSec * 1000 < now.getTime() ? 'expired' : state,
      };
    })
    .sort((a, b) => cmpIp(a.address, b.address));
}

/** Current leases from the CSV text (deleted leases dropped; ones past expiry marked expired). */
export function parseLeaseFile(text: string, now: Date = new Date()): DhcpLease[] {
  // concatenated files repeat the header: keep the first
  const lines = text.split('\n').filter((l, i, all) => l.trim() && (i === all.indexOf(l) || !l.startsWith('address,')));
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
