/**
 * zod field types the service schemas share (addresses, prefixes, ports,
 * names that end up in daemon config files). Each rejects anything that
 * could break out of the line it is rendered into.
 */
import { z } from 'zod';
import { addressFamily, addressTextProblem, parseAddressWithLength, parseNetwork } from '../../net/address.js';

/**
 * A network prefix ("10.0.0.0/24", "2001:db8::/64", "192.0.2.7" = /32). Host
 * bits are refused, as in every other prefix field (docs/configuration-input.md):
 * "10.0.0.1/24" is either a typo for the network or meant as one address.
 */
export const prefixField = z.string().superRefine((s, ctx) => {
  try {
    parseNetwork(s);
  } catch (e) {
    const why = (e as Error).message;
    ctx.addIssue({ code: 'custom', message: /host bits/.test(why) ? why : 'must be an IPv4 or IPv6 prefix such as 10.0.0.0/24' });
  }
});

/** An interface address with its prefix length ("10.8.0.1/24"). */
export const interfaceAddressField = z.string().refine((s) => {
  return !addressTextProblem(s) && parseAddressWithLength(s)?.length !== undefined;
}, 'must be an address with prefix length, e.g. 10.8.0.1/24');

export const ipAddressField = z.string().refine((s) => addressFamily(s) !== 0, 'must be an IPv4 or IPv6 address');

export const portField = z.number().int().min(1).max(65535);

/** A DNS name or address (no spaces, quotes, or config syntax). */
export const hostField = z
  .string()
  .min(1)
  .max(253)
  .refine((s) => addressFamily(s) !== 0 || /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$/.test(s), 'must be a host name or IP address');

/** "host:port", "[v6]:port" */
export const endpointField = z.string().refine((s) => splitEndpoint(s) !== undefined, 'must be host:port or [IPv6]:port');

/** A name that becomes part of file names, identifiers and config sections. */
export const identifierField = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/, 'must start with a letter and hold only letters, digits, _ and - (max 63)');

export const linuxInterfaceField = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,14}$/, 'must be a Linux interface name (1-15 letters, digits, _ or -)');

export function splitEndpoint(s: string): { host: string; port: number } | undefined {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  if (!hostField.safeParse(m[1]).success) return undefined;
  return { host: m[1]!, port };
}
