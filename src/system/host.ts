/**
 * Where the control plane acts. Every command Patronus runs goes through a
 * Host, so the same code drives the machine's own network namespace in
 * production and a lab namespace in tests. Arguments are always arrays;
 * nothing is ever passed through a shell.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { release } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { inNetns, netnsCommand } from './netns.js';
import { addon, addonAvailable } from '../bpf/addon.js';
import { runInSpawner, spawnerEnabled } from './spawner.js';

/** The state directories of `serve` and `serve --lab` (src/api/serve.ts); their pin roots carry no state-dir suffix. */
export const DEFAULT_STATE_DIR = '/var/lib/patronus';
export const LAB_STATE_DIR = '/var/lib/patronus-lab';

export interface RunOptions {
  input?: string;
  timeout?: number;
  env?: Record<string, string>;
  reject?: boolean;
  cwd?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** How long Host.run lets a command take unless the caller says otherwise. */
export const COMMAND_TIMEOUT_MS = 120_000;

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly result: RunResult,
    readonly where: string,
  ) {
    super(`${command} ${args.join(' ')} (${where}) exited ${result.exitCode}: ${(result.stderr || result.stdout).trim()}`);
    this.name = 'CommandError';
  }
}

export class Host {
  /**
   * netns: act inside /var/run/netns/NAME instead of the current namespace.
   * stateDir: where Patronus keeps its store, rendered files and pid files.
   */
  private readonly pinRoot: string;

  constructor(
    readonly opts: { netns?: string; stateDir: string; bpfRoot?: string },
  ) {
    if (!opts.netns && process.env.PATRONUS_REQUIRE_NETNS === '1') {
      throw new Error('PATRONUS_REQUIRE_NETNS=1: refusing a Host without a network namespace (tests must never act on the host)');
    }
    // computed now: inside inNetns() the thread's namespace is another one
    this.pinRoot = opts.bpfRoot ?? defaultBpfRoot(opts);
  }

  get netns(): string | undefined {
    return this.opts.netns;
  }

  get stateDir(): string {
    return this.opts.stateDir;
  }

  /** bpffs directory for this host's pins (see defaultBpfRoot). */
  get bpfRoot(): string {
    return this.pinRoot;
  }

  get where(): string {
    return this.opts.netns ? `netns ${this.opts.netns}` : 'host';
  }

  /** Runs a command to completion in this host's network namespace. */
  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const [file, argv] = this.command(cmd, args);
    // every command is bounded: one stuck on a dead daemon or socket fails, named, instead of hanging the caller
    const timeout = opts.timeout ?? COMMAND_TIMEOUT_MS;
    if (spawnerEnabled()) {
      // serve: spawned from a worker thread, so the wait for the child's exec never holds this thread (src/system/spawner.ts)
      const r = await runInSpawner({ file, args: argv, timeout, env: { ...process.env, ...opts.env }, ...(opts.input !== undefined ? { input: opts.input } : {}), ...(opts.cwd ? { cwd: opts.cwd } : {}) });
      const result = { stdout: r.stdout, stderr: r.timedOut ? `${r.stderr}${r.stderr ? '\n' : ''}timed out after ${timeout} ms (killed)` : r.stderr, exitCode: r.exitCode };
      if (result.exitCode !== 0 && opts.reject !== false) throw new CommandError(cmd, args, result, this.where);
      return result;
    }
    const r = await execa(file, argv, {
      reject: false,
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      timeout,
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    const stderr = String(r.stderr ?? '');
    const result = { stdout: String(r.stdout ?? ''), stderr: r.timedOut ? `${stderr}${stderr ? '\n' : ''}timed out after ${timeout} ms (killed)` : stderr, exitCode: r.exitCode ?? -1 };
    if (result.exitCode !== 0 && opts.reject !== false) throw new CommandError(cmd, args, result, this.where);
    return result;
  }

  /** Starts a long-running process in this host's namespace (the caller supervises it). */
  spawn(cmd: string, args: readonly string[], opts: { env?: Record<string, string>; cwd?: string } = {}) {
    const [file, argv] = this.command(cmd, args);
    return execa(file, argv, { reject: false, buffer: false, stdin: 'ignore', ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}), ...(opts.cwd ? { cwd: opts.cwd } : {}) });
  }

  /** Runs synchronous BPF attach/query code inside this host's namespace. */
  inNetns<T>(fn: () => T): T {
    return this.opts.netns ? inNetns(this.opts.netns, fn) : fn();
  }

  async ifindex(dev: string): Promise<number> {
    // if_nametoindex inside the namespace: no `ip` process (~50-100 ms each here, several per apply)
    if (addonAvailable()) {
      const idx = this.inNetns(() => addon().ifNameToIndex(dev));
      if (!idx) throw new Error(`interface ${dev} does not exist (${this.where})`);
      return idx;
    }
    const r = await this.run('ip', ['-j', 'link', 'show', 'dev', dev], { reject: false });
    if (r.exitCode !== 0) throw new Error(`interface ${dev} does not exist (${this.where})`);
    return (JSON.parse(r.stdout) as { ifindex: number }[])[0]!.ifindex;
  }

  /**
   * The file and argv that run a command in this host's namespace (for
   * callers that spawn themselves, like daemon supervision). nsenter changes
   * only the network namespace (keeps /sys/fs/bpf and the host's /etc), which
   * is what daemons with explicit config paths want.
   */
  command(cmd: string, args: readonly string[]): [string, string[]] {
    return netnsCommand(this.opts.netns, cmd, args);
  }
}

/**
 * The pin root of a Host: one per network namespace and state directory, so
 * two instances never adopt each other's programs (bpffs is shared by every
 * namespace). /sys/fs/bpf/patronus, then
 *   -NAME        with --netns NAME (the named namespace);
 *   -net<INODE>  without --netns, when the process runs in another network
 *                namespace than the machine's own (e.g. entered with nsenter);
 *   -<HASH>      when the state directory is not the default one (12 hex
 *                digits of the SHA-256 of its absolute path).
 * The machine's own namespace with the default state directory keeps
 * /sys/fs/bpf/patronus (and `serve --lab` /sys/fs/bpf/patronus-patronus-lab).
 */
export function defaultBpfRoot(opts: { netns?: string; stateDir: string }): string {
  let name = 'patronus';
  if (opts.netns) name += `-${opts.netns}`;
  else {
    const here = currentNetnsInode();
    if (!isInitialNetns(here)) name += `-net${here}`;
  }
  const stateDir = path.resolve(opts.stateDir);
  if (stateDir !== DEFAULT_STATE_DIR && stateDir !== LAB_STATE_DIR) {
    name += `-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`;
  }
  return `/sys/fs/bpf/${name}`;
}

/** Inode of the network namespace the calling thread is in (inside Host.inNetns: the target's). */
export function currentNetnsInode(): number {
  return statSync('/proc/thread-self/ns/net').ino;
}

/**
 * The inode of the initial network namespace on kernels that number initial
 * namespaces statically (NET_NS_INIT_INO, Linux 6.18 and later).
 */
const NET_NS_INIT_INO = 0xeffffff9;

/**
 * Whether a network namespace is the machine's own: the kernel's fixed
 * number for it, or else pid 1's namespace. Where pid 1 cannot be read (no
 * ptrace access), a kernel from 6.18 on would have given the fixed number,
 * so the namespace is another one; on an older kernel it counts as the
 * machine's own (the pin root of earlier versions), and the owner mark on
 * the pins still refuses another namespace's data plane.
 */
function isInitialNetns(inode: number): boolean {
  if (inode === NET_NS_INIT_INO) return true;
  try {
    return statSync('/proc/1/ns/net').ino === inode;
  } catch {
    const [major = 0, minor = 0] = release().split('.').map((n) => parseInt(n, 10));
    return major < 6 || (major === 6 && minor < 18);
  }
}

/**
 * Whether a network namespace still exists: some thread is in it or a bind
 * mount (ip netns) holds it. A namespace held only by an open descriptor is
 * not seen.
 */
export function netnsExists(inode: number): boolean {
  const tag = `net:[${inode}]`;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const tid of tids) {
      try {
        if (readlinkSync(`/proc/${pid}/task/${tid}/ns/net`) === tag) return true;
      } catch {
        /* exited meanwhile */
      }
    }
  }
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[3] === tag);
}
