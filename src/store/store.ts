/**
 * Revisions of the configuration, in one SQLite file (no server needed).
 *
 * Crash safety comes from SQLite itself: WAL journal, synchronous=FULL, and
 * every state change is one statement or one transaction, so a kill -9 at any
 * moment leaves the file readable and every committed row intact. A revision
 * goes through
 *
 *   applying -> committed                      (plain apply)
 *   applying -> confirming -> committed        (commit-confirm)
 *                          -> rolled_back      (not confirmed in time / rollback)
 *   applying -> failed                         (a step failed; previous state restored)
 *   applying -> interrupted                    (the process died; found by the next start or apply)
 *   confirming -> rolled_back                  (also by the confirm guard or the next start when the
 *                                               deadline passed with its process dead)
 *
 * "The last committed revision" is the newest row in state committed: the
 * one start-up reconciliation and rollbacks go back to. `running` (table
 * meta) is the revision the kernel was last converged to by any process.
 *
 * Documents live in their own table keyed by SHA-256: written once, shared
 * by revisions with the same document, never rewritten by a state change.
 * Files are 0600 (documents hold secrets). Old finished revisions are pruned
 * by a retention policy (see Retention). A write that fails (disk full, I/O
 * error) throws StoreError naming the operation, and health() reports it.
 */
import { sourceText } from '../config/source-text.js';
import Database from 'better-sqlite3';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { ROLES, type Role } from '../api/auth/roles.js';

export type RevisionState = 'applying' | 'confirming' | 'committed' | 'failed' | 'rolled_back' | 'interrupted';

export interface Revision {
  id: number;
  createdAt: string;
  author: string;
  message: string;
  /** the document as given (before defaults), JSON-compatible */
  config: unknown;
  state: RevisionState;
  /** what the apply did: per-step results, the failing step, rollback outcome */
  result?: unknown;
  /** when an unconfirmed revision rolls back by itself (ISO time) */
  confirmDeadline?: string;
  finishedAt?: string;
}

export interface TokenInfo {
  id: number;
  name: string;
  role: Role;
  createdAt: string;
}

export interface UserInfo {
  id: number;
  name: string;
  role: Role;
  createdAt: string;
}

/** A signed-in console session (src/api/auth/auth.ts); the secret itself is never stored, only its SHA-256. */
export interface SessionInfo {
  id: string;
  /** the user's name, or the token's name for a session opened with a token */
  user: string;
  via: 'user' | 'token';
  /** the principal's current role (a role change applies to its open sessions) */
  role: Role;
  createdAt: string;
  lastSeenAt: string;
  /** when it ends unless used again (idle timeout), capped by its absolute expiry */
  expiresAt: string;
  address: string | null;
  userAgent: string | null;
  /** whose it is: the user's or the token's id (the other is null) */
  userId: number | null;
  tokenId: number | null;
}

/** A name (token, user) that exists already. */
export class NameTakenError extends Error {
  override name = 'NameTakenError';
}

/**
 * Which finished revisions to keep. A revision is pruned only when it is
 * outside both limits that are set: not among the newest `keep`, and older
 * than `days`. The committed, running and pending (applying/confirming)
 * revisions are never pruned.
 */
export interface Retention {
  keep?: number;
  days?: number;
}

export const DEFAULT_RETENTION: Retention = { keep: 500 };

/**
 * The retention policy from the environment (PATRONUS_KEEP_REVISIONS,
 * PATRONUS_KEEP_DAYS; "0" or "" = no limit of that kind), else the default.
 */
export function retentionFromEnv(env: NodeJS.ProcessEnv = process.env): Retention {
  const keep = env.PATRONUS_KEEP_REVISIONS;
  const days = env.PATRONUS_KEEP_DAYS;
  if (keep === undefined && days === undefined) return DEFAULT_RETENTION;
  return parseRetention(keep, days, 'PATRONUS_KEEP_REVISIONS', 'PATRONUS_KEEP_DAYS');
}

/** Parses the two limits (text from flags or the environment); throws naming the bad one. */
export function parseRetention(keep: string | undefined, days: string | undefined, keepName = '--keep-revisions', daysName = '--keep-days'): Retention {
  const out: Retention = {};
  if (keep !== undefined && keep !== '' && keep !== '0') {
    if (!/^[1-9][0-9]*$/.test(keep)) throw new Error(`${keepName}: "${keep}" is not a positive whole number of revisions`);
    out.keep = Number(keep);
  }
  if (days !== undefined && days !== '' && days !== '0') {
    const n = Number(days);
    if (!/^[0-9]+(\.[0-9]+)?$/.test(days) || !(n > 0)) throw new Error(`${daysName}: "${days}" is not a positive number of days`);
    out.days = n;
  }
  return out;
}

export interface StoreOptions {
  retention?: Retention;
}

/** The store's health as /healthz and status report it. */
export interface StoreHealth {
  ok: boolean;
  /** the last write that failed (cleared by the next one that succeeds) */
  error?: string;
  errorAt?: string;
  /** bytes free for the state directory's file system */
  freeBytes?: number;
}

/** Below this much free space in the state dir the store reports itself degraded. */
export const LOW_SPACE_BYTES = 1024 * 1024;

/** A write to the store failed (disk full, I/O error, read-only file system...). */
export class StoreError extends Error {
  override name = 'StoreError';
  constructor(
    readonly operation: string,
    readonly path: string,
    readonly code: string | undefined,
    cause: Error,
  ) {
    super(`store ${path}: cannot ${operation}: ${code ? `${code}: ` : ''}${cause.message}`);
  }
}

/** Everything the store writes is only for root: documents can hold secrets (PSKs, BGP passwords). */
const FILE_MODE = 0o600;

export class Store {
  private readonly db: Database.Database;
  readonly retention: Retention;
  private lastWriteError: { error: string; at: string } | undefined;
  private headStmt: Database.Statement | undefined;

  private constructor(
    readonly path: string,
    opts: StoreOptions,
  ) {
    this.retention = opts.retention ?? retentionFromEnv();
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // create the file 0600 whatever the umask; SQLite gives the -wal and -shm files the database's mode
      closeSync(openSync(path, 'a', FILE_MODE));
      this.restrictModes();
    }
    this.db = new Database(path);
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    if (path !== ':memory:') this.restrictModes();
  }

  static open(path: string, opts: StoreOptions = {}): Store {
    return new Store(path, opts);
  }

  /**
   * Stores a document's text under its sha256 `hash` through a connection of
   * its own (a compile worker, so the main thread does not spend a quarter
   * of a second on 20 MB of SQLite): createRevision then finds it and only
   * references it. A document no revision references goes with the next prune.
   */
  static recordDocument(path: string, hash: string, text: string): void {
    const db = new Database(path, { fileMustExist: true });
    try {
      db.pragma('busy_timeout = 5000');
      db.pragma('synchronous = FULL');
      db.prepare(`INSERT OR IGNORE INTO documents (hash, config) VALUES (?, ?)`).run(hash, text);
    } finally {
      db.close();
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** PRAGMA integrity_check; "ok" when the file is sound. */
  integrityCheck(): string {
    return (this.db.pragma('integrity_check', { simple: true }) as string) ?? 'unknown';
  }

  /** The last write failure (until a write succeeds again) and the free space where the file lives. */
  health(): StoreHealth {
    const out: StoreHealth = { ok: !this.lastWriteError };
    if (this.lastWriteError) {
      out.error = this.lastWriteError.error;
      out.errorAt = this.lastWriteError.at;
    }
    if (this.path !== ':memory:') {
      try {
        const fs = statfsSync(dirname(this.path));
        out.freeBytes = fs.bavail * fs.bsize;
        if (out.freeBytes < LOW_SPACE_BYTES) {
          out.ok = false;
          out.error ??= `only ${out.freeBytes} bytes free in ${dirname(this.path)}: revisions cannot be recorded reliably`;
        }
      } catch (e) {
        out.ok = false;
        out.error ??= `cannot read free space of ${dirname(this.path)}: ${(e as Error).message}`;
      }
    }
    return out;
  }

  /**
   * Records a new revision in state applying. The document goes into its own
   * table, keyed by its hash: written once (state changes never rewrite it)
   * and shared by revisions with the same document.
   */
  /** `text`: the document already serialised as JSON (a large one is serialised off the main thread). */
  createRevision(r: { author: string; message: string } & ({ config: unknown } | { text: string; hash?: string; stored?: boolean } | { bytes: Uint8Array; hash?: string; stored?: boolean })): Revision {
    // `bytes`: the text as UTF-8 (a document compiled in a worker), decoded here only when it must be written
    let text: string | undefined = 'text' in r ? r.text : 'config' in r ? JSON.stringify(r.config ?? {}) : undefined;
    const textOf = () => (text ??= sourceText(r as { bytes: Uint8Array }));
    // `hash`: sha256 of the text, computed where the text was made (the compile worker)
    const hash = ('hash' in r && r.hash) || createHash('sha256').update('bytes' in r ? r.bytes : textOf()).digest('hex');
    // `stored`: the compile worker wrote the text already (recordDocument); checked, not trusted
    const stored = 'stored' in r && r.stored === true && 'hash' in r && r.hash === hash;
    const id = this.write('record a new revision', () =>
      this.db.transaction(() => {
        if (!stored || !this.db.prepare(`SELECT 1 FROM documents WHERE hash = ?`).get(hash)) this.db.prepare(`INSERT OR IGNORE INTO documents (hash, config) VALUES (?, ?)`).run(hash, textOf());
        const info = this.db
          .prepare(`INSERT INTO revisions (created_at, author, message, doc, state) VALUES (?, ?, ?, ?, 'applying')`)
          .run(new Date().toISOString(), r.author, r.message, hash);
        return Number(info.lastInsertRowid);
      })(),
    );
    // the row as stored, with the document text we already hold: reading 20 MB of it back from SQLite held the
    // event loop ~25 ms during a 1M-prefix apply (the slowest /healthz answer of that phase)
    const row = this.db.prepare(`${SELECT_META} WHERE r.id = ?`).get(id) as Omit<Row, 'config'> | undefined;
    if (!row) throw new Error(`revision ${id} was recorded but cannot be read back`);
    return fromRow({ ...row, config: text ?? (r as { bytes: Uint8Array }).bytes });
  }

  /**
   * Moves a revision to its next state (one transaction: atomic). `running`:
   * also record which revision the kernel now runs (see running()).
   */
  finish(id: number, state: RevisionState, result?: unknown, confirmDeadline?: Date, running?: number | null): void {
    this.write(`set revision ${id} to ${state}`, () =>
      this.db.transaction(() => {
        const changed = this.db
          .prepare(`UPDATE revisions SET state = ?, result = ?, confirm_deadline = ?, finished_at = ? WHERE id = ?`)
          .run(state, result === undefined ? null : JSON.stringify(result), confirmDeadline ? confirmDeadline.toISOString() : null, new Date().toISOString(), id).changes;
        if (!changed) throw new Error(`revision ${id} does not exist`);
        if (running !== undefined) this.setRunningIn(running);
      })(),
    );
  }

  /** Compare-and-set of a revision's state; false when it was not in `from` any more. */
  transition(id: number, from: RevisionState, to: RevisionState): boolean {
    return this.write(`set revision ${id} to ${to}`, () =>
      this.db.transaction(() => {
        const ok = this.db.prepare(`UPDATE revisions SET state = ?, finished_at = ? WHERE id = ? AND state = ?`).run(to, new Date().toISOString(), id, from).changes === 1;
        // a confirmed revision is what runs
        if (ok && to === 'committed') this.setRunningIn(id);
        return ok;
      })(),
    );
  }

  /**
   * The revision the kernel was last converged to by any process sharing this
   * store (null: the empty configuration; undefined: never recorded).
   */
  running(): number | null | undefined {
    const row = this.db.prepare(`SELECT value FROM meta WHERE key = 'running'`).get() as { value: string | null } | undefined;
    if (!row) return undefined;
    return row.value === null ? null : Number(row.value);
  }

  setRunning(id: number | null): void {
    this.write('record the running revision', () => this.setRunningIn(id));
  }

  /** sha256 of a revision's document as stored (its JSON text), without reading the document. */
  documentHash(id: number): string | undefined {
    return (this.db.prepare(`SELECT doc FROM revisions WHERE id = ?`).get(id) as { doc: string } | undefined)?.doc;
  }

  get(id: number): Revision | undefined {
    const row = this.db.prepare(`${SELECT_FULL} WHERE r.id = ?`).get(id) as Row | undefined;
    return row && fromRow(row);
  }

  /** Newest first. withConfig false skips reading the documents (large with many rules); config is then {}. */
  list(opts: { limit?: number; before?: number; withConfig?: boolean } = {}): Revision[] {
    const sql =
      opts.withConfig === false
        ? `SELECT r.id, r.created_at, r.author, r.message, '{}' AS config, r.state, r.result, r.confirm_deadline, r.finished_at FROM revisions r`
        : SELECT_FULL;
    const rows = this.db.prepare(`${sql} WHERE r.id < ? ORDER BY r.id DESC LIMIT ?`).all(opts.before ?? Number.MAX_SAFE_INTEGER, opts.limit ?? 50) as Row[];
    return rows.map(fromRow);
  }

  count(): number {
    return (this.db.prepare(`SELECT count(*) AS n FROM revisions`).get() as { n: number }).n;
  }

  /** Distinct documents stored (revisions with the same document share one). */
  documentCount(): number {
    return (this.db.prepare(`SELECT count(*) AS n FROM documents`).get() as { n: number }).n;
  }

  /** The last committed revision (what the system should run). */
  current(): Revision | undefined {
    const row = this.db.prepare(`${SELECT_FULL} WHERE r.state = 'committed' ORDER BY r.id DESC LIMIT 1`).get() as Row | undefined;
    return row && fromRow(row);
  }

  /**
   * Ids and states only (no document is read or parsed): the last committed
   * revision, one awaiting confirmation, and whether an apply is under way.
   * Cheap enough for every /healthz call.
   */
  head(): { committed: number | undefined; confirming: number | undefined; applying: boolean } {
    // prepared once: every /healthz reads the head, and compiling the statement each time was most of its cost
    this.headStmt ??= this.db.prepare(`SELECT id, state FROM revisions WHERE state IN ('applying', 'confirming') OR id = (SELECT max(id) FROM revisions WHERE state = 'committed')`);
    const rows = this.headStmt.all() as { id: number; state: RevisionState }[];
    return {
      committed: rows.find((r) => r.state === 'committed')?.id,
      confirming: rows.filter((r) => r.state === 'confirming').at(-1)?.id,
      applying: rows.some((r) => r.state === 'applying'),
    };
  }

  /**
   * One revision's metadata, without reading its document or apply result:
   * what status calls need (a document can be megabytes).
   */
  info(id: number): Omit<Revision, 'config' | 'result'> | undefined {
    const row = this.db.prepare(`SELECT r.id, r.created_at, r.author, r.message, '{}' AS config, r.state, NULL AS result, r.confirm_deadline, r.finished_at FROM revisions r WHERE r.id = ?`).get(id) as Row | undefined;
    if (!row) return undefined;
    const { config: _c, ...info } = fromRow(row);
    return info;
  }

  /** The committed revision before `id` (what `rollback` goes back to). */
  committedBefore(id: number): Revision | undefined {
    const row = this.db.prepare(`${SELECT_FULL} WHERE r.state = 'committed' AND r.id < ? ORDER BY r.id DESC LIMIT 1`).get(id) as Row | undefined;
    return row && fromRow(row);
  }

  /** Revisions left mid-apply or awaiting confirmation by a process that died. */
  unfinished(): Revision[] {
    return (this.db.prepare(`${SELECT_FULL} WHERE r.state IN ('applying', 'confirming') ORDER BY r.id`).all() as Row[]).map(fromRow);
  }

  /**
   * Applies the retention policy (see Retention); returns how many revisions
   * went. Documents no revision uses any more go with them.
   */
  prune(now = new Date()): number {
    const { keep, days } = this.retention;
    if (keep === undefined && days === undefined) return 0;
    return this.write('prune old revisions', () =>
      this.db.transaction(() => {
        const conditions = [`state NOT IN ('applying', 'confirming')`, `id NOT IN (SELECT id FROM revisions WHERE state = 'committed' ORDER BY id DESC LIMIT 1)`, `id IS NOT (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'running')`];
        const args: unknown[] = [];
        if (keep !== undefined) {
          conditions.push(`id NOT IN (SELECT id FROM revisions ORDER BY id DESC LIMIT ?)`);
          args.push(keep);
        }
        if (days !== undefined) {
          conditions.push(`created_at < ?`);
          args.push(new Date(now.getTime() - days * 86_400_000).toISOString());
        }
        const n = this.db.prepare(`DELETE FROM revisions WHERE ${conditions.join(' AND ')}`).run(...args).changes;
        if (n) this.db.exec(`DELETE FROM documents WHERE hash NOT IN (SELECT doc FROM revisions)`);
        return n;
      })(),
    );
  }

  // --- API tokens: only a SHA-256 of each is stored (tokens are 256-bit random, so no slow hash is needed)

  /** Creates a token and returns it in clear, the only time it is visible. Throws NameTakenError for a name in use. */
  addToken(name: string, role: Role = 'admin'): string {
    const token = `pat_${randomBytes(32).toString('base64url')}`;
    this.write(`add token "${name}"`, () =>
      this.db.transaction(() => {
        if (this.db.prepare(`SELECT 1 FROM tokens WHERE name = ?`).get(name)) throw new NameTakenError(`a token named "${name}" already exists`);
        this.db.prepare(`INSERT INTO tokens (name, hash, created_at, role) VALUES (?, ?, ?, ?)`).run(name, hashToken(token), new Date().toISOString(), role);
      })(),
    );
    return token;
  }

  /** The token's name when it is valid. */
  verifyToken(token: string): string | undefined {
    return this.tokenAuth(token)?.name;
  }

  /** The token's id, name and role when it is valid. */
  tokenAuth(token: string): { id: number; name: string; role: Role } | undefined {
    const hash = hashToken(token);
    const row = this.db.prepare(`SELECT id, name, role, hash FROM tokens WHERE hash = ?`).get(hash) as { id: number; name: string; role: Role; hash: Buffer } | undefined;
    return row && timingSafeEqual(row.hash, hash) ? { id: row.id, name: row.name, role: row.role } : undefined;
  }

  /** Whether the token with this id still exists (streams opened with it end when it goes). */
  hasToken(id: number): boolean {
    return !!this.db.prepare(`SELECT 1 FROM tokens WHERE id = ?`).get(id);
  }

  listTokens(): TokenInfo[] {
    return this.db.prepare(`SELECT id, name, role, created_at AS createdAt FROM tokens ORDER BY id`).all() as TokenInfo[];
  }

  /** Changes a token's role (its open sessions follow at once); false when there is no such token. */
  setTokenRole(name: string, role: Role): boolean {
    return this.write(`set the role of token "${name}"`, () => this.db.prepare(`UPDATE tokens SET role = ? WHERE name = ?`).run(role, name).changes > 0);
  }

  /** Removes a token; its sessions go with it. */
  removeToken(name: string): boolean {
    return this.write(`remove token "${name}"`, () => this.db.prepare(`DELETE FROM tokens WHERE name = ?`).run(name).changes > 0);
  }

  // --- console users: the password hash is made by the caller (src/api/auth/passwords.ts: scrypt, per-user salt)

  /** Throws NameTakenError for a name in use. */
  addUser(name: string, role: Role, passwordHash: string): UserInfo {
    return this.write(`add user "${name}"`, () =>
      this.db.transaction(() => {
        if (this.db.prepare(`SELECT 1 FROM users WHERE name = ?`).get(name)) throw new NameTakenError(`a user named "${name}" already exists`);
        const id = Number(this.db.prepare(`INSERT INTO users (name, role, password, created_at) VALUES (?, ?, ?, ?)`).run(name, role, passwordHash, new Date().toISOString()).lastInsertRowid);
        return this.db.prepare(`SELECT id, name, role, created_at AS createdAt FROM users WHERE id = ?`).get(id) as UserInfo;
      })(),
    );
  }

  /** A user with its password hash (for sign-in). */
  user(name: string): (UserInfo & { passwordHash: string }) | undefined {
    return this.db.prepare(`SELECT id, name, role, password AS passwordHash, created_at AS createdAt FROM users WHERE name = ?`).get(name) as (UserInfo & { passwordHash: string }) | undefined;
  }

  listUsers(): UserInfo[] {
    return this.db.prepare(`SELECT id, name, role, created_at AS createdAt FROM users ORDER BY id`).all() as UserInfo[];
  }

  /** Sets a new password hash; the user's sessions end (a password change signs everyone out). */
  setUserPassword(name: string, passwordHash: string): boolean {
    return this.write(`set the password of user "${name}"`, () =>
      this.db.transaction(() => {
        const row = this.db.prepare(`SELECT id FROM users WHERE name = ?`).get(name) as { id: number } | undefined;
        if (!row) return false;
        this.db.prepare(`UPDATE users SET password = ? WHERE id = ?`).run(passwordHash, row.id);
        this.db.prepare(`DELETE FROM sessions WHERE user_id = ?`).run(row.id);
        return true;
      })(),
    );
  }

  /** Changes a user's role (its open sessions follow at once); false when there is no such user. */
  setUserRole(name: string, role: Role): boolean {
    return this.write(`set the role of user "${name}"`, () => this.db.prepare(`UPDATE users SET role = ? WHERE name = ?`).run(role, name).changes > 0);
  }

  /** Removes a user; its sessions go with it. */
  removeUser(name: string): boolean {
    return this.write(`remove user "${name}"`, () => this.db.prepare(`DELETE FROM users WHERE name = ?`).run(name).changes > 0);
  }

  // --- sessions: the cookie's secret is 256-bit random, so a SHA-256 of it is what is stored and looked up

  /** Opens a session for a user or a token; returns its id and the secret for the cookie (the only time it is visible). */
  createSession(s: { userId?: number; tokenId?: number; idleSeconds: number; lifetimeSeconds: number; address?: string; userAgent?: string }, now = new Date()): { id: string; secret: string; info: SessionInfo } {
    const id = randomBytes(12).toString('base64url');
    const secret = randomBytes(32).toString('base64url');
    const info = this.write('open a session', () =>
      this.db.transaction(() => {
        this.db.prepare(`DELETE FROM sessions WHERE expires_at <= ? OR datetime(last_seen_at, '+' || idle_seconds || ' seconds') <= datetime(?)`).run(now.toISOString(), now.toISOString());
        this.db
          .prepare(`INSERT INTO sessions (id, hash, user_id, token_id, created_at, last_seen_at, expires_at, idle_seconds, address, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(id, hashToken(secret), s.userId ?? null, s.tokenId ?? null, now.toISOString(), now.toISOString(), new Date(now.getTime() + s.lifetimeSeconds * 1000).toISOString(), s.idleSeconds, s.address?.slice(0, 100) ?? null, s.userAgent?.slice(0, 300) ?? null);
        return this.sessionWhere(`s.id = ?`, id)[0]!;
      })(),
    );
    return { id, secret, info };
  }

  /**
   * The live session a cookie's secret opens (undefined when unknown, expired
   * or its user/token is gone). `touchAfterSeconds`: record the use when the
   * last one recorded is older (so an active session does not write on every request).
   */
  sessionBySecret(secret: string, now = new Date(), touchAfterSeconds = 30): SessionInfo | undefined {
    const hash = hashToken(secret);
    const row = this.sessionRows(`s.hash = ?`, hash)[0];
    if (!row || !timingSafeEqual(row.hash, hash)) return undefined;
    const info = sessionInfo(row);
    if (Date.parse(info.expiresAt) <= now.getTime()) {
      this.tryWrite(() => this.db.prepare(`DELETE FROM sessions WHERE id = ?`).run(row.id));
      return undefined;
    }
    if (now.getTime() - Date.parse(row.last_seen_at) >= touchAfterSeconds * 1000) {
      // a full disk must not sign everyone out: the use just goes unrecorded
      this.tryWrite(() => this.db.prepare(`UPDATE sessions SET last_seen_at = ? WHERE id = ?`).run(now.toISOString(), row.id));
      return sessionInfo({ ...row, last_seen_at: now.toISOString() });
    }
    return info;
  }

  /** Live sessions, newest first: all of them, or those of one user or token. */
  listSessions(of?: { userId?: number; tokenId?: number }, now = new Date()): SessionInfo[] {
    const all = of?.userId !== undefined ? this.sessionWhere(`s.user_id = ?`, of.userId) : of?.tokenId !== undefined ? this.sessionWhere(`s.token_id = ?`, of.tokenId) : this.sessionWhere(`1 = 1`);
    return all.filter((s) => Date.parse(s.expiresAt) > now.getTime());
  }

  session(id: string, now = new Date()): SessionInfo | undefined {
    const s = this.sessionWhere(`s.id = ?`, id)[0];
    return s && Date.parse(s.expiresAt) > now.getTime() ? s : undefined;
  }

  removeSession(id: string): boolean {
    return this.write(`remove session ${id}`, () => this.db.prepare(`DELETE FROM sessions WHERE id = ?`).run(id).changes > 0);
  }

  private sessionRows(where: string, ...args: unknown[]): SessionRow[] {
    return this.db
      .prepare(
        `SELECT s.*, coalesce(u.name, t.name) AS principal, coalesce(u.role, t.role) AS role, CASE WHEN s.user_id IS NULL THEN 'token' ELSE 'user' END AS via
         FROM sessions s LEFT JOIN users u ON u.id = s.user_id LEFT JOIN tokens t ON t.id = s.token_id
         WHERE ${where} AND coalesce(u.id, t.id) IS NOT NULL ORDER BY s.created_at DESC`,
      )
      .all(...args) as SessionRow[];
  }

  private sessionWhere(where: string, ...args: unknown[]): SessionInfo[] {
    return this.sessionRows(where, ...args).map(sessionInfo);
  }

  /** A write whose failure is only remembered for health() (bookkeeping that must not fail a request). */
  private tryWrite(fn: () => unknown): void {
    try {
      this.write('record session use', fn);
    } catch {
      /* reported by health() */
    }
  }

  /** Runs one write; a failure is remembered for health() and thrown as a StoreError naming the operation. */
  private write<T>(operation: string, fn: () => T): T {
    try {
      const out = fn();
      this.lastWriteError = undefined;
      return out;
    } catch (e) {
      const code = (e as { code?: string }).code;
      // SQLite's own errors (disk full, I/O) are store failures; anything else is a bug or a missing row
      if (!code?.startsWith('SQLITE_')) throw e;
      const err = new StoreError(operation, this.path, code, e as Error);
      this.lastWriteError = { error: err.message, at: new Date().toISOString() };
      throw err;
    }
  }

  private setRunningIn(id: number | null): void {
    this.db.prepare(`INSERT INTO meta (key, value) VALUES ('running', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(id === null ? null : String(id));
  }

  private restrictModes(): void {
    for (const f of [this.path, `${this.path}-wal`, `${this.path}-shm`, `${this.path}-journal`]) if (existsSync(f)) chmodSync(f, FILE_MODE);
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version >= 3) return;
    this.write('create or upgrade the schema', () =>
      this.db.transaction(() => {
        if (version < 2) this.migrateToV2(version);
        this.migrateToV3();
      })(),
    );
  }

  /**
   * v3: roles on tokens (tokens made before roles stay admin: they could do
   * everything), console users with scrypt password hashes, sessions.
   */
  private migrateToV3(): void {
    const roles = ROLES.map((r) => `'${r}'`).join(', ');
    this.db.exec(`
      ALTER TABLE tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN (${roles}));
      CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN (${roles})),
        password TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
        token_id INTEGER REFERENCES tokens (id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        idle_seconds INTEGER NOT NULL,
        address TEXT,
        user_agent TEXT,
        CHECK ((user_id IS NULL) <> (token_id IS NULL))
      );
      CREATE INDEX sessions_user ON sessions (user_id);
      CREATE INDEX sessions_token ON sessions (token_id);
      PRAGMA user_version = 3;
    `);
  }

  private migrateToV2(version: number): void {
    if (version < 1) {
      this.db.exec(`
        CREATE TABLE tokens (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          name TEXT NOT NULL UNIQUE,
          hash BLOB NOT NULL UNIQUE,
          created_at TEXT NOT NULL
        );
      `);
    }
    // v2: documents in their own table (written once; state updates no longer rewrite them), meta (running revision)
    this.db.exec(`
      CREATE TABLE documents (
        hash TEXT PRIMARY KEY,
        config TEXT NOT NULL
      );
      CREATE TABLE revisions_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        author TEXT NOT NULL,
        message TEXT NOT NULL,
        doc TEXT NOT NULL REFERENCES documents (hash),
        state TEXT NOT NULL CHECK (state IN ('applying', 'confirming', 'committed', 'failed', 'rolled_back', 'interrupted')),
        result TEXT,
        confirm_deadline TEXT,
        finished_at TEXT
      );
      CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT
      );
    `);
    if (version === 1) {
      const rows = this.db.prepare(`SELECT * FROM revisions ORDER BY id`).all() as (Omit<Row, 'config'> & { config: string })[];
      const doc = this.db.prepare(`INSERT OR IGNORE INTO documents (hash, config) VALUES (?, ?)`);
      const rev = this.db.prepare(`INSERT INTO revisions_v2 (id, created_at, author, message, doc, state, result, confirm_deadline, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
      for (const r of rows) {
        const hash = createHash('sha256').update(r.config).digest('hex');
        doc.run(hash, r.config);
        rev.run(r.id, r.created_at, r.author, r.message, hash, r.state, r.result, r.confirm_deadline, r.finished_at);
      }
      this.db.exec(`DROP TABLE revisions`);
    }
    this.db.exec(`
      ALTER TABLE revisions_v2 RENAME TO revisions;
      CREATE INDEX revisions_state ON revisions (state, id);
      CREATE INDEX revisions_doc ON revisions (doc);
      PRAGMA user_version = 2;
    `);
  }
}

const SELECT_FULL = `SELECT r.id, r.created_at, r.author, r.message, d.config, r.state, r.result, r.confirm_deadline, r.finished_at FROM revisions r JOIN documents d ON d.hash = r.doc`;
/** SELECT_FULL without the document (the caller has its text) */
const SELECT_META = `SELECT r.id, r.created_at, r.author, r.message, r.state, r.result, r.confirm_deadline, r.finished_at FROM revisions r`;

interface Row {
  id: number;
  created_at: string;
  author: string;
  message: string;
  config: string;
  state: RevisionState;
  result: string | null;
  confirm_deadline: string | null;
  finished_at: string | null;
}

function fromRow(r: Omit<Row, 'config'> & { config: string | Uint8Array }): Revision {
  // parsed at first use: most callers want the id or state, and a 1M-prefix document is ~20 MB of
  // JSON (its parse held the event loop ~130 ms per read during a large apply); bytes decoded then too
  const text = r.config;
  let parsed: { value: unknown } | undefined;
  return {
    id: r.id,
    createdAt: r.created_at,
    author: r.author,
    message: r.message,
    get config(): unknown {
      parsed ??= { value: JSON.parse(typeof text === 'string' ? text : sourceText({ bytes: text })) };
      return parsed.value;
    },
    set config(value: unknown) {
      parsed = { value };
    },
    state: r.state,
    ...(r.result !== null ? { result: JSON.parse(r.result) } : {}),
    ...(r.confirm_deadline !== null ? { confirmDeadline: r.confirm_deadline } : {}),
    ...(r.finished_at !== null ? { finishedAt: r.finished_at } : {}),
  };
}

interface SessionRow {
  id: string;
  hash: Buffer;
  principal: string;
  via: 'user' | 'token';
  role: Role;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  idle_seconds: number;
  address: string | null;
  user_agent: string | null;
  user_id: number | null;
  token_id: number | null;
}

function sessionInfo(r: SessionRow): SessionInfo {
  const idleEnd = Date.parse(r.last_seen_at) + r.idle_seconds * 1000;
  return {
    id: r.id,
    user: r.principal,
    via: r.via,
    role: r.role,
    createdAt: r.created_at,
    lastSeenAt: r.last_seen_at,
    expiresAt: new Date(Math.min(idleEnd, Date.parse(r.expires_at))).toISOString(),
    address: r.address,
    userAgent: r.user_agent,
    userId: r.user_id,
    tokenId: r.token_id,
  };
}

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
