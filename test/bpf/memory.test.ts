/**
 * releaseFreedMemory (src/bpf/memory.ts): the server gives the C heap's free
 * pages back to the kernel after its start and after every apply (glibc
 * malloc_trim through the addon). It never throws, and without the addon it
 * does nothing.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { addonAvailable, projectRoot } from '../../src/bpf/addon.js';
import { releaseFreedMemory } from '../../src/bpf/index.js';

const memoryModule = pathToFileURL(path.join(projectRoot(), 'dist/src/bpf/memory.js')).href;

describe('releaseFreedMemory', { timeout: 60_000 }, () => {
  it('with the addon: trims, and says whether pages went back', () => {
    assert.ok(addonAvailable(), 'the addon is built by scripts/setup.sh');
    assert.equal(typeof releaseFreedMemory(), 'boolean');
    assert.equal(typeof releaseFreedMemory(), 'boolean');
  });

  it('without the addon: does nothing and says so', async () => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('NODE_TEST')) env[k] = v;
    env.PATRONUS_NATIVE_BINDING = '/nonexistent/patronus_bpf.node';
    const r = await execa('node', ['--input-type=module', '-e', `const { releaseFreedMemory } = await import(${JSON.stringify(memoryModule)}); console.log(releaseFreedMemory());`], { env, extendEnv: false, timeout: 30_000, reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'false');
  });
});
