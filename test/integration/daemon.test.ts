/**
 * Direct daemon supervision inside a lab namespace, with real processes.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readlinkSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';
import { Host } from '../../src/system/host.js';
import { DaemonError, daemonPid, startDaemon, stopDaemon, signalDaemon } from '../../src/services/common/daemon.js';

describe('daemon supervision', { timeout: 300_000, skip: missing('netns') }, () => {
  const lab = new Lab();
  let ns: Netns;
  let dir: string;
  let host: Host;
  before(async () => {
    ns = await lab.ns('d');
    dir = mkdtempSync(path.join(os.tmpdir(), 'pt-daemon-'));
    host = new Host({ netns: ns.name, stateDir: dir });
  });
  after(async () => {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts in the namespace, is adopted on a second start, stops', async () => {
    const spec = { name: 'sleeper', command: 'sleep', args: ['300'], pidFile: path.join(dir, 's.pid'), logFile: path.join(dir, 's.log') };
    const pid = await startDaemon(host, spec);
    assert.equal(readlinkSync(`/proc/${pid}/ns/net`), await nsIdentity(ns));
    assert.equal(await startDaemon(host, spec), pid, 'second start adopts the running instance');
    await stopDaemon(spec);
    assert.equal(daemonPid(spec.pidFile, 'sleep'), undefined);
    // gone, or an unreaped zombie (our own child) that daemonPid no longer counts
    assert.ok(!existsSync(`/proc/${pid}/cmdline`) || daemonPid(spec.pidFile) === undefined);
    assert.throws(() => signalDaemon(spec, 'SIGHUP'), /not running/);
  });

  it('a daemon that exits during start-up fails with its log', async () => {
    const spec = { name: 'broken', command: 'sh', args: ['-c', 'echo "config error on line 3" >&2; exit 1'], pidFile: path.join(dir, 'b.pid'), logFile: path.join(dir, 'b.log') };
    await assert.rejects(startDaemon(host, spec), (e: unknown) => e instanceof DaemonError && /exited with status 1/.test(e.message) && /config error on line 3/.test(e.log));
  });

  it('a daemon that never gets ready is stopped and reported', async () => {
    const spec = { name: 'slow', command: 'sleep', args: ['300'], pidFile: path.join(dir, 'n.pid'), logFile: path.join(dir, 'n.log'), ready: async () => false, readyTimeoutMs: 300 };
    await assert.rejects(startDaemon(host, spec), (e: unknown) => e instanceof DaemonError && /timed out/.test(e.message));
    assert.equal(daemonPid(spec.pidFile, 'sleep'), undefined);
  });
});

async function nsIdentity(ns: Netns): Promise<string> {
  const { stdout } = await ns.exec('readlink', ['/proc/self/ns/net']);
  return stdout.trim();
}
