/**
 * The addon is loaded lazily behind an injectable binding (issue 14): the CLI's
 * help, validate of a document without a fast path, plan rendering and the
 * unit tests run with the addon absent; an injected binding is used instead
 * of the built one; and a fast-path document says clearly that the addon is
 * missing. The addon is made unavailable by pointing PATRONUS_NATIVE_BINDING
 * at a file that does not exist.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { projectRoot, setNativeBinding, addonAvailable, nativeBindingPath } from '../../src/bpf/addon.js';
import type { NativeAddon } from '../../src/bpf/native.js';
import { probes } from '../../src/bpf/index.js';

const root = projectRoot();
const cli = path.join(root, 'dist/src/cli/main.js');
const ABSENT = '/nonexistent/patronus_bpf.node';

/** The environment of a process without the addon (and without the test-only netns guard: validate is read-only). */
function withoutAddon(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'PATRONUS_REQUIRE_NETNS' && !k.startsWith('NODE_TEST')) env[k] = v;
  env.PATRONUS_NATIVE_BINDING = ABSENT;
  return env;
}

const FIREWALL_ONLY = `version: 1
firewall:
  rules:
    - name: allow-ping
      direction: input
      protocol: icmp
      action: accept
`;

const WITH_FASTPATH = `version: 1
fastpath:
  interfaces:
    - name: lo
  rules:
    - name: drop-chargen
      protocol: udp
      destinationPorts: 19
      action: drop
`;

describe('the CLI and unit tests without the native addon', { timeout: 540_000 }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pt-nobinding-'));
  const stateDir = path.join(dir, 'state');
  const doc = (name: string, text: string) => {
    const f = path.join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it('--help prints usage', async () => {
    const r = await execa('node', [cli, '--help'], { env: withoutAddon(), extendEnv: false, reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /Usage: patronus/);
  });

  it('validate and plan of a document without a fast path succeed', async () => {
    const f = doc('fw.yaml', FIREWALL_ONLY);
    const v = await execa('node', [cli, '--direct', '--state-dir', stateDir, 'validate', f], { env: withoutAddon(), extendEnv: false, reject: false });
    assert.equal(v.exitCode, 0, v.stderr);
    assert.match(v.stdout, /valid/);
    const p = await execa('node', [cli, '--direct', '--state-dir', stateDir, '--json', 'plan', f], { env: withoutAddon(), extendEnv: false, reject: false });
    assert.equal(p.exitCode, 0, p.stderr);
    assert.ok(JSON.parse(p.stdout));
  });

  it('validate of a fast-path document names the missing addon and its path (exit 2, no crash)', async () => {
    const f = doc('fp.yaml', WITH_FASTPATH);
    const r = await execa('node', [cli, '--direct', '--state-dir', stateDir, 'validate', f], { env: withoutAddon(), extendEnv: false, reject: false });
    assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /native BPF addon is not available/);
    assert.ok(r.stderr.includes(ABSENT), r.stderr);
  });

  it('every unit test passes', async () => {
    const unit = path.join(root, 'dist/test/unit');
    const files = readdirSync(unit).filter((f) => f.endsWith('.test.js')).map((f) => path.join(unit, f));
    // every unit file, one after another (107 s at load 19 on the 2-core machine): bounded per file and in all
    const r = await execa('node', ['--test', '--test-concurrency=1', '--test-force-exit', '--test-timeout=240000', ...files], { env: withoutAddon(), extendEnv: false, reject: false, timeout: 480_000 });
    assert.equal(r.exitCode, 0, r.stdout.split('\n').filter((l) => /not ok|Error/.test(l)).slice(0, 20).join('\n'));
  });

  it('cleans up', () => rmSync(dir, { recursive: true, force: true }));
});

describe('an injected binding', { timeout: 300_000 }, () => {
  it('is used instead of the built addon, and cannot be swapped once loaded', () => {
    // This file never touched the addon before this point, so injection is still open.
    let errorClasses = 0;
    const fake = {
      setErrorClasses: () => void errorClasses++,
      possibleCpus: () => 77,
    } as unknown as NativeAddon;
    setNativeBinding(fake);
    assert.equal(probes.possibleCpus(), 77);
    assert.equal(errorClasses, 1);
    assert.equal(addonAvailable(), true);
    assert.throws(() => setNativeBinding('/elsewhere.node'), /already loaded/);
    assert.match(nativeBindingPath(), /patronus_bpf\.node$/);
  });
});
