/**
 * A throwaway etcd cluster on loopback for fleet tests and the fleet bench:
 * N members (default 3) of the Debian etcd 3.4 server, each with its own
 * free client and peer ports and a data directory under one temp dir.
 * Members can be killed and restarted one by one (a member lost mid-rollout);
 * stop() kills them all and removes the temp dir, and is safe to call twice
 * or after a failed start.
 */
import { existsSync, mkdtempSync, rmSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { freePort } from './ports.js';

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  proc?: ResultPromise<{ reject: false; all: true; buffer: true; stdin: 'ignore'; extendEnv: false }>;
}

export interface EtcdClusterOptions {
  members?: number;
  /** serve clients over TLS (server cert and key signed by ca); client: require client certificates (signed by ca), etcdctl uses this one */
  tls?: { ca: string; cert: string; key: string; client?: { cert: string; key: string } };
  /** raft heartbeat and election timeout, ms (tight for quick failover in tests) */
  heartbeatMs?: number;
  electionMs?: number;
}

export class EtcdCluster {
  readonly members: EtcdMember[] = [];
  readonly dir: string;
  private readonly token: string;

  private constructor(private readonly opts: Required<Omit<EtcdClusterOptions, 'tls'>> & Pick<EtcdClusterOptions, 'tls'>) {
    this.dir = mkdtempSync(join(tmpdir(), 'pt-etcd-'));
    this.token = `pt-${process.pid}-${Date.now()}`;
  }

  /** Starts the cluster and waits until it answers with a leader; cleans up on failure. */
  static async start(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const c = new EtcdCluster({ members: opts.members ?? 3, heartbeatMs: opts.heartbeatMs ?? 100, electionMs: opts.electionMs ?? 1000, ...(opts.tls ? { tls: opts.tls } : {}) });
    try {
      for (let i = 0; i < c.opts.members; i++) {
        const name = `m${i + 1}`;
        const dataDir = join(c.dir, name);
        mkdirSync(dataDir, { mode: 0o700 });
        c.members.push({ name, clientPort: await freePort(), peerPort: await freePort(), dataDir });
      }
      for (const m of c.members) c.spawn(m);
      await c.waitHealthy(60_000);
      return c;
    } catch (e) {
      await c.stop();
      throw e;
    }
  }

  /** Client endpoints, "http://127.0.0.1:PORT" each. */
  get endpoints(): string[] {
    return this.members.map((m) => `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${m.clientPort}`);
  }

  /** The --fleet URL for Patronus: etcd://127.0.0.1:P1,127.0.0.1:P2,... */
  get fleetUrl(): string {
    return `${this.opts.tls ? 'etcds' : 'etcd'}://${this.members.map((m) => `127.0.0.1:${m.clientPort}`).join(',')}`;
  }

  /** SIGKILL one member (its data stays: restart() brings it back). */
  async kill(name: string): Promise<void> {
    const m = this.member(name);
    m.proc?.kill('SIGKILL');
    await m.proc;
    delete m.proc;
  }

  async restart(name: string): Promise<void> {
    const m = this.member(name);
    if (m.proc && m.proc.exitCode === null) return;
    this.spawn(m, 'existing');
  }

  /** Waits until every running member reports healthy (etcdctl endpoint health). */
  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const running = () => this.members.filter((m) => m.proc && m.proc.exitCode === null);
    let last = '';
    while (Date.now() < deadline) {
      const dead = this.members.find((m) => m.proc && m.proc.exitCode !== null);
      if (dead) throw new Error(`etcd member ${dead.name} exited ${dead.proc!.exitCode}: ${String((await dead.proc!).all).slice(-2000)}`);
      const t = this.opts.tls;
      const tls = t ? ['--cacert', t.ca, ...(t.client ? ['--cert', t.client.cert, '--key', t.client.key] : [])] : [];
      const r = await execa('etcdctl', ['--endpoints', running().map((m) => `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${m.clientPort}`).join(','), ...tls, '--dial-timeout=1s', '--command-timeout=2s', 'endpoint', 'health'], { reject: false, timeout: 30_000, env: { ETCDCTL_API: '3' } });
      if (r.exitCode === 0) return;
      last = `${r.stdout}${r.stderr}`;
      await new Promise((res) => setTimeout(res, 250));
    }
    throw new Error(`etcd cluster not healthy within ${timeoutMs} ms: ${last}`);
  }

  /** Kills every member and removes the data directories. Never throws. */
  async stop(): Promise<void> {
    for (const m of this.members) {
      m.proc?.kill('SIGKILL');
      await m.proc?.catch(() => undefined);
      delete m.proc;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** CPU seconds (user+system) and resident bytes of each running member, from /proc. */
  usage(): { name: string; cpuSeconds: number; rssBytes: number }[] {
    return this.members.filter((m) => m.proc?.pid && m.proc.exitCode === null && existsSync(`/proc/${m.proc.pid}/stat`)).map((m) => ({ name: m.name, ...procUsage(m.proc!.pid!) }));
  }

  /** Members that exited although nobody killed them, with the tail of their output. */
  async crashed(): Promise<string[]> {
    const out: string[] = [];
    for (const m of this.members) if (m.proc && m.proc.exitCode !== null) out.push(`${m.name} exited ${m.proc.exitCode} (signal ${m.proc.signalCode ?? 'none'}): ${String((await m.proc).all ?? '').slice(-1500)}`);
    return out;
  }

  private member(name: string): EtcdMember {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new Error(`no etcd member ${name}`);
    return m;
  }

  private spawn(m: EtcdMember, state: 'new' | 'existing' = 'new'): void {
    const peers = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(',');
    m.proc = execa(
      'etcd',
      [
        '--name', m.name,
        '--data-dir', m.dataDir,
        '--listen-client-urls', `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${m.clientPort}`,
        '--advertise-client-urls', `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${m.clientPort}`,
        ...(this.opts.tls ? ['--cert-file', this.opts.tls.cert, '--key-file', this.opts.tls.key] : []),
        ...(this.opts.tls?.client ? ['--client-cert-auth', '--trusted-ca-file', this.opts.tls.ca] : []),
        '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
        '--initial-cluster', peers,
        '--initial-cluster-token', this.token,
        '--initial-cluster-state', state,
        '--heartbeat-interval', String(this.opts.heartbeatMs),
        '--election-timeout', String(this.opts.electionMs),
        '--logger', 'zap',
        '--log-level', 'error',
      ],
      // no env from the caller's ETCD_* variables: each member is configured by flags alone
      { reject: false, all: true, buffer: true, stdin: 'ignore', extendEnv: false, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
    ) as EtcdMember['proc'];
    m.proc!.catch(() => undefined);
  }
}


function procUsage(pid: number): { cpuSeconds: number; rssBytes: number } {
  // /proc/PID/stat fields 14 and 15 (utime, stime) in clock ticks (100 Hz on Linux); /proc/PID/statm field 2 in pages
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const pages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
  return { cpuSeconds: ticks / 100, rssBytes: pages * 4096 };
}
