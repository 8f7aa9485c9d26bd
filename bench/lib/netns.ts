/**
 * Network-namespace lab for tests and benchmarks: fresh namespaces with
 * unique names, veth pairs between them, commands run inside them, and a
 * teardown that always runs (call it in `after`/`finally`). Nothing here
 * touches the root namespace's interfaces or rules.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { addNamespace, addVethPair, deleteNamespace, netnsCommand, netnsPath } from '../../src/system/netns.js';
import { COMMAND_TIMEOUT_MS, type RunOptions } from '../../src/system/host.js';

// a command's options and its bound are Host's (src/system/host.ts): one stuck on a dead daemon or a
// lost packet fails, naming the command, instead of hanging the test file
export { COMMAND_TIMEOUT_MS, type RunOptions };

export interface VethEnd {
  ns: Netns;
  dev: string;
  address?: string; // CIDR
}

export class Netns {
  constructor(readonly name: string) {}

  get path(): string {
    return netnsPath(this.name);
  }

  /** Runs a command inside the namespace (ip netns exec: per-ns /etc, fresh /sys). */
  exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}) {
    return execa('ip', ['netns', 'exec', this.name, cmd, ...args], { timeout: COMMAND_TIMEOUT_MS, ...opts });
  }

  /** Runs a command that only changes the network namespace (keeps /sys/fs/bpf). */
  nsenter(cmd: string, args: readonly string[] = [], opts: RunOptions = {}) {
    const [file, argv] = netnsCommand(this.name, cmd, args);
    return execa(file, argv, { timeout: COMMAND_TIMEOUT_MS, ...opts });
  }

  /**
   * Starts a long-running process inside the namespace (no timeout: stop it
   * in finally/after; Lab.teardown kills whatever is left in the namespace).
   */
  spawn(cmd: string, args: readonly string[] = [], opts: RunOptions = {}) {
    const [file, argv] = netnsCommand(this.name, cmd, args);
    return execa(file, argv, { reject: false, ...opts });
  }

  async ip(...args: string[]) {
    return execa('ip', ['-n', this.name, ...args], { timeout: COMMAND_TIMEOUT_MS });
  }

  async ifindex(dev: string): Promise<number> {
    const { stdout } = await execa('ip', ['-n', this.name, '-j', 'link', 'show', 'dev', dev], { timeout: COMMAND_TIMEOUT_MS });
    const [link] = JSON.parse(stdout) as { ifindex: number }[];
    if (!link) throw new Error(`no interface ${dev} in netns ${this.name}`);
    return link.ifindex;
  }

  async mac(dev: string): Promise<string> {
    const { stdout } = await execa('ip', ['-n', this.name, '-j', 'link', 'show', 'dev', dev], { timeout: COMMAND_TIMEOUT_MS });
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
    await addNamespace(ns.name);
    this.namespaces.push(ns);
    return ns;
  }

  /** A veth pair between two namespaces, both ends up, addresses assigned. */
  async veth(a: VethEnd, b: VethEnd): Promise<void> {
    const end = (e: VethEnd) => ({ netns: e.ns.name, dev: e.dev, ...(e.address ? { addresses: [e.address] } : {}) });
    await addVethPair(end(a), end(b));
  }

  /** Removes every namespace this lab made (and with them their veths). Never throws. */
  async teardown(): Promise<void> {
    for (const ns of this.namespaces.splice(0).reverse()) {
      const r = await deleteNamespace(ns.name);
      if (!r.ok) console.error(`# lab teardown: ${r.error}`);
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
  const { stdout } = await execa('ip', ['-j', 'netns', 'list'], { reject: false, timeout: COMMAND_TIMEOUT_MS });
  if (!stdout) return;
  for (const { name } of JSON.parse(stdout) as { name: string }[]) {
    const m = /^pt-(\d+)-[0-9a-f]{6}-/.exec(name);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    await deleteNamespace(name);
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
