/**
 * Certificates from an ACME CA (RFC 8555) through acme-client, with http-01
 * challenges answered by a short-lived responder in the managed host's
 * namespace (./http01.ts).
 *
 * Files: <stateDir>/certs/<name>/<serial>/{key.pem,cert.pem,chain.pem,fullchain.pem}
 * and <stateDir>/certs/<name>/current, a symlink to the serial in use,
 * swapped atomically once a new certificate is complete: consumers read
 * .../current/* and never see a key from one issuance with a certificate
 * from another. A failed order leaves `current` as it was (the old
 * certificate stays in service). The previous serial is kept for a
 * rollback, older ones are removed.
 */
import { EventEmitter } from 'node:events';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { Agent } from 'node:https';
import { rootCertificates } from 'node:tls';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type * as Acme from 'acme-client';
import type { Host } from '../system/host.js';
import { newKeyPem } from '../services/pki/pki.js';
import type { AcmeConfig, CertificateConfig } from './schema.js';

// acme-client (with axios and its own @peculiar/x509) is loaded at its first use, not with this
// module: every server imports this file through the services, and the library costs ~16 MB of
// resident memory to a process that has no ACME certificate (docs/bench-control.md). It is a
// CommonJS package, so require() gives the same module `import` gave.
const require = createRequire(import.meta.url);
let acmeModule: typeof Acme | undefined;
export function loadAcme(): typeof Acme {
  return (acmeModule ??= require('acme-client') as typeof Acme);
}

export interface CertificateFiles {
  dir: string;
  /** the directory of the certificate in service (a symlink) */
  current: string;
  key: string;
  cert: string;
  chain: string;
  fullchain: string;
}

export interface CertificateState {
  name: string;
  domains: string[];
  serial: string;
  notBefore: string;
  notAfter: string;
  issuer: string;
  fingerprint256: string;
  revoked: boolean;
}

/** Why a certificate must be (re-)issued, or undefined when the one in service is fine. */
export type IssueReason = 'missing' | 'domains changed' | 'key type changed' | 'renewal due' | 'revoked';

/** 'installed' (name, stateDir, state): a new certificate is in service; what serves it reloads. */
export const certificateEvents = new EventEmitter();

export function certificateFiles(stateDir: string, name: string): CertificateFiles {
  const dir = path.join(stateDir, 'certs', name);
  const current = path.join(dir, 'current');
  return { dir, current, key: path.join(current, 'key.pem'), cert: path.join(current, 'cert.pem'), chain: path.join(current, 'chain.pem'), fullchain: path.join(current, 'fullchain.pem') };
}

/** The certificate in service for `name`, or undefined when there is none yet. */
export function readCertificate(stateDir: string, name: string): CertificateState | undefined {
  const f = certificateFiles(stateDir, name);
  let pem: string;
  try {
    pem = readFileSync(f.cert, 'utf8');
  } catch {
    return undefined;
  }
  const c = new X509Certificate(pem);
  return {
    name,
    domains: (c.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
    serial: c.serialNumber.toLowerCase(),
    notBefore: new Date(c.validFrom).toISOString(),
    notAfter: new Date(c.validTo).toISOString(),
    issuer: c.issuer.replace(/\n/g, ', '),
    fingerprint256: c.fingerprint256,
    revoked: existsSync(path.join(f.current, 'revoked')),
  };
}

export function issueReason(spec: CertificateConfig, state: CertificateState | undefined, renewDaysBefore: number, keyType?: string, now = Date.now()): IssueReason | undefined {
  if (!state) return 'missing';
  if (state.revoked) return 'revoked';
  if ([...spec.domains].sort().join(',') !== [...state.domains].sort().join(',')) return 'domains changed';
  if (keyType && keyType !== spec.keyType) return 'key type changed';
  if (Date.parse(state.notAfter) - now <= renewDaysBefore * 86_400_000) return 'renewal due';
  return undefined;
}

/** The key type of the certificate in service ('ecdsa-p256' | 'rsa-2048' | other). */
export function keyTypeOf(stateDir: string, name: string): string | undefined {
  try {
    const k = new X509Certificate(readFileSync(certificateFiles(stateDir, name).cert)).publicKey;
    return k.asymmetricKeyType === 'rsa' ? `rsa-${k.asymmetricKeyDetails?.modulusLength}` : k.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? 'ecdsa-p256' : k.asymmetricKeyType;
  } catch {
    return undefined;
  }
}

/**
 * Orders a certificate for `spec` and puts it in service. Throws an error
 * naming the certificate, the domain and the CA's reason when the order
 * fails; the certificate in service (if any) is untouched then.
 */
export async function issueCertificate(host: Host, account: AcmeConfig, spec: CertificateConfig): Promise<CertificateState> {
  const client = await accountClient(host.stateDir, account);
  const fail = (what: string, e: unknown): never => {
    throw new Error(`certificate ${spec.name}: ${what}: ${errorText(e)} (the certificate in service, if any, is kept)`);
  };
  const order = await client.createOrder({ identifiers: spec.domains.map((d) => ({ type: 'dns', value: d })) }).catch((e) => fail(`ordering from ${account.directory}`, e));
  const authzs = await client.getAuthorizations(order).catch((e) => fail('reading the authorizations', e));
  const pending = authzs.filter((a) => a.status !== 'valid');
  if (pending.length) {
    const webroot = mkdtempSync(path.join(host.stateDir, 'acme-http01-'));
    const responder = await startResponder(host, account.http01Listen, webroot).catch((e) => fail('starting the http-01 responder', e));
    try {
      const challenges = [];
      for (const authz of pending) {
        const ch = authz.challenges.find((c) => c.type === 'http-01');
        if (!ch) fail(`domain ${authz.identifier.value}`, new Error(`the CA offers no http-01 challenge (offers ${authz.challenges.map((c) => c.type).join(', ')})`));
        writeFileSync(path.join(webroot, ch!.token), await client.getChallengeKeyAuthorization(ch!));
        challenges.push({ authz, ch: ch! });
      }
      for (const { authz, ch } of challenges) {
        await client.completeChallenge(ch).catch((e) => fail(`domain ${authz.identifier.value}: starting the http-01 challenge`, e));
      }
      for (const { authz, ch } of challenges) {
        await client.waitForValidStatus(ch).catch((e) => fail(`domain ${authz.identifier.value}: the http-01 challenge failed`, e));
      }
    } finally {
      await responder.stop();
      rmSync(webroot, { recursive: true, force: true });
    }
  }
  const keyPem = newKeyPem(spec.keyType);
  const [, csr] = await loadAcme().crypto.createCsr({ commonName: spec.domains[0]!, altNames: spec.domains }, keyPem);
  const finalized = await client.finalizeOrder(order, csr).catch((e) => fail('finalizing the order', e));
  const fullchain = await client.getCertificate(finalized).catch((e) => fail('downloading the certificate', e));
  return install(host.stateDir, spec.name, keyPem, fullchain);
}

/** Revokes the certificate in service (RFC 8555 7.6) and marks it, so the next apply or drift check orders a new one. */
export async function revokeCertificate(host: Host, account: AcmeConfig, name: string): Promise<CertificateState> {
  const f = certificateFiles(host.stateDir, name);
  const state = readCertificate(host.stateDir, name);
  if (!state) throw new Error(`certificate ${name}: none in service to revoke`);
  const client = await accountClient(host.stateDir, account);
  try {
    await client.revokeCertificate(readFileSync(f.cert, 'utf8'));
  } catch (e) {
    throw new Error(`certificate ${name}: revoking serial ${state.serial} at ${account.directory}: ${errorText(e)}`);
  }
  writeFileSync(path.join(f.current, 'revoked'), `${new Date().toISOString()}\n`);
  return { ...state, revoked: true };
}

// ---------------------------------------------------------------------------

function install(stateDir: string, name: string, keyPem: string, fullchain: string): CertificateState {
  const f = certificateFiles(stateDir, name);
  const [leaf, ...rest] = loadAcme().crypto.splitPemChain(fullchain);
  if (!leaf) throw new Error(`certificate ${name}: the CA sent no certificate`);
  const serial = new X509Certificate(leaf).serialNumber.toLowerCase();
  const target = path.join(f.dir, serial);
  mkdirSync(target, { recursive: true, mode: 0o700 });
  chmodSync(f.dir, 0o700);
  writeFileSync(path.join(target, 'key.pem'), keyPem, { mode: 0o600 });
  writeFileSync(path.join(target, 'cert.pem'), `${leaf.trim()}\n`, { mode: 0o644 });
  writeFileSync(path.join(target, 'chain.pem'), rest.map((c) => `${c.trim()}\n`).join(''), { mode: 0o644 });
  writeFileSync(path.join(target, 'fullchain.pem'), [leaf, ...rest].map((c) => `${c.trim()}\n`).join(''), { mode: 0o644 });
  const previous = currentSerial(f);
  const tmp = path.join(f.dir, `.current-${process.pid}`);
  rmSync(tmp, { force: true });
  symlinkSync(serial, tmp);
  renameSync(tmp, f.current);
  // keep the one before (a rollback may want it), drop older ones
  for (const e of readdirSync(f.dir)) if (e !== serial && e !== previous && e !== 'current') rmSync(path.join(f.dir, e), { recursive: true, force: true });
  const state = readCertificate(stateDir, name)!;
  certificateEvents.emit('installed', name, stateDir, state);
  return state;
}

function currentSerial(f: CertificateFiles): string | undefined {
  try {
    return readlinkSync(f.current);
  } catch {
    return undefined;
  }
}

/** The ACME account for this directory (key made and account registered on first use). */
async function accountClient(stateDir: string, account: AcmeConfig): Promise<Acme.Client> {
  const dir = path.join(stateDir, 'certs', '.acme');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const id = createHash('sha256').update(account.directory).digest('hex').slice(0, 16);
  const keyFile = path.join(dir, `account-${id}.key`);
  const urlFile = path.join(dir, `account-${id}.url`);
  if (!existsSync(keyFile)) writeFileSync(keyFile, newKeyPem('ecdsa-p256'), { mode: 0o600 });
  // the CA of a private or test ACME server, beside the public ones (one account per process: acme-client's axios is shared)
  const extraCa = account.directoryCaFile ? readFileSync(account.directoryCaFile, 'utf8') : undefined;
  const acme = loadAcme();
  acme.axios.defaults.httpsAgent = extraCa ? new Agent({ ca: [...rootCertificates, extraCa] }) : undefined;
  const accountUrl = existsSync(urlFile) ? readFileSync(urlFile, 'utf8').trim() : undefined;
  const client = new acme.Client({ directoryUrl: account.directory, accountKey: readFileSync(keyFile), backoffAttempts: 12, backoffMin: 250, backoffMax: 5000, ...(accountUrl ? { accountUrl } : {}) });
  if (!accountUrl) {
    try {
      await client.createAccount({ termsOfServiceAgreed: true, ...(account.email ? { contact: [`mailto:${account.email}`] } : {}) });
    } catch (e) {
      throw new Error(`ACME account at ${account.directory}: ${errorText(e)}`);
    }
    writeFileSync(urlFile, `${client.getAccountUrl()}\n`, { mode: 0o600 });
  }
  return client;
}

const RESPONDER = fileURLToPath(new URL('./http01.js', import.meta.url));

async function startResponder(host: Host, listen: string, webroot: string): Promise<{ stop(): Promise<void> }> {
  const child = host.spawn(process.execPath, [RESPONDER, listen, webroot]);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`http-01 responder exited (${code}) in ${host.where}: ${stderr.trim() || 'no output'}`)));
  });
  return {
    async stop() {
      child.kill('SIGTERM');
      await child.catch(() => undefined);
    },
  };
}

function errorText(e: unknown): string {
  const err = e as { message?: string; code?: string; response?: { data?: { detail?: string } } };
  return err.response?.data?.detail ?? err.message ?? String(e);
}
