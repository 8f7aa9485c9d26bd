/**
 * `patronus serve`: the foreground server. Opens the store, reconciles the
 * system with the last committed revision (or applies the embedded default
 * configuration on an empty store), then serves the REST API and /metrics
 * until SIGINT/SIGTERM, when it closes cleanly (the data plane stays as it
 * is: kernel state outlives the control plane).
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { domains } from '../domains.js';
import { apiSchema } from './schema.js';
import { Engine, type ProgressEvent } from '../apply/engine.js';
import { readRegularFile } from '../config/input.js';
import { keepSpareParseWorker } from '../config/parse-worker.js';
import { Store, type Retention } from '../store/store.js';
import { Host } from '../system/host.js';
import { createMetrics } from '../metrics/metrics.js';
import { ensureLab, LAB_NS } from '../lab/lab.js';
import { buildServer } from './server.js';
import { defaultStateDir } from './state-dir.js';
import { HaSync, registerHaSyncMetrics } from '../ha/sync.js';
import { HaEtcdSync } from '../ha/etcd-sync.js';
import { DriftMonitor, type DriftReport } from '../drift/monitor.js';
import type { FleetServeOptions } from '../fleet/serve.js';
import { certificateTls, followCertificate } from '../certificates/tls.js';
import { EventHub } from '../events/hub.js';
import { XdpEventSource } from '../events/xdp.js';
import { NflogSource } from '../events/nflog.js';
import { fastpathPinDir, linkNames } from '../fastpath/subsystem.js';
import { releaseFreedMemory } from '../bpf/index.js';
import { serviceManager } from '../system/service-manager.js';
import { enableSpawner } from '../system/spawner.js';
import { traceLoopGaps } from '../system/trace.js';

/** The embedded default configuration (a file in the repository). */
export const DEFAULT_CONFIG_PATH = fileURLToPath(new URL('../../../config/default.yaml', import.meta.url));
export { DEFAULT_STATE_DIR, LAB_STATE_DIR, defaultStateDir } from './state-dir.js';

/** How long one start-up reconciliation step may take before systemd's start timeout applies again. */
const START_STEP_MS = 120_000;

export interface ServeOptions {
  listen?: string;
  lab: boolean;
  stateDir?: string;
  /** seed for an empty store (default: the embedded default configuration) */
  config?: string;
  tlsCert?: string;
  tlsKey?: string;
  netns?: string;
  /** which revisions to keep (default: $PATRONUS_KEEP_REVISIONS / $PATRONUS_KEEP_DAYS, else the newest 500) */
  retention?: Retention;
  /** join a fleet (src/fleet): register in etcd and follow the node's desired configuration */
  fleet?: FleetServeOptions;
}

export async function serve(opts: ServeOptions): Promise<void> {
  // first: NOTIFY_SOCKET leaves the environment before any daemon is started (they inherit it)
  const manager = serviceManager(process.env, (e) => console.error(`patronus: ${e.message}`));
  // every command the server runs (ip, nft, tc, daemons' tools) is started by a small helper process: a spawn's
  // fork and wait for the child's exec no longer hold the event loop (/healthz, signals; src/system/spawner.ts)
  enableSpawner();
  // profiling only (PATRONUS_TRACE): the loop's stalls among the phase marks
  traceLoopGaps();
  const stateDir = opts.stateDir ?? defaultStateDir(opts.lab);
  if (opts.lab) await ensureLab();
  const netns = opts.netns ?? (opts.lab ? LAB_NS : undefined);
  const host = new Host({ stateDir, ...(netns ? { netns } : {}) });
  const store = Store.open(join(stateDir, 'patronus.db'), opts.retention ? { retention: opts.retention } : {});
  const engine = new Engine({ host, store, domains });
  engine.on('error', (e) => console.error(`patronus: ${e.message}`));

  const tokenFile = join(stateDir, 'admin.token');
  if (!store.listTokens().length) {
    // a full disk must not stop the server (it keeps filtering, /healthz degraded): report and go on without a token
    try {
      const token = store.addToken('admin');
      writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
      chmodSync(tokenFile, 0o600);
      console.log(`patronus: created API token "admin" in ${tokenFile}`);
    } catch (e) {
      console.error(`patronus: cannot create the admin API token in ${tokenFile}: ${(e as Error).message}`);
    }
  }

  const seedPath = opts.config ?? DEFAULT_CONFIG_PATH;
  console.log(`patronus: state in ${stateDir}; reconciling ${host.where} with the last committed revision`);
  manager.status('reconciling with the last committed revision');
  // systemd: each step that begins buys the start another START_STEP_MS (a 1M-prefix fast path on a loaded
  // machine may take longer than TimeoutStartSec as a whole, but no single step should)
  const startProgress = (e: ProgressEvent) => {
    if (e.phase === 'apply' || e.phase === 'rollback') manager.extendTimeout(START_STEP_MS, `reconciling: ${e.subsystem} (${e.index + 1}/${e.total})`);
  };
  engine.on('progress', startProgress);
  const out = await engine.reconcile(existsSync(seedPath) ? { text: readRegularFile(seedPath) } : undefined).finally(() => engine.off('progress', startProgress));
  if (out.error) console.error(`patronus: reconciliation failed (serving anyway, /healthz says degraded): ${out.error}`);
  else if (out.report) console.log(`patronus: applied ${seedPath} as revision ${out.revision}`);
  else if (out.revision) console.log(`patronus: running revision ${out.revision}`);

  // large documents are parsed and compiled in workers: once one came, keep one of each started ahead
  engine.keepSpareWorker();
  keepSpareParseWorker();

  const storeHealth = store.health();
  if (!storeHealth.ok) console.error(`patronus: store degraded (serving anyway, /healthz says degraded): ${storeHealth.error}`);

  // the api section of the committed revision; flags win
  const api = engine.committedConfig()?.api ?? apiSchema.parse(undefined);
  const fileTls = api.tls && 'cert' in api.tls ? api.tls : undefined;
  const tlsCert = opts.tlsCert ?? fileTls?.cert;
  const tlsKey = opts.tlsKey ?? fileTls?.key;
  if (!!tlsCert !== !!tlsKey) throw new Error('TLS needs both a certificate and a key');
  // an ACME certificate by name (flags win): served as issued, followed through renewals
  const acmeCert = !tlsCert && api.tls && 'certificate' in api.tls ? api.tls.certificate : undefined;
  const https = tlsCert && tlsKey ? { cert: readFileSync(tlsCert), key: readFileSync(tlsKey) } : acmeCert ? certificateTls(stateDir, acmeCert) : undefined;
  // HA primary: push every committed change to the secondary (does nothing unless ha.sync is set with role: primary)
  const haSync = new HaSync(store).attach(engine);
  haSync.on('report', (r) => {
    if (r.error || !r.inSync) console.error(`patronus: ha sync with ${r.peer.url}: ${r.error ?? `drift in ${r.differing.join(', ')}`}`);
    else if (r.pushed) console.log(`patronus: ha sync: pushed revision ${r.primary.revision} to ${r.peer.url} (peer revision ${r.pushed.revision})`);
  });
  haSync.on('error', (e) => console.error(`patronus: ha sync: ${e.message}`));
  // HA sync through etcd (ha.sync.transport: etcd): the primary publishes, the secondary watches and applies
  const haEtcdSync = new HaEtcdSync(store);
  let lastHaEtcd = '';
  haEtcdSync.on('report', (r) => {
    const line = r.error ? `patronus: ${r.error}` : r.applied ? `patronus: ha sync: applied primary revision ${r.revision} (sha256:${r.hash}) as revision ${r.applied.revision}` : `patronus: ha sync through etcd: ${r.role} in sync at sha256:${r.hash}`;
    if (line !== lastHaEtcd) (r.error ? console.error : console.log)(line);
    lastHaEtcd = line;
  });
  haEtcdSync.on('error', (e) => console.error(`patronus: ha sync: ${e.message}`));
  haEtcdSync.attach(engine);
  // the drift loop: compares the system with the running revision, repairs per drift.reconcile
  const drift = new DriftMonitor(engine);
  let lastDrift = '';
  drift.on('report', (r: DriftReport) => {
    for (const x of r.repairs) console.error(`patronus: drift: repaired ${x.subsystem} (${x.found.join('; ')})${x.ok ? '' : `: FAILED, attempt ${x.attempt}: ${x.error}`}`);
    const now = r.items.map((i) => `${i.subsystem} ${i.object}: ${i.reason}`).join('; ');
    if (now !== lastDrift) console.error(now ? `patronus: drift from revision ${r.revision}: ${now}` : `patronus: no drift from revision ${r.revision}`);
    lastDrift = now;
  });
  drift.on('error', (e) => console.error(`patronus: drift check: ${e.message}`));
  // the loop's first check: says the loop runs, what it found and when it looks again
  drift.once('loop', ({ report, nextInMs }) => console.log(`patronus: drift loop: first check ${report.state} (revision ${report.revision ?? '-'}, reconcile ${report.mode}), next in ${Math.round(nextInMs / 1000)} s`));
  // an apply leaves alone what it does not change and this loop found in place (Engine.unchangedSubsystems)
  engine.cleanState = () => drift.cleanState();
  const metrics = createMetrics(engine, { drift });
  // the firewall event log: fast-path drop events (read from the data plane's ring whenever one runs)
  const events = new EventHub();
  const xdpEvents = new XdpEventSource(events, { pinDir: fastpathPinDir(host), linkNames: () => linkNames(host) });
  try {
    await xdpEvents.start();
  } catch (e) {
    console.error(`patronus: fast-path events: ${(e as Error).message} (serving without them)`);
  }
  // nftables log events: the NFLOG group of the committed revision's firewall.log, re-bound when an apply changes it
  let nflog: { group: number; source: NflogSource } | undefined;
  const bindNflog = async () => {
    const fw = engine.committedConfig()?.firewall;
    const group = fw?.enabled && fw.log.target === 'nflog' ? fw.log.group : undefined;
    if (nflog && nflog.group === group) return;
    nflog?.source.close();
    nflog = undefined;
    if (group === undefined) return;
    const source = new NflogSource(events, { group, inNetns: (fn) => host.inNetns(fn), linkNames: () => linkNames(host) });
    try {
      await source.start();
      nflog = { group, source };
    } catch (e) {
      console.error(`patronus: nftables log events: ${(e as Error).message} (serving without them)`);
    }
  };
  await bindNflog();
  engine.on('applied', () => void bindNflog());
  // an apply's parse and compile worker threads leave their malloc arenas full of free pages that glibc
  // keeps for the process's lifetime (11-16 MB at a small configuration, docs/bench-control.md): give
  // them back to the kernel once the workers are gone, after the start and after every apply
  let trimTimer: NodeJS.Timeout | undefined;
  const releaseMemorySoon = () => {
    clearTimeout(trimTimer);
    trimTimer = setTimeout(() => {
      try {
        releaseFreedMemory();
      } catch (e) {
        console.error(`patronus: releasing freed memory: ${(e as Error).message}`);
      }
    }, 1000).unref();
  };
  engine.on('applied', releaseMemorySoon);
  // an idle spare compile worker was stopped: its thread's arena pages go back too
  engine.on('spareRetired', releaseMemorySoon);
  registerHaSyncMetrics(metrics.registry, haSync);
  const app = await buildServer({
    engine,
    store,
    haSync,
    haEtcdSync,
    metrics,
    bodyLimit: api.bodyLimit,
    metricsRequireToken: api.metricsRequireToken,
    sessions: api.sessions,
    ownsEngine: true,
    drift,
    events,
    ...(https ? { https } : {}),
  });
  if (acmeCert) followCertificate(app, stateDir, acmeCert, (m) => console.log(m));

  app.addHook('onClose', async () => {
    xdpEvents.close();
    nflog?.source.close();
  });
  // etcd's client (gRPC) loads only on a node that joins a fleet
  const fleet = opts.fleet ? await (await import('../fleet/serve.js')).joinFleet(opts.fleet, { app, engine, drift, metrics }) : undefined;

  let closing = false;
  let listening = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    console.log(`patronus: ${signal}: closing`);
    manager.stopping();
    // validations in worker threads are only answers: stop them rather than wait for a huge document
    engine.stopValidations();
    // a request still in flight after a second (a plan compiling a huge document on this thread) is not
    // waited for either, unless an apply holds the engine: that one finishes its transaction first
    const exitWhenIdle = () => {
      if (engine.health().applying) return;
      console.log(`patronus: ${signal}: not waiting for requests still in flight`);
      process.exit(0);
    };
    setTimeout(() => {
      exitWhenIdle();
      setInterval(exitWhenIdle, 250).unref();
    }, 1000).unref();
    app.close().then(
      () => process.exit(0),
      (e: Error) => {
        console.error(`patronus: close failed: ${e.message}`);
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: execa's signal-exit re-raises a signal that no other listener handles any more, which
  // killed the process mid-close (exit by SIGTERM, not 0) while a request ran a child process
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // reload (systemctl reload / rc-service reload send SIGHUP): check drift now and repair per drift.reconcile
  // (systemd: RELOADING=1 until the check and its repair are done, then READY=1 again)
  const readyStatus = () => `revision ${store.head().committed ?? '-'}, listening on ${opts.listen ?? api.listen}`;
  process.on('SIGHUP', () => {
    console.log('patronus: SIGHUP: checking drift now');
    const announce = listening && !closing;
    if (announce) manager.reloading();
    drift
      .checkAndRepair()
      .catch((e: Error) => console.error(`patronus: drift check on SIGHUP: ${e.message}`))
      .finally(() => {
        if (announce && !closing) manager.ready(readyStatus());
      });
  });

  const [hostname, port] = splitHostPort(opts.listen ?? api.listen);
  await app.listen({ host: hostname, port });
  drift.start();
  fleet?.start();
  releaseMemorySoon();
  // readiness (systemd Type=notify): reconciled above, listening now
  listening = true;
  manager.ready(out.error ? `degraded: reconciliation failed: ${out.error}` : readyStatus());
  console.log(`patronus: listening on ${https ? 'https' : 'http'}://${opts.listen ?? api.listen} (REST ${'/api/v1'}, /metrics, /healthz, /openapi.json)`);
}

export function splitHostPort(s: string): [string, number] {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`listen address "${s}" is not host:port`);
  return [s.slice(0, i).replace(/^\[|\]$/g, ''), port];
}
