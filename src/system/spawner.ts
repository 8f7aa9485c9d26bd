/**
 * Child processes started by a small helper process (the server's Host.run).
 *
 * Node's child_process.spawn (libuv's uv_spawn) forks and then blocks the
 * calling thread until the child has exec'd: it reads the child's exec status
 * from a close-on-exec pipe. On a busy 2-core machine the child waits for a
 * core before it can exec, so every spawn held the server's event loop
 * 35-50 ms (and more at high load; docs/bench-control.md): /healthz answered
 * late whenever a drift check or an apply's plan ran its ip/nft commands.
 * A worker thread was tried first: it took the exec wait off the loop, but
 * its fork still copies the whole server's page tables under the process's
 * memory-map lock, and the main thread stalled on that lock (the profile
 * showed 1-34 ms in each postMessage to the worker at load ~14). The helper
 * is a separate process (plain node, only node: modules, ~45 MB of RSS): its forks
 * copy its own small address space and lock only its own memory map; the
 * server only writes a request to a pipe and reads the answer.
 *
 * Same contract as execa with `reject: false` as Host.run used it: argument
 * arrays (never a shell), the environment of the caller plus `env`, `input`
 * written to stdin (stdin is closed at once without it, where execa left it
 * open: a command reading it waited for its timeout), stdout and stderr as
 * UTF-8 text with one final newline stripped, a timeout that sends SIGTERM
 * and SIGKILL 5 s later, output capped at 100 MB (the child is killed past
 * it). A spawn that fails (ENOENT) answers exit code -1 with the reason in
 * stderr. When the helper cannot start, the command runs on the calling
 * thread; when it dies, the commands it had not answered fail (exit code -1,
 * never run twice) and the next call starts a new helper.
 *
 * The helper is unref'd while idle (it never keeps the server alive) and
 * exits when its IPC channel closes (the server exited, even by SIGKILL).
 * Only `serve` enables it (enableSpawner), from its main thread; short-lived
 * CLI processes, worker threads and tests spawn directly.
 */
import { isMainThread } from 'node:worker_threads';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SCRIPT = fileURLToPath(import.meta.url);
const MAX_BUFFER = 100 * 1024 * 1024;
const FORCE_KILL_AFTER_MS = 5000;
/**
 * An input above this many characters goes to the helper as a file (written
 * off the event loop, read and removed by the helper) instead of inside the
 * IPC message: JSON-serialising a 16 MB nft script into the channel held the
 * server's loop 50-130 ms (a 1M-prefix firewall alias, docs/bench-control.md).
 */
const INPUT_FILE_ABOVE = 1 << 20;

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
  /** the input, in a file the helper reads and removes (large inputs) */
  inputFile?: string;
}

function stripFinalNewline(s: string): string {
  return s.endsWith('\r\n') ? s.slice(0, -2) : s.endsWith('\n') ? s.slice(0, -1) : s;
}

/** Runs one command to completion on the calling thread (in the helper process, or the fallback in the server). */
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
let helper: ChildProcess | undefined;
let nextId = 0;
const pending = new Map<number, { file: string; done: (r: SpawnResult) => void }>();

/** Host.run spawns through the helper process from now on (serve calls this once); starts it. */
export function enableSpawner(): void {
  enabled = true;
  if (isMainThread) {
    try {
      helper ??= startHelper();
    } catch {
      // runInSpawner tries again, and runs commands here meanwhile
    }
  }
}

/** Whether commands go through the helper (enabled, and running on the main thread). */
export function spawnerEnabled(): boolean {
  return enabled && isMainThread;
}

/** The helper's pid (tests), undefined while none runs. */
export function spawnerPid(): number | undefined {
  return helper?.pid;
}

function idle(h: ChildProcess): void {
  h.unref();
  (h.channel as { unref?: () => void } | undefined)?.unref?.();
}

function busy(h: ChildProcess): void {
  h.ref();
  (h.channel as { ref?: () => void } | undefined)?.ref?.();
}

function startHelper(): ChildProcess {
  // no --cpu-prof or inspector flags of the server: a plain node process
  const h = fork(SCRIPT, [], { env: { ...process.env, PATRONUS_SPAWNER_HELPER: '1' }, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
  idle(h);
  h.on('message', (m: { id: number } & SpawnResult) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0) idle(h);
    p?.done({ stdout: m.stdout, stderr: m.stderr, exitCode: m.exitCode, timedOut: m.timedOut });
  });
  const lost = (why: string) => {
    if (helper === h) helper = undefined;
    // not run again here: the command may have changed something before the helper stopped; the caller sees it failed
    for (const [id, p] of pending) {
      pending.delete(id);
      p.done({ stdout: '', stderr: `${p.file}: the spawner process stopped before the command ended (${why})`, exitCode: -1, timedOut: false });
    }
  };
  h.on('error', (e) => lost(e.message));
  h.on('exit', (code, signal) => lost(`exit ${code ?? signal}`));
  return h;
}

/** Runs a command through the helper process (see the module's comment). */
export function runInSpawner(req: SpawnRequest): Promise<SpawnResult> {
  let h: ChildProcess;
  try {
    h = helper ??= startHelper();
  } catch {
    return runHere(req);
  }
  if (!h.connected) return runHere(req);
  const id = ++nextId;
  return new Promise((resolve) => {
    pending.set(id, { file: req.file, done: resolve });
    // keeps the server alive while a command runs, as a child process of its own would
    if (pending.size === 1) busy(h);
    const send = (m: Message, inputFile?: string) =>
      h.send(m, (e) => {
        if (!e) return;
        if (inputFile) rmSync(inputFile, { force: true });
        pending.delete(id);
        if (pending.size === 0) idle(h);
        resolve({ stdout: '', stderr: `${req.file}: cannot reach the spawner process: ${e.message}`, exitCode: -1, timedOut: false });
      });
    if (req.input === undefined || req.input.length <= INPUT_FILE_ABOVE) return void send({ ...req, id });
    // the system's temp dir (as the nft plan's scratch file): the store's disk may be full
    const inputFile = join(tmpdir(), `patronus-spawn-${process.pid}-${id}-${randomBytes(4).toString('hex')}`);
    writeFile(inputFile, req.input, { mode: 0o600, flag: 'wx' }).then(
      () => send({ ...req, input: undefined, inputFile, id }, inputFile),
      () => {
        rmSync(inputFile, { force: true });
        send({ ...req, id }); // no file (temp dir full): in the message, as before
      },
    );
  });
}

if (process.env.PATRONUS_SPAWNER_HELPER === '1' && process.send && isMainThread) {
  process.on('message', (m: Message) => {
    if (m.inputFile) {
      let input: string;
      try {
        input = readFileSync(m.inputFile, 'utf8');
      } catch (e) {
        process.send?.({ id: m.id, stdout: '', stderr: `${m.file}: cannot read its input from ${m.inputFile}: ${(e as Error).message}`, exitCode: -1, timedOut: false } satisfies SpawnResult & { id: number });
        return;
      } finally {
        rmSync(m.inputFile, { force: true });
      }
      m = { ...m, input, inputFile: undefined };
    }
    void runHere(m).then((r) => process.send?.({ id: m.id, ...r }));
  });
  // the server is gone (it exited, or was killed): so is this helper
  process.on('disconnect', () => process.exit(0));
}
