/**
 * Kea DHCPv4 as a ServiceModule: one kea-dhcp4 under
 * <stateDir>/services/kea, supervised directly. Kea's pid and lock files go
 * to the instance's run directory (KEA_PIDFILE_DIR / KEA_LOCKFILE_DIR: the
 * packaged default /run/kea may not exist and is shared), the lease file
 * sits in the instance directory with lease file cleanup off, and changes
 * apply through the control socket's config-reload.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import type { CompileContext, ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import type { Issue } from '../../config/issues.js';
import { daemonPid, startDaemon, stopDaemon, DaemonError, tailLog } from '../common/daemon.js';
import { instancePaths, type InstancePaths, type RenderedFile, type ServiceModule } from '../common/service.js';
import { leasesFromCommand, parseLeaseFile, type DhcpLease, type KeaLease4 } from './leases.js';
import type { DhcpConfig } from './schema.js';

export type { DhcpLease } from './leases.js';

export interface KeaModel {
  config: DhcpConfig;
}

export interface KeaStatus {
  pid: number | undefined;
  leases: DhcpLease[];
}

const SECTION = 'dhcp';
const CONF = 'kea-dhcp4.conf';
const LEASES = 'leases4.csv';

export const keaService: ServiceModule<KeaModel> = {
  name: 'kea',

  desired(ctx: CompileContext) {
    const c = ctx.config.dhcp;
    if (!c.enabled) return { desired: null, issues: [] };
    const managed = new Set(ctx.config.interfaces.map((i) => i.name));
    const issues: Issue[] = [];
    c.subnets.forEach((s, i) => {
      if (!managed.has(s.interface)) issues.push({ path: [SECTION, 'subnets', i, 'interface'], message: `"${s.interface}" is not a managed interface (add it under interfaces:)` });
    });
    return { desired: issues.length ? null : { config: c }, issues };
  },

  render(model, paths) {
    return [{ path: CONF, content: JSON.stringify(renderKea(model, paths), null, 2) + '\n' }];
  },

  async check(_model, paths, host) {
    // inside the namespace: Kea checks that the interfaces exist
    const r = await host.run('kea-dhcp4', ['-t', paths.file(CONF)], { reject: false, env: keaEnv(paths), timeout: 20_000 });
    if (r.exitCode === 0) return [];
    const lines = `${r.stdout}\n${r.stderr}`
      .split('\n')
      .filter((l) => /ERROR|FATAL|rror/.test(l) && !/^\s*$/.test(l))
      .map((l) => l.replace(/^\S+ \S+ +(ERROR|FATAL) +\[[^\]]*\] +/, ''))
      .join('\n');
    return [{ path: [SECTION], message: `kea-dhcp4 -t rejected the rendered configuration: ${(lines || r.stdout || r.stderr).split(paths.dir + '/').join('').trim()}` }];
  },

  async start(_model, paths, host) {
    await startDaemon(host, {
      name: 'kea-dhcp4',
      command: 'kea-dhcp4',
      args: ['-c', paths.file(CONF)],
      env: keaEnv(paths),
      pidFile: paths.pidFile,
      logFile: paths.logFile,
      ready: async () => (await keaCommand(paths, 'status-get')).result === 0,
      settleMs: 300,
    });
  },

  async reload(_model, paths) {
    const r = await keaCommand(paths, 'config-reload').catch((e: Error) => ({ result: -1, text: e.message }));
    if (r.result !== 0) throw new DaemonError('kea-dhcp4', `config-reload failed: ${r.text ?? JSON.stringify(r)}`, tailLog(paths.logFile));
  },

  async stop(paths) {
    await stopDaemon(daemonSpec(paths));
  },

  async running(paths) {
    return daemonPid(paths.pidFile, 'kea-dhcp4') !== undefined;
  },

  async status(paths): Promise<KeaStatus> {
    return { pid: daemonPid(paths.pidFile, 'kea-dhcp4'), leases: await keaLeases(paths) };
  },

  openings(config: Config): ServiceOpening[] {
    return dhcpOpenings(config.dhcp);
  },
};

/** The current leases of the instance under a Host's state dir (for the API). */
export function dhcpLeases(host: Pick<Host, 'stateDir'>): Promise<DhcpLease[]> {
  return keaLeases(instancePaths(host.stateDir, 'kea'));
}

/**
 * The leases: from the running daemon through the lease_cmds hook (no file
 * parsing per request), else from the lease files (daemon stopped).
 */
export async function keaLeases(paths: InstancePaths): Promise<DhcpLease[]> {
  if (daemonPid(paths.pidFile, 'kea-dhcp4') !== undefined && existsSync(controlSocket(paths))) {
    const r = await keaCommand(paths, 'lease4-get-all').catch(() => undefined);
    // 0: leases, 3: none
    if (r?.result === 3) return [];
    if (r?.result === 0) return leasesFromCommand((r.arguments as { leases: KeaLease4[] }).leases);
  }
  return keaLeaseFiles(paths);
}

/** The leases as the lease files record them (FILE.1, FILE.2 and FILE: see leases.ts). */
export function keaLeaseFiles(paths: InstancePaths): DhcpLease[] {
  const file = paths.file(LEASES);
  const text = [`${file}.1`, `${file}.2`, file]
    .map((f) => {
      try {
        return readFileSync(f, 'utf8');
      } catch {
        return '';
      }
    })
    .join('\n');
  return text.trim() ? parseLeaseFile(text) : [];
}

/** Seconds between lease file cleanups: the file holds at most about an hour of changes beyond the current leases. */
export const LFC_INTERVAL = 3600;

/** Kea's hook libraries directory (Debian: /usr/lib/<triplet>/kea/hooks). */
export function keaHooksDir(): string | undefined {
  const candidates = ['/usr/lib/kea/hooks', '/usr/local/lib/kea/hooks'];
  try {
    for (const d of readdirSync('/usr/lib')) if (/-linux-gnu/.test(d)) candidates.unshift(`/usr/lib/${d}/kea/hooks`);
  } catch {
    /* no /usr/lib */
  }
  return candidates.find((d) => existsSync(path.join(d, 'libdhcp_lease_cmds.so')));
}

export function dhcpOpenings(c: DhcpConfig): ServiceOpening[] {
  if (!c.enabled || !c.subnets.length) return [];
  return [{ service: 'kea', proto: 'udp', port: 67, interfaces: [...new Set(c.subnets.map((s) => s.interface))] }];
}

/** The Dhcp4 configuration object (Kea's JSON). */
export function renderKea(model: KeaModel, paths: InstancePaths, hooks = keaHooksDir()): { Dhcp4: Record<string, unknown> } {
  const c = model.config;
  return {
    Dhcp4: {
      'interfaces-config': {
        interfaces: [...new Set(c.subnets.map((s) => s.interface))],
        // raw sockets see clients that have no address yet
        'dhcp-socket-type': 'raw',
        // a socket that cannot open fails the start instead of serving half the LANs
        'service-sockets-require-all': true,
      },
      'control-socket': { 'socket-type': 'unix', 'socket-name': controlSocket(paths) },
      'lease-database': { type: 'memfile', persist: true, name: paths.file(LEASES), 'lfc-interval': LFC_INTERVAL },
      // leases over the control socket (lease4-get-all) instead of parsing the file per request
      ...(hooks ? { 'hooks-libraries': [{ library: path.join(hooks, 'libdhcp_lease_cmds.so') }] } : {}),
      'valid-lifetime': c.validLifetime,
      authoritative: c.authoritative,
      subnet4: c.subnets.map((s, i) => {
        const dns = s.dnsServers ?? c.dnsServers;
        const domain = s.domainName ?? c.domainName;
        const options: { name: string; data: string }[] = [];
        if (s.router) options.push({ name: 'routers', data: s.router });
        if (dns.length) options.push({ name: 'domain-name-servers', data: dns.join(', ') });
        if (domain) options.push({ name: 'domain-name', data: domain.replace(/\.$/, '') });
        return {
          id: s.id ?? i + 1,
          subnet: s.subnet,
          interface: s.interface,
          ...(s.validLifetime ? { 'valid-lifetime': s.validLifetime } : {}),
          pools: s.pools.map((p) => ({ pool: p.split('-').map((x) => x.trim()).join(' - ') })),
          'option-data': options,
          reservations: s.reservations.map((r) => ({ 'hw-address': r.mac.toLowerCase(), 'ip-address': r.address, ...(r.hostname ? { hostname: r.hostname } : {}) })),
        };
      }),
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
    },
  };
}

// ---------------------------------------------------------------------------

function keaEnv(paths: InstancePaths): Record<string, string> {
  return { KEA_PIDFILE_DIR: paths.runDir, KEA_LOCKFILE_DIR: paths.runDir };
}

function controlSocket(paths: InstancePaths): string {
  return path.join(paths.runDir, 'kea4.sock');
}

function daemonSpec(paths: InstancePaths) {
  return { name: 'kea-dhcp4', command: 'kea-dhcp4', pidFile: paths.pidFile };
}

interface KeaAnswer {
  result: number;
  text?: string;
  arguments?: unknown;
}

/** One command over Kea's unix control socket (it answers and closes). */
export function keaCommand(paths: InstancePaths, command: string, args?: unknown, timeoutMs = 20_000): Promise<KeaAnswer> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(controlSocket(paths));
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`kea control socket: no answer to ${command} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(JSON.stringify({ command, ...(args ? { arguments: args } : {}) })));
    sock.on('data', (d) => {
      data += d.toString();
      try {
        const parsed = JSON.parse(data) as KeaAnswer | KeaAnswer[];
        clearTimeout(timer);
        sock.end();
        resolve(Array.isArray(parsed) ? parsed[0]! : parsed);
      } catch {
        /* more to come */
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`kea control socket ${controlSocket(paths)}: ${e.message}`));
    });
    sock.on('end', () => {
      clearTimeout(timer);
      if (!data) reject(new Error(`kea control socket closed without answering ${command}`));
    });
  });
}
