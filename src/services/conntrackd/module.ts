/**
 * conntrackd (connection-tracking state replication between the two nodes
 * of a VRRP pair) as a ServiceModule: one instance per Host, in the
 * foreground under direct supervision, with its own lock file, control
 * socket and log (the packaged defaults under /var/lock and /var/run are
 * shared by every namespace).
 *
 * The failover steps are keepalived's (its notify script, rendered with
 * this instance's config path): on MASTER commit the external cache into
 * the kernel, flush both caches, resync the internal one from the kernel and
 * send it in bulk; on BACKUP ask the peer for a resync and schedule a purge
 * of the kernel entries this node no longer forwards (PurgeTimeout, 60 s).
 *
 * conntrackd has no dry-run mode and no reload: check() is Patronus' own
 * compile, a changed file restarts it (its StartupResync asks the peer for
 * the whole table again, so nothing is lost while the peer lives).
 */
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import type { ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import { daemonPid, startDaemon, stopDaemon, type DaemonSpec } from '../common/daemon.js';
import type { InstancePaths, ServiceModule } from '../common/service.js';
import { compileConntrackd, renderConntrackdConf, type ConntrackdModel } from './render.js';

export const CONNTRACKD_NAME = 'conntrackd';

export interface ConntrackdStatus {
  /** connections this node tracks itself (internal cache) */
  internal?: number;
  /** connections the peer replicated here (external cache), committed on becoming master */
  external?: number;
  /** raw `conntrackd -s` when the numbers could not be read */
  error?: string;
}

export const conntrackdModule: ServiceModule<ConntrackdModel> = {
  name: CONNTRACKD_NAME,

  desired(ctx) {
    const { model, issues } = compileConntrackd(ctx.config.ha);
    return { desired: model, issues };
  },

  render(model, paths) {
    return [{ path: 'conntrackd.conf', content: renderConntrackdConf(model, ctdPaths(paths)) }];
  },

  async check(model, _paths, host) {
    // conntrackd has no checker (-C only runs the daemon): check what it needs from the namespace
    const at = (field: string, message: string) => ({ path: ['ha', 'conntrackSync', field], message });
    const r = await host.run('ip', ['-j', 'addr', 'show', 'dev', model.interface], { reject: false });
    if (r.exitCode !== 0) return [at('interface', `interface ${model.interface} does not exist (${host.where})`)];
    const addrs = (JSON.parse(r.stdout || '[]') as { addr_info?: { local: string }[] }[]).flatMap((l) => (l.addr_info ?? []).map((a) => a.local.toLowerCase()));
    if (!addrs.includes(model.localAddress.toLowerCase())) return [at('localAddress', `${model.localAddress} is not an address of ${model.interface} (${host.where}; it has ${addrs.join(', ') || 'none'})`)];
    return [];
  },

  async start(_model, paths, host) {
    await startConntrackd(paths, host);
  },

  async reload(_model, paths, host) {
    await stopDaemon(daemonSpec(paths));
    await startConntrackd(paths, host);
  },

  async stop(paths) {
    await stopDaemon(daemonSpec(paths));
    const p = ctdPaths(paths);
    rmSync(p.lockFile, { force: true });
    rmSync(p.socket, { force: true });
  },

  async running(paths) {
    return daemonPid(paths.pidFile, 'conntrackd') !== undefined;
  },

  async status(paths, host): Promise<ConntrackdStatus> {
    return readConntrackdStatus(paths, host);
  },

  openings(config: Config): ServiceOpening[] {
    const c = config.ha.conntrackSync;
    if (!c || !c.enabled || !config.ha.enabled) return [];
    return [{ service: 'conntrackd', proto: 'udp', port: c.port, interfaces: [c.interface] }];
  },
};

/** Where the conntrackd instance of the state dir keeps its config: what keepalived's notify script names. */
export function conntrackdConfPath(stateDir: string): string {
  return path.join(stateDir, 'services', CONNTRACKD_NAME, 'conntrackd.conf');
}

export async function readConntrackdStatus(paths: InstancePaths, host: Host): Promise<ConntrackdStatus> {
  const r = await host.run('conntrackd', ['-C', paths.file('conntrackd.conf'), '-s'], { reject: false, timeout: 5000 });
  if (r.exitCode !== 0) return { error: `conntrackd -s exited ${r.exitCode}: ${(r.stderr || r.stdout).trim()}` };
  return parseCacheStats(r.stdout);
}

/** `conntrackd -s`: a block per cache, "cache internal:" then "current active connections: N". */
export function parseCacheStats(text: string): ConntrackdStatus {
  const out: ConntrackdStatus = {};
  for (const block of text.split(/(?=^cache (?:internal|external):)/m)) {
    const kind = /^cache (internal|external):/.exec(block)?.[1] as 'internal' | 'external' | undefined;
    const n = /current active connections:\s*(\d+)/.exec(block)?.[1];
    if (kind && n !== undefined) out[kind] = Number(n);
  }
  if (out.internal === undefined && out.external === undefined) out.error = `unexpected conntrackd -s output: ${text.slice(0, 200)}`;
  return out;
}

function ctdPaths(paths: InstancePaths) {
  return { logFile: paths.logFile, lockFile: path.join(paths.runDir, 'conntrackd.lock'), socket: path.join(paths.runDir, 'conntrackd.ctl') };
}

async function startConntrackd(paths: InstancePaths, host: Host): Promise<void> {
  const p = ctdPaths(paths);
  // a lock file without a live daemon (killed, or the machine rebooted) makes conntrackd refuse to start
  if (daemonPid(paths.pidFile, 'conntrackd') === undefined) {
    rmSync(p.lockFile, { force: true });
    rmSync(p.socket, { force: true });
  }
  await startDaemon(host, daemonSpec(paths));
}

function daemonSpec(paths: InstancePaths): DaemonSpec {
  const socket = ctdPaths(paths).socket;
  return {
    name: 'conntrackd',
    command: 'conntrackd',
    // without -d conntrackd stays in the foreground ("console mode")
    args: ['-C', paths.file('conntrackd.conf')],
    pidFile: paths.pidFile,
    logFile: path.join(paths.dir, 'conntrackd.out'),
    ready: async () => existsSync(socket),
    readyTimeoutMs: 30_000,
  };
}
