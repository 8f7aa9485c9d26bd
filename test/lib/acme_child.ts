/**
 * Runs the ACME scenario of test/integration/acme.test.ts inside the
 * firewall's namespace (the ACME server is only reachable there): the
 * engine with the certificates and unbound subsystems (DNS over TLS with
 * the ACME certificate), an HTTPS API server that follows certificateEvents, and one JSON line per step on stdout.
 *   nsenter --net=... node acme_child.js STATE_DIR SCENARIO_JSON
 */
import { connect } from 'node:tls';
import { join } from 'node:path';
import { Engine, type ApplyReport } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { certificatesSubsystem } from '../../src/certificates/subsystem.js';
import { unboundSubsystem } from '../../src/services/unbound/subsystem.js';
import { certificateFiles, readCertificate, revokeCertificate } from '../../src/certificates/acme.js';
import { followCertificate } from '../../src/certificates/tls.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { readFileSync } from 'node:fs';
import type { AcmeConfig } from '../../src/certificates/schema.js';
import { domains } from '../../src/domains.js';

interface Scenario {
  /** documents: issue, renew (renewDaysBefore beyond the certificate's life), fail (challenge port the CA does not use) */
  issue: unknown;
  renew: unknown;
  fail: unknown;
  acme: AcmeConfig;
}

const [stateDir, scenarioJson] = process.argv.slice(2) as [string, string];
const scenario = JSON.parse(scenarioJson) as Scenario;
const host = new Host({ stateDir });
const store = Store.open(join(stateDir, 'patronus.db'));
const engine = new Engine({ domains, host, store, subsystems: [certificatesSubsystem, unboundSubsystem] });
const say = (step: string, o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ step, ...o })}\n`);

/** the serial of the certificate the API server presents now */
async function servedSerial(port: number, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, servername: 'fw.test', rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().serialNumber.toLowerCase());
      s.end();
    });
    s.on('error', reject);
  });
}

try {
  const issued = await engine.apply({ document: scenario.issue }, { author: 'acme-test', message: 'issue' });
  say('issue', { state: issued.state, error: issued.error, cert: readCertificate(stateDir, 'console'), keyMode: (readFileSync(certificateFiles(stateDir, 'console').key) && 'ok') });
  say('drift-fresh', { drift: await certificatesSubsystem.drift!(await desiredOf(scenario.issue), host), plan: await certificatesSubsystem.plan(await desiredOf(scenario.issue), host) });

  const f = certificateFiles(stateDir, 'console');
  const app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }), https: { cert: readFileSync(f.fullchain), key: readFileSync(f.key) } });
  followCertificate(app, stateDir, 'console');
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  say('served', { serial: await servedSerial(port), dot: await servedSerial(853, '10.77.0.2') });

  const renewDesired = await desiredOf(scenario.renew);
  const due = await certificatesSubsystem.drift!(renewDesired, host);
  // the drift loop's repair is apply() of the drifted subsystem again: do what it does
  await certificatesSubsystem.apply(renewDesired, host);
  const unboundDesired = (await compiled(scenario.renew)).of(unboundSubsystem);
  const unboundDrift = await unboundSubsystem.drift!(unboundDesired, host);
  await unboundSubsystem.apply(unboundDesired, host);
  say('renew', {
    due,
    cert: readCertificate(stateDir, 'console'),
    served: await servedSerial(port),
    driftAfter: await certificatesSubsystem.drift!(await desiredOf(scenario.issue), host),
    unboundDrift,
    dot: await servedSerial(853, '10.77.0.2'),
    unboundDriftAfter: await unboundSubsystem.drift!(unboundDesired, host),
  });

  const before = readCertificate(stateDir, 'console');
  const failed = await engine.apply({ document: scenario.fail }, { author: 'acme-test', message: 'failing challenge' }).catch((e: { report?: ApplyReport }) => {
    if (!e.report) throw e;
    return e.report;
  });
  say('fail', { state: failed.state, error: failed.error, failedStep: failed.failedStep, before, after: readCertificate(stateDir, 'console'), served: await servedSerial(port) });

  const revoked = await revokeCertificate(host, scenario.acme, 'console');
  say('revoke', { revoked, drift: await certificatesSubsystem.drift!(await desiredOf(scenario.issue), host) });
  await app.close();
  await unboundSubsystem.teardown!(host);
} catch (e) {
  say('error', { error: (e as Error).stack });
}
engine.close();
store.close();
// acme-client's HTTP agent keeps connections alive: do not wait for them
process.exit(0);

async function compiled(document: unknown) {
  const c = engine.compileDocument(document);
  if (!c.compiled) throw new Error(`scenario document: ${JSON.stringify(c.issues)}`);
  return c.compiled.desired;
}

async function desiredOf(document: unknown) {
  return (await compiled(document)).of(certificatesSubsystem);
}
