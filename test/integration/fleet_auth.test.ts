/**
 * Fleet commands against an etcd with authentication on (one member on
 * loopback, started here): the right user and password work, a wrong
 * password and a missing one are refused with a sentence, and a password is
 * never taken from a flag.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { missing } from '../lib/skip.js';
import { EtcdCluster } from '../lib/etcd.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

describe('fleet: etcd with authentication', { timeout: 540_000, skip: missing({ cmd: 'etcd' }, { cmd: 'etcdctl' }) }, () => {
  let etcd: EtcdCluster;
  let tmp: string;
  const fleet = async (args: string[], env: Record<string, string> = {}) => {
    const r = await execa('node', [cli, '--json', 'fleet', ...args, '--fleet', etcd.fleetUrl], { reject: false, env, timeout: 60_000 });
    let message = '';
    try {
      message = (JSON.parse(r.stdout) as { error?: { message: string } }).error?.message ?? '';
    } catch {
      /* not JSON: commander's usage error on stderr */
    }
    return { code: r.exitCode, out: `${message}${r.stdout}${r.stderr}` };
  };

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pt-fleet-auth-'));
    etcd = await EtcdCluster.start({ members: 1 });
    const ctl = (...a: string[]) => execa('etcdctl', ['--endpoints', etcd.endpoints.join(','), ...a], { env: { ETCDCTL_API: '3' } });
    await ctl('user', 'add', 'root:s3cret-root');
    await ctl('user', 'add', 'patronus:s3cret-fleet');
    await ctl('role', 'add', 'fleet');
    await ctl('role', 'grant-permission', 'fleet', '--prefix=true', 'readwrite', '/patronus/');
    await ctl('user', 'grant-role', 'patronus', 'fleet');
    await ctl('auth', 'enable');
  });
  after(async () => {
    await etcd?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the right user and password (file or environment) work; wrong or missing ones are refused clearly', async () => {
    const file = join(tmp, 'password');
    writeFileSync(file, 's3cret-fleet\n', { mode: 0o600 });
    const ok = await fleet(['status', '--fleet-user', 'patronus', '--fleet-password-file', file]);
    assert.equal(ok.code, 0, ok.out);
    const env = await fleet(['nodes', '--fleet-user', 'patronus'], { PATRONUS_FLEET_PASSWORD: 's3cret-fleet' });
    assert.equal(env.code, 0, env.out);
    const anonymous = await fleet(['status']);
    assert.notEqual(anonymous.code, 0);
    assert.match(anonymous.out, /user name is empty|permission denied|auth/i);
    const wrong = await fleet(['status', '--fleet-user', 'patronus'], { PATRONUS_FLEET_PASSWORD: 'nope' });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.out, /authentication failed/i);
    const none = await fleet(['status', '--fleet-user', 'patronus']);
    assert.notEqual(none.code, 0);
    assert.match(none.out, /user "patronus" needs a password \(--fleet-password-file or \$PATRONUS_FLEET_PASSWORD\)/);
    const flag = await fleet(['status', '--fleet-user', 'patronus', '--fleet-password', 'x']);
    assert.notEqual(flag.code, 0, 'no password flag');
  });
});
