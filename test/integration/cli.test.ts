/**
 * The `patronus` CLI as an operator runs it (a child process): --direct on
 * the store and a test namespace, and over REST against a server running in
 * this process. Exit codes: 0 ok, 2 rejected configuration (or request, flag,
 * existing name), 1 other errors; plan --detailed-exitcode 0/1/2 like
 * terraform; --json makes errors JSON too. Also: set-up puts `patronus` on
 * PATH, --version.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { missing } from '../lib/skip.js';
import { controlLab, addresses, type ControlLab } from '../lib/control.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns');
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

describe('patronus CLI without a server', { timeout: 300_000 }, () => {
  it('--version: the package version and the checkout\'s git describe', async () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const git = await execa('git', ['-c', `safe.directory=${repoRoot.replace(/\/$/, '')}`, '-C', repoRoot, 'describe', '--tags', '--always', '--dirty'], { reject: false });
    for (const flag of ['--version', '-V']) {
      const r = await execa('node', [cli, flag], { reject: false });
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, `patronus ${pkg.version}${git.exitCode === 0 ? ` (${git.stdout.trim()})` : ''}`);
    }
  });

  it('set-up puts an executable `patronus` on PATH and leaves another checkout\'s link alone', async () => {
    const bin = mkdtempSync(join(tmpdir(), 'pt-bin-'));
    const install = () => execa('bash', [join(repoRoot, 'scripts/install-cli.sh')], { env: { PATRONUS_BIN_DIR: bin }, reject: false });
    try {
      const r = await install();
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(realpathSync(join(bin, 'patronus')), realpathSync(cli));
      assert.equal(statSync(cli).mode & 0o755, 0o755);
      const v = await execa('patronus', ['--version'], { env: { PATH: `${bin}:${process.env.PATH}` }, reject: false });
      assert.equal(v.exitCode, 0, v.stderr);
      assert.match(v.stdout, /^patronus \d+\.\d+\.\d+/);
      assert.equal((await install()).exitCode, 0, 'a second run keeps the link');
      // a link into another checkout that exists stays; a dangling one is replaced
      const other = join(bin, 'other-main.js');
      writeFileSync(other, '#!/usr/bin/env node\n');
      rmSync(join(bin, 'patronus'));
      symlinkSync(other, join(bin, 'patronus'));
      const kept = await install();
      assert.equal(kept.exitCode, 0, kept.stderr);
      assert.match(kept.stderr, /leaving .*patronus alone: it points to another checkout/);
      assert.equal(realpathSync(join(bin, 'patronus')), other);
      rmSync(other);
      assert.equal((await install()).exitCode, 0);
      assert.equal(realpathSync(join(bin, 'patronus')), realpathSync(cli));
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('token add of an existing name: a sentence and exit 2, JSON under --json; the store stays healthy', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'pt-tokens-'));
    const tok = (...args: string[]) => execa('node', [cli, '--state-dir', stateDir, ...args], { reject: false, timeout: 120_000 });
    try {
      const first = await tok('token', 'add', 'ops');
      assert.equal(first.exitCode, 0, first.stderr);
      assert.match(first.stdout, /^pat_[\w-]+$/);
      const again = await tok('token', 'add', 'ops');
      assert.equal(again.exitCode, 2);
      assert.equal(again.stderr.trim(), 'patronus: a token named "ops" already exists (remove it first: patronus token remove ops)');
      assert.doesNotMatch(again.stderr, /SQLITE|UNIQUE|constraint/i);
      const json = await tok('--json', 'token', 'add', 'ops');
      assert.equal(json.exitCode, 2);
      assert.equal(json.stderr, '');
      assert.deepEqual(JSON.parse(json.stdout), { error: { kind: 'rejected', message: 'a token named "ops" already exists (remove it first: patronus token remove ops)' } });
      const list = JSON.parse((await tok('--json', 'token', 'list')).stdout) as { name: string }[];
      assert.deepEqual(list.map((t) => t.name), ['ops']);
      const added = JSON.parse((await tok('--json', 'token', 'add', 'ci')).stdout) as { name: string; token: string };
      assert.equal(added.name, 'ci');
      assert.match(added.token, /^pat_/);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('user add without --lab while only the lab has a store: refused (exit 2), naming both stores; nothing created', async (t) => {
    // a private mount namespace with a tmpfs on /var/lib: the host's state dirs are never touched
    const script = [
      'set -e',
      'unset PATRONUS_STATE_DIR PATRONUS_TOKEN',
      'mount -t tmpfs pt-cli-varlib /var/lib',
      'node "$1" --state-dir /var/lib/patronus-lab token add lab >/dev/null',
      'set +e',
      'echo pw-newcomer-123 | node "$1" user add alice --role operator; echo "rc=$?"',
      'test -e /var/lib/patronus && echo "host store made" || echo "no host store"',
      'echo pw-newcomer-123 | node "$1" --lab user add alice --role operator; echo "rc=$?"',
      'node "$1" --lab user list',
      // an empty $PATRONUS_STATE_DIR is unset, not a store in the working directory
      'cd "$(mktemp -d)"',
      'PATRONUS_STATE_DIR= node "$1" --lab token list >/dev/null',
      'test -e patronus.db && echo "store in cwd" || echo "no store in cwd"',
    ].join('\n');
    const r = await execa('unshare', ['-m', '--propagation', 'private', 'bash', '-c', script, 'bash', cli], { reject: false, timeout: 120_000 });
    if (r.exitCode !== 0 && /unshare|mount/.test(r.stderr) && !process.env.CI) return t.skip(`no private mount namespace here: ${r.stderr.trim()}`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /patronus: no store in \/var\/lib\/patronus \(no server has run with it\), but the lab's is in \/var\/lib\/patronus-lab: add --lab/);
    const lines = r.stdout.split('\n');
    assert.deepEqual(lines.slice(0, 4), ['rc=2', 'no host store', 'user alice (operator) created', 'rc=0'], r.stdout);
    assert.match(r.stdout, /^alice\s+operator/m);
    assert.match(r.stdout, /^no store in cwd$/m);
  });

  it('usage errors and bad flag values exit 2 before any request; JSON under --json', async () => {
    const run = (...args: string[]) => execa('node', [cli, '--server', 'http://127.0.0.1:1', ...args], { reject: false, timeout: 120_000 });
    const unknown = await run('status', '--bogus');
    assert.equal(unknown.exitCode, 2);
    assert.match(unknown.stderr, /unknown option '--bogus'/);
    const missingArg = await run('--json', 'apply');
    assert.equal(missingArg.exitCode, 2);
    const j = JSON.parse(missingArg.stdout) as { error: { kind: string; code: string; message: string } };
    assert.equal(j.error.kind, 'rejected');
    assert.equal(j.error.code, 'commander.missingArgument');
    assert.match(j.error.message, /missing required argument 'file'/);
    assert.equal(missingArg.stderr, '');
    // checked by the CLI (the server at port 1 is never asked: that would exit 1)
    const seconds = await run('apply', '-', '--confirm-within', 'soon');
    assert.equal(seconds.exitCode, 2);
    assert.match(seconds.stderr, /option '--confirm-within <seconds>' argument 'soon' is invalid\. "soon" is not a positive number of seconds/);
    for (const args of [['revisions', '-n', '0'], ['revisions', '-n', '5000'], ['rollback', '--to', 'x']]) {
      const r = await run(...args);
      assert.equal(r.exitCode, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /is not a whole number from 1 to/);
    }
    // serve's flags too: refused before anything starts, naming the flag
    for (const [flag, value, why] of [
      ['--listen', '9180', /is not host:port/],
      ['--listen', '127.0.0.1:70000', /port 70000 of "127\.0\.0\.1:70000" is not from 1 to 65535/],
      ['--listen', '[nope]:9180', /is not host:port/],
      ['--listen', 'bad_host:9180', /"bad_host" in "bad_host:9180" is not an IP address or host name/],
      ['--keep-revisions', '-3', /is not a whole number of revisions/],
      ['--keep-revisions', 'many', /is not a whole number of revisions/],
      ['--keep-days', 'week', /is not a number of days/],
    ] as const) {
      const r = await run('serve', flag, value);
      assert.equal(r.exitCode, 2, `serve ${flag} ${value}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`option '${flag} <[^>]+>' argument '${value.replace(/[[\]().*+?^$|]/g, '\\$&')}' is invalid`));
      assert.match(r.stderr, why);
    }
    const servJson = await run('--json', 'serve', '--listen', 'x');
    assert.equal(servJson.exitCode, 2);
    assert.match((JSON.parse(servJson.stdout) as { error: { message: string } }).error.message, /--listen <host:port>' argument 'x' is invalid/);
    const unreachable = await run('--json', 'status');
    assert.equal(unreachable.exitCode, 1);
    assert.match((JSON.parse(unreachable.stdout) as { error: { kind: string; message: string } }).error.message, /cannot reach the Patronus server at http:\/\/127\.0\.0\.1:1/);
  });

  it('bash completion from the command tree: commands, subcommands, options, option values', async () => {
    const script = await execa('node', [cli, 'completion', 'bash'], { reject: false });
    assert.equal(script.exitCode, 0, script.stderr);
    const dir = mkdtempSync(join(tmpdir(), 'pt-comp-'));
    try {
      const f = join(dir, 'patronus.bash');
      writeFileSync(f, script.stdout);
      // complete WORDS... (the last one is the word being completed), as bash would call the function
      const complete = async (...words: string[]) => {
        const r = await execa('bash', ['-c', '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _patronus; printf "%s\\n" "${COMPREPLY[@]}"', 'bash', f, 'patronus', ...words], { cwd: dir, reject: false });
        assert.equal(r.exitCode, 0, r.stderr);
        return r.stdout.split('\n').filter(Boolean).sort();
      };
      assert.deepEqual(await complete('pl'), ['plan']);
      assert.deepEqual(await complete('token', ''), ['add', 'list', 'remove', 'role']);
      assert.deepEqual(await complete('user', ''), ['add', 'list', 'passwd', 'remove', 'role']);
      assert.deepEqual(await complete('--server', 'http://127.0.0.1:9180', 'st'), ['status']);
      assert.deepEqual(await complete('plan', '--de'), ['--detailed-exitcode']);
      assert.deepEqual(await complete('--json', 'revisions', '-'), ['--help', '--limit', '-n']);
      // an argument or option value: file names
      assert.deepEqual(await complete('apply', 'patronus.b'), ['patronus.bash']);
      assert.deepEqual(await complete('--state-dir', 'patr'), ['patronus.bash']);
      const zsh = await execa('node', [cli, 'completion', 'zsh'], { reject: false });
      assert.match(zsh.stdout, /^#compdef patronus\n[^]*bashcompinit[^]*complete -o filenames -F _patronus patronus/);
      const fish = await execa('node', [cli, 'completion', 'fish'], { reject: false });
      assert.equal(fish.exitCode, 2);
      assert.match(fish.stderr, /"fish" is not a supported shell \(bash, zsh\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('wait-ready gives up with exit 1 when nothing answers', async () => {
    const r = await execa('node', [cli, '--server', 'http://127.0.0.1:1', 'wait-ready', '--timeout', '1'], { reject: false });
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /http:\/\/127\.0\.0\.1:1\/healthz did not answer within 1 s/);
  });
});

describe('patronus CLI', { timeout: 300_000, skip }, () => {
  let L: ControlLab;
  const file = (name: string, text: string) => {
    const p = join(L.stateDir, name);
    writeFileSync(p, text);
    return p;
  };
  const direct = (...args: string[]) => execa('node', [cli, '--direct', '--netns', L.fw.name, '--state-dir', join(L.stateDir, 'direct'), ...args], { reject: false, timeout: 120_000 });

  before(async () => (L = await controlLab()));
  after(async () => L?.teardown());

  it('validate lists every problem as FILE:LINE:COL: path: message and exits 2', async () => {
    const bad = file('bad.yaml', 'interfaces:\n  - name: wan0\n    addresses: [10.0.0.1/99]\n    mtu: 1\n');
    const r = await direct('validate', bad);
    assert.equal(r.exitCode, 2, r.stderr);
    assert.match(r.stderr, /^\S*bad\.yaml:3:17: interfaces\[0\]\.addresses\[0\]: "10\.0\.0\.1\/99": prefix length must be 0-32$/m);
    assert.match(r.stderr, /^\S*bad\.yaml:4:10: interfaces\[0\]\.mtu: /m);
    const syntax = await direct('validate', file('syntax.yaml', 'interfaces: [\n'));
    assert.equal(syntax.exitCode, 2);
    assert.match(syntax.stderr, /syntax\.yaml:\d+:\d+: invalid YAML/);
    // --json: the same issues as data on stdout, nothing on stderr
    const json = await direct('--json', 'validate', bad);
    assert.equal(json.exitCode, 2);
    assert.equal(json.stderr, '');
    const e = JSON.parse(json.stdout) as { error: { kind: string; message: string; issues: { path: string; message: string }[] } };
    assert.equal(e.error.kind, 'rejected');
    assert.ok(e.error.issues.some((i) => i.path === 'interfaces[0].addresses[0]' && /prefix length must be 0-32/.test(i.message)), json.stdout);
    assert.ok(e.error.issues.some((i) => i.path === 'interfaces[0].mtu'), json.stdout);
    assert.ok(e.error.issues.some((i) => i.path === 'interfaces[0].mtu' && JSON.stringify([(i as { line?: number }).line, (i as { column?: number }).column]) === '[4,10]'), json.stdout);
  });

  it('validate --direct changes nothing: no state database is created', async () => {
    const fresh = join(L.stateDir, 'never-created');
    const ok = file('ok.yaml', 'interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [10.70.0.1/24]\nfirewall:\n  enabled: false\n');
    const r = await execa('node', [cli, '--direct', '--netns', L.fw.name, '--state-dir', fresh, 'validate', ok], { reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(existsSync(join(fresh, 'patronus.db')), false, 'validate created a state database');
  });

  it('--direct: apply, plan, revisions, rollback', async () => {
    const one = file('one.yaml', 'interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [10.50.0.1/24]\nfirewall:\n  enabled: false\n');
    const two = file('two.json', JSON.stringify({ interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['10.60.0.1/24'] }], firewall: { enabled: false } }));
    const a = await direct('apply', one, '-m', 'first');
    assert.equal(a.exitCode, 0, a.stderr);
    assert.match(a.stdout, /revision 1: committed/);
    assert.match(a.stderr, /applying interfaces \(\d+\/\d+\) \.\.\. ok/);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.50.0.1/24', '192.0.2.2/24']);
    const plan = await direct('--json', 'plan', two);
    assert.equal(plan.exitCode, 0, plan.stderr);
    assert.deepEqual(JSON.parse(plan.stdout).summary, { add: 1, remove: 1, change: 0, reload: 0, restart: 0, start: 0, stop: 0 });
    assert.equal((await direct('apply', two, '-m', 'second')).exitCode, 0);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.60.0.1/24', '192.0.2.2/24']);
    const rb = await direct('rollback');
    assert.equal(rb.exitCode, 0, rb.stderr);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.50.0.1/24', '192.0.2.2/24']);
    const revs = JSON.parse((await direct('--json', 'revisions')).stdout) as { id: number; state: string; message: string }[];
    assert.deepEqual(revs.map((r) => [r.id, r.state, r.message]), [
      [3, 'committed', 'rollback to revision 1'],
      [2, 'committed', 'second'],
      [1, 'committed', 'first'],
    ]);
    const table = await direct('revisions');
    assert.match(table.stdout, /^id\s+state\s+created\s+author\s+message\n--/);
    // the author of a --direct revision is the Unix user, also without $USER (was "cli")
    const authors = JSON.parse((await direct('--json', 'revisions')).stdout) as { author: string }[];
    assert.deepEqual([...new Set(authors.map((r) => r.author))], [process.env.SUDO_USER || process.env.USER || userInfo().username]);
  });

  it('plan -o FILE, then apply FILE: the saved plan is applied; refused once the committed revision moved', async () => {
    // continues from the revisions above (revision 1 = one.yaml is committed again, 10.50.0.1 on wan0)
    const three = file('three.yaml', 'interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [10.55.0.1/24]\nfirewall:\n  enabled: false\n');
    const planFile = join(L.stateDir, 'three.plan');
    const p = await direct('plan', three, '-o', planFile);
    assert.equal(p.exitCode, 0, p.stderr);
    assert.match(p.stdout, /Saved the plan to \S*three\.plan/);
    const a = await direct('apply', planFile, '-m', 'saved plan');
    assert.equal(a.exitCode, 0, a.stderr);
    assert.match(a.stdout, /revision 4: committed/);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.55.0.1/24', '192.0.2.2/24']);

    // a plan made against revision 4, then revision 5 is committed: the saved plan is refused, nothing changes
    const back = join(L.stateDir, 'back.plan');
    assert.equal((await direct('plan', join(L.stateDir, 'one.yaml'), '-o', back)).exitCode, 0);
    assert.equal((await direct('apply', join(L.stateDir, 'two.json'), '-m', 'moves the basis')).exitCode, 0);
    const stale = await direct('apply', back);
    assert.notEqual(stale.exitCode, 0, stale.stdout);
    assert.match(stale.stderr, /plan was made against revision 4, revision 5 is committed now/);
    assert.deepEqual(await addresses(L.fw, 'wan0'), ['10.60.0.1/24', '192.0.2.2/24']);
    const revs = JSON.parse((await direct('--json', 'revisions')).stdout) as { id: number }[];
    assert.equal(revs[0]!.id, 5, 'the refused plan made no revision');
    // back to where the tests below start from
    assert.equal((await direct('apply', join(L.stateDir, 'one.yaml'))).exitCode, 0);
  });

  describe('over REST', () => {
    let store: Store;
    let engine: Engine;
    let app: FastifyInstance;
    let base: string;
    let token: string;
    before(async () => {
      store = Store.open(join(L.stateDir, 'rest', 'patronus.db'));
      engine = new Engine({ domains, host: L.host, store });
      await engine.reconcile({ document: { interfaces: [{ name: 'wan0', zone: 'wan' }], firewall: { rules: [{ name: 'allow-ping', direction: 'input', from: 'wan', protocol: 'icmp', action: 'accept' }] } } });
      token = store.addToken('cli');
      app = await buildServer({ engine, store, metrics: createMetrics(engine) });
      await app.listen({ host: '127.0.0.1', port: 0 });
      base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    });
    after(async () => {
      await app?.close();
      engine?.close();
      store?.close();
    });
    const rest = (...args: string[]) => execa('node', [cli, '--server', base, '--token', token, ...args], { reject: false, timeout: 120_000, env: { PATRONUS_STATE_DIR: join(L.stateDir, 'none') } });

    it('status and rules with counters', async () => {
      await L.peer.exec('ping', ['-c', '2', '-i', '0.05', '-W', '1', '192.0.2.2']);
      const s = await rest('status');
      assert.equal(s.exitCode, 0, s.stderr);
      assert.match(s.stdout, /committed\s+revision 1 by patronus/);
      const r = await rest('--json', 'rules');
      const rules = JSON.parse(r.stdout).rules as { subsystem: string; rule: string; packets: number }[];
      assert.equal(rules.find((x) => x.rule === 'rule:allow-ping')!.packets, 1);
      const human = await rest('rules');
      assert.match(human.stdout, /nftables\s+rule:allow-ping\s+\S+\s+1\s+84 B/);
    });

    it('plan --detailed-exitcode: 0 no changes, 2 changes, 1 errors (a rejected document too)', async () => {
      const same = file('same.json', JSON.stringify({ interfaces: [{ name: 'wan0', zone: 'wan' }], firewall: { rules: [{ name: 'allow-ping', direction: 'input', from: 'wan', protocol: 'icmp', action: 'accept' }] } }));
      const none = await rest('plan', '--detailed-exitcode', same);
      assert.equal(none.exitCode, 0, none.stdout + none.stderr);
      assert.match(none.stdout, /No changes/);
      const changed = await rest('plan', '--detailed-exitcode', file('changed.yaml', 'interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [10.70.0.1/24]\nfirewall:\n  enabled: false\n'));
      assert.equal(changed.exitCode, 2, changed.stderr);
      assert.match(changed.stdout, /Plan: /);
      const rejected = await rest('plan', '--detailed-exitcode', file('rejected.yaml', 'interfaces:\n  - name: wan0\n    mtu: 1\n'));
      assert.equal(rejected.exitCode, 1, rejected.stderr);
      assert.match(rejected.stderr, /interfaces\[0\]\.mtu/);
      // without the flag: changes are success, a rejected document is 2
      assert.equal((await rest('plan', same)).exitCode, 0);
      assert.equal((await rest('plan', file('rejected2.yaml', 'interfaces:\n  - name: wan0\n    mtu: 1\n'))).exitCode, 2);
    });

    it('color on request (FORCE_COLOR), never with NO_COLOR or into a pipe', async () => {
      const changes = file('color.yaml', 'interfaces:\n  - name: wan0\n    zone: wan\n    addresses: [10.71.0.1/24]\nfirewall:\n  enabled: false\n');
      const colored = await execa('node', [cli, '--server', base, '--token', token, 'plan', changes], { reject: false, env: { FORCE_COLOR: '1' } });
      assert.equal(colored.exitCode, 0, colored.stderr);
      assert.match(colored.stdout, /\x1b\[32m {2}\+ /);
      assert.match(colored.stdout, /\x1b\[31m {2}- /);
      for (const env of [{ FORCE_COLOR: '1', NO_COLOR: '1' }, { FORCE_COLOR: '0' }]) {
        const plain = await execa('node', [cli, '--server', base, '--token', token, 'plan', changes], { reject: false, env });
        assert.equal(plain.exitCode, 0, plain.stderr);
        assert.doesNotMatch(plain.stdout, /\x1b\[/, JSON.stringify(env));
        assert.match(plain.stdout, /^ {2}\+ /m);
      }
      const json = await execa('node', [cli, '--server', base, '--token', token, '--json', 'plan', changes], { reject: false, env: { FORCE_COLOR: '1' } });
      assert.doesNotMatch(json.stdout, /\x1b\[/);
    });

    it('wait-ready: the server answers /healthz', async () => {
      const r = await rest('wait-ready', '--timeout', '10');
      assert.equal(r.exitCode, 0, r.stderr);
      assert.match(r.stdout, /: ready \(HTTP (200|503)\)$/);
    });

    it('a rejected config exits 2 with the server\'s issues; a bad token exits 1', async () => {
      const r = await rest('apply', file('bad2.yaml', 'aliases:\n  - { name: a, type: network, entries: [b] }\n  - { name: b, type: network, entries: [a] }\n'));
      assert.equal(r.exitCode, 2, r.stderr);
      assert.match(r.stderr, /aliases\[\d\]\.entries\[0\]: alias cycle/);
      // the server located the issue in the text it was sent; the CLI names the file
      assert.match(r.stderr, /^\S*bad2\.yaml:[23]:41: aliases\[[01]\]\.entries\[0\]: alias cycle/m);
      const t = await execa('node', [cli, '--server', base, '--token', 'pat_wrong', 'status'], { reject: false, env: { PATRONUS_STATE_DIR: join(L.stateDir, 'none') } });
      assert.equal(t.exitCode, 1);
      // a 401 says which token was refused (found trying Patronus as a newcomer: it did not)
      assert.match(t.stderr, /HTTP 401: invalid token \(the token given with --token\)/);
      const env = await execa('node', [cli, '--server', base, 'status'], { reject: false, env: { PATRONUS_STATE_DIR: join(L.stateDir, 'none'), PATRONUS_TOKEN: 'pat_wrong' } });
      assert.equal(env.exitCode, 1);
      assert.match(env.stderr, /HTTP 401: invalid token \(the token in \$PATRONUS_TOKEN\)/);
      // without one: where the CLI looked (a lab or host server on this machine may have left an admin.token: then that one is named)
      const none = await execa('node', [cli, '--server', base, '--state-dir', join(L.stateDir, 'none'), 'status'], { reject: false, env: { PATRONUS_STATE_DIR: join(L.stateDir, 'none'), PATRONUS_TOKEN: '' } });
      assert.equal(none.exitCode, 1);
      assert.match(none.stderr, new RegExp(`HTTP 401: .*\\((no token: none given with --token or \\$PATRONUS_TOKEN, and no readable admin\\.token: ${join(L.stateDir, 'none', 'admin.token')} \\(missing\\)|the token in /var/lib/patronus(-lab)?/admin\\.token)`));
      assert.equal(store.count(), 1);
    });
  });
});
