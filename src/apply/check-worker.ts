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
 *   JSON text with its sha256 (what the store records), not as a parsed
 *   object graph; for an apply the worker stores that text itself.
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
import type { Issue } from '../config/issues.js';
import type { Compiled, ConfigSource } from './engine.js';
import { DesiredStates, type Subsystem } from './subsystem.js';
import { Slicer, reviveBuffers } from '../system/slices.js';
import { yieldCpuToMainThread } from '../system/priority.js';

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
  documentText: string;
  /** sha256 (hex) of documentText */
  documentHash: string;
  /** stored in job.recordDocumentIn already */
  documentStored: boolean;
  empty: boolean;
}

type CheckAnswer = { issues: Issue[] } | { compiled: CompiledMessage } | { error: string };

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
 * A worker started ahead of its job (the server keeps one after start-up and
 * after each use): its modules and the engine's domains are loaded, and it
 * waits for one job. A large apply then does not wait for a worker's start
 * (0.3-0.5 s here). Used once, like any compile worker (a fresh heap per
 * job); one whose start failed, that died, or that was made with other
 * domains or heap limits is not used.
 */
export class SpareWorker {
  readonly worker: Worker;
  private dead = false;
  private readonly limits: string;

  constructor(readonly domains: readonly string[]) {
    const limits = resourceLimits();
    this.limits = JSON.stringify(limits);
    this.worker = new Worker(SCRIPT, { workerData: { patronusCheckWorker: true, preload: domains }, resourceLimits: limits });
    // an idle spare never keeps the process alive, and its failure is only a reason not to use it
    this.worker.unref();
    this.worker.on('error', () => (this.dead = true));
    this.worker.once('exit', () => (this.dead = true));
  }

  /** Whether it can take `job` (alive, same domains and heap limit as a worker started now would have). */
  fits(job: CheckJob): boolean {
    return !this.dead && this.domains.join('\0') === job.domains.join('\0') && this.limits === JSON.stringify(resourceLimits());
  }

  /** Stops it (engine close). */
  stop(): void {
    this.dead = true;
    void this.worker.terminate();
  }
}

function run(job: CheckJob, live: Set<Worker>, onAnswer: (m: CheckAnswer) => void, reject: (e: Error) => void, spare?: SpareWorker): void {
  const worker = spare?.fits(job) ? spare.worker : new Worker(SCRIPT, { workerData: { patronusCheckWorker: true }, resourceLimits: resourceLimits() });
  worker.ref();
  worker.postMessage(job);
  live.add(worker);
  let answered = false;
  const what = job.kind === 'compile' ? 'compile' : 'validation';
  worker.once('message', (m: CheckAnswer) => {
    answered = true;
    if ('error' in m) reject(new Error(`${what} failed in the worker thread: ${m.error}`));
    else onAnswer(m);
  });
  worker.once('error', (e: Error & { code?: string }) => {
    answered = true;
    const why = e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `it ran out of memory (${e.message})` : e.message;
    reject(new Error(`${what} worker failed: ${why}`));
  });
  worker.once('exit', (code) => {
    live.delete(worker);
    if (!answered) reject(new ValidationStopped(`${what} stopped before it finished (the server is shutting down; worker exit code ${code})`));
  });
}

/**
 * Runs one validation in a fresh worker. `live` tracks the running workers
 * so the engine can stop them on close (a shutdown must not wait for them).
 */
export function checkInWorker(job: CheckJob, live: Set<Worker>, spare?: SpareWorker): Promise<Issue[]> {
  return new Promise((resolve, reject) => {
    run({ ...job, kind: 'issues' }, live, (m) => resolve('issues' in m ? m.issues : []), reject, spare);
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
export function compileInWorker(job: CheckJob, subsystems: readonly Subsystem[], live: Set<Worker>, spare?: SpareWorker): Promise<{ compiled?: Compiled; issues: Issue[] }> {
  return new Promise((resolve, reject) => {
    run({ ...job, kind: 'compile' }, live, (m) => {
      if ('issues' in m) return resolve({ issues: m.issues });
      if (!('compiled' in m)) return reject(new Error('compile worker answered with neither issues nor a compiled document'));
      received(m.compiled, subsystems, 'document' in job.source ? job.source.document : undefined).then((compiled) => resolve({ compiled, issues: [] }), reject);
    }, reject, spare);
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
  const text = m.documentText;
  let parsed: { value: unknown } | undefined = document === undefined ? undefined : { value: document };
  return {
    validated: { config: m.config, aliases: new Map() },
    get document() {
      parsed ??= { value: JSON.parse(text) };
      return parsed.value;
    },
    documentText: text,
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
  await preloaded;
  const { Engine, loadDomains, subsystemsOf, Store, Host, isEmptyDocument } = await load();
  const domains = await loadDomains(job.domains);
  const registry = subsystemsOf(domains);
  const chosen = job.subsystems.map((name) => {
    const s = registry.find((r) => r.name === name);
    if (!s) throw new Error(`unknown subsystem "${name}"`);
    return s;
  });
  const store = Store.open(':memory:');
  const engine = new Engine({ host: new Host(job.host), store, domains, subsystems: chosen, confirmGuard: false, inThread: true });
  try {
    const { compiled, issues } = await engine.check(job.source);
    if (job.kind !== 'compile' || !compiled) return parentPort!.postMessage({ issues } satisfies CheckAnswer);
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
    const { aliases: _aliases, ...config } = compiled.validated.config;
    const documentText = JSON.stringify(compiled.document ?? {});
    const documentHash = createHash('sha256').update(documentText).digest('hex');
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
      compiled: { desired, config: { ...config, aliases: [] }, documentText, documentHash, documentStored, empty: isEmptyDocument(compiled.document) },
    };
    try {
      parentPort!.postMessage(message, transfer);
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

if (parentPort && (workerData as { patronusCheckWorker?: boolean } | undefined)?.patronusCheckWorker) {
  // seconds of CPU: the server's main thread (/healthz, the API) goes first (src/system/priority.ts)
  yieldCpuToMainThread();
  const { preload } = workerData as { preload?: string[] };
  // a spare: load everything now, then wait for the job
  const preloaded = preload ? load().then(({ loadDomains }) => loadDomains(preload)) : undefined;
  preloaded?.catch(() => undefined);
  parentPort.once('message', (job: CheckJob) => {
    main(job, preloaded).catch((e: Error) => parentPort!.postMessage({ error: e.message } satisfies CheckAnswer));
  });
}
