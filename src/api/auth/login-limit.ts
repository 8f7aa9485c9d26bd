/**
 * Sign-in rate limiting: at most `failures` failed sign-ins per `windowMs`
 * per source address and per user name; beyond that every attempt (even a
 * right password) gets 429 with Retry-After until the oldest failure in the
 * window ages out. In memory (a restart clears it; an attacker gains one
 * window per restart), bounded in size. Hand-written rather than
 * @fastify/rate-limit: that plugin counts requests, not failures, so it
 * would lock out a user who signs in correctly several times, and two
 * keys (address and user) per attempt would need two instances.
 */
import { addressBytes, formatAddress, formatPrefix, isIPv6, prefixFromBytes } from '../../net/address.js';

export interface LoginLimitOptions {
  failures: number;
  windowMs: number;
  /** most keys remembered (oldest dropped beyond) */
  maxKeys?: number;
}

export const DEFAULT_LOGIN_LIMIT: LoginLimitOptions = { failures: 5, windowMs: 60_000 };

export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();
  private readonly maxKeys: number;

  constructor(private readonly opts: LoginLimitOptions = DEFAULT_LOGIN_LIMIT) {
    this.maxKeys = opts.maxKeys ?? 10_000;
  }

  /** Seconds until `keys` may try again (the largest wait of any), or 0 when they may now. */
  retryAfter(keys: string[], now = Date.now()): number {
    let wait = 0;
    for (const k of keys) {
      const times = this.recent(k, now);
      if (times.length >= this.opts.failures) wait = Math.max(wait, Math.ceil((times[0]! + this.opts.windowMs - now) / 1000));
    }
    return wait;
  }

  fail(keys: string[], now = Date.now()): void {
    for (const k of keys) {
      const times = this.recent(k, now);
      times.push(now);
      // re-insert so the Map's order is oldest-used first
      this.failures.delete(k);
      this.failures.set(k, times.slice(-this.opts.failures));
    }
    while (this.failures.size > this.maxKeys) this.failures.delete(this.failures.keys().next().value!);
  }

  /** A successful sign-in clears that user's failures (not the address's: one valid account must not reset an address's budget). */
  succeed(key: string): void {
    this.failures.delete(key);
  }

  private recent(key: string, now: number): number[] {
    const times = (this.failures.get(key) ?? []).filter((t) => t > now - this.opts.windowMs);
    if (times.length) this.failures.set(key, times);
    else this.failures.delete(key);
    return times;
  }
}

/**
 * The limiter's key for a source address: an IPv4 address as it is (also
 * when IPv4-mapped), an IPv6 address by its /64, since one host or site
 * commonly holds a whole /64 and could otherwise try from 2^64 addresses.
 */
export function addressKey(ip: string): string {
  const bare = ip.split('%')[0]!;
  if (!isIPv6(bare)) return `address:${ip}`;
  const bytes = addressBytes(bare, 6);
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `address:${formatAddress(bytes.subarray(12))}`;
  return `address:${formatPrefix(prefixFromBytes(bytes, 64))}`;
}
