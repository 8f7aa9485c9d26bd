/**
 * Network-namespace lab for tests and benchmarks: fresh namespaces with
 * unique names, veth pairs between them, commands run inside them, and a
 * teardown that always runs (call it in `after`/`finally`). Nothing here
 * touches the root namespace's interfaces or rules.
 */
import { execa } from 'execa';

/** The execa options tests use (kept narrow so stdout stays typed as a string). */
export interface RunOptions {
  reject?: boolean;
  input?: string;
  timeout?: number;
  env?: Record<string, string>;
}
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';

export interface VethEnd {
  ns: Netns;
  dev: string;
  address?: string; // CIDR
}

export class Netns {
  constructor(readonly name: string) {}

  get path(): string {
    return `/var/run/netns/${this.name}`;
  }

  /** Runs a command inside the namespace (ip netns exec: per-ns /etc, fresh /sys). */
  exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}) {
    return execa('ip', ['netns', 'exec', this.name, cmd, ...args], { ...opts });
  }

  /** Runs a command that only changes the network namespace (keeps /sys/fs/bpf). */
  nsenter(cmd: string, args: readonly string[] = [], opts: RunOptions = {}) {
    return execa('nsenter', [`--net=${this.path}`, '--', cmd, ...args], { ...opts });
  }

  /** Starts a long-running process inside the namespace. */
  spawn(cmd: string, args: readonly string[] = [], opts: RunOptions = {}) {
    return execa('nsenter', [`--net=${this.path}`, '--', cmd, ...args], { reject: false, ...opts });
  }

  async ip(...args: string[]) {
    return execa('ip', ['-n', this.name, ...args]);
  }

  async ifindex(dev: string): Promise<number> {
    const { stdout } = await execa('ip', ['-n', this.name, '-j', 'link', 'show', 'dev', dev]);
    const [link] = JSON.parse(stdout) as { ifindex: number }[];
    if (!link) throw new Error(`no interface ${dev} in netns ${this.name}`);
    return link.ifindex;
  }

  async mac(dev: string): Promise<string> {
    const { stdout } = await execa('ip', ['-n', this.name, '-j', 'link', 'show', 'dev', dev]);
    return (JSON.parse(stdout) as { address: string }[])[0]!.address;
  }

  async sysctl(key: string, value: string) {
    await this.exec('sysctl', ['-q', '-w', `${key}=${value}`]);
  }
}

export class Lab {
  readonly namespaces: Netns[] = [];
  readonly id = randomBytes(3).toString('hex');

  /** A fresh namespace named pt-<pid>-<lab id>-<name>, with lo up. */
  async ns(name: string): Promise<Netns> {
    // pt-<creator pid>-<lab id>-<name>: the pid lets a sweep tell abandoned namespaces from live ones
    const ns = new Netns(`pt-${process.pid}-${this.id}-${name}`);
    await execa('ip', ['netns', 'add', ns.name]);
    this.namespaces.push(ns);
    await ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** A veth pair between two namespaces, both ends up, addresses assigned. */
  async veth(a: VethEnd, b: VethEnd): Promise<void> {
    const tmpA = `pv${randomBytes(5).toString('hex')}`;
    const tmpB = `pv${randomBytes(5).toString('hex')}`;
    await execa('ip', ['link', 'add', tmpA, 'netns', a.ns.name, 'type', 'veth', 'peer', 'name', tmpB, 'netns', b.ns.name]);
    await a.ns.ip('link', 'set', tmpA, 'name', a.dev);
    await b.ns.ip('link', 'set', tmpB, 'name', b.dev);
    for (const end of [a, b]) {
      if (end.address) await end.ns.ip('addr', 'add', end.address, 'dev', end.dev, ...(end.address.includes(':') ? ['nodad'] : []));
      await end.ns.ip('link', 'set', end.dev, 'up');
    }
  }

  /** Removes every namespace this lab made (and with them their veths). Never throws. */
  async teardown(): Promise<void> {
    for (const ns of this.namespaces.splice(0).reverse()) {
      // processes still inside keep the namespace alive; kill them first
      const pids = await execa('ip', ['netns', 'pids', ns.name], { reject: false });
      for (const pid of pids.stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      const r = await execa('ip', ['netns', 'del', ns.name], { reject: false });
      if (r.exitCode !== 0 && existsSync(ns.path)) console.error(`# lab teardown: ip netns del ${ns.name}: ${r.stderr}`);
      removeDefaultPins(ns.name);
    }
  }
}

/**
 * Removes namespaces left by crashed runs: names pt-<pid>-* whose creating
 * process is gone. Live runs (other test processes) and every other
 * namespace are left alone.
 */
export async function sweepStaleNamespaces(): Promise<void> {
  const { stdout } = await execa('ip', ['-j', 'netns', 'list'], { reject: false });
  if (!stdout) return;
  for (const { name } of JSON.parse(stdout) as { name: string }[]) {
    const m = /^pt-(\d+)-[0-9a-f]{6}-/.exec(name);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    const pids = await execa('ip', ['netns', 'pids', name], { reject: false });
    for (const pid of pids.stdout.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await execa('ip', ['netns', 'del', name], { reject: false });
  }
  // default pin directories of Hosts in namespaces whose creator is gone
  for (const dir of existsSync('/sys/fs/bpf') ? readdirSync('/sys/fs/bpf') : []) {
    const m = /^patronus-pt-(\d+)-[0-9a-f]{6}-/.exec(dir);
    if (m && !existsSync(`/proc/${m[1]}`)) rmSync(`/sys/fs/bpf/${dir}`, { recursive: true, force: true });
  }
}

/**
 * A Host in namespace NAME pins under /sys/fs/bpf/patronus-NAME, or
 * patronus-NAME-<state dir hash> with a state dir of its own, by default
 * (src/system/host.ts defaultBpfRoot).
 */
function removeDefaultPins(nsName: string): void {
  if (!existsSync('/sys/fs/bpf')) return;
  for (const f of readdirSync('/sys/fs/bpf')) {
    if (f === `patronus-${nsName}` || new RegExp(`^patronus-${nsName}-[0-9a-f]{12}$`).test(f)) rmSync(`/sys/fs/bpf/${f}`, { recursive: true, force: true });
  }
}
