/**
 * Drives bench/trafficgen/build/patronus-trafficgen inside the sender
 * namespace (nsenter --net: only the network namespace changes, so bpffs and
 * /sys stay the host's).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { Netns } from '../lib/netns.js';
import { projectRoot } from '../../src/bpf/addon.js';
import type { FrameTable } from './workload.js';

export interface GenResult {
  sent: number;
  seconds: number;
  pps: number;
}

export interface GenOptions {
  duration?: number;
  count?: number;
  /** CPUs to run generator threads on, one thread each */
  cpus?: number[];
  /** send the first frame unchanged (the generator's own ceiling) */
  static?: boolean;
  /** kernel BPF run-time stats on for exactly this run (BPF_ENABLE_STATS, off again when the generator exits) */
  bpfStats?: boolean;
}

export function trafficgenPath(): string {
  const p = path.join(projectRoot(), 'bench/trafficgen/build/patronus-trafficgen');
  if (!existsSync(p)) throw new Error(`${p} is missing: run "make -C bench/trafficgen" (scripts/setup.sh does it)`);
  return p;
}

export class TrafficGen {
  private constructor(
    private readonly ns: Netns,
    private readonly dev: string,
    private readonly dir: string,
  ) {}

  static async create(ns: Netns, dev: string): Promise<TrafficGen> {
    trafficgenPath();
    return new TrafficGen(ns, dev, await mkdtemp(path.join(tmpdir(), 'pt-bench-gen-')));
  }

  /** Sends the frame table; resolves when the run ends. */
  async run(frames: FrameTable, opts: GenOptions): Promise<GenResult> {
    return this.start(frames, opts).done;
  }

  /** Starts a run in the background (for swaps under traffic). */
  start(frames: FrameTable, opts: GenOptions): { done: Promise<GenResult>; stop: () => void } {
    const file = path.join(this.dir, `frames-${frames.family}-${frames.count}-${frames.matching}.bin`);
    const args = ['--dev', this.dev, '--frames', file, '--len', String(frames.len), '--cpus', (opts.cpus ?? [0]).join(',')];
    if (opts.duration) args.push('--duration', String(opts.duration));
    if (opts.count) args.push('--count', String(opts.count));
    if (opts.static) args.push('--static');
    if (opts.bpfStats) args.push('--bpf-stats');
    let child: ReturnType<typeof execa> | undefined;
    let stopRequested = false;
    const done = (async () => {
      await writeFile(file, frames.data);
      if (stopRequested) return { sent: 0, seconds: 0, pps: 0 };
      // bounded: a generator stuck on a dead device fails the run instead of hanging it
      child = execa('nsenter', [`--net=${this.ns.path}`, '--', trafficgenPath(), ...args], { reject: false, timeout: (opts.duration ?? 0) * 1000 + 300_000 });
      const r = await child;
      if (r.timedOut) throw new Error(`trafficgen ${args.join(' ')} timed out`);
      if (r.exitCode !== 0) throw new Error(`trafficgen ${args.join(' ')} failed (exit ${r.exitCode}): ${String(r.stderr).trim()}`);
      const line = String(r.stdout).trim().split('\n').pop() ?? '';
      const j = JSON.parse(line) as GenResult;
      return { sent: j.sent, seconds: j.seconds, pps: j.pps };
    })();
    return {
      done,
      stop: () => {
        stopRequested = true;
        child?.kill('SIGINT');
      },
    };
  }

  async close(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
