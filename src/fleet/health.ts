/**
 * The health check a node runs after it applied a fleet revision under
 * commit-confirm, before it confirms: the drift check (the kernel and the
 * daemons run what the revision says) and the document's `health.probes`
 * (ping, TCP connect, DNS lookup) from inside the node's namespace. A
 * failing check is retried (`health.attempts`, 1 s apart) before the
 * revision is given up.
 */
import { fileURLToPath } from 'node:url';
import type { Host } from '../system/host.js';
import { healthSchema, type HealthConfig, type Probe } from './schema.js';

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

const TCP_PROBE = fileURLToPath(new URL('./probe-tcp-once.js', import.meta.url));

/** The `health` section of a document (defaults when it has none or it does not parse). */
export function healthOf(document: unknown): HealthConfig {
  const raw = document && typeof document === 'object' ? (document as { health?: unknown }).health : undefined;
  const parsed = healthSchema.safeParse(raw);
  return parsed.success ? parsed.data : healthSchema.parse(undefined);
}

/** Runs one probe once in the host's namespace. */
export async function runProbe(host: Host, p: Probe): Promise<CheckResult> {
  const ms = Math.round(p.timeoutSeconds * 1000);
  if (p.type === 'ping') {
    const r = await host.run('ping', ['-n', '-c', '1', '-W', String(Math.max(1, Math.ceil(p.timeoutSeconds))), p.target], { reject: false, timeout: ms + 2000 });
    return { name: p.name, ok: r.exitCode === 0, detail: r.exitCode === 0 ? `ping ${p.target}: answered` : `ping ${p.target}: no answer${r.stderr.trim() ? ` (${r.stderr.trim()})` : ''}` };
  }
  if (p.type === 'tcp') {
    const r = await host.run(process.execPath, [TCP_PROBE, p.target, String(p.port), String(ms)], { reject: false, timeout: ms + 5000 });
    return { name: p.name, ok: r.exitCode === 0, detail: r.exitCode === 0 ? `tcp ${p.target}:${p.port}: connected` : `tcp ${p.target}:${p.port}: ${r.stderr.trim() || `exit ${r.exitCode}`}` };
  }
  const r = await host.run('dig', ['+short', `+time=${Math.max(1, Math.ceil(p.timeoutSeconds))}`, '+tries=1', `@${p.server}`, p.query, 'A'], { reject: false, timeout: ms + 3000 });
  const answers = r.stdout.split('\n').map((l) => l.trim()).filter((l) => /^[0-9.]+$/.test(l));
  const ok = r.exitCode === 0 && (p.expect ? answers.includes(p.expect) : answers.length > 0);
  const what = `dns ${p.query} @${p.server}`;
  return { name: p.name, ok, detail: ok ? `${what}: ${answers.join(', ')}` : r.exitCode !== 0 ? `${what}: ${(r.stdout + r.stderr).trim().split('\n')[0] || `dig exit ${r.exitCode}`}` : `${what}: answered [${answers.join(', ')}], expected ${p.expect ?? 'an address'}` };
}

/**
 * Drift check plus every probe, each retried up to `attempts` times.
 * `drift` reports what differs from the revision ('' when nothing).
 */
export async function healthCheck(opts: { host?: Host; health: HealthConfig; drift: () => Promise<string>; sleep?: (ms: number) => Promise<void> }): Promise<{ ok: boolean; checks: CheckResult[] }> {
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const { health } = opts;
  if (health.settleSeconds > 0) await sleep(health.settleSeconds * 1000);
  const checks: CheckResult[] = [];
  const attempt = async (run: () => Promise<CheckResult>) => {
    let last: CheckResult | undefined;
    for (let i = 0; i < health.attempts; i++) {
      if (i) await sleep(1000);
      last = await run();
      if (last.ok) break;
    }
    checks.push(last!);
  };
  await attempt(async () => {
    const d = await opts.drift();
    return { name: 'drift', ok: !d, detail: d ? `drift: ${d}` : 'no drift from the revision' };
  });
  for (const p of health.probes) {
    if (!opts.host) {
      checks.push({ name: p.name, ok: false, detail: 'no host to run the probe in' });
      continue;
    }
    await attempt(() => runProbe(opts.host!, p));
  }
  return { ok: checks.every((c) => c.ok), checks };
}
