/**
 * Validation off the main thread: parse, schema, aliases, every subsystem's
 * compile and validate for one document, in a worker_thread, answering with
 * the issues only.
 *
 * Why a worker and not cooperative loops: a 1M-prefix document spends ~10 s
 * of pure CPU in alias resolution, the fast-path and nft compilers and their
 * garbage collection, in sorts that cannot be cut into slices; on the main
 * thread that stalls /healthz and defers SIGTERM for as long. A worker keeps
 * the main thread's event loop and heap free. Only the issues come back
 * (plain {path, message} objects, cheap to clone); the compiled result of
 * such a document is millions of objects and Buffers whose structured clone
 * costs the main thread seconds, so plan and apply, which need it, still
 * compile on the main thread (Engine.check).
 *
 * The worker loads the engine's domains by module and picks the same
 * subsystems by name (as the confirm guard does) and an in-memory store; it never touches the state
 * dir's store or the apply lock.
 */
import { parentPort, workerData, Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { Issue } from '../config/issues.js';
import type { ConfigSource } from './engine.js';

export interface CheckJob {
  host: { netns?: string; stateDir: string; bpfRoot?: string };
  /** the engine's domains (Domain.module) */
  domains: string[];
  /** subsystem names, in order */
  subsystems: string[];
  source: ConfigSource;
}

type CheckAnswer = { issues: Issue[] } | { error: string };

const SCRIPT = fileURLToPath(import.meta.url);

/**
 * Runs one validation in a fresh worker. `live` tracks the running workers
 * so the engine can stop them on close (a shutdown must not wait for them).
 */
export function checkInWorker(job: CheckJob, live: Set<Worker>): Promise<Issue[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(SCRIPT, { workerData: job });
    live.add(worker);
    let answered = false;
    worker.once('message', (m: CheckAnswer) => {
      answered = true;
      if ('error' in m) reject(new Error(`validation failed: ${m.error}`));
      else resolve(m.issues);
    });
    worker.once('error', (e) => {
      answered = true;
      reject(new Error(`validation worker failed: ${e.message}`));
    });
    worker.once('exit', (code) => {
      live.delete(worker);
      if (!answered) reject(new ValidationStopped(`validation stopped before it finished (the server is shutting down; worker exit code ${code})`));
    });
  });
}

/** The worker was terminated (engine closing, server shutting down). */
export class ValidationStopped extends Error {
  override name = 'ValidationStopped';
}

async function main(job: CheckJob): Promise<void> {
  const [{ Engine }, { loadDomains, subsystemsOf }, { Store }, { Host }] = await Promise.all([import('./engine.js'), import('./domain.js'), import('../store/store.js'), import('../system/host.js')]);
  const domains = await loadDomains(job.domains);
  const registry = subsystemsOf(domains);
  const chosen = job.subsystems.map((name) => {
    const s = registry.find((r) => r.name === name);
    if (!s) throw new Error(`unknown subsystem "${name}"`);
    return s;
  });
  const store = Store.open(':memory:');
  const engine = new Engine({ host: new Host(job.host), store, domains, subsystems: chosen, confirmGuard: false });
  try {
    const { issues } = await engine.check(job.source);
    parentPort!.postMessage({ issues } satisfies CheckAnswer);
  } finally {
    engine.close();
    store.close();
  }
}

if (parentPort && (workerData as { source?: unknown } | undefined)?.source !== undefined) {
  main(workerData as CheckJob).catch((e: Error) => parentPort!.postMessage({ error: e.message } satisfies CheckAnswer));
}
