/**
 * The fleet's data in etcd: one key space under a prefix (default
 * "/patronus/"), JSON values. Who writes what:
 *
 *   nodes/<node>                  the agent, under its lease: NodeInfo (gone when the node is)
 *   members/<group>/<node>        the agent, no lease: the node belongs to the group (kept while it is off)
 *   desired/<node>                the rollout controller: Desired (what the node should run); the agent watches it
 *   status/<node>                 the agent, no lease: NodeStatus of its last attempt (survives the node)
 *   groups/<group>/base           the controller: the group's last completed base document
 *   groups/<group>/overlays/<node> the operator: the node's overlay (deep-merged over the base)
 *   groups/<group>/lock           the controller, under its lease: the rollout running on the group
 *   rollouts/<id>                 the controller: RolloutRecord (history, why it halted)
 *   aborts/<id>                   the operator: ask the controller to halt rollout <id>
 *   gitops/<group>/<commit>       the GitOps watcher: GitopsRecord per commit seen (gitops/<group>/_last: the newest handled)
 *   approvals/<group>/<commit>    the operator (`patronus fleet approve`): Approval of a commit under policy approval
 */
export const DEFAULT_PREFIX = '/patronus/';

export class FleetKeys {
  constructor(readonly prefix = DEFAULT_PREFIX) {}
  node = (n: string) => `${this.prefix}nodes/${n}`;
  nodes = () => `${this.prefix}nodes/`;
  member = (g: string, n: string) => `${this.prefix}members/${g}/${n}`;
  members = (g: string) => `${this.prefix}members/${g}/`;
  desired = (n: string) => `${this.prefix}desired/${n}`;
  status = (n: string) => `${this.prefix}status/${n}`;
  statuses = () => `${this.prefix}status/`;
  base = (g: string) => `${this.prefix}groups/${g}/base`;
  overlay = (g: string, n: string) => `${this.prefix}groups/${g}/overlays/${n}`;
  overlays = (g: string) => `${this.prefix}groups/${g}/overlays/`;
  lock = (g: string) => `${this.prefix}groups/${g}/lock`;
  rollout = (id: string) => `${this.prefix}rollouts/${id}`;
  rollouts = () => `${this.prefix}rollouts/`;
  abort = (id: string) => `${this.prefix}aborts/${id}`;
  gitops = (name: string, commit: string) => `${this.prefix}gitops/${name}/${commit}`;
  gitopsAll = (name: string) => `${this.prefix}gitops/${name}/`;
  approval = (name: string, commit: string) => `${this.prefix}approvals/${name}/${commit}`;
}

/** Node and group names: safe as one etcd key segment and in a revision message. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export function checkName(kind: string, s: string): string {
  if (!NAME_RE.test(s)) throw new Error(`${kind} name "${s}" is invalid: 1-63 letters, digits, _ . - (starting with a letter or digit)`);
  return s;
}

/** What a live node publishes under its lease, refreshed every heartbeat. */
export interface NodeInfo {
  node: string;
  group: string;
  labels: Record<string, string>;
  version: string;
  /** the revision the kernel runs (local revision id) */
  revision: number | null;
  /** the fleet rollout that revision came from, if any */
  rollout?: string;
  drift: 'ok' | 'drift' | 'applying' | 'off' | 'unknown';
  health: 'ok' | 'degraded';
  counters?: { rules: number; packets: number; bytes: number };
  startedAt: string;
  seenAt: string;
  /** last time this node came back to etcd after losing it */
  reconnectedAt?: string;
}

/** What the controller asks a node to run. */
export interface Desired {
  rollout: string;
  group: string;
  /** the composed document (group base + this node's overlay), validated centrally */
  document: unknown;
  /** seconds for commit-confirm on the node */
  confirmWithin: number;
  message: string;
  git?: { commit: string; repo?: string };
  publishedAt: string;
}

export type NodeAttemptState = 'applying' | 'checking' | 'healthy' | 'failed';

/** The node's account of its last desired document. */
export interface NodeStatus {
  node: string;
  rollout: string;
  state: NodeAttemptState;
  /** local revision (the one applied, or the one it went back to) */
  revision?: number | null;
  /** nothing changed: the node already ran this document */
  unchanged?: boolean;
  error?: string;
  /** each health check: probe name (or "drift") and what happened */
  checks?: { name: string; ok: boolean; detail: string }[];
  at: string;
}

export type RolloutState = 'validating' | 'running' | 'completed' | 'halted' | 'aborted' | 'failed';

export interface WaveRecord {
  nodes: string[];
  state: 'pending' | 'running' | 'healthy' | 'failed';
  startedAt?: string;
  finishedAt?: string;
  results?: Record<string, { state: NodeAttemptState | 'timeout'; error?: string; revision?: number | null }>;
}

export interface RolloutRecord {
  id: string;
  group: string;
  state: RolloutState;
  message: string;
  createdAt: string;
  finishedAt?: string;
  /** why it halted, was aborted or failed */
  reason?: string;
  git?: { commit: string; repo?: string };
  options: { canary: number; waves: string[]; confirmWithin: number };
  waves: WaveRecord[];
  /** members that were offline: their desired document is published at the end; they converge when they return */
  offline: string[];
  /** timestamped lines: what happened, in order */
  history: { at: string; event: string }[];
}

export interface GitopsRecord {
  commit: string;
  subject: string;
  state: 'invalid' | 'planned' | 'rolled-out' | 'rollout-failed' | 'waiting-for-tag' | 'waiting-for-approval' | 'unsigned';
  detail: string;
  rollout?: string;
  /** the policy the commit was handled under */
  policy?: GitopsPolicy;
  at: string;
}

export type GitopsPolicy = 'auto' | 'tag' | 'approval';
export const GITOPS_POLICIES: readonly GitopsPolicy[] = ['auto', 'tag', 'approval'];

/** An operator's go-ahead for one commit (policy approval). */
export interface Approval {
  commit: string;
  by: string;
  note: string;
  at: string;
}
