/**
 * WireGuard as a service module. Each enabled interface is either a kernel
 * link (`ip link add ... type wireguard`, when the kernel has the module) or
 * a wireguard-go process supervised like any daemon; both are configured
 * the same way: `wg setconf` with the full config piped on stdin (so private
 * keys only ever sit in 0600 files under keys/), then addresses, MTU and
 * routes with ip.
 *
 * The rendered <iface>.conf holds everything but the secrets: wg(8) syntax
 * with Patronus's own settings (addresses, MTU, routes) as comments, so one
 * file both drives change detection and passes `wg setconf`'s parser.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import type { CompileContext, ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import type { Issue } from '../../config/issues.js';
import { canonicalAddressWithLength, contains, parsePrefix, formatPrefix, familyOf } from '../../net/address.js';
import { daemonPid, DaemonError, startDaemon, stopDaemon, tailLog } from '../common/daemon.js';
import type { InstancePaths, RenderedFile, ServiceModule } from '../common/service.js';
import { generateKeyPair, generatePresharedKey, interfaceKeyFile, peerKeyFile, peerPskFile, publicKeyOf, readSecret, interfaceKeys, peerKeys, peerPresharedKey } from './keys.js';
import type { WireguardInterfaceConfig } from './schema.js';

export const WIREGUARD_DEFAULT_PORT = 51820;
/** Where wg(8) and wireguard-go meet: fixed by both tools, shared by every namespace. */
export const WIREGUARD_SOCKET_DIR = '/var/run/wireguard';

export interface WireguardModel {
  interfaces: WireguardInterfaceModel[];
}

export interface WireguardInterfaceModel {
  /** index in the config's wireguard.interfaces (for issue paths) */
  index: number;
  name: string;
  listenPort: number;
  addresses: string[];
  mtu: number;
  fwmark?: number;
  /** prefixes routed into the tunnel */
  routes: string[];
  implementation: 'auto' | 'kernel' | 'userspace';
  peers: WireguardPeerModel[];
}

export interface WireguardPeerModel {
  name: string;
  /** given in config; undefined when Patronus generates the peer's keys */
  publicKey?: string;
  presharedKey: boolean;
  allowedIps: string[];
  endpoint?: string;
  persistentKeepalive?: number;
}

/** The secrets a full `wg setconf` text needs, resolved from the key store. */
export interface WireguardSecrets {
  privateKey: string;
  /** public keys of generated peers, by peer name */
  peerPublicKeys: Map<string, string>;
  presharedKeys: Map<string, string>;
}

export type WireguardImplementation = 'kernel' | 'wireguard-go';

/** Per-interface status; never carries a private or pre-shared key. */
export interface WireguardInterfaceStatus {
  name: string;
  implementation: WireguardImplementation | 'down';
  publicKey?: string;
  listenPort?: number;
  fwmark?: number;
  peers: WireguardPeerStatus[];
}

export interface WireguardPeerStatus {
  interface: string;
  /** the peer's name from the config ("" when the key is unknown to the config) */
  peer: string;
  publicKey: string;
  presharedKey: boolean;
  endpoint?: string;
  allowedIps: string[];
  /** unix seconds of the last handshake, 0 = never */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive?: number;
}

export interface WireguardStatus {
  interfaces: WireguardInterfaceStatus[];
}

export const wireguardModule: ServiceModule<WireguardModel> = {
  name: 'wireguard',

  desired(ctx: CompileContext) {
    const issues: Issue[] = [];
    const interfaces: WireguardInterfaceModel[] = [];
    ctx.config.wireguard.interfaces.forEach((i, index) => {
      if (!i.enabled) return;
      issues.push(...overlapIssues(i, index));
      interfaces.push(interfaceModel(i, index));
    });
    return { desired: interfaces.length ? { interfaces } : null, issues };
  },

  render(model) {
    return model.interfaces.map((i) => ({ path: `${i.name}.conf`, content: renderInterface(i), mode: 0o600 }));
  },

  async check(model, _paths, host) {
    const issues: Issue[] = [];
    for (const i of model.interfaces) {
      const at = ['wireguard', 'interfaces', i.index];
      // secrets from the store when they exist, throwaway ones otherwise: checking changes nothing
      const text = fullConfig(i, peekSecrets(host.stateDir, i));
      const probe = `pchk${randomBytes(4).toString('hex')}`;
      const r = await wgSetconf(host, probe, text);
      // wg parses the whole file before it looks for the device, so "Unable to modify interface" means the text is valid
      if (r.exitCode !== 0 && !/Unable to modify interface|Unable to access interface/.test(r.stderr)) {
        issues.push({ path: at, message: `wg rejects the rendered configuration: ${r.stderr.trim().split('\n').join('; ')}` });
      }
      if (i.implementation === 'kernel' && !(await kernelHasWireguard(host))) {
        issues.push({ path: [...at, 'implementation'], message: `this kernel has no WireGuard module (${host.where}); use implementation: auto or userspace (wireguard-go)` });
      }
      if (i.implementation !== 'kernel' && !(await kernelHasWireguard(host)) && !(await hasCommand(host, 'wireguard-go'))) {
        issues.push({ path: [...at, 'implementation'], message: 'the kernel has no WireGuard module and wireguard-go is not installed' });
      }
    }
    return issues;
  },

  async start(model, paths, host) {
    await converge(model, paths, host);
  },

  async reload(model, paths, host) {
    await converge(model, paths, host);
  },

  async stop(paths, host) {
    for (const name of knownInterfaces(paths)) await stopInterface(name, paths, host);
  },

  async running(paths, host) {
    const names = renderedInterfaces(paths);
    if (!names.length) return false;
    for (const n of names) if ((await interfaceImplementation(n, paths, host)) === 'down') return false;
    return true;
  },

  async status(paths, host): Promise<WireguardStatus> {
    const interfaces: WireguardInterfaceStatus[] = [];
    for (const name of renderedInterfaces(paths)) interfaces.push(await interfaceStatus(name, paths, host));
    return { interfaces };
  },

  openings(config: Config): ServiceOpening[] {
    return config.wireguard.interfaces
      .filter((i) => i.enabled)
      .map((i) => ({ service: 'wireguard', proto: 'udp' as const, port: i.listenPort ?? WIREGUARD_DEFAULT_PORT, interfaces: [] }));
  },
};

export function interfaceModel(i: WireguardInterfaceConfig, index: number): WireguardInterfaceModel {
  const connected = i.addresses.map((a) => parsePrefix(a));
  const routes: string[] = [];
  if (i.routeAllowedIps) {
    for (const p of i.peers) {
      for (const a of p.allowedIps) {
        const pre = parsePrefix(a);
        if (pre.length === 0) continue; // default routes belong to gateways/policy routing, not to the tunnel
        if (connected.some((c) => c.length <= pre.length && contains(c, pre.address))) continue;
        const text = formatPrefix(pre);
        if (!routes.includes(text)) routes.push(text);
      }
    }
  }
  return {
    index,
    name: i.name,
    listenPort: i.listenPort ?? WIREGUARD_DEFAULT_PORT,
    addresses: [...i.addresses],
    mtu: i.mtu,
    ...(i.fwmark !== undefined ? { fwmark: i.fwmark } : {}),
    routes,
    implementation: i.implementation,
    peers: i.peers.map((p) => ({
      name: p.name,
      ...(p.publicKey ? { publicKey: p.publicKey } : {}),
      presharedKey: p.presharedKey,
      allowedIps: p.allowedIps.map((a) => formatPrefix(parsePrefix(a))),
      ...(p.endpoint ? { endpoint: p.endpoint } : {}),
      ...(p.persistentKeepalive ? { persistentKeepalive: p.persistentKeepalive } : {}),
    })),
  };
}

/** The rendered file: wg(8) syntax without secrets; Patronus settings as comments. */
export function renderInterface(i: WireguardInterfaceModel): string {
  return configText(i, undefined);
}

/** The text piped into `wg setconf`: the rendered file plus the secrets. */
export function fullConfig(i: WireguardInterfaceModel, s: WireguardSecrets): string {
  return configText(i, s);
}

/** Resolves (and on first use generates) the secrets an interface needs. */
export function resolveSecrets(stateDir: string, i: WireguardInterfaceModel): WireguardSecrets {
  const s: WireguardSecrets = { privateKey: interfaceKeys(stateDir, i.name).privateKey, peerPublicKeys: new Map(), presharedKeys: new Map() };
  for (const p of i.peers) {
    if (!p.publicKey) s.peerPublicKeys.set(p.name, peerKeys(stateDir, i.name, p.name).publicKey);
    if (p.presharedKey) s.presharedKeys.set(p.name, peerPresharedKey(stateDir, i.name, p.name));
  }
  return s;
}

/** Parses `wg show IF dump`, dropping the private key on its first line. */
export function parseDump(text: string, iface: string, names: Map<string, string> = new Map()): Omit<WireguardInterfaceStatus, 'implementation'> {
  const lines = text.trim().split('\n').filter(Boolean);
  const head = lines.shift()?.split('\t') ?? [];
  // head: private-key public-key listen-port fwmark
  const status: Omit<WireguardInterfaceStatus, 'implementation'> = { name: iface, peers: [] };
  if (head[1] && head[1] !== '(none)') status.publicKey = head[1];
  if (head[2]) status.listenPort = Number(head[2]);
  if (head[3] && head[3] !== 'off') status.fwmark = Number(head[3]);
  for (const l of lines) {
    const [pub, psk, endpoint, allowed, handshake, rx, tx, keepalive] = l.split('\t');
    if (!pub) continue;
    status.peers.push({
      interface: iface,
      peer: names.get(pub) ?? '',
      publicKey: pub,
      presharedKey: !!psk && psk !== '(none)',
      ...(endpoint && endpoint !== '(none)' ? { endpoint } : {}),
      allowedIps: allowed && allowed !== '(none)' ? allowed.split(',') : [],
      latestHandshake: Number(handshake ?? 0),
      rxBytes: Number(rx ?? 0),
      txBytes: Number(tx ?? 0),
      ...(keepalive && keepalive !== 'off' ? { persistentKeepalive: Number(keepalive) } : {}),
    });
  }
  return status;
}

/** Which implementation this host would use for a new interface. */
export async function probeImplementation(host: Host): Promise<WireguardImplementation | 'none'> {
  if (await kernelHasWireguard(host)) return 'kernel';
  return (await hasCommand(host, 'wireguard-go')) ? 'wireguard-go' : 'none';
}

// ---------------------------------------------------------------------------

function configText(i: WireguardInterfaceModel, s: WireguardSecrets | undefined): string {
  const out = [
    `# Patronus WireGuard interface ${i.name}: written by Patronus, changes are overwritten`,
    `# Address = ${i.addresses.join(', ') || '(none)'}`,
    `# MTU = ${i.mtu}`,
    `# Routes = ${i.routes.join(', ') || '(none)'}`,
    `# Implementation = ${i.implementation}`,
    '[Interface]',
  ];
  if (s) out.push(`PrivateKey = ${s.privateKey}`);
  out.push(`ListenPort = ${i.listenPort}`);
  if (i.fwmark !== undefined) out.push(`FwMark = ${i.fwmark}`);
  for (const p of i.peers) {
    out.push('', '[Peer]', `# Name = ${p.name}`);
    const pub = p.publicKey ?? s?.peerPublicKeys.get(p.name);
    if (pub) out.push(`PublicKey = ${pub}`);
    else out.push('# PublicKey = (generated by Patronus, kept under keys/wireguard)');
    if (p.presharedKey) out.push(s ? `PresharedKey = ${s.presharedKeys.get(p.name)}` : '# PresharedKey = (generated by Patronus, kept under keys/wireguard)');
    out.push(`AllowedIPs = ${p.allowedIps.join(', ')}`);
    if (p.endpoint) out.push(`Endpoint = ${p.endpoint}`);
    if (p.persistentKeepalive) out.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  return `${out.join('\n')}\n`;
}

function peekSecrets(stateDir: string, i: WireguardInterfaceModel): WireguardSecrets {
  const s: WireguardSecrets = {
    privateKey: readSecret(stateDir, interfaceKeyFile(i.name)) ?? generateKeyPair().privateKey,
    peerPublicKeys: new Map(),
    presharedKeys: new Map(),
  };
  for (const p of i.peers) {
    if (!p.publicKey) {
      const priv = readSecret(stateDir, peerKeyFile(i.name, p.name));
      s.peerPublicKeys.set(p.name, priv ? publicKeyOf(priv) : generateKeyPair().publicKey);
    }
    if (p.presharedKey) s.presharedKeys.set(p.name, readSecret(stateDir, peerPskFile(i.name, p.name)) ?? generatePresharedKey());
  }
  return s;
}

function overlapIssues(i: WireguardInterfaceConfig, index: number): Issue[] {
  // wg silently moves an allowed IP to the last peer that claims it: say so instead
  const issues: Issue[] = [];
  const owner = new Map<string, string>();
  i.peers.forEach((p, n) =>
    p.allowedIps.forEach((a, k) => {
      const key = formatPrefix(parsePrefix(a));
      const prev = owner.get(key);
      if (prev !== undefined && prev !== p.name) issues.push({ path: ['wireguard', 'interfaces', index, 'peers', n, 'allowedIps', k], message: `${key} is already an allowed IP of peer "${prev}"` });
      owner.set(key, p.name);
    }),
  );
  return issues;
}

function pidFileOf(paths: InstancePaths, iface: string): string {
  return path.join(paths.runDir, `${iface}.pid`);
}

function implFileOf(paths: InstancePaths, iface: string): string {
  return path.join(paths.runDir, `${iface}.impl`);
}

/** Interfaces in the rendered files on disk. */
function renderedInterfaces(paths: InstancePaths): string[] {
  if (!existsSync(paths.dir)) return [];
  return readdirSync(paths.dir)
    .filter((f) => f.endsWith('.conf'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** Interfaces Patronus brought up (by their marker files), whether still rendered or not. */
function knownInterfaces(paths: InstancePaths): string[] {
  const names = new Set(renderedInterfaces(paths));
  if (existsSync(paths.runDir)) for (const f of readdirSync(paths.runDir)) if (f.endsWith('.impl')) names.add(f.slice(0, -5));
  return [...names].sort();
}

async function converge(model: WireguardModel, paths: InstancePaths, host: Host): Promise<void> {
  const wanted = new Set(model.interfaces.map((i) => i.name));
  for (const name of knownInterfaces(paths)) {
    if (!wanted.has(name)) {
      await stopInterface(name, paths, host);
      rmSync(paths.file(`${name}.conf`), { force: true });
    }
  }
  for (const i of model.interfaces) {
    await bringUp(i, paths, host);
    await configure(i, paths, host);
  }
}

async function bringUp(i: WireguardInterfaceModel, paths: InstancePaths, host: Host): Promise<void> {
  const current = await interfaceImplementation(i.name, paths, host);
  if (current !== 'down') return;
  const kernel = i.implementation !== 'userspace' && (await kernelHasWireguard(host));
  if (i.implementation === 'kernel' && !kernel) throw new Error(`wireguard interface ${i.name}: the kernel has no WireGuard module (${host.where})`);
  if (kernel) {
    await host.run('ip', ['link', 'add', 'dev', i.name, 'type', 'wireguard']);
    writeFileSync(implFileOf(paths, i.name), 'kernel\n');
    return;
  }
  if (await linkExists(host, i.name)) throw new Error(`wireguard interface ${i.name}: a link of that name already exists (${host.where}) and Patronus did not make it`);
  if (existsSync(path.join(WIREGUARD_SOCKET_DIR, `${i.name}.sock`)) && !(await linkExists(host, i.name))) {
    // a live socket of that name belongs to an interface in another namespace: wg would talk to it
    const owner = await socketHasListener(i.name);
    if (owner) throw new Error(`wireguard interface ${i.name}: ${WIREGUARD_SOCKET_DIR}/${i.name}.sock belongs to another wireguard-go instance; interface names must be unique on this machine`);
  }
  writeFileSync(implFileOf(paths, i.name), 'wireguard-go\n');
  await startDaemon(host, {
    name: `wireguard-go ${i.name}`,
    command: 'wireguard-go',
    args: ['-f', i.name],
    env: { WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error' },
    pidFile: pidFileOf(paths, i.name),
    logFile: path.join(paths.dir, `${i.name}.log`),
    ready: async () => existsSync(path.join(WIREGUARD_SOCKET_DIR, `${i.name}.sock`)) && (await linkExists(host, i.name)),
    readyTimeoutMs: 30_000,
    settleMs: 50,
  });
}

async function configure(i: WireguardInterfaceModel, paths: InstancePaths, host: Host): Promise<void> {
  const secrets = resolveSecrets(host.stateDir, i);
  const r = await wgSetconf(host, i.name, fullConfig(i, secrets));
  if (r.exitCode !== 0) {
    const log = tailLog(path.join(paths.dir, `${i.name}.log`));
    throw new DaemonError(`wireguard ${i.name}`, `wg setconf failed: ${r.stderr.trim()}`, log);
  }
  await host.run('ip', ['link', 'set', 'dev', i.name, 'mtu', String(i.mtu)]);
  await syncAddresses(i, host);
  await host.run('ip', ['link', 'set', 'dev', i.name, 'up']);
  await syncRoutes(i, host);
}

async function syncAddresses(i: WireguardInterfaceModel, host: Host): Promise<void> {
  const r = await host.run('ip', ['-j', 'addr', 'show', 'dev', i.name]);
  const have = (JSON.parse(r.stdout || '[]') as { addr_info?: { local: string; prefixlen: number; scope?: string }[] }[])
    .flatMap((l) => l.addr_info ?? [])
    .filter((a) => a.scope !== 'link')
    .map((a) => `${a.local}/${a.prefixlen}`);
  const want = i.addresses.map(canonicalAddressWithLength);
  for (const a of have) if (!want.includes(canonicalAddressWithLength(a))) await host.run('ip', ['addr', 'del', a, 'dev', i.name]);
  for (const a of want) if (!have.map(canonicalAddressWithLength).includes(a)) await host.run('ip', ['addr', 'add', a, 'dev', i.name, ...(a.includes(':') ? ['nodad'] : [])]);
}

async function syncRoutes(i: WireguardInterfaceModel, host: Host): Promise<void> {
  for (const family of ['-4', '-6'] as const) {
    const r = await host.run('ip', ['-j', family, 'route', 'show', 'dev', i.name]);
    const have = (JSON.parse(r.stdout || '[]') as { dst: string; protocol?: string }[]).filter((x) => x.protocol !== 'kernel' && x.dst !== 'default' && !x.dst.startsWith('fe80:'));
    const want = i.routes.filter((p) => familyOf(p) === (family === '-6' ? 6 : 4));
    for (const h of have) {
      if (!want.includes(formatPrefix(parsePrefix(h.dst)))) await host.run('ip', [family, 'route', 'del', h.dst, 'dev', i.name], { reject: false });
    }
    for (const p of want) await host.run('ip', [family, 'route', 'replace', p, 'dev', i.name]);
  }
}

async function stopInterface(name: string, paths: InstancePaths, host: Host): Promise<void> {
  const impl = readImpl(paths, name);
  if (impl === 'wireguard-go') await stopDaemon({ name: `wireguard-go ${name}`, pidFile: pidFileOf(paths, name), command: 'wireguard-go' });
  // wireguard-go removes its TUN device on exit; a kernel link (or a leftover) is deleted here
  if (await linkExists(host, name)) await host.run('ip', ['link', 'del', 'dev', name], { reject: false });
  rmSync(implFileOf(paths, name), { force: true });
}

function readImpl(paths: InstancePaths, name: string): WireguardImplementation | undefined {
  try {
    const v = readFileSync(implFileOf(paths, name), 'utf8').trim();
    return v === 'kernel' || v === 'wireguard-go' ? v : undefined;
  } catch {
    return undefined;
  }
}

async function interfaceImplementation(name: string, paths: InstancePaths, host: Host): Promise<WireguardImplementation | 'down'> {
  const impl = readImpl(paths, name);
  if (impl === 'wireguard-go') return daemonPid(pidFileOf(paths, name), 'wireguard-go') && (await linkExists(host, name)) ? 'wireguard-go' : 'down';
  if (impl === 'kernel') return (await linkExists(host, name)) ? 'kernel' : 'down';
  return 'down';
}

async function interfaceStatus(name: string, paths: InstancePaths, host: Host): Promise<WireguardInterfaceStatus> {
  const implementation = await interfaceImplementation(name, paths, host);
  if (implementation === 'down') return { name, implementation, peers: [] };
  const r = await host.run('wg', ['show', name, 'dump']);
  return { ...parseDump(r.stdout, name, peerNames(name, paths, host.stateDir)), implementation };
}

/** public key -> peer name, from the rendered file and the key store. */
function peerNames(iface: string, paths: InstancePaths, stateDir: string): Map<string, string> {
  const names = new Map<string, string>();
  let text = '';
  try {
    text = readFileSync(paths.file(`${iface}.conf`), 'utf8');
  } catch {
    return names;
  }
  let current: string | undefined;
  for (const line of text.split('\n')) {
    const n = /^# Name = (.+)$/.exec(line);
    if (n) {
      current = n[1]!;
      const priv = readSecret(stateDir, peerKeyFile(iface, current));
      if (priv) names.set(publicKeyOf(priv), current);
      continue;
    }
    const k = /^PublicKey = (\S+)$/.exec(line);
    if (k && current) names.set(k[1]!, current);
  }
  return names;
}

/**
 * `wg setconf IF /dev/stdin` with the text on a pipe: the secrets never touch
 * the disk. node hands children a socket, which wg cannot fopen(), hence cat.
 * The script is constant; the interface name is an argument.
 */
function wgSetconf(host: Host, iface: string, text: string) {
  return host.run('sh', ['-c', 'cat | exec wg setconf "$1" /dev/stdin', 'sh', iface], { input: text, reject: false });
}

async function linkExists(host: Host, name: string): Promise<boolean> {
  return (await host.run('ip', ['link', 'show', 'dev', name], { reject: false })).exitCode === 0;
}

async function socketHasListener(iface: string): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect(path.join(WIREGUARD_SOCKET_DIR, `${iface}.sock`));
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const kernelProbe = new WeakMap<Host, Promise<boolean>>();

/** Whether `ip link add type wireguard` works in this host's namespace (probed once a host). */
export function kernelHasWireguard(host: Host): Promise<boolean> {
  let p = kernelProbe.get(host);
  if (!p) {
    p = (async () => {
      const probe = `pwgp${randomBytes(4).toString('hex')}`;
      const r = await host.run('ip', ['link', 'add', 'dev', probe, 'type', 'wireguard'], { reject: false });
      if (r.exitCode !== 0) return false;
      await host.run('ip', ['link', 'del', 'dev', probe], { reject: false });
      return true;
    })();
    kernelProbe.set(host, p);
  }
  return p;
}

async function hasCommand(host: Host, cmd: string): Promise<boolean> {
  return (await host.run('sh', ['-c', 'command -v "$1"', 'sh', cmd], { reject: false })).exitCode === 0;
}

