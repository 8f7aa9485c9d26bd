/**
 * Secrets (private keys, pre-shared keys, passwords) must never leave
 * through status, the API or logs. redactSecrets() is the one filter the
 * control plane puts in front of anything a service returns.
 */

export const REDACTED = '[redacted]';

/** Object keys whose values are secret, whatever their type. */
const SECRET_KEY = /(private.?key|preshared.?key|^psk$|secret|password|passphrase|tls.?crypt|^priv$)/i;

/** Text that carries a secret inline: PEM private keys, WireGuard/OpenVPN config lines. */
const SECRET_TEXT: readonly [RegExp, string][] = [
  [/-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/g, REDACTED],
  [/-----BEGIN OpenVPN Static key V1-----[\s\S]*?-----END OpenVPN Static key V1-----/g, REDACTED],
  [/^(\s*(?:PrivateKey|PresharedKey)\s*=\s*).*$/gim, `$1${REDACTED}`],
  [/^(\s*(?:private_key|preshared_key)=)[0-9a-f]+$/gim, `$1${REDACTED}`],
  [/^(\s*secret\s*=\s*).*$/gim, `$1${REDACTED}`],
];

/** A deep copy of `value` with every secret replaced by "[redacted]". */
export function redactSecrets<T>(value: T): T {
  return walk(value, undefined) as T;
}

export function redactText(text: string): string {
  let out = text;
  for (const [re, rep] of SECRET_TEXT) out = out.replace(re, rep);
  return out;
}

/** `pskFile`, `tlsCryptFile`: where a secret is kept (a path the document may show), not the secret. */
const PATH_KEY = /File$/;

function walk(v: unknown, key: string | undefined): unknown {
  if (key !== undefined && SECRET_KEY.test(key) && !PATH_KEY.test(key) && v !== null && v !== undefined && typeof v !== 'boolean') return REDACTED;
  if (typeof v === 'string') return redactText(v);
  if (Array.isArray(v)) return v.map((x) => walk(x, undefined));
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x, k);
    return out;
  }
  return v;
}
