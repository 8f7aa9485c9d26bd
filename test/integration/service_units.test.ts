/**
 * The init-system files in dist-files/ checked with the init system's own
 * tools: `systemd-analyze verify` (the unit loads: directives, dependencies,
 * executables) and `systemd-analyze security --offline` (hardening exposure
 * <= 5 while keeping the capabilities Patronus needs); the OpenRC script's
 * shell syntax and what its depend() declares, run with stand-ins for
 * openrc-run's functions. The process behaviour behind them (readiness
 * notification, reload, stop, daemons outliving a stop) is in
 * serve_process.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { missing } from '../lib/skip.js';

const file = (name: string) => fileURLToPath(new URL(`../../../dist-files/${name}`, import.meta.url));
const unitPath = file('patronus.service');

/** The unit as directive -> values (repeated directives and space-separated lists flattened). */
function parseUnit(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

describe('systemd unit', { timeout: 300_000, skip: missing({ cmd: 'systemd-analyze' }) }, () => {
  const unit = parseUnit(readFileSync(unitPath, 'utf8'));
  const words = (key: string) => (unit.get(key) ?? []).flatMap((v) => v.split(/\s+/));

  it('systemd-analyze verify: loads without a complaint', async () => {
    const r = await execa('systemd-analyze', ['verify', unitPath], { reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    // lines about other units on this machine are not ours to fix
    assert.deepEqual(r.stderr.split('\n').filter((l) => l.includes('patronus')), []);
  });

  it('systemd-analyze security: exposure <= 5 with the capabilities Patronus needs', async () => {
    const r = await execa('systemd-analyze', ['security', '--offline=true', '--no-pager', unitPath], { reject: false });
    const m = /Overall exposure level for patronus\.service: (\d+(?:\.\d+)?)/.exec(r.stdout);
    assert.ok(m, r.stdout + r.stderr);
    const exposure = Number(m[1]);
    assert.ok(exposure <= 5, `exposure ${exposure} > 5:\n${r.stdout}`);
    const caps = words('Service.CapabilityBoundingSet');
    for (const cap of ['CAP_NET_ADMIN', 'CAP_BPF', 'CAP_PERFMON', 'CAP_SYS_ADMIN', 'CAP_NET_RAW', 'CAP_NET_BIND_SERVICE']) assert.ok(caps.includes(cap), `${cap} kept`);
  });

  it('ordered like nftables.service: rule set before network-pre.target, daemons survive restarts, reload, readiness', () => {
    assert.deepEqual(unit.get('Unit.DefaultDependencies'), ['no']);
    assert.ok(words('Unit.Before').includes('network-pre.target'));
    assert.ok(words('Unit.Wants').includes('network-pre.target'));
    assert.ok(!words('Unit.After').includes('network-pre.target'));
    assert.ok(words('Unit.Conflicts').includes('shutdown.target') && words('Unit.Before').includes('shutdown.target'));
    assert.deepEqual(unit.get('Service.KillMode'), ['process']);
    assert.deepEqual(unit.get('Service.ExecReload'), ['/bin/kill -HUP $MAINPID']);
    // readiness: serve sends READY=1 itself once reconciled and listening (serve_process.test.ts receives it)
    assert.deepEqual(unit.get('Service.Type'), ['notify']);
    assert.deepEqual(unit.get('Service.NotifyAccess'), ['main']);
    assert.equal(unit.get('Service.ExecStartPost'), undefined);
    assert.ok(words('Install.WantedBy').includes('sysinit.target'));
  });
});

describe('OpenRC script', { timeout: 300_000, skip: missing({ cmd: 'sh' }) }, () => {
  // openrc-run's helpers as recorders: depend() and the variables say what the script declares
  const stubs = ['provide', 'need', 'use', 'before', 'after', 'want'].map((f) => `${f}() { echo "${f} $*"; }`).join('\n');
  const run = (body: string) => execa('sh', ['-c', `${stubs}\nRC_SVCNAME=patronus\n. "$1"\n. "$2"\n${body}`, 'sh', file('patronus.confd'), file('patronus.openrc')], { reject: false });

  it('parses as POSIX sh (script and conf.d)', async () => {
    for (const f of ['patronus.openrc', 'patronus.confd']) {
      const r = await execa('sh', ['-n', file(f)], { reject: false });
      assert.equal(r.exitCode, 0, `${f}: ${r.stderr}`);
    }
  });

  it('provides firewall before net, supervised by supervise-daemon, settings from conf.d, reload', async () => {
    const r = await run('depend; echo "supervisor=$supervisor"; echo "args=$command_args"; echo "extra=$extra_started_commands"; type reload >/dev/null && echo reload-defined; type start_post >/dev/null && echo start_post-defined');
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.split('\n');
    for (const want of ['provide firewall', 'before net', 'need localmount', 'supervisor=supervise-daemon', 'extra=reload', 'reload-defined', 'start_post-defined']) assert.ok(lines.includes(want), `${want} in:\n${r.stdout}`);
    assert.ok(lines.includes('args=/opt/patronus/dist/src/cli/main.js serve '), r.stdout);
    // conf.d settings reach the command line
    const custom = await execa('sh', ['-c', `${stubs}\nPATRONUS_ARGS="--listen 0.0.0.0:9443"\nPATRONUS_HOME=/srv/patronus\n. "$1"\necho "$command_args"`, 'sh', file('patronus.openrc')], { reject: false });
    assert.equal(custom.stdout.trim(), '/srv/patronus/dist/src/cli/main.js serve --listen 0.0.0.0:9443');
  });
});
