/**
 * A large JSON request body ({"config": {...}, "message": ...}) parsed in a
 * worker thread. Parsing 17 MB of JSON with duplicate-key detection
 * (parseConfigText) holds a thread for ~0.5 s; on the main thread that is
 * /healthz and every other request waiting. The worker parses the body and
 * sends back the small fields as they are and the document as UTF-8 JSON
 * bytes in a transferred buffer (moved, not copied: a 20 MB string cloned
 * into this thread's heap took tens of ms of the loop), which the engine
 * then hands on, transferred again, to its compile worker
 * (src/apply/check-worker.ts): this thread never holds the document, parsed
 * or as text.
 */
import { parentPort, workerData, Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { parseConfigText } from './load.js';
import type { Issue } from './issues.js';
import { yieldCpuToMainThread } from '../system/priority.js';

/** What the worker gets: the body (text or bytes), and whether a `config` object goes back as bytes (configBytes). */
interface BodyMessage {
  body: string | Uint8Array;
  asBytes: boolean;
}

/** Above this many characters a JSON body is parsed in a worker. */
export const LARGE_JSON_BODY = 1 << 20;

/**
 * The body's issues, or the body; when its `config` was a JSON object, `body.config` is '' and
 * `configBytes` holds the document as UTF-8 JSON (moved here from the worker), `body.format` 'json'.
 */
export type ParsedBody = { issues: Issue[] } | { body: Record<string, unknown>; configBytes?: Uint8Array };

const SCRIPT = fileURLToPath(import.meta.url);

/**
 * The body with `config` as JSON text (format "json") when it was an object,
 * or the issues of a body that is not valid JSON or has duplicate keys. With
 * `documentAsBytes` (the engine's validate, plan and apply routes) such a
 * `config` comes back as UTF-8 bytes in `configBytes` (body.config '').
 */
export function parseJsonBodyInWorker(text: string | Uint8Array, opts: { documentAsBytes?: boolean } = {}): Promise<ParsedBody> {
  return new Promise((resolve, reject) => {
    const worker = takeSpare() ?? startWorker();
    const asBytes = opts.documentAsBytes === true;
    if (typeof text === 'string') worker.postMessage({ body: text, asBytes } satisfies BodyMessage);
    else {
      // the body's bytes: decoded in the worker, and moved rather than copied when they own their memory (a
      // large Buffer.concat does); this thread neither decodes 20 MB of UTF-8 nor clones the string
      const own = text.byteOffset === 0 && text.byteLength === text.buffer.byteLength && text.buffer instanceof ArrayBuffer;
      const bytes = own ? text : new Uint8Array(text);
      worker.postMessage({ body: bytes, asBytes } satisfies BodyMessage, [bytes.buffer as ArrayBuffer]);
    }
    // a shutdown does not wait for a parse (the server's own handles keep the process alive while it serves)
    worker.unref();
    let answered = false;
    worker.once('message', (m: ParsedBody) => {
      answered = true;
      resolve(m);
    });
    worker.once('error', (e) => {
      answered = true;
      reject(new Error(`parsing the request body in a worker thread failed: ${e.message}`));
    });
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`parsing the request body stopped before it finished (worker exit code ${code})`));
    });
    replaceSpareLater();
  });
}

/**
 * Keeps one parse worker started ahead of its body (the server calls this
 * once it is up): a large request does not wait for a worker's start. The
 * first spare starts a second after the first large body, the next a second
 * after each use (each serves one body): a server that never gets a large
 * body has no idle worker, and a spare no body took within `idleMs`
 * (default 30 s) is stopped. Unref'd: it never keeps the process alive.
 */
export function keepSpareParseWorker(opts: { idleMs?: number } = {}): void {
  spareWanted = true;
  spareIdleMs = opts.idleMs ?? 30_000;
}

let spareWanted = false;
let spareIdleMs = 30_000;
let idleTimer: NodeJS.Timeout | undefined;
let spare: { worker: Worker; dead: boolean } | undefined;
let spareTimer: NodeJS.Timeout | undefined;

function startWorker(): Worker {
  return new Worker(SCRIPT, { workerData: { patronusParseWorker: true } });
}

function startSpare(): { worker: Worker; dead: boolean } {
  const s = { worker: startWorker(), dead: false };
  s.worker.unref();
  s.worker.on('error', () => (s.dead = true));
  s.worker.once('exit', () => (s.dead = true));
  return s;
}

function takeSpare(): Worker | undefined {
  const s = spare;
  spare = undefined;
  clearTimeout(idleTimer);
  idleTimer = undefined;
  return s && !s.dead ? s.worker : undefined;
}

function replaceSpareLater(): void {
  if (!spareWanted || spareTimer) return;
  spareTimer = setTimeout(() => {
    spareTimer = undefined;
    if (!spareWanted || spare) return;
    spare = startSpare();
    // nobody sent a large body for a while: stop it (as the engine's spare compile worker, SPARE_IDLE_MS)
    idleTimer = setTimeout(() => {
      idleTimer = undefined;
      const s = spare;
      spare = undefined;
      if (s) void s.worker.terminate();
    }, spareIdleMs);
    idleTimer.unref();
  }, 1000);
  spareTimer.unref();
}

/** Parses in this thread (the worker's job; `config` as JSON text here, sent on as bytes). */
export function parseJsonBody(text: string): ParsedBody {
  const parsed = parseConfigText(text, 'json');
  if (parsed.issues.length) return { issues: parsed.issues };
  const v = parsed.value;
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { body: v as Record<string, unknown> };
  const { config, ...rest } = v as Record<string, unknown>;
  if (config === null || typeof config !== 'object' || Array.isArray(config)) return { body: v as Record<string, unknown> };
  return { body: { ...rest, config: JSON.stringify(config), format: 'json' } };
}

if (parentPort && (workerData as { patronusParseWorker?: boolean } | undefined)?.patronusParseWorker) {
  // the server's main thread (/healthz, the API) goes first (src/system/priority.ts)
  yieldCpuToMainThread();
  // started ahead (a spare) or for this body: the body arrives as a message
  parentPort.once('message', ({ body, asBytes }: BodyMessage) => {
    const text = typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
    if (!text.trim()) return parentPort!.postMessage({ issues: [{ path: ['body'], message: 'the request body is empty; send a JSON object such as {"config": ...}' }] } satisfies ParsedBody);
    const parsed = parseJsonBody(text);
    if (!asBytes || !('body' in parsed) || parsed.body.format !== 'json' || typeof parsed.body.config !== 'string') return parentPort!.postMessage(parsed);
    // the document's text as bytes, moved to the main thread (not a 20 MB string cloned into its heap)
    const bytes = new TextEncoder().encode(parsed.body.config);
    parentPort!.postMessage({ body: { ...parsed.body, config: '' }, configBytes: bytes } satisfies ParsedBody, [bytes.buffer]);
  });
}
