/**
 * scripts/test.sh's replacement for --test-force-exit
 * (test/lib/exit_after_tests.ts), in real node --test runs: a file that
 * leaks a timer still ends, every result of a file with many tests reaches
 * the runner, a failure keeps exit code 1, and a process a test starts does
 * not load node:test.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const PRELOAD = fileURLToPath(new URL('../lib/exit_after_tests.js', import.meta.url));

describe('ending a test file without --test-force-exit', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-exit-after-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A runner of its own (not a subtest of this file's runner), with the preload as scripts/test.sh sets it. */
  const run = (files: string[]) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: `--import=${PRELOAD}` };
    delete env.NODE_TEST_CONTEXT;
    return execa(process.execPath, ['--test', '--test-reporter=tap', '--test-concurrency=2', ...files.map((f) => join(dir, f))], { reject: false, timeout: 90_000, env, extendEnv: false });
  };

  it('every result of a file of 2000 tests that leaks a timer is reported, and the file ends', { timeout: 120_000 }, async () => {
    const lines = ["import { test } from 'node:test';", 'setInterval(() => {}, 1000);'];
    for (let i = 0; i < 2000; i++) lines.push(`test('t${i}', () => {});`);
    writeFileSync(join(dir, 'many.test.mjs'), lines.join('\n'));
    writeFileSync(join(dir, 'fails.test.mjs'), "import { test } from 'node:test';\nimport assert from 'node:assert';\nsetInterval(() => {}, 1000);\ntest('broken', () => assert.equal(1, 2));\n");
    const r = await run(['many.test.mjs', 'fails.test.mjs']);
    assert.equal(r.timedOut, false, 'a leaked timer kept a file alive');
    assert.match(r.stdout, /^# tests 2001$/m, r.stdout.slice(-600));
    assert.match(r.stdout, /^# fail 1$/m);
    assert.match(r.stdout, /^not ok \d+ - broken$/m);
    assert.equal(r.exitCode, 1);
  });

  it('a node process a test starts does not load node:test', { timeout: 60_000 }, async () => {
    writeFileSync(join(dir, 'child.mjs'), "setTimeout(() => console.log('child done'), 10);\n");
    writeFileSync(
      join(dir, 'spawns.test.mjs'),
      `import { test } from 'node:test';\nimport assert from 'node:assert';\nimport { execFileSync } from 'node:child_process';\n` +
        `test('child output is its own', () => assert.equal(execFileSync(process.execPath, [${JSON.stringify(join(dir, 'child.mjs'))}], { encoding: 'utf8' }), 'child done\\n'));\n`,
    );
    const r = await run(['spawns.test.mjs']);
    assert.match(r.stdout, /^# pass 1$/m, r.stdout + r.stderr);
    assert.equal(r.exitCode, 0);
  });
});
