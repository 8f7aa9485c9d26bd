/**
 * Reading tc state back. `tc -j` covers qdiscs and filters; HTB classes have
 * no JSON output in iproute2 6.1, so their text lines are parsed (rates come
 * back in tc's rounded units, which is why comparisons allow 0.5 %).
 */
import type { Host } from '../../system/host.js';

export interface ObservedQdisc {
  kind: string;
  handle: string;
  parent?: string;
  root?: boolean;
  options?: Record<string, unknown>;
}

export interface ObservedClass {
  classid: string;
  /** "root" for a class directly under the qdisc */
  parent: string;
  leaf?: string;
  prio?: number;
  rate: number;
  ceil: number;
  sentBytes?: number;
  sentPackets?: number;
  dropped?: number;
  overlimits?: number;
}

export interface ObservedFilter {
  pref: number;
  kind: string;
  options?: Record<string, any>;
}

export interface ObservedDevice {
  exists: boolean;
  qdiscs: ObservedQdisc[];
  classes: ObservedClass[];
  /** filters attached to the root qdisc 1: */
  filters: ObservedFilter[];
}

/** Ingress-side view of an interface whose ingress is redirected. */
export interface ObservedIngress {
  exists: boolean;
  /** "clsact", "ingress" or undefined */
  hook?: string;
  filters: ObservedFilter[];
}

export async function deviceExists(host: Host, dev: string): Promise<boolean> {
  return (await host.run('ip', ['link', 'show', 'dev', dev], { reject: false })).exitCode === 0;
}

export async function observeDevice(host: Host, dev: string, withStats = false): Promise<ObservedDevice> {
  if (!(await deviceExists(host, dev))) return { exists: false, qdiscs: [], classes: [], filters: [] };
  const qdiscs = JSON.parse((await host.run('tc', ['-j', 'qdisc', 'show', 'dev', dev])).stdout || '[]') as ObservedQdisc[];
  const root = qdiscs.find((q) => q.root);
  let classes: ObservedClass[] = [];
  let filters: ObservedFilter[] = [];
  if (root?.kind === 'htb' && root.handle === '1:') {
    classes = parseClasses((await host.run('tc', [...(withStats ? ['-s'] : []), 'class', 'show', 'dev', dev])).stdout);
    filters = parseFilters((await host.run('tc', ['-j', 'filter', 'show', 'dev', dev, 'parent', '1:'])).stdout);
  }
  return { exists: true, qdiscs, classes, filters };
}

export async function observeIngress(host: Host, dev: string): Promise<ObservedIngress> {
  if (!(await deviceExists(host, dev))) return { exists: false, filters: [] };
  const qdiscs = JSON.parse((await host.run('tc', ['-j', 'qdisc', 'show', 'dev', dev])).stdout || '[]') as ObservedQdisc[];
  const hook = qdiscs.find((q) => q.kind === 'clsact' || q.kind === 'ingress')?.kind;
  if (!hook) return { exists: true, filters: [] };
  const r = await host.run('tc', ['-j', 'filter', 'show', 'dev', dev, ...ingressParent(hook)]);
  return { exists: true, hook, filters: parseFilters(r.stdout) };
}

/** tc arguments naming the ingress hook of a device with that qdisc. */
export function ingressParent(hook: string): string[] {
  return hook === 'clsact' ? ['ingress'] : ['parent', 'ffff:'];
}

/** Filter JSON lists a header entry per (pref, kind) without options; keep the entries that have them. */
export function parseFilters(json: string): ObservedFilter[] {
  const list = JSON.parse(json || '[]') as ObservedFilter[];
  return list.filter((f) => f.options && (f.kind !== 'u32' || (f.options as any).fh?.includes('::')));
}

const UNITS: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** "1500Kbit" -> 1500000 */
export function parseTcRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)bit$/.exec(text);
  if (!m) throw new Error(`cannot read tc rate "${text}"`);
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
}

export function parseClasses(text: string): ObservedClass[] {
  const out: ObservedClass[] = [];
  let cur: ObservedClass | undefined;
  for (const line of text.split('\n')) {
    const m = /^class htb (\S+) (?:root|parent (\S+))(.*)$/.exec(line);
    if (m) {
      const rest = m[3]!;
      const field = (name: string) => new RegExp(`\\b${name} (\\S+)`).exec(rest)?.[1];
      cur = {
        classid: m[1]!,
        parent: m[2] ?? 'root',
        rate: parseTcRate(field('rate')!),
        ceil: parseTcRate(field('ceil')!),
        ...(field('leaf') ? { leaf: field('leaf')! } : {}),
        ...(field('prio') !== undefined ? { prio: Number(field('prio')) } : {}),
      };
      out.push(cur);
      continue;
    }
    const s = /^\s*Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)/.exec(line);
    if (s && cur) {
      cur.sentBytes = Number(s[1]);
      cur.sentPackets = Number(s[2]);
      cur.dropped = Number(s[3]);
      cur.overlimits = Number(s[4]);
    }
  }
  return out;
}

/** Rates tc gives back are rounded (bytes/s internally, printed in units): equal within 0.5 %. */
export function sameRate(want: number, have: number): boolean {
  return Math.abs(want - have) <= Math.max(64, want * 0.005);
}
