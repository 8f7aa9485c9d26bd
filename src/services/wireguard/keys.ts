/**
 * WireGuard key store: Curve25519 keys made with node's crypto (the same
 * keys `wg genkey` makes), one file a key under <stateDir>/keys/wireguard,
 * mode 0600 in a 0700 directory. It lives outside the service's instance
 * directory so disabling and re-enabling an interface keeps its identity.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';

/** PKCS#8 DER header of an X25519 private key; the 32 raw bytes follow. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

export function keyDir(stateDir: string): string {
  return path.join(stateDir, 'keys', 'wireguard');
}

/** A new key pair, both halves base64 as wg(8) prints them. */
export function generateKeyPair(): KeyPair {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return { privateKey: b64(jwk.d!), publicKey: b64(jwk.x!) };
}

/** The public key of a base64 private key (what `wg pubkey` prints). */
export function publicKeyOf(privateKey: string): string {
  const raw = Buffer.from(privateKey, 'base64');
  if (raw.length !== 32) throw new Error('a WireGuard private key is 32 bytes of base64');
  const key = createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  return b64(createPublicKey(key).export({ format: 'jwk' }).x!);
}

/** A pre-shared key (32 random bytes, what `wg genpsk` prints). */
export function generatePresharedKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * Reads a stored secret, or makes and stores it when missing. `kind` names
 * the file: "<iface>.key", "<iface>.peer.<name>.key", "<iface>.peer.<name>.psk".
 */
export function ensureSecret(stateDir: string, file: string, make: () => string): string {
  const dir = keyDir(stateDir);
  const target = path.join(dir, file);
  if (existsSync(target)) return readFileSync(target, 'utf8').trim();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const value = make();
  // write-then-rename so a crash never leaves a half-written key
  const tmp = `${target}.${process.pid}.tmp`;
  writeFileSync(tmp, `${value}\n`, { mode: 0o600 });
  renameSync(tmp, target);
  return value;
}

/** Reads a stored secret without creating it. */
export function readSecret(stateDir: string, file: string): string | undefined {
  try {
    return readFileSync(path.join(keyDir(stateDir), file), 'utf8').trim();
  } catch {
    return undefined;
  }
}

export const interfaceKeyFile = (iface: string) => `${iface}.key`;
export const peerKeyFile = (iface: string, peer: string) => `${iface}.peer.${peer}.key`;
export const peerPskFile = (iface: string, peer: string) => `${iface}.peer.${peer}.psk`;

/** The interface's key pair, made on first use. */
export function interfaceKeys(stateDir: string, iface: string): KeyPair {
  const privateKey = ensureSecret(stateDir, interfaceKeyFile(iface), () => generateKeyPair().privateKey);
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** A generated peer's key pair, made on first use. */
export function peerKeys(stateDir: string, iface: string, peer: string): KeyPair {
  const privateKey = ensureSecret(stateDir, peerKeyFile(iface, peer), () => generateKeyPair().privateKey);
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

export function peerPresharedKey(stateDir: string, iface: string, peer: string): string {
  return ensureSecret(stateDir, peerPskFile(iface, peer), generatePresharedKey);
}

function b64(base64url: string): string {
  return Buffer.from(base64url, 'base64url').toString('base64');
}
