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
 *   applying | confirming -> interrupted       (the process died; found on the next start)
 *
 * "The last committed revision" is the newest row in state committed: the
 * one start-up reconciliation and rollbacks go back to.
 */
import Database from 'better-sqlite3';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

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
  createdAt: string;
}

export class Store {
  private readonly db: Database.Database;

  private constructor(readonly path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  static open(path: string): Store {
    return new Store(path);
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

  createRevision(r: { author: string; message: string; config: unknown }): Revision {
    const info = this.db
      .prepare(`INSERT INTO revisions (created_at, author, message, config, state) VALUES (?, ?, ?, ?, 'applying')`)
      .run(new Date().toISOString(), r.author, r.message, JSON.stringify(r.config ?? {}));
    return this.get(Number(info.lastInsertRowid))!;
  }

  /** Moves a revision to its next state (one statement: atomic). */
  finish(id: number, state: RevisionState, result?: unknown, confirmDeadline?: Date): void {
    const changed = this.db
      .prepare(`UPDATE revisions SET state = ?, result = ?, confirm_deadline = ?, finished_at = ? WHERE id = ?`)
      .run(state, result === undefined ? null : JSON.stringify(result), confirmDeadline ? confirmDeadline.toISOString() : null, new Date().toISOString(), id).changes;
    if (!changed) throw new Error(`revision ${id} does not exist`);
  }

  /** Compare-and-set of a revision's state; false when it was not in `from` any more. */
  transition(id: number, from: RevisionState, to: RevisionState): boolean {
    return this.db.prepare(`UPDATE revisions SET state = ?, finished_at = ? WHERE id = ? AND state = ?`).run(to, new Date().toISOString(), id, from).changes === 1;
  }

  get(id: number): Revision | undefined {
    const row = this.db.prepare(`SELECT * FROM revisions WHERE id = ?`).get(id) as Row | undefined;
    return row && fromRow(row);
  }

  /** Newest first. withConfig false skips reading the documents (large with many rules); config is then {}. */
  list(opts: { limit?: number; before?: number; withConfig?: boolean } = {}): Revision[] {
    const columns = opts.withConfig === false ? `id, created_at, author, message, '{}' AS config, state, result, confirm_deadline, finished_at` : '*';
    const rows = this.db
      .prepare(`SELECT ${columns} FROM revisions WHERE id < ? ORDER BY id DESC LIMIT ?`)
      .all(opts.before ?? Number.MAX_SAFE_INTEGER, opts.limit ?? 50) as Row[];
    return rows.map(fromRow);
  }

  count(): number {
    return (this.db.prepare(`SELECT count(*) AS n FROM revisions`).get() as { n: number }).n;
  }

  /** The last committed revision (what the system should run). */
  current(): Revision | undefined {
    const row = this.db.prepare(`SELECT * FROM revisions WHERE state = 'committed' ORDER BY id DESC LIMIT 1`).get() as Row | undefined;
    return row && fromRow(row);
  }

  /**
   * Ids and states only (no document is read or parsed): the last committed
   * revision, one awaiting confirmation, and whether an apply is under way.
   * Cheap enough for every /healthz call.
   */
  head(): { committed: number | undefined; confirming: number | undefined; applying: boolean } {
    const rows = this.db
      .prepare(`SELECT id, state FROM revisions WHERE state IN ('applying', 'confirming') OR id = (SELECT max(id) FROM revisions WHERE state = 'committed')`)
      .all() as { id: number; state: RevisionState }[];
    return {
      committed: rows.find((r) => r.state === 'committed')?.id,
      confirming: rows.filter((r) => r.state === 'confirming').at(-1)?.id,
      applying: rows.some((r) => r.state === 'applying'),
    };
  }

  /** The committed revision before `id` (what `rollback` goes back to). */
  committedBefore(id: number): Revision | undefined {
    const row = this.db.prepare(`SELECT * FROM revisions WHERE state = 'committed' AND id < ? ORDER BY id DESC LIMIT 1`).get(id) as Row | undefined;
    return row && fromRow(row);
  }

  /** Revisions left mid-apply or awaiting confirmation by a process that died. */
  unfinished(): Revision[] {
    return (this.db.prepare(`SELECT * FROM revisions WHERE state IN ('applying', 'confirming') ORDER BY id`).all() as Row[]).map(fromRow);
  }

  // --- API tokens: only a SHA-256 of each is stored (tokens are 256-bit random, so no slow hash is needed)

  /** Creates a token and returns it in clear, the only time it is visible. */
  addToken(name: string): string {
    const token = `pat_${randomBytes(32).toString('base64url')}`;
    this.db.prepare(`INSERT INTO tokens (name, hash, created_at) VALUES (?, ?, ?)`).run(name, hashToken(token), new Date().toISOString());
    return token;
  }

  /** The token's name when it is valid. */
  verifyToken(token: string): string | undefined {
    const hash = hashToken(token);
    const row = this.db.prepare(`SELECT name, hash FROM tokens WHERE hash = ?`).get(hash) as { name: string; hash: Buffer } | undefined;
    return row && timingSafeEqual(row.hash, hash) ? row.name : undefined;
  }

  listTokens(): TokenInfo[] {
    return (this.db.prepare(`SELECT id, name, created_at AS createdAt FROM tokens ORDER BY id`).all() as TokenInfo[]);
  }

  removeToken(name: string): boolean {
    return this.db.prepare(`DELETE FROM tokens WHERE name = ?`).run(name).changes > 0;
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version >= 1) return;
    this.db.transaction(() => {
      this.db.exec(`
        CREATE TABLE revisions (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          created_at TEXT NOT NULL,
          author TEXT NOT NULL,
          message TEXT NOT NULL,
          config TEXT NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('applying', 'confirming', 'committed', 'failed', 'rolled_back', 'interrupted')),
          result TEXT,
          confirm_deadline TEXT,
          finished_at TEXT
        );
        CREATE INDEX revisions_state ON revisions (state, id);
        CREATE TABLE tokens (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          name TEXT NOT NULL UNIQUE,
          hash BLOB NOT NULL UNIQUE,
          created_at TEXT NOT NULL
        );
        PRAGMA user_version = 1;
      `);
    })();
  }
}

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

function fromRow(r: Row): Revision {
  return {
    id: r.id,
    createdAt: r.created_at,
    author: r.author,
    message: r.message,
    config: JSON.parse(r.config),
    state: r.state,
    ...(r.result !== null ? { result: JSON.parse(r.result) } : {}),
    ...(r.confirm_deadline !== null ? { confirmDeadline: r.confirm_deadline } : {}),
    ...(r.finished_at !== null ? { finishedAt: r.finished_at } : {}),
  };
}

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
