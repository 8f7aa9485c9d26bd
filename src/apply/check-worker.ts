/**
 * Validation and compilation off the main thread: parse, schema, aliases,
 * every subsystem's compile and validate for one document, in a
 * worker_thread. Two kinds of job:
 *
 * - `issues` (POST /config/validate): answers with the issues only (plain
 *   {path, message} objects, cheap to clone).
 * - `compile` (plan, apply, rollback preparation of a large document): also
 *   answers with what each subsystem should converge to. A subsystem whose
 *   compiled state is large (the fast path's prefix maps, kept as sorted
 *   flat tables) hands its buffers over transferred, not cloned
 *   (Subsystem.wire; src/fastpath/wire.ts). The document comes back as its
 *   JSON text in UTF-8 bytes, transferred, with their sha256 (what the store
 *   records), not as a parsed object graph nor a string; for an apply the
 *   worker stores that text itself. A document sent as bytes (a large
 *   request body) arrives the same way: moved, not cloned.
 *
 * Why a worker and not cooperative loops: a 1M-prefix document spends ~10 s
 * of pure CPU in alias resolution, the fast-path and nft compilers and their
 * garbage collection, in sorts that cannot be cut into slices; on the main
 * thread that stalls /healthz and defers SIGTERM for as long. The worker
 * runs the same Engine.check as the main thread does for small documents:
 * one implementation for product, tests and bench.
 *
 * Fails closed: a worker that crashes, runs out of memory, cannot send its
 * result, or is stopped rejects the caller's promise with an error naming
 * what failed, before any revision is recorded or the kernel touched.
 *
 * The worker loads the engine's domains by module and picks the same
 * subsystems by name (as the confirm guard does) and an in-memory store; it never touches the state
 * dir's store or the apply lock.
 */
import { parentPort, workerData, Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { getHeapStatistics } from 'node:v8';
import type { Issue } from '../config/issues.js';
import type { Compiled, ConfigSource } from './engine.js';
import { DesiredStates, type Subsystem } from './subsystem.js';
import { Slicer, reviveBuffers } from '../system/slices.js';
import { trace } from '../system/trace.js';
import { yieldCpuToMainThread } from '../system/priority.js';
import { sourceText } from '../config/source-text.js';

export interface CheckJob {
  host: { netns?: string; stateDir: string; bpfRoot?: string };
  /** the engine's domains (Domain.module) */
  domains: string[];
  /** subsystem names, in order */
  subsystems: string[];
  source: ConfigSource;
  /** what to answer with; default issues */
  kind?: 'issues' | 'compile';
  /** compile for an apply: also store the document's text in this store (Store.recordDocument), off the main thread */
  recordDocumentIn?: string;
}

/** What a compile worker sends back besides the issues (see compileInWorker). */
interface CompiledMessage {
  /** [subsystem name, desired as cloned or as its wire packed it] */
  desired: [string, unknown][];
  /** the validated document without its aliases (they are compiled into `desired` already) */
  config: Compiled['validated']['config'];
  /** the document as the store records it: JSON text as UTF-8 bytes, transferred (not a 20 MB string cloned) */
  documentBytes: Uint8Array;
  /** sha256 (hex) of documentBytes */
  documentHash: string;
  /** stored in job.recordDocumentIn already */
  documentStored: boolean;
  empty: boolean;
}

type CheckAnswer = ({ issues: Issue[] } | { compiled: CompiledMessage } | { error: string }) & {
  /** the worker's heap (V8 total heap size, bytes) once the job is done: whether it is worth keeping (REUSE_HEAP_BYTES) */
  heapBytes?: number;
};

/**
 * A worker whose heap is at most this large after its job serves the next
 * job too (its modules loaded, its code warm: a 10k-prefix compile took
 * 2-3x less CPU the second time); a larger one (a million prefixes, every
 * country) is stopped, so its heap goes back.
 */
const REUSE_HEAP_BYTES = 192 << 20;
/** ... and at most this many jobs per worker. */
const REUSE_JOBS = 50;

const SCRIPT = fileURLToPath(import.meta.url);

/**
 * The worker's heap limit (MB): a document too large to compile fails
 * with an error instead of taking the server down with it. Default: V8's.
 */
function resourceLimits(): { maxOldGenerationSizeMb?: number } {
  const mb = Number(process.env.PATRONUS_COMPILE_WORKER_HEAP_MB);
  return Number.isFinite(mb) && mb > 0 ? { maxOldGenerationSizeMb: mb } : {};
}

/**
 * A compile worker between jobs: started ahead of its first job (the server
 * keeps one after the first large document), or kept after a job that left
 * its heap small (REUSE_HEAP_BYTES). Its modules and the engine's domains
 * are loaded, and it waits for a job: a large apply then does not wait for
 * a worker's start (0.3-0.5 s here), and a kept one runs warm code. Jobs
 * share nothing but loaded modules (each builds its own engine, store and
 * host). One whose start failed, that died, or that was made with other
 * domains or heap limits is not used.
 */
export class SpareWorker {
  readonly worker: Worker;
  private dead = false;
  private readonly limits: string;
  /** jobs it served */
  jobs = 0;
  private readonly onError = () => (this.dead = true);

  constructor(
    readonly domains: readonly string[],
    from?: { worker: Worker; limits: string; jobs: number },
  ) {
    this.limits = from?.limits ?? JSON.stringify(resourceLimits());
    this.worker = from?.worker ?? new Worker(SCRIPT, { workerData: { patronusCheckWorker: true, preload: domains }, resourceLimits: JSON.parse(this.limits) as ReturnType<typeof resourceLimits> });
    this.jobs = from?.jobs ?? 0;
    // an idle spare never keeps the process alive, and its failure is only a reason not to use it
    this.worker.unref();
    this.worker.on('error', this.onError);
    this.worker.once('exit', this.onError);
  }

  /** Whether it can take `job` (alive, same domains and heap limit as a worker started now would have). */
  fits(job: CheckJob): boolean {
    return !this.dead && this.domains.join('\0') === job.domains.join('\0') && this.limits === JSON.stringify(resourceLimits());
  }

  /** Takes the worker for a job: this object lets go of it (its listeners removed). */
  take(): { worker: Worker; limits: string; jobs: number } {
    this.worker.off('error', this.onError);
    this.worker.off('exit', this.onError);
    return { worker: this.worker, limits: this.limits, jobs: this.jobs };
  }

  /** Stops it (engine close, idle). */
  stop(): void {
    this.dead = true;
    void this.worker.terminate();
  }
}

/** A worker that answered and may take another job: the engine keeps it as its spare (or stops it). */
export type OnIdle = (spare: SpareWorker) => void;

function run(job: CheckJob, live: Set<Worker>, onAnswer: (m: CheckAnswer) => void, reject: (e: Error) => void, spare?: SpareWorker, onIdle?: OnIdle): void {
  const reused = spare?.fits(job) ? spare.take() : undefined;
  if (spare && !reused) spare.stop();
  const worker = reused?.worker ?? new Worker(SCRIPT, { workerData: { patronusCheckWorker: true }, resourceLimits: resourceLimits() });
  const limits = reused?.limits ?? JSON.stringify(resourceLimits());
  const jobs = (reused?.jobs ?? 0) + 1;
  worker.ref();
  // a document given as bytes moves to the worker (transferred: no copy on this thread; the caller's view is
  // detached after this)
  const bytes = 'bytes' in job.source ? job.source.bytes : undefined;
  const movable = bytes && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
  worker.postMessage(job, movable ? [bytes.buffer as ArrayBuffer] : []);
  trace(`compile: job posted (${reused ? `spare, job ${jobs}` : 'new worker'}${movable ? `, document moved: ${bytes.byteLength} bytes` : ''})`);
  live.add(worker);
  let answered = false;
  const what = job.kind === 'compile' ? 'compile' : 'validation';
  const onMessage = (m: CheckAnswer) => {
    answered = true;
    worker.off('error', onError);
    worker.off('exit', onExit);
    live.delete(worker);
    // kept for the next job while its heap stayed small (a fresh heap after a large one); stopped otherwise
    if (onIdle && !('error' in m) && m.heapBytes !== undefined && m.heapBytes <= REUSE_HEAP_BYTES && jobs < REUSE_JOBS) onIdle(new SpareWorker(job.domains, { worker, limits, jobs }));
    else void worker.terminate();
    trace(`compile: worker ${onIdle && 'heapBytes' in m ? `heap ${((m.heapBytes ?? 0) / 2 ** 20).toFixed(0)} MB` : ''}`);
    if ('error' in m) reject(new Error(`${what} failed in the worker thread: ${m.error}`));
    else onAnswer(m);
  };
  const onError = (e: Error & { code?: string }) => {
    answered = true;
    worker.off('message', onMessage);
    const why = e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `it ran out of memory (${e.message})` : e.message;
    reject(new Error(`${what} worker failed: ${why}`));
  };
  const onExit = (code: number) => {
    live.delete(worker);
    worker.off('message', onMessage);
    if (!answered) reject(new ValidationStopped(`${what} stopped before it finished (the server is shutting down; worker exit code ${code})`));
  };
  worker.once('message', onMessage);
  worker.once('error', onError);
  worker.once('exit', onExit);
}

/**
 * Runs one validation in a worker (the spare, or a fresh one). `live` tracks the running workers
 * so the engine can stop them on close (a shutdown must not wait for them).
 */
export function checkInWorker(job: CheckJob, live: Set<Worker>, spare?: SpareWorker, onIdle?: OnIdle): Promise<Issue[]> {
  return new Promise((resolve, reject) => {
    run({ ...job, kind: 'issues' }, live, (m) => resolve('issues' in m ? m.issues : []), reject, spare, onIdle);
  });
}

/**
 * Engine.check in a fresh worker: the issues, or the compiled document with
 * every subsystem's desired state rebuilt on this thread (in slices: the
 * event loop keeps running). `subsystems` are the engine's own, by the names
 * in `job.subsystems`. `document` is the caller's parsed document when it
 * has one (nothing to send back then); otherwise the document is parsed from
 * its text when first used.
 */
export function compileInWorker(job: CheckJob, subsystems: readonly Subsystem[], live: Set<Worker>, spare?: SpareWorker, onIdle?: OnIdle): Promise<{ compiled?: Compiled; issues: Issue[] }> {
  return new Promise((resolve, reject) => {
    run({ ...job, kind: 'compile' }, live, (m) => {
      if ('issues' in m) return resolve({ issues: m.issues });
      if (!('compiled' in m)) return reject(new Error('compile worker answered with neither issues nor a compiled document'));
      trace('compile: answer received');
      received(m.compiled, subsystems, 'document' in job.source ? job.source.document : undefined).then((compiled) => resolve({ compiled, issues: [] }), reject);
    }, reject, spare, onIdle);
  });
}

async function received(m: CompiledMessage, subsystems: readonly Subsystem[], document: unknown): Promise<Compiled> {
  const desired = new DesiredStates();
  const slicer = new Slicer();
  for (const [name, value] of m.desired) {
    const s = subsystems.find((x) => x.name === name);
    try {
      if (!s) throw new Error('not a subsystem of this engine');
      desired.put(s, s.wire ? await s.wire.unpack(value) : await reviveBuffers(value, slicer));
    } catch (e) {
      throw new Error(`compile worker: the compiled state of subsystem "${name}" could not be rebuilt: ${(e as Error).message}`);
    }
  }
  const bytes = m.documentBytes;
  let parsed: { value: unknown } | undefined = document === undefined ? undefined : { value: document };
  return {
    validated: { config: m.config, aliases: new Map() },
    // decoded and parsed on this thread only when read (a document given as an object: that object)
    get document() {
      parsed ??= { value: JSON.parse(sourceText({ bytes })) };
      return parsed.value;
    },
    documentBytes: bytes,
    documentHash: m.documentHash,
    documentStored: m.documentStored,
    empty: m.empty,
    desired,
  };
}

/** The worker was terminated (engine closing, server shutting down). */
export class ValidationStopped extends Error {
  override name = 'ValidationStopped';
}

/** The modules a job needs (a spare loads them before its job arrives; a second import is a cache hit). */
async function load() {
  const [{ Engine }, { loadDomains, subsystemsOf }, { Store }, { Host }, { isEmptyDocument }] = await Promise.all([
    import('./engine.js'),
    import('./domain.js'),
    import('../store/store.js'),
    import('../system/host.js'),
    import('../config/input.js'),
  ]);
  return { Engine, loadDomains, subsystemsOf, Store, Host, isEmptyDocument };
}

async function main(job: CheckJob, preloaded?: Promise<unknown>): Promise<void> {
  // a spare's preload failing is this job's failure too, with the same message
  trace('worker: job received');
  await preloaded;
  const { Engine, loadDomains, subsystemsOf, Store, Host, isEmptyDocument } = await load();
  const domains = await loadDomains(job.domains);
  trace('worker: domains loaded');
  const registry = subsystemsOf(domains);
  const chosen = job.subsystems.map((name) => {
    const s = registry.find((r) => r.name === name);
    if (!s) throw new Error(`unknown subsystem "${name}"`);
    return s;
  });
  const store = Store.open(':memory:');
  const engine = new Engine({ host: new Host(job.host), store, domains, subsystems: chosen, confirmGuard: false, inThread: true });
  try {
    // a compile for the main thread: it runs the machine probes itself (Engine.check)
    const { compiled, issues } = await engine.check(job.source, { probe: job.kind !== 'compile' });
    trace('worker: checked');
    if (job.kind !== 'compile' || !compiled) return parentPort!.postMessage({ issues, heapBytes: heapBytes() } satisfies CheckAnswer);
    const desired: [string, unknown][] = [];
    const transfer: ArrayBuffer[] = [];
    for (const s of chosen) {
      const d = compiled.desired.of(s);
      if (!s.wire) {
        desired.push([s.name, d]);
        continue;
      }
      const p = s.wire.pack(d);
      desired.push([s.name, p.value]);
      transfer.push(...p.transfer);
    }
    trace('worker: packed');
    const { aliases: _aliases, ...config } = compiled.validated.config;
    const documentText = JSON.stringify(compiled.document ?? {});
    // the same bytes are hashed, stored and sent: the main thread neither encodes, hashes nor clones 20 MB of text
    const documentBytes = new TextEncoder().encode(documentText);
    const documentHash = createHash('sha256').update(documentBytes).digest('hex');
    trace('worker: text and hash');
    let documentStored = false;
    if (job.recordDocumentIn) {
      try {
        Store.recordDocument(job.recordDocumentIn, documentHash, documentText);
        documentStored = true;
      } catch {
        // the main thread stores it then (and reports a store failure as any apply does)
      }
    }
    const message: CheckAnswer = {
      compiled: { desired, config: { ...config, aliases: [] }, documentBytes, documentHash, documentStored, empty: isEmptyDocument(compiled.document) },
      heapBytes: heapBytes(),
    };
    trace('worker: stored');
    try {
      parentPort!.postMessage(message, [...transfer, documentBytes.buffer as ArrayBuffer]);
    } catch (e) {
      // name the subsystem whose state cannot cross (a function, a class instance with private state...)
      const culprit = desired.find(([, d]) => {
        try {
          structuredClone(d);
          return false;
        } catch {
          return true;
        }
      });
      throw new Error(`cannot send the compiled state${culprit ? ` of subsystem "${culprit[0]}"` : ''} to the main thread: ${(e as Error).message}`);
    }
  } finally {
    engine.close();
    store.close();
  }
}

function heapBytes(): number {
  return getHeapStatistics().total_heap_size;
}

if (parentPort && (workerData as { patronusCheckWorker?: boolean } | undefined)?.patronusCheckWorker) {
  // seconds of CPU: the server's main thread (/healthz, the API) goes first (src/system/priority.ts)
  yieldCpuToMainThread();
  const { preload } = workerData as { preload?: string[] };
  // a spare: load everything now, then wait for the job
  const preloaded = preload ? load().then(({ loadDomains }) => loadDomains(preload)) : undefined;
  preloaded?.catch(() => undefined);
  // one job at a time: the main thread sends the next only after this one's answer, or stops the worker
  parentPort.on('message', (job: CheckJob) => {
    main(job, preloaded).catch((e: Error) => parentPort!.postMessage({ error: e.message } satisfies CheckAnswer));
  });
}
