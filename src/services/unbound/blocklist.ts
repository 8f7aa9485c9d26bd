/**
 * Blocklist files as published (StevenBlack hosts, OISD/hagezi domain lists):
 * plain domains one a line, or hosts format ("0.0.0.0 ads.example.com").
 * Junk lines are counted, not fatal: public lists carry some.
 */
import { addressFamily } from '../../net/address.js';
import { DOMAIN } from './schema.js';

export type BlocklistFormat = 'domains' | 'hosts' | 'auto';

export interface ParsedBlocklist {
  /** lower case, no trailing dot, unique, in file order */
  domains: string[];
  /** lines that held no usable domain (bad syntax, IP literals, ...) */
  invalid: number;
}

/** Names hosts files map to themselves; never blocked. */
const HOSTS_BOILERPLATE = new Set([
  'localhost',
  'localhost.localdomain',
  'local',
  'broadcasthost',
  'ip6-localhost',
  'ip6-loopback',
  'ip6-localnet',
  'ip6-mcastprefix',
  'ip6-allnodes',
  'ip6-allrouters',
  'ip6-allhosts',
  '0.0.0.0',
]);

export function parseBlocklist(text: string, format: BlocklistFormat): ParsedBlocklist {
  const seen = new Set<string>();
  const domains: string[] = [];
  let invalid = 0;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) continue;
    const fields = line.split(/\s+/);
    const hostsLine = format === 'hosts' || (format === 'auto' && fields.length > 1 && addressFamily(fields[0]!) !== 0);
    let names: string[];
    if (hostsLine) {
      if (addressFamily(fields[0]!) === 0 || fields.length < 2) {
        invalid++;
        continue;
      }
      names = fields.slice(1);
    } else if (fields.length === 1) {
      names = fields;
    } else {
      invalid++;
      continue;
    }
    for (const n of names) {
      const name = n.toLowerCase().replace(/\.$/, '');
      if (HOSTS_BOILERPLATE.has(name)) continue;
      if (!DOMAIN.test(name) || addressFamily(name) !== 0 || !name.includes('.')) {
        invalid++;
        continue;
      }
      if (seen.has(name)) continue;
      seen.add(name);
      domains.push(name);
    }
  }
  return { domains, invalid };
}
