/**
 * ha: section -> keepalived model (compile, pure, with path-qualified
 * issues) -> keepalived.conf and the notify script (render, pure).
 */
import type { Issue } from '../../config/issues.js';
import type { KeepalivedConfig, TrackScript, VrrpInstance } from './schema.js';
import { familyOf, withHostLength } from '../../net/address.js';

export interface KeepalivedModel {
  nodeName?: string;
  role: 'primary' | 'secondary';
  /** instances with the priority this node uses */
  instances: (VrrpInstance & { effectivePriority: number })[];
  scripts: TrackScript[];
  groups: { name: string; instances: string[] }[];
  /** conntrackd replicates connection state (ha.conntrackSync): the notify script drives its failover steps */
  conntrackSync: boolean;
}

export function compileKeepalived(ha: KeepalivedConfig): { model: KeepalivedModel | null; issues: Issue[] } {
  const issues: Issue[] = [];
  const at = (path: (string | number)[], message: string) => issues.push({ path: ['ha', ...path], message });

  const scriptNames = new Set<string>();
  ha.scripts.forEach((s, i) => {
    if (scriptNames.has(s.name)) at(['scripts', i, 'name'], `script "${s.name}" is defined twice`);
    scriptNames.add(s.name);
    if (!s.command[0]!.startsWith('/')) at(['scripts', i, 'command', 0], `"${s.command[0]}" must be an absolute path (keepalived does not search PATH)`);
  });

  const names = new Set<string>();
  const vrids = new Map<string, string>();
  ha.instances.forEach((inst, i) => {
    if (names.has(inst.name)) at(['instances', i, 'name'], `instance "${inst.name}" is defined twice`);
    names.add(inst.name);
    const key = `${inst.interface}/${inst.virtualRouterId}/${familyOf(inst.virtualAddresses[0] ?? '')}`;
    const other = vrids.get(key);
    if (other) at(['instances', i, 'virtualRouterId'], `VRID ${inst.virtualRouterId} is already used by instance "${other}" on ${inst.interface}`);
    vrids.set(key, inst.name);
    if (inst.backupPriority >= inst.priority) at(['instances', i, 'backupPriority'], `backupPriority (${inst.backupPriority}) must be lower than priority (${inst.priority})`);
    if (inst.version === 2 && !Number.isInteger(inst.advertInterval)) at(['instances', i, 'advertInterval'], 'VRRPv2 adverts are whole seconds (use version: 3 for sub-second adverts)');
    if (inst.version === 3 && Math.abs(inst.advertInterval * 100 - Math.round(inst.advertInterval * 100)) > 1e-9) at(['instances', i, 'advertInterval'], 'VRRPv3 adverts are multiples of 0.01 s');
    if (inst.version === 3 && inst.advertInterval > 40.95) at(['instances', i, 'advertInterval'], 'VRRPv3 adverts are at most 40.95 s');
    if (!inst.preempt && inst.preemptDelay) at(['instances', i, 'preemptDelay'], 'preemptDelay needs preempt: true');
    const fams = new Set(inst.virtualAddresses.map(familyOf));
    if (fams.size > 1) at(['instances', i, 'virtualAddresses'], 'one instance carries addresses of one family (make a second instance for IPv6)');
    if (fams.has(6) && inst.version === 2) at(['instances', i, 'version'], 'IPv6 virtual addresses need VRRP version 3');
    inst.trackScripts.forEach((s, j) => {
      if (!scriptNames.has(s)) at(['instances', i, 'trackScripts', j], `no script named "${s}" (ha.scripts)`);
    });
  });
  const grouped = new Map<string, string>();
  ha.groups.forEach((g, i) => {
    g.instances.forEach((n, j) => {
      if (!names.has(n)) at(['groups', i, 'instances', j], `no instance named "${n}" (ha.instances)`);
      const other = grouped.get(n);
      if (other) at(['groups', i, 'instances', j], `instance "${n}" is already in group "${other}"`);
      grouped.set(n, g.name);
    });
  });

  // keepalived ignores weights inside a sync group (the group fails over as one): say so instead
  const scriptWeight = new Map(ha.scripts.map((s) => [s.name, s.weight]));
  ha.instances.forEach((inst, i) => {
    const group = grouped.get(inst.name);
    if (!group) return;
    inst.trackScripts.forEach((s, j) => {
      if (scriptWeight.get(s)) at(['instances', i, 'trackScripts', j], `script "${s}" has a weight, but instance "${inst.name}" is in group "${group}", where keepalived ignores weights (use weight 0: a failure puts the whole group in FAULT)`);
    });
    inst.trackInterfaces.forEach((t, j) => {
      if (t.weight) at(['instances', i, 'trackInterfaces', j, 'weight'], `instance "${inst.name}" is in group "${group}", where keepalived ignores weights (leave the weight out: a down interface puts the whole group in FAULT)`);
    });
  });

  if (issues.length) return { model: null, issues };
  if (!ha.enabled || !ha.instances.length) return { model: null, issues };
  return {
    model: {
      ...(ha.nodeName ? { nodeName: ha.nodeName } : {}),
      role: ha.role,
      instances: ha.instances.map((i) => ({ ...i, effectivePriority: ha.role === 'primary' ? i.priority : i.backupPriority })),
      scripts: ha.scripts,
      groups: ha.groups,
      conntrackSync: !!ha.conntrackSync?.enabled,
    },
    issues,
  };
}

/** keepalived.conf. Every instance starts BACKUP: the election, not the file, decides who is master. */
export function renderKeepalivedConf(model: KeepalivedModel, notifyScript: string): string {
  const out: string[] = ['# generated by Patronus from the ha: section; edits are overwritten', 'global_defs {'];
  if (model.nodeName) out.push(`  router_id ${model.nodeName}`);
  // scripts run as root: the notify script and tracked scripts are Patronus' or the operator's own
  out.push('  script_user root', '  enable_script_security', '  vrrp_garp_master_repeat 3', '  vrrp_garp_master_refresh 60', '}', '');
  for (const s of model.scripts) {
    out.push(`vrrp_script ${s.name} {`, `  script "${s.command.join(' ')}"`, `  interval ${s.interval}`);
    if (s.timeout !== undefined) out.push(`  timeout ${s.timeout}`);
    out.push(`  rise ${s.rise}`, `  fall ${s.fall}`);
    if (s.weight) out.push(`  weight ${s.weight}`);
    out.push('}', '');
  }
  for (const g of model.groups) {
    out.push(`vrrp_sync_group ${g.name} {`, '  group {', ...g.instances.map((n) => `    ${n}`), '  }', `  notify ${quote(notifyScript)}`, '}', '');
  }
  for (const i of model.instances) {
    out.push(`vrrp_instance ${i.name} {`, '  state BACKUP', `  interface ${i.interface}`, `  virtual_router_id ${i.virtualRouterId}`, `  priority ${i.effectivePriority}`);
    out.push(`  version ${i.version}`, `  advert_int ${formatInterval(i.advertInterval)}`);
    if (!i.preempt) out.push('  nopreempt');
    else if (i.preemptDelay) out.push(`  preempt_delay ${i.preemptDelay}`);
    out.push(`  garp_master_delay ${i.garpMasterDelay}`);
    out.push('  virtual_ipaddress {', ...i.virtualAddresses.map((a) => `    ${withHostLength(a)} dev ${i.interface}`), '  }');
    if (i.trackInterfaces.length) {
      out.push('  track_interface {', ...i.trackInterfaces.map((t) => `    ${t.name}${t.weight !== undefined ? ` weight ${t.weight}` : ''}`), '  }');
    }
    if (i.trackScripts.length) out.push('  track_script {', ...i.trackScripts.map((s) => `    ${s}`), '  }');
    out.push(`  notify ${quote(notifyScript)}`, '}', '');
  }
  return out.join('\n');
}

/**
 * keepalived runs this on every transition with: INSTANCE|GROUP name
 * MASTER|BACKUP|FAULT|STOP priority. It appends one line to the event log
 * and replaces the instance's state file (atomically, by rename), which is
 * what status() and the event watcher read. No input from the document ends
 * up here but paths, single-quoted.
 */
export function renderNotifyScript(stateDir: string, conntrackd?: { conf: string; groupedInstances: readonly string[] }): string {
  const dir = shellQuote(stateDir);
  const out = [
    '#!/bin/sh',
    '# generated by Patronus: records keepalived state transitions',
    `dir=${dir}`,
    'ts=$(date +%s.%N)',
    'mkdir -p "$dir"',
    // the state first, then the event: whoever sees the event (watchHaEvents, a test, an operator's tail)
    // and then reads status() finds the new state, not the one before it
    'case "$1" in INSTANCE) printf \'%s %s %s\\n\' "$3" "$ts" "$4" > "$dir/state.$2.tmp" && mv -f "$dir/state.$2.tmp" "$dir/state.$2" ;; esac',
    'printf \'%s %s %s %s %s\\n\' "$ts" "$1" "$2" "$3" "$4" >> "$dir/events.log"',
  ];
  if (conntrackd) {
    // conntrackd's failover steps (its primary-backup.sh): once per sync group, or per instance outside groups
    out.push(
      'PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH',
      `ctd_conf=${shellQuote(conntrackd.conf)}`,
      `grouped=${shellQuote(` ${conntrackd.groupedInstances.join(' ')} `)}`,
      'ctd() { conntrackd -C "$ctd_conf" "$@" >> "$dir/conntrackd.log" 2>&1 || echo "$ts conntrackd $* failed" >> "$dir/conntrackd.log"; }',
      'ctd_state() {',
      '  case "$1" in',
      // commit the peer's connections into the kernel, flush both caches, resync ours from the kernel, send them
      '    MASTER) ctd -c; ctd -f; ctd -R; ctd -B ;;',
      // ask the master for its table; purge kernel entries this node no longer forwards after PurgeTimeout
      '    BACKUP) ctd -n; ctd -t ;;',
      '    FAULT) ctd -t ;;',
      '  esac',
      '}',
      'case "$1" in',
      '  GROUP) ctd_state "$3" ;;',
      '  INSTANCE) case "$grouped" in *" $2 "*) ;; *) ctd_state "$3" ;; esac ;;',
      'esac',
    );
  }
  out.push('');
  return out.join('\n');
}

function formatInterval(s: number): string {
  return Number.isInteger(s) ? String(s) : s.toFixed(2).replace(/0$/, '');
}


function quote(p: string): string {
  return `"${p.replace(/(["\\])/g, '\\$1')}"`;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`;
}
