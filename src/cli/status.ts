/**
 * `patronus status` as text: the engine's revisions, the drift check, and
 * per subsystem what runs (fast-path interfaces with modes and program ids,
 * map fill, the nft table, daemons with pids and uptime). Reads the JSON the
 * REST API serves (/api/v1/status and /api/v1/services), so --direct and
 * REST print the same.
 */
import type { DriftReport } from '../drift/monitor.js';
import type { ServiceRow } from './client.js';
import { table, count } from './table.js';

export interface StatusJson {
  committed: { id: number; author: string; message: string; createdAt: string } | null;
  running: number | null;
  pendingConfirmation: { id: number; deadline?: string } | null;
  reconcile: { at: string; ok: boolean; error?: string } | null;
  subsystems: string[];
  drift?: DriftReport;
}

export function statusText(s: StatusJson, services: ServiceRow[]): string {
  const d = s.drift;
  const head = table(
    ['', ''],
    [
      ['committed', s.committed ? `revision ${s.committed.id} by ${s.committed.author} at ${s.committed.createdAt}: ${s.committed.message}` : 'none'],
      ['running', s.running !== null ? `revision ${s.running}${d?.state === 'ok' ? ' (verified)' : ''}` : d?.state === 'drift' ? `not revision ${d.revision}: the system differs (see drift)` : 'unknown'],
      ['pending confirmation', s.pendingConfirmation ? `revision ${s.pendingConfirmation.id} until ${s.pendingConfirmation.deadline}` : 'no'],
      ['reconcile at start', s.reconcile ? (s.reconcile.ok ? `ok (${s.reconcile.at})` : `FAILED: ${s.reconcile.error}`) : '-'],
      ['drift', d ? driftLine(d) : '-'],
    ],
    { header: false },
  );
  const parts = [head];
  if (d?.items.length) parts.push('', table(['subsystem', 'object', 'drift'], d.items.map((i) => [i.subsystem, i.object, i.reason.length > 160 ? `${i.reason.slice(0, 157)}...` : i.reason])));
  const rows: string[][] = [];
  for (const x of services) {
    if (x.error) {
      rows.push([x.subsystem, `cannot read status: ${x.error}`]);
      continue;
    }
    const line = describe(x.subsystem, x.status as Record<string, any>);
    if (line) rows.push([x.subsystem, line]);
  }
  if (rows.length) parts.push('', table(['subsystem', 'running'], rows));
  const fp = services.find((x) => x.subsystem === 'fastpath')?.status as FastpathStatus | undefined;
  if (fp?.running) {
    parts.push(
      '',
      table(
        ['interface', 'ifindex', 'xdp', 'mode', 'ingress default', 'tc egress'],
        fp.interfaces.map((i) => [i.name ?? '(gone)', String(i.ifindex), i.ingress.attached ? `id ${fp.xdpProgramId}` : 'NOT ATTACHED', i.ingress.xdpMode, i.ingress.defaultPolicy, i.egress.enabled ? (i.egress.attached ? `id ${fp.tcProgramId}, default ${i.egress.defaultPolicy}` : 'NOT ATTACHED') : '-']),
      ),
      '',
      table(['map', 'entries', 'capacity', 'fill'], fp.occupancy.map((o) => [o.map, count(o.entries), count(o.capacity), `${o.capacity ? ((100 * o.entries) / o.capacity).toFixed(1) : '0.0'} %`]), { right: [1, 2, 3] }),
    );
  }
  return parts.join('\n');
}

interface FastpathStatus {
  running: boolean;
  xdpProgramId: number;
  tcProgramId: number;
  generation: number;
  interfaces: { ifindex: number; name: string | null; ingress: { defaultPolicy: string; xdpMode: string; attached: boolean }; egress: { enabled: boolean; defaultPolicy: string; attached: boolean } }[];
  rules: unknown[];
  occupancy: { map: string; entries: number; capacity: number }[];
}

function driftLine(d: DriftReport): string {
  const when = `checked ${d.checkedAt}, reconcile ${d.mode}`;
  if (d.state === 'drift') return `${d.items.length} object(s) differ from revision ${d.revision} (${when})`;
  if (d.state === 'ok') return d.revision === null ? 'nothing committed' : `none: the system runs revision ${d.revision} (${when})`;
  return `${d.state} (${when})`;
}

/** One line per subsystem: what runs. */
function describe(name: string, s: Record<string, any> | undefined): string | undefined {
  if (!s) return undefined;
  if (name === 'fastpath') return s.running ? `xdp_filter id ${s.xdpProgramId}, tc_filter id ${s.tcProgramId}, generation ${s.generation}, ${s.interfaces.length} interface(s), ${s.rules.length} rule(s), ${s.blocked?.length ?? 0} blocked` : 'not loaded';
  if (name === 'nftables') return s.present ? `table ${s.table}: ${s.rules} rule(s)` : `table ${s.table} absent`;
  // multi-WAN: each gateway's health (the monitor runs in `patronus serve`; a one-shot --direct run has none)
  if (name === 'gateways' && Array.isArray(s.gateways)) {
    return s.gateways
      .map((g: { gateway: string; state: string; lossPercent: number; rttMs: number | null; detectionMs: number }) => `${g.gateway} ${g.state === 'up' ? 'up' : 'DOWN'} (loss ${g.lossPercent.toFixed(0)} %, rtt ${g.rttMs === null ? '-' : `${g.rttMs.toFixed(1)} ms`}, detection <= ${g.detectionMs} ms)`)
      .join('; ');
  }
  if (name === 'interfaces' && Array.isArray(s)) return s.filter((l) => l.name !== 'lo').map((l) => `${l.name}${l.up ? '' : ' (down)'} ${l.addresses.join(' ')}`.trim()).join('; ');
  if (typeof s.running === 'boolean') {
    if (!s.running) return s.configured ? 'NOT RUNNING' : undefined;
    return `running${s.pid ? `, pid ${s.pid}` : ''}${s.uptimeSeconds !== undefined ? `, up ${uptime(s.uptimeSeconds)}` : ''}`;
  }
  return undefined;
}

function uptime(sec: number): string {
  if (sec < 120) return `${Math.round(sec)} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  if (sec < 172800) return `${(sec / 3600).toFixed(1)} h`;
  return `${(sec / 86400).toFixed(1)} d`;
}
