/**
 * Interfaces Patronus creates: bridges (ports, STP), 802.1Q VLANs, bonds
 * and PPPoE sessions (`interfaces[].kind`). Runs before the addressing
 * subsystem, so addresses, routes and firewall zones can name them.
 *
 * Kernel realism: bridges exist everywhere; VLAN (8021q), bonding and PPP
 * are probed in a scratch network namespace (`unshare -n`) and a document
 * that needs one the kernel lacks is refused at validation with "the kernel
 * lacks ...", before anything changes. What each kind compiles to (the `ip
 * link` arguments, pppd's options) is pure and unit-tested, so kernels that
 * have them get exactly that.
 *
 * Ownership: <state dir>/links.json records the links Patronus created and
 * the ports it enslaved. Only those are deleted or released when the
 * document stops naming them; a bridge that existed before is managed
 * (ports, STP) but never deleted.
 *
 * Hairpin: a bridge port is put in hairpin mode when a hairpin port forward
 * targets an address on the bridge's networks. With br_netfilter, a DNAT to
 * a host on the same bridge is bridged, not routed, so the reflected
 * connection of the forward's own target must leave by the port it came in
 * on, which a bridge does only in hairpin mode.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { defineSubsystem, step, type Change, type CompileContext, type Subsystem } from '../apply/subsystem.js';
import type { Host } from '../system/host.js';
import type { Issue, IssuePath } from '../config/issues.js';
import { contains } from '../net/address.js';
import { startDaemon, stopDaemon, daemonPid } from '../services/common/daemon.js';

export type LinkKind = 'bridge' | 'vlan' | 'bond' | 'pppoe';

export interface LinkSpec {
  name: string;
  kind: LinkKind;
  path: IssuePath;
  /** bridge, bond */
  ports: string[];
  /** bridge */
  stp: boolean;
  /** bridge ports in hairpin mode */
  hairpinPorts: string[];
  /** vlan, pppoe */
  parent?: string;
  vlanId?: number;
  bondMode?: string;
  pppoe?: { username: string; passwordFile: string; serviceName?: string };
  /** `ip` arguments that create it (pppoe: none, pppd creates it) */
  create: string[];
}

export interface LinksDesired {
  links: LinkSpec[];
}

/** Pure: the document's `kind:` interfaces -> what to create, with every problem found. */
export function compileLinks(ctx: Pick<CompileContext, 'config'>): { desired: LinksDesired; issues: Issue[] } {
  const issues: Issue[] = [];
  const ifs = ctx.config.interfaces;
  const byName = new Map(ifs.map((i, n) => [i.name, { i, n }]));
  const portOf = new Map<string, string>();
  const links: LinkSpec[] = [];
  ifs.forEach((i, n) => {
    const path: IssuePath = ['interfaces', n];
    const at = (field: string, message: string) => issues.push({ path: [...path, field], message });
    const only = (fields: string[]) => {
      for (const f of ['ports', 'stp', 'parent', 'vlanId', 'bondMode', 'pppoe'] as const) {
        if (i[f] !== undefined && !fields.includes(f)) at(f, i.kind ? `not used with kind ${i.kind}` : 'needs a kind (bridge, vlan, bond or pppoe): only interfaces Patronus creates have it');
      }
    };
    if (!i.kind) {
      only([]);
      return;
    }
    const ports = i.ports ?? [];
    if (i.kind === 'bridge' || i.kind === 'bond') {
      only(i.kind === 'bridge' ? ['ports', 'stp'] : ['ports', 'bondMode']);
      if (i.kind === 'bond' && !ports.length) at('ports', 'a bond needs at least one port');
      ports.forEach((p, j) => {
        const pp = [...path, 'ports', j];
        if (p === i.name) return issues.push({ path: pp, message: `"${p}" cannot be a port of itself` });
        const other = portOf.get(p);
        if (other !== undefined) return issues.push({ path: pp, message: `"${p}" is already a port of "${other}"` });
        portOf.set(p, i.name);
        const listed = byName.get(p);
        if (listed && listed.i.zone !== i.zone) {
          issues.push({ path: pp, message: `"${p}" is an interface of zone "${listed.i.zone}" (interfaces[${listed.n}]): a port carries its ${i.kind}'s zone ("${i.zone}"); remove it from one of them` });
        } else if (listed?.i.addresses?.length) {
          issues.push({ path: pp, message: `"${p}" has addresses (interfaces[${listed.n}].addresses): a port carries none, put them on "${i.name}"` });
        }
      });
    }
    if (i.kind === 'vlan') {
      only(['parent', 'vlanId']);
      if (!i.parent) at('parent', 'a VLAN needs its parent interface');
      if (i.vlanId === undefined) at('vlanId', 'a VLAN needs its 802.1Q id (1-4094)');
    }
    if (i.kind === 'pppoe') {
      only(['parent', 'pppoe']);
      if (!i.parent) at('parent', 'PPPoE needs the Ethernet interface it runs on');
      if (!i.pppoe) at('pppoe', 'PPPoE needs credentials (username, passwordFile)');
      if (i.addresses?.length) at('addresses', 'a PPPoE interface gets its address from the peer');
    }
    const hairpinPorts =
      i.kind === 'bridge'
        ? ports.filter(() => ctx.config.firewall.enabled && ctx.config.firewall.portForwards.some((pf) => pf.hairpin && (i.addresses ?? []).some((a) => contains(a, pf.target))))
        : [];
    const spec: LinkSpec = {
      name: i.name,
      kind: i.kind,
      path,
      ports,
      stp: i.stp ?? false,
      hairpinPorts,
      ...(i.parent !== undefined ? { parent: i.parent } : {}),
      ...(i.vlanId !== undefined ? { vlanId: i.vlanId } : {}),
      ...(i.kind === 'bond' ? { bondMode: i.bondMode ?? 'active-backup' } : {}),
      ...(i.pppoe ? { pppoe: i.pppoe } : {}),
      create: [],
    };
    spec.create = createArgs(spec);
    links.push(spec);
  });
  // a parent created by the document comes first
  const order = (l: LinkSpec) => (l.kind === 'bridge' ? 2 : l.kind === 'pppoe' ? 3 : l.parent && byName.get(l.parent)?.i.kind ? 1 : 0);
  links.sort((a, b) => order(a) - order(b));
  return { desired: { links }, issues };
}

/** Pure: the `ip` arguments that create a link of this kind. */
export function createArgs(l: Pick<LinkSpec, 'name' | 'kind' | 'stp' | 'parent' | 'vlanId' | 'bondMode'>): string[] {
  switch (l.kind) {
    case 'bridge':
      return ['link', 'add', 'name', l.name, 'type', 'bridge', 'stp_state', l.stp ? '1' : '0'];
    case 'vlan':
      return ['link', 'add', 'link', l.parent ?? '', 'name', l.name, 'type', 'vlan', 'protocol', '802.1Q', 'id', String(l.vlanId ?? 0)];
    case 'bond':
      return ['link', 'add', 'name', l.name, 'type', 'bond', 'mode', l.bondMode ?? 'active-backup', 'miimon', '100'];
    case 'pppoe':
      return [];
  }
}

/** Pure: pppd's options file for a PPPoE interface (mode 0600: it holds the password). */
export function pppdOptions(l: Pick<LinkSpec, 'name' | 'parent' | 'pppoe'>, password: string): string {
  const q = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;
  return [
    'plugin pppoe.so',
    ...(l.pppoe?.serviceName ? [`rp_pppoe_service ${q(l.pppoe.serviceName)}`] : []),
    `nic-${l.parent}`,
    `ifname ${l.name}`,
    `user ${q(l.pppoe?.username ?? '')}`,
    `password ${q(password)}`,
    'noauth',
    'hide-password',
    'persist',
    'maxfail 0',
    'holdoff 5',
    'lcp-echo-interval 10',
    'lcp-echo-failure 3',
    'noipdefault',
    // routes and DNS are Patronus' business (routing.routes, dns:), not pppd's
    'nodefaultroute',
    'nodetach',
    '',
  ].join('\n');
}

/** What this kernel can create, probed once per process in a scratch network namespace. */
export async function probeLinkKind(host: Host, kind: LinkKind): Promise<string | undefined> {
  const cached = probed.get(kind);
  if (cached !== undefined) return cached || undefined;
  let missing = '';
  if (kind === 'pppoe') {
    if (!existsSync('/dev/ppp')) missing = 'PPP (/dev/ppp: ppp_generic, pppoe)';
    else if ((await host.run('pppd', ['--version'], { reject: false })).exitCode === -1) missing = 'pppd (Debian package ppp)';
  } else {
    const batch =
      kind === 'vlan'
        ? 'link add ptprobe0 type veth peer name ptprobe1\nlink add link ptprobe0 name ptprobe0.2 type vlan id 2\n'
        : kind === 'bond'
          ? 'link add ptprobe0 type bond\n'
          : 'link add ptprobe0 type bridge\n';
    const r = await host.run('unshare', ['-n', '--', 'ip', '-batch', '-'], { input: batch, reject: false });
    if (r.exitCode !== 0) missing = kind === 'vlan' ? '802.1Q VLANs (8021q)' : kind === 'bond' ? 'bonding' : 'bridges';
  }
  probed.set(kind, missing);
  return missing || undefined;
}
const probed = new Map<LinkKind, string>();

export const linksSubsystem: Subsystem<LinksDesired> = defineSubsystem<LinksDesired>({
  name: 'links',

  compile(ctx) {
    return compileLinks(ctx);
  },

  /** One step per link created, changed or removed (the links are read once, when the steps are made). */
  async steps(desired, host) {
    return (await steps(desired, host)).map((s) => step(s.change, s.run));
  },

  async validate(desired, host) {
    const issues: Issue[] = [];
    if (desired.links.length === 0) return issues;
    const have = await readLinks(host);
    const made = new Set(desired.links.map((l) => l.name));
    for (const l of desired.links) {
      const lacks = await probeLinkKind(host, l.kind);
      if (lacks) {
        issues.push({ path: [...l.path, 'kind'], message: `the kernel lacks ${lacks} (${host.where}): a ${l.kind} interface cannot be created here` });
        continue;
      }
      const existing = have.get(l.name);
      if (existing && existing.kind !== l.kind) issues.push({ path: [...l.path, 'name'], message: `"${l.name}" exists already as ${existing.kind ?? 'a device'} interface, not ${l.kind}` });
      for (const [j, p] of l.ports.entries()) {
        if (!have.has(p) && !made.has(p)) issues.push({ path: [...l.path, 'ports', j], message: `interface "${p}" does not exist (${host.where})` });
      }
      if (l.parent && !have.has(l.parent) && !made.has(l.parent)) issues.push({ path: [...l.path, 'parent'], message: `interface "${l.parent}" does not exist (${host.where})` });
      if (l.pppoe && !existsSync(l.pppoe.passwordFile)) issues.push({ path: [...l.path, 'pppoe', 'passwordFile'], message: `${l.pppoe.passwordFile} does not exist` });
    }
    return issues;
  },

  async teardown(host) {
    await applyLinks({ links: [] }, host);
  },

  async status(host) {
    const have = await readLinks(host);
    const owned = readOwned(host);
    return owned.created.map((name) => ({ name, kind: have.get(name)?.kind ?? 'missing', ports: [...have.values()].filter((l) => l.master === name).map((l) => l.name) }));
  },
});

async function applyLinks(desired: LinksDesired, host: Host): Promise<void> {
  for (const s of await steps(desired, host)) await s.run();
}

// --- internals

interface LinkState {
  name: string;
  kind?: string;
  master?: string;
  up: boolean;
  stp?: number;
  hairpin?: boolean;
}

/** The links Patronus created (and removes once the document no longer names them). */
export function createdLinks(host: Host): string[] {
  return readOwned(host).created;
}

/** What Patronus made: links it created, ports it enslaved (port -> master). */
interface Owned {
  created: string[];
  ports: Record<string, string>;
}

interface Step {
  change: Change;
  run(): Promise<void>;
}

async function steps(desired: LinksDesired, host: Host): Promise<Step[]> {
  const owned = readOwned(host);
  // nothing wanted and nothing Patronus made: there is nothing to read (an `ip` process was ~100 ms of every apply)
  if (desired.links.length === 0 && owned.created.length === 0 && Object.keys(owned.ports).length === 0) return [];
  const have = await readLinks(host);
  const out: Step[] = [];
  const ip = async (args: string[], what: string) => {
    const r = await host.run('ip', args, { reject: false });
    if (r.exitCode !== 0) throw new Error(`links: ${what} (${host.where}): ${r.stderr.trim()}`);
  };
  const update = (fn: (o: Owned) => void) => {
    const o = readOwned(host);
    fn(o);
    writeOwned(host, o);
  };
  const wantedPorts = new Map<string, string>();
  for (const l of desired.links) {
    const cur = have.get(l.name);
    if (l.kind === 'pppoe') {
      out.push(...pppoeSteps(l, host));
      continue;
    }
    if (!cur) {
      out.push({
        change: { action: 'add', object: `${l.kind} ${l.name}`, detail: l.kind === 'bridge' ? `stp ${l.stp ? 'on' : 'off'}` : l.kind === 'vlan' ? `802.1Q id ${l.vlanId} on ${l.parent}` : `mode ${l.bondMode}` },
        run: async () => {
          update((o) => void (o.created.includes(l.name) || o.created.push(l.name)));
          await ip(l.create, `create ${l.kind} ${l.name}`);
        },
      });
    } else if (l.kind === 'bridge' && cur.stp !== (l.stp ? 1 : 0)) {
      out.push({ change: { action: 'change', object: `bridge ${l.name} stp`, detail: `${cur.stp ? 'on' : 'off'} -> ${l.stp ? 'on' : 'off'}` }, run: () => ip(['link', 'set', 'dev', l.name, 'type', 'bridge', 'stp_state', l.stp ? '1' : '0'], `set stp on ${l.name}`) });
    }
    for (const p of l.ports) {
      wantedPorts.set(p, l.name);
      const pc = have.get(p);
      if (pc?.master !== l.name) {
        out.push({
          change: { action: 'add', object: `port ${p} of ${l.kind} ${l.name}` },
          run: async () => {
            update((o) => void (o.ports[p] = l.name));
            // a bond takes only ports that are down
            if (l.kind === 'bond') await ip(['link', 'set', 'dev', p, 'down'], `take ${p} down for ${l.name}`);
            await ip(['link', 'set', 'dev', p, 'master', l.name], `add ${p} to ${l.name}`);
            await ip(['link', 'set', 'dev', p, 'up'], `bring ${p} up`);
          },
        });
      } else if (!pc.up) {
        out.push({ change: { action: 'change', object: `port ${p}`, detail: 'down -> up' }, run: () => ip(['link', 'set', 'dev', p, 'up'], `bring ${p} up`) });
      }
      if (l.kind === 'bridge') {
        const want = l.hairpinPorts.includes(p);
        if ((pc?.hairpin ?? false) !== want) {
          out.push({ change: { action: 'change', object: `port ${p} hairpin`, detail: want ? 'off -> on (a port forward target is on this bridge)' : 'on -> off' }, run: () => ip(['link', 'set', 'dev', p, 'type', 'bridge_slave', 'hairpin', want ? 'on' : 'off'], `hairpin on ${p}`) });
        }
      }
    }
    if (!cur?.up) out.push({ change: { action: 'change', object: `${l.kind} ${l.name}`, detail: 'down -> up' }, run: () => ip(['link', 'set', 'dev', l.name, 'up'], `bring ${l.name} up`) });
  }
  // ports Patronus enslaved that the document no longer puts there
  for (const [p, master] of Object.entries(owned.ports)) {
    if (wantedPorts.get(p) === master) continue;
    const enslaved = have.get(p)?.master === master;
    out.push({
      change: { action: 'remove', object: `port ${p} of ${master}` },
      run: async () => {
        if (enslaved) await ip(['link', 'set', 'dev', p, 'nomaster'], `release ${p} from ${master}`);
        update((o) => void delete o.ports[p]);
      },
    });
  }
  // links Patronus created that the document no longer names
  const names = new Set(desired.links.map((l) => l.name));
  for (const name of owned.created) {
    if (names.has(name)) continue;
    out.push({
      change: { action: 'remove', object: `${have.get(name)?.kind ?? 'link'} ${name}` },
      run: async () => {
        if (existsSync(join(host.stateDir, 'links', `ppp-${name}`))) await stopPppoe(host, name);
        else if (have.has(name)) await ip(['link', 'del', 'dev', name], `delete ${name}`);
        update((o) => void (o.created = o.created.filter((x) => x !== name)));
      },
    });
  }
  return out;
}

function pppoeSteps(l: LinkSpec, host: Host): Step[] {
  const dir = join(host.stateDir, 'links', `ppp-${l.name}`);
  const spec = { name: `pppd ${l.name}`, command: 'pppd', pidFile: join(dir, 'pppd.pid'), logFile: join(dir, 'pppd.log') };
  if (daemonPid(spec.pidFile, 'pppd') !== undefined) return [];
  return [
    {
      change: { action: 'start', object: `pppoe ${l.name}`, detail: `on ${l.parent} as ${l.pppoe?.username}` },
      run: async () => {
        const o = readOwned(host);
        if (!o.created.includes(l.name)) writeOwned(host, { ...o, created: [...o.created, l.name] });
        mkdirSync(dir, { recursive: true });
        const password = readFileSync(l.pppoe!.passwordFile, 'utf8').trim();
        writeFileSync(join(dir, 'options'), pppdOptions(l, password), { mode: 0o600 });
        await startDaemon(host, { ...spec, args: ['file', join(dir, 'options')] });
      },
    },
  ];
}

/** pppd of a PPPoE interface no longer wanted (teardown path). */
export async function stopPppoe(host: Host, name: string): Promise<void> {
  const dir = join(host.stateDir, 'links', `ppp-${name}`);
  await stopDaemon({ name: `pppd ${name}`, command: 'pppd', pidFile: join(dir, 'pppd.pid') });
}

interface LinkJson {
  ifname: string;
  master?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { stp_state?: number }; info_slave_kind?: string; info_slave_data?: { hairpin?: boolean } };
}

async function readLinks(host: Host): Promise<Map<string, LinkState>> {
  const r = await host.run('ip', ['-d', '-j', 'link', 'show']);
  return new Map(
    (JSON.parse(r.stdout) as LinkJson[]).map((l) => [
      l.ifname,
      {
        name: l.ifname,
        ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}),
        ...(l.master ? { master: l.master } : {}),
        up: l.flags?.includes('UP') ?? false,
        ...(l.linkinfo?.info_data?.stp_state !== undefined ? { stp: l.linkinfo.info_data.stp_state } : {}),
        ...(l.linkinfo?.info_slave_kind === 'bridge' ? { hairpin: l.linkinfo.info_slave_data?.hairpin ?? false } : {}),
      },
    ]),
  );
}

function ownedPath(host: Host): string {
  return join(host.stateDir, 'links.json');
}

function readOwned(host: Host): Owned {
  try {
    const o = JSON.parse(readFileSync(ownedPath(host), 'utf8')) as Partial<Owned>;
    return { created: o.created ?? [], ports: o.ports ?? {} };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { created: [], ports: {} };
    throw new Error(`links: cannot read ${ownedPath(host)}: ${(e as Error).message}`);
  }
}

function writeOwned(host: Host, o: Owned): void {
  mkdirSync(host.stateDir, { recursive: true });
  const tmp = `${ownedPath(host)}.tmp`;
  writeFileSync(tmp, JSON.stringify(o));
  renameSync(tmp, ownedPath(host));
}
