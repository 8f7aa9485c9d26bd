/**
 * keepalived (VRRP only, -P) as a ServiceModule: one instance per Host, run
 * in the foreground under direct supervision with its own pid files for the
 * parent and the VRRP/checker/BFD children (a second keepalived with the
 * default pid files exits silently). Reload is SIGHUP: instances whose
 * settings did not change keep their state and addresses.
 *
 * State transitions come from a notify script keepalived runs (render.ts):
 * an event log and one state file per instance under <instance>/state/,
 * read by status() and followed by watchHaEvents().
 */
import { existsSync, readFileSync, readdirSync, watch, openSync, readSync, closeSync, statSync } from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { Host } from '../../system/host.js';
import type { ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import { daemonPid, signalDaemon, startDaemon, stopDaemon, tailLog, type DaemonSpec } from '../common/daemon.js';
import type { InstancePaths, ServiceModule } from '../common/service.js';
import { compileKeepalived, renderKeepalivedConf, renderNotifyScript, type KeepalivedModel } from './render.js';
import { conntrackdConfPath } from '../conntrackd/module.js';

export type VrrpState = 'INIT' | 'BACKUP' | 'MASTER' | 'FAULT' | 'STOP';

/** metrics value of each state (patronus_vrrp_state) */
export const VRRP_STATE_CODE: Record<VrrpState, number> = { INIT: 0, BACKUP: 1, MASTER: 2, FAULT: 3, STOP: 4 };

export interface HaEvent {
  /** unix time, seconds with fraction, when keepalived ran the notify script */
  time: number;
  kind: 'INSTANCE' | 'GROUP';
  name: string;
  state: VrrpState;
  priority: number;
}

export interface HaInstanceStatus {
  name: string;
  state: VrrpState;
  stateCode: number;
  /** unix seconds of the last transition */
  since: number | null;
  priority: number | null;
  /** transitions seen since the instance dir was created, per target state */
  transitions: Partial<Record<VrrpState, number>>;
}

export interface HaStatus {
  pid?: number;
  instances: HaInstanceStatus[];
}

export const keepalivedModule: ServiceModule<KeepalivedModel> = {
  name: 'keepalived',

  desired(ctx) {
    const { model, issues } = compileKeepalived(ctx.config.ha);
    return { desired: model, issues };
  },

  render(model, paths) {
    const notify = paths.file('notify.sh');
    return [
      { path: 'keepalived.conf', content: renderKeepalivedConf(model, notify) },
      {
        path: 'notify.sh',
        content: renderNotifyScript(
          stateDir(paths),
          model.conntrackSync ? { conf: conntrackdConfPath(path.resolve(paths.dir, '..', '..')), groupedInstances: model.groups.flatMap((g) => g.instances) } : undefined,
        ),
        mode: 0o755,
      },
      { path: 'instances.json', content: `${JSON.stringify(model.instances.map((i) => i.name))}\n` },
    ];
  },

  async check(_model, paths, host) {
    // keepalived's checker must run in the namespace: it looks the interfaces up
    const r = await host.run('keepalived', ['-t', '-e', '-f', paths.file('keepalived.conf'), ...pidArgs(paths)], { reject: false, timeout: 20_000 });
    if (r.exitCode === 0) return [];
    const lines = `${r.stderr}\n${r.stdout}`.split('\n').map((l) => l.replace(/^\(.*?keepalived\.conf: /, '(')).filter((l) => l.trim());
    return [{ path: ['ha'], message: `keepalived rejected the rendered configuration (keepalived -t exited ${r.exitCode}): ${lines.join('; ')}` }];
  },

  async start(_model, paths, host) {
    await startDaemon(host, daemonSpec(paths));
  },

  async reload(_model, paths) {
    signalDaemon(daemonSpec(paths), 'SIGHUP');
  },

  async stop(paths) {
    // keepalived removes its virtual addresses on SIGTERM
    await stopDaemon(daemonSpec(paths), 10_000);
  },

  async running(paths) {
    return daemonPid(paths.pidFile, 'keepalived') !== undefined;
  },

  async status(paths): Promise<HaStatus> {
    return readHaStatus(paths);
  },

  openings(config: Config): ServiceOpening[] {
    return keepalivedOpenings(config);
  },
};

/** VRRP (IP protocol 112) on every interface an instance advertises on. */
export function keepalivedOpenings(config: Config): ServiceOpening[] {
  const ha = config.ha;
  if (!ha.enabled || !ha.instances.length) return [];
  return [{ service: 'keepalived', proto: 'vrrp', interfaces: [...new Set(ha.instances.map((i) => i.interface))] }];
}

export function readHaStatus(paths: InstancePaths): HaStatus {
  const dir = stateDir(paths);
  let names: string[] = [];
  try {
    names = JSON.parse(readFileSync(paths.file('instances.json'), 'utf8')) as string[];
  } catch {
    /* not configured */
  }
  const events = readHaEvents(dir).events;
  const pid = daemonPid(paths.pidFile, 'keepalived');
  const instances = names.map((name): HaInstanceStatus => {
    let state: VrrpState = 'INIT';
    let since: number | null = null;
    let priority: number | null = null;
    try {
      const [s, t, p] = readFileSync(path.join(dir, `state.${name}`), 'utf8').trim().split(/\s+/);
      state = (s as VrrpState) ?? 'INIT';
      since = Number(t);
      priority = Number(p);
    } catch {
      /* no transition yet */
    }
    if (!pid) state = 'STOP';
    const transitions: HaInstanceStatus['transitions'] = {};
    for (const e of events) if (e.kind === 'INSTANCE' && e.name === name) transitions[e.state] = (transitions[e.state] ?? 0) + 1;
    return { name, state, stateCode: VRRP_STATE_CODE[state], since, priority, transitions };
  });
  return { ...(pid ? { pid } : {}), instances };
}

/** Events recorded since byte `offset` of the event log; `next` is where to continue. */
export function readHaEvents(dir: string, offset = 0): { events: HaEvent[]; next: number } {
  const file = path.join(dir, 'events.log');
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return { events: [], next: 0 };
  }
  if (size < offset) offset = 0; // the log was recreated
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(size - offset);
    readSync(fd, buf, 0, buf.length, offset);
    const text = buf.toString('utf8');
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    return { events: complete.split('\n').filter(Boolean).map(parseEvent).filter((e): e is HaEvent => !!e), next: offset + Buffer.byteLength(complete) };
  } finally {
    closeSync(fd);
  }
}

/**
 * Follows the event log of the keepalived instance at `paths` and emits
 * 'event' (HaEvent) for each transition from now on. close() stops it.
 */
export function watchHaEvents(paths: InstancePaths, pollMs = 250): EventEmitter<{ event: [HaEvent] }> & { close(): void } {
  const dir = stateDir(paths);
  const em = new EventEmitter<{ event: [HaEvent] }>() as EventEmitter<{ event: [HaEvent] }> & { close(): void };
  let next = readHaEvents(dir).next;
  const pump = () => {
    const r = readHaEvents(dir, next);
    next = r.next;
    for (const e of r.events) em.emit('event', e);
  };
  // fs.watch misses events on some filesystems and needs the dir to exist: poll as well
  const timer = setInterval(pump, pollMs);
  timer.unref();
  let watcher: ReturnType<typeof watch> | undefined;
  try {
    if (existsSync(dir)) watcher = watch(dir, pump);
  } catch {
    watcher = undefined;
  }
  em.close = () => {
    clearInterval(timer);
    watcher?.close();
  };
  return em;
}

export function stateDir(paths: InstancePaths): string {
  return paths.file('state');
}

function pidArgs(paths: InstancePaths): string[] {
  return ['-p', paths.pidFile, '-r', path.join(paths.runDir, 'vrrp.pid'), '-c', path.join(paths.runDir, 'checkers.pid'), '-b', path.join(paths.runDir, 'bfd.pid')];
}

function daemonSpec(paths: InstancePaths): DaemonSpec {
  const vrrpPid = path.join(paths.runDir, 'vrrp.pid');
  return {
    name: 'keepalived',
    command: 'keepalived',
    // -n foreground, -l log to stdout (our log file), -G no syslog, -P VRRP only
    args: ['-n', '-l', '-D', '-G', '-P', '-f', paths.file('keepalived.conf'), ...pidArgs(paths)],
    pidFile: paths.pidFile,
    daemonWritesPid: true,
    logFile: paths.logFile,
    // serving once the VRRP child runs
    ready: async () => daemonPid(vrrpPid, 'keepalived') !== undefined,
    readyTimeoutMs: 30_000,
  };
}

/** For messages: the log tail of the instance (start-up failures carry it already). */
export function keepalivedLog(paths: InstancePaths, lines = 20): string {
  return tailLog(paths.logFile, lines);
}

/** Instance names that have state files (for debugging). */
export function knownInstances(paths: InstancePaths): string[] {
  const dir = stateDir(paths);
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith('state.') && !f.endsWith('.tmp')).map((f) => f.slice(6)) : [];
}

function parseEvent(line: string): HaEvent | undefined {
  const [t, kind, name, state, prio] = line.split(' ');
  if (!t || !name || !state || (kind !== 'INSTANCE' && kind !== 'GROUP')) return undefined;
  return { time: Number(t), kind, name, state: state as VrrpState, priority: Number(prio ?? 0) };
}
