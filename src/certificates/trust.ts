/**
 * The root a certificate in service chains up to, for peers that must be
 * told what to trust (an OpenVPN client profile has no "system trust
 * store" and OpenSSL there wants a chain that ends in a root): the top of
 * the chain the ACME CA sent when it is self-signed, else the root that
 * issued it, found in `rootCaFile` (private CAs, pebble) or the system's
 * trust store (public CAs).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { certificateFiles, loadAcme } from './acme.js';

export const SYSTEM_TRUST_STORE = '/etc/ssl/certs/ca-certificates.crt';

/** The leaf of certificate `name` and the PEM of its root; throws naming the certificate when either is missing. */
export function certificateRoot(stateDir: string, name: string, rootCaFile?: string): { leaf: X509Certificate; rootPem: string } {
  let chain: string[];
  try {
    chain = loadAcme().crypto.splitPemChain(readFileSync(certificateFiles(stateDir, name).fullchain, 'utf8'));
  } catch (e) {
    throw new Error(`certificate ${name} is not in service yet (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): apply the configuration that issues it first`);
  }
  if (!chain.length) throw new Error(`certificate ${name}: its file holds no certificate`);
  const leaf = new X509Certificate(chain[0]!);
  const top = new X509Certificate(chain.at(-1)!);
  if (top.checkIssued(top) && top.verify(top.publicKey)) return { leaf, rootPem: top.toString() };
  const candidates: { from: string; pem: string }[] = [];
  for (const file of [rootCaFile, SYSTEM_TRUST_STORE]) {
    if (!file) continue;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if (file === rootCaFile) throw new Error(`certificates.acme.rootCaFile: cannot read ${file}: ${(e as Error).message}`);
      continue;
    }
    for (const pem of loadAcme().crypto.splitPemChain(text)) candidates.push({ from: file, pem });
  }
  for (const c of candidates) {
    let root: X509Certificate;
    try {
      root = new X509Certificate(c.pem);
    } catch {
      continue;
    }
    if (top.checkIssued(root) && top.verify(root.publicKey)) return { leaf, rootPem: root.toString() };
  }
  throw new Error(
    `certificate ${name}: the root CA that issued "${top.issuer.replace(/\n/g, ', ')}" is in neither ${rootCaFile ? `certificates.acme.rootCaFile (${rootCaFile}) nor ` : ''}the system's trust store (${SYSTEM_TRUST_STORE}): set certificates.acme.rootCaFile to a PEM file with it`,
  );
}

/** The subject's common name, or undefined when the certificate has none (names only in subjectAltName). */
export function commonName(cert: X509Certificate): string | undefined {
  return /^CN=(.+)$/m.exec(cert.subject)?.[1];
}
