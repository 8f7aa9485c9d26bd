/**
 * Kea DHCPv6 as a ServiceModule: one kea-dhcp6 under
 * <state dir>/services/kea6, supervised directly, with its pid and lock
 * files in the instance's run directory (KEA_PIDFILE_DIR/KEA_LOCKFILE_DIR)
 * and its lease file in the instance directory. A change restarts it (the
 * lease file persists, so clients keep their addresses).
 */
import { readFileSync } from 'node:fs';
import type { CompileContext, ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import type { Issue, IssuePath } from '../../config/issues.js';
import { contains, hasHostBits, parsePrefix, formatPrefix } from '../../net/address.js';
import { daemonPid, startDaemon, stopDaemon } from '../common/daemon.js';
import type { InstancePaths, RenderedFile, ServiceModule } from '../common/service.js';
import type { Dhcp6Config } from './schema.js';

export interface Kea6Model {
  config: Dhcp6Config;
}

const CONF = 'kea-dhcp6.conf';
const LEASES = 'leases6.csv';

export function compileKea6(ctx: Pick<CompileContext, 'config'>): { desired: Kea6Model | null; issues: Issue[] } {
  const c = ctx.config.dhcp6;
  if (!c.enabled || !c.subnets.length) return { desired: null, issues: [] };
  const issues: Issue[] = [];
  const managed = new Set(ctx.config.interfaces.map((i) => i.name));
  if (c.validLifetime < c.preferredLifetime) issues.push({ path: ['dhcp6', 'validLifetime'], message: `must be at least preferredLifetime (${c.preferredLifetime})` });
  const config: Dhcp6Config = structuredClone(c);
  const nets: { net: string; i: number }[] = [];
  config.subnets.forEach((s, i) => {
    const at = (...p: (string | number)[]): IssuePath => ['dhcp6', 'subnets', i, ...p];
    if (!managed.has(s.interface)) issues.push({ path: at('interface'), message: `"${s.interface}" is not a managed interface (add it under interfaces:)` });
    let net: string;
    try {
      const p = parsePrefix(s.subnet);
      if (p.family !== 6 || !s.subnet.includes('/')) throw new Error(`"${s.subnet}" is not an IPv6 network`);
      net = formatPrefix(p);
      if (hasHostBits(s.subnet.split('/')[0]!, p)) throw new Error(`"${s.subnet}" has host bits set; did you mean ${net}?`);
    } catch (e) {
      return void issues.push({ path: at('subnet'), message: (e as Error).message });
    }
    s.subnet = net;
    for (const o of nets) if (contains(o.net, net.split('/')[0]!) || contains(net, o.net.split('/')[0]!)) issues.push({ path: at('subnet'), message: `overlaps dhcp6.subnets[${o.i}]` });
    nets.push({ net, i });
    s.pools.forEach((pool, j) => {
      const [a, b] = pool.split('-').map((x) => x.trim()) as [string, string];
      if (!contains(net, a) || !contains(net, b)) issues.push({ path: at('pools', j), message: `"${pool}" is not inside ${net}` });
    });
  });
  return { desired: issues.length ? null : { config }, issues };
}

export function renderKea6(m: Kea6Model, paths: InstancePaths): { Dhcp6: Record<string, unknown> } {
  const c = m.config;
  return {
    Dhcp6: {
      'interfaces-config': {
        interfaces: [...new Set(c.subnets.map((s) => s.interface))],
        // the link-local address may still be in DAD when Kea starts: retry instead of serving nothing
        'service-sockets-max-retries': 20,
        'service-sockets-retry-wait-time': 500,
      },
      'lease-database': { type: 'memfile', persist: true, name: paths.file(LEASES), 'lfc-interval': 3600 },
      // the server DUID file (default /var/lib/kea, shared and maybe absent) lives with the instance
      'data-directory': paths.dir,
      'preferred-lifetime': c.preferredLifetime,
      'valid-lifetime': c.validLifetime,
      subnet6: c.subnets.map((s, i) => ({
        id: s.id ?? i + 1,
        subnet: s.subnet,
        interface: s.interface,
        pools: s.pools.map((p) => ({ pool: p.split('-').map((x) => x.trim()).join(' - ') })),
        'option-data': s.dnsServers.length ? [{ name: 'dns-servers', data: s.dnsServers.join(', ') }] : [],
      })),
      loggers: [{ name: 'kea-dhcp6', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
    },
  };
}

export const kea6Service: ServiceModule<Kea6Model> = {
  name: 'kea6',

  desired(ctx) {
    return compileKea6(ctx);
  },

  render(model, paths) {
    return [{ path: CONF, content: `${JSON.stringify(renderKea6(model, paths), null, 2)}\n` }] satisfies RenderedFile[];
  },

  async check(_model, paths, host) {
    const r = await host.run('kea-dhcp6', ['-t', paths.file(CONF)], { reject: false, env: env(paths), timeout: 20_000 });
    if (r.exitCode === 0) return [];
    const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /ERROR|FATAL|rror/.test(l)).join('\n');
    return [{ path: ['dhcp6'], message: `kea-dhcp6 -t rejected the rendered configuration: ${(lines || r.stderr || r.stdout).split(paths.dir + '/').join('').trim()}` }];
  },

  async start(_model, paths, host) {
    await startDaemon(host, { name: 'kea-dhcp6', command: 'kea-dhcp6', args: ['-c', paths.file(CONF)], env: env(paths), pidFile: paths.pidFile, logFile: paths.logFile, settleMs: 500 });
  },

  async reload(model, paths, host) {
    await stopDaemon(spec(paths));
    await this.start(model, paths, host);
  },

  async stop(paths) {
    await stopDaemon(spec(paths));
  },

  async running(paths) {
    return daemonPid(paths.pidFile, 'kea-dhcp6') !== undefined;
  },

  async status(paths) {
    return { pid: daemonPid(paths.pidFile, 'kea-dhcp6') ?? null, leases: leases6(paths) };
  },

  openings(config: Config): ServiceOpening[] {
    const c = config.dhcp6;
    if (!c.enabled || !c.subnets.length) return [];
    return [{ service: 'kea6', proto: 'udp', port: 547, interfaces: [...new Set(c.subnets.map((s) => s.interface))] }];
  },
};

/** Leases from kea-dhcp6's memfile (address, DUID, state 0 = assigned). */
export function leases6(paths: InstancePaths): { address: string; duid: string; validLifetime: number; expire: number; subnetId: number; state: number }[] {
  let text: string;
  try {
    text = readFileSync(paths.file(LEASES), 'utf8');
  } catch {
    return [];
  }
  const [head, ...rows] = text.trim().split('\n');
  const cols = (head ?? '').split(',');
  const idx = (n: string) => cols.indexOf(n);
  const latest = new Map<string, { address: string; duid: string; validLifetime: number; expire: number; subnetId: number; state: number }>();
  for (const r of rows) {
    const f = r.split(',');
    const l = { address: f[idx('address')]!, duid: f[idx('duid')]!, validLifetime: Number(f[idx('valid_lifetime')]), expire: Number(f[idx('expire')]), subnetId: Number(f[idx('subnet_id')]), state: Number(f[idx('state')]) };
    latest.set(l.address, l);
  }
  return [...latest.values()].filter((l) => l.validLifetime > 0);
}

function env(paths: InstancePaths): Record<string, string> {
  return { KEA_PIDFILE_DIR: paths.runDir, KEA_LOCKFILE_DIR: paths.runDir };
}

function spec(paths: InstancePaths) {
  return { name: 'kea-dhcp6', command: 'kea-dhcp6', pidFile: paths.pidFile };
}
