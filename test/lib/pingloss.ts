/**
 * A continuous ping (default every 10 ms) from a lab namespace while
 * something happens, reported as losses: the echo requests that got no
 * reply, counted only up to the last reply (so the packets still in flight
 * when the ping stops are not counted), and the longest run of them as a gap.
 */
import type { Netns } from './netns.js';

export interface PingLoss {
  sent: number;
  received: number;
  /** requests without a reply, before the last reply */
  lost: number;
  /** the longest run of consecutive lost requests, in ms (lost * interval) */
  gapMs: number;
}

export interface PingStream {
  /** stops the ping and reports; call it in finally (the ping runs until stopped) */
  stop(): Promise<PingLoss>;
}

export async function startPing(ns: Netns, to: string, opts: { intervalMs?: number; from?: string } = {}): Promise<PingStream> {
  const interval = opts.intervalMs ?? 10;
  const child = ns.spawn('ping', ['-n', '-i', String(interval / 1000), '-W', '1', ...(opts.from ? ['-I', opts.from] : []), to], { reject: false });
  const seqs = new Set<number>();
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const lines = out.split('\n');
    out = lines.pop()!;
    for (const l of lines) {
      const m = /icmp_seq=(\d+)/.exec(l);
      if (m && / time=/.test(l)) seqs.add(Number(m[1]));
    }
  });
  // first reply: the path works before the measurement starts
  const t0 = Date.now();
  while (seqs.size === 0) {
    if (child.exitCode !== null || Date.now() - t0 > 5000) {
      child.kill('SIGKILL');
      throw new Error(`ping ${to} from ${ns.name}: no reply within 5 s (${(await child).stderr})`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    async stop() {
      child.kill('SIGINT');
      // ping prints its summary on SIGINT; one that does not exit is killed (no summary: sent counts 0)
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const r = await child;
      clearTimeout(kill);
      const sent = Number(/(\d+) packets transmitted/.exec(String(r.stdout))?.[1] ?? 0);
      const last = Math.max(...seqs);
      const first = Math.min(...seqs);
      let lost = 0;
      let run = 0;
      let longest = 0;
      for (let s = first; s <= last; s++) {
        if (seqs.has(s)) run = 0;
        else {
          lost++;
          longest = Math.max(longest, ++run);
        }
      }
      return { sent, received: seqs.size, lost, gapMs: longest * interval };
    },
  };
}
