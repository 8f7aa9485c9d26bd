/**
 * Child processes started from a worker thread (the server's Host.run).
 *
 * Node's child_process.spawn (libuv's uv_spawn) forks and then blocks the
 * calling thread until the child has exec'd: it reads the child's exec status
 * from a close-on-exec pipe. On a busy 2-core machine the child waits for a
 * core before it can exec, so every spawn held the server's event loop
 * 35-50 ms (and more at high load; docs/bench-control.md): /healthz answered
 * late whenever a drift check or an apply's plan ran its ip/nft commands.
 * Spawned from this worker thread, that wait blocks only the worker's own
 * loop; the main thread gets the result as a message.
 *
 * Same contract as execa with `reject: false` as Host.run used it: argument
 * arrays (never a shell), the environment of the caller plus `env`, `input`
 * written to stdin (stdin is closed at once without it, where execa left it
 * open: a command reading it waited for its timeout), stdout and stderr as
 * UTF-8 text with one final newline stripped, a timeout that sends SIGTERM
 * and SIGKILL 5 s later, output capped at 100 MB (the child is killed past
 * it). A spawn that fails (ENOENT) answers exit code -1 with the reason in
 * stderr. When the worker cannot start, the command runs on the calling
 * thread; when it dies, the commands it had not answered fail (exit code -1,
 * never run twice) and the next call starts a new worker.
 *
 * The worker is unref'd: it never keeps the process alive. Only `serve`
 * enables it (enableSpawnerThread); short-lived CLI processes and tests
 * spawn directly.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(import.meta.url);
const MAX_BUFFER = 100 * 1024 * 1024;
const FORCE_KILL_AFTER_MS = 5000;

export interface SpawnRequest {
  file: string;
  args: readonly string[];
  input?: string;
  timeout: number;
  env: Record<string, string | undefined>;
  cwd?: string;
}

export interface SpawnResult {
  stdout: string;
  stderr: string;
  /** -1: killed by a signal, or the spawn itself failed */
  exitCode: number;
  timedOut: boolean;
}

interface Message extends SpawnRequest {
  id: number;
}

function stripFinalNewline(s: string): string {
  return s.endsWith('\r\n') ? s.slice(0, -2) : s.endsWith('\n') ? s.slice(0, -1) : s;
}

/** Runs one command to completion on the calling thread (the worker's). */
export function runHere(req: SpawnRequest): Promise<SpawnResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let timedOut = false;
    let overflow = false;
    let spawnError: Error | undefined;
    let forceTimer: NodeJS.Timeout | undefined;
    let child;
    try {
      child = spawn(req.file, req.args as string[], { env: req.env as NodeJS.ProcessEnv, ...(req.cwd ? { cwd: req.cwd } : {}), stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({ stdout: '', stderr: `spawn ${req.file}: ${(e as Error).message}`, exitCode: -1, timedOut: false });
      return;
    }
    const kill = () => {
      child.kill('SIGTERM');
      forceTimer ??= setTimeout(() => child.kill('SIGKILL'), FORCE_KILL_AFTER_MS);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, req.timeout);
    const collect = (into: Buffer[]) => (b: Buffer) => {
      size += b.length;
      if (size > MAX_BUFFER) {
        if (!overflow) kill();
        overflow = true;
        return;
      }
      into.push(b);
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    child.stdin!.on('error', () => undefined); // a child that exits without reading its input
    child.on('error', (e) => (spawnError = e));
    child.stdin!.end(req.input ?? undefined);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (forceTimer) clearTimeout(forceTimer);
      let stderr = stripFinalNewline(Buffer.concat(err).toString('utf8'));
      if (spawnError) stderr = `${stderr}${stderr ? '\n' : ''}${spawnError.message}`;
      if (overflow) stderr = `${stderr}${stderr ? '\n' : ''}output larger than ${MAX_BUFFER} bytes (killed)`;
      resolve({ stdout: stripFinalNewline(Buffer.concat(out).toString('utf8')), stderr, exitCode: spawnError || overflow ? -1 : (code ?? -1), timedOut });
    });
  });
}

let enabled = false;
let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, { file: string; done: (r: SpawnResult) => void }>();

/** Host.run spawns from the worker thread from now on (serve calls this once). */
export function enableSpawnerThread(): void {
  enabled = true;
}

/** Whether commands go through the spawner thread (enabled, and running on the main thread). */
export function spawnerEnabled(): boolean {
  return enabled && isMainThread;
}

function startWorker(): Worker {
  const w = new Worker(SCRIPT, { workerData: { patronusSpawner: true } });
  w.unref();
  w.on('message', (m: { id: number } & SpawnResult) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    p?.done({ stdout: m.stdout, stderr: m.stderr, exitCode: m.exitCode, timedOut: m.timedOut });
  });
  const lost = (why: string) => {
    if (worker !== w) return;
    worker = undefined;
    // not run again here: the command may have changed something before the thread stopped; the caller sees it failed
    for (const [id, p] of pending) {
      pending.delete(id);
      p.done({ stdout: '', stderr: `${p.file}: the spawner thread stopped before the command ended (${why})`, exitCode: -1, timedOut: false });
    }
  };
  w.on('error', (e) => lost(e.message));
  w.on('exit', (code) => lost(`exit code ${code}`));
  return w;
}

/** Runs a command from the spawner thread (see the module's comment). */
export function runInSpawner(req: SpawnRequest): Promise<SpawnResult> {
  try {
    worker ??= startWorker();
  } catch {
    return runHere(req);
  }
  const w = worker;
  const id = ++nextId;
  return new Promise((resolve) => {
    pending.set(id, { file: req.file, done: resolve });
    // keeps the process alive while a command runs, as a child process of this thread would
    if (pending.size === 1) w.ref();
    w.postMessage({ ...req, id } satisfies Message);
  });
}

if (!isMainThread && (workerData as { patronusSpawner?: boolean } | undefined)?.patronusSpawner) {
  parentPort!.on('message', (m: Message) => {
    void runHere(m).then((r) => parentPort!.postMessage({ id: m.id, ...r }));
  });
}
