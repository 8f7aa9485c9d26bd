/**
 * A long TCP stream from one lab namespace to another (test/lib/tcpstreamtool.js),
 * with the receiver's byte count sampled against this process's clock, so a
 * test can ask how long the stream stalled around an event and whether it
 * was reset.
 */
import { execa, type ResultPromise } from 'execa';
import { fileURLToPath } from 'node:url';
import type { Netns } from './netns.js';

const TOOL = fileURLToPath(new URL('./tcpstreamtool.js', import.meta.url));

export class TcpStream {
  /** [ms since epoch, bytes received] whenever the count changed */
  readonly samples: [number, number][] = [];
  /** "closed" / "error CODE" from either end */
  readonly failures: string[] = [];
  private constructor(
    private readonly sink: ResultPromise,
    private readonly source: ResultPromise,
  ) {}

  static async start(from: Netns, to: Netns, addr: string, port: number, bytesPer10ms = 16384): Promise<TcpStream> {
    const run = (ns: Netns, args: string[]) => execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, TOOL, ...args], { reject: false, buffer: false, stdin: 'ignore' });
    const sink = run(to, ['sink', addr, String(port)]);
    const lines = (child: ResultPromise, on: (l: string) => void) => {
      let buf = '';
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          on(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    };
    let listening: () => void;
    const ready = new Promise<void>((r) => (listening = r));
    let stream: TcpStream | undefined;
    lines(sink, (l) => {
      if (l.startsWith('listening')) listening();
      else if (l.startsWith('bytes ')) stream?.samples.push([Date.now(), Number(l.slice(6))]);
      else stream?.failures.push(`receiver: ${l}`);
    });
    let t: NodeJS.Timeout | undefined;
    try {
      await Promise.race([ready, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`stream sink in ${to.name} did not listen within 10 s`)), 10_000)))]);
    } catch (e) {
      sink.kill('SIGKILL');
      throw e;
    } finally {
      clearTimeout(t);
    }
    const source = run(from, ['source', addr, String(port), String(bytesPer10ms)]);
    stream = new TcpStream(sink, source);
    lines(source, (l) => {
      if (l.startsWith('error')) stream!.failures.push(`sender: ${l}`);
    });
    return stream;
  }

  get bytes(): number {
    return this.samples.at(-1)?.[1] ?? 0;
  }

  /** bytes received by time t (ms since epoch) */
  bytesAt(t: number): number {
    let b = 0;
    for (const [ts, n] of this.samples) {
      if (ts > t) break;
      b = n;
    }
    return b;
  }

  /** the longest time without new bytes between t0 and t1 (ms) */
  longestStall(t0: number, t1: number): number {
    let last = t0;
    let longest = 0;
    for (const [ts] of this.samples) {
      if (ts <= t0) continue;
      if (ts > t1) break;
      longest = Math.max(longest, ts - last);
      last = ts;
    }
    return Math.max(longest, t1 - last);
  }

  stop(): void {
    this.source.kill('SIGKILL');
    this.sink.kill('SIGKILL');
  }
}
