/**
 * A small certificate authority for the VPN services: one CA per name
 * (e.g. one per OpenVPN server, one for IPsec), server and client
 * certificates signed by it. Certificates are written with @peculiar/x509
 * (a maintained X.509 library on WebCrypto) and signed by node's crypto;
 * new keys are ECDSA P-256 (RSA-2048 on request, and keys already on disk
 * keep their type). Everything lives under <stateDir>/keys/pki/<ca>/: keys
 * 0600, directories 0700.
 *
 * A certificate is re-issued when what it should say changes (subject,
 * alternative names, usage) or when it is past two thirds of its life, so
 * an apply that re-runs is a no-op and a changed SAN takes effect.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import type * as X509 from '@peculiar/x509';
import { addressFamily, parsePrefix } from '../../net/address.js';

// @peculiar/x509 (with tsyringe, asn1 schemas, reflect-metadata) is loaded at the first
// certificate written, not with this module: every server and CLI imports this file through
// the VPN domains, and the library costs ~6 MB of resident memory to a process that never
// issues a certificate (docs/bench-control.md). Its package has no ESM entry (`main` is the
// CommonJS build, which `import` loaded before too), so require() gives the same module.
const require = createRequire(import.meta.url);
let x509Module: typeof X509 | undefined;
function loadX509(): typeof X509 {
  if (!x509Module) {
    // tsyringe (inside @peculiar/x509) needs the Reflect metadata polyfill loaded first
    require('reflect-metadata');
    const x509 = require('@peculiar/x509') as typeof X509;
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    x509Module = x509;
  }
  return x509Module;
}

type WebKey = webcrypto.CryptoKey;
type SignAlgorithm = webcrypto.RsaHashedImportParams | (webcrypto.EcdsaParams & webcrypto.EcKeyImportParams);

export type CertUsage = 'server' | 'client' | 'ipsec';
export type KeyType = 'ecdsa-p256' | 'rsa-2048';

export interface CertRequest {
  /** file name stem, unique per CA */
  name: string;
  commonName: string;
  usage: CertUsage;
  /** DNS names and IP addresses for subjectAltName */
  altNames?: string[];
  days?: number;
  /** type of a new key (an existing key file keeps its type); default ECDSA P-256 */
  keyType?: KeyType;
}

export interface IssuedCert {
  /** PEM */
  cert: string;
  /** PEM (PKCS#8) */
  key: string;
  certFile: string;
  keyFile: string;
}

export interface Ca {
  name: string;
  cert: string;
  certFile: string;
  keyFile: string;
}

export function pkiDir(stateDir: string, ca: string): string {
  return path.join(stateDir, 'keys', 'pki', ca);
}

/** The CA named `ca`, made on first use (self-signed, 10 years). */
export async function ensureCa(stateDir: string, ca: string, commonName = `Patronus ${ca} CA`, keyType: KeyType = 'ecdsa-p256'): Promise<Ca> {
  const dir = pkiDir(stateDir, ca);
  const certFile = path.join(dir, 'ca.crt');
  const keyFile = path.join(dir, 'ca.key');
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    privateDir(dir);
    const key = newKeyPem(keyType);
    const x509 = loadX509();
    const pair = await cryptoKeys(createPrivateKey(key));
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: [{ CN: [commonName] }, { O: ['Patronus'] }],
      ...validity(3650),
      keys: pair,
      signingAlgorithm: pair.algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(pair.publicKey),
      ],
    });
    writeSecret(keyFile, key);
    writeFileAtomic(certFile, cert.toString('pem') + '\n', 0o644);
  }
  return { name: ca, cert: readFileSync(certFile, 'utf8'), certFile, keyFile };
}

/** A certificate signed by `ca` for `req`, issued (or re-issued) as needed. */
export async function ensureCert(stateDir: string, ca: string, req: CertRequest): Promise<IssuedCert> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(req.name)) throw new Error(`certificate name "${req.name}" is not a safe file name`);
  const authority = await ensureCa(stateDir, ca);
  const dir = pkiDir(stateDir, ca);
  const certFile = path.join(dir, `${req.name}.crt`);
  const keyFile = path.join(dir, `${req.name}.key`);
  if (!existsSync(keyFile) || !existsSync(certFile) || !certMatches(readFileSync(certFile, 'utf8'), authority, req)) {
    const x509 = loadX509();
    const keyPem = existsSync(keyFile) ? readFileSync(keyFile, 'utf8') : newKeyPem(req.keyType ?? 'ecdsa-p256');
    const subjectKey = createPrivateKey(keyPem);
    const caKey = await cryptoKeys(createPrivateKey(readFileSync(authority.keyFile, 'utf8')));
    const caCert = new x509.X509Certificate(authority.cert);
    const rsa = subjectKey.asymmetricKeyType === 'rsa';
    const eku =
      req.usage === 'server'
        ? [x509.ExtendedKeyUsage.serverAuth]
        : req.usage === 'client'
          ? [x509.ExtendedKeyUsage.clientAuth]
          : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth, IKE_INTERMEDIATE];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: [{ CN: [req.commonName] }],
      issuer: caCert.subject,
      ...validity(req.days ?? 825),
      publicKey: await publicCryptoKey(subjectKey),
      signingKey: caKey.privateKey,
      signingAlgorithm: caKey.algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        // keyEncipherment only means something for RSA key transport
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | (rsa ? x509.KeyUsageFlags.keyEncipherment : 0), true),
        new x509.ExtendedKeyUsageExtension(eku),
        await x509.SubjectKeyIdentifierExtension.create(await publicCryptoKey(subjectKey)),
        await x509.AuthorityKeyIdentifierExtension.create(caKey.publicKey),
        ...(req.altNames?.length ? [new x509.SubjectAlternativeNameExtension(req.altNames.map((a) => ({ type: addressFamily(a) ? ('ip' as const) : ('dns' as const), value: a })))] : []),
      ],
    });
    if (!existsSync(keyFile)) writeSecret(keyFile, keyPem);
    writeFileAtomic(certFile, cert.toString('pem') + '\n', 0o644);
  }
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile };
}

/** What a certificate says, for status output (no key material). */
export function describeCert(pem: string): { subject: string; issuer: string; notAfter: string; serial: string; altNames: string[]; fingerprint256: string } {
  const c = new X509Certificate(pem);
  return {
    subject: c.subject.replace(/\n/g, ', '),
    issuer: c.issuer.replace(/\n/g, ', '),
    notAfter: new Date(c.validTo).toISOString(),
    serial: c.serialNumber,
    altNames: (c.subjectAltName ?? '').split(', ').filter(Boolean),
    fingerprint256: c.fingerprint256,
  };
}

/** A new private key as PKCS#8 PEM (ECDSA P-256 keys take well under a millisecond). */
export function newKeyPem(type: KeyType = 'ecdsa-p256'): string {
  const k =
    type === 'rsa-2048'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return k.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

// ---------------------------------------------------------------------------

/** strongSwan's IKE intermediate EKU: some peers (macOS, Windows) want it on gateway certificates */
const IKE_INTERMEDIATE = '1.3.6.1.5.5.8.2.2';

/** The WebCrypto form of a node key pair, with the algorithm it signs with (SHA-256). */
async function cryptoKeys(key: KeyObject): Promise<{ privateKey: WebKey; publicKey: WebKey; algorithm: SignAlgorithm }> {
  const algorithm = signingAlgorithm(key);
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, algorithm, true, ['sign']);
  return { privateKey, publicKey: await publicCryptoKey(key), algorithm };
}

async function publicCryptoKey(key: KeyObject): Promise<WebKey> {
  const der = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return webcrypto.subtle.importKey('spki', der, signingAlgorithm(key), true, ['verify']);
}

function signingAlgorithm(key: KeyObject): SignAlgorithm {
  if (key.asymmetricKeyType === 'rsa') return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  throw new Error(`unsupported key type ${key.asymmetricKeyType} ${key.asymmetricKeyDetails?.namedCurve ?? ''}: Patronus keys are ECDSA P-256 or RSA`);
}

function certMatches(pem: string, ca: Ca, req: CertRequest): boolean {
  try {
    const c = new X509Certificate(pem);
    if (!c.checkIssued(new X509Certificate(ca.cert))) return false;
    if (c.subject !== `CN=${req.commonName}`) return false;
    const life = Date.parse(c.validTo) - Date.parse(c.validFrom);
    if (Date.now() > Date.parse(c.validFrom) + (life * 2) / 3) return false;
    const want = (req.altNames ?? []).map((a) => (addressFamily(a) ? `IP Address:${a}` : `DNS:${a}`)).sort();
    const have = (c.subjectAltName ?? '').split(', ').filter(Boolean).sort();
    if (JSON.stringify(want.map(normalizeAlt)) !== JSON.stringify(have.map(normalizeAlt))) return false;
    return usageOf(c) === req.usage;
  } catch {
    return false;
  }
}

function usageOf(c: X509Certificate): CertUsage | undefined {
  const x509 = loadX509();
  const eku = c.keyUsage ?? [];
  const server = eku.includes(x509.ExtendedKeyUsage.serverAuth);
  const client = eku.includes(x509.ExtendedKeyUsage.clientAuth);
  if (server && client) return 'ipsec';
  if (server) return 'server';
  if (client) return 'client';
  return undefined;
}

function normalizeAlt(a: string): string {
  const m = /^IP Address:(.*)$/.exec(a);
  if (!m) return a;
  // node prints IPv6 SANs expanded; compare canonical forms
  return `IP:${parsePrefix(m[1]!).address}`;
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  // a little back-dating tolerates clocks that differ between the two ends
  return { notBefore: new Date(now - 5 * 60_000), notAfter: new Date(now + days * 86_400_000) };
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x3f) | 0x40; // positive, no leading zero byte (minimal DER)
  return b.toString('hex');
}

function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

function writeSecret(file: string, content: string): void {
  privateDir(path.dirname(file));
  writeFileAtomic(file, content, 0o600);
}

function writeFileAtomic(file: string, content: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, file);
}
