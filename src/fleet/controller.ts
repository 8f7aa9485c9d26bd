/**
 * The fleet's control side (CLI `patronus fleet ...`, the REST routes, the
 * GitOps watcher): central validation, rollouts in waves, status, abort.
 *
 * A rollout:
 *   1. takes the group's lock (a key under the controller's lease: a second
 *      rollout to the same group is refused; a dead controller frees it);
 *   2. composes base + overlay for every member of the group and validates
 *      each with the real document checks: one invalid node stops it before
 *      anything is published;
 *   3. canary, then waves (cumulative shares of the live members): publishes
 *      each node's desired document and waits until every node of the wave
 *      reports healthy; a failure, a timeout or an abort halts it, and the
 *      nodes that did not come out healthy get their previous desired
 *      document back (they rolled themselves back by commit-confirm);
 *   4. members that were offline get their desired document at the end and
 *      converge when they return; the group's base becomes the document.
 * Every step is written to rollouts/<id> (history, per-node results, why).
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3, Watcher } from 'etcd3';
import { ConfigError, formatIssue, type Issue } from '../config/issues.js';
import { compose } from './compose.js';
import { checkName, FleetKeys, type Approval, type Desired, type GitopsRecord, type NodeInfo, type NodeStatus, type RolloutRecord, type WaveRecord } from './model.js';

export class FleetError extends Error {
  override name = 'FleetError';
  constructor(
    message: string,
    readonly kind: 'invalid' | 'conflict' | 'not-found' | 'failed' = 'failed',
    readonly record?: RolloutRecord,
  ) {
    super(message);
  }

  /** what the REST error handler answers */
  get statusCode(): number {
    return { invalid: 400, conflict: 409, 'not-found': 404, failed: 500 }[this.kind];
  }
}

/** Checks one composed document; returns its issues (none: valid). */
export type DocumentValidator = (document: unknown) => Issue[] | Promise<Issue[]>;

export interface RolloutRequest {
  group: string;
  document: unknown;
  canary?: number;
  /** cumulative shares of the group, e.g. ["25%", "100%"] (default ["100%"]) */
  waves?: string[];
  confirmWithin?: number;
  message?: string;
  git?: { commit: string; repo?: string };
  /** longest wait for a wave beyond confirmWithin (default 60 s) */
  waveGraceSeconds?: number;
  /** called with each history line as it is recorded */
  onEvent?: (line: string, record: RolloutRecord) => void;
  /** id to use (default generated) */
  id?: string;
}

export interface NodeRow {
  node: string;
  group: string;
  online: boolean;
  info?: NodeInfo;
  status?: NodeStatus;
  desiredRollout?: string;
  /** the desired rollout is not yet reported healthy by the node */
  converged: boolean;
}

export class FleetController {
  readonly keys: FleetKeys;
  private readonly pollMs: number;
  private readonly resyncMs: number;

  constructor(
    readonly client: Etcd3,
    readonly validator: DocumentValidator,
    opts: { keys?: FleetKeys; pollMs?: number; resyncMs?: number } = {},
  ) {
    this.keys = opts.keys ?? new FleetKeys();
    this.pollMs = opts.pollMs ?? 250;
    this.resyncMs = opts.resyncMs ?? 5000;
  }

  // ---- reading

  /** Members of one group (or all), with registration, last status and whether they run their desired rollout. */
  async nodes(group?: string): Promise<NodeRow[]> {
    const [members, infos, statuses, desired] = await Promise.all([
      this.client.getAll().prefix(group ? this.keys.members(group) : `${this.keys.prefix}members/`).json() as Promise<Record<string, { node: string; group: string }>>,
      this.client.getAll().prefix(this.keys.nodes()).json() as Promise<Record<string, NodeInfo>>,
      this.client.getAll().prefix(this.keys.statuses()).json() as Promise<Record<string, NodeStatus>>,
      this.client.getAll().prefix(`${this.keys.prefix}desired/`).json() as Promise<Record<string, Desired>>,
    ]);
    const rows: NodeRow[] = [];
    for (const m of Object.values(members)) {
      const info = infos[this.keys.node(m.node)];
      const status = statuses[this.keys.status(m.node)];
      const want = desired[this.keys.desired(m.node)];
      rows.push({
        node: m.node,
        group: m.group,
        online: !!info,
        ...(info ? { info } : {}),
        ...(status ? { status } : {}),
        ...(want ? { desiredRollout: want.rollout } : {}),
        converged: !want || (status?.rollout === want.rollout && status.state === 'healthy'),
      });
    }
    return rows.sort((a, b) => a.group.localeCompare(b.group) || a.node.localeCompare(b.node));
  }

  async rollouts(limit = 20): Promise<RolloutRecord[]> {
    const all = Object.values((await this.client.getAll().prefix(this.keys.rollouts()).json()) as Record<string, RolloutRecord>);
    return all.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id)).slice(0, limit);
  }

  /** One line per group: members, online, converged; running rollouts. */
  async status(): Promise<{ groups: { group: string; members: number; online: number; converged: number; running?: string; base?: string }[]; running: string[] }> {
    const rows = await this.nodes();
    const locks = (await this.client.getAll().prefix(`${this.keys.prefix}groups/`).strings()) as Record<string, string>;
    const groups = [...new Set(rows.map((r) => r.group))].sort();
    const out = [];
    for (const g of groups) {
      const members = rows.filter((r) => r.group === g);
      const base = locks[this.keys.base(g)];
      const running = locks[this.keys.lock(g)];
      out.push({
        group: g,
        members: members.length,
        online: members.filter((m) => m.online).length,
        converged: members.filter((m) => m.converged).length,
        ...(running ? { running } : {}),
        ...(base ? { base: (JSON.parse(base) as { rollout: string }).rollout } : {}),
      });
    }
    return { groups: out, running: out.flatMap((g) => (g.running ? [g.running] : [])) };
  }

  // ---- overlays

  /**
   * Stores a node's overlay. Unless `force`, it is first composed with the
   * group's current base (when the group has one) and validated: an overlay
   * that breaks the node's document is refused (ConfigError, paths under
   * "node N") and nothing is stored. A rollout validates every member again
   * either way.
   */
  async setOverlay(group: string, node: string, overlay: unknown, opts: { force?: boolean } = {}): Promise<{ validatedWith?: string }> {
    checkName('group', group);
    checkName('node', node);
    if (typeof overlay !== 'object' || overlay === null || Array.isArray(overlay)) throw new FleetError(`overlay of ${node}: must be a mapping (sections of a document), not ${Array.isArray(overlay) ? 'a list' : JSON.stringify(overlay)}`, 'invalid');
    let validatedWith: string | undefined;
    if (!opts.force) {
      const base = (await this.client.get(this.keys.base(group)).json()) as { rollout: string; document: unknown } | null;
      if (base) {
        const issues = await this.validator(compose(base.document, overlay));
        if (issues.length) throw new ConfigError(issues.map((i) => ({ ...i, path: [`node ${node}`, ...i.path], message: `${i.message} (overlay over the base of group ${group}, rollout ${base.rollout}; nothing stored)` })));
        validatedWith = base.rollout;
      }
    }
    await this.client.put(this.keys.overlay(group, node)).value(JSON.stringify(overlay));
    return validatedWith ? { validatedWith } : {};
  }

  async overlay(group: string, node: string): Promise<unknown> {
    return this.client.get(this.keys.overlay(group, node)).json();
  }

  async removeOverlay(group: string, node: string): Promise<boolean> {
    const r = await this.client.delete().key(this.keys.overlay(group, node)).exec();
    return Number(r.deleted) > 0;
  }

  // ---- validation

  /**
   * Composes base + overlay for every member of the group and runs the
   * document checks on each; issues are prefixed with the node's name.
   */
  async validate(group: string, base: unknown, opts: { node?: string } = {}): Promise<{ members: string[]; documents: Map<string, unknown>; problems: { node: string; issues: Issue[] }[] }> {
    checkName('group', group);
    let members = Object.values((await this.client.getAll().prefix(this.keys.members(group)).json()) as Record<string, { node: string }>).map((m) => m.node).sort();
    if (opts.node !== undefined) {
      checkName('node', opts.node);
      if (!members.includes(opts.node)) throw new FleetError(`node ${opts.node} is not a member of group ${group}${members.length ? ` (members: ${members.join(', ')})` : ' (it has no members)'}`, 'not-found');
      members = [opts.node];
    }
    const overlays = (await this.client.getAll().prefix(this.keys.overlays(group)).json()) as Record<string, unknown>;
    const documents = new Map<string, unknown>();
    const problems: { node: string; issues: Issue[] }[] = [];
    // nodes whose composed documents are the same (no overlay, or equal ones) are checked once
    const checked = new Map<string, Issue[]>();
    for (const node of members) {
      const doc = compose(base, overlays[this.keys.overlay(group, node)]);
      documents.set(node, doc);
      const text = JSON.stringify(doc);
      const issues = checked.get(text) ?? (await this.validator(doc));
      checked.set(text, issues);
      if (issues.length) problems.push({ node, issues });
    }
    return { members, documents, problems };
  }

  // ---- GitOps records and approvals

  /** What the GitOps watcher recorded for a group's commits, newest first. */
  async commits(group: string, limit = 50): Promise<GitopsRecord[]> {
    checkName('group', group);
    // gitops/<group>/_last holds a bare commit hash, not a record
    const all = (await this.client.getAll().prefix(this.keys.gitopsAll(group)).strings()) as Record<string, string>;
    return Object.entries(all)
      .filter(([k]) => !k.endsWith('/_last'))
      .map(([, v]) => JSON.parse(v) as GitopsRecord)
      .sort((a, b) => b.at.localeCompare(a.at) || a.commit.localeCompare(b.commit))
      .slice(0, limit);
  }

  /**
   * Approves a commit the watcher holds under policy approval (`commit`: the
   * full hash or an unambiguous prefix of at least 7 hex digits). The watcher
   * rolls it out on its next poll.
   */
  async approve(group: string, commit: string, by: string, note = ''): Promise<Approval> {
    checkName('group', group);
    if (!/^[0-9a-f]{7,64}$/i.test(commit)) throw new FleetError(`commit "${commit}" is not a commit hash (7 to 64 hex digits)`, 'invalid');
    const seen = (await this.commits(group, 100_000)).filter((r) => r.commit.startsWith(commit.toLowerCase()));
    if (!seen.length) throw new FleetError(`commit ${commit} has not been seen by the GitOps watcher of group ${group}: nothing to approve`, 'not-found');
    if (seen.length > 1) throw new FleetError(`commit ${commit} is ambiguous in group ${group}: ${seen.map((r) => r.commit.slice(0, 12)).join(', ')}`, 'invalid');
    const rec = seen[0]!;
    if (rec.state !== 'waiting-for-approval') throw new FleetError(`commit ${rec.commit.slice(0, 12)} of group ${group} is ${rec.state}${rec.state === 'invalid' || rec.state === 'unsigned' ? ` (${rec.detail})` : ''}: only a commit waiting for approval can be approved`, 'conflict');
    const approval: Approval = { commit: rec.commit, by, note, at: new Date().toISOString() };
    await this.client.put(this.keys.approval(group, rec.commit)).value(JSON.stringify(approval));
    return approval;
  }

  async approval(group: string, commit: string): Promise<Approval | null> {
    return (await this.client.get(this.keys.approval(group, commit)).json()) as Approval | null;
  }

  /**
   * Records a rollout that was refused before it started (a Git commit with
   * an invalid or unsigned document): state failed, the reason, nothing
   * published; `patronus fleet rollouts` then says why.
   */
  async refused(req: { group: string; message: string; reason: string; git?: { commit: string; repo?: string }; options?: RolloutRecord['options'] }): Promise<RolloutRecord> {
    const at = new Date().toISOString();
    const record: RolloutRecord = {
      id: rolloutId(),
      group: req.group,
      state: 'failed',
      message: req.message,
      createdAt: at,
      finishedAt: at,
      reason: req.reason,
      ...(req.git ? { git: req.git } : {}),
      options: req.options ?? { canary: 0, waves: [], confirmWithin: 0 },
      waves: [],
      offline: [],
      history: [{ at, event: `failed: ${req.reason}` }],
    };
    await this.client.put(this.keys.rollout(record.id)).value(JSON.stringify(record));
    return record;
  }

  // ---- rollouts

  /** Runs a rollout to the end (completed, halted, aborted or failed) and returns its record. */
  async rollout(req: RolloutRequest): Promise<RolloutRecord> {
    return this.runRollout(req);
  }

  /** One rollout's record. */
  async record(id: string): Promise<RolloutRecord> {
    const r = (await this.client.get(this.keys.rollout(id)).json()) as RolloutRecord | null;
    if (!r) throw new FleetError(`rollout ${id} does not exist`, 'not-found');
    return r;
  }

  /** Asks the controller running rollout `id` to halt it; marks it aborted itself when no controller holds it any more. */
  async abort(id: string, timeoutMs = 15_000): Promise<RolloutRecord> {
    const r = await this.record(id);
    if (r.state !== 'running' && r.state !== 'validating') throw new FleetError(`rollout ${id} is ${r.state}: nothing to abort`, 'conflict');
    await this.client.put(this.keys.abort(id)).value(new Date().toISOString());
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const now = await this.record(id);
      if (now.state !== 'running' && now.state !== 'validating') return now;
      if ((await this.client.get(this.keys.lock(r.group)).string()) !== id) {
        // nobody runs it any more (its controller died): record the abort here
        now.state = 'aborted';
        now.reason = 'aborted by request (its controller was gone)';
        now.finishedAt = new Date().toISOString();
        now.history.push({ at: now.finishedAt, event: now.reason });
        await this.client.put(this.keys.rollout(id)).value(JSON.stringify(now));
        return now;
      }
      await sleep(this.pollMs);
    }
    throw new FleetError(`rollout ${id}: the abort was requested but its controller has not halted it within ${timeoutMs / 1000} s`, 'failed');
  }

  private async runRollout(req: RolloutRequest): Promise<RolloutRecord> {
    checkName('group', req.group);
    const { canary, waves, shares } = rolloutOptions(req);
    const confirmWithin = req.confirmWithin ?? 60;
    const id = req.id ?? rolloutId();
    const now = () => new Date().toISOString();
    const record: RolloutRecord = {
      id,
      group: req.group,
      state: 'validating',
      message: req.message ?? '',
      createdAt: now(),
      ...(req.git ? { git: req.git } : {}),
      options: { canary, waves, confirmWithin },
      waves: [],
      offline: [],
      history: [],
    };
    const save = async () => void (await this.client.put(this.keys.rollout(id)).value(JSON.stringify(record)).exec());
    const event = async (line: string) => {
      record.history.push({ at: now(), event: line });
      req.onEvent?.(line, record);
      await save();
    };
    const finish = async (state: RolloutRecord['state'], reason?: string) => {
      record.state = state;
      record.finishedAt = now();
      if (reason) record.reason = reason;
      await event(reason ? `${state}: ${reason}` : state);
      return record;
    };

    // the lock: one rollout per group at a time, held under this controller's lease
    const lease = this.client.lease(Math.max(5, Math.ceil(confirmWithin / 2)), { autoKeepAlive: true });
    const leaseId = await lease.grant();
    try {
      const taken = await this.client
        .if(this.keys.lock(req.group), 'Create', '==', 0)
        .then(this.client.put(this.keys.lock(req.group)).value(id).lease(leaseId))
        .else(this.client.get(this.keys.lock(req.group)))
        .commit();
      if (!taken.succeeded) {
        const holder = taken.responses[0]?.response_range?.kvs[0]?.value.toString() ?? 'another rollout';
        await finish('failed', `group ${req.group} already has rollout ${holder} running: one rollout per group at a time`);
        throw new FleetError(record.reason!, 'conflict', record);
      }
      try {
        return await this.runLocked(req, record, { canary, shares, confirmWithin, event, finish, save });
      } finally {
        await this.client.if(this.keys.lock(req.group), 'Value', '==', id).then(this.client.delete().key(this.keys.lock(req.group))).commit().catch(() => undefined);
        await this.client.delete().key(this.keys.abort(id)).exec().catch(() => undefined);
      }
    } finally {
      await lease.revoke().catch(() => undefined);
    }
  }

  private async runLocked(
    req: RolloutRequest,
    record: RolloutRecord,
    ctx: {
      canary: number;
      shares: number[];
      confirmWithin: number;
      event: (line: string) => Promise<void>;
      finish: (state: RolloutRecord['state'], reason?: string) => Promise<RolloutRecord>;
      save: () => Promise<unknown>;
    },
  ): Promise<RolloutRecord> {
    const { event, finish } = ctx;
    await event(`validating the document for every member of group ${req.group}`);
    const { members, documents, problems } = await this.validate(req.group, req.document);
    if (!members.length) {
      await finish('failed', `group ${req.group} has no members (no node has joined it with serve --fleet-group ${req.group}): nothing to roll out to`);
      throw new FleetError(record.reason!, 'invalid', record);
    }
    if (problems.length) {
      const text = problems.map((p) => p.issues.map((i) => `node ${p.node}: ${formatIssue(i)}`).join('; ')).join('; ');
      await finish('failed', `invalid for ${problems.length} of ${members.length} node(s), nothing published: ${text}`);
      throw new FleetError(record.reason!, 'invalid', record);
    }
    const infos = (await this.client.getAll().prefix(this.keys.nodes()).json()) as Record<string, NodeInfo>;
    const live = members.filter((n) => infos[this.keys.node(n)]);
    record.offline = members.filter((n) => !live.includes(n));
    if (!live.length) {
      await finish('failed', `no member of group ${req.group} is online (${members.join(', ')} registered): nothing rolled out`);
      throw new FleetError(record.reason!, 'failed', record);
    }
    // waves: canary first, then each cumulative share of the live members
    const plan: string[][] = [];
    let done = 0;
    if (ctx.canary > 0) {
      plan.push(live.slice(0, Math.min(ctx.canary, live.length)));
      done = plan[0]!.length;
    }
    for (const s of ctx.shares) {
      const upto = Math.max(done, Math.ceil((s / 100) * live.length));
      if (upto > done) plan.push(live.slice(done, upto));
      done = upto;
    }
    record.waves = plan.map((nodes) => ({ nodes, state: 'pending' }));
    record.state = 'running';
    await event(`rolling out to ${live.length} node(s) in ${plan.length} wave(s): ${plan.map((w) => `[${w.join(', ')}]`).join(' then ')}${record.offline.length ? `; offline, converge when back: ${record.offline.join(', ')}` : ''}`);

    // what each node's desired key held before (restored on failure): one range read, not one per node
    const before = (await this.client.getAll().prefix(`${this.keys.prefix}desired/`).strings()) as Record<string, string>;
    const publish = async (node: string) => {
      const desired: Desired = {
        rollout: record.id,
        group: req.group,
        document: documents.get(node),
        confirmWithin: ctx.confirmWithin,
        message: record.message,
        ...(req.git ? { git: req.git } : {}),
        publishedAt: new Date().toISOString(),
      };
      await this.client.put(this.keys.desired(node)).value(JSON.stringify(desired)).exec();
      return before[this.keys.desired(node)];
    };

    for (const [i, wave] of record.waves.entries()) {
      const label = i === 0 && ctx.canary > 0 ? 'canary' : `wave ${i + (ctx.canary > 0 ? 0 : 1)}`;
      wave.state = 'running';
      wave.startedAt = new Date().toISOString();
      const previous = new Map<string, string | undefined>();
      await inParallel(wave.nodes, async (node) => void previous.set(node, await publish(node)));
      await event(`${label}: published to ${wave.nodes.join(', ')}`);
      const outcome = await this.waitForWave(record, wave, ctx.confirmWithin + (req.waveGraceSeconds ?? 60));
      wave.finishedAt = new Date().toISOString();
      const bad = wave.nodes.filter((n) => wave.results?.[n]?.state !== 'healthy');
      if (outcome === 'healthy' && !bad.length) {
        wave.state = 'healthy';
        await event(`${label}: healthy (${wave.nodes.map((n) => `${n} revision ${wave.results?.[n]?.revision}`).join(', ')})`);
        continue;
      }
      wave.state = 'failed';
      // the nodes that did not come out healthy get their previous desired document back
      await inParallel(bad, async (n) => {
        const prev = previous.get(n);
        if (prev === undefined) await this.client.delete().key(this.keys.desired(n)).exec();
        else await this.client.put(this.keys.desired(n)).value(prev).exec();
      });
      const why = bad.map((n) => `${n}: ${wave.results?.[n]?.state ?? 'no answer'}${wave.results?.[n]?.error ? ` (${wave.results[n]!.error})` : ''}`).join('; ');
      for (const w of record.waves.slice(i + 1)) w.state = 'pending';
      if (outcome === 'aborted') return finish('aborted', `aborted by request during ${label}; ${bad.length ? `back to their previous document: ${why}` : 'its nodes were healthy'}`);
      return finish('halted', `${label} failed, later waves not started: ${why}`);
    }
    await inParallel(record.offline, publish);
    await this.client.put(this.keys.base(req.group)).value(JSON.stringify({ rollout: record.id, document: req.document, at: new Date().toISOString(), ...(req.git ? { git: req.git } : {}) }));
    return finish('completed', record.offline.length ? `every online node healthy; published to offline ${record.offline.join(', ')} (they converge when back)` : undefined);
  }

  /**
   * Waits until every node of the wave is healthy, one failed, the time is
   * up, or an abort. The statuses come from a watch on status/ (one event
   * per report, not a range read of every node's status per poll: that read
   * grows with the fleet); a full read every `resyncMs` is the safety net
   * for a watch that lags while it reconnects to another member. The abort
   * key is one small read per poll.
   */
  private async waitForWave(record: RolloutRecord, wave: WaveRecord, timeoutSeconds: number): Promise<'healthy' | 'failed' | 'timeout' | 'aborted'> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    wave.results = {};
    const prefix = this.keys.statuses();
    const members = new Set(wave.nodes);
    const latest = new Map<string, NodeStatus>();
    let wake: (() => void) | undefined;
    const take = (key: string, value: string) => {
      const node = key.slice(prefix.length);
      if (!members.has(node)) return;
      try {
        latest.set(node, JSON.parse(value) as NodeStatus);
      } catch {
        return; // not ours to judge: a status that is not JSON counts as no answer
      }
      wake?.();
    };
    const readAll = async (): Promise<string | undefined> => {
      const res = await this.client.getAll().prefix(prefix).exec();
      for (const kv of res.kvs) take(kv.key.toString(), kv.value.toString());
      return res.header.revision;
    };
    let watcher: Watcher | undefined;
    try {
      // a failed first read (etcd electing a leader) is made up by the resync on the first turn
      const revision = await readAll().catch(() => undefined);
      const builder = this.client.watch().prefix(prefix);
      watcher = await (revision ? builder.startRevision(String(BigInt(revision) + 1n)) : builder).create().catch(() => undefined);
      watcher?.on('put', (kv) => take(kv.key.toString(), kv.value.toString()));
      // the watcher reports and retries its own errors; the resync below covers what it misses meanwhile
      watcher?.on('error', () => undefined);
      let resyncAt = watcher && revision ? Date.now() + this.resyncMs : 0;
      let abortCheckAt = 0;
      for (;;) {
        let pending = 0;
        let failed = false;
        for (const n of wave.nodes) {
          const st = latest.get(n);
          if (st?.rollout === record.id && (st.state === 'healthy' || st.state === 'failed')) {
            wave.results[n] = { state: st.state, ...(st.error ? { error: st.error } : {}), ...(st.revision !== undefined ? { revision: st.revision } : {}) };
            if (st.state === 'failed') failed = true;
          } else pending++;
        }
        if (failed) return 'failed';
        if (!pending) return 'healthy';
        if (Date.now() >= abortCheckAt) {
          if ((await this.client.get(this.keys.abort(record.id)).string().catch(() => null)) !== null) return 'aborted';
          abortCheckAt = Date.now() + this.pollMs;
        }
        if (Date.now() > deadline) {
          for (const n of wave.nodes) wave.results[n] ??= { state: 'timeout', error: `no healthy report within ${timeoutSeconds} s` };
          return 'timeout';
        }
        // until the next poll, or shortly after a status arrives (reports that come together are looked at together)
        await new Promise<void>((r) => {
          const t = setTimeout(r, this.pollMs);
          wake = () => {
            clearTimeout(t);
            wake = undefined;
            setTimeout(r, 20);
          };
        });
        wake = undefined;
        if (Date.now() >= resyncAt) {
          await readAll().catch(() => undefined);
          resyncAt = Date.now() + (watcher ? this.resyncMs : this.pollMs);
        }
      }
    } finally {
      await watcher?.cancel().catch(() => undefined);
    }
  }
}

/** Canary and waves checked (FleetError 'invalid' with the reason): the shares, cumulative, the last 100%. */
export function rolloutOptions(req: Pick<RolloutRequest, 'canary' | 'waves'>): { canary: number; waves: string[]; shares: number[] } {
  const canary = req.canary ?? 1;
  const waves = req.waves?.length ? req.waves : ['100%'];
  const shares = waves.map((w) => {
    const m = /^(\d{1,3}(?:\.\d+)?)%$/.exec(w.trim());
    const n = m ? Number(m[1]) : NaN;
    if (!(n > 0 && n <= 100)) throw new FleetError(`--waves: "${w}" is not a share from 1% to 100%`, 'invalid');
    return n;
  });
  if (shares.some((s, i) => i > 0 && s <= shares[i - 1]!)) throw new FleetError(`--waves: shares must grow (${waves.join(',')})`, 'invalid');
  if (shares.at(-1) !== 100) throw new FleetError(`--waves: the last wave must be 100% (${waves.join(',')})`, 'invalid');
  if (!Number.isInteger(canary) || canary < 0) throw new FleetError(`--canary: ${canary} is not a whole number >= 0`, 'invalid');
  return { canary, waves, shares };
}

export function rolloutId(): string {
  const t = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `r${t}-${randomBytes(2).toString('hex')}`;
}

/** fn over items, at most `limit` at a time (etcd pipelines the puts on one connection) */
async function inParallel<T>(items: readonly T[], fn: (item: T) => Promise<unknown>, limit = 64): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
