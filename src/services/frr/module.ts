/**
 * FRR as a ServiceModule: one FRR instance per Host (zebra plus staticd,
 * ospfd and bgpd as the section needs them), each daemon supervised directly
 * with its own pid file, all sharing one zserv socket and one vty socket
 * directory under the instance's run dir (never the shared /var/run/frr).
 *
 * Daemons start with an empty config (-f /dev/null); the configuration is
 * pushed with `vtysh -b` into freshly started daemons and with frr-reload.py
 * (which applies only the difference) into running ones, so a change never
 * restarts a daemon and never drops a session it does not touch.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import type { ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import type { Issue } from '../../config/issues.js';
import { DaemonError, daemonPid, startDaemon, stopDaemon, tailLog, type DaemonSpec } from '../common/daemon.js';
import type { InstancePaths, RenderedFile, ServiceModule } from '../common/service.js';
import { frrForwarding } from '../../routing/forwarding.js';
import { compileFrr, type FrrDaemon, type FrrModel } from './compile.js';
import { renderFrrConf } from './render.js';
import { readFrrStatus, type FrrStatus } from './status.js';
import { policyFingerprints, readFingerprints, refreshesFor, softRefresh, writeFingerprints } from './refresh.js';

export const FRR_DAEMONS: readonly FrrDaemon[] = ['zebra', 'staticd', 'ospfd', 'bgpd'];

export const frrModule: ServiceModule<FrrModel> = {
  name: 'frr',

  desired(ctx) {
    const { model, issues } = compileFrr(ctx.config.routing, frrForwarding(ctx.config));
    return { desired: model, issues };
  },

  render(model, paths) {
    return [
      { path: 'frr.conf', content: renderFrrConf(model, paths.file('frr.log')), mode: 0o640 },
      // frr-reload.py refuses to run unless vtysh is in integrated-config mode
      { path: 'vtysh.conf', content: 'service integrated-vtysh-config\n' },
      // which daemons (and modules) this instance runs: read back by running()
      { path: 'daemons.json', content: `${JSON.stringify({ daemons: model.daemons, modules: model.modules })}\n` },
    ] satisfies RenderedFile[];
  },

  async check(_model, paths, host) {
    // FRR's own dry run: every line parsed by the daemons' command trees (exit 2 on errors)
    const r = await host.run('vtysh', ['--config_dir', paths.dir, '-C', '-f', paths.file('frr.conf')], { reject: false });
    if (r.exitCode === 0) return [];
    const detail = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /line \d+|Unknown|Error|%/.test(l)).join('; ');
    return [{ path: ['routing'], message: `FRR rejected the rendered frr.conf (vtysh -C exited ${r.exitCode}): ${detail || (r.stderr || r.stdout).trim()}` } satisfies Issue];
  },

  async start(model, paths, host) {
    await converge(model, paths, host);
  },

  async reload(model, paths, host) {
    await converge(model, paths, host);
  },

  async stop(paths) {
    // every daemon this instance may have run, whatever the current model says
    for (const d of [...FRR_DAEMONS].reverse()) {
      await stopDaemon(daemonSpec(d, paths, []));
      rmSync(vtySocket(paths, d), { force: true });
    }
  },

  async running(paths) {
    const wanted = readDaemons(paths);
    return wanted !== undefined && wanted.daemons.every((d) => daemonPid(pidFile(paths, d), d) !== undefined);
  },

  async status(paths, host): Promise<FrrStatus> {
    const running = FRR_DAEMONS.filter((d) => daemonPid(pidFile(paths, d), d) !== undefined);
    return readFrrStatus(host, paths.runDir, running, (d) => daemonPid(pidFile(paths, d), d));
  },

  openings(config: Config) {
    return frrOpenings(config);
  },
};

/** OSPF (IP protocol 89) on every non-passive OSPF interface; BGP (179/tcp) where its neighbors are. */
export function frrOpenings(config: Config): ServiceOpening[] {
  const r = config.routing;
  if (!r.enabled) return [];
  const out: ServiceOpening[] = [];
  const ospfIfs = (r.ospf?.areas ?? []).flatMap((a) => a.interfaces.filter((i) => !i.passive).map((i) => i.name));
  if (ospfIfs.length) out.push({ service: 'frr', proto: 'ospf', interfaces: [...new Set(ospfIfs)] });
  const peers = r.bgp?.neighbors ?? [];
  if (peers.length) {
    // one neighbor without a known interface means BGP must be reachable on every managed interface
    const ifs = peers.every((n) => n.interface !== undefined) ? [...new Set(peers.map((n) => n.interface!))] : [];
    out.push({ service: 'frr', proto: 'tcp', port: 179, interfaces: ifs });
  }
  return out;
}

/** Where FRR's per-daemon helpers live (Debian: /usr/lib/frr). */
export function frrBinDir(): string {
  const dirs = [process.env.PATRONUS_FRR_BINDIR, '/usr/lib/frr', '/usr/libexec/frr', '/usr/sbin'].filter((d): d is string => !!d);
  return dirs.find((d) => existsSync(path.join(d, 'zebra'))) ?? '/usr/lib/frr';
}

/**
 * Starts the daemons the model needs (zebra first: the others connect to its
 * zserv socket and only retry after seconds), stops the ones it no longer
 * needs, then loads frr.conf: `vtysh -b` when every daemon is fresh,
 * frr-reload.py (difference only) when some were already running.
 */
async function converge(model: FrrModel, paths: InstancePaths, host: Host): Promise<void> {
  const alive = new Set(FRR_DAEMONS.filter((d) => daemonPid(pidFile(paths, d), d) !== undefined));
  for (const d of FRR_DAEMONS) {
    if (alive.has(d) && !model.daemons.includes(d)) {
      await stopDaemon(daemonSpec(d, paths, []));
      rmSync(vtySocket(paths, d), { force: true });
      alive.delete(d);
    }
  }
  const fresh = model.daemons.filter((d) => !alive.has(d));
  const started: FrrDaemon[] = [];
  try {
    for (const d of fresh) {
      rmSync(vtySocket(paths, d), { force: true }); // so readiness means this instance's socket
      await startDaemon(host, daemonSpec(d, paths, model.modules[d] ?? []));
      started.push(d);
    }
  } catch (e) {
    // leave nothing half-started behind: the engine's rollback starts from a clean slate
    for (const d of started.reverse()) await stopDaemon(daemonSpec(d, paths, []));
    throw e;
  }
  const fingerprints = policyFingerprints(model);
  if (alive.size === 0) {
    await vtyshBoot(paths, host);
    writeFingerprints(paths.file(POLICY_FILE), fingerprints);
    return;
  }
  // A daemon started next to running ones (it died, or the section now needs it) gets the whole
  // file first: frr-reload diffs against the merged running config of all daemons, so it would
  // not resend route-maps and prefix-lists the other daemons already show.
  for (const d of started) await vtyshBoot(paths, host, d);
  await frrReload(paths, host);
  // a bgpd that ran before this change holds routes filtered by the old policy (a fresh one has
  // fresh sessions); without a record of what was applied, refresh every neighbor once
  if (alive.has('bgpd') && model.daemons.includes('bgpd')) {
    const prev = readFingerprints(paths.file(POLICY_FILE)) ?? Object.fromEntries(Object.entries(fingerprints).map(([a]) => [a, { in: '', out: '' }]));
    await softRefresh(host, paths.runDir, refreshesFor(prev, fingerprints, model));
  }
  writeFingerprints(paths.file(POLICY_FILE), fingerprints);
}

/** fingerprints of the BGP policy last applied (refresh.ts), beside the rendered files */
const POLICY_FILE = 'bgp-policy.json';

async function vtyshBoot(paths: InstancePaths, host: Host, only?: FrrDaemon): Promise<void> {
  const r = await host.run('vtysh', ['--config_dir', paths.dir, '--vty_socket', paths.runDir, ...(only ? ['-d', only] : []), '-b'], { reject: false });
  if (r.exitCode !== 0) {
    const out = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() && !/vtysh\.conf/.test(l)).join('\n');
    throw new DaemonError('frr', `loading ${paths.file('frr.conf')} with vtysh -b${only ? ` into ${only}` : ''} failed (exit ${r.exitCode})`, `${out}\n${tailLog(paths.file('frr.log'), 10)}`.trim());
  }
}

async function frrReload(paths: InstancePaths, host: Host): Promise<void> {
  const script = path.join(frrBinDir(), 'frr-reload.py');
  const args = [script, '--reload', '--stdout', '--bindir', path.dirname(vtyshPath()), '--confdir', paths.dir, '--rundir', paths.runDir, '--vty_socket', paths.runDir, paths.file('frr.conf')];
  const r = await host.run('python3', args, { reject: false, timeout: 60_000 });
  if (r.exitCode !== 0) {
    const out = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /ERROR|WARNING|failed|%/.test(l)).join('\n');
    throw new DaemonError('frr', `frr-reload.py could not apply ${paths.file('frr.conf')} (exit ${r.exitCode})`, out || (r.stderr || r.stdout).trim());
  }
}

function vtyshPath(): string {
  return ['/usr/bin/vtysh', '/usr/local/bin/vtysh'].find((p) => existsSync(p)) ?? '/usr/bin/vtysh';
}

function pidFile(paths: InstancePaths, d: FrrDaemon): string {
  return path.join(paths.runDir, `${d}.pid`);
}

function vtySocket(paths: InstancePaths, d: FrrDaemon): string {
  return path.join(paths.runDir, `${d}.vty`);
}

function zservSocket(paths: InstancePaths): string {
  return path.join(paths.runDir, 'zserv.api');
}

/** FRR checks that its user is in the vty group; running as root with that group passes the check. */
function vtyGroup(): string {
  try {
    return /^frrvty:/m.test(readFileSync('/etc/group', 'utf8')) ? 'frrvty' : 'root';
  } catch {
    return 'root';
  }
}

function daemonSpec(d: FrrDaemon, paths: InstancePaths, modules: readonly string[]): DaemonSpec {
  const command = path.join(frrBinDir(), d);
  const args = ['-f', '/dev/null', '-i', pidFile(paths, d), '-z', zservSocket(paths), '--vty_socket', paths.runDir, '-P', '0', '-u', 'root', '-g', vtyGroup()];
  for (const m of modules) args.push('-M', m);
  return {
    name: `frr ${d}`,
    command,
    args,
    pidFile: pidFile(paths, d),
    daemonWritesPid: true,
    logFile: paths.file(`${d}.log`),
    ready: async () => existsSync(vtySocket(paths, d)) && (d !== 'zebra' || existsSync(zservSocket(paths))),
    readyTimeoutMs: 30_000,
  };
}

/** The daemons the applied configuration runs (undefined when FRR is not configured). */
export function wantedDaemons(paths: InstancePaths): FrrDaemon[] | undefined {
  return readDaemons(paths)?.daemons;
}

function readDaemons(paths: InstancePaths): { daemons: FrrDaemon[] } | undefined {
  try {
    return JSON.parse(readFileSync(paths.file('daemons.json'), 'utf8')) as { daemons: FrrDaemon[] };
  } catch {
    return undefined;
  }
}
