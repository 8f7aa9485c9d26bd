/**
 * A small certificate authority for the VPN services: one CA per name
 * (e.g. one per OpenVPN server, one for IPsec), server and client
 * certificates signed by it. Keys are RSA-2048 made by node's crypto;
 * certificates are built with node-forge (node can parse X.509 but not
 * write it). Everything lives under <stateDir>/keys/pki/<ca>/: keys 0600,
 * directories 0700.
 *
 * A certificate is re-issued when what it should say changes (subject,
 * alternative names, usage) or when it is past two thirds of its life, so
 * an apply that re-runs is a no-op and a changed SAN takes effect.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';
import { addressFamily, parsePrefix } from '../../net/address.js';

export type CertUsage = 'server' | 'client' | 'ipsec';

export interface CertRequest {
  /** file name stem, unique per CA */
  name: string;
  commonName: string;
  usage: CertUsage;
  /** DNS names and IP addresses for subjectAltName */
  altNames?: string[];
  days?: number;
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
export function ensureCa(stateDir: string, ca: string, commonName = `Patronus ${ca} CA`): Ca {
  const dir = pkiDir(stateDir, ca);
  const certFile = path.join(dir, 'ca.crt');
  const keyFile = path.join(dir, 'ca.key');
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    privateDir(dir);
    const key = newKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(key.publicPem);
    cert.serialNumber = serial();
    validity(cert, 3650);
    const subject = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'Patronus' }];
    cert.setSubject(subject);
    cert.setIssuer(subject);
    cert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    signWith(cert, key.privatePem);
    writeSecret(keyFile, key.privatePem);
    writeFileAtomic(certFile, forge.pki.certificateToPem(cert), 0o644);
  }
  return { name: ca, cert: readFileSync(certFile, 'utf8'), certFile, keyFile };
}

/** A certificate signed by `ca` for `req`, issued (or re-issued) as needed. */
export function ensureCert(stateDir: string, ca: string, req: CertRequest): IssuedCert {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(req.name)) throw new Error(`certificate name "${req.name}" is not a safe file name`);
  const authority = ensureCa(stateDir, ca);
  const dir = pkiDir(stateDir, ca);
  const certFile = path.join(dir, `${req.name}.crt`);
  const keyFile = path.join(dir, `${req.name}.key`);
  if (!existsSync(keyFile) || !existsSync(certFile) || !certMatches(readFileSync(certFile, 'utf8'), authority, req)) {
    const key = existsSync(keyFile) ? readKeyPair(keyFile) : newKey();
    const caCert = forge.pki.certificateFromPem(authority.cert);
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(key.publicPem);
    cert.serialNumber = serial();
    validity(cert, req.days ?? 825);
    cert.setSubject([{ name: 'commonName', value: req.commonName }]);
    cert.setIssuer(caCert.subject.attributes);
    const eku =
      req.usage === 'server' ? { serverAuth: true } : req.usage === 'client' ? { clientAuth: true } : { serverAuth: true, clientAuth: true, '1.3.6.1.5.5.8.2.2': true };
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', ...eku },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
      ...(req.altNames?.length ? [{ name: 'subjectAltName', altNames: req.altNames.map(altName) }] : []),
    ]);
    signWith(cert, readFileSync(authority.keyFile, 'utf8'));
    if (!existsSync(keyFile)) writeSecret(keyFile, key.privatePem);
    writeFileAtomic(certFile, forge.pki.certificateToPem(cert), 0o644);
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

// ---------------------------------------------------------------------------

/**
 * Signs with node's crypto (forge's pure-JS RSA takes ~300 ms a signature):
 * forge lays out the to-be-signed part, node signs it.
 */
function signWith(cert: forge.pki.Certificate, caKeyPem: string): void {
  const oid = forge.pki.oids['sha256WithRSAEncryption']!;
  cert.siginfo.algorithmOid = oid;
  cert.signatureOid = oid;
  const tbs = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  (cert as unknown as { tbsCertificate: forge.asn1.Asn1 }).tbsCertificate = tbs;
  const der = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  cert.signature = sign('sha256', der, createPrivateKey(caKeyPem)).toString('binary');
}

/** Test hook: a key every new certificate in this process reuses (scratch checks only). */
let sharedKey: { privatePem: string; publicPem: string } | undefined;

/**
 * Runs fn with one key pair shared by every certificate it makes: the
 * checker's scratch PKI proves file layout and syntax, not key strength,
 * and RSA key generation is the slow part (~250 ms a key).
 */
export function withSharedKey<T>(fn: () => T): T {
  sharedKey = newKeyReal();
  try {
    return fn();
  } finally {
    sharedKey = undefined;
  }
}

function newKey(): { privatePem: string; publicPem: string } {
  return sharedKey ?? newKeyReal();
}

function newKeyReal(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  // forge reads PKCS#1 private keys; openvpn and strongSwan read both
  return { privatePem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

function readKeyPair(file: string): { privatePem: string; publicPem: string } {
  const k = createPrivateKey(readFileSync(file, 'utf8'));
  return { privatePem: k.export({ type: 'pkcs1', format: 'pem' }).toString(), publicPem: createPublicKey(k).export({ type: 'spki', format: 'pem' }).toString() };
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
  const f = forge.pki.certificateFromPem(c.toString());
  const eku = f.getExtension('extKeyUsage') as { serverAuth?: boolean; clientAuth?: boolean } | null;
  if (eku?.serverAuth && eku.clientAuth) return 'ipsec';
  if (eku?.serverAuth) return 'server';
  if (eku?.clientAuth) return 'client';
  return undefined;
}

function normalizeAlt(a: string): string {
  const m = /^IP Address:(.*)$/.exec(a);
  if (!m) return a;
  // node prints IPv6 SANs expanded; compare canonical forms
  return `IP:${parsePrefix(m[1]!).address}`;
}

function altName(a: string): { type: number; value?: string; ip?: string } {
  return addressFamily(a) ? { type: 7, ip: a } : { type: 2, value: a };
}

function validity(cert: forge.pki.Certificate, days: number): void {
  const now = Date.now();
  // a little back-dating tolerates clocks that differ between the two ends
  cert.validity.notBefore = new Date(now - 5 * 60_000);
  cert.validity.notAfter = new Date(now + days * 86_400_000);
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
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
