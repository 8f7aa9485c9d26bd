/**
 * The foreground server: loads the fast path, serves /healthz and /metrics,
 * shuts down cleanly on SIGINT/SIGTERM (the data plane stays attached).
 */
import Fastify from 'fastify';
import { Registry, collectDefaultMetrics, Counter } from 'prom-client';
import { BpfObject, PerCpuMap, BpfProgram, codecs, sumPerCpu, inNetns, probes } from '../bpf/index.js';
import { ensureLab, LAB_DEV, LAB_NS } from '../lab/lab.js';
import { execa } from 'execa';

const STATS_CLASSES = ['ipv4', 'ipv6', 'non_ip', 'malformed', 'tcp', 'udp', 'icmp', 'other_l4', 'fragment', 'vlan'];
const datarec = codecs.struct({ packets: codecs.u64, bytes: codecs.u64 });

export async function serve(opts: { listen: string; lab: boolean }): Promise<void> {
  const [host, portText] = splitHostPort(opts.listen);
  probes.requireFastPathFeatures();

  let stats: PerCpuMap<number, { packets: bigint; bytes: bigint }> | undefined;
  let prog: BpfProgram | undefined;
  if (opts.lab) {
    await ensureLab();
    const obj = BpfObject.open('xdp_stats');
    await obj.load();
    prog = obj.program('xdp_stats');
    stats = obj.perCpuMap('stats', codecs.u32, datarec);
    obj.close();
    const { stdout } = await execa('ip', ['-n', LAB_NS, '-j', 'link', 'show', 'dev', LAB_DEV]);
    const ifindex = (JSON.parse(stdout) as { ifindex: number }[])[0]!.ifindex;
    const p = prog;
    const mode = inNetns(LAB_NS, () => p.attachXdp(ifindex, { mode: 'auto', replace: true }));
    console.log(`patronus: xdp_stats attached to ${LAB_DEV} in netns ${LAB_NS} (${mode} mode)`);
  }

  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'patronus_process_' });
  const s = stats;
  if (s) {
    // read from the per-CPU map at scrape time, never cached
    const read = (field: 'packets' | 'bytes') =>
      function (this: Counter<'class'>) {
        this.reset();
        STATS_CLASSES.forEach((c, i) => this.inc({ class: c }, Number(sumPerCpu(s.get(i)!)[field])));
      };
    new Counter({ name: 'patronus_fastpath_class_packets_total', help: 'Frames seen by the fast path, by parse class', labelNames: ['class'], registers: [registry], collect: read('packets') });
    new Counter({ name: 'patronus_fastpath_class_bytes_total', help: 'Bytes seen by the fast path, by parse class', labelNames: ['class'], registers: [registry], collect: read('bytes') });
  }

  const app = Fastify({ logger: false, bodyLimit: 1 << 20 });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/metrics', async (_req, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
  const close = async () => {
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', close);
  process.once('SIGTERM', close);
  await app.listen({ host, port: Number(portText) });
  console.log(`patronus: listening on http://${opts.listen} (/healthz, /metrics)`);
}

function splitHostPort(s: string): [string, string] {
  const i = s.lastIndexOf(':');
  if (i < 0) throw new Error(`--listen: "${s}" is not host:port`);
  return [s.slice(0, i).replace(/^\[|\]$/g, ''), s.slice(i + 1)];
}
