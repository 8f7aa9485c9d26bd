/**
 * Real TCP/UDP flows between lab namespaces, driven by test/lib/flowtool.js
 * (a few lines of node run with nsenter). Servers and sessions are killed by
 * stop()/Lab.teardown (which kills every process left in a namespace).
 */
import { execa, type ResultPromise } from 'execa';
import { fileURLToPath } from 'node:url';
import type { Netns } from './netns.js';

const TOOL = fileURLToPath(new URL('./flowtool.js', import.meta.url));

export interface FlowServer {
  port: number;
  stop(): void;
}

/** Starts a server in `ns` on addr:port (port 0 = any); resolves once it listens. */
export async function startServer(ns: Netns, proto: 'tcp' | 'udp', addr: string, port: number, name: string): Promise<FlowServer> {
  const child = execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, TOOL, 'server', proto, addr, String(port), name], { reject: false, buffer: false, stdin: 'ignore' });
  const bound = await new Promise<number>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name}: server in ${ns.name} did not start within 10 s`));
    }, 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    child.stderr!.on('data', (d: Buffer) => process.stderr.write(`# ${name}: ${d}`));
  });
  return { port: bound, stop: () => void child.kill('SIGKILL') };
}

export interface FlowResult {
  ok: boolean;
  /** the server's greeting: "NAME peer=ADDR:PORT local=ADDR:PORT" (or timeout/error text) */
  line: string;
  /** server name, peer address as the server saw it */
  server?: string;
  peer?: string;
  ms: number;
}

/** One connection (TCP) or datagram (UDP) from `ns`; returns what the server saw. */
export async function connectOnce(ns: Netns, proto: 'tcp' | 'udp', addr: string, port: number, timeoutMs = 1500, local?: string): Promise<FlowResult> {
  const t0 = performance.now();
  const r = await execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, TOOL, 'client', proto, addr, String(port), String(timeoutMs), ...(local ? [local] : [])], { reject: false, timeout: timeoutMs + 60_000 });
  const line = r.stdout.trim();
  const m = /^(\S+) peer=(.+):(\d+) local=/.exec(line);
  return { ok: r.exitCode === 0 && !!m, line: line || r.stderr.trim(), ...(m ? { server: m[1], peer: m[2] } : {}), ms: performance.now() - t0 };
}

/** A long-lived TCP connection whose lines can be sent and answers awaited. */
export class Session {
  private readonly child: ResultPromise;
  private buf = '';
  private waiters: ((l: string) => void)[] = [];
  private readonly queue: string[] = [];

  /** proto udp: one socket with a fixed 5-tuple; the first line is "ready", each datagram sent gets the server's greeting */
  constructor(ns: Netns, addr: string, port: number, local?: string, proto: 'tcp' | 'udp' = 'tcp') {
    const args = proto === 'tcp' ? ['session', addr, String(port), '30000', ...(local ? [local] : [])] : ['udpsession', addr, String(port), ...(local ? [local] : [])];
    this.child = execa('nsenter', [`--net=${ns.path}`, '--', process.execPath, TOOL, ...args], { reject: false, buffer: false, stdin: 'pipe' });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const l = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiters.shift();
        if (w) w(l);
        else this.queue.push(l);
      }
    });
  }

  /** The next line from the server, or undefined after timeoutMs. */
  next(timeoutMs = 2000): Promise<string | undefined> {
    const q = this.queue.shift();
    if (q !== undefined) return Promise.resolve(q);
    return new Promise((resolve) => {
      const w = (l: string) => {
        clearTimeout(t);
        resolve(l);
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(undefined);
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}
