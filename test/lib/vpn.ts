/**
 * Helpers the VPN tests share: a document section in, a Subsystem's
 * desired state out (through the real document validation), and a ping.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { validateDocument } from '../../src/domains.js';
import { formatIssue, type Issue } from '../../src/config/issues.js';
import type { CompileContext, Subsystem } from '../../src/apply/subsystem.js';
import type { Netns } from './netns.js';

export function contextFor(doc: unknown): CompileContext {
  const { validated, issues } = validateDocument(doc, (p) => readFileSync(p, 'utf8'));
  assert.deepEqual(issues.map(formatIssue), [], 'the test document is valid');
  return { config: validated!.config, aliases: validated!.aliases, openings: [], readFile: (p) => readFileSync(p, 'utf8') };
}

/** Validates the document and compiles it for one subsystem; throws on any issue. */
export function compileFor<D>(sub: Subsystem<D>, doc: unknown): D {
  const { desired, issues } = sub.compile(contextFor(doc));
  assert.deepEqual(issues.map(formatIssue), [], `${sub.name} compiles without issues`);
  return desired;
}

/** Every issue the document (schema, then the subsystem's compile) has. */
export function issuesOf(sub: Subsystem<unknown>, doc: unknown): string[] {
  const { validated, issues } = validateDocument(doc, (p) => readFileSync(p, 'utf8'));
  if (issues.length) return issues.map(formatIssue);
  return sub.compile({ config: validated!.config, aliases: validated!.aliases, openings: [], readFile: (p) => readFileSync(p, 'utf8') }).issues.map((i: Issue) => formatIssue(i));
}

/** Pings from inside ns (from a source address, optionally); true when at least one reply came back. */
export async function ping(ns: Netns, to: string, count = 2, from?: string): Promise<boolean> {
  const r = await ns.nsenter('ping', ['-c', String(count), '-i', '0.2', '-W', '1', '-q', ...(from ? ['-I', from] : []), to], { reject: false });
  return r.exitCode === 0;
}

/** Retries a ping for up to `ms` (tunnels need a handshake first). */
export async function pingWithin(ns: Netns, to: string, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) if (await ping(ns, to, 1)) return true;
  return false;
}

/**
 * Holds a UDP port inside ns (IPv4 and IPv6) until the returned function is
 * called (in finally: the holder gives up the port after 120 s at the latest):
 * the way tests make a daemon fail to start.
 */
export async function holdUdpPort(ns: Netns, port: number): Promise<() => void> {
  const script = `import socket,time
s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)
s.bind(("::",${Number(port)}))
print("bound",flush=True)
time.sleep(120)`;
  const child = ns.spawn('python3', ['-c', script]);
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`port holder for udp/${port} in ${ns.name} did not bind within 30 s`)), 30_000);
      child.stdout!.once('data', () => (clearTimeout(t), resolve()));
      child.once('exit', (code) => (clearTimeout(t), reject(new Error(`port holder for udp/${port} in ${ns.name} exited with ${code}`))));
    });
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return () => {
    child.kill('SIGKILL');
  };
}
