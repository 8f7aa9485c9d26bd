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
    const first = await Promise.race([it.next(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`udp receiver in ${ns.name} did not start`)), 5000))]);
    const m = /listening (\d+)/.exec(String(first.value));
    if (!m) throw new Error(`udp receiver: unexpected output ${first.value}`);
    return new UdpReceiver(child, it, Number(m[1]));
  }

  /** Datagrams received so far, by source address. */
  async counts(): Promise<Record<string, number>> {
    this.child.stdin!.write('report\n');
    const r = await this.lines.next();
    return JSON.parse(String(r.value)) as Record<string, number>;
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** Sends pps datagrams/s from each source for durationMs; resolves with the sends that succeeded. */
export async function sendUdp(ns: Netns, dst: string, port: number, pps: number, durationMs: number, sources: string[]): Promise<Record<string, number>> {
  const r = await execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, TOOL, 'send', dst, String(port), String(pps), String(durationMs), ...sources], { reject: false });
  if (r.exitCode !== 0) throw new Error(`udp sender in ${ns.name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as Record<string, number>;
}

/** Waits until the receiver has stopped counting (all in-flight datagrams delivered). */
export async function settle(rx: UdpReceiver): Promise<Record<string, number>> {
  let prev = JSON.stringify(await rx.counts());
  for (;;) {
    await new Promise((r) => setTimeout(r, 150));
    const cur = await rx.counts();
    const s = JSON.stringify(cur);
    if (s === prev) return cur;
    prev = s;
  }
}
