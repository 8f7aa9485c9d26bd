/**
 * Network namespaces: switching (run a synchronous function with the calling
 * thread inside one, so ifindexes, XDP/tc attachment and netlink calls refer
 * to it; the setns(2) call itself lives in the native addon), command
 * wrapping, and their lifecycle (create, veth pairs, delete). One
 * implementation for Host, the lab (`serve --lab`), tests and benchmarks.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { addon } from '../bpf/addon.js';

/** ip(8) calls here are quick; bounded so a stuck one fails, named, instead of hanging its caller. */
const IP_TIMEOUT_MS = 60_000;

/** The bind-mount path of a named namespace (a path is taken as it is). */
export function netnsPath(name: string): string {
  return name.includes('/') ? name : `/var/run/netns/${name}`;
}

/** Runs fn (synchronous) inside the network namespace NAME (/var/run/netns/NAME) or at a path. */
export function inNetns<T>(name: string, fn: () => T): T {
  return addon().inNetns(netnsPath(name), fn);
}

/** The file and argv that run a command with only the network namespace changed (nsenter keeps /sys/fs/bpf and /etc). */
export function netnsCommand(name: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  if (!name) return [cmd, [...args]];
  return ['nsenter', [`--net=${netnsPath(name)}`, '--', cmd, ...args]];
}

export function namespaceExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/** Creates the named namespace with lo up. */
export async function addNamespace(name: string): Promise<void> {
  await execa('ip', ['netns', 'add', name], { timeout: IP_TIMEOUT_MS });
  await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { timeout: IP_TIMEOUT_MS });
}

/**
 * Deletes a named namespace (and with it its veths), after killing the
 * processes still inside (they would keep it alive). Never throws; says why
 * when it could not.
 */
export async function deleteNamespace(name: string): Promise<{ ok: boolean; error?: string }> {
  const pids = await execa('ip', ['netns', 'pids', name], { reject: false, timeout: IP_TIMEOUT_MS });
  for (const pid of pids.stdout.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  const r = await execa('ip', ['netns', 'del', name], { reject: false, timeout: IP_TIMEOUT_MS });
  return r.exitCode === 0 || !namespaceExists(name) ? { ok: true } : { ok: false, error: `ip netns del ${name}: ${r.stderr}` };
}

export interface VethEnd {
  /** namespace name */
  netns: string;
  dev: string;
  /** CIDR addresses to assign (IPv6 without duplicate address detection) */
  addresses?: readonly string[];
}

/** A veth pair between two namespaces (made under temporary names, then renamed), addresses assigned, both ends up. */
export async function addVethPair(a: VethEnd, b: VethEnd): Promise<void> {
  const tmpA = `pv${randomBytes(5).toString('hex')}`;
  const tmpB = `pv${randomBytes(5).toString('hex')}`;
  await execa('ip', ['link', 'add', tmpA, 'netns', a.netns, 'type', 'veth', 'peer', 'name', tmpB, 'netns', b.netns], { timeout: IP_TIMEOUT_MS });
  await execa('ip', ['-n', a.netns, 'link', 'set', tmpA, 'name', a.dev], { timeout: IP_TIMEOUT_MS });
  await execa('ip', ['-n', b.netns, 'link', 'set', tmpB, 'name', b.dev], { timeout: IP_TIMEOUT_MS });
  for (const end of [a, b]) {
    for (const address of end.addresses ?? []) await execa('ip', ['-n', end.netns, 'addr', 'add', address, 'dev', end.dev, ...(address.includes(':') ? ['nodad'] : [])], { timeout: IP_TIMEOUT_MS });
    await execa('ip', ['-n', end.netns, 'link', 'set', end.dev, 'up'], { timeout: IP_TIMEOUT_MS });
  }
}
