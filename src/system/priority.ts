/**
 * The server's worker threads (a large document's body parse and compile)
 * yield the CPU to its main thread. On a busy machine the main thread's
 * /healthz answers were not late because of work on the loop but because
 * the thread, woken by a request, waited for a CPU: the scheduler's trace
 * (perf sched_switch) of a 1M-prefix apply at load ~8 showed the main
 * thread runnable and waiting 85-246 ms in each of its longest stalls,
 * with 0-82 ms of its own work in them (docs/reliability.md). Part of that
 * wait is behind the process's own compile worker and the body parse, which
 * burn a core each for seconds.
 *
 * Linux keeps a nice value per thread: a worker raises its own (lower
 * priority) for the job it runs, so the main thread, at the process's nice,
 * preempts it when a request arrives. With autogroup or a cgroup (a systemd
 * service), the weights count within the process's group only: other
 * processes see the same process as before, and a worker alone on a core
 * runs as fast as before. PATRONUS_WORKER_NICE sets the increment (default
 * 10; 0 leaves the workers alone).
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { isMainThread } from 'node:worker_threads';

/** Nice increment of a worker thread over the process (0-19; PATRONUS_WORKER_NICE, default 10). */
export function workerNiceIncrement(): number {
  const v = process.env.PATRONUS_WORKER_NICE;
  if (v === undefined || v.trim() === '') return 10;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? Math.min(n, 19) : 10;
}

/**
 * Lowers the calling worker thread's scheduling priority by
 * workerNiceIncrement(). Best effort (another OS, /proc not mounted, a
 * seccomp filter that refuses setpriority: the thread keeps its priority);
 * never touches the main thread. Returns the thread's nice value after, or
 * undefined when unchanged.
 */
export function yieldCpuToMainThread(): number | undefined {
  const inc = workerNiceIncrement();
  if (isMainThread || inc === 0 || process.platform !== 'linux') return undefined;
  try {
    // "PID/task/TID": setpriority(PRIO_PROCESS, TID) sets one thread's nice on Linux
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0 || tid === process.pid) return undefined;
    const nice = Math.min(19, getPriority(tid) + inc);
    setPriority(tid, nice);
    return nice;
  } catch {
    return undefined;
  }
}
