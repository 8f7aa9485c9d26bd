/**
 * A plan as a person reads it (like `terraform plan`): per subsystem, one
 * line per change, then a summary line.
 */
import type { Change } from './subsystem.js';
import type { Plan } from './engine.js';

const SIGN: Record<Change['action'], string> = { add: '+', remove: '-', change: '~', reload: '↻', restart: '↻', start: '▶', stop: '■' };

export function formatPlan(plan: Plan): string {
  const lines: string[] = [];
  for (const p of plan.subsystems) {
    if (!p.changes.length) continue;
    lines.push(`${p.subsystem}:`);
    for (const c of p.changes) lines.push(`  ${SIGN[c.action]} ${c.action === 'add' || c.action === 'remove' || c.action === 'change' ? '' : `${c.action} `}${c.object}${c.detail ? `  (${c.detail})` : ''}`);
  }
  const s = plan.summary;
  const empty = plan.removesEverything ? 'The document is empty: applying it removes everything Patronus manages (XDP programs, nftables tables, daemons, addresses).\n' : '';
  if (!lines.length) return `${empty}No changes: the running system matches the configuration.`;
  const parts = [`${s.add} to add`, `${s.change} to change`, `${s.remove} to remove`];
  const restarts = s.reload + s.restart + s.start + s.stop;
  if (restarts) parts.push(`${restarts} service action${restarts === 1 ? '' : 's'}`);
  lines.push('', `Plan: ${parts.join(', ')}.`);
  return empty + lines.join('\n');
}
