/**
 * System settings as configuration: the kernel parameters a gateway needs
 * (IP forwarding, reverse-path filtering, bridge netfilter), set in the
 * Host's network namespace (these are all per-namespace parameters).
 *
 * Patronus owns only what it changed: before the first write of a
 * parameter, its value is recorded in <state dir>/system/sysctl.json, and
 * when the document stops asking for the parameter (or on teardown) that
 * value is written back. A parameter that already had the wanted value is
 * not recorded, so it is never "restored" to anything.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defineSubsystem, step, type Change, type CompileContext, type Subsystem } from '../apply/subsystem.js';
import type { Host } from '../system/host.js';
import type { Issue, IssuePath } from '../config/issues.js';
import { forwardingIntent } from './forwarding.js';

/** One kernel parameter. `key` is the /proc/sys path below /proc/sys, slash-separated (interface names may hold dots). */
export interface SysctlSetting {
  key: string;
  value: string;
  /** where the document asks for it (validation messages) */
  path: IssuePath;
  /** why (plan detail), e.g. "implied by firewall.outboundNat" */
  why?: string;
  /** a parameter of one interface: skipped while the interface does not exist */
  interface?: string;
}

export interface SysctlDesired {
  settings: SysctlSetting[];
}

const RP_FILTER = { off: '0', strict: '1', loose: '2' } as const;
const BRIDGE_NF = ['net/bridge/bridge-nf-call-iptables', 'net/bridge/bridge-nf-call-ip6tables', 'net/bridge/bridge-nf-call-arptables'];

/** Pure: the document -> the parameters it sets. */
export function compileSysctls(ctx: Pick<CompileContext, 'config'>): SysctlDesired {
  const c = ctx.config;
  const settings: SysctlSetting[] = [];
  const f = forwardingIntent(c);
  const explicit = c.routing.forwarding;
  const why = (fam: 'ipv4' | 'ipv6') =>
    typeof explicit === 'boolean' || explicit?.[fam] !== undefined ? 'routing.forwarding' : `implied by ${f.reason}`;
  if (f.ipv4 !== undefined) settings.push({ key: 'net/ipv4/ip_forward', value: f.ipv4 ? '1' : '0', path: ['routing', 'forwarding'], why: why('ipv4') });
  if (f.ipv6 !== undefined) settings.push({ key: 'net/ipv6/conf/all/forwarding', value: f.ipv6 ? '1' : '0', path: ['routing', 'forwarding'], why: why('ipv6') });
  const rp = c.routing.rpFilter;
  if (rp !== undefined) {
    const value = RP_FILTER[rp];
    settings.push({ key: 'net/ipv4/conf/all/rp_filter', value, path: ['routing', 'rpFilter'] }, { key: 'net/ipv4/conf/default/rp_filter', value, path: ['routing', 'rpFilter'] });
    // the kernel uses the larger of "all" and the interface's own value: set both so "off" means off
    for (const i of c.interfaces) settings.push({ key: `net/ipv4/conf/${i.name}/rp_filter`, value, path: ['routing', 'rpFilter'], interface: i.name });
  }
  const bnf = c.routing.bridgeNetfilter;
  if (bnf !== undefined) for (const key of BRIDGE_NF) settings.push({ key, value: bnf ? '1' : '0', path: ['routing', 'bridgeNetfilter'] });
  return { settings };
}

export const sysctlSubsystem: Subsystem<SysctlDesired> = defineSubsystem<SysctlDesired>({
  name: 'system',

  compile(ctx) {
    return { desired: compileSysctls(ctx), issues: [] };
  },

  /** One step carrying the plan's changes (not yet split into a step per setting). */
  /** One step per setting changed or given back. */
  async steps(desired, host) {
    return (await steps(desired, host)).map((s) => step(s.change, s.run));
  },

  async validate(desired, host) {
    const issues: Issue[] = [];
    const reported = new Set<string>();
    for (const s of desired.settings) {
      if (s.interface) continue; // the interface may be made by this apply
      if ((await readSysctl(host, s.key)) !== undefined) continue;
      const what = s.key.startsWith('net/bridge/') ? 'br_netfilter (bridge netfilter)' : `/proc/sys/${s.key}`;
      const msg = `the kernel lacks ${what} (${host.where})`;
      if (!reported.has(msg)) issues.push({ path: s.path, message: msg });
      reported.add(msg);
    }
    return issues;
  },

  async teardown(host) {
    await sysctlSubsystem.apply({ settings: [] }, host);
  },

  /** Drift: what apply would change now (sysctl values read back; cheap reads only). */
  async drift(desired, host) {
    return (await steps(desired, host)).map((s) => ({ object: s.change.object, reason: `${s.change.action}${s.change.detail ? `: ${s.change.detail}` : ''}` }));
  },

  async status(host) {
    const owned = readOwned(host);
    const out: Record<string, { value?: string; original: string }> = {};
    for (const [key, original] of Object.entries(owned)) out[dotted(key)] = { value: await readSysctl(host, key), original };
    return { changed: out };
  },
});

// --- internals

/** key -> the value before Patronus first changed it */
type Owned = Record<string, string>;

interface Step {
  change: Change;
  run(): Promise<void>;
}

async function steps(desired: SysctlDesired, host: Host): Promise<Step[]> {
  const owned = readOwned(host);
  const out: Step[] = [];
  const wanted = new Set<string>();
  for (const s of desired.settings) {
    const current = await readSysctl(host, s.key);
    if (current === undefined) {
      if (s.interface) continue; // not there (yet): nothing to set
      throw new Error(`system: ${dotted(s.key)} does not exist (${host.where})`);
    }
    wanted.add(s.key);
    if (current === s.value) continue;
    out.push({
      change: { action: 'change', object: `sysctl ${dotted(s.key)}`, detail: `${current} -> ${s.value}${s.why ? ` (${s.why})` : ''}` },
      run: async () => {
        // record the original before the write: a crash in between never loses it
        const now = readOwned(host);
        if (!(s.key in now)) writeOwned(host, { ...now, [s.key]: current });
        await writeSysctl(host, s.key, s.value);
      },
    });
  }
  for (const [key, original] of Object.entries(owned)) {
    if (wanted.has(key)) continue;
    const current = await readSysctl(host, key);
    const forget = () => {
      const now = readOwned(host);
      delete now[key];
      writeOwned(host, now);
    };
    if (current === undefined || current === original) {
      // gone with its interface, or already back: only the record goes
      out.push({ change: { action: 'remove', object: `sysctl ${dotted(key)} ownership`, detail: current === undefined ? 'parameter gone' : `already ${original}` }, run: async () => forget() });
      continue;
    }
    out.push({
      change: { action: 'change', object: `sysctl ${dotted(key)}`, detail: `${current} -> ${original} (restored)` },
      run: async () => {
        await writeSysctl(host, key, original);
        forget();
      },
    });
  }
  return out;
}

function dotted(key: string): string {
  return key.replace(/\//g, '.');
}

export async function readSysctl(host: Host, key: string): Promise<string | undefined> {
  const r = await host.run('sysctl', ['-n', key], { reject: false });
  if (r.exitCode !== 0) {
    if (/cannot stat|No such file/.test(r.stderr)) return undefined;
    throw new Error(`system: cannot read ${dotted(key)} (${host.where}): ${r.stderr.trim()}`);
  }
  return r.stdout.trim().replace(/\s+/g, ' ');
}

async function writeSysctl(host: Host, key: string, value: string): Promise<void> {
  const r = await host.run('sysctl', ['-q', '-w', `${key}=${value}`], { reject: false });
  if (r.exitCode !== 0) throw new Error(`system: cannot set ${dotted(key)} to ${value} (${host.where}): ${r.stderr.trim()}`);
}

function ownedPath(host: Host): string {
  return join(host.stateDir, 'system', 'sysctl.json');
}

function readOwned(host: Host): Owned {
  try {
    return JSON.parse(readFileSync(ownedPath(host), 'utf8')) as Owned;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`system: cannot read ${ownedPath(host)}: ${(e as Error).message}`);
  }
}

function writeOwned(host: Host, owned: Owned): void {
  mkdirSync(join(host.stateDir, 'system'), { recursive: true });
  const tmp = `${ownedPath(host)}.tmp`;
  writeFileSync(tmp, JSON.stringify(owned));
  renameSync(tmp, ownedPath(host));
}
