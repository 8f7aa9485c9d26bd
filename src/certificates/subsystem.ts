/**
 * The `certificates:` section as a Subsystem. Its steps order what is
 * missing, changed, revoked or due for renewal; drift() reports a
 * certificate due for renewal, so the drift loop renews it before it
 * expires (with its own backoff after a failed order, at most one attempt
 * an hour growing to a day: public CAs rate-limit failed validations).
 * What serves a certificate reloads on certificateEvents 'installed'.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { defineSubsystem, step, type DriftFinding, type Subsystem } from '../apply/subsystem.js';
import type { Host } from '../system/host.js';
import { issueCertificate, issueReason, keyTypeOf, readCertificate, type CertificateState } from './acme.js';
import type { AcmeConfig, CertificateConfig } from './schema.js';
import { splitListen } from './listen.js';

export interface CertificatesDesired {
  acme?: AcmeConfig;
  certs: CertificateConfig[];
}

/** failed orders by state dir and name: when the next attempt may run */
const failures = new Map<string, { attempts: number; nextTry: number; error: string }>();
const HOUR = 3_600_000;

export const certificatesSubsystem: Subsystem<CertificatesDesired> = defineSubsystem<CertificatesDesired>({
  name: 'certificates',

  compile(ctx) {
    const c = ctx.config.certificates;
    const names = new Set(c.issue.map((i) => i.name));
    const issues = [];
    // consumers name certificates this section issues
    const tls = ctx.config.api.tls;
    if (tls && 'certificate' in tls && !names.has(tls.certificate)) issues.push({ path: ['api', 'tls', 'certificate'], message: `no certificate "${tls.certificate}" in certificates.issue` });
    const dot = ctx.config.dns.listen.tls;
    if (ctx.config.dns.enabled && dot && !names.has(dot.certificate)) issues.push({ path: ['dns', 'listen', 'tls', 'certificate'], message: `no certificate "${dot.certificate}" in certificates.issue` });
    ctx.config.openvpn.servers.forEach((v, n) => {
      if (v.enabled && v.certificate && !names.has(v.certificate)) issues.push({ path: ['openvpn', 'servers', n, 'certificate'], message: `no certificate "${v.certificate}" in certificates.issue` });
    });
    ctx.config.ipsec.connections.forEach((v, n) => {
      if (!v.enabled || !v.certificate) return;
      const cert = c.issue.find((i) => i.name === v.certificate);
      if (!cert) issues.push({ path: ['ipsec', 'connections', n, 'certificate'], message: `no certificate "${v.certificate}" in certificates.issue` });
      // strongSwan accepts an identity only if the certificate carries it
      else if (v.localId && !cert.domains.includes(v.localId)) issues.push({ path: ['ipsec', 'connections', n, 'localId'], message: `"${v.localId}" is not a domain of certificate ${cert.name} (${cert.domains.join(', ')}): the peer could not match it` });
    });
    return { desired: { ...(c.acme ? { acme: c.acme } : {}), certs: c.issue }, issues };
  },

  /** One step per certificate that is missing, changed, revoked or due: an ACME order each. */
  async steps(desired, host) {
    return due(desired, host).map(({ spec, reason }) =>
      step(
        {
          action: reason === 'missing' ? 'add' : 'change',
          object: `certificate ${spec.name}`,
          detail: `${reason}: order ${spec.domains.join(', ')} from ${desired.acme!.directory}`,
        },
        async () => {
          const key = `${host.stateDir}\0${spec.name}`;
          try {
            await issueCertificate(host, desired.acme!, spec);
            failures.delete(key);
          } catch (e) {
            const attempts = (failures.get(key)?.attempts ?? 0) + 1;
            failures.set(key, { attempts, nextTry: Date.now() + Math.min(24 * HOUR, HOUR * 2 ** (attempts - 1)), error: (e as Error).message });
            throw e;
          }
        },
      ),
    );
  },

  openings(config) {
    const acme = config.certificates.acme;
    if (!acme || !config.certificates.issue.length) return [];
    return [{ service: 'acme-http-01', proto: 'tcp', port: splitListen(acme.http01Listen).port, interfaces: [] }];
  },

  async drift(desired, host) {
    const out: DriftFinding[] = [];
    for (const { spec, reason } of due(desired, host)) {
      const f = failures.get(`${host.stateDir}\0${spec.name}`);
      const waiting = f && Date.now() < f.nextTry;
      out.push({
        object: `certificate ${spec.name}`,
        reason: waiting ? `${reason}; the last order failed (${f.error}); next attempt at ${new Date(f.nextTry).toISOString()}` : reason,
        ...(waiting ? { repairable: false } : {}),
      });
    }
    return out;
  },

  async status(host) {
    return { certificates: listCertificates(host) };
  },

  configured(desired) {
    return desired.certs.length > 0;
  },
});

/** Every certificate with one in service under this host's state dir. */
export function listCertificates(host: Host): CertificateState[] {
  let names: string[];
  try {
    names = readdirSync(path.join(host.stateDir, 'certs')).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
  return names.map((n) => readCertificate(host.stateDir, n)).filter((s): s is CertificateState => !!s);
}

function due(desired: CertificatesDesired, host: Host): { spec: CertificateConfig; reason: string }[] {
  if (!desired.acme) return [];
  const out = [];
  for (const spec of desired.certs) {
    const reason = issueReason(spec, readCertificate(host.stateDir, spec.name), desired.acme.renewDaysBefore, keyTypeOf(host.stateDir, spec.name));
    if (reason) out.push({ spec, reason });
  }
  return out;
}
