/**
 * Gateway health monitoring: one long-running prober per gateway inside the
 * host's namespace (ICMP: a continuous `ping -O` bound to the gateway's
 * interface and mark; TCP: src/multiwan/probe-tcp.js connecting from the
 * interface's address), a sliding window of results per gateway, and a
 * callback when a gateway goes down or comes back. Started by the
 * subsystem's apply, stopped by teardown; the `patronus serve` process
 * keeps it running (the probers do not keep a one-shot CLI alive).
 *
 * A probe alone cannot tell whether traffic gets through: a probe bound to
 * the interface reaches its target on the link even when the gateway's
 * routing table (the one its marked traffic uses) lost its default route.
 * The kernel deletes that route when the link goes down and does not put it
 * back when the link returns, and it sends no notification for the
 * deletion. So the monitor also follows the interfaces' link state and the
 * routing tables (`ip monitor link route` in the namespace, plus a check
 * every few seconds): a link that is down (administratively or without
 * carrier) takes the gateway down at once; when it returns, the table route
 * the kernel flushed is put back (`ip route replace`, as apply installs it);
 * and while the path is broken every probe counts as lost, so the gateway
 * comes back only after `upAfter` good probes on a working path. (A route
 * deleted by hand while the link stays up is drift: the drift check reports
 * it and apply restores it.)
 */
import { fileURLToPath } from 'node:url';
import type { Host } from '../system/host.js';
import { lostProbesToFail, type MwanGateway } from './compile.js';
import type { MonitorConfig } from './schema.js';

export type GatewayState = 'up' | 'down';

export interface HealthEvent {
  /** Date.now() of the transition */
  at: number;
  gateway: string;
  state: GatewayState;
  reason: string;
  lossPercent: number;
  rttMs: number | null;
  /** what decided it: the probe window, or the link / routing table the traffic uses */
  cause: 'probes' | 'path';
}

/** A change the monitor made to the kernel (a route the kernel had removed, put back). */
export interface PathRepair {
  at: number;
  gateway: string;
  action: string;
}

export interface GatewayHealth {
  gateway: string;
  state: GatewayState;
  since: number;
  lossPercent: number;
  /** average round trip of the answered probes in the window */
  rttMs: number | null;
  probes: number;
  lost: number;
  detectionMs: number;
}

/**
 * The decision for one gateway (pure, unit-tested): down when the lost
 * share of the last `window` probes reaches lossPercent or their average
 * round trip reaches latencyMs; up again after `upAfter` consecutive good
 * probes.
 */
export class HealthWindow {
  private results: { ok: boolean; rtt: number }[] = [];
  private goodRun = 0;
  state: GatewayState;
  probes = 0;
  lost = 0;

  constructor(
    private readonly m: Pick<MonitorConfig, 'window' | 'lossPercent' | 'latencyMs' | 'upAfter'>,
    initial: GatewayState = 'up',
  ) {
    this.state = initial;
  }

  get lossPercent(): number {
    if (!this.results.length) return 0;
    return (100 * this.results.filter((r) => !r.ok).length) / this.results.length;
  }

  get rttMs(): number | null {
    const ok = this.results.filter((r) => r.ok);
    return ok.length ? ok.reduce((n, r) => n + r.rtt, 0) / ok.length : null;
  }

  /** Records one probe; returns the new state when it changed, with the reason. */
  push(ok: boolean, rtt = 0): { state: GatewayState; reason: string } | undefined {
    this.probes++;
    if (!ok) this.lost++;
    this.results.push({ ok, rtt });
    if (this.results.length > this.m.window) this.results.shift();
    const good = ok && rtt < this.m.latencyMs;
    this.goodRun = good ? this.goodRun + 1 : 0;
    if (this.state === 'up') {
      const lostN = this.results.filter((r) => !r.ok).length;
      if (lostN >= lostProbesToFail(this.m)) return this.set('down', `${lostN} of the last ${this.results.length} probes lost (threshold ${this.m.lossPercent}% of ${this.m.window})`);
      const rtt = this.rttMs;
      if (this.results.length >= Math.min(this.m.window, 3) && rtt !== null && rtt >= this.m.latencyMs) return this.set('down', `average round trip ${rtt.toFixed(1)} ms >= ${this.m.latencyMs} ms`);
      return undefined;
    }
    if (this.goodRun >= this.m.upAfter) {
      // start the window afresh: the losses that took it down are history
      this.results = this.results.slice(-this.m.upAfter);
      return this.set('up', `${this.goodRun} consecutive good probes`);
    }
    return undefined;
  }

  /** The path is known to be broken (link down, route missing): down now, whatever the window says. */
  fail(reason: string): { state: GatewayState; reason: string } | undefined {
    this.goodRun = 0;
    if (this.state === 'down') return undefined;
    return this.set('down', reason);
  }

  private set(state: GatewayState, reason: string) {
    this.state = state;
    this.goodRun = 0;
    return { state, reason };
  }
}

type Prober = { stop(): void };

/** how often every gateway's path is checked besides the events */
const PATH_CHECK_MS = 5000;

/** `ip` arguments that install a gateway's default route in its table (what apply does). */
export function gatewayRouteArgs(g: Pick<MwanGateway, 'nextHop' | 'interface' | 'table'>): string[] {
  return ['route', 'replace', 'default', 'via', g.nextHop, 'dev', g.interface, 'table', String(g.table)];
}

export class HealthMonitor {
  readonly events: HealthEvent[] = [];
  readonly repairs: PathRepair[] = [];
  private readonly windows = new Map<string, HealthWindow>();
  /** per gateway: why its path is broken, or undefined while it works */
  private readonly broken = new Map<string, string | undefined>();
  /** per gateway: the path check running now, and whether another was asked for meanwhile */
  private readonly checking = new Map<string, { again: boolean }>();
  private pathTimer: NodeJS.Timeout | undefined;
  /** gateways whose link was seen down since their table route was last seen: the kernel flushed that route */
  private readonly linkWasDown = new Set<string>();
  private readonly since = new Map<string, number>();
  private probers: Prober[] = [];
  private running = false;
  /** serializes onChange calls so the last health always wins */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly host: Host,
    readonly gateways: readonly MwanGateway[],
    private readonly onChange: (up: ReadonlyMap<string, boolean>, event: HealthEvent) => Promise<void>,
    initial: ReadonlyMap<string, GatewayState> = new Map(),
    private readonly log: (line: string) => void = () => {},
  ) {
    for (const g of gateways) {
      this.windows.set(g.name, new HealthWindow(g.monitor, initial.get(g.name) ?? 'up'));
      this.since.set(g.name, Date.now());
    }
  }

  up(): Map<string, boolean> {
    return new Map([...this.windows].map(([n, w]) => [n, w.state === 'up']));
  }

  health(): GatewayHealth[] {
    return this.gateways.map((g) => {
      const w = this.windows.get(g.name)!;
      return { gateway: g.name, state: w.state, since: this.since.get(g.name)!, lossPercent: w.lossPercent, rttMs: w.rttMs, probes: w.probes, lost: w.lost, detectionMs: g.detectionMs };
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const g of this.gateways) this.probers.push(g.monitor.method === 'tcp' ? this.tcpProber(g) : this.icmpProber(g));
    if (this.gateways.length) {
      this.probers.push(this.pathWatcher());
      for (const g of this.gateways) this.checkPath(g);
      // the safety net for what no event reports (the kernel announces no route it flushes)
      this.pathTimer = setInterval(() => this.gateways.forEach((g) => this.checkPath(g)), PATH_CHECK_MS);
      this.pathTimer.unref();
    }
  }

  /**
   * Resolves when the group updates queued so far (one per recorded event,
   * run after the event is recorded) are in the kernel: readers of `events`
   * that then look at traffic wait for this.
   */
  async updatesDone(): Promise<void> {
    for (let c = this.chain; ; c = this.chain) {
      await c.catch(() => {});
      if (c === this.chain) return;
    }
  }

  /** Stops every prober; resolves when pending updates are done. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.pathTimer) clearInterval(this.pathTimer);
    for (const p of this.probers.splice(0)) p.stop();
    await this.chain.catch(() => {});
  }

  /** Why the gateway's path is broken now (link down, route missing), or undefined. */
  pathProblem(gateway: string): string | undefined {
    return this.broken.get(gateway);
  }

  private result(g: MwanGateway, ok: boolean, rtt: number): void {
    if (!this.running) return;
    const w = this.windows.get(g.name)!;
    // a probe that got through on a path the traffic cannot take proves nothing
    const change = w.push(ok && this.broken.get(g.name) === undefined, rtt);
    if (change) this.transition(g, change, 'probes');
  }

  private transition(g: MwanGateway, change: { state: GatewayState; reason: string }, cause: HealthEvent['cause']): void {
    const w = this.windows.get(g.name)!;
    const event: HealthEvent = { at: Date.now(), gateway: g.name, state: change.state, reason: change.reason, lossPercent: w.lossPercent, rttMs: w.rttMs, cause };
    this.since.set(g.name, event.at);
    this.events.push(event);
    if (this.events.length > 1000) this.events.shift();
    this.log(`gateway ${g.name} ${change.state}: ${change.reason}`);
    const up = this.up();
    this.chain = this.chain.then(() => this.onChange(up, event)).catch((e: unknown) => this.log(`gateway ${g.name}: updating the group chains failed: ${(e as Error).message}`));
  }

  /**
   * Link and route events of the namespace: any event about a gateway's
   * interface or routing table re-checks that gateway's path.
   */
  private pathWatcher(): Prober {
    const pseudo = { ...this.gateways[0]!, name: 'link events' } as MwanGateway;
    return this.supervise(pseudo, 'ip', ['-o', 'monitor', 'link', 'route'], (line) => {
      const link = /^\d+: ([^:@\s]+)[@:]/.exec(line.replace(/^Deleted /, ''));
      for (const g of this.gateways) {
        if ((link && link[1] === g.interface) || new RegExp(`\\btable ${g.table}\\b`).test(line) || new RegExp(`\\bdev ${g.interface.replace(/[.]/g, '\\.')}\\b`).test(line)) this.checkPath(g);
      }
    }, false);
  }

  /** Checks (and repairs) one gateway's path; a check asked for while one runs runs again after it. */
  private checkPath(g: MwanGateway): void {
    if (!this.running) return;
    const busy = this.checking.get(g.name);
    if (busy) {
      busy.again = true;
      return;
    }
    const state = { again: false };
    this.checking.set(g.name, state);
    void (async () => {
      do {
        state.again = false;
        let problem: string | undefined;
        try {
          problem = await this.pathOf(g);
        } catch (e) {
          problem = (e as Error).message;
        }
        this.setBroken(g, problem);
      } while (state.again && this.running);
      this.checking.delete(g.name);
    })();
  }

  /**
   * undefined when the link is up and the gateway's table routes via its
   * next hop; the route is put back when the kernel removed it (the link was
   * seen down since). A route missing for another reason (deleted by hand)
   * is drift: reported by the drift check and restored by apply, not here.
   */
  private async pathOf(g: MwanGateway): Promise<string | undefined> {
    const l = await this.host.run('ip', ['-j', 'link', 'show', 'dev', g.interface], { reject: false });
    if (l.exitCode !== 0) return `interface ${g.interface} does not exist`;
    const flags = (JSON.parse(l.stdout || '[]') as { flags?: string[] }[])[0]?.flags ?? [];
    const down = !flags.includes('UP') ? `link ${g.interface} is down` : !flags.includes('LOWER_UP') || flags.includes('NO-CARRIER') ? `link ${g.interface} has no carrier` : undefined;
    if (down) {
      this.linkWasDown.add(g.name);
      return down;
    }
    const r = await this.host.run('ip', ['-4', '-j', 'route', 'show', 'table', String(g.table), 'default'], { reject: false });
    const routes = r.exitCode === 0 ? (JSON.parse(r.stdout || '[]') as { gateway?: string; dev?: string; flags?: string[] }[]) : [];
    if (routes.some((x) => x.gateway === g.nextHop && x.dev === g.interface && !x.flags?.includes('linkdown'))) {
      this.linkWasDown.delete(g.name);
      return undefined;
    }
    if (!this.linkWasDown.has(g.name)) return undefined;
    // the kernel flushed it when the link went down and does not put it back: do it as apply installs it
    const args = gatewayRouteArgs(g);
    const put = await this.host.run('ip', args, { reject: false });
    if (put.exitCode !== 0) return `table ${g.table} has no default route via ${g.nextHop} dev ${g.interface}, and putting it back failed: ${put.stderr.trim()}`;
    this.linkWasDown.delete(g.name);
    this.repairs.push({ at: Date.now(), gateway: g.name, action: args.slice(1).join(' ') });
    if (this.repairs.length > 100) this.repairs.shift();
    this.log(`gateway ${g.name}: table ${g.table} had lost its default route; restored (${args.slice(1).join(' ')})`);
    return undefined;
  }

  private setBroken(g: MwanGateway, problem: string | undefined): void {
    const before = this.broken.get(g.name);
    this.broken.set(g.name, problem);
    if (problem === before || !this.running) return;
    if (problem === undefined) {
      this.log(`gateway ${g.name}: path works again (probes decide when it is up)`);
      return;
    }
    this.log(`gateway ${g.name}: path broken: ${problem}`);
    const change = this.windows.get(g.name)!.fail(problem);
    if (change) this.transition(g, change, 'path');
  }

  private icmpProber(g: MwanGateway): Prober {
    const seconds = (g.monitor.intervalMs / 1000).toFixed(3);
    const args = ['-n', '-O', '-i', seconds, '-m', String(g.mark), '-I', g.interface, g.monitor.target];
    return this.supervise(g, 'ping', args, (line) => {
      let m = /icmp_seq=(\d+) .*time=([\d.]+) ms/.exec(line);
      if (m) return this.answered(g, Number(m[1]), Number(m[2]));
      m = /no answer yet for icmp_seq=(\d+)/.exec(line);
      if (m) return this.unanswered(g, Number(m[1]));
      m = /icmp_seq=(\d+) .*(Unreachable|Time to live exceeded|Redirect)/i.exec(line);
      if (m) return this.unanswered(g, Number(m[1]));
      if (/sendmsg|connect:|Network is unreachable|No buffer space/i.test(line)) this.result(g, false, 0);
    });
  }

  private tcpProber(g: MwanGateway): Prober {
    const script = fileURLToPath(new URL('./probe-tcp.js', import.meta.url));
    const args = [script, g.monitor.target, String(g.monitor.port), String(g.monitor.intervalMs), g.interface];
    return this.supervise(g, process.execPath, args, (line) => {
      const m = /^(ok|fail) ([\d.]+)/.exec(line);
      if (m) this.result(g, m[1] === 'ok', Number(m[2]));
    });
  }

  // a reply after its "no answer yet" was already counted as a loss is not counted again
  private readonly settled = new Map<string, Set<number>>();
  private answered(g: MwanGateway, seq: number, rtt: number): void {
    const s = this.seqs(g);
    if (s.has(seq)) return;
    s.add(seq);
    this.result(g, true, rtt);
  }
  private unanswered(g: MwanGateway, seq: number): void {
    const s = this.seqs(g);
    if (s.has(seq)) return;
    s.add(seq);
    this.result(g, false, 0);
  }
  private seqs(g: MwanGateway): Set<number> {
    let s = this.settled.get(g.name);
    if (!s) this.settled.set(g.name, (s = new Set()));
    if (s.size > 4096) s.clear();
    return s;
  }

  /** Runs a prober, feeds its output lines, restarts it if it dies (each death counts as a lost probe). */
  private supervise(g: MwanGateway, cmd: string, args: string[], onLine: (line: string) => void, countsAsProbe = true): Prober {
    let child: ReturnType<Host['spawn']> | undefined;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const launch = () => {
      if (stopped) return;
      this.settled.delete(g.name);
      child = this.host.spawn(cmd, args);
      let buf = '';
      const feed = (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      };
      child.stdout?.on('data', feed);
      child.stderr?.on('data', feed);
      // a prober must not keep a one-shot CLI process alive
      child.unref();
      (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
      (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
      void child.then((r) => {
        if (stopped) return;
        this.log(`gateway ${g.name}: prober exited (${r.exitCode ?? r.signal}); restarting`);
        if (countsAsProbe) this.result(g, false, 0);
        // events may have been missed while it was down
        else this.gateways.forEach((x) => this.checkPath(x));
        timer = setTimeout(launch, g.monitor.intervalMs);
        timer.unref();
      });
    };
    launch();
    const kill = () => child?.kill('SIGKILL');
    process.once('exit', kill);
    return {
      stop: () => {
        stopped = true;
        if (timer) clearTimeout(timer);
        kill();
        process.removeListener('exit', kill);
      },
    };
  }
}
