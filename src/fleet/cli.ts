/**
 * `patronus fleet ...` (talks to etcd directly: --fleet or $PATRONUS_FLEET)
 * and the --fleet-* flags of `patronus serve`.
 */
import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
// light imports only: the CLI starts fast for every other command; etcd's client, the engine (central
// validation), YAML and git load when a fleet command runs
import type { Etcd3 } from 'etcd3';
import { readRegularFile } from '../config/input.js';
import { ConfigError } from '../config/issues.js';
import { table } from '../cli/table.js';
import type { FleetConnection } from './connect.js';
import { FleetError, rolloutOptions, type FleetController, type NodeRow } from './controller.js';
import { GITOPS_POLICIES, type GitopsPolicy, type RolloutRecord } from './model.js';
import type { FleetServeOptions } from './serve.js';

type Out = (value: unknown, human: () => string) => void;

interface ConnFlags {
  fleet?: string;
  fleetCa?: string;
  fleetCert?: string;
  fleetKey?: string;
  fleetUser?: string;
  fleetPasswordFile?: string;
  fleetPrefix?: string;
}

function connectionOptions(cmd: Command): Command {
  return cmd
    .option('--fleet <url>', 'etcd endpoints: etcd://host:port[,host:port...] (etcds:// for TLS); default $PATRONUS_FLEET')
    .option('--fleet-ca <file>', 'CA certificate of the etcd servers (TLS)')
    .option('--fleet-cert <file>', 'client certificate for etcd (mutual TLS)')
    .option('--fleet-key <file>', 'key of --fleet-cert')
    .option('--fleet-user <name>', 'etcd user (password from --fleet-password-file or $PATRONUS_FLEET_PASSWORD)')
    .option('--fleet-password-file <file>', 'file holding the etcd password')
    .option('--fleet-prefix <prefix>', 'key prefix in etcd', '/patronus/');
}

function connection(o: ConnFlags): FleetConnection {
  const url = o.fleet ?? process.env.PATRONUS_FLEET;
  if (!url) throw new FleetError('no fleet given: --fleet etcd://host:port,... or $PATRONUS_FLEET', 'invalid');
  return {
    url,
    ...(o.fleetCa ? { ca: o.fleetCa } : {}),
    ...(o.fleetCert ? { cert: o.fleetCert } : {}),
    ...(o.fleetKey ? { key: o.fleetKey } : {}),
    ...(o.fleetUser ? { user: o.fleetUser } : {}),
    ...(o.fleetPasswordFile ? { passwordFile: o.fleetPasswordFile } : {}),
    ...(o.fleetPrefix ? { prefix: o.fleetPrefix.endsWith('/') ? o.fleetPrefix : `${o.fleetPrefix}/` } : {}),
  };
}

/** Runs fn with a controller; etcd failures become one clear sentence naming the cluster. */
async function withController<T>(o: ConnFlags, fn: (c: FleetController, client: Etcd3) => Promise<T>): Promise<T> {
  const conn = connection(o);
  const [{ etcdClient, describeFleet }, { FleetController }, { FleetKeys }, { centralValidator }, { domains }] = await Promise.all([import('./connect.js'), import('./controller.js'), import('./model.js'), import('./validate.js'), import('../domains.js')]);
  const client = etcdClient(conn);
  try {
    return await fn(new FleetController(client, centralValidator(domains), { keys: new FleetKeys(conn.prefix) }), client);
  } catch (e) {
    const err = e as Error & { code?: string };
    if (e instanceof FleetError || e instanceof ConfigError) throw e;
    if (/Unavailable|DEADLINE|Deadline|ECONNREFUSED|No connection|connect/i.test(`${err.name} ${err.message}`)) throw new FleetError(`fleet: ${describeFleet(conn.url)} unreachable: ${err.message.replace(/\s*Resolution note:\s*$/, '')}`, 'failed');
    throw e;
  } finally {
    client.close();
  }
}

async function readDocument(file: string): Promise<unknown> {
  const { parseConfigText } = await import('../config/load.js');
  let text: string;
  try {
    text = file === '-' ? readFileSync(0, 'utf8') : readRegularFile(file);
  } catch (e) {
    throw new ConfigError([{ path: [], message: `cannot read ${file}: ${(e as Error).message}` }]);
  }
  const parsed = parseConfigText(text, undefined);
  if (parsed.issues.length) throw new ConfigError(parsed.issues);
  return parsed.value;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`"${v}" is not a positive number of seconds`);
  return n;
}

function wholeNumber(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`"${v}" is not a whole number`);
  return Number(v);
}

export function rolloutText(r: RolloutRecord): string {
  const lines = [`rollout ${r.id} to group ${r.group}: ${r.state}${r.reason ? ` (${r.reason})` : ''}`];
  if (r.git) lines.push(`git commit ${r.git.commit}${r.git.repo ? ` of ${r.git.repo}` : ''}`);
  if (r.waves.length)
    lines.push(
      table(
        ['wave', 'state', 'nodes'],
        r.waves.map((w, i) => [String(i + 1), w.state, w.nodes.map((n) => `${n}${w.results?.[n] ? ` ${w.results[n]!.state}${w.results[n]!.error ? `: ${w.results[n]!.error}` : ''}` : ''}`).join('; ')]),
      ),
    );
  lines.push('history:', ...r.history.map((h) => `  ${h.at.replace('T', ' ').slice(0, 19)} ${h.event}`));
  return lines.join('\n');
}

function nodesText(rows: NodeRow[]): string {
  if (!rows.length) return 'no fleet members';
  return table(
    ['node', 'group', 'online', 'revision', 'rollout', 'drift', 'last status', 'labels'],
    rows.map((r) => [
      r.node,
      r.group,
      r.online ? 'yes' : 'no',
      String(r.info?.revision ?? ''),
      r.info?.rollout ?? '',
      r.info?.drift ?? '',
      r.status ? `${r.status.rollout} ${r.status.state}${r.status.error ? `: ${r.status.error}` : ''}` : '',
      Object.entries(r.info?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(','),
    ]),
  );
}

export function addFleetCommands(program: Command, out: Out): void {
  const fleet = program.command('fleet').description('many Patronus nodes from one source of truth in etcd: validate, roll out in waves, status, GitOps');

  connectionOptions(fleet.command('validate').argument('<file>', 'group base document').requiredOption('--group <group>', 'group whose members (with their overlays) to validate for').option('--node <node>', 'only this member of the group'))
    .description('validate a base document for every member of a group (or one), each with its overlay (nothing is published)')
    .action(async (file: string, o: ConnFlags & { group: string; node?: string }) => {
      const doc = await readDocument(file);
      await withController(o, async (c) => {
        const v = await c.validate(o.group, doc, o.node !== undefined ? { node: o.node } : {});
        if (!v.members.length) throw new FleetError(`group ${o.group} has no members`, 'invalid');
        if (v.problems.length) throw new ConfigError(v.problems.flatMap((p) => p.issues.map((i) => ({ ...i, path: [`node ${p.node}`, ...i.path] }))));
        out({ valid: true, members: v.members }, () => `${file}: valid for ${v.members.length} node(s) of group ${o.group}: ${v.members.join(', ')}`);
      });
    });

  connectionOptions(
    fleet
      .command('rollout')
      .argument('<file>', 'group base document')
      .requiredOption('--group <group>', 'group to roll out to')
      .option('--canary <n>', 'nodes in the first wave', wholeNumber, 1)
      .option('--waves <list>', 'cumulative shares after the canary, e.g. 25%,100%', '100%')
      .option('--confirm-within <seconds>', 'each node must apply, pass its health check and confirm within this time', seconds, 60)
      .option('-m, --message <text>', 'why (kept with each node revision)', ''),
  )
    .description('roll a base document out to a group: canary, then waves; halts and rolls back the failed nodes on the first failure')
    .action(async (file: string, o: ConnFlags & { group: string; canary: number; waves: string; confirmWithin: number; message: string }) => {
      const doc = await readDocument(file);
      await withController(o, async (c) => {
        const r = await c
          .rollout({ group: o.group, document: doc, canary: o.canary, waves: o.waves.split(',').map((s) => s.trim()), confirmWithin: o.confirmWithin, message: o.message, onEvent: (line, rec) => process.stderr.write(`${rec.id}: ${line}\n`) })
          .catch((e: unknown) => {
            if (e instanceof FleetError && e.record) return e.record;
            throw e;
          });
        out(r, () => rolloutText(r));
        if (r.state !== 'completed') process.exitCode = 1;
      });
    });

  connectionOptions(fleet.command('status'))
    .description('groups: members, online, converged, running rollouts')
    .action(async (o: ConnFlags) => {
      await withController(o, async (c) => {
        const s = await c.status();
        out(s, () => (s.groups.length ? table(['group', 'members', 'online', 'converged', 'running', 'base'], s.groups.map((g) => [g.group, String(g.members), String(g.online), String(g.converged), g.running ?? '', g.base ?? ''])) : 'no fleet members'));
      });
    });

  connectionOptions(fleet.command('nodes').option('--group <group>', 'only this group'))
    .description('members with their registration (online, revision, drift, labels) and last rollout status')
    .action(async (o: ConnFlags & { group?: string }) => {
      await withController(o, async (c) => {
        const rows = await c.nodes(o.group);
        out(rows, () => nodesText(rows));
      });
    });

  connectionOptions(fleet.command('rollouts').argument('[id]', 'show this rollout in full').option('-n, --limit <n>', 'how many', wholeNumber, 20))
    .description('rollout history, newest first (or one rollout: waves, per-node results, history)')
    .action(async (id: string | undefined, o: ConnFlags & { limit: number }) => {
      await withController(o, async (c) => {
        if (id) {
          const r = await c.record(id);
          out(r, () => rolloutText(r));
          return;
        }
        const list = await c.rollouts(o.limit);
        out(list, () => (list.length ? table(['id', 'group', 'state', 'created', 'git', 'reason'], list.map((r) => [r.id, r.group, r.state, r.createdAt.replace('T', ' ').slice(0, 19), r.git?.commit.slice(0, 12) ?? '', r.reason ?? r.message])) : 'no rollouts'));
      });
    });

  connectionOptions(fleet.command('abort').argument('<id>', 'rollout id'))
    .description('halt a running rollout: nodes of its running wave go back to their previous document')
    .action(async (id: string, o: ConnFlags) => {
      await withController(o, async (c) => {
        const r = await c.abort(id);
        out(r, () => rolloutText(r));
      });
    });

  const overlay = fleet.command('overlay').description("a node's overlay over its group's base (addresses, VRRP priority, ...)");
  connectionOptions(overlay.command('set').argument('<node>').argument('<file>', 'overlay document (YAML or JSON)').requiredOption('--group <group>').option('--force', 'store it without validating it over the group base (a rollout validates it again)', false))
    .description("set the overlay of a node: validated over the group's current base first (refused, nothing stored, when it breaks the document); every rollout validates it again")
    .action(async (node: string, file: string, o: ConnFlags & { group: string; force: boolean }) => {
      const doc = await readDocument(file);
      await withController(o, async (c) => {
        const r = await c.setOverlay(o.group, node, doc, { force: o.force });
        out({ group: o.group, node, overlay: doc, ...r }, () => `overlay of ${node} in group ${o.group} set${r.validatedWith ? ` (valid over the base of rollout ${r.validatedWith})` : o.force ? ' (not validated: --force)' : ' (the group has no base yet: validated at its first rollout)'}`);
      });
    });
  connectionOptions(overlay.command('get').argument('<node>').requiredOption('--group <group>'))
    .action(async (node: string, o: ConnFlags & { group: string }) => {
      await withController(o, async (c) => {
        const v = await c.overlay(o.group, node);
        out(v, () => JSON.stringify(v, null, 2));
      });
    });
  connectionOptions(overlay.command('rm').argument('<node>').requiredOption('--group <group>'))
    .action(async (node: string, o: ConnFlags & { group: string }) => {
      await withController(o, async (c) => {
        if (!(await c.removeOverlay(o.group, node))) throw new FleetError(`no overlay for ${node} in group ${o.group}`, 'not-found');
      });
    });

  connectionOptions(
    fleet
      .command('gitops')
      .requiredOption('--repo <path-or-url>', 'Git repository (a local path or any remote git can fetch)')
      .option('--branch <branch>', 'branch to follow', 'main')
      .option('--path <file>', 'document in the repository', 'patronus.yaml')
      .requiredOption('--group <group>', 'group to roll out to')
      .option('--policy <policy>', 'auto: roll out each valid commit; tag: only commits with a tag fleet/<anything>; approval: only after patronus fleet approve COMMIT (default: .patronus-fleet.yaml policy: in the repository, else auto)')
      .option('--verify-signatures', 'refuse commits (and tags) whose signature git cannot verify', false)
      .option('--allowed-signers <file>', 'for ssh-signed commits and tags: the allowed signers file (git gpg.ssh.allowedSignersFile)')
      .option('--interval <seconds>', 'poll interval', seconds, 10)
      .option('--canary <n>', 'nodes in the first wave', wholeNumber, 1)
      .option('--waves <list>', 'cumulative shares after the canary', '100%')
      .option('--confirm-within <seconds>', 'per node', seconds, 60)
      .option('--once', 'handle the commits there are now, then exit', false),
  )
    .description('follow a Git branch: validate each new commit against the fleet, record the result (etcd and a git note), roll out per policy')
    .action(async (o: ConnFlags & { repo: string; branch: string; path: string; group: string; policy?: string; verifySignatures: boolean; allowedSigners?: string; interval: number; canary: number; waves: string; confirmWithin: number; once: boolean }) => {
      if (o.policy && !GITOPS_POLICIES.includes(o.policy as GitopsPolicy)) throw new FleetError(`--policy "${o.policy}": must be one of ${GITOPS_POLICIES.join(', ')}`, 'invalid');
      if (o.allowedSigners && !o.verifySignatures) throw new FleetError('--allowed-signers needs --verify-signatures', 'invalid');
      rolloutOptions({ canary: o.canary, waves: o.waves.split(',').map((s) => s.trim()) });
      await withController(o, async (c) => {
        const { runGitops } = await import('./gitops.js');
        const results = await runGitops(c, {
          repo: o.repo,
          branch: o.branch,
          path: o.path,
          group: o.group,
          ...(o.policy ? { policy: o.policy as GitopsPolicy } : {}),
          verifySignatures: o.verifySignatures,
          ...(o.allowedSigners ? { allowedSigners: o.allowedSigners } : {}),
          intervalMs: o.interval * 1000,
          rollout: { canary: o.canary, waves: o.waves.split(',').map((s) => s.trim()), confirmWithin: o.confirmWithin },
          once: o.once,
          log: (l) => process.stderr.write(`${l}\n`),
        });
        out(results, () => results.map((r) => `${r.commit.slice(0, 12)} ${r.state}: ${r.detail}`).join('\n') || 'no new commits');
      });
    });

  connectionOptions(fleet.command('commits').requiredOption('--group <group>', 'group the GitOps watcher rolls out to').option('-n, --limit <n>', 'how many', wholeNumber, 20))
    .description('what the GitOps watcher made of each commit, newest first: invalid, unsigned, waiting for a tag or an approval, rolled out (with the rollout id)')
    .action(async (o: ConnFlags & { group: string; limit: number }) => {
      await withController(o, async (c) => {
        const list = await c.commits(o.group, o.limit);
        out(list, () => (list.length ? table(['commit', 'state', 'at', 'rollout', 'subject', 'detail'], list.map((r) => [r.commit.slice(0, 12), r.state, r.at.replace('T', ' ').slice(0, 19), r.rollout ?? '', r.subject, r.detail])) : `no commits seen for group ${o.group}`));
      });
    });

  connectionOptions(fleet.command('approve').argument('<commit>', 'commit hash (or an unambiguous prefix, 7+ hex digits)').requiredOption('--group <group>').option('-m, --message <text>', 'note kept with the approval and the rollout', '').option('--by <name>', 'who approves (default: $USER)'))
    .description('approve a commit the GitOps watcher holds under policy approval: it rolls out on the next poll')
    .action(async (commit: string, o: ConnFlags & { group: string; message: string; by?: string }) => {
      await withController(o, async (c) => {
        const a = await c.approve(o.group, commit, o.by ?? process.env.USER ?? 'unknown', o.message);
        out(a, () => `commit ${a.commit.slice(0, 12)} of group ${o.group} approved by ${a.by}: the GitOps watcher rolls it out on its next poll`);
      });
    });
}

/** "k=v" flags into labels. */
export function parseLabels(list: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list) {
    const m = /^([A-Za-z0-9_.-]{1,63})=([^\s]{0,253})$/.exec(l);
    if (!m) throw new FleetError(`--fleet-label "${l}": must be key=value`, 'invalid');
    out[m[1]!] = m[2]!;
  }
  return out;
}

/** The --fleet-* flags of `patronus serve`. */
export function addServeFleetOptions(serve: Command): Command {
  return connectionOptions(serve)
    .option('--fleet-node <name>', 'this node in the fleet (default: the host name)')
    .option('--fleet-group <group>', 'group to join', 'default')
    .option('--fleet-label <key=value...>', 'labels (site, role, ...), repeatable')
    .option('--fleet-lease-ttl <seconds>', 'lease TTL: silent this long, the node counts as offline', wholeNumber, 10)
    .option('--fleet-retry <seconds>', 'wait between attempts while etcd is unreachable', seconds, 2);
}

export function serveFleetOptions(o: ConnFlags & { fleetNode?: string; fleetGroup?: string; fleetLabel?: string[]; fleetLeaseTtl?: number; fleetRetry?: number }): FleetServeOptions | undefined {
  if (!o.fleet) return undefined;
  return {
    ...connection(o),
    ...(o.fleetNode ? { node: o.fleetNode } : {}),
    ...(o.fleetGroup ? { group: o.fleetGroup } : {}),
    labels: parseLabels(o.fleetLabel),
    ...(o.fleetLeaseTtl ? { leaseTtlSeconds: o.fleetLeaseTtl } : {}),
    ...(o.fleetRetry ? { retryMs: o.fleetRetry * 1000 } : {}),
  };
}

