/**
 * Fault-injection fixtures: a real `patronus serve` (or `--direct` CLI)
 * process in a test namespace that can be SIGKILLed, a snapshot of the kernel
 * state Patronus owns (nftables table, addresses, XDP program id) to compare
 * with what the committed revision puts there, and a small tmpfs to fill.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { listTable } from '../../src/nft/subsystem.js';
import { Engine, type ConfigSource } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { removePins } from '../../src/fastpath/dataplane.js';
import type { Netns } from './netns.js';
import { domains } from '../../src/domains.js';

import { freePort } from '../../bench/lib/ports.js';
export { freePort };

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));


/** A `patronus serve` child process; `lines` collects its stdout and stderr. */
export class ServeProcess {
  readonly lines: string[] = [];
  private constructor(
    readonly child: ResultPromise,
    readonly base: string,
    readonly stateDir: string,
  ) {}

  static async start(opts: { netns: Netns; stateDir: string; config?: string; extra?: string[]; timeoutMs?: number }): Promise<ServeProcess> {
    const port = await freePort();
    const args = [CLI, '--netns', opts.netns.name, '--state-dir', opts.stateDir, 'serve', '--listen', `127.0.0.1:${port}`, ...(opts.config ? ['--config', opts.config] : []), ...(opts.extra ?? [])];
    const child = execa(process.execPath, args, { reject: false, buffer: false, stdin: 'ignore', env: { PATRONUS_REQUIRE_NETNS: '1' } });
    const p = new ServeProcess(child, `http://127.0.0.1:${port}`, opts.stateDir);
    let listening!: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (l) => {
        p.lines.push(l);
        if (/patronus: listening on/.test(l)) listening();
      });
    }
    const exited = child.then((r) => {
      throw new Error(`serve exited ${r.exitCode ?? r.signal} before listening:\n${p.lines.join('\n')}`);
    });
    const timeout = new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`serve did not listen within ${opts.timeoutMs ?? 60_000} ms:\n${p.lines.join('\n')}`)), opts.timeoutMs ?? 60_000).unref());
    try {
      await Promise.race([ready, exited, timeout]);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    exited.catch(() => {});
    return p;
  }

  get token(): string {
    return readFileSync(join(this.stateDir, 'admin.token'), 'utf8').trim();
  }

  async call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      // a stuck server fails the call (naming it) instead of hanging the test
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  }

  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.child;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.child;
    clearTimeout(t);
  }
}

/** What Patronus put in the kernel, in a form two states compare by (counters masked). */
export interface KernelState {
  nft: string | undefined;
  addresses: string[];
  xdpProgId: number | null;
}

export async function kernelState(host: Host, ns: Netns, dev: string): Promise<KernelState> {
  const nft = await listTable(host);
  const { stdout } = await ns.ip('-j', '-d', 'addr', 'show', 'dev', dev);
  const [link] = JSON.parse(stdout) as { addr_info: { local: string; prefixlen: number; scope: string }[]; xdp?: { prog?: { id: number }; prog_id?: number } }[];
  return {
    nft: nft?.replace(/packets \d+ bytes \d+/g, 'packets _ bytes _'),
    addresses: link!.addr_info.filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`).sort(),
    xdpProgId: link!.xdp?.prog?.id ?? link!.xdp?.prog_id ?? null,
  };
}

/** Every subsystem's plan for `source` against the running system: [] when the kernel is exactly that revision. */
export async function planChanges(host: Host, source: ConfigSource): Promise<string[]> {
  using store = Store.open(':memory:');
  const engine = new Engine({ domains, host, store, lockPath: join(host.stateDir, 'plan-check.lock') });
  try {
    const plan = await engine.plan(source);
    return plan.subsystems.flatMap((s) => s.changes.map((c) => `${s.subsystem}: ${c.action} ${c.object}`));
  } finally {
    engine.close();
  }
}

/** The Host a `serve --netns NS --state-dir DIR` process drives (default pin root). */
export function serveHost(netns: Netns, stateDir: string): Host {
  return new Host({ netns: netns.name, stateDir });
}

/** Removes what a serve process left pinned for this namespace (the namespace's deletion detaches the rest). */
export function removeServePins(host: Host): void {
  if (existsSync(host.bpfRoot)) {
    for (const d of readdirSync(host.bpfRoot)) removePins(join(host.bpfRoot, d));
    rmSync(host.bpfRoot, { recursive: true, force: true });
  }
}

export function writeConfig(dir: string, name: string, document: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(document, null, 2));
  return path;
}

/** A small tmpfs mounted on a fresh directory. */
export async function smallTmpfs(sizeKb: number): Promise<{ dir: string; fill(): string; unfill(path: string): void; umount(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'pt-tmpfs-'));
  await execa('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k,mode=0700`, 'tmpfs', dir]);
  return {
    dir,
    /** Writes a file until the file system is full; returns its path. */
    fill() {
      const path = join(dir, `filler-${Date.now()}`);
      const fd = openSync(path, 'w');
      const chunk = Buffer.alloc(4096, 1);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENOSPC') throw e;
      } finally {
        closeSync(fd);
      }
      // tmpfs hands out pages: fill the last partial one with single bytes
      const fd2 = openSync(path, 'a');
      try {
        for (;;) writeSync(fd2, Buffer.alloc(1));
      } catch (e) {
        if ((e as { code?: string }).code !== 'ENOSPC') throw e;
      } finally {
        closeSync(fd2);
      }
      return path;
    },
    unfill(path: string) {
      rmSync(path, { force: true });
    },
    async umount() {
      await execa('umount', ['-l', dir], { reject: false });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function scratchDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function waitUntil(cond: () => Promise<boolean> | boolean, ms: number, what: string, pollMs = 50): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return Date.now() - t0;
}
