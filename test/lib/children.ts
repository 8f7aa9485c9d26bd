/**
 * Waiting on child processes a test started, bounded: a child that dies or
 * stays silent fails the test with its name instead of hanging the file.
 */
import type { ChildProcess } from 'node:child_process';

/** The child's first stdout chunk; rejects when it exits first or after ms. */
export function firstOutput(child: ChildProcess, what: string, ms = 30_000): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no output within ${ms} ms`)), ms);
    child.stdout!.once('data', (d: Buffer) => {
      clearTimeout(t);
      resolve(d.toString());
    });
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      reject(new Error(`${what}: exited ${code ?? signal} before any output`));
    });
  });
}
