/**
 * WAN addressing by DHCP (`interfaces[].dhcp: true`, IPv4): one ISC dhclient
 * per interface, supervised directly (foreground, own pid, lease and log
 * files under <state dir>/services/dhclient/<interface>/).
 *
 * dhclient runs a small hook script of Patronus' own (-sf), never the stock
 * dhclient-script, which would rewrite the host's /etc/resolv.conf. The hook
 * puts the leased address on the interface (with the lease time as its
 * lifetime, so a dead client cannot leave a stale address behind for long),
 * removes the previous one when the server hands out another, sets the
 * default route (protocol dhcp) via the first router the server names, and
 * writes lease.json for status. The script is fixed text; lease values reach
 * it only as dhclient's environment variables.
 *
 * A lease change needs no new revision: masquerade follows the interface's
 * address, port forwards without a fixed destination match any local
 * address, and the default route is rewritten by the hook.
 */
import { existsSync, readFileSync, rmSync, mkdirSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { defineSubsystem, step, type Change, type CompileContext, type ServiceOpening, type Subsystem } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import type { Host } from '../../system/host.js';
import type { Issue, IssuePath } from '../../config/issues.js';
import { daemonPid, startDaemon, stopDaemon } from '../common/daemon.js';

export interface DhcpClientSpec {
  interface: string;
  path: IssuePath;
  /** install the default route from the lease (only one interface may) */
  defaultRoute: boolean;
}

export interface DhcpClientDesired {
  clients: DhcpClientSpec[];
}

export interface DhcpLease {
  reason: string;
  interface: string;
  /** address/prefix length */
  address: string;
  routers: string[];
  dns: string[];
  leaseSeconds: number;
  /** when the hook wrote it (unix seconds) */
  at: number;
}

export function compileDhcpClients(ctx: Pick<CompileContext, 'config'>): { desired: DhcpClientDesired; issues: Issue[] } {
  const issues: Issue[] = [];
  const c = ctx.config;
  const clients: DhcpClientSpec[] = [];
  c.interfaces.forEach((i, n) => {
    if (!i.dhcp) return;
    const path: IssuePath = ['interfaces', n, 'dhcp'];
    if (i.addresses?.some((a) => !a.includes(':'))) issues.push({ path, message: 'an interface gets its IPv4 address either by DHCP or from addresses:, not both' });
    if (i.kind && i.kind !== 'vlan' && i.kind !== 'bond' && i.kind !== 'bridge') issues.push({ path, message: `a ${i.kind} interface gets its address from its peer, not by DHCP` });
    clients.push({ interface: i.name, path, defaultRoute: clients.length === 0 });
  });
  const first = clients[0];
  if (first) {
    const staticDefault = c.routing.routes.findIndex((r) => r.prefix.trim() === '0.0.0.0/0' && (r.metric ?? 0) === 0);
    if (staticDefault >= 0) {
      issues.push({ path: first.path, message: `routing.routes[${staticDefault}] is the IPv4 default route already; the DHCP lease would replace it (give that route a metric, or drop it)` });
    }
    if (c.gateways.defaultRoute !== undefined) first.defaultRoute = false; // a gateway group owns it
  }
  return { desired: { clients }, issues };
}

/** The hook dhclient runs (-sf). Fixed text: only `default_route` varies, a 0/1 Patronus writes. */
export function hookScript(defaultRoute: boolean): string {
  return `#!/bin/sh
# Patronus dhclient hook (generated): address and default route from the lease;
# never touches /etc/resolv.conf. Lease values arrive as dhclient's environment.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
default_route=${defaultRoute ? 1 : 0}
dir=$(dirname "$0")
mask2len() {
  len=0
  IFS=.
  for o in $1; do
    case $o in
      255) len=$((len + 8)) ;; 254) len=$((len + 7)) ;; 252) len=$((len + 6)) ;; 248) len=$((len + 5)) ;;
      240) len=$((len + 4)) ;; 224) len=$((len + 3)) ;; 192) len=$((len + 2)) ;; 128) len=$((len + 1)) ;;
    esac
  done
  unset IFS
  echo "$len"
}
case "$reason" in
  PREINIT)
    ip link set dev "$interface" up
    ;;
  BOUND|RENEW|REBIND|REBOOT)
    len=$(mask2len "$new_subnet_mask")
    addr="$new_ip_address/$len"
    if [ -f "$dir/address" ]; then
      old=$(cat "$dir/address")
      [ "$old" != "$addr" ] && ip addr del "$old" dev "$interface" 2>/dev/null
    fi
    lft=\${new_dhcp_lease_time:-forever}
    ip addr replace "$addr" dev "$interface" valid_lft "$lft" preferred_lft "$lft" || exit 1
    echo "$addr" > "$dir/address"
    if [ "$default_route" = 1 ] && [ -n "$new_routers" ]; then
      set -- $new_routers
      ip route replace default via "$1" dev "$interface" proto dhcp || exit 1
    fi
    printf '{"reason":"%s","interface":"%s","address":"%s","routers":"%s","dns":"%s","leaseSeconds":%s,"at":%s}\\n' \\
      "$reason" "$interface" "$addr" "$new_routers" "$new_domain_name_servers" "\${new_dhcp_lease_time:-0}" "$(date +%s)" > "$dir/lease.json.tmp"
    mv "$dir/lease.json.tmp" "$dir/lease.json"
    ;;
  EXPIRE|FAIL|RELEASE|STOP)
    if [ -f "$dir/address" ]; then
      ip addr del "$(cat "$dir/address")" dev "$interface" 2>/dev/null
      rm -f "$dir/address"
    fi
    [ "$default_route" = 1 ] && ip route del default dev "$interface" proto dhcp 2>/dev/null
    rm -f "$dir/lease.json"
    ;;
esac
exit 0
`;
}

/** dhclient.conf: what to ask for (the stock file also asks to update the host name and more). */
export const DHCLIENT_CONF = 'request subnet-mask, broadcast-address, routers, domain-name-servers, domain-name, interface-mtu;\n';

export const dhclientSubsystem: Subsystem<DhcpClientDesired> & { lease(host: Host, iface: string): DhcpLease | undefined } = defineSubsystem<DhcpClientDesired, { lease(host: Host, iface: string): DhcpLease | undefined }>({
  name: 'dhcp-client',

  compile(ctx) {
    return compileDhcpClients(ctx);
  },

  /** One step per client started, restarted or stopped. */
  async steps(desired, host) {
    return (await steps(desired, host)).map((s) => step(s.change, s.run));
  },

  async validate(desired, host) {
    if (!desired.clients.length) return [];
    const issues: Issue[] = [];
    const r = await host.run('dhclient', ['--version'], { reject: false });
    if (r.exitCode !== 0) issues.push({ path: desired.clients[0]!.path, message: `dhclient is not installed (Debian package isc-dhcp-client) (${host.where})` });
    return issues;
  },

  async teardown(host) {
    await dhclientSubsystem.apply({ clients: [] }, host);
  },

  async status(host) {
    return instances(host).map((iface) => ({ interface: iface, pid: daemonPid(paths(host, iface).pid, 'dhclient') ?? null, lease: readLease(host, iface) ?? null }));
  },

  async metrics(host) {
    return { services: instances(host).map((iface) => ({ service: `dhclient:${iface}`, up: daemonPid(paths(host, iface).pid, 'dhclient') !== undefined })) };
  },

  openings(config: Config): ServiceOpening[] {
    const ifs = config.interfaces.filter((i) => i.dhcp).map((i) => i.name);
    return ifs.length ? [{ service: 'dhcp-client', proto: 'udp', port: 68, interfaces: ifs }] : [];
  },

  lease(host, iface) {
    return readLease(host, iface);
  },
});

// --- internals

interface Step {
  change: Change;
  run(): Promise<void>;
}

function base(host: Host): string {
  return join(host.stateDir, 'services', 'dhclient');
}

function paths(host: Host, iface: string) {
  const dir = join(base(host), iface);
  return { dir, pid: join(dir, 'dhclient.pid'), leases: join(dir, 'dhclient.leases'), script: join(dir, 'hook'), conf: join(dir, 'dhclient.conf'), log: join(dir, 'dhclient.log'), lease: join(dir, 'lease.json'), address: join(dir, 'address') };
}

function instances(host: Host): string[] {
  return existsSync(base(host)) ? readdirSync(base(host)) : [];
}

function readLease(host: Host, iface: string): DhcpLease | undefined {
  try {
    const raw = JSON.parse(readFileSync(paths(host, iface).lease, 'utf8')) as { reason: string; interface: string; address: string; routers: string; dns: string; leaseSeconds: number; at: number };
    return { ...raw, routers: raw.routers.split(/\s+/).filter(Boolean), dns: raw.dns.split(/\s+/).filter(Boolean) };
  } catch {
    return undefined;
  }
}

async function steps(desired: DhcpClientDesired, host: Host): Promise<Step[]> {
  const out: Step[] = [];
  const wanted = new Set(desired.clients.map((c) => c.interface));
  for (const c of desired.clients) {
    const p = paths(host, c.interface);
    const script = hookScript(c.defaultRoute);
    const running = daemonPid(p.pid, 'dhclient') !== undefined;
    const scriptChanged = !existsSync(p.script) || readFileSync(p.script, 'utf8') !== script;
    if (running && !scriptChanged) continue;
    out.push({
      change: { action: running ? 'restart' : 'start', object: `dhclient on ${c.interface}`, detail: c.defaultRoute ? 'address and default route from the lease' : 'address from the lease' },
      run: async () => {
        if (running) await stopDaemon({ name: `dhclient ${c.interface}`, command: 'dhclient', pidFile: p.pid });
        mkdirSync(p.dir, { recursive: true });
        writeFileSync(p.script, script, { mode: 0o755 });
        writeFileSync(p.conf, DHCLIENT_CONF);
        await startDaemon(host, {
          name: `dhclient ${c.interface}`,
          command: 'dhclient',
          // -d: foreground (supervised); -lf/-pf/-cf/-sf: this instance's own files, nothing shared with the host's
          args: ['-4', '-d', '-v', '-lf', p.leases, '-pf', p.pid, '-cf', p.conf, '-sf', p.script, c.interface],
          pidFile: p.pid,
          logFile: p.log,
        });
      },
    });
  }
  for (const iface of instances(host)) {
    if (wanted.has(iface)) continue;
    out.push({
      change: { action: 'stop', object: `dhclient on ${iface}`, detail: 'its address and default route go too' },
      run: async () => {
        const p = paths(host, iface);
        await stopDaemon({ name: `dhclient ${iface}`, command: 'dhclient', pidFile: p.pid });
        // dhclient -d exits on SIGTERM without running the hook: undo what the hook did
        if (existsSync(p.address)) {
          const addr = readFileSync(p.address, 'utf8').trim();
          const r = await host.run('ip', ['addr', 'del', addr, 'dev', iface], { reject: false });
          if (r.exitCode !== 0 && !/Cannot assign|Cannot find device|does not exist/.test(r.stderr)) throw new Error(`dhcp-client: cannot remove ${addr} from ${iface} (${host.where}): ${r.stderr.trim()}`);
        }
        await host.run('ip', ['route', 'del', 'default', 'dev', iface, 'proto', 'dhcp'], { reject: false });
        rmSync(p.dir, { recursive: true, force: true });
      },
    });
  }
  return out;
}
