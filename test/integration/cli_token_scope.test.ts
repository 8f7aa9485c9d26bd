/**
 * The CLI finds this machine's admin token by itself ($PATRONUS_STATE_DIR,
 * /var/lib/patronus, /var/lib/patronus-lab) for a server on this machine,
 * and never sends it to another host: `patronus --server http://other-node
 * status` used to hand the local admin token to whatever answered there.
 * A 401 says which token was refused, or why none was sent. Against a real
 * HTTP server that records the Authorization header it gets, on a loopback
 * and on a non-loopback address of a test namespace.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type Netns } from '../lib/netns.js';
import { missing } from '../lib/skip.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const skip = missing('netns');

// answers every request 401 and prints the Authorization header it got, one a line
const recorder = `
const http = require('node:http');
const s = http.createServer((req, res) => {
  console.log('auth=' + (req.headers.authorization ?? '(none)'));
  res.writeHead(401, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ statusCode: 401, error: 'Unauthorized', message: 'invalid token' }));
});
s.listen(9180, '0.0.0.0', () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
`;

describe('the CLI sends this machine\'s admin token only to a server on this machine', { skip, timeout: 120_000 }, () => {
  const lab = new Lab();
  let ns: Netns;
  let dir: string;
  let server: ReturnType<Netns['spawn']> | undefined;
  const seen: string[] = [];
  before(async () => {
    ns = await lab.ns('tok');
    await ns.ip('addr', 'add', '10.77.0.1/32', 'dev', 'lo');
    dir = mkdtempSync(join(tmpdir(), 'pt-tokscope-'));
    writeFileSync(join(dir, 'admin.token'), 'pat_local_admin_secret\n', { mode: 0o600 });
    server = ns.spawn('node', ['-e', recorder]);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the recording server did not start within 30 s')), 30_000);
      server!.stdout!.setEncoding('utf8');
      server!.stdout!.on('data', (chunk: string) => {
        for (const line of chunk.split('\n')) {
          if (line === 'listening') {
            clearTimeout(timer);
            resolve();
          } else if (line.startsWith('auth=')) seen.push(line.slice(5));
        }
      });
    });
  });
  after(async () => {
    server?.kill('SIGTERM');
    await server?.catch(() => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
    await lab.teardown();
  });

  /** the headers of the next `n` requests (the server's stdout may arrive after the CLI exits) */
  const nextSeen = async (n: number): Promise<string[]> => {
    const deadline = Date.now() + 30_000;
    while (seen.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return seen.splice(0);
  };
  const revisions = (serverUrl: string, env: Record<string, string> = {}) =>
    ns.nsenter('node', [cli, '--server', serverUrl, 'revisions'], { reject: false, timeout: 60_000, env: { PATRONUS_STATE_DIR: dir, PATRONUS_TOKEN: '', ...env } });

  it('loopback: the state dir\'s admin.token is sent, and a 401 names it (revisions: one request)', async () => {
    const r = await revisions('http://127.0.0.1:9180');
    assert.equal(r.exitCode, 1, r.stderr);
    assert.deepEqual(await nextSeen(1), ['Bearer pat_local_admin_secret']);
    assert.match(String(r.stderr), new RegExp(`HTTP 401: invalid token \\(the token in ${join(dir, 'admin.token')}\\)`));
  });

  it('another address: no token is sent, and the 401 says why', async () => {
    const r = await revisions('http://10.77.0.1:9180');
    assert.equal(r.exitCode, 1, r.stderr);
    assert.deepEqual(await nextSeen(1), ['(none)'], 'the local admin token went to another host');
    assert.match(String(r.stderr), /HTTP 401: invalid token \(no token: .*sent only to a server on this machine \(loopback\), not to http:\/\/10\.77\.0\.1:9180\)/);
    // an explicit --token (or $PATRONUS_TOKEN) is the operator's choice: sent
    const t = await revisions('http://10.77.0.1:9180', { PATRONUS_TOKEN: 'pat_for_that_node' });
    assert.equal(t.exitCode, 1, t.stderr);
    assert.deepEqual(await nextSeen(1), ['Bearer pat_for_that_node']);
  });
});
