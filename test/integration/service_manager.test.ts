/**
 * sd_notify from Patronus (src/system/service-manager.ts through the addon's
 * sendto) received the way systemd receives it: a unix datagram socket with
 * the sender's credentials (test/lib/notify_socket.ts). The whole sequence
 * from a real `patronus serve` (READY after the rule set, RELOADING/READY
 * around SIGHUP, STOPPING) is in serve_process.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serviceManager } from '../../src/system/service-manager.js';
import { notifySocket } from '../lib/notify_socket.js';
import { missing } from '../lib/skip.js';

describe('service manager notifications (sd_notify)', { timeout: 120_000, skip: missing({ cmd: 'python3' }, { file: fileURLToPath(new URL('../../../native/build/Release/patronus_bpf.node', import.meta.url)) }) }, () => {
  it('READY, EXTEND_TIMEOUT_USEC, RELOADING, STOPPING and STATUS to a socket path, from this process; NOTIFY_SOCKET leaves the environment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pt-notify-'));
    const sock = await notifySocket(join(dir, 'notify'));
    try {
      const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: sock.path, OTHER: 'x' };
      const errors: Error[] = [];
      const m = serviceManager(env, (e) => errors.push(e));
      assert.deepEqual(env, { OTHER: 'x' }, 'children started after this do not inherit NOTIFY_SOCKET');
      m.status('reconciling');
      m.extendTimeout(120_000, 'reconciling: nftables (3/20)');
      m.ready('revision 3, listening on 127.0.0.1:9180');
      m.reloading();
      m.ready('revision 3\nsecond line');
      m.stopping();
      await sock.next((n) => n.fields.STOPPING === '1', 30_000);
      assert.deepEqual(errors, []);
      assert.ok(sock.received.every((n) => n.pid === process.pid), 'sent by this process (NotifyAccess=main)');
      assert.deepEqual(
        sock.received.map((n) => ({ ...n.fields, ...(n.fields.MONOTONIC_USEC ? { MONOTONIC_USEC: 'n' } : {}) })),
        [
          { STATUS: 'reconciling' },
          { EXTEND_TIMEOUT_USEC: '120000000', STATUS: 'reconciling: nftables (3/20)' },
          { READY: '1', STATUS: 'revision 3, listening on 127.0.0.1:9180', MAINPID: String(process.pid) },
          { RELOADING: '1', MONOTONIC_USEC: 'n', STATUS: 'reloading: checking drift' },
          { READY: '1', STATUS: 'revision 3 second line', MAINPID: String(process.pid) },
          { STOPPING: '1', STATUS: 'stopping' },
        ],
      );
      // CLOCK_MONOTONIC, as systemd compares it with its own
      const usec = Number(sock.received[3]!.fields.MONOTONIC_USEC);
      const now = Number(process.hrtime.bigint() / 1000n);
      assert.ok(usec <= now && now - usec < 60_000_000, `MONOTONIC_USEC ${usec} vs now ${now}`);
    } finally {
      await sock.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an abstract socket (@name), as systemd names its own', async () => {
    const sock = await notifySocket(`@pt-${process.pid}-notify`);
    try {
      const errors: Error[] = [];
      serviceManager({ NOTIFY_SOCKET: sock.path }, (e) => errors.push(e)).ready('up');
      const n = await sock.next((x) => x.fields.READY === '1', 30_000);
      assert.equal(n.pid, process.pid);
      assert.deepEqual(errors, []);
    } finally {
      await sock.stop();
    }
  });

  it('no NOTIFY_SOCKET: nothing is sent; a socket that is gone or malformed is reported, never thrown', () => {
    const quiet: Error[] = [];
    serviceManager({}, (e) => quiet.push(e)).ready('up');
    assert.deepEqual(quiet, []);
    const gone: Error[] = [];
    serviceManager({ NOTIFY_SOCKET: '/nonexistent/pt-notify' }, (e) => gone.push(e)).ready('up');
    assert.equal(gone.length, 1);
    assert.match(gone[0]!.message, /service manager notification "READY=1" to \/nonexistent\/pt-notify: .*ENOENT/);
    const relative: Error[] = [];
    serviceManager({ NOTIFY_SOCKET: 'run/notify' }, (e) => relative.push(e)).stopping();
    assert.match(relative[0]!.message, /to run\/notify: .*not an absolute path or an abstract socket name/);
  });
});
