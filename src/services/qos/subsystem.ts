/**
 * QoS as a Subsystem: not a daemon, so the Subsystem contract is implemented
 * directly.
 *
 *   compile   pure: config -> per-device tc plan (compile.ts)
 *   validate  devices exist; every qdisc kind the plan uses (and IFB) is
 *             probed in a throwaway network namespace, so fq_codel/cake are
 *             refused with a clear message where the kernel lacks them
 *   plan      the steps (below) that differ from `tc` output and the
 *             classifier maps, as readable Changes
 *   apply     runs exactly those steps (tc/ip through Host.run, maps
 *             through the addon); running it again finds nothing to do
 *   teardown  removes every tc object, IFB and pin Patronus made
 *
 * Which devices Patronus shapes is remembered in <stateDir>/qos/state.json,
 * so a device dropped from the config is cleaned up on the next apply.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { defineSubsystem, type Change, type Step, type Subsystem } from '../../apply/subsystem.js';
import type { Issue } from '../../config/issues.js';
import type { Host } from '../../system/host.js';
import { BpfProgram } from '../../bpf/index.js';
import { compileQos, tcRate, LINK_CLASS, ROOT_HANDLE, type DevicePlan, type QosDesired } from './compile.js';
import { ClassifierMaps, encodeTable, loadClassifier, programPin, sameTable, unpinClassifier, QOS_PROGRAM } from './classifier.js';
import { deviceExists, ingressParent, observeDevice, observeIngress, sameRate, type ObservedDevice, type ObservedIngress } from './tc.js';

export type { QosDesired } from './compile.js';

/** tc filter preference of the ingress -> IFB redirect (late, after other ingress filters). */
export const REDIRECT_PREF = 49152;
/** tc filter preference and handle of the classifier on the HTB root. */
export const CLASSIFIER_PREF = 1;

export const qosSubsystem: Subsystem<QosDesired> = defineSubsystem<QosDesired>({
  name: 'qos',
  compile: (ctx) => compileQos(ctx),
  validate: (desired, host) => validateQos(desired, host),
  async steps(desired, host) {
    const steps: Step[] = (await planSteps(desired, host)).map((s) => ({
      changes: [s.change],
      async run() {
        try {
          await s.run();
        } catch (e) {
          throw new Error(`qos: ${s.change.action} ${s.change.object} failed: ${(e as Error).message}`, { cause: e });
        }
      },
    }));
    // bookkeeping only (what Patronus manages, for removal and metric labels): nothing plan would print
    steps.push({ changes: [], run: async () => saveState(host, { devices: desired.devices.map((d) => ({ device: d.device, ...(d.ingressOf ? { ingressOf: d.ingressOf } : {}), entries: entryLabels(d) })) }) });
    return steps;
  },
  /** Drift: what apply would change now (qdiscs, classes, filters read back with tc; no changes made). */
  async drift(desired, host) {
    return (await planSteps(desired, host)).map((s) => ({ object: s.change.object, reason: `${s.change.action}${s.change.detail ? `: ${s.change.detail}` : ''}` }));
  },
  async teardown(host) {
    for (const m of loadState(host).devices) for (const s of await removeSteps(m, host)) await s.run();
    rmSync(stateFile(host), { force: true });
  },
  status: (host) => qosStatus(host),
  /** One counter per classifier entry: rule = "<interface> <direction> rules[N] -> <class>", action = "class". */
  async metrics(host) {
    const rules: { rule: string; action: string; packets: number; bytes: number }[] = [];
    for (const m of loadState(host).devices) {
      const maps = ClassifierMaps.open(host.bpfRoot, m.device);
      if (!maps) continue;
      try {
        const labels = m.entries ?? [];
        const h = maps.hitCounts(labels.length);
        h.entries.forEach((c, i) => rules.push({ rule: labels[i]!, action: 'class', packets: Number(c.packets), bytes: Number(c.bytes) }));
        rules.push({ rule: `${m.ingressOf ?? m.device} ${m.ingressOf ? 'ingress' : 'egress'} unmatched -> default`, action: 'class', packets: Number(h.unmatched.packets), bytes: Number(h.unmatched.bytes) });
      } finally {
        maps.close();
      }
    }
    return { rules };
  },
});

/** Metric labels of a device's classifier entries, in map order. */
function entryLabels(d: DevicePlan): string[] {
  const iface = d.ingressOf ?? d.device;
  const dir = d.ingressOf ? 'ingress' : 'egress';
  return (d.classifier?.rules ?? []).map((r) => {
    const cls = d.classes.find((c) => c.classid === `1:${r.classid.toString(16)}`);
    return `${iface} ${dir} rules[${r.ruleIndex}] -> ${cls?.name ?? `1:${r.classid.toString(16)}`}`;
  });
}

// ---------------------------------------------------------------------------
// validate

const probeCache = new Map<string, string | undefined>();
const PROBE_ARGS: Record<string, string[]> = { tbf: ['rate', '1mbit', 'burst', '10kb', 'latency', '50ms'] };

/**
 * Whether the kernel has a qdisc kind: tries to add it to lo of a throwaway
 * namespace (`unshare --net`), which also loads its module where one exists.
 * undefined = available, else tc's complaint.
 */
export async function probeQdisc(host: Host, kind: string): Promise<string | undefined> {
  if (probeCache.has(kind)) return probeCache.get(kind);
  const r = await host.run('unshare', ['--net', '--', 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', kind, ...(PROBE_ARGS[kind] ?? [])], { reject: false });
  const res = r.exitCode === 0 ? undefined : (r.stderr || r.stdout).trim().split('\n')[0] || `exit ${r.exitCode}`;
  probeCache.set(kind, res);
  return res;
}

async function probeIfb(host: Host): Promise<string | undefined> {
  const key = 'link:ifb';
  if (probeCache.has(key)) return probeCache.get(key);
  const r = await host.run('unshare', ['--net', '--', 'ip', 'link', 'add', 'patronus-probe', 'type', 'ifb'], { reject: false });
  const res = r.exitCode === 0 ? undefined : (r.stderr || r.stdout).trim();
  probeCache.set(key, res);
  return res;
}

export async function validateQos(desired: QosDesired, host: Host): Promise<Issue[]> {
  const issues: Issue[] = [];
  for (const d of desired.devices) {
    const iface = d.ingressOf ?? d.device;
    if (!(await deviceExists(host, iface))) issues.push({ path: [...d.path.slice(0, -1), 'interface'], message: `interface "${iface}" does not exist (${host.where})` });
    const rootProblem = await probeQdisc(host, d.root.kind);
    if (rootProblem) issues.push({ path: [...d.path, 'type'], message: `the kernel has no ${d.root.kind} qdisc (${rootProblem})` });
    if (d.ingressOf) {
      const ifb = await probeIfb(host);
      if (ifb) issues.push({ path: d.path, message: `ingress shaping needs IFB devices, which this kernel cannot create (${ifb})` });
    }
    for (const leaf of d.leaves) {
      const problem = await probeQdisc(host, leaf.kind);
      if (problem) {
        issues.push({
          path: [...leaf.path, 'type'],
          message: `${leaf.kind} is not available in this kernel (tc qdisc add ... ${leaf.kind}: "${problem}"); use pfifo or bfifo, which it has`,
        });
      }
    }
  }
  return issues;
}

// ---------------------------------------------------------------------------
// plan/apply: steps computed against what tc and the maps show

interface TcStep {
  change: Change;
  run(): Promise<void>;
}

interface Managed {
  device: string;
  ingressOf?: string;
  /** metric label per classifier entry */
  entries?: string[];
}

const tc = (host: Host, args: string[]) => async () => {
  await host.run('tc', args);
};

async function planSteps(desired: QosDesired, host: Host): Promise<TcStep[]> {
  const steps: TcStep[] = [];
  const wanted = new Set(desired.devices.map((d) => d.device));
  for (const m of loadState(host).devices) if (!wanted.has(m.device)) steps.push(...(await removeSteps(m, host)));
  for (const d of desired.devices) steps.push(...(await deviceSteps(d, host)));
  return steps;
}

async function deviceSteps(d: DevicePlan, host: Host): Promise<TcStep[]> {
  const steps: TcStep[] = [];
  const dev = d.device;
  let obs: ObservedDevice = await observeDevice(host, dev);

  if (d.ingressOf && !obs.exists) {
    steps.push({
      change: { action: 'add', object: `ifb ${dev}`, detail: `carries the ingress of ${d.ingressOf}` },
      async run() {
        await host.run('ip', ['link', 'add', dev, 'type', 'ifb']);
        // ifb defaults to a 32-packet queue: too short for a shaped TCP flow
        await host.run('ip', ['link', 'set', dev, 'txqueuelen', '1000']);
        await host.run('ip', ['link', 'set', dev, 'up']);
      },
    });
    obs = { exists: true, qdiscs: [], classes: [], filters: [] };
  } else if (d.ingressOf) {
    const link = JSON.parse((await host.run('ip', ['-j', 'link', 'show', 'dev', dev])).stdout)[0] as { flags: string[] };
    if (!link.flags.includes('UP')) steps.push({ change: { action: 'change', object: `ifb ${dev}`, detail: 'set up' }, run: async () => void (await host.run('ip', ['link', 'set', dev, 'up'])) });
  }

  const root = obs.qdiscs.find((q) => q.root);
  const ours = root && root.handle === ROOT_HANDLE;
  if (d.root.kind === 'tbf') {
    const { rate, burst, latencyMs } = d.root;
    const o = root?.options as { rate?: number; burst?: number; lat?: number } | undefined;
    const same = ours && root.kind === 'tbf' && sameRate(rate, (o?.rate ?? 0) * 8) && near(burst, o?.burst) && near(latencyMs * 1000, o?.lat);
    if (!same) {
      steps.push({
        change: { action: root?.kind === 'tbf' ? 'change' : 'add', object: `qdisc ${dev} root tbf`, detail: `rate ${tcRate(rate)} burst ${burst} latency ${latencyMs}ms` },
        run: tc(host, ['qdisc', 'replace', 'dev', dev, 'root', 'handle', ROOT_HANDLE, 'tbf', 'rate', tcRate(rate), 'burst', String(burst), 'latency', `${latencyMs}ms`]),
      });
    }
    if (existsSync(path.join(host.bpfRoot, 'qos', dev))) steps.push({ change: { action: 'remove', object: `classifier ${dev}` }, run: async () => unpinClassifier(host.bpfRoot, dev) });
    steps.push(...redirectSteps(d, host, d.ingressOf ? await observeIngress(host, d.ingressOf) : undefined));
    return steps;
  }

  // HTB
  const defHex = `0x${d.root.defaultMinor.toString(16)}`;
  const rootOk = ours && root.kind === 'htb';
  if (!rootOk) {
    steps.push({
      change: { action: root && root.kind !== 'noqueue' && !root.handle.startsWith('0:') ? 'change' : 'add', object: `qdisc ${dev} root htb`, detail: `default ${d.root.defaultMinor.toString(16)} (replaces ${root?.kind ?? 'nothing'})` },
      run: tc(host, ['qdisc', 'replace', 'dev', dev, 'root', 'handle', ROOT_HANDLE, 'htb', 'default', d.root.defaultMinor.toString(16)]),
    });
    obs = { ...obs, classes: [], filters: [], qdiscs: [] }; // replacing the root drops everything under it
  } else if ((root.options as { default?: string }).default !== defHex) {
    steps.push({
      change: { action: 'change', object: `qdisc ${dev} root htb`, detail: `default class ${d.root.defaultMinor.toString(16)}` },
      run: tc(host, ['qdisc', 'change', 'dev', dev, 'root', 'handle', ROOT_HANDLE, 'htb', 'default', d.root.defaultMinor.toString(16)]),
    });
  }

  // classes: the link class, then the tree in depth order
  const want = [
    { classid: LINK_CLASS, parent: 'root', rate: d.root.rate, ceil: d.root.rate, prio: undefined as number | undefined, quantum: quantumOf(d.root.rate), name: 'link' },
    ...d.classes.map((c) => ({ classid: c.classid, parent: c.parent, rate: c.rate, ceil: c.ceil, prio: d.leaves.some((l) => l.parent === c.classid) ? c.prio : undefined, quantum: c.quantum, name: c.name })),
  ];
  const wantIds = new Set(want.map((c) => c.classid));
  const stale = obs.classes.filter((c) => !wantIds.has(c.classid) || want.find((w) => w.classid === c.classid)!.parent !== c.parent);
  // children before parents
  const depth = (id: string): number => {
    const c = obs.classes.find((x) => x.classid === id);
    return !c || c.parent === 'root' ? 0 : 1 + depth(c.parent);
  };
  for (const c of stale.sort((a, b) => depth(b.classid) - depth(a.classid))) {
    steps.push({ change: { action: 'remove', object: `class ${dev} ${c.classid}` }, run: tc(host, ['class', 'del', 'dev', dev, 'classid', c.classid]) });
  }
  const staleIds = new Set(stale.map((c) => c.classid));
  for (const w of want) {
    const have = obs.classes.find((c) => c.classid === w.classid && !staleIds.has(c.classid));
    const same = have && sameRate(w.rate, have.rate) && sameRate(w.ceil, have.ceil) && (w.prio === undefined || (have.prio ?? 0) === w.prio);
    if (same) continue;
    const args = ['class', 'replace', 'dev', dev, 'parent', w.parent === 'root' ? ROOT_HANDLE : w.parent, 'classid', w.classid, 'htb', 'rate', tcRate(w.rate), 'ceil', tcRate(w.ceil), 'quantum', String(w.quantum), ...(w.prio !== undefined ? ['prio', String(w.prio)] : [])];
    steps.push({
      change: { action: have ? 'change' : 'add', object: `class ${dev} ${w.classid} (${w.name})`, detail: `rate ${tcRate(w.rate)} ceil ${tcRate(w.ceil)}${w.prio !== undefined ? ` prio ${w.prio}` : ''}` },
      run: tc(host, args),
    });
  }

  // leaf qdiscs
  for (const leaf of d.leaves) {
    const have = obs.qdiscs.find((q) => q.parent === leaf.parent);
    const limit = leaf.args[0] === 'limit' ? Number(leaf.args[1]) : undefined;
    const same = have && have.kind === leaf.kind && have.handle === leaf.handle && (limit === undefined || (have.options as { limit?: number })?.limit === limit);
    if (same) continue;
    steps.push({
      change: { action: have ? 'change' : 'add', object: `qdisc ${dev} ${leaf.handle} under ${leaf.parent}`, detail: [leaf.kind, ...leaf.args].join(' ') },
      async run() {
        // tc cannot replace a qdisc by one of another kind under the same handle: remove it first
        if (have && (have.kind !== leaf.kind || have.handle !== leaf.handle)) await host.run('tc', ['qdisc', 'del', 'dev', dev, 'parent', leaf.parent]);
        await host.run('tc', ['qdisc', 'replace', 'dev', dev, 'parent', leaf.parent, 'handle', leaf.handle, leaf.kind, ...leaf.args]);
      },
    });
  }

  // classifier
  const filter = obs.filters.find((f) => f.pref === CLASSIFIER_PREF && f.kind === 'bpf');
  if (d.classifier) {
    const table = d.classifier;
    const pin = programPin(host.bpfRoot, dev);
    const maps = ClassifierMaps.open(host.bpfRoot, dev);
    const current = maps ? await maps.read() : undefined;
    maps?.close();
    let pinnedId: number | undefined;
    if (existsSync(pin)) {
      const p = BpfProgram.openPinned(pin);
      pinnedId = p.info.id;
      p.close();
    }
    if (!maps || pinnedId === undefined) {
      steps.push({ change: { action: 'add', object: `classifier ${dev}`, detail: `BPF program ${QOS_PROGRAM} pinned under ${path.join(host.bpfRoot, 'qos', dev)}` }, run: async () => void (await loadClassifier(host.bpfRoot, dev)) });
    }
    if (!current || !sameTable(current, encodeTable(table))) {
      steps.push({
        change: { action: current ? 'change' : 'add', object: `classifier ${dev} rules`, detail: `${table.rules.length} entries, ${[...table.sets.values()].reduce((n, s) => n + s.length, 0)} prefixes` },
        async run() {
          const m = ClassifierMaps.open(host.bpfRoot, dev);
          if (!m) throw new Error(`classifier maps for ${dev} are not pinned under ${host.bpfRoot}`);
          try {
            await m.write(table);
          } finally {
            m.close();
          }
        },
      });
    }
    const attached = filter && filter.options?.prog?.name === QOS_PROGRAM && filter.options?.prog?.id === pinnedId && filter.options?.['direct-action'];
    if (!attached) {
      steps.push({
        change: { action: filter ? 'change' : 'add', object: `filter ${dev} parent 1: bpf ${QOS_PROGRAM}` },
        run: tc(host, ['filter', 'replace', 'dev', dev, 'parent', ROOT_HANDLE, 'prio', String(CLASSIFIER_PREF), 'handle', '1', 'bpf', 'object-pinned', pin, 'direct-action', 'classid', '1:1']),
      });
    }
  } else {
    if (filter) steps.push({ change: { action: 'remove', object: `filter ${dev} parent 1: bpf ${QOS_PROGRAM}` }, run: tc(host, ['filter', 'del', 'dev', dev, 'parent', ROOT_HANDLE, 'prio', String(CLASSIFIER_PREF)]) });
    if (existsSync(path.join(host.bpfRoot, 'qos', dev))) steps.push({ change: { action: 'remove', object: `classifier ${dev}` }, run: async () => unpinClassifier(host.bpfRoot, dev) });
  }

  if (d.ingressOf) steps.push(...redirectSteps(d, host, await observeIngress(host, d.ingressOf)));
  return steps;
}

/** tbf's burst and latency come back converted through kernel time units: equal within 1 %. */
function near(want: number, have: number | undefined): boolean {
  return have !== undefined && Math.abs(want - have) <= Math.max(2, want * 0.01);
}

function quantumOf(rate: number): number {
  return Math.min(200_000, Math.max(1600, Math.round(rate / 8 / 10)));
}

/** The mirred filter that sends an interface's ingress to its IFB. */
function redirectSteps(d: DevicePlan, host: Host, ing: ObservedIngress | undefined): TcStep[] {
  if (!d.ingressOf || !ing) return [];
  const iface = d.ingressOf;
  const steps: TcStep[] = [];
  let hook = ing.hook;
  if (!hook) {
    hook = 'clsact';
    steps.push({ change: { action: 'add', object: `qdisc ${iface} clsact` }, run: tc(host, ['qdisc', 'add', 'dev', iface, 'clsact']) });
  }
  const mine = ing.filters.filter((f) => f.pref === REDIRECT_PREF);
  const ok = mine.length === 1 && mine[0]!.kind === 'u32' && mine[0]!.options?.actions?.[0]?.kind === 'mirred' && mine[0]!.options?.actions?.[0]?.to_dev === d.device;
  if (!ok) {
    const parent = ingressParent(hook);
    steps.push({
      change: { action: mine.length ? 'change' : 'add', object: `filter ${iface} ingress redirect to ${d.device}` },
      async run() {
        if (mine.length) await host.run('tc', ['filter', 'del', 'dev', iface, ...parent, 'prio', String(REDIRECT_PREF)]);
        await host.run('tc', ['filter', 'add', 'dev', iface, ...parent, 'prio', String(REDIRECT_PREF), 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', d.device]);
      },
    });
  }
  return steps;
}

/** Steps that undo everything Patronus made for one device. */
async function removeSteps(m: Managed, host: Host): Promise<TcStep[]> {
  const steps: TcStep[] = [];
  if (m.ingressOf) {
    const ing = await observeIngress(host, m.ingressOf);
    if (ing.hook && ing.filters.some((f) => f.pref === REDIRECT_PREF)) {
      steps.push({ change: { action: 'remove', object: `filter ${m.ingressOf} ingress redirect to ${m.device}` }, run: tc(host, ['filter', 'del', 'dev', m.ingressOf, ...ingressParent(ing.hook), 'prio', String(REDIRECT_PREF)]) });
    }
    if (await deviceExists(host, m.device)) steps.push({ change: { action: 'remove', object: `ifb ${m.device}` }, run: async () => void (await host.run('ip', ['link', 'del', m.device])) });
  } else {
    const obs = await observeDevice(host, m.device);
    const root = obs.qdiscs.find((q) => q.root);
    if (root && root.handle === ROOT_HANDLE && (root.kind === 'htb' || root.kind === 'tbf')) {
      steps.push({ change: { action: 'remove', object: `qdisc ${m.device} root ${root.kind}` }, run: tc(host, ['qdisc', 'del', 'dev', m.device, 'root']) });
    }
  }
  if (existsSync(path.join(host.bpfRoot, 'qos', m.device))) steps.push({ change: { action: 'remove', object: `classifier ${m.device}` }, run: async () => unpinClassifier(host.bpfRoot, m.device) });
  return steps;
}

// ---------------------------------------------------------------------------
// state and status

function stateFile(host: Host): string {
  return path.join(host.stateDir, 'qos', 'state.json');
}

function loadState(host: Host): { devices: Managed[] } {
  try {
    return JSON.parse(readFileSync(stateFile(host), 'utf8')) as { devices: Managed[] };
  } catch {
    return { devices: [] };
  }
}

function saveState(host: Host, s: { devices: Managed[] }): void {
  mkdirSync(path.dirname(stateFile(host)), { recursive: true });
  writeFileSync(stateFile(host), `${JSON.stringify(s, null, 2)}\n`);
}

export interface QosDeviceStatus {
  device: string;
  ingressOf?: string;
  root?: string;
  classes: { classid: string; parent: string; rate: number; ceil: number; sentBytes?: number; sentPackets?: number; dropped?: number; overlimits?: number }[];
  classifier?: { entries: { packets: number; bytes: number }[]; unmatched: { packets: number; bytes: number } };
}

export async function qosStatus(host: Host): Promise<{ devices: QosDeviceStatus[] }> {
  const devices: QosDeviceStatus[] = [];
  for (const m of loadState(host).devices) {
    const obs = await observeDevice(host, m.device, true);
    const root = obs.qdiscs.find((q) => q.root);
    const st: QosDeviceStatus = { device: m.device, ...(m.ingressOf ? { ingressOf: m.ingressOf } : {}), ...(root ? { root: root.kind } : {}), classes: obs.classes };
    const maps = ClassifierMaps.open(host.bpfRoot, m.device);
    if (maps) {
      try {
        const n = (await maps.read()).rules.length;
        const h = maps.hitCounts(n);
        const num = (x: { packets: bigint; bytes: bigint }) => ({ packets: Number(x.packets), bytes: Number(x.bytes) });
        st.classifier = { entries: h.entries.map(num), unmatched: num(h.unmatched) };
      } finally {
        maps.close();
      }
    }
    devices.push(st);
  }
  return { devices };
}
