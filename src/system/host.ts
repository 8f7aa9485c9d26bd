/**
 * Where the control plane acts. Every command Patronus runs goes through a
 * Host, so the same code drives the machine's own network namespace in
 * production and a lab namespace in tests. Arguments are always arrays;
 * nothing is ever passed through a shell.
 */
import { execa } from 'execa';
import { inNetns } from '../bpf/index.js';

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
  constructor(
    readonly opts: { netns?: string; stateDir: string; bpfRoot?: string },
  ) {
    if (!opts.netns && process.env.PATRONUS_REQUIRE_NETNS === '1') {
      throw new Error('PATRONUS_REQUIRE_NETNS=1: refusing a Host without a network namespace (tests must never act on the host)');
    }
  }

  get netns(): string | undefined {
    return this.opts.netns;
  }

  get stateDir(): string {
    return this.opts.stateDir;
  }

  /** bpffs directory for this host's pins. */
  get bpfRoot(): string {
    return this.opts.bpfRoot ?? `/sys/fs/bpf/patronus${this.opts.netns ? `-${this.opts.netns}` : ''}`;
  }

  get where(): string {
    return this.opts.netns ? `netns ${this.opts.netns}` : 'host';
  }

  /** Runs a command to completion in this host's network namespace. */
  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const [file, argv] = this.wrap(cmd, args);
    const r = await execa(file, argv, {
      reject: false,
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    const result = { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
    if (result.exitCode !== 0 && opts.reject !== false) throw new CommandError(cmd, args, result, this.where);
    return result;
  }

  /** Starts a long-running process in this host's namespace (the caller supervises it). */
  spawn(cmd: string, args: readonly string[], opts: { env?: Record<string, string>; cwd?: string } = {}) {
    const [file, argv] = this.wrap(cmd, args);
    return execa(file, argv, { reject: false, buffer: false, stdin: 'ignore', ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}), ...(opts.cwd ? { cwd: opts.cwd } : {}) });
  }

  /** Runs synchronous BPF attach/query code inside this host's namespace. */
  inNetns<T>(fn: () => T): T {
    return this.opts.netns ? inNetns(this.opts.netns, fn) : fn();
  }

  async ifindex(dev: string): Promise<number> {
    const r = await this.run('ip', ['-j', 'link', 'show', 'dev', dev], { reject: false });
    if (r.exitCode !== 0) throw new Error(`interface ${dev} does not exist (${this.where})`);
    return (JSON.parse(r.stdout) as { ifindex: number }[])[0]!.ifindex;
  }

  /**
   * nsenter changes only the network namespace (keeps /sys/fs/bpf and the
   * host's /etc), which is what daemons with explicit config paths want.
   */
  private wrap(cmd: string, args: readonly string[]): [string, string[]] {
    if (!this.opts.netns) return [cmd, [...args]];
    return ['nsenter', [`--net=/var/run/netns/${this.opts.netns}`, '--', cmd, ...args]];
  }
}
