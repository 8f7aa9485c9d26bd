/**
 * Suricata's eve.json, ingested: a tailer that follows the file (appends,
 * truncation and rotation), a parser for alert events, and the store the API
 * and metrics read (recent alerts, counts by signature and severity).
 *
 * The tailer remembers how far it read (inode + offset, in a small state
 * file), so a restarted control plane neither re-reads old alerts nor misses
 * the ones written while it was down.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface EveAlert {
  /** as Suricata wrote it (ISO 8601 with offset) */
  timestamp: string;
  srcIp: string;
  srcPort?: number;
  destIp: string;
  destPort?: number;
  proto: string;
  inIface?: string;
  /** allowed / blocked (blocked only in IPS mode) */
  action: string;
  gid: number;
  signatureId: number;
  rev: number;
  signature: string;
  category: string;
  /** 1 (most severe) .. 4 */
  severity: number;
  /** the attacker per the rule's `target` keyword (Suricata 7), when the rule has one */
  source?: string;
  flowId?: number;
}

/** Parses one eve.json line; undefined for events that are not alerts. Throws on malformed lines. */
export function parseEveLine(line: string): EveAlert | undefined {
  const ev = JSON.parse(line) as Record<string, any>;
  if (ev.event_type !== 'alert') return undefined;
  const a = ev.alert as Record<string, any> | undefined;
  if (!a || typeof ev.src_ip !== 'string' || typeof ev.dest_ip !== 'string' || typeof a.signature_id !== 'number') {
    throw new SyntaxError('alert event without src_ip, dest_ip or alert.signature_id');
  }
  return {
    timestamp: String(ev.timestamp ?? ''),
    srcIp: ev.src_ip,
    ...(typeof ev.src_port === 'number' ? { srcPort: ev.src_port } : {}),
    destIp: ev.dest_ip,
    ...(typeof ev.dest_port === 'number' ? { destPort: ev.dest_port } : {}),
    proto: String(ev.proto ?? ''),
    ...(typeof ev.in_iface === 'string' ? { inIface: ev.in_iface } : {}),
    action: String(a.action ?? 'allowed'),
    gid: Number(a.gid ?? 1),
    signatureId: a.signature_id,
    rev: Number(a.rev ?? 0),
    signature: String(a.signature ?? ''),
    category: String(a.category ?? ''),
    severity: Number(a.severity ?? 3),
    ...(typeof a.source?.ip === 'string' ? { source: a.source.ip } : {}),
    ...(typeof ev.flow_id === 'number' ? { flowId: ev.flow_id } : {}),
  };
}

export interface SignatureCount {
  signatureId: number;
  signature: string;
  severity: number;
  count: number;
}

/** Recent alerts (bounded) and running counts. */
export class AlertStore {
  private readonly ring: EveAlert[] = [];
  readonly bySignature = new Map<number, SignatureCount>();
  readonly bySeverity = new Map<number, number>();
  total = 0;
  /** lines that were not valid JSON or not a well-formed event */
  malformed = 0;
  lastMalformed?: string;

  constructor(private capacity = 1000) {}

  setCapacity(n: number): void {
    this.capacity = n;
    if (this.ring.length > n) this.ring.splice(0, this.ring.length - n);
  }

  add(a: EveAlert): void {
    this.ring.push(a);
    if (this.ring.length > this.capacity) this.ring.shift();
    this.total++;
    const s = this.bySignature.get(a.signatureId);
    if (s) {
      s.count++;
      s.signature = a.signature;
      s.severity = a.severity;
    } else this.bySignature.set(a.signatureId, { signatureId: a.signatureId, signature: a.signature, severity: a.severity, count: 1 });
    this.bySeverity.set(a.severity, (this.bySeverity.get(a.severity) ?? 0) + 1);
  }

  /** Newest first. */
  recent(limit = this.capacity, filter: { minSeverity?: number; signatureId?: number; srcIp?: string } = {}): EveAlert[] {
    const out: EveAlert[] = [];
    for (let i = this.ring.length - 1; i >= 0 && out.length < limit; i--) {
      const a = this.ring[i]!;
      if (filter.minSeverity !== undefined && a.severity > filter.minSeverity) continue;
      if (filter.signatureId !== undefined && a.signatureId !== filter.signatureId) continue;
      if (filter.srcIp !== undefined && a.srcIp !== filter.srcIp) continue;
      out.push(a);
    }
    return out;
  }

  signatures(): SignatureCount[] {
    return [...this.bySignature.values()].sort((a, b) => b.count - a.count || a.signatureId - b.signatureId);
  }
}

interface TailPosition {
  ino: number;
  offset: number;
}

/**
 * Follows a growing file and hands over complete lines. Wakes on fs.watch
 * of the directory and polls as a backstop (watch events can be coalesced or
 * missed across rotation). Truncation or a new inode restarts from 0.
 */
export class FileTail {
  private fd: number | undefined;
  private ino = -1;
  private offset = 0;
  private partial = '';
  private timer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private reading = false;
  private stopped = true;

  constructor(
    readonly file: string,
    private readonly onLines: (lines: string[]) => void,
    private readonly opts: { pollMs?: number; positionFile?: string; onError?: (e: Error) => void } = {},
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const saved = this.loadPosition();
    if (saved) {
      this.ino = saved.ino;
      this.offset = saved.offset;
    } else if (existsSync(this.file)) {
      // first start: only what is written from now on
      const st = statSync(this.file);
      this.ino = st.ino;
      this.offset = st.size;
      this.savePosition();
    }
    try {
      this.watcher = watch(path.dirname(this.file), { persistent: false }, () => this.poll());
      this.watcher.on('error', () => undefined);
    } catch {
      /* directory not there yet: the poll timer covers it */
    }
    this.timer = setInterval(() => this.poll(), this.opts.pollMs ?? 200);
    this.timer.unref();
    this.poll();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.watcher?.close();
    this.timer = undefined;
    this.watcher = undefined;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Reads whatever is new. Synchronous reads keep lines in order. */
  poll(): void {
    if (this.stopped || this.reading) return;
    this.reading = true;
    try {
      this.readNew();
    } catch (e) {
      this.opts.onError?.(e as Error);
    } finally {
      this.reading = false;
    }
  }

  private readNew(): void {
    let st;
    try {
      st = statSync(this.file);
    } catch {
      return; // not created yet
    }
    if (this.fd === undefined || st.ino !== this.ino) {
      if (this.fd !== undefined) {
        this.drain(); // the rest of the rotated file
        closeSync(this.fd);
      }
      this.fd = openSync(this.file, 'r');
      const opened = fstatSync(this.fd);
      if (opened.ino !== this.ino) {
        this.ino = opened.ino;
        this.offset = 0;
        this.partial = '';
      }
    }
    if (st.size < this.offset) {
      // truncated in place
      this.offset = 0;
      this.partial = '';
    }
    if (this.drain()) this.savePosition();
  }

  private drain(): boolean {
    const buf = Buffer.alloc(1 << 16);
    let any = false;
    for (;;) {
      const n = readSync(this.fd!, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      any = true;
      this.offset += n;
      const text = this.partial + buf.subarray(0, n).toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop()!;
      const complete = lines.filter((l) => l.trim());
      if (complete.length) this.onLines(complete);
    }
    return any;
  }

  private loadPosition(): TailPosition | undefined {
    if (!this.opts.positionFile) return undefined;
    try {
      const p = JSON.parse(readFileSync(this.opts.positionFile, 'utf8')) as TailPosition;
      return Number.isInteger(p.ino) && Number.isInteger(p.offset) ? p : undefined;
    } catch {
      return undefined;
    }
  }

  private savePosition(): void {
    if (!this.opts.positionFile) return;
    // a partial line is re-read next time
    writeFileSync(this.opts.positionFile, JSON.stringify({ ino: this.ino, offset: this.offset - Buffer.byteLength(this.partial) }));
  }
}
