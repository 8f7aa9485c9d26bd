/**
 * Direct supervision of gateway daemons where no init system runs (the case
 * on these machines): each instance runs detached in the Host's network
 * namespace with its own pid file and log file, so it keeps running while the
 * control plane restarts and is adopted again through its pid file.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Host } from '../../system/host.js';

export interface DaemonSpec {
  /** instance name for messages, e.g. "unbound" */
  name: string;
  command: string;
  args: readonly string[];
  env?: Record<string, string>;
  pidFile: string;
  /** true when the daemon writes pidFile itself (then its pid is read from there) */
  daemonWritesPid?: boolean;
  /** the daemon forks into the background itself (then pidFile must be written by it) */
  forks?: boolean;
  logFile: string;
  /** resolves true once the daemon serves */
  ready?: () => Promise<boolean>;
  readyTimeoutMs?: number;
  /** how long it must stay up after ready before start counts as done (default 200 ms) */
  settleMs?: number;
}

export class DaemonError extends Error {
  constructor(
    readonly daemon: string,
    message: string,
    readonly log: string,
  ) {
    super(`${daemon}: ${message}${log ? `\n--- last lines of its log ---\n${log}` : ''}`);
    this.name = 'DaemonError';
  }
}

/** The pid of a live process recorded in pidFile whose command matches, else undefined. */
export function daemonPid(pidFile: string, command?: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/^\d+ \(.*\) Z /.test(stat)) return undefined; // zombie
    if (command) {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const base = path.basename(command);
      if (!cmdline.some((a) => path.basename(a) === base || a.includes(base))) return undefined;
    }
    return pid;
  } catch {
    return undefined;
  }
}

/**
 * Seconds since the process started (from /proc: its start time in clock
 * ticks since boot against the system uptime); undefined when it is gone.
 */
export function processUptime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the command name (which may hold spaces): state is field 3, starttime field 22
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTicks = Number(fields[19]);
    const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    return Math.max(0, Math.round((uptime - startTicks / CLOCK_TICKS) * 10) / 10);
  } catch {
    return undefined;
  }
}

/** USER_HZ: 100 on every Linux architecture Patronus runs on (sysconf(_SC_CLK_TCK)). */
const CLOCK_TICKS = 100;

export function tailLog(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      /* not ready yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Starts the daemon unless it already runs (adoption). Resolves with its pid
 * once ready; rejects with the log tail when it exits or never gets ready.
 */
export async function startDaemon(host: Host, spec: DaemonSpec): Promise<number> {
  const existing = daemonPid(spec.pidFile, spec.command);
  if (existing) return existing;
  mkdirSync(path.dirname(spec.pidFile), { recursive: true });
  mkdirSync(path.dirname(spec.logFile), { recursive: true });
  rmSync(spec.pidFile, { force: true });

  const [file, argv] = host.command(spec.command, spec.args);
  const log = openSync(spec.logFile, 'a');
  let exitInfo: string | undefined;
  const child = spawn(file, argv, {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, ...spec.env },
  });
  closeSync(log);
  const spawned = await new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(new DaemonError(spec.name, `cannot start ${spec.command}: ${e.message}`, '')));
    child.once('spawn', () => resolve(child.pid!));
  });
  child.once('exit', (code, signal) => {
    exitInfo = signal ? `killed by ${signal}` : `exited with status ${code}`;
  });
  child.unref();
  if (!spec.daemonWritesPid && !spec.forks) writeFileSync(spec.pidFile, `${spawned}\n`);

  // generous: a daemon that runs is usually ready in well under a second, but a loaded machine can be 10x slower;
  // a daemon that exits fails at once, so only one that runs and never gets ready waits this long
  const timeout = spec.readyTimeoutMs ?? 30_000;
  try {
    await waitFor(
      async () => {
        // a foreground daemon that exited is a failure (reported below: waitFor
        // treats a throwing check as "not ready yet"); a forking one exits on purpose
        if (exitInfo && !spec.forks) return true;
        if (!daemonPid(spec.pidFile, spec.command)) return false;
        return spec.ready ? spec.ready() : true;
      },
      timeout,
      `${spec.name} to become ready`,
    );
    if (exitInfo && !spec.forks) throw new DaemonError(spec.name, `${spec.command} ${exitInfo} during start-up`, tailLog(spec.logFile));
  } catch (e) {
    if (e instanceof DaemonError) throw e;
    if (exitInfo && !spec.forks) throw new DaemonError(spec.name, `${spec.command} ${exitInfo} during start-up`, tailLog(spec.logFile));
    await stopDaemon(spec).catch(() => undefined);
    throw new DaemonError(spec.name, (e as Error).message, tailLog(spec.logFile));
  }
  // a daemon that dies right after start-up (bad config found late) is a failure too
  await new Promise((r) => setTimeout(r, spec.settleMs ?? 200));
  const pid = daemonPid(spec.pidFile, spec.command);
  if (!pid) throw new DaemonError(spec.name, `${spec.command} ${exitInfo ?? 'exited'} right after start-up`, tailLog(spec.logFile));
  return pid;
}

/** Sends SIGTERM, waits, then SIGKILL. Harmless when not running. */
export async function stopDaemon(spec: Pick<DaemonSpec, 'name' | 'pidFile' | 'command'>, timeoutMs = 5000): Promise<void> {
  const pid = daemonPid(spec.pidFile, spec.command);
  if (!pid) {
    rmSync(spec.pidFile, { force: true });
    return;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* gone already */
  }
  try {
    await waitFor(() => !existsSync(`/proc/${pid}`) || isZombie(pid), timeoutMs, `${spec.name} (pid ${pid}) to exit`);
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    // gone before returning: a restart right after must not find its sockets and ports still held
    await waitFor(() => !existsSync(`/proc/${pid}`) || isZombie(pid), 10_000, `${spec.name} (pid ${pid}) to exit after SIGKILL`).catch(() => undefined);
  }
  rmSync(spec.pidFile, { force: true });
}

/** Sends a signal (e.g. SIGHUP for reload) to the running instance. */
export function signalDaemon(spec: Pick<DaemonSpec, 'name' | 'pidFile' | 'command'>, signal: NodeJS.Signals): void {
  const pid = daemonPid(spec.pidFile, spec.command);
  if (!pid) throw new Error(`${spec.name} is not running (no live pid in ${spec.pidFile})`);
  process.kill(pid, signal);
}

function isZombie(pid: number): boolean {
  try {
    return / Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^\d+ \(.*\)/, ''));
  } catch {
    return true;
  }
}
