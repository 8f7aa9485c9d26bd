/**
 * OpenVPN as a service module: one `openvpn` process per enabled server or
 * client, supervised directly (foreground, own pid/log, management over a
 * unix socket in the instance's run directory).
 *
 * Servers: TLS mode with a CA, a server certificate (serverAuth) and one
 * client certificate (clientAuth) per listed client, all made by Patronus
 * (src/services/pki); tls-crypt; AEAD data ciphers only; `disable-dco`
 * (no DCO module here, and DCO ignores some options); `dev-type tun` so the
 * device can have any name; `ccd-exclusive`, so only the clients listed in
 * the config connect, and removing a client revokes it without a CRL.
 *
 * A server may present an ACME certificate (`certificate:`, from the
 * `certificates:` section) instead of one from its CA: it is copied into the
 * instance dir like any rendered file (tls/server-NAME.pem with the chain,
 * .key), the CA stays the one that signs and verifies client certificates,
 * and exported profiles verify the server by the certificate's common name
 * and the ACME CA's root. OpenVPN 2.6 reads its certificate only when it
 * starts (SIGHUP and SIGUSR1 restart it as well, dropping every client;
 * upstream OpenVPN/openvpn#730), so a renewal restarts that server: UDP
 * clients, told by explicit-exit-notify, reconnect at once.
 *
 * Nothing about individual clients is in the server's own config file, so
 * a changed client list never restarts the server (a restart drops every
 * connected client): per-client settings live in the client-config-dir
 * (read when that client connects), the kernel routes to the networks behind
 * clients are kept on the tun device by Patronus (not `route` lines), and a
 * removed client that is still connected is cut off through the management
 * interface (`kill CN`); ccd-exclusive turns its reconnection away. A client
 * whose ccd file changed is disconnected the same way, so it comes back with
 * its new address and routes.
 *
 * check(): OpenVPN has no dry-run mode for a full config (--test-crypto
 * wants static keys), so the checker is OpenVPN itself, started on the
 * rendered files inside a throwaway network namespace (`unshare -n`): a
 * server must reach "Initialization Sequence Completed", a client must get
 * past loading its keys to its first connection attempt.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import type { CompileContext, ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import type { Issue } from '../../config/issues.js';
import { addressBytes, formatPrefix, ipv4Netmask, parsePrefix, prefixRange, type Prefix, familyOf } from '../../net/address.js';
import { daemonPid, startDaemon, stopDaemon } from '../common/daemon.js';
import type { InstancePaths, RenderedFile, ServiceModule } from '../common/service.js';
import { ensureCa, ensureCert, pkiDir } from '../pki/pki.js';
import { certificateRoot, commonName } from '../../certificates/trust.js';
import type { OpenvpnClientConfig, OpenvpnServerConfig } from './schema.js';

export const OPENVPN_DEFAULT_PORT = 1194;

export interface OpenvpnModel {
  instances: OpenvpnInstance[];
}

export type OpenvpnInstance = OpenvpnServerModel | OpenvpnClientModel;

interface InstanceBase {
  /** "server-<name>" or "client-<name>": file, pid and socket names */
  id: string;
  /** index in openvpn.servers / openvpn.clients (issue paths) */
  index: number;
  name: string;
  device: string;
  dataCiphers: string[];
  verb: number;
}

export interface OpenvpnServerModel extends InstanceBase {
  kind: 'server';
  proto: 'udp' | 'tcp';
  port: number;
  local?: string;
  network: { address: string; netmask: string; length: number };
  network6?: string;
  pushRoutes: string[];
  redirectGateway: boolean;
  dns: string[];
  domain?: string;
  clientToClient: boolean;
  keepalive: { interval: number; timeout: number };
  maxClients?: number;
  remoteHost?: string;
  /** an ACME certificate (certificates.issue) presented instead of one from the server's CA */
  certificate?: string;
  clients: { name: string; address?: string; routes: string[] }[];
}

export interface OpenvpnClientModel extends InstanceBase {
  kind: 'client';
  profile?: string;
  remote?: { host: string; port: number; proto: 'udp' | 'tcp' };
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  tlsCryptFile?: string;
}

/** One connected client as the server's management interface reports it. */
export interface OpenvpnConnectedClient {
  server: string;
  commonName: string;
  realAddress: string;
  virtualAddress: string;
  virtualAddress6: string;
  rxBytes: number;
  txBytes: number;
  /** unix seconds */
  connectedSince: number;
  cipher: string;
}

export interface OpenvpnInstanceStatus {
  id: string;
  kind: 'server' | 'client';
  name: string;
  running: boolean;
  /** management `state`: CONNECTED, WAIT, AUTH, RECONNECTING, ... */
  state?: string;
  /** the tunnel address this end has */
  localAddress?: string;
  clients?: OpenvpnConnectedClient[];
  /** client instances: bytes through the tunnel */
  rxBytes?: number;
  txBytes?: number;
}

export interface OpenvpnStatus {
  instances: OpenvpnInstanceStatus[];
}

export const openvpnModule: ServiceModule<OpenvpnModel> = {
  name: 'openvpn',

  desired(ctx: CompileContext) {
    const issues: Issue[] = [];
    const instances: OpenvpnInstance[] = [];
    ctx.config.openvpn.servers.forEach((s, index) => {
      if (!s.enabled) return;
      issues.push(...serverIssues(s, index));
      instances.push(serverModel(s, index));
    });
    ctx.config.openvpn.clients.forEach((c, index) => {
      if (!c.enabled) return;
      for (const f of ['profile', 'caFile', 'certFile', 'keyFile', 'tlsCryptFile'] as const) {
        const file = c[f];
        if (!file) continue;
        if (!path.isAbsolute(file)) {
          issues.push({ path: ['openvpn', 'clients', index, f], message: `"${file}" must be an absolute path` });
          continue;
        }
        try {
          ctx.readFile(file);
        } catch (e) {
          issues.push({ path: ['openvpn', 'clients', index, f], message: `cannot read ${file}: ${(e as Error).message}` });
        }
      }
      instances.push(clientModel(c, index));
    });
    return { desired: instances.length ? { instances } : null, issues };
  },

  render(model, paths) {
    const files: RenderedFile[] = [];
    for (const i of model.instances) {
      if (i.kind === 'server') {
        files.push({ path: `${i.id}.conf`, content: renderServer(i, paths) });
        for (const c of i.clients) files.push({ path: `ccd-${i.name}/${c.name}`, content: renderCcd(i, c) });
        // not read by openvpn: makes a removal (a ccd file less) a change that plan shows and apply acts on
        files.push({ path: `${i.id}.clients`, content: `# clients allowed on ${i.name} (one ccd file each)\n${i.clients.map((c) => `${c.name}\n`).join('')}` });
      } else {
        files.push({ path: `${i.id}.conf`, content: renderClient(i, paths) });
      }
    }
    return files;
  },

  async check(model, paths, host) {
    // the scratch instance needs the key material its files name: copy what
    // the real store has, make the rest (in the scratch dir only)
    const scratchState = stateDirOf(paths);
    const realKeys = path.join(host.stateDir, 'keys');
    for (const sub of ['pki', 'openvpn']) {
      if (existsSync(path.join(realKeys, sub))) cpSync(path.join(realKeys, sub), path.join(scratchState, 'keys', sub), { recursive: true });
    }
    const issues: Issue[] = [];
    for (const i of model.instances) {
      if (i.kind === 'server') await ensureServerMaterial(scratchState, i);
      pruneCcd(i, paths);
      const at = ['openvpn', i.kind === 'server' ? 'servers' : 'clients', i.index];
      // the throwaway namespace has none of this host's addresses: bind to any there
      if (i.kind === 'server' && i.local) writeFileSync(paths.file(`${i.id}.conf`), readFileSync(paths.file(`${i.id}.conf`), 'utf8').replace(/^local .*\n/m, ''));
      const problem = await dryRun(paths.file(`${i.id}.conf`), i.kind);
      if (problem) issues.push({ path: at, message: `openvpn rejects the rendered configuration: ${problem}` });
    }
    return issues;
  },

  async start(model, paths, host) {
    await converge(model, paths, host, undefined);
  },

  async reload(model, paths, host, changed) {
    await converge(model, paths, host, changed);
  },

  async stop(paths) {
    for (const id of knownInstances(paths)) await stopInstance(id, paths);
  },

  async running(paths) {
    const ids = renderedInstances(paths);
    return ids.length > 0 && ids.every((id) => !!daemonPid(pidFileOf(paths, id), 'openvpn'));
  },

  async status(paths): Promise<OpenvpnStatus> {
    const instances: OpenvpnInstanceStatus[] = [];
    for (const id of renderedInstances(paths)) instances.push(await instanceStatus(id, paths));
    return { instances };
  },

  certificates(model) {
    return model.instances.flatMap((i) => (i.kind === 'server' && i.certificate ? [{ name: i.certificate, file: serverCertFile(i.name) }] : []));
  },

  openings(config: Config): ServiceOpening[] {
    return config.openvpn.servers.filter((s) => s.enabled).map((s) => ({ service: 'openvpn', proto: s.proto, port: s.port, interfaces: [] }));
  },
};

/**
 * The .ovpn profile of one client of a server: inline CA, certificate, key
 * and tls-crypt key. Certificates are made on the server's first apply.
 */
export function exportProfile(stateDir: string, server: OpenvpnServerConfig, clientName: string, opts: { rootCaFile?: string } = {}): string {
  if (!server.clients.some((c) => c.name === clientName)) throw new Error(`openvpn server ${server.name} has no client "${clientName}"`);
  if (!server.remoteHost) throw new Error(`openvpn server ${server.name}: set remoteHost (what clients connect to) to export profiles`);
  const dir = pkiDir(stateDir, caName(server.name));
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8').trim();
    } catch {
      throw new Error(`openvpn server ${server.name}: ${path.basename(f)} does not exist yet (apply the configuration first)`);
    }
  };
  // the server's certificate: from its CA (verified by that CA and its fixed name), or an ACME one
  // (verified by the ACME CA's root and the common name; renewals keep both)
  let serverCa = () => read(path.join(dir, 'ca.crt'));
  let serverName = serverCommonName(server.name);
  if (server.certificate) {
    const { leaf, rootPem } = certificateRoot(stateDir, server.certificate, opts.rootCaFile);
    const cn = commonName(leaf);
    if (!cn) throw new Error(`openvpn server ${server.name}: certificate ${server.certificate} has no common name, and OpenVPN clients verify a server by it (verify-x509-name)`);
    serverCa = () => rootPem.trim();
    serverName = cn;
  }
  const lines = [
    `# OpenVPN profile for ${clientName} on ${server.name} (exported by Patronus)`,
    'client',
    'dev tun',
    `remote ${server.remoteHost} ${server.port} ${server.proto}`,
    'nobind',
    'resolv-retry infinite',
    'remote-cert-tls server',
    `verify-x509-name ${serverName} name`,
    `data-ciphers ${server.dataCiphers.join(':')}`,
    'tls-version-min 1.2',
    'verb 3',
    '<ca>',
    serverCa(),
    '</ca>',
    '<cert>',
    read(path.join(dir, `${certName(clientName)}.crt`)),
    '</cert>',
    '<key>',
    read(path.join(dir, `${certName(clientName)}.key`)),
    '</key>',
    '<tls-crypt>',
    read(tlsCryptFile(stateDir, server.name)),
    '</tls-crypt>',
  ];
  return `${lines.join('\n')}\n`;
}

/** A new tls-crypt key in OpenVPN's static key format (2048 random bits). */
export function generateTlsCryptKey(): string {
  const hex = randomBytes(256).toString('hex');
  return `-----BEGIN OpenVPN Static key V1-----\n${hex.match(/.{32}/g)!.join('\n')}\n-----END OpenVPN Static key V1-----\n`;
}

// ---------------------------------------------------------------------------

const caName = (server: string) => `openvpn-${server}`;
const certName = (client: string) => `client-${client}`;
const serverCommonName = (server: string) => `${server}-server`;
/** the instance-dir copy of a server's ACME certificate (.pem with the chain, .key) */
const serverCertFile = (server: string) => `tls/server-${server}`;
const keysRoot = (stateDir: string) => path.join(stateDir, 'keys');
const tlsCryptFile = (stateDir: string, server: string) => path.join(keysRoot(stateDir), 'openvpn', `${server}.tlscrypt`);
/** instancePaths(stateDir, name).dir is <stateDir>/services/<name> */
const stateDirOf = (paths: InstancePaths) => path.resolve(paths.dir, '..', '..');
const pidFileOf = (paths: InstancePaths, id: string) => path.join(paths.runDir, `${id}.pid`);
const socketOf = (paths: InstancePaths, id: string) => path.join(paths.runDir, `${id}.sock`);
const logOf = (paths: InstancePaths, id: string) => path.join(paths.dir, `${id}.log`);

function serverModel(s: OpenvpnServerConfig, index: number): OpenvpnServerModel {
  const net = parsePrefix(s.network);
  return {
    kind: 'server',
    id: `server-${s.name}`,
    index,
    name: s.name,
    device: s.device ?? `ovpn-${s.name}`,
    dataCiphers: [...s.dataCiphers],
    verb: s.verb,
    proto: s.proto,
    port: s.port,
    ...(s.local ? { local: s.local } : {}),
    network: { address: net.address, netmask: ipv4Netmask(net.length), length: net.length },
    ...(s.network6 ? { network6: s.network6 } : {}),
    pushRoutes: [...s.pushRoutes],
    redirectGateway: s.redirectGateway,
    dns: [...s.dns],
    ...(s.domain ? { domain: s.domain } : {}),
    clientToClient: s.clientToClient,
    keepalive: { ...s.keepalive },
    ...(s.maxClients ? { maxClients: s.maxClients } : {}),
    ...(s.remoteHost ? { remoteHost: s.remoteHost } : {}),
    ...(s.certificate ? { certificate: s.certificate } : {}),
    clients: s.clients.map((c) => ({ name: c.name, ...(c.address ? { address: c.address } : {}), routes: [...c.routes] })),
  };
}

function clientModel(c: OpenvpnClientConfig, index: number): OpenvpnClientModel {
  return {
    kind: 'client',
    id: `client-${c.name}`,
    index,
    name: c.name,
    device: c.device ?? `ovpn-${c.name}`,
    dataCiphers: [...c.dataCiphers],
    verb: c.verb,
    ...(c.profile ? { profile: c.profile } : {}),
    ...(c.remote ? { remote: { host: c.remote, port: c.port, proto: c.proto } } : {}),
    ...(c.caFile ? { caFile: c.caFile } : {}),
    ...(c.certFile ? { certFile: c.certFile } : {}),
    ...(c.keyFile ? { keyFile: c.keyFile } : {}),
    ...(c.tlsCryptFile ? { tlsCryptFile: c.tlsCryptFile } : {}),
  };
}

function serverIssues(s: OpenvpnServerConfig, index: number): Issue[] {
  const issues: Issue[] = [];
  const at = ['openvpn', 'servers', index];
  const net = parsePrefix(s.network);
  if (net.length > 29) issues.push({ path: [...at, 'network'], message: 'must be /29 or larger (the server and each client need an address)' });
  const { first: base, last } = prefixRange(net as Prefix & { family: 4 });
  const used = new Map<string, string>();
  s.clients.forEach((c, k) => {
    if (!c.address) return;
    const p = ['openvpn', 'servers', index, 'clients', k, 'address'];
    if (c.address.includes(':')) {
      issues.push({ path: p, message: 'must be an IPv4 address' });
      return;
    }
    const a = addressBytes(c.address, 4).readUInt32BE(0);
    if (a < base || a > last) issues.push({ path: p, message: `${c.address} is outside the server network ${s.network}` });
    else if (a === base || a === last) issues.push({ path: p, message: `${c.address} is the network or broadcast address of ${s.network}` });
    else if (a === base + 1) issues.push({ path: p, message: `${c.address} is the server's own address` });
    else if (used.has(c.address)) issues.push({ path: p, message: `${c.address} is already the address of client "${used.get(c.address)}"` });
    used.set(c.address, c.name);
  });
  return issues;
}

function renderServer(s: OpenvpnServerModel, paths: InstancePaths): string {
  const state = stateDirOf(paths);
  const pki = pkiDir(state, caName(s.name));
  const out = [
    `# Patronus OpenVPN server ${s.name}: written by Patronus, changes are overwritten`,
    s.certificate ? `# certificate: ${s.certificate} (ACME, certificates.issue); clients: certificates of the server CA` : `# certificate: CN=${serverCommonName(s.name)}${s.remoteHost ? `, subjectAltName ${s.remoteHost}` : ''}`,
    'mode server',
    'tls-server',
    `dev ${s.device}`,
    'dev-type tun',
    'topology subnet',
    `proto ${s.proto === 'tcp' ? 'tcp-server' : 'udp'}`,
    `port ${s.port}`,
  ];
  if (s.local) out.push(`local ${s.local}`);
  out.push(`server ${s.network.address} ${s.network.netmask}`);
  if (s.network6) out.push(`server-ipv6 ${s.network6}`);
  out.push(
    `ca ${path.join(pki, 'ca.crt')}`,
    // the chain after the leaf in the .pem goes out with it (OpenVPN loads extra certificates from the cert file)
    `cert ${s.certificate ? paths.file(`${serverCertFile(s.name)}.pem`) : path.join(pki, 'server.crt')}`,
    `key ${s.certificate ? paths.file(`${serverCertFile(s.name)}.key`) : path.join(pki, 'server.key')}`,
    'dh none',
    `tls-crypt ${tlsCryptFile(state, s.name)}`,
    'tls-version-min 1.2',
    'remote-cert-tls client',
    `data-ciphers ${s.dataCiphers.join(':')}`,
    'disable-dco',
    `keepalive ${s.keepalive.interval} ${s.keepalive.timeout}`,
    'persist-key',
    `client-config-dir ${paths.file(`ccd-${s.name}`)}`,
    'ccd-exclusive',
  );
  for (const r of s.pushRoutes) out.push(`push "route ${routeArgs(r)}"`);
  if (s.redirectGateway) out.push('push "redirect-gateway def1"');
  for (const d of s.dns) out.push(`push "dhcp-option DNS${familyOf(d) === 6 ? '6' : ''} ${d}"`);
  if (s.domain) out.push(`push "dhcp-option DOMAIN ${s.domain}"`);
  if (s.clientToClient) out.push('client-to-client');
  // tell UDP clients when the server goes down, so they reconnect at once after a restart
  if (s.proto === 'udp') out.push('explicit-exit-notify 1');
  if (s.maxClients) out.push(`max-clients ${s.maxClients}`);
  out.push(`management ${socketOf(paths, s.id)} unix`, `verb ${s.verb}`);
  return `${out.join('\n')}\n`;
}

function renderCcd(s: OpenvpnServerModel, c: OpenvpnServerModel['clients'][number]): string {
  const out = [`# client ${c.name} of ${s.name} (ccd-exclusive: this file lets it connect)`];
  if (c.address) out.push(`ifconfig-push ${c.address} ${s.network.netmask}`);
  for (const r of c.routes) out.push(`iroute ${routeArgs(r)}`);
  return `${out.join('\n')}\n`;
}

function renderClient(c: OpenvpnClientModel, paths: InstancePaths): string {
  const out = [`# Patronus OpenVPN client ${c.name}: written by Patronus, changes are overwritten`];
  // the profile first: the lines after it override what it says
  if (c.profile) out.push(`config ${c.profile}`);
  out.push('client', `dev ${c.device}`, 'dev-type tun', 'nobind');
  if (c.remote) out.push(`remote ${c.remote.host} ${c.remote.port} ${c.remote.proto}`);
  if (c.caFile) out.push(`ca ${c.caFile}`);
  if (c.certFile) out.push(`cert ${c.certFile}`);
  if (c.keyFile) out.push(`key ${c.keyFile}`);
  if (c.tlsCryptFile) out.push(`tls-crypt ${c.tlsCryptFile}`);
  out.push(
    'remote-cert-tls server',
    `data-ciphers ${c.dataCiphers.join(':')}`,
    'disable-dco',
    'connect-retry 1 5',
    `management ${socketOf(paths, c.id)} unix`,
    `verb ${c.verb}`,
  );
  return `${out.join('\n')}\n`;
}

function routeArgs(prefix: string): string {
  const p = parsePrefix(prefix);
  return `${p.address} ${ipv4Netmask(p.length)}`;
}

/** CA, server and client certificates, tls-crypt key: made on first use, kept after. */
async function ensureServerMaterial(stateDir: string, s: OpenvpnServerModel): Promise<void> {
  const ca = caName(s.name);
  await ensureCa(stateDir, ca, `Patronus OpenVPN ${s.name} CA`);
  if (!s.certificate) await ensureCert(stateDir, ca, { name: 'server', commonName: serverCommonName(s.name), usage: 'server', ...(s.remoteHost ? { altNames: [s.remoteHost] } : {}) });
  for (const c of s.clients) await ensureCert(stateDir, ca, { name: certName(c.name), commonName: c.name, usage: 'client' });
  const tc = tlsCryptFile(stateDir, s.name);
  if (!existsSync(tc)) {
    mkdirSync(path.dirname(tc), { recursive: true, mode: 0o700 });
    chmodSync(path.dirname(tc), 0o700);
    writeFileSync(`${tc}.tmp`, generateTlsCryptKey(), { mode: 0o600 });
    renameSync(`${tc}.tmp`, tc);
  }
}

/** ccd-exclusive: a client without a file cannot connect, so files of removed clients go. */
function pruneCcd(i: OpenvpnInstance, paths: InstancePaths): void {
  if (i.kind !== 'server') return;
  const dir = paths.file(`ccd-${i.name}`);
  mkdirSync(dir, { recursive: true });
  const keep = new Set(i.clients.map((c) => c.name));
  for (const f of readdirSync(dir)) if (!keep.has(f)) rmSync(path.join(dir, f), { force: true });
}

function renderedInstances(paths: InstancePaths): string[] {
  if (!existsSync(paths.dir)) return [];
  return readdirSync(paths.dir)
    .filter((f) => /^(server|client)-.+\.conf$/.test(f))
    .map((f) => f.slice(0, -5))
    .sort();
}

function knownInstances(paths: InstancePaths): string[] {
  const ids = new Set(renderedInstances(paths));
  if (existsSync(paths.runDir)) for (const f of readdirSync(paths.runDir)) if (f.endsWith('.pid')) ids.add(f.slice(0, -4));
  return [...ids].sort();
}

async function converge(model: OpenvpnModel, paths: InstancePaths, host: Host, changed: string[] | undefined): Promise<void> {
  const wanted = new Set(model.instances.map((i) => i.id));
  for (const id of knownInstances(paths)) {
    if (wanted.has(id)) continue;
    await stopInstance(id, paths);
    rmSync(paths.file(`${id}.conf`), { force: true });
    rmSync(paths.file(`${id}.clients`), { force: true });
    if (id.startsWith('server-')) rmSync(paths.file(`ccd-${id.slice(7)}`), { recursive: true, force: true });
  }
  for (const i of model.instances) {
    if (i.kind === 'server') await ensureServerMaterial(host.stateDir, i);
    pruneCcd(i, paths);
    const up = !!daemonPid(pidFileOf(paths, i.id), 'openvpn');
    // OpenVPN re-reads its config only on a restart (SIGHUP drops every client too);
    // a ccd change needs none: the server reads the file when the client connects
    // a renewed ACME certificate: OpenVPN reads it only at start
    const restart = changed?.includes(`${i.id}.conf`) || (i.kind === 'server' && !!i.certificate && !!changed?.some((f) => f.startsWith(`${serverCertFile(i.name)}.`)));
    if (up && !restart) {
      if (i.kind === 'server') {
        await syncClientRoutes(i, host);
        await disconnectClients(i, paths, changed ?? []);
      }
      continue;
    }
    if (up) await stopInstance(i.id, paths);
    await startInstance(i, paths, host);
    if (i.kind === 'server') await syncClientRoutes(i, host);
  }
}

/**
 * Kernel routes to the networks behind clients (their `routes`, which the
 * server hands to the right client by iroute): on the server's tun device,
 * `proto static`, exactly the listed ones. The device is this server's own,
 * so every static route on it is ours.
 */
async function syncClientRoutes(s: OpenvpnServerModel, host: Host): Promise<void> {
  const wanted = new Set(s.clients.flatMap((c) => c.routes.map((r) => formatPrefix(parsePrefix(r)))));
  const r = await host.run('ip', ['-j', '-4', 'route', 'show', 'dev', s.device, 'proto', 'static'], { reject: false });
  if (r.exitCode !== 0) throw new Error(`openvpn server ${s.name}: cannot list the routes on ${s.device} (${host.where}): ${r.stderr.trim()}`);
  const present = new Set((JSON.parse(r.stdout || '[]') as { dst: string }[]).map((x) => (x.dst.includes('/') ? x.dst : `${x.dst}/32`)));
  for (const dst of present) if (!wanted.has(dst)) await host.run('ip', ['route', 'del', dst, 'dev', s.device, 'proto', 'static']);
  for (const dst of wanted) if (!present.has(dst)) await host.run('ip', ['route', 'replace', dst, 'dev', s.device, 'proto', 'static']);
}

/**
 * Connected clients that are no longer listed, or whose ccd file changed,
 * are disconnected (management `kill CN`); every other client keeps its
 * session. A removed client's reconnection is refused (ccd-exclusive), a
 * changed one reconnects with its new settings.
 */
async function disconnectClients(s: OpenvpnServerModel, paths: InstancePaths, changed: readonly string[]): Promise<void> {
  const socket = socketOf(paths, s.id);
  const listed = new Set(s.clients.map((c) => c.name));
  let connected: OpenvpnConnectedClient[];
  try {
    connected = parseClientList(await management(socket, 'status 3'), s.name);
  } catch (e) {
    throw new Error(`openvpn server ${s.name}: cannot list connected clients to disconnect removed ones: ${(e as Error).message}`);
  }
  const names = new Set(connected.map((c) => c.commonName).filter((cn) => !listed.has(cn) || changed.includes(`ccd-${s.name}/${cn}`)));
  for (const cn of names) {
    try {
      await management(socket, `kill ${cn}`);
    } catch (e) {
      // it left on its own in the meantime
      if (/not found/.test((e as Error).message)) continue;
      throw new Error(`openvpn server ${s.name}: disconnecting client "${cn}" failed: ${(e as Error).message}`);
    }
  }
}

async function startInstance(i: OpenvpnInstance, paths: InstancePaths, host: Host): Promise<void> {
  mkdirSync(paths.runDir, { recursive: true, mode: 0o700 });
  chmodSync(paths.runDir, 0o700);
  rmSync(socketOf(paths, i.id), { force: true });
  await startDaemon(host, {
    name: `openvpn ${i.kind} ${i.name}`,
    command: 'openvpn',
    args: ['--config', paths.file(`${i.id}.conf`)],
    pidFile: pidFileOf(paths, i.id),
    logFile: logOf(paths, i.id),
    // a server is ready when its tunnel is configured; a client once it runs (the server may be away)
    ready: async () => {
      const st = await management(socketOf(paths, i.id), 'state').catch(() => undefined);
      if (!st) return false;
      return i.kind === 'client' || st.some((l) => /^\d+,CONNECTED,SUCCESS/.test(l));
    },
    readyTimeoutMs: 30_000,
    settleMs: 100,
  });
}

async function stopInstance(id: string, paths: InstancePaths): Promise<void> {
  await stopDaemon({ name: `openvpn ${id}`, pidFile: pidFileOf(paths, id), command: 'openvpn' });
  rmSync(socketOf(paths, id), { force: true });
}

async function instanceStatus(id: string, paths: InstancePaths): Promise<OpenvpnInstanceStatus> {
  const kind = id.startsWith('server-') ? 'server' : 'client';
  const name = id.slice(7);
  const base: OpenvpnInstanceStatus = { id, kind, name, running: !!daemonPid(pidFileOf(paths, id), 'openvpn') };
  if (!base.running) return base;
  const state = await management(socketOf(paths, id), 'state').catch(() => [] as string[]);
  const fields = state.find((l) => /^\d+,/.test(l))?.split(',') ?? [];
  if (fields[1]) base.state = fields[1];
  if (fields[3]) base.localAddress = fields[3];
  const status = await management(socketOf(paths, id), 'status 3').catch(() => [] as string[]);
  if (kind === 'server') base.clients = parseClientList(status, name);
  else {
    const stats = parseStatistics(status);
    base.rxBytes = stats['TUN/TAP write bytes'] ?? 0;
    base.txBytes = stats['TUN/TAP read bytes'] ?? 0;
  }
  return base;
}

/** CLIENT_LIST lines of `status 3` (tab separated). */
export function parseClientList(lines: readonly string[], server: string): OpenvpnConnectedClient[] {
  const header = lines.find((l) => l.startsWith('HEADER\tCLIENT_LIST\t'))?.split('\t').slice(2) ?? [];
  const col = (row: string[], name: string) => row[header.indexOf(name)] ?? '';
  return lines
    .filter((l) => l.startsWith('CLIENT_LIST\t'))
    .map((l) => {
      const row = l.split('\t').slice(1);
      return {
        server,
        commonName: col(row, 'Common Name'),
        realAddress: col(row, 'Real Address'),
        virtualAddress: col(row, 'Virtual Address'),
        virtualAddress6: col(row, 'Virtual IPv6 Address'),
        rxBytes: Number(col(row, 'Bytes Received') || 0),
        txBytes: Number(col(row, 'Bytes Sent') || 0),
        connectedSince: Number(col(row, 'Connected Since (time_t)') || 0),
        cipher: col(row, 'Data Channel Cipher'),
      };
    });
}

/** "name\tvalue" (status 3) or "name,value" lines of a client's statistics. */
export function parseStatistics(lines: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of lines) {
    const m = /^([^\t,]+)[\t,](\d+)$/.exec(l);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/**
 * One command on the management socket. Multi-line answers end with "END";
 * others are one SUCCESS:/ERROR: line.
 */
export function management(socket: string, command: string, timeoutMs = 10_000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let buf = '';
    let sent = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`openvpn management ${socket}: no answer to "${command}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (fn: () => void) => {
      clearTimeout(timer);
      s.end();
      s.destroy();
      fn();
    };
    s.setEncoding('utf8');
    s.on('error', (e) => done(() => reject(e)));
    s.on('data', (d: string) => {
      buf += d;
      if (!sent && buf.includes('\n')) {
        // the first line is the >INFO banner
        buf = buf.slice(buf.indexOf('\n') + 1);
        sent = true;
        s.write(`${command}\n`);
      }
      if (!sent) return;
      const lines = buf.split(/\r?\n/).filter((l) => l && !l.startsWith('>'));
      if (lines.some((l) => l === 'END')) done(() => resolve(lines.slice(0, lines.indexOf('END'))));
      else if (lines.length && /^(SUCCESS|ERROR):/.test(lines[0]!)) {
        const first = lines[0]!;
        done(() => (first.startsWith('ERROR') ? reject(new Error(`openvpn management: ${first}`)) : resolve([first])));
      }
    });
  });
}

/**
 * Runs openvpn on `conf` in a new, empty network namespace until it proves
 * the config works (or fails). Returns the problem, or undefined.
 */
function dryRun(conf: string, kind: 'server' | 'client', timeoutMs = 30_000): Promise<string | undefined> {
  const ok = kind === 'server' ? /Initialization Sequence Completed/ : /link remote:|Attempting to establish TCP connection|RESOLVE: Cannot resolve host address/;
  return new Promise((resolve) => {
    const child = spawn('unshare', ['--net', '--', 'openvpn', '--config', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let settled = false;
    const finish = (problem: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null) child.kill('SIGTERM');
      resolve(problem);
    };
    const timer = setTimeout(() => finish(`no sign of a working configuration within ${timeoutMs} ms: ${lastLines(out)}`), timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (ok.test(out)) finish(undefined);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) => finish(`cannot run openvpn: ${e.message}`));
    // 'close', not 'exit': exit can come before the last output is read (then the problem read "exited with status 1: " with no reason)
    child.on('close', (code) => finish(ok.test(out) ? undefined : `exited with status ${code}: ${lastLines(out)}`));
  });
}

function lastLines(text: string): string {
  const lines = text
    .trim()
    .split('\n')
    .map((l) => l.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /, ''))
    .filter((l) => !/^(Note:|OpenVPN \d|library versions|DCO version)/.test(l));
  const errors = lines.filter((l) => /error|cannot|fatal|failed/i.test(l));
  return (errors.length ? errors : lines.slice(-3)).slice(0, 4).join('; ');
}

