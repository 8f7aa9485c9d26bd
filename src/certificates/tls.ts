/**
 * TLS servers in the control plane's own process (the REST API/console)
 * follow a certificate: when a renewal puts a new one in service, the
 * listening server switches to it for new connections (no restart, no
 * dropped connections).
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:https';
import type { FastifyInstance } from 'fastify';
import { certificateEvents, certificateFiles, type CertificateState } from './acme.js';

/** The key and full chain in service for `name`, for a server's https options. */
export function certificateTls(stateDir: string, name: string): { cert: Buffer; key: Buffer } {
  const f = certificateFiles(stateDir, name);
  try {
    return { cert: readFileSync(f.fullchain), key: readFileSync(f.key) };
  } catch (e) {
    throw new Error(`api.tls.certificate: certificate "${name}" is not in service yet (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): apply a configuration that issues it (certificates.issue)`);
  }
}

/** Switches `app`'s HTTPS server to each new certificate `name` put in service. Returns the unsubscribe. */
export function followCertificate(app: FastifyInstance, stateDir: string, name: string, log: (m: string) => void = () => {}): () => void {
  const onInstalled = (installed: string, dir: string, state: CertificateState) => {
    if (installed !== name || dir !== stateDir) return;
    (app.server as Server).setSecureContext(certificateTls(stateDir, name));
    log(`patronus: API now serves certificate ${name} serial ${state.serial} (until ${state.notAfter})`);
  };
  certificateEvents.on('installed', onInstalled);
  app.addHook('onClose', async () => {
    certificateEvents.off('installed', onInstalled);
  });
  return () => certificateEvents.off('installed', onInstalled);
}
