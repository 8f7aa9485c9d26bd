/**
 * The spawner thread (src/system/spawner.ts): serve's Host.run starts its
 * commands from a worker thread, with the same results as execa on the
 * calling thread (stdout/stderr text with the final newline stripped, exit
 * codes, input, environment, working directory, timeouts, a missing command,
 * CommandError with reject), and never keeps the process alive.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, CommandError } from '../../src/system/host.js';
import { Lab } from '../lib/netns.js';
import { enableSpawnerThread, runHere, runInSpawner, spawnerEnabled } from '../../src/system/spawner.js';

describe('spawner thread', { timeout: 120_000 }, () => {
  const lab = new Lab();
  let host: Host;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pt-spawner-'));
    host = new Host({ netns: (await lab.ns('sp')).name, stateDir: dir });
  });
  after(async () => {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives Host.run the same results as spawning on this thread', async () => {
    const cases: [string, string[], { input?: string; env?: Record<string, string>; cwd?: string; reject?: boolean }][] = [
      ['sh', ['-c', 'printf "a\\nb\\n"; printf "warn\\n" >&2'], {}],
      ['sh', ['-c', 'printf "no newline"'], {}],
      ['sh', ['-c', 'printf "two\\n\\n"'], {}],
      ['sh', ['-c', 'exit 3'], { reject: false }],
      ['sh', ['-c', 'echo "$PT_SPAWNER_X"'], { env: { PT_SPAWNER_X: 'from env' } }],
      ['pwd', [], { cwd: '/' }],
      ['cat', [], { input: 'line 1\nline 2\n' }],
      ['sh', ['-c', 'printf "\\303\\251t\\303\\251"'], {}], // UTF-8
      ['ip', ['-j', 'link', 'show', 'dev', 'lo'], {}], // inside the host's namespace (nsenter)
    ];
    const direct = [];
    for (const [cmd, args, opts] of cases) direct.push(await host.run(cmd, args, { reject: false, timeout: 30_000, ...opts }));
    enableSpawnerThread();
    assert.equal(spawnerEnabled(), true);
    const viaThread = [];
    for (const [cmd, args, opts] of cases) viaThread.push(await host.run(cmd, args, { reject: false, timeout: 30_000, ...opts }));
    assert.deepEqual(viaThread, direct);
    assert.deepEqual(viaThread[0], { stdout: 'a\nb', stderr: 'warn', exitCode: 0 });
    assert.equal(viaThread[3]!.exitCode, 3);
    assert.equal(viaThread[6]!.stdout, 'line 1\nline 2');
    // without input, stdin is closed (execa leaves it open: a command reading it would wait for its timeout)
    assert.deepEqual(await host.run('cat', [], { timeout: 30_000 }), { stdout: '', stderr: '', exitCode: 0 });
    // many at once: each answer goes to its own caller
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => host.run('sh', ['-c', `echo ${i}`], { timeout: 30_000 })));
    assert.deepEqual(many.map((r) => r.stdout), Array.from({ length: 20 }, (_, i) => String(i)));
  });

  it('rejects with CommandError, times out, and reports a missing command', async () => {
    enableSpawnerThread();
    await assert.rejects(host.run('sh', ['-c', 'echo bad >&2; exit 2'], { timeout: 30_000 }), (e: Error) => e instanceof CommandError && /exited 2: bad/.test(e.message));
    const slow = await host.run('sleep', ['30'], { reject: false, timeout: 200 });
    assert.notEqual(slow.exitCode, 0);
    assert.match(slow.stderr, /timed out after 200 ms \(killed\)/);
    const missing = await runInSpawner({ file: 'pt-no-such-command', args: [], timeout: 10_000, env: { ...process.env } });
    assert.equal(missing.exitCode, -1);
    assert.match(missing.stderr, /ENOENT/);
    // the same on this thread (the fallback when the worker cannot start)
    const here = await runHere({ file: 'pt-no-such-command', args: [], timeout: 10_000, env: { ...process.env } });
    assert.equal(here.exitCode, -1);
    assert.match(here.stderr, /ENOENT/);
  });
});
