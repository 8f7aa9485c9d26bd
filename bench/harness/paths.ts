/**
 * The filter paths compared side by side. Each takes the same RuleSet ("drop
 * traffic from these source prefixes, pass the rest") and installs it on the
 * receiver's interface its own way:
 *
 *   xdp-patronus      Patronus' XDP fast path (src/fastpath), when present
 *   xdp-lpm           the bench's own minimal XDP program: one LPM trie lookup
 *   nft-netdev-set    nftables netdev ingress, one interval set lookup
 *   nft-netdev-rules  nftables netdev ingress, one rule per prefix
 *   nft-inet-ct       nftables inet input/forward with conntrack and a set
 *                     (the path a user of plain nftables has today)
 *   xdp-filter        Debian xdp-tools' xdp-filter (exact addresses in hash
 *                     maps, its smallest feature variant for the family)
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BpfObject, BpfMap, PerCpuMap, BpfProgram, codecs, detachXdp } from '../../src/bpf/index.js';
import { inNetns } from '../../src/system/netns.js';
import { formatPrefix, parsePrefix, type Prefix } from '../../src/net/address.js';
import { projectRoot } from '../../src/bpf/addon.js';
import type { Netns } from '../lib/netns.js';
import type { RuleSet } from './workload.js';

export interface FilterPath {
  readonly id: string;
  readonly label: string;
  /** installs the rule set (replacing any earlier one); returns seconds taken */
  install(rules: RuleSet): Promise<number>;
  /** swaps to another rule set while traffic flows; returns seconds taken */
  swap(rules: RuleSet): Promise<number>;
  /** removes everything this path put on the receiver */
  remove(): Promise<void>;
  /** before every measured run: reset state that would carry over between runs */
  beforeRun?(): Promise<void>;
  /** the filter's own drop count, to cross-check the receiver's arithmetic */
  drops?(): Promise<number>;
  /** average in-kernel ns per run of the classifier alone on one frame (bpf_prog_test_run repeat) */
  classifierNs?(frame: Buffer, repeat: number): Promise<number>;
  /** why this path cannot take a rule set (undefined: it can) */
  unsupported?(rules: RuleSet): string | undefined;
  close(): Promise<void>;
}

export interface PathContext {
  receiver: Netns;
  dev: string;
  ifindex: number;
}

export const LPM_MAX = 262144;

/** The bench's own LPM-trie drop program (bench/trafficgen/lpm_drop.bpf.c). */
export class XdpLpmPath implements FilterPath {
  readonly id = 'xdp-lpm';
  readonly label = 'XDP, bench LPM trie';
  private attached = false;

  private constructor(
    private readonly ctx: PathContext,
    private readonly obj: BpfObject,
    private readonly prog: BpfProgram,
    private readonly v4: BpfMap<Prefix, number>,
    private readonly v6: BpfMap<Prefix, number>,
    private readonly verdicts: PerCpuMap<number, bigint>,
  ) {}

  static async create(ctx: PathContext): Promise<XdpLpmPath> {
    const obj = BpfObject.open(path.join(projectRoot(), 'bench/trafficgen/build/lpm_drop.bpf.o'));
    obj.setMapMaxEntries('src_v4', LPM_MAX).setMapMaxEntries('src_v6', LPM_MAX);
    await obj.load();
    return new XdpLpmPath(
      ctx,
      obj,
      obj.program('xdp_lpm_drop'),
      obj.map('src_v4', codecs.lpmV4Key, codecs.u32),
      obj.map('src_v6', codecs.lpmV6Key, codecs.u32),
      obj.perCpuMap('verdicts', codecs.u32, codecs.u64),
    );
  }

  async install(rules: RuleSet): Promise<number> {
    const t0 = performance.now();
    await this.v4.clear();
    await this.v6.clear();
    await this.load(rules);
    if (!this.attached) {
      inNetns(this.ctx.receiver.name, () => this.prog.attachXdp(this.ctx.ifindex, { mode: 'native' }));
      this.attached = true;
    }
    return (performance.now() - t0) / 1000;
  }

  /** Not hitless (a minimal baseline has no shadow tables): add the new prefixes, then delete the old. */
  async swap(rules: RuleSet): Promise<number> {
    const t0 = performance.now();
    const keep = new Set(rules.prefixes);
    const map = rules.family === 4 ? this.v4 : this.v6;
    const old = [...map.keys()].filter((p) => !keep.has(formatPrefix(p)));
    await this.load(rules);
    await map.deleteMany(old);
    return (performance.now() - t0) / 1000;
  }

  private async load(rules: RuleSet): Promise<void> {
    const map = rules.family === 4 ? this.v4 : this.v6;
    await map.setMany(rules.prefixes.map((p) => [parsePrefix(p), 1] as const));
  }

  async drops(): Promise<number> {
    return Number((this.verdicts.get(1) ?? []).reduce((a, b) => a + b, 0n));
  }

  async classifierNs(frame: Buffer, repeat: number): Promise<number> {
    const r = await this.prog.testRun({ data: frame, repeat });
    return r.duration;
  }

  /** Detaches and empties the tries (untimed here, so the next install's timing covers only its own work). */
  async remove(): Promise<void> {
    if (this.attached) {
      inNetns(this.ctx.receiver.name, () => detachXdp(this.ctx.ifindex, 'native', this.prog));
      this.attached = false;
    }
    await this.v4.clear();
    await this.v6.clear();
  }

  async close(): Promise<void> {
    if (this.attached) inNetns(this.ctx.receiver.name, () => detachXdp(this.ctx.ifindex, 'native', this.prog));
    this.attached = false;
    this.verdicts.close();
    this.v4.close();
    this.v6.close();
    this.prog.close();
    this.obj.close();
  }
}

type NftMode = 'netdev-set' | 'netdev-rules' | 'inet-ct';

/** nftables, driven the way an operator would: one `nft -f` script per change (atomic). */
export class NftPath implements FilterPath {
  readonly id: string;
  readonly label: string;
  private installed = false;
  private size = 0;

  private constructor(
    private readonly ctx: PathContext,
    private readonly mode: NftMode,
    private readonly dir: string,
  ) {
    this.id = `nft-${mode}`;
    this.label = {
      'netdev-set': 'nftables netdev ingress, set',
      'netdev-rules': 'nftables netdev ingress, rule per prefix',
      'inet-ct': 'nftables inet input+forward, conntrack, set',
    }[mode];
  }

  static async create(ctx: PathContext, mode: NftMode): Promise<NftPath> {
    return new NftPath(ctx, mode, await mkdtemp(path.join(tmpdir(), 'pt-bench-nft-')));
  }

  private get family(): string {
    return this.mode === 'inet-ct' ? 'inet' : 'netdev';
  }

  private chains(): string[] {
    return this.mode === 'inet-ct' ? ['input', 'forward'] : ['ingress'];
  }

  private hook(chain: string): string {
    return chain === 'ingress'
      ? `type filter hook ingress device "${this.ctx.dev}" priority 0; policy accept;`
      : `type filter hook ${chain} priority 0; policy accept;`;
  }

  /** The drop statements of one chain for a rule set. */
  private statements(rules: RuleSet): string[] {
    const sel = rules.family === 4 ? 'ip saddr' : 'ip6 saddr';
    // a counter statement runs only on a match, so it costs nothing on the rules a packet passes
    if (this.mode === 'netdev-rules') return rules.prefixes.map((p) => `${sel} ${p} counter name dropped drop`);
    return [`${sel} @b${rules.family} counter name dropped drop`];
  }

  private elements(rules: RuleSet): string[] {
    if (this.mode === 'netdev-rules' || rules.prefixes.length === 0) return [];
    const out: string[] = [];
    for (let i = 0; i < rules.prefixes.length; i += 5000) {
      out.push(`add element ${this.family} pt_bench b${rules.family} { ${rules.prefixes.slice(i, i + 5000).join(', ')} }`);
    }
    return out;
  }

  private script(rules: RuleSet, fresh: boolean): string {
    const f = this.family;
    const lines: string[] = [];
    if (fresh) {
      lines.push(`table ${f} pt_bench {`);
      lines.push('  counter dropped { }');
      lines.push('  set b4 { type ipv4_addr; flags interval; }');
      lines.push('  set b6 { type ipv6_addr; flags interval; }');
      for (const c of this.chains()) {
        lines.push(`  chain ${c} {`, `    ${this.hook(c)}`);
        if (this.mode === 'inet-ct') lines.push('    ct state established,related accept');
        lines.push('  }');
      }
      lines.push('}');
    } else {
      for (const c of this.chains()) lines.push(`flush chain ${f} pt_bench ${c}`);
      lines.push(`flush set ${f} pt_bench b4`, `flush set ${f} pt_bench b6`);
      if (this.mode === 'inet-ct') for (const c of this.chains()) lines.push(`add rule ${f} pt_bench ${c} ct state established,related accept`);
    }
    lines.push(...this.elements(rules));
    for (const c of this.chains()) for (const s of this.statements(rules)) lines.push(`add rule ${f} pt_bench ${c} ${s}`);
    return lines.join('\n') + '\n';
  }

  private async apply(script: string): Promise<number> {
    const file = path.join(this.dir, 'ruleset.nft');
    await writeFile(file, script);
    const t0 = performance.now();
    const r = await this.ctx.receiver.exec('nft', ['-f', file], { reject: false });
    const s = (performance.now() - t0) / 1000;
    if (r.exitCode !== 0) throw new Error(`nft -f in ${this.ctx.receiver.name} (${this.id}) failed: ${String(r.stderr).split('\n').slice(0, 5).join(' | ')}`);
    return s;
  }

  async install(rules: RuleSet): Promise<number> {
    await this.remove();
    this.size = rules.prefixes.length;
    const s = await this.apply(this.script(rules, true));
    this.installed = true;
    return s;
  }

  async swap(rules: RuleSet): Promise<number> {
    if (!this.installed) return this.install(rules);
    this.size = rules.prefixes.length;
    return this.apply(this.script(rules, false));
  }

  async beforeRun(): Promise<void> {
    // unreplied UDP entries live 30 s: every run starts from an empty table
    if (this.mode === 'inet-ct') await this.ctx.receiver.exec('conntrack', ['-F'], { reject: false });
  }

  async drops(): Promise<number> {
    // nft reads the whole table into its cache to list one counter: seconds at 100k
    // entries, so above 10k the receiver's own books stand alone
    if (this.size > 10_000) return NaN;
    const { stdout } = await this.ctx.receiver.exec('nft', ['-j', 'list', 'counter', this.family, 'pt_bench', 'dropped']);
    const j = JSON.parse(stdout) as { nftables: { counter?: { packets: number } }[] };
    return j.nftables.find((x) => x.counter)?.counter?.packets ?? NaN;
  }

  async remove(): Promise<void> {
    await this.ctx.receiver.exec('nft', ['delete', 'table', this.family, 'pt_bench'], { reject: false });
    this.installed = false;
  }

  async close(): Promise<void> {
    await this.remove();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Debian xdp-tools' xdp-filter, driven through its CLI as an operator would.
 * It matches exact addresses (hash maps), not prefixes: a /24 of the rule set
 * becomes its 254 host addresses (the ones the workload's frames come from),
 * so only small IPv4 rule sets fit (its address map holds 10000 entries).
 * Loaded with the smallest feature variant that covers the rule set (-f ipv4),
 * through libxdp's dispatcher, in native mode. Maps are pinned by libxdp under
 * /sys/fs/bpf/xdp-filter (one instance per machine), so nsenter (network
 * namespace only) instead of ip netns exec.
 */
export class XdpFilterPath implements FilterPath {
  readonly id = 'xdp-filter';
  readonly label = 'XDP, Debian xdp-filter (-f ipv4, exact addresses)';
  static readonly MAX_PREFIXES = 39; // 39 * 254 host addresses < 10000 map entries
  private loaded = false;
  private addresses = new Set<string>();

  private constructor(
    private readonly ctx: PathContext,
    private readonly dir: string,
  ) {}

  static async create(ctx: PathContext): Promise<XdpFilterPath | string> {
    // `xdp-filter status` runs without an interface; only a missing binary fails to spawn
    const r = await execa('xdp-filter', ['status'], { reject: false });
    if (r.failed && r.exitCode === undefined) return `xdp-filter not runnable (${r.message}); install Debian xdp-tools`;
    return new XdpFilterPath(ctx, await mkdtemp(path.join(tmpdir(), 'pt-bench-xf-')));
  }

  unsupported(rules: RuleSet): string | undefined {
    if (rules.family !== 4) return 'xdp-filter matches exact addresses; the IPv6 workload draws sources from whole /48s';
    if (rules.prefixes.length > XdpFilterPath.MAX_PREFIXES) return `more than ${XdpFilterPath.MAX_PREFIXES} /24s do not fit its 10000-entry address map`;
    if (rules.prefixes.some((p) => !p.endsWith('/24') && !p.endsWith('/0'))) return 'only /24 rule sets are expanded to addresses';
    return undefined;
  }

  private async run(args: string[]): Promise<void> {
    const r = await this.ctx.receiver.nsenter('xdp-filter', args, { reject: false });
    if (r.exitCode !== 0) throw new Error(`xdp-filter ${args.join(' ')} in ${this.ctx.receiver.name} failed: ${String(r.stderr).split('\n').slice(0, 3).join(' | ')}`);
  }

  async install(rules: RuleSet): Promise<number> {
    const why = this.unsupported(rules);
    if (why) throw new Error(`xdp-filter: ${why}`);
    await this.remove();
    const t0 = performance.now();
    // drop-everything (the generator-limit runs) is the deny policy with no entries
    const all = rules.prefixes.some((p) => p.endsWith('/0'));
    await this.run(['load', '-m', 'native', '-f', 'ipv4', '-p', all ? 'deny' : 'allow', this.ctx.dev]);
    this.loaded = true;
    if (!all) {
      for (const p of rules.prefixes) {
        const [a, b, c] = p.split('.').map(Number) as [number, number, number];
        for (let h = 1; h <= 254; h++) {
          const addr = `${a}.${b}.${c}.${h}`;
          await this.run(['ip', '-m', 'src', addr]);
          this.addresses.add(addr);
        }
      }
    }
    return (performance.now() - t0) / 1000;
  }

  /**
   * One rule on the destination address (every frame of the workload goes there): xdp-filter's one-lookup case,
   * with the -f ipv4 variant, or (features undefined) with its default feature set, what `xdp-filter load DEV` gives.
   */
  async installDestination(address: string, features: string | undefined = 'ipv4'): Promise<number> {
    await this.remove();
    const t0 = performance.now();
    await this.run(['load', '-m', 'native', ...(features ? ['-f', features] : []), '-p', 'allow', this.ctx.dev]);
    this.loaded = true;
    await this.run(['ip', '-m', 'dst', address]);
    this.addresses.add(address);
    return (performance.now() - t0) / 1000;
  }

  /** Not hitless: reloads with the new addresses. */
  swap(rules: RuleSet): Promise<number> {
    return this.install(rules);
  }

  async classifierNs(frame: Buffer, repeat: number): Promise<number> {
    const { stdout } = await execa('ip', ['-n', this.ctx.receiver.name, '-j', '-d', 'link', 'show', 'dev', this.ctx.dev]);
    const id = (JSON.parse(stdout) as { xdp?: { prog?: { id: number } } }[])[0]?.xdp?.prog?.id;
    if (!id) throw new Error(`xdp-filter: no XDP program on ${this.ctx.dev} in ${this.ctx.receiver.name}`);
    const file = path.join(this.dir, 'frame');
    await writeFile(file, frame);
    // the attached program is libxdp's dispatcher: what live packets run too
    const r = await execa('bpftool', ['prog', 'run', 'id', String(id), 'data_in', file, 'repeat', String(repeat)]);
    const m = /duration \(average\): (\d+)ns/.exec(r.stdout + r.stderr);
    if (!m) throw new Error(`bpftool prog run id ${id}: unexpected output: ${r.stdout} ${r.stderr}`);
    return Number(m[1]);
  }

  async remove(): Promise<void> {
    if (!this.loaded) return;
    await this.run(['unload', this.ctx.dev]);
    this.loaded = false;
    this.addresses.clear();
  }

  async close(): Promise<void> {
    await this.remove().catch((e) => console.error(`# xdp-filter unload: ${(e as Error).message}`));
    await rm(this.dir, { recursive: true, force: true });
  }
}
