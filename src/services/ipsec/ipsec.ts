/**
 * IPsec as a service module: strongSwan's charon-systemd (the classic
 * charon insists on one machine-wide pid file) with one strongswan.conf per
 * instance (STRONGSWAN_CONF), its own vici socket, only the plugins it needs
 * (no stroke, no resolve: nothing writes outside the instance), and
 * connections loaded with `swanctl --load-all`.
 *
 * ESP backend: the kernel's XFRM when it can do ESP, else strongSwan's
 * userspace libipsec (kernel-libipsec: ESP-in-UDP through a TUN device
 * named ipsec0). The probe adds an ESP state in a throwaway network
 * namespace; the choice goes into backend.conf (included by
 * strongswan.conf), written at start, and status reports it. Since libipsec
 * only sees UDP-encapsulated ESP, connections force `encap = yes` unless
 * the backend is pinned to the kernel.
 *
 * Certificates: from Patronus's IPsec CA, or (`certificate:`) an ACME one of
 * the `certificates:` section, copied into the instance dir (acme/NAME.pem
 * with its chain, .key) like a rendered file. The chain's CA certificates go
 * to x509ca/ so charon sends them to peers. A renewal is a changed file:
 * `swanctl --load-all` hands the new certificate and key to the running
 * charon, which uses them for new IKE_SAs while the established ones stay up
 * (no restart, no dropped peer).
 *
 * check(): strongSwan has no dry-run for swanctl.conf, so the checker is
 * strongSwan itself: a scratch charon in a throwaway network namespace on
 * the rendered strongswan.conf, and swanctl loading the rendered
 * swanctl.conf into it.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import type { CompileContext, ServiceOpening } from '../../apply/subsystem.js';
import type { Config } from '../../config/document.js';
import type { Issue } from '../../config/issues.js';
import { addressFamily, parsePrefix, formatPrefix } from '../../net/address.js';
import { DaemonError, daemonPid, startDaemon, stopDaemon, tailLog, waitFor } from '../common/daemon.js';
import type { InstancePaths, ServiceModule } from '../common/service.js';
import { ensureCa, ensureCert, pkiDir } from '../pki/pki.js';
import { viciCommand } from './vici.js';
import type { IpsecConnectionConfig } from './schema.js';

export type IpsecBackend = 'kernel' | 'libipsec';

export interface IpsecModel {
  backend: 'auto' | IpsecBackend;
  pools: { name: string; addresses: string; dns: string[] }[];
  connections: IpsecConnectionModel[];
}

export interface IpsecConnectionModel {
  index: number;
  name: string;
  localAddresses: string[];
  remoteAddresses: string[];
  auth: 'psk' | 'cert';
  /** the pre-shared key read from pskFile (rendered 0600, never in status) */
  psk?: string;
  localId?: string;
  remoteId?: string;
  remoteCaFile?: string;
  /** an ACME certificate (certificates.issue) instead of one from the IPsec CA */
  certificate?: string;
  proposals: string[];
  pools: string[];
  requestVirtualIp: boolean;
  dpdDelay: number;
  mobike: boolean;
  children: {
    name: string;
    localTs: string[];
    remoteTs: string[];
    espProposals: string[];
    startAction: 'start' | 'trap' | 'none';
    closeAction: 'none' | 'start' | 'trap';
    dpdAction: 'clear' | 'restart' | 'trap';
    rekeyTime: number;
  }[];
}

/** One IKE_SA as `swanctl --list-sas` reports it: numbers ready for metrics. */
export interface IpsecIkeSa {
  connection: string;
  uniqueId: number;
  state: string;
  localHost: string;
  localPort: number;
  remoteHost: string;
  remotePort: number;
  localId: string;
  remoteId: string;
  initiator: boolean;
  encryption: string;
  /** seconds since establishment */
  established: number;
  /** virtual IPs this end received / assigned to the peer */
  localVips: string[];
  remoteVips: string[];
  children: IpsecChildSa[];
}

export interface IpsecChildSa {
  name: string;
  uniqueId: number;
  state: string;
  mode: string;
  protocol: string;
  encap: boolean;
  encryption: string;
  bytesIn: number;
  bytesOut: number;
  packetsIn: number;
  packetsOut: number;
  installed: number;
  localTs: string[];
  remoteTs: string[];
}

export interface IpsecStatus {
  backend: IpsecBackend | 'unknown';
  sas: IpsecIkeSa[];
}

export const ipsecModule: ServiceModule<IpsecModel> = {
  name: 'ipsec',

  desired(ctx: CompileContext) {
    const s = ctx.config.ipsec;
    const issues: Issue[] = [];
    const connections: IpsecConnectionModel[] = [];
    s.connections.forEach((c, index) => {
      if (!c.enabled) return;
      const at = ['ipsec', 'connections', index];
      let psk: string | undefined;
      if (c.pskFile) {
        try {
          psk = ctx.readFile(c.pskFile).trim();
          if (psk.length < 20) issues.push({ path: [...at, 'pskFile'], message: `the key in ${c.pskFile} is ${psk.length} characters; use at least 20` });
        } catch (e) {
          issues.push({ path: [...at, 'pskFile'], message: `cannot read ${c.pskFile}: ${(e as Error).message}` });
        }
      }
      if (c.remoteCaFile) {
        try {
          if (!/-----BEGIN CERTIFICATE-----/.test(ctx.readFile(c.remoteCaFile))) issues.push({ path: [...at, 'remoteCaFile'], message: `${c.remoteCaFile} holds no PEM certificate` });
        } catch (e) {
          issues.push({ path: [...at, 'remoteCaFile'], message: `cannot read ${c.remoteCaFile}: ${(e as Error).message}` });
        }
      }
      if (s.backend === 'libipsec') {
        c.children.forEach((ch, k) => {
          if (ch.startAction === 'trap') issues.push({ path: [...at, 'children', k, 'startAction'], message: 'trap needs kernel ESP: libipsec cannot start a tunnel on the first packet' });
        });
      }
      // with an ACME certificate, our identity defaults to its first domain
      const acmeDomain = c.certificate ? ctx.config.certificates.issue.find((i) => i.name === c.certificate)?.domains[0] : undefined;
      connections.push(connectionModel(c, index, psk, acmeDomain));
    });
    if (!connections.length) return { desired: null, issues };
    return { desired: { backend: s.backend, pools: s.pools.map((p) => ({ name: p.name, addresses: formatPrefix(parsePrefix(p.addresses)), dns: [...p.dns] })), connections }, issues };
  },

  render(model, paths) {
    return [
      { path: 'strongswan.conf', content: renderStrongswanConf(paths) },
      { path: 'swanctl.conf', content: renderSwanctlConf(model, paths), mode: 0o600 },
    ];
  },

  certificates(model) {
    const names = [...new Set(model.connections.flatMap((c) => (c.certificate ? [c.certificate] : [])))];
    return names.map((name) => ({ name, file: acmeCertFile(name) }));
  },

  async check(model, paths, host) {
    const at = ['ipsec'];
    const backend = await resolveBackend(model.backend);
    if (model.backend === 'kernel' && backend !== 'kernel') return [{ path: [...at, 'backend'], message: 'this kernel cannot do ESP (XFRM without ESP): use backend auto or libipsec' }];
    const issues: Issue[] = [];
    if (backend === 'libipsec') {
      model.connections.forEach((c) =>
        c.children.forEach((ch, k) => {
          if (ch.startAction === 'trap') issues.push({ path: ['ipsec', 'connections', c.index, 'children', k, 'startAction'], message: 'trap needs kernel ESP, and this machine uses libipsec (the kernel has no ESP)' });
        }),
      );
    }
    // the scratch instance needs the certificates its files name: copy the real store, make the rest there
    const scratchState = stateDirOf(paths);
    const realPki = pkiDir(host.stateDir, IPSEC_CA);
    if (existsSync(realPki)) cpSync(realPki, pkiDir(scratchState, IPSEC_CA), { recursive: true });
    await prepareInstance(model, paths, scratchState, backend);
    const problem = await dryRun(paths);
    if (problem) issues.push({ path: at, message: `strongSwan rejects the rendered configuration: ${problem}` });
    return issues;
  },

  async start(model, paths, host) {
    const backend = await resolveBackend(model.backend);
    if (model.backend === 'kernel' && backend !== 'kernel') throw new Error('ipsec: backend kernel requested, but this kernel cannot do ESP');
    await prepareInstance(model, paths, host.stateDir, backend);
    await startCharon(paths, host);
    await loadAll(paths, host);
  },

  async reload(model, paths, host, changed) {
    const backend = await resolveBackend(model.backend);
    const before = readBackend(paths);
    await prepareInstance(model, paths, host.stateDir, backend);
    if (changed.includes('strongswan.conf') || before !== backend) {
      await stopCharon(paths);
      await startCharon(paths, host);
    }
    await loadAll(paths, host);
  },

  async stop(paths) {
    await stopCharon(paths);
  },

  async running(paths) {
    return !!daemonPid(paths.pidFile, 'charon-systemd');
  },

  async status(paths, host): Promise<IpsecStatus> {
    return { backend: readBackend(paths) ?? 'unknown', sas: await listSas(paths) };
  },

  openings(config: Config): ServiceOpening[] {
    if (!config.ipsec.connections.some((c) => c.enabled)) return [];
    // ESP itself only flows with kernel ESP and no NAT; opening it is harmless otherwise
    return [
      { service: 'ipsec', proto: 'udp', port: 500, interfaces: [] },
      { service: 'ipsec', proto: 'udp', port: 4500, interfaces: [] },
      { service: 'ipsec', proto: 'esp', interfaces: [] },
    ];
  },
};

/** Which ESP backend this machine gives `wanted` (probing the kernel once a process). */
export async function resolveBackend(wanted: 'auto' | IpsecBackend): Promise<IpsecBackend> {
  if (wanted === 'libipsec') return 'libipsec';
  return (await kernelHasEsp()) ? 'kernel' : 'libipsec';
}

let espProbe: Promise<boolean> | undefined;

/**
 * Whether the kernel can hold an ESP SA: adds one in a throwaway network
 * namespace (so no real XFRM state is touched) and sees if the kernel takes it.
 */
export function kernelHasEsp(): Promise<boolean> {
  espProbe ??= new Promise((resolve) => {
    const key = '0x' + '11'.repeat(16);
    const child = spawn(
      'unshare',
      ['--net', '--', 'ip', 'xfrm', 'state', 'add', 'src', '192.0.2.1', 'dst', '192.0.2.2', 'proto', 'esp', 'spi', '0x100', 'mode', 'tunnel', 'enc', 'cbc(aes)', key, 'auth', 'hmac(sha256)', key + '11'.repeat(16)],
      { stdio: 'ignore' },
    );
    child.on('error', () => resolve(false));
    child.on('exit', (code) => resolve(code === 0));
  });
  return espProbe;
}

/**
 * The IKE_SAs, asked from charon over its vici socket (list-sas, one
 * list-sa event per IKE_SA): no swanctl process, no text parsing. Empty
 * when charon is not running (no socket, or nobody listening on it); any
 * other failure (no answer, a broken conversation) is an error naming the
 * socket, not an empty list that would read as "no tunnels".
 */
export async function listSas(paths: InstancePaths): Promise<IpsecIkeSa[]> {
  const socket = viciSocket(paths);
  try {
    const r = await viciCommand(socket, 'list-sas', {}, 'list-sa');
    return sasFromEvents(r.events as PrettyObject[]);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return [];
    throw new Error(`IPsec status over vici (${socket}): ${(e as Error).message}`);
  }
}

/** Parses `swanctl --list-sas --pretty` (the same messages as text; kept for diagnostics and tests). */
export function parseListSas(text: string): IpsecIkeSa[] {
  return sasFromEvents(parsePretty(text).filter((e) => e.name === 'list-sa event').map((e) => e.value));
}

function sasFromEvents(events: PrettyObject[]): IpsecIkeSa[] {
  const sas: IpsecIkeSa[] = [];
  for (const e of events) {
    for (const [connection, v] of Object.entries(e)) {
      const sa = v as PrettyObject;
      const children = (sa['child-sas'] ?? {}) as PrettyObject;
      sas.push({
        connection,
        uniqueId: num(sa.uniqueid),
        state: str(sa.state),
        localHost: str(sa['local-host']),
        localPort: num(sa['local-port']),
        remoteHost: str(sa['remote-host']),
        remotePort: num(sa['remote-port']),
        localId: str(sa['local-id']),
        remoteId: str(sa['remote-id']),
        initiator: str(sa.initiator) === 'yes',
        encryption: algorithm(sa),
        established: num(sa.established),
        localVips: list(sa['local-vips']),
        remoteVips: list(sa['remote-vips']),
        children: Object.values(children).map((c) => {
          const ch = c as PrettyObject;
          return {
            name: str(ch.name),
            uniqueId: num(ch.uniqueid),
            state: str(ch.state),
            mode: str(ch.mode),
            protocol: str(ch.protocol),
            encap: str(ch.encap) === 'yes',
            encryption: algorithm(ch),
            bytesIn: num(ch['bytes-in']),
            bytesOut: num(ch['bytes-out']),
            packetsIn: num(ch['packets-in']),
            packetsOut: num(ch['packets-out']),
            installed: num(ch['install-time']),
            localTs: list(ch['local-ts']),
            remoteTs: list(ch['remote-ts']),
          };
        }),
      });
    }
  }
  return sas;
}

/** The CA certificate of this host's IPsec CA (made on first use), for peers to trust. */
export async function ipsecCaCertificate(stateDir: string): Promise<string> {
  return (await ensureCa(stateDir, IPSEC_CA, 'Patronus IPsec CA')).cert;
}

// ---------------------------------------------------------------------------

const IPSEC_CA = 'ipsec';
const stateDirOf = (paths: InstancePaths) => path.resolve(paths.dir, '..', '..');
const viciSocket = (paths: InstancePaths) => path.join(paths.runDir, 'charon.vici');
const certName = (conn: string) => `conn-${conn}`;
/** the instance-dir copy of an ACME certificate (.pem with the chain, .key) */
const acmeCertFile = (name: string) => `acme/${name}`;
const PLUGINS = 'random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints hmac gcm aes sha1 sha2 kdf';
/** swanctl looks in these under its directory; empty ones keep it from complaining */
const CRED_DIRS = ['x509', 'x509ca', 'x509ocsp', 'x509aa', 'x509ac', 'x509crl', 'pubkey', 'private', 'rsa', 'ecdsa', 'bliss', 'pkcs8', 'pkcs12'];

function connectionModel(c: IpsecConnectionConfig, index: number, psk: string | undefined, acmeDomain?: string): IpsecConnectionModel {
  const specificRemote = c.remoteAddresses.length > 0 && c.remoteAddresses.every((a) => !a.includes('/'));
  // a PSK is looked up by the pair of identities; peers that name none use their
  // IP addresses, so name those (a lone address on either side) to find the key
  const soleIp = (list: string[]) => (list.length === 1 && addressFamily(list[0]!) ? list[0] : undefined);
  const localId = c.localId ?? (c.auth === 'psk' ? soleIp(c.localAddresses) : acmeDomain);
  const remoteId = c.remoteId ?? (c.auth === 'psk' ? soleIp(c.remoteAddresses) : undefined);
  return {
    index,
    name: c.name,
    localAddresses: [...c.localAddresses],
    remoteAddresses: [...c.remoteAddresses],
    auth: c.auth,
    ...(psk !== undefined ? { psk } : {}),
    ...(localId ? { localId } : {}),
    ...(remoteId ? { remoteId } : {}),
    ...(c.remoteCaFile ? { remoteCaFile: c.remoteCaFile } : {}),
    ...(c.auth === 'cert' && c.certificate ? { certificate: c.certificate } : {}),
    proposals: [...c.proposals],
    pools: [...c.pools],
    requestVirtualIp: c.requestVirtualIp,
    dpdDelay: c.dpdDelay,
    mobike: c.mobike,
    children: c.children.map((ch) => ({
      name: ch.name,
      localTs: ch.localTs.map(ts),
      remoteTs: ch.remoteTs.map(ts),
      espProposals: [...ch.espProposals],
      startAction: ch.startAction ?? (specificRemote ? 'start' : 'none'),
      closeAction: ch.closeAction,
      dpdAction: ch.dpdAction,
      rekeyTime: ch.rekeyTime,
    })),
  };
}

function ts(t: string): string {
  return t === 'dynamic' ? t : formatPrefix(parsePrefix(t));
}

function renderStrongswanConf(paths: InstancePaths): string {
  return `# Patronus strongSwan instance: written by Patronus, changes are overwritten
charon-systemd {
  load_modular = no
  # the plugin list: written at start, after probing the kernel for ESP
  include ${paths.file('backend.conf')}
  install_routes = yes
  filelog {
    patronus {
      path = ${paths.logFile}
      time_format = %F %T
      default = 1
      ike_name = yes
      flush_line = yes
    }
  }
  journal {
    default = -1
  }
  plugins {
    vici {
      socket = unix://${viciSocket(paths)}
    }
  }
}
swanctl {
  load = pem pkcs1 pkcs8 x509 revocation constraints pubkey openssl random
}
`;
}

function renderSwanctlConf(model: IpsecModel, paths: InstancePaths): string {
  const state = stateDirOf(paths);
  const pki = pkiDir(state, IPSEC_CA);
  const q = (s: string) => `"${s}"`;
  const out: string[] = ['# Patronus IPsec connections: written by Patronus, changes are overwritten', 'connections {'];
  for (const c of model.connections) {
    out.push(`  ${c.name} {`, '    version = 2');
    if (c.localAddresses.length) out.push(`    local_addrs = ${c.localAddresses.join(',')}`);
    out.push(`    remote_addrs = ${c.remoteAddresses.length ? c.remoteAddresses.join(',') : '%any'}`);
    out.push(`    proposals = ${c.proposals.join(',')}`);
    // libipsec sees ESP only inside UDP
    if (model.backend !== 'kernel') out.push('    encap = yes');
    out.push(`    mobike = ${c.mobike ? 'yes' : 'no'}`, `    dpd_delay = ${c.dpdDelay}s`);
    if (c.pools.length) out.push(`    pools = ${c.pools.join(',')}`);
    if (c.requestVirtualIp) out.push('    vips = 0.0.0.0');
    const auth = c.auth === 'psk' ? 'psk' : 'pubkey';
    out.push('    local {', `      auth = ${auth}`);
    if (c.localId) out.push(`      id = ${q(c.localId)}`);
    // strongSwan takes the first certificate of the file (the leaf); the chain goes to x509ca/ (prepareInstance)
    if (c.auth === 'cert') out.push(`      certs = ${c.certificate ? paths.file(`${acmeCertFile(c.certificate)}.pem`) : path.join(pki, `${certName(c.name)}.crt`)}`);
    out.push('    }', '    remote {', `      auth = ${auth}`);
    if (c.remoteId) out.push(`      id = ${q(c.remoteId)}`);
    if (c.auth === 'cert') out.push(`      cacerts = ${c.remoteCaFile ?? path.join(pki, 'ca.crt')}`);
    out.push('    }', '    children {');
    for (const ch of c.children) {
      out.push(
        `      ${ch.name} {`,
        `        local_ts = ${ch.localTs.join(',')}`,
        `        remote_ts = ${ch.remoteTs.join(',')}`,
        `        esp_proposals = ${ch.espProposals.join(',')}`,
        `        start_action = ${ch.startAction}`,
        `        close_action = ${ch.closeAction}`,
        `        dpd_action = ${ch.dpdAction}`,
        `        rekey_time = ${ch.rekeyTime}s`,
        '      }',
      );
    }
    out.push('    }', '  }');
  }
  out.push('}', 'pools {');
  for (const p of model.pools) {
    out.push(`  ${p.name} {`, `    addrs = ${p.addresses}`);
    if (p.dns.length) out.push(`    dns = ${p.dns.join(',')}`);
    out.push('  }');
  }
  out.push('}', 'secrets {');
  for (const c of model.connections) {
    if (c.auth !== 'psk' || c.psk === undefined) continue;
    out.push(`  ike-${c.name} {`);
    const ids = [c.localId, c.remoteId].filter((x): x is string => !!x);
    ids.forEach((id, n) => out.push(`    id-${n + 1} = ${q(id)}`));
    // base64 keeps any character of the key out of the config syntax
    out.push(`    secret = 0s${Buffer.from(c.psk).toString('base64')}`, '  }');
  }
  out.push('}');
  return `${out.join('\n')}\n`;
}

/**
 * Everything the rendered files expect beside them: backend.conf, the
 * credential directories, certificates (made as needed) and links to the
 * private keys in the key store.
 */
async function prepareInstance(model: IpsecModel, paths: InstancePaths, stateDir: string, backend: IpsecBackend): Promise<void> {
  mkdirSync(paths.runDir, { recursive: true, mode: 0o700 });
  const load = `${PLUGINS} ${backend === 'libipsec' ? 'kernel-libipsec ' : ''}kernel-netlink socket-default vici counters`;
  writeFileSync(paths.file('backend.conf'), `# backend: ${backend}\nload = ${load}\n`);
  for (const d of CRED_DIRS) mkdirSync(paths.file(d), { recursive: true });
  const certConns = model.connections.filter((c) => c.auth === 'cert' && !c.certificate);
  if (model.connections.some((c) => c.auth === 'cert')) await ensureCa(stateDir, IPSEC_CA, 'Patronus IPsec CA');
  const keep = new Set<string>();
  const link = (target: string, at: string) => {
    keep.add(path.basename(at));
    try {
      lstatSync(at);
      rmSync(at);
    } catch {
      /* absent */
    }
    symlinkSync(target, at);
  };
  // ACME certificates: the key beside the others, the chain's CA certificates in x509ca/
  const chains = new Set<string>();
  for (const name of new Set(model.connections.flatMap((c) => (c.auth === 'cert' && c.certificate ? [c.certificate] : [])))) {
    link(paths.file(`${acmeCertFile(name)}.key`), paths.file(`private/acme-${name}.key`));
    const pems = readFileSync(paths.file(`${acmeCertFile(name)}.pem`), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    pems.slice(1).forEach((pem, n) => {
      const f = `acme-${name}-${n + 1}.pem`;
      writeFileSync(paths.file(`x509ca/${f}`), `${pem}\n`);
      chains.add(f);
    });
  }
  for (const f of readdirSync(paths.file('x509ca'))) if (f.startsWith('acme-') && !chains.has(f)) rmSync(paths.file(`x509ca/${f}`), { force: true });
  for (const c of certConns) {
    const issued = await ensureCert(stateDir, IPSEC_CA, { name: certName(c.name), commonName: c.localId!, usage: 'ipsec', altNames: [c.localId!] });
    link(issued.keyFile, paths.file(`private/${certName(c.name)}.key`));
  }
  // keys of connections that are gone must not stay loadable
  for (const f of readdirSync(paths.file('private'))) if (!keep.has(f)) rmSync(paths.file(`private/${f}`), { force: true });
}

function readBackend(paths: InstancePaths): IpsecBackend | undefined {
  try {
    const m = /^# backend: (kernel|libipsec)$/m.exec(readFileSync(paths.file('backend.conf'), 'utf8'));
    return m ? (m[1] as IpsecBackend) : undefined;
  } catch {
    return undefined;
  }
}

async function startCharon(paths: InstancePaths, host: Host): Promise<void> {
  rmSync(viciSocket(paths), { force: true });
  await startDaemon(host, {
    name: 'strongswan charon',
    command: 'charon-systemd',
    args: [],
    env: { STRONGSWAN_CONF: paths.file('strongswan.conf') },
    pidFile: paths.pidFile,
    logFile: paths.file('charon.out'),
    ready: () => socketAnswers(viciSocket(paths)),
    readyTimeoutMs: 30_000,
    settleMs: 100,
  });
}

async function stopCharon(paths: InstancePaths): Promise<void> {
  await stopDaemon({ name: 'strongswan charon', pidFile: paths.pidFile, command: 'charon-systemd' });
  rmSync(viciSocket(paths), { force: true });
}

async function loadAll(paths: InstancePaths, host: Host): Promise<void> {
  const r = await swanctl(paths, host, ['--load-all', '--noprompt', '--file', paths.file('swanctl.conf')]);
  if (r.exitCode !== 0) {
    throw new DaemonError('strongswan swanctl', `swanctl --load-all failed: ${swanctlProblem(r.stdout, r.stderr)}`, tailLog(paths.logFile));
  }
}

function swanctl(paths: InstancePaths, host: Host, args: string[]) {
  return host.run('swanctl', [...args, '--uri', `unix://${viciSocket(paths)}`], { reject: false, env: { ...processEnv(), STRONGSWAN_CONF: paths.file('strongswan.conf') }, timeout: 20_000 });
}

function processEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return env;
}

function swanctlProblem(stdout: string, stderr: string): string {
  const lines = `${stdout}\n${stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^opening directory .* failed|^no (authorities|pools) found|^loaded |^successfully loaded/.test(l));
  return lines.slice(0, 6).join('; ') || 'no output';
}

function socketAnswers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A scratch charon in a throwaway network namespace on the rendered
 * strongswan.conf, and swanctl loading the rendered swanctl.conf into it.
 * Returns the problem, or undefined.
 */
async function dryRun(paths: InstancePaths): Promise<string | undefined> {
  const env = { ...processEnv(), STRONGSWAN_CONF: paths.file('strongswan.conf') };
  const child = spawn('unshare', ['--net', '--', 'charon-systemd'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let exited: string | undefined;
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  child.on('exit', (code, signal) => (exited = signal ? `killed by ${signal}` : `exited with status ${code}`));
  child.on('error', (e) => (exited = `cannot run charon-systemd: ${e.message}`));
  try {
    try {
      await waitFor(async () => {
        if (exited) throw new Error(exited);
        return socketAnswers(viciSocket(paths));
      }, 10_000, 'the scratch charon');
    } catch (e) {
      return `charon ${exited ?? (e as Error).message}: ${lastLines(`${out}\n${tailLog(paths.logFile)}`)}`;
    }
    const r = await new Promise<{ code: number; text: string }>((resolve) => {
      const s = spawn('swanctl', ['--load-all', '--noprompt', '--file', paths.file('swanctl.conf'), '--uri', `unix://${viciSocket(paths)}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      s.stdout.on('data', (d: Buffer) => (text += d.toString()));
      s.stderr.on('data', (d: Buffer) => (text += d.toString()));
      s.on('error', (e) => resolve({ code: -1, text: e.message }));
      s.on('exit', (code) => resolve({ code: code ?? -1, text }));
    });
    if (r.code !== 0) return swanctlProblem(r.text, '');
    return undefined;
  } finally {
    if (!exited) {
      child.kill('SIGTERM');
      await waitFor(() => exited !== undefined, 5000, 'the scratch charon to exit').catch(() => child.kill('SIGKILL'));
    }
  }
}

function lastLines(text: string): string {
  const lines = text.trim().split('\n').filter(Boolean);
  const errors = lines.filter((l) => /error|failed|unable|invalid|not found/i.test(l));
  return (errors.length ? errors : lines.slice(-3)).slice(0, 4).join('; ');
}

// --- swanctl --pretty output ------------------------------------------------

type PrettyValue = string | string[] | PrettyObject;
interface PrettyObject {
  [key: string]: PrettyValue;
}

/** Parses swanctl's --pretty dump: `name {`, `key = value`, `key = [` ... `]`, `}`. */
function parsePretty(text: string): { name: string; value: PrettyObject }[] {
  const out: { name: string; value: PrettyObject }[] = [];
  const stack: PrettyObject[] = [];
  let listKey: string | undefined;
  let list: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (listKey !== undefined) {
      if (line === ']') {
        stack[stack.length - 1]![listKey] = list;
        listKey = undefined;
      } else list.push(line);
      continue;
    }
    let m: RegExpExecArray | null;
    if ((m = /^(.+?) \{\}?$/.exec(line))) {
      const obj: PrettyObject = {};
      if (stack.length === 0) out.push({ name: m[1]!, value: obj });
      else stack[stack.length - 1]![m[1]!] = obj;
      if (!line.endsWith('{}')) stack.push(obj);
    } else if (line === '}') {
      stack.pop();
    } else if ((m = /^(\S+) = \[$/.exec(line))) {
      listKey = m[1]!;
      list = [];
    } else if ((m = /^(\S+) = (.*)$/.exec(line)) && stack.length) {
      stack[stack.length - 1]![m[1]!] = m[2]!;
    }
  }
  return out;
}

function str(v: PrettyValue | undefined): string {
  return typeof v === 'string' ? v : '';
}

function num(v: PrettyValue | undefined): number {
  const n = Number(str(v));
  return Number.isFinite(n) ? n : 0;
}

function list(v: PrettyValue | undefined): string[] {
  return Array.isArray(v) ? v : [];
}

function algorithm(o: PrettyObject): string {
  const alg = str(o['encr-alg']);
  const size = str(o['encr-keysize']);
  return alg ? `${alg}${size ? `-${size}` : ''}` : '';
}
