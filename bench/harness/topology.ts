/**
 * The bench topology: a sender namespace and a receiver namespace joined by
 * one veth pair, and the counters the harness reads at the receiver.
 *
 * Conditions that make the figures honest (see /work/shared/BENCH.md):
 * - GRO is on at the receiving veth, so frames sent by XDP from the peer
 *   are received (NAPI) even when no XDP program is attached there;
 * - by default the receiver's NAPI is not threaded: it runs in softirq right
 *   after each generator batch, on the generator's CPU, so nothing queues up
 *   in a ring that a descheduled thread fails to drain (this VM's vCPUs are
 *   shared); receiver CPU time is then that CPU's softirq time (plus its
 *   ksoftirqd's, when the kernel defers to it), and the generator's own time
 *   is its task time. pinReceiver() moves it into a kernel thread on another
 *   CPU instead (the side-by-side bench's default, see pinReceiver);
 * - the sender has IPv6 off (no ND/MLD chatter in the receiver's counters).
 */
import { readFile, readdir } from 'node:fs/promises';
import { execa } from 'execa';
import { Lab, type Netns } from '../lib/netns.js';

export const RX_DEV = 'wan0';
export const TX_DEV = 'gen0';
export const DST4 = '10.99.0.2';
export const DST6 = 'fd00:99::2';

export interface RxCounters {
  /** frames the receiving veth took off its ring (every path, XDP or not) */
  rx: number;
  /** datagrams that reached UDP (a socket or "no port"), IPv4 + IPv6 */
  delivered: number;
  /** frames the sending veth handed to the peer, and the ones refused (ring full) */
  xmit: number;
  xmitErrors: number;
  /** softirq + ksoftirqd CPU time on the receive path's CPUs, seconds */
  softirqSeconds: number;
  /** CPU time of the receiver's NAPI thread (threaded NAPI, see pinReceiver), seconds; NaN when not threaded */
  rxThreadSeconds: number;
}

/** Run-time statistics of the XDP program attached to the receiving veth (kernel BPF stats). */
export interface ProgStats {
  id: number;
  runTimeNs: number;
  runCnt: number;
}

export class Topology {
  private constructor(
    readonly lab: Lab,
    readonly sender: Netns,
    readonly receiver: Netns,
    readonly rxIfindex: number,
    readonly txIfindex: number,
    readonly rxMac: string,
    readonly txMac: string,
  ) {}

  /** pid of the receiver's NAPI kernel thread once pinReceiver ran */
  private rxThread: { pid: number; comm: string } | undefined;

  /**
   * Moves the receiving veth's NAPI poll out of the generator's softirq into
   * its own kernel thread (threaded NAPI) pinned to `cpu`: generator and
   * receiver then run on different CPUs, the receiver's ring overflows when
   * it is the bottleneck (the sender counts the refused frames), and the
   * receive path's CPU time is that one thread's (/proc/PID/schedstat, ns),
   * other tenants' softirq work excluded. The thread is found as the one
   * "napi/<dev>-<id>" kernel thread that appears when threading is switched
   * on (another bench's veth of the same name would be an older thread).
   */
  async pinReceiver(cpu: number): Promise<number> {
    const prefix = `napi/${RX_DEV}-`;
    const before = new Set((await threadsNamed(prefix)).map((t) => t.pid));
    await this.receiver.exec('sh', ['-c', `echo 1 > /sys/class/net/${RX_DEV}/threaded`]);
    let fresh: { pid: number; comm: string }[] = [];
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      fresh = (await threadsNamed(prefix)).filter((t) => !before.has(t.pid));
      if (fresh.length) break;
    }
    if (fresh.length !== 1) {
      throw new Error(`threaded NAPI on ${RX_DEV} in ${this.receiver.name}: expected one new "${prefix}*" kernel thread, found ${fresh.length} (${fresh.map((t) => `${t.pid} ${t.comm}`).join(', ')})`);
    }
    const t = fresh[0]!;
    const r = await execa('taskset', ['-pc', String(cpu), String(t.pid)], { reject: false, timeout: 30_000 });
    if (r.exitCode !== 0) throw new Error(`taskset -pc ${cpu} ${t.pid} (${t.comm}): ${String(r.stderr).trim()}`);
    this.rxThread = t;
    return t.pid;
  }

  /** The attached XDP program's run-time stats (zeros unless BPF stats were on); undefined without an XDP program. */
  async xdpProgStats(): Promise<ProgStats | undefined> {
    const { stdout } = await this.receiver.ip('-j', '-d', 'link', 'show', 'dev', RX_DEV);
    const id = (JSON.parse(stdout) as { xdp?: { prog?: { id: number } } }[])[0]?.xdp?.prog?.id;
    if (!id) return undefined;
    const r = await execa('bpftool', ['-j', 'prog', 'show', 'id', String(id)], { timeout: 30_000 });
    const j = JSON.parse(r.stdout) as { run_time_ns?: number; run_cnt?: number };
    return { id, runTimeNs: j.run_time_ns ?? 0, runCnt: j.run_cnt ?? 0 };
  }

  private async rxThreadSeconds(): Promise<number> {
    const t = this.rxThread;
    if (!t) return NaN;
    const comm = (await readFile(`/proc/${t.pid}/comm`, 'utf8').catch(() => '')).trim();
    if (comm !== t.comm) throw new Error(`the receiver's NAPI thread ${t.pid} (${t.comm}) is gone (now "${comm}"): was the veth's NAPI re-created?`);
    const [ns] = (await readFile(`/proc/${t.pid}/schedstat`, 'utf8')).trim().split(/\s+/);
    return Number(ns) / 1e9;
  }

  static async create(): Promise<Topology> {
    const lab = new Lab();
    try {
      const sender = await lab.ns('bsend');
      const receiver = await lab.ns('brecv');
      await sender.sysctl('net.ipv6.conf.all.disable_ipv6', '1');
      await sender.sysctl('net.ipv6.conf.default.disable_ipv6', '1');
      await lab.veth({ ns: sender, dev: TX_DEV }, { ns: receiver, dev: RX_DEV, address: `${DST4}/24` });
      await receiver.ip('addr', 'add', `${DST6}/64`, 'dev', RX_DEV, 'nodad');
      await receiver.exec('ethtool', ['-K', RX_DEV, 'gro', 'on']);
      // a deliberate 0: the receive path must run in softirq (see above)
      await receiver.exec('sh', ['-c', `echo 0 > /sys/class/net/${RX_DEV}/threaded`]);
      // ICMP errors for the closed port are rate limited anyway; keep them out of the picture
      await receiver.sysctl('net.ipv4.icmp_ratelimit', '1000000');
      await receiver.sysctl('net.ipv4.icmp_msgs_per_sec', '0');
      return new Topology(
        lab,
        sender,
        receiver,
        await receiver.ifindex(RX_DEV),
        await sender.ifindex(TX_DEV),
        await receiver.mac(RX_DEV),
        await sender.mac(TX_DEV),
      );
    } catch (e) {
      await lab.teardown();
      throw e;
    }
  }

  /** Receiver-side counters; `cpus`: where the receive path runs (the generator's CPUs). */
  async counters(cpus: readonly number[] = [0]): Promise<RxCounters> {
    const [rxStats, txStats, snmp, softirq, thread] = await Promise.all([
      ethtoolStats(this.receiver, RX_DEV),
      ethtoolStats(this.sender, TX_DEV),
      this.receiver.exec('cat', ['/proc/net/snmp', '/proc/net/snmp6']),
      softirqSeconds(cpus),
      this.rxThreadSeconds(),
    ]);
    return {
      rx: need(rxStats, 'rx_queue_0_xdp_packets', RX_DEV),
      xmit: need(txStats, 'tx_queue_0_xdp_xmit', TX_DEV),
      xmitErrors: need(txStats, 'tx_queue_0_xdp_xmit_errors', TX_DEV),
      delivered: udpDelivered(snmp.stdout),
      softirqSeconds: softirq,
      rxThreadSeconds: thread,
    };
  }

  async teardown(): Promise<void> {
    await this.lab.teardown();
  }
}

export function diff(a: RxCounters, b: RxCounters): RxCounters {
  return {
    rx: b.rx - a.rx,
    delivered: b.delivered - a.delivered,
    xmit: b.xmit - a.xmit,
    xmitErrors: b.xmitErrors - a.xmitErrors,
    softirqSeconds: b.softirqSeconds - a.softirqSeconds,
    rxThreadSeconds: b.rxThreadSeconds - a.rxThreadSeconds,
  };
}

/** Kernel threads whose name starts with `prefix` (comm is cut at 15 characters). */
async function threadsNamed(prefix: string): Promise<{ pid: number; comm: string }[]> {
  const out: { pid: number; comm: string }[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const comm = (await readFile(`/proc/${e}/comm`, 'utf8').catch(() => '')).trim();
    if (comm.startsWith(prefix.slice(0, 15))) out.push({ pid: Number(e), comm });
  }
  return out;
}

async function ethtoolStats(ns: Netns, dev: string): Promise<Map<string, number>> {
  const { stdout } = await ns.exec('ethtool', ['-S', dev]);
  const out = new Map<string, number>();
  for (const line of stdout.split('\n')) {
    const m = /^\s*([\w]+):\s+(\d+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function need(stats: Map<string, number>, key: string, dev: string): number {
  const v = stats.get(key);
  if (v === undefined) throw new Error(`ethtool -S ${dev}: no ${key} counter (veth driver changed?)`);
  return v;
}

/** UDP datagrams that reached the transport layer: InDatagrams + NoPorts + InErrors, both families. */
export function udpDelivered(text: string): number {
  let total = 0;
  const lines = text.split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    if (lines[i]!.startsWith('Udp: ') && lines[i + 1]!.startsWith('Udp: ')) {
      const names = lines[i]!.split(/\s+/).slice(1);
      const values = lines[i + 1]!.split(/\s+/).slice(1).map(Number);
      for (const k of ['InDatagrams', 'NoPorts', 'InErrors']) total += values[names.indexOf(k)] ?? 0;
      i++;
    }
  }
  for (const line of lines) {
    const m = /^(Udp6InDatagrams|Udp6NoPorts|Udp6InErrors)\s+(\d+)/.exec(line);
    if (m) total += Number(m[2]);
  }
  return total;
}

/**
 * Softirq time of the given CPUs from /proc/stat (irq-time accounting) plus
 * the CPU time of their ksoftirqd threads (softirq work the kernel deferred
 * to them is charged to those tasks, not to the softirq column). The
 * receiver's NAPI poll runs on the CPU whose generator batch scheduled it,
 * so the generator's CPUs are the ones to read. Other tenants' softirq work
 * on those CPUs lands here too (this kernel has neither kprobes nor fentry
 * to time the veth poll alone): the harness reports it as measured.
 */
export async function softirqSeconds(cpus: readonly number[]): Promise<number> {
  const hz = 100; // USER_HZ, fixed at 100 on Linux/x86
  const stat = await readFile('/proc/stat', 'utf8');
  let ticks = 0;
  for (const cpu of cpus) {
    const line = stat.split('\n').find((l) => l.startsWith(`cpu${cpu} `));
    if (!line) throw new Error(`/proc/stat has no line for cpu${cpu}`);
    ticks += Number(line.trim().split(/\s+/)[7] ?? 0); // cpuN user nice system idle iowait irq softirq
    const { stdout } = await execa('pgrep', ['-x', `ksoftirqd/${cpu}`], { reject: false });
    for (const pid of stdout.split(/\s+/).filter(Boolean)) {
      try {
        const s = await readFile(`/proc/${pid}/stat`, 'utf8');
        const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
        ticks += Number(rest[11]) + Number(rest[12]); // utime stime
      } catch {
        /* thread gone */
      }
    }
  }
  return ticks / hz;
}
