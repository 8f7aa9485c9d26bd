/**
 * The reporter scripts/test.sh runs beside spec: from the runner's events it
 * names the tests that were running when a file hit the file timeout. Fed
 * the event sequence node 20 sends for a file whose second test hangs (as
 * seen from a real run), and checked against a real node --test run.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import runningReporter from '../lib/running_reporter.js';

const FILE = '/x/a.test.js';
const ev = (type: string, name: string, nesting: number, extra: object = {}) => ({ type, data: { name, nesting, file: FILE, line: 3, column: 5, ...extra } });

async function report(events: object[]): Promise<string> {
  let out = '';
  for await (const chunk of runningReporter(Readable.from(events))) out += chunk;
  return out;
}

describe('running reporter', () => {
  it('lists the suite and the test that were running when the file timed out', async () => {
    const out = await report([
      ev('test:dequeue', FILE, 0),
      ev('test:dequeue', 'suite', 0),
      ev('test:dequeue', 'fast', 1),
      ev('test:pass', 'fast', 1),
      ev('test:dequeue', 'hangs', 1),
      ev('test:fail', FILE, 0, { details: { error: { failureType: 'testTimeoutFailure', message: 'test timed out after 600000ms' } } }),
    ]);
    assert.match(out, /# ✖ \/x\/a\.test\.js hit the file timeout; running at that moment:\n# {3}suite \(line 3:5\)\n# {5}hangs \(line 3:5\)\n/);
    assert.doesNotMatch(out, /fast/);
  });

  it('says nothing for files that pass or fail otherwise', async () => {
    const out = await report([
      ev('test:dequeue', FILE, 0),
      ev('test:dequeue', 'suite', 0),
      ev('test:dequeue', 'broken', 1),
      ev('test:fail', 'broken', 1, { details: { error: { failureType: 'testCodeFailure' } } }),
      ev('test:fail', 'suite', 0, { details: { error: { failureType: 'subtestsFailed' } } }),
      ev('test:fail', FILE, 0, { details: { error: { failureType: 'subtestsFailed' } } }),
    ]);
    assert.equal(out, '');
  });

  it('in a real node --test run with a hanging test', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pt-reporter-'));
    try {
      const file = join(dir, 'hang.test.mjs');
      writeFileSync(file, "import { describe, it } from 'node:test';\ndescribe('outer', () => {\n  it('ok', () => {});\n  it('stuck here', () => new Promise(() => setInterval(() => {}, 1000)));\n});\n");
      const reporter = fileURLToPath(new URL('../lib/running_reporter.js', import.meta.url));
      // a runner of its own, not a subtest of this one (node:test marks its children with NODE_TEST_CONTEXT)
      const env = { ...process.env };
      delete env.NODE_TEST_CONTEXT;
      const r = await execa(process.execPath, ['--test', `--test-reporter=${reporter}`, '--test-reporter-destination=stdout', '--test-force-exit', '--test-timeout=3000', file], { reject: false, timeout: 50_000, env, extendEnv: false });
      assert.match(r.stdout, /hang\.test\.mjs hit the file timeout; running at that moment:\n# {3}outer \(line 2:1\)\n# {5}stuck here \(line 4:3\)/, r.stdout + r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
