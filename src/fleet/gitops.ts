/**
 * GitOps: a Git branch as the fleet's source of truth. Polls the branch
 * with the git CLI (argument arrays, never a shell), and for each new
 * commit: verifies its signature (--verify-signatures), reads the document,
 * validates it for every member of the group (base + overlay, the real
 * document checks), plans it against the fleet (which nodes' documents
 * change, in which sections), records the result in etcd
 * (gitops/<group>/<commit>) and as a git note (refs/notes/patronus) and,
 * per policy, rolls the newest valid commit out. An invalid document is
 * recorded and never rolled out.
 *
 * Policy: --policy, else `policy:` in .patronus-fleet.yaml at the commit,
 * else auto. "tag": only a commit that a tag fleet/* points at (a signed
 * tag with --verify-signatures) is rolled out; until then it waits.
 * "approval": it waits until an operator approves it (`patronus fleet
 * approve COMMIT`, recorded in etcd). A commit that will not be rolled out
 * (invalid document or policy file, unsigned) also gets a failed rollout
 * record saying why.
 *
 * A local path is read in place (notes are written there); a remote is
 * mirrored into a bare clone under the temp dir, fetched each poll (notes
 * stay in the mirror; etcd has the same record).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { parse as parseYaml } from 'yaml';
import { parseConfigText } from '../config/load.js';
import { formatIssue } from '../config/issues.js';
import type { FleetController } from './controller.js';
import { FleetError } from './controller.js';
import { GITOPS_POLICIES, type Desired, type GitopsPolicy, type GitopsRecord } from './model.js';

const POLICY_FILE = '.patronus-fleet.yaml';

export interface GitopsOptions {
  repo: string;
  branch: string;
  path: string;
  group: string;
  policy?: GitopsPolicy;
  verifySignatures?: boolean;
  /** ssh-signed commits and tags: the allowed-signers file git checks them against (gpg.ssh.allowedSignersFile) */
  allowedSigners?: string;
  intervalMs?: number;
  rollout: { canary: number; waves: string[]; confirmWithin: number };
  /** handle what is there now and return */
  once?: boolean;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

export async function runGitops(c: FleetController, o: GitopsOptions): Promise<GitopsRecord[]> {
  const log = o.log ?? (() => undefined);
  const git = await openRepo(o.repo);
  const all: GitopsRecord[] = [];
  for (;;) {
    try {
      all.push(...(await pollOnce(c, git, o, log)));
    } catch (e) {
      if (o.once) throw e;
      log(`gitops: ${(e as Error).message}`);
    }
    if (o.once || o.signal?.aborted) return all;
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 10_000));
    if (o.signal?.aborted) return all;
  }
}

interface Repo {
  run(args: string[], opts?: { reject?: boolean }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** fetch from a remote (no-op for a local path) */
  refresh(): Promise<void>;
  where: string;
}

async function openRepo(repo: string): Promise<Repo> {
  const run = (dir: string) => async (args: string[], opts: { reject?: boolean } = {}) => {
    const r = await execa('git', ['-C', dir, ...args], { reject: false, env: { GIT_TERMINAL_PROMPT: '0' } });
    const out = { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
    if (out.exitCode !== 0 && opts.reject !== false) throw new FleetError(`git ${args.join(' ')} (${repo}): ${out.stderr.trim() || `exit ${out.exitCode}`}`, 'failed');
    return out;
  };
  if (existsSync(repo)) {
    const dir = resolve(repo);
    const r = run(dir);
    await r(['rev-parse', '--git-dir']);
    return { run: r, refresh: async () => undefined, where: dir };
  }
  const mirror = join(tmpdir(), 'patronus-gitops', createHash('sha256').update(repo).digest('hex').slice(0, 16));
  if (!existsSync(mirror)) {
    mkdirSync(join(mirror, '..'), { recursive: true });
    const r = await execa('git', ['clone', '--bare', '--quiet', '--', repo, mirror], { reject: false, env: { GIT_TERMINAL_PROMPT: '0' } });
    if (r.exitCode !== 0) throw new FleetError(`git clone ${repo}: ${String(r.stderr).trim()}`, 'failed');
  }
  const r = run(mirror);
  return { run: r, refresh: async () => void (await r(['fetch', '--quiet', '--prune', 'origin', '+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*'])), where: `${repo} (mirror ${mirror})` };
}

async function pollOnce(c: FleetController, git: Repo, o: GitopsOptions, log: (l: string) => void): Promise<GitopsRecord[]> {
  await git.refresh();
  const head = (await git.run(['rev-parse', '--verify', '--quiet', `refs/heads/${o.branch}^{commit}`], { reject: false })).stdout.trim();
  if (!head) throw new FleetError(`gitops: branch ${o.branch} does not exist in ${git.where}`, 'invalid');
  const lastKey = `${c.keys.gitopsAll(o.group)}_last`;
  const last = await c.client.get(lastKey).string();
  if (last === head) return [];
  // new commits, oldest first (all of them the first time is too many: the head alone then)
  const range = last && (await git.run(['merge-base', '--is-ancestor', last, head], { reject: false })).exitCode === 0 ? `${last}..${head}` : undefined;
  const commits = range ? (await git.run(['rev-list', '--reverse', range])).stdout.split('\n').filter(Boolean) : [head];
  const out: GitopsRecord[] = [];
  let newestValid: { commit: string; document: unknown; subject: string; policy: GitopsPolicy } | undefined;
  for (const commit of commits) {
    const subject = (await git.run(['log', '-1', '--format=%s', commit])).stdout.trim();
    const rec = await examine(c, git, o, commit, subject);
    // invalid or unsigned commits are skipped: the newest valid one before them still goes out
    if (rec.record.state === 'planned') newestValid = { commit, document: rec.document, subject, policy: rec.record.policy ?? 'auto' };
    else await refuse(c, o, rec.record);
    out.push(rec.record);
    await record(c, git, o, rec.record);
    log(`gitops: ${commit.slice(0, 12)} ${rec.record.state}: ${rec.record.detail}`);
  }
  let advance = head;
  if (newestValid) {
    const { policy, commit } = newestValid;
    const rec = out.find((r) => r.commit === commit)!;
    let wait: string | undefined;
    let approvedBy = '';
    if (policy === 'tag' && !(await fleetTag(git, commit, o.verifySignatures ? signerConfig(o) : undefined))) {
      rec.state = 'waiting-for-tag';
      wait = `policy tag: waiting for a ${o.verifySignatures ? 'signed ' : ''}tag fleet/* on it`;
    } else if (policy === 'approval') {
      const a = await c.approval(o.group, commit);
      if (!a) {
        rec.state = 'waiting-for-approval';
        wait = `policy approval: waiting for patronus fleet approve ${commit.slice(0, 12)} --group ${o.group}`;
      } else approvedBy = ` (approved by ${a.by}${a.note ? `: ${a.note}` : ''})`;
    }
    if (wait) {
      rec.detail += `; ${wait}`;
      await record(c, git, o, rec);
      log(`gitops: ${commit.slice(0, 12)} ${wait}`);
      // look at it again next poll: do not move past it
      advance = last ?? '';
    } else {
      log(`gitops: rolling out ${commit.slice(0, 12)} to group ${o.group} (policy ${policy})`);
      const r = await c
        .rollout({ group: o.group, document: newestValid.document, ...o.rollout, message: `${newestValid.subject}${approvedBy}`, git: { commit, repo: o.repo } })
        .catch((e: unknown) => {
          if (e instanceof FleetError && e.record) return e.record;
          throw e;
        });
      rec.state = r.state === 'completed' ? 'rolled-out' : 'rollout-failed';
      rec.rollout = r.id;
      rec.detail += `; rollout ${r.id} ${r.state}${r.reason ? `: ${r.reason}` : ''}`;
      await record(c, git, o, rec);
    }
  }
  if (advance) await c.client.put(lastKey).value(advance);
  return out;
}

/**
 * A commit that will not be rolled out (invalid, unsigned) also gets a
 * failed rollout record, so `patronus fleet rollouts` says why; once per
 * commit and state (a commit looked at again on the next poll keeps its record).
 */
async function refuse(c: FleetController, o: GitopsOptions, rec: GitopsRecord): Promise<void> {
  const prior = (await c.client.get(c.keys.gitops(o.group, rec.commit)).json()) as GitopsRecord | null;
  if (prior?.state === rec.state && prior.rollout) {
    rec.rollout = prior.rollout;
    return;
  }
  const r = await c.refused({
    group: o.group,
    message: rec.subject,
    reason: `git commit ${rec.commit.slice(0, 12)} ${rec.state}, not rolled out: ${rec.detail}`,
    git: { commit: rec.commit, repo: o.repo },
    options: { canary: o.rollout.canary, waves: o.rollout.waves, confirmWithin: o.rollout.confirmWithin },
  });
  rec.rollout = r.id;
}

async function examine(c: FleetController, git: Repo, o: GitopsOptions, commit: string, subject: string): Promise<{ record: GitopsRecord; document?: unknown }> {
  const at = () => new Date().toISOString();
  const base = { commit, subject, at: at() };
  if (o.verifySignatures) {
    const v = await git.run([...signerConfig(o), 'verify-commit', commit], { reject: false });
    if (v.exitCode !== 0) return { record: { ...base, state: 'unsigned', detail: `signature not verified: ${v.stderr.trim().split('\n').at(-1) || 'no signature'}` } };
  }
  const policy = o.policy ? { policy: o.policy } : await repoPolicy(git, commit);
  if ('error' in policy) return { record: { ...base, state: 'invalid', detail: policy.error } };
  const shown = await git.run(['show', `${commit}:${o.path}`], { reject: false });
  if (shown.exitCode !== 0) return { record: { ...base, state: 'invalid', detail: `${o.path}: not in this commit (${shown.stderr.trim()})` } };
  const parsed = parseConfigText(shown.stdout, o.path.endsWith('.json') ? 'json' : 'yaml');
  if (parsed.issues.length) return { record: { ...base, state: 'invalid', detail: `${o.path}: ${parsed.issues.map(formatIssue).join('; ')}` } };
  const v = await c.validate(o.group, parsed.value);
  if (!v.members.length) return { record: { ...base, state: 'invalid', detail: `group ${o.group} has no members` } };
  if (v.problems.length) return { record: { ...base, state: 'invalid', detail: v.problems.map((p) => p.issues.map((i) => `node ${p.node}: ${o.path}: ${formatIssue(i)}`).join('; ')).join('; ') } };
  // plan against the fleet: which sections of each node's document change
  const desired = (await c.client.getAll().prefix(`${c.keys.prefix}desired/`).json()) as Record<string, Desired>;
  const changes = v.members.map((n) => {
    const now = (desired[c.keys.desired(n)]?.document ?? {}) as Record<string, unknown>;
    const next = (v.documents.get(n) ?? {}) as Record<string, unknown>;
    const sections = [...new Set([...Object.keys(now), ...Object.keys(next)])].filter((k) => JSON.stringify(now[k]) !== JSON.stringify(next[k]));
    return sections.length ? `${n}: ${sections.join(', ')}` : `${n}: no change`;
  });
  return { record: { ...base, state: 'planned', policy: policy.policy, detail: `valid for ${v.members.length} node(s); plan: ${changes.join('; ')}` }, document: parsed.value };
}

async function record(c: FleetController, git: Repo, o: GitopsOptions, r: GitopsRecord): Promise<void> {
  await c.client.put(c.keys.gitops(o.group, r.commit)).value(JSON.stringify(r));
  await git.run(['-c', 'user.name=patronus', '-c', 'user.email=patronus@localhost', 'notes', '--ref', 'patronus', 'add', '-f', '-m', `patronus fleet ${o.group}: ${r.state}: ${r.detail}`, r.commit], { reject: false });
}

/** The policy in .patronus-fleet.yaml at the commit (auto when there is none); a file that names no known policy makes the commit invalid. */
async function repoPolicy(git: Repo, commit: string): Promise<{ policy: GitopsPolicy } | { error: string }> {
  const r = await git.run(['show', `${commit}:${POLICY_FILE}`], { reject: false });
  if (r.exitCode !== 0) return { policy: 'auto' };
  let p: unknown;
  try {
    const doc = parseYaml(r.stdout) as unknown;
    if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) return { error: `${POLICY_FILE}: must be a mapping with policy: ${GITOPS_POLICIES.join(' | ')}` };
    p = (doc as { policy?: unknown } | null)?.policy ?? 'auto';
  } catch (e) {
    return { error: `${POLICY_FILE}: not YAML: ${(e as Error).message.split('\n')[0]}` };
  }
  if (!GITOPS_POLICIES.includes(p as GitopsPolicy)) return { error: `${POLICY_FILE}: policy: ${JSON.stringify(p)} is not one of ${GITOPS_POLICIES.join(', ')}` };
  return { policy: p as GitopsPolicy };
}

function signerConfig(o: GitopsOptions): string[] {
  return o.allowedSigners ? ['-c', `gpg.ssh.allowedSignersFile=${resolve(o.allowedSigners)}`] : [];
}

/** A tag fleet/* on the commit (verified when `verify` holds git's signer config). */
async function fleetTag(git: Repo, commit: string, verify: string[] | undefined): Promise<string | undefined> {
  const tags = (await git.run(['tag', '--points-at', commit, '--list', 'fleet/*'])).stdout.split('\n').filter(Boolean);
  for (const t of tags) {
    if (!verify || (await git.run([...verify, 'verify-tag', t], { reject: false })).exitCode === 0) return t;
  }
  return undefined;
}
