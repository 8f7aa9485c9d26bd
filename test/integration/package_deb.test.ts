/**
 * The Debian package (scripts/package-deb.sh): built from this checkout into a
 * temporary directory (reusing the built dist/ and copying node_modules
 * unpruned, --no-prune, gzip -1: the full build prunes a copy with npm and is the
 * script's default), extracted with `dpkg-deb -x` into a throwaway root, and
 * run from there with the system node: `patronus --version` and `patronus
 * validate` of the shipped configuration. Also the control fields,
 * conffiles, maintainer scripts, that the payload needs no compiler (no C
 * sources, build trees or object files besides the BPF objects). lintian runs
 * in the full build (scripts/package-deb.sh without flags): about a minute on
 * its own, too slow for the suite.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { missing } from '../lib/skip.js';
import { Lab } from '../lib/netns.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const skip = missing('netns', { cmd: 'dpkg-deb' }, { cmd: 'systemd-analyze' }, { file: join(repoRoot, 'native/build/Release/patronus_bpf.node') });

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) walk(p, out);
  }
  return out;
}

describe('Debian package', { timeout: 300_000, skip }, () => {
  let tmp: string;
  let deb: string;
  let root: string;
  const lab = new Lab();
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pt-deb-'));
    const r = await execa('bash', [join(repoRoot, 'scripts/package-deb.sh'), '--no-build', '--no-prune', '--no-lintian', '--fast-compress', '--out', tmp], { reject: false, env: { TMPDIR: tmp } });
    assert.equal(r.exitCode, 0, `package-deb.sh failed:\n${r.stderr}`);
    deb = r.stdout.trim().split('\n').at(-1)!;
    assert.ok(existsSync(deb), `no package at ${deb}`);
    root = join(tmp, 'root');
    await execa('dpkg-deb', ['-x', deb, root]);
  });

  after(async () => {
    await lab.teardown();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('control: name, version, dependencies on the Debian packages it drives, daemons recommended', async () => {
    const field = async (f: string) => (await execa('dpkg-deb', ['-f', deb, f])).stdout.trim();
    assert.equal(await field('Package'), 'patronus');
    assert.equal(await field('Version'), `${pkg.version}-1`);
    assert.equal(await field('Architecture'), (await execa('dpkg', ['--print-architecture'])).stdout.trim());
    const depends = (await field('Depends')).split(/,\s*/).map((d) => d.split(' ')[0]);
    for (const d of ['nodejs', 'nftables', 'iproute2', 'libbpf1', 'libelf1', 'zlib1g']) assert.ok(depends.includes(d), `Depends lacks ${d}: ${depends.join(', ')}`);
    for (const d of ['clang', 'llvm', 'g++', 'cmake', 'make', 'libbpf-dev']) assert.ok(!depends.includes(d), `Depends has the build tool ${d}`);
    const recommends = (await field('Recommends')).split(/,\s*/);
    for (const d of ['unbound', 'frr', 'keepalived', 'strongswan-swanctl', 'openvpn', 'kea-dhcp4-server']) assert.ok(recommends.includes(d), `Recommends lacks ${d}`);
    assert.ok(Number(await field('Installed-Size')) > 1000);
  });

  it('conffiles, md5sums, copyright and maintainer scripts', async () => {
    const ctl = join(tmp, 'control');
    await execa('dpkg-deb', ['-e', deb, ctl]);
    assert.deepEqual(readFileSync(join(ctl, 'conffiles'), 'utf8').trim().split('\n'), ['/etc/patronus/config.yaml', '/etc/conf.d/patronus', '/etc/init.d/patronus']);
    assert.equal(readFileSync(join(root, 'etc/patronus/config.yaml'), 'utf8'), readFileSync(join(repoRoot, 'config/default.yaml'), 'utf8'));
    // every payload file is in md5sums, with its sum
    const sums = new Map(readFileSync(join(ctl, 'md5sums'), 'utf8').trim().split('\n').map((l) => [l.slice(34), l.slice(0, 32)]));
    const files = walk(root).filter((p) => lstatSync(p).isFile()).map((p) => relative(root, p));
    assert.equal(sums.size, files.length);
    const check = await execa('md5sum', ['-c', '--quiet', join(ctl, 'md5sums')], { cwd: root, reject: false });
    assert.equal(check.exitCode, 0, check.stdout + check.stderr);
    assert.match(readFileSync(join(root, 'usr/share/doc/patronus/copyright'), 'utf8'), /^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\//);
    // the unit is enabled (deb-systemd-helper, when present), never started
    const postinst = readFileSync(join(ctl, 'postinst'), 'utf8');
    assert.match(postinst, /command -v deb-systemd-helper/);
    assert.match(postinst, /deb-systemd-helper enable 'patronus\.service'/);
    assert.doesNotMatch(postinst, /deb-systemd-invoke (start|restart)|systemctl (start|restart|enable --now)/);
    for (const s of ['postinst', 'prerm', 'postrm']) {
      assert.equal(statSync(join(ctl, s)).mode & 0o777, 0o755, s);
      const sh = await execa('sh', ['-n', join(ctl, s)], { reject: false });
      assert.equal(sh.exitCode, 0, `${s}: ${sh.stderr}`);
    }
  });

  it('Maintainer and Homepage are the project\'s own, from package.json (author, homepage)', async () => {
    const meta = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { author: string; homepage: string };
    const field = async (f: string) => (await execa('dpkg-deb', ['-f', deb, f])).stdout.trim();
    assert.equal(await field('Maintainer'), meta.author);
    assert.equal(await field('Homepage'), meta.homepage);
    assert.match(meta.author, /^[^<>]+ <[^@<>\s]+@[^@<>\s]+>$/);
    assert.match(meta.homepage, /^https:\/\//);
    const copyright = readFileSync(join(root, 'usr/share/doc/patronus/copyright'), 'utf8');
    assert.match(copyright, new RegExp(`^Source: ${meta.homepage.replace(/[.]/g, '\\.')}$`, 'm'));
    for (const text of [copyright, (await execa('dpkg-deb', ['-I', deb])).stdout]) assert.doesNotMatch(text, /patronus\.dev|github\.com\/patronus\/patronus/, 'no placeholder left');
  });

  it('OpenRC: /etc/init.d/patronus provides firewall under supervise-daemon, with /etc/conf.d/patronus', async () => {
    const script = join(root, 'etc/init.d/patronus');
    assert.equal(statSync(script).mode & 0o777, 0o755);
    const text = readFileSync(script, 'utf8');
    assert.match(text, /^#!\/sbin\/openrc-run\n/);
    assert.match(text, /^depend\(\) \{[^}]*^\s*provide firewall$[^}]*^\s*before net$/ms);
    assert.match(text, /^supervisor="supervise-daemon"$/m);
    assert.match(text, /^: "\$\{PATRONUS_HOME:=\/usr\/lib\/patronus\}"$/m, 'runs the installed tree');
    assert.match(text, /^command_args="\$\{PATRONUS_HOME\}\/dist\/src\/cli\/main\.js serve --config \/etc\/patronus\/config\.yaml \$\{PATRONUS_ARGS\}"$/m);
    assert.doesNotMatch(text, /\/opt\/patronus/);
    // syntax: an openrc-run script is sh with a few functions openrc calls
    const sh = await execa('sh', ['-n', script], { reject: false });
    assert.equal(sh.exitCode, 0, sh.stderr);
    const confd = readFileSync(join(root, 'etc/conf.d/patronus'), 'utf8');
    for (const v of ['PATRONUS_STATE_DIR', 'PATRONUS_ARGS', 'PATRONUS_SERVER', 'PATRONUS_READY_TIMEOUT']) assert.match(confd, new RegExp(`^#${v}=`, 'm'), `conf.d documents ${v}`);
    assert.match(confd, /^#PATRONUS_HOME="\/usr\/lib\/patronus"$/m);
    // the settings it sources are read by the script
    for (const v of ['PATRONUS_STATE_DIR', 'PATRONUS_ARGS', 'PATRONUS_SERVER']) assert.match(text, new RegExp(`\\$\\{${v}`), `the script uses ${v}`);
  });

  it('the systemd unit runs the installed tree (verify clean, exposure <= 5, Type=notify), and /usr/bin/patronus points into it', async () => {
    const unitFile = join(root, 'lib/systemd/system/patronus.service');
    const unit = readFileSync(unitFile, 'utf8');
    assert.match(unit, /^Type=notify$/m);
    const verify = await execa('systemd-analyze', ['verify', unitFile], { reject: false });
    assert.equal(verify.exitCode, 0, verify.stderr);
    assert.deepEqual(verify.stderr.split('\n').filter((l) => l.includes('patronus')), []);
    const security = await execa('systemd-analyze', ['security', '--offline=true', '--no-pager', unitFile], { reject: false });
    const exposure = Number(/Overall exposure level for patronus\.service: (\d+(?:\.\d+)?)/.exec(security.stdout)?.[1] ?? NaN);
    assert.ok(exposure <= 5, `exposure ${exposure}:\n${security.stdout}${security.stderr}`);
    assert.match(unit, /^ExecStart=\/usr\/bin\/node \/usr\/lib\/patronus\/dist\/src\/cli\/main\.js serve --config \/etc\/patronus\/config\.yaml$/m);
    assert.doesNotMatch(unit, /\/opt\/patronus/);
    const link = join(root, 'usr/bin/patronus');
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.equal(readlinkSync(link), '../lib/patronus/dist/src/cli/main.js');
    assert.equal(statSync(link).mode & 0o111, 0o111, 'main.js is executable');
  });

  it('payload: prebuilt addon and BPF objects, no compiler inputs or build trees', () => {
    const lib = join(root, 'usr/lib/patronus');
    assert.ok(existsSync(join(lib, 'native/build/Release/patronus_bpf.node')));
    const objects = readdirSync(join(lib, 'bpf/build')).filter((f) => f.endsWith('.o'));
    assert.deepEqual(objects.sort(), readdirSync(join(repoRoot, 'bpf/build')).filter((f) => f.endsWith('.o')).sort());
    assert.ok(existsSync(join(lib, 'dist/console/index.html')), 'the console is built in');
    assert.ok(existsSync(join(lib, 'node_modules/fastify/package.json')));
    const paths = walk(root).map((p) => relative(root, p));
    const bad = paths.filter((p) =>
      /\.(c|cc|cpp|h|hpp|gyp|gypi)$/.test(p) ||
      (/\.o$/.test(p) && !p.startsWith('usr/lib/patronus/bpf/build/')) ||
      /(^|\/)(obj\.target|CMakeFiles|\.deps)(\/|$)/.test(p) ||
      /(^|\/)CMakeCache\.txt$/.test(p) ||
      p.startsWith('usr/lib/patronus/dist/test') ||
      p.startsWith('usr/lib/patronus/src/') || p.startsWith('usr/lib/patronus/native/src'));
    assert.deepEqual(bad, [], 'compiler inputs or build trees in the payload');
    // every native binding the package loads is there, compiled
    const nodes = paths.filter((p) => p.endsWith('.node'));
    assert.ok(nodes.some((p) => p.endsWith('better_sqlite3.node')), nodes.join(', '));
  });

  it('`patronus --version` and `patronus validate` run from the extracted root with the system node', async () => {
    const main = join(root, 'usr/lib/patronus/dist/src/cli/main.js');
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', NODE_OPTIONS: '', PATRONUS_STATE_DIR: join(tmp, 'state') };
    const v = await execa('node', [main, '--version'], { reject: false, env, extendEnv: false, cwd: tmp });
    assert.equal(v.exitCode, 0, v.stderr);
    // outside a git checkout: the package version alone
    assert.equal(v.stdout.trim(), `patronus ${pkg.version}`);
    // through the /usr/bin symlink too (node resolves it to the real tree)
    const viaLink = await execa(join(root, 'usr/bin/patronus'), ['--version'], { reject: false, env, extendEnv: false, cwd: tmp });
    assert.equal(viaLink.exitCode, 0, viaLink.stderr);
    assert.equal(viaLink.stdout.trim(), `patronus ${pkg.version}`);
    // validate checks every subsystem against the kernel: in a namespace with the configuration's uplink
    const ns = await lab.ns('deb');
    await lab.veth({ ns, dev: 'wan0', address: '192.0.2.2/24' }, { ns: await lab.ns('debpeer'), dev: 'peer0', address: '192.0.2.1/24' });
    const conf = join(root, 'etc/patronus/config.yaml');
    const val = await execa('node', [main, '--direct', '--netns', ns.name, '--state-dir', join(tmp, 'state'), 'validate', conf], { reject: false, env, extendEnv: false, cwd: tmp });
    assert.equal(val.exitCode, 0, `${val.stdout}\n${val.stderr}`);
    assert.equal(val.stdout.trim(), `${conf}: valid`);
    // and a broken document is rejected by the installed tree (exit 2, path-qualified)
    const bad = await execa('node', [main, '--direct', '--netns', ns.name, '--state-dir', join(tmp, 'state'), 'validate', '-'], { input: 'interfaces: 7\n', reject: false, env, extendEnv: false, cwd: tmp });
    assert.equal(bad.exitCode, 2, `${bad.stdout}\n${bad.stderr}`);
    assert.match(bad.stderr + bad.stdout, /interfaces/);
  });
});
