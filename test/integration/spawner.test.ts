/**
 * The spawner process (src/system/spawner.ts): serve's Host.run has its
 * commands started by a small helper process, with the same results as execa
 * on the calling thread (stdout/stderr text with the final newline stripped, exit
 * codes, input, environment, working directory, timeouts, a missing command,
 * CommandError with reject), and never keeps the process alive.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host, CommandError } from '../../src/system/host.js';
import { Lab } from '../lib/netns.js';
import { missing } from '../lib/skip.js';

const skip = missing('netns', { cmd: 'nsenter' });
import { enableSpawner, runHere, runInSpawner, spawnerEnabled, spawnerPid } from '../../src/system/spawner.js';

describe('spawner process', { timeout: 120_000, skip }, () => {
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
    enableSpawner();
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

  it('a large input (over 1 MiB) reaches the command whole through a temp file the helper removes', async () => {
    enableSpawner();
    const leftovers = () => readdirSync(tmpdir()).filter((f) => f.startsWith(`patronus-spawn-${process.pid}-`));
    // non-ASCII and a size that is not a round number of anything
    const input = `${'10.0.0.0/24, é\n'.repeat(200_001)}end`;
    const expected = createHash('sha256').update(input).digest('hex');
    const r = await host.run('sha256sum', [], { input, timeout: 60_000 });
    assert.equal(r.stdout.split(' ')[0], expected);
    // and many at once, each to its own command
    const all = await Promise.all(Array.from({ length: 4 }, (_, i) => host.run('wc', ['-c'], { input: `${i}`.repeat(1_500_000 + i), timeout: 60_000 })));
    assert.deepEqual(all.map((x) => Number(x.stdout.trim())), [1_500_000, 1_500_001, 1_500_002, 1_500_003]);
    assert.deepEqual(leftovers(), [], 'no input file is left in the temp dir');
  });

  it('rejects with CommandError, times out, and reports a missing command', async () => {
    enableSpawner();
    await assert.rejects(host.run('sh', ['-c', 'echo bad >&2; exit 2'], { timeout: 30_000 }), (e: Error) => e instanceof CommandError && /exited 2: bad/.test(e.message));
    const slow = await host.run('sleep', ['30'], { reject: false, timeout: 200 });
    assert.notEqual(slow.exitCode, 0);
    assert.match(slow.stderr, /timed out after 200 ms \(killed\)/);
    const missing = await runInSpawner({ file: 'pt-no-such-command', args: [], timeout: 10_000, env: { ...process.env } });
    assert.equal(missing.exitCode, -1);
    assert.match(missing.stderr, /ENOENT/);
    // the helper killed: the next command starts a new one
    const pid = spawnerPid();
    assert.ok(pid && pid !== process.pid);
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 20_000;
    while (spawnerPid() === pid && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.notEqual(spawnerPid(), pid, 'the dead helper was noticed');
    assert.equal((await host.run('sh', ['-c', 'echo again'], { timeout: 30_000 })).stdout, 'again');
    assert.ok(spawnerPid() && spawnerPid() !== pid);
    // the same on this thread (the fallback when the helper cannot start)
    const here = await runHere({ file: 'pt-no-such-command', args: [], timeout: 10_000, env: { ...process.env } });
    assert.equal(here.exitCode, -1);
    assert.match(here.stderr, /ENOENT/);
  });
});
