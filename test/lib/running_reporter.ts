/**
 * A node:test reporter that says where a test file got stuck. scripts/test.sh
 * runs it beside the spec reporter. It follows `test:dequeue` (sent by the
 * file's process live, when a test begins) and `test:pass`/`test:fail` (when
 * it ends), so at any moment it knows which tests of each file are running.
 * It prints
 *   - a line for every test still running after STALL_MS, once per test;
 *   - when a file fails on the runner's file timeout (--test-timeout), the
 *     tests that were running in it at that moment, with how long.
 * The spec reporter alone prints only "test timed out" for such a file: a
 * test's events reach the spec reporter only once the test finishes.
 * The runner passes on a file's events live only while the files before it
 * are done; a later file's events come in a burst when its turn comes, so a
 * stall there is noticed late (the timeout listing is right either way).
 */
import type { Readable } from 'node:stream';

const STALL_MS = Number(process.env.PATRONUS_TEST_STALL_MS ?? 180_000);

interface Running {
  name: string;
  nesting: number;
  since: number;
  where: string;
  warned: boolean;
}

interface TestEventData {
  name: string;
  nesting: number;
  file?: string;
  line?: number;
  column?: number;
  details?: { error?: { failureType?: string; message?: string } };
}

export default async function* runningReporter(source: Readable): AsyncGenerator<string> {
  // per file: the tests begun and not yet ended, outermost first
  const running = new Map<string, Running[]>();
  const path = (file: string, list: Running[], upTo: Running) => list.slice(0, list.indexOf(upTo) + 1).filter((r) => r.name !== file).map((r) => r.name).join(' > ');
  const stalled = function* (): Generator<string> {
    const now = Date.now();
    for (const [file, list] of running) {
      for (const r of list) {
        if (r.warned || now - r.since < STALL_MS || r.name === file) continue;
        // only the innermost running test is the one that is stuck
        if (list.indexOf(r) < list.length - 1) continue;
        r.warned = true;
        yield `# ⏳ still running after ${Math.round((now - r.since) / 1000)} s: ${file}: ${path(file, list, r)} (line ${r.where})\n`;
      }
    }
  };
  const events = (source as AsyncIterable<{ type: string; data: TestEventData }>)[Symbol.asyncIterator]();
  let next = events.next();
  let timer: NodeJS.Timeout | undefined;
  try {
    for (;;) {
      // wake up every few seconds even when no event comes (a stuck test sends none)
      const tick = new Promise<'tick'>((r) => (timer = setTimeout(() => r('tick'), 5_000)));
      const got = await Promise.race([next, tick]);
      clearTimeout(timer);
      yield* stalled();
      if (got === 'tick') continue;
      if (got.done) break;
      next = events.next();
      const ev = got.value;
      const d = ev.data;
      if (!d?.file) continue;
      const list = running.get(d.file) ?? [];
      if (ev.type === 'test:dequeue') {
        // a test at nesting N begins once every earlier test at N or deeper has ended
        running.set(d.file, [...list.filter((r) => r.nesting < d.nesting || r.name === d.file), { name: d.name, nesting: d.nesting, since: Date.now(), where: `${d.line ?? '?'}:${d.column ?? '?'}`, warned: false }]);
      } else if (ev.type === 'test:pass' || ev.type === 'test:fail') {
        if (ev.type === 'test:fail' && d.name === d.file && d.details?.error?.failureType === 'testTimeoutFailure') {
          const inner = list.filter((r) => r.name !== d.file);
          const lines = inner.map((r) => `#   ${'  '.repeat(r.nesting)}${r.name} (line ${r.where})`);
          yield `# ✖ ${d.file} hit the file timeout; running at that moment:\n${lines.length ? lines.join('\n') : '#   (no test had begun: stuck while loading the file or in a top-level hook)'}\n`;
        }
        if (d.name === d.file) running.delete(d.file);
        else {
          const i = list.findLastIndex((r) => r.name === d.name && r.nesting === d.nesting);
          if (i >= 0) list.splice(i);
        }
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
