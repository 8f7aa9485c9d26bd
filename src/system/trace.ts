/**
 * Phase timestamps for profiling an apply end to end (CLI, request, body
 * parse, compile worker, lock, kernel writes, store): with PATRONUS_TRACE set
 * to a file, each mark appends one line `EPOCH_MS PID/THREAD LABEL` to it
 * (every process and worker thread of one apply writes to the same file, on
 * one clock). Unset (always, outside a profiling session): one env check.
 */
import { appendFileSync } from 'node:fs';
import { threadId } from 'node:worker_threads';

const file = process.env.PATRONUS_TRACE;

/** Appends a mark to $PATRONUS_TRACE (nothing when unset). */
export function trace(label: string): void {
  if (!file) return;
  try {
    appendFileSync(file, `${(performance.timeOrigin + performance.now()).toFixed(1)} ${process.pid}/${threadId} ${label}\n`);
  } catch {
    // a trace never fails what it traces
  }
}

/** The process's start (node's own), as a mark: what the first `trace` after it cost. */
export function traceProcessStart(label: string): void {
  if (!file) return;
  try {
    appendFileSync(file, `${performance.timeOrigin.toFixed(1)} ${process.pid}/${threadId} ${label}\n`);
  } catch {
    // as above
  }
}

/**
 * With PATRONUS_TRACE set, marks every stretch of more than `overMs` during
 * which this thread's event loop did not run a 5 ms timer (`loop: gap N ms`,
 * stamped at the gap's end): the server's stalls on the same clock as the
 * phases around them. Unref'd; does nothing when tracing is off.
 */
export function traceLoopGaps(overMs = 25): void {
  if (!file) return;
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const gap = now - last;
    last = now;
    if (gap > overMs) trace(`loop: gap ${gap.toFixed(0)} ms`);
  }, 5).unref();
}
