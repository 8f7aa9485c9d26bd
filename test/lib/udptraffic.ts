/**
 * Drives test/lib/udpcount.js in lab namespaces: a counting receiver and
 * paced senders with chosen source addresses.
 */
import { execa, type ResultPromise } from 'execa';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { Netns } from './netns.js';

const TOOL = fileURLToPath(new URL('./udpcount.js', import.meta.url));

export class UdpReceiver {
  private constructor(
    private readonly child: ResultPromise,
    private readonly lines: AsyncIterator<string>,
    readonly port: number,
  ) {}

  static async start(ns: Netns, addr: string, port = 0): Promise<UdpReceiver> {
    const child = execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, TOOL, 'recv', addr, String(port)], { reject: false, buffer: false, stdin: 'pipe' });
    const rl = createInterface({ input: child.stdout! });
    const it = rl[Symbol.asyncIterator]();
    try {
      const first = await within(it.next(), 10_000, `udp receiver in ${ns.name} did not start within 10 s`);
      const m = /listening (\d+)/.exec(String(first.value));
      if (!m) throw new Error(`udp receiver: unexpected output ${first.value}`);
      return new UdpReceiver(child, it, Number(m[1]));
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
  }

  /** Datagrams received so far, by source address. */
  async counts(): Promise<Record<string, number>> {
    this.child.stdin!.write('report\n');
    const r = await within(this.lines.next(), 30_000, 'udp receiver did not report within 30 s');
    return JSON.parse(String(r.value)) as Record<string, number>;
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** Sends pps datagrams/s from each source for durationMs; resolves with the sends that succeeded. */
export async function sendUdp(ns: Netns, dst: string, port: number, pps: number, durationMs: number, sources: string[]): Promise<Record<string, number>> {
  const r = await execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, TOOL, 'send', dst, String(port), String(pps), String(durationMs), ...sources], { reject: false, timeout: durationMs + 60_000 });
  if (r.exitCode !== 0) throw new Error(`udp sender in ${ns.name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as Record<string, number>;
}

/**
 * Sends like sendUdp until stop() (at most maxMs): for traffic that must
 * last as long as something else takes (a server start on a loaded machine),
 * instead of a fixed duration guessed long enough.
 */
export function startUdp(ns: Netns, dst: string, port: number, pps: number, maxMs: number, sources: string[]): { readonly done: boolean; stop(): Promise<Record<string, number>> } {
  const child = execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, TOOL, 'send', dst, String(port), String(pps), String(maxMs), ...sources], {
    reject: false,
    stdin: 'pipe',
    timeout: maxMs + 60_000,
    env: { UDPCOUNT_STOP_ON_STDIN: '1' },
  });
  let done = false;
  void child.finally(() => (done = true));
  return {
    get done() {
      return done;
    },
    async stop() {
      if (!done) child.stdin!.end('stop\n');
      const r = await child;
      if (r.exitCode !== 0) throw new Error(`udp sender in ${ns.name} failed: ${r.stderr}`);
      return JSON.parse(String(r.stdout).trim()) as Record<string, number>;
    },
  };
}

/**
 * Waits until the receiver has stopped counting (all in-flight datagrams
 * delivered). `atLeast` (source -> count, see expectAtLeast): the counts the
 * caller expects, waited for first (at most 10 s), so a pause in delivery (a
 * loaded machine defers the veth's NAPI poll to ksoftirqd, or starves the
 * receiver) is not taken for the end of it; a count that never gets there
 * is returned as it stands once stable, for the caller's assertion to report.
 */
export async function settle(rx: UdpReceiver, atLeast: Record<string, number> = {}, timeoutMs = 60_000): Promise<Record<string, number>> {
  const deadline = Date.now() + timeoutMs;
  const reachBy = Date.now() + 10_000;
  let prev = JSON.stringify(await rx.counts());
  for (;;) {
    if (Date.now() > deadline) throw new Error(`udp receiver still counting new datagrams after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 150));
    const cur = await rx.counts();
    const s = JSON.stringify(cur);
    const reached = Date.now() > reachBy || Object.entries(atLeast).every(([k, n]) => (cur[k] ?? 0) >= n);
    if (s === prev && reached) return cur;
    prev = s;
  }
}

/** For settle: what the receiver counts once `sent` from each of `sources` arrived on top of `before` (`key`: the receiver's name for a source). */
export function expectAtLeast(before: Record<string, number>, sent: Record<string, number>, sources: string[], key = (s: string) => s): Record<string, number> {
  return Object.fromEntries(sources.map((s) => [key(s), (before[key(s)] ?? 0) + (sent[s] ?? 0)]));
}

/** p, or a rejection with `message` after ms (the timer does not outlive the race). */
function within<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(message)), ms)))]).finally(() => clearTimeout(t));
}
