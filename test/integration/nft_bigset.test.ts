/**
 * A large firewall alias (100k /24s plus the peer's /24) against the real
 * kernel: plan, apply and the drift check compare the set's elements over
 * netlink, and nft is never asked to list set contents (its listing of an
 * interval set is superlinear: 1M /24s took minutes). Every nft command the
 * subsystem runs is recorded and checked for that.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { controlLab, type ControlLab } from '../lib/control.js';
import { missing } from '../lib/skip.js';
import { validateDocument, type ConfigInput } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import { nftSubsystem, readCounters } from '../../src/nft/subsystem.js';
import type { NftDesired } from '../../src/nft/compile.js';
import { changesOf } from '../../src/apply/subsystem.js';

const N = 100_000;

function prefixes(n: number, offset = 0): string[] {
  return Array.from({ length: n }, (_, j) => {
    const i = j * 2 + offset; // every other /24: no merging
    return `${10 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}.0/24`;
  });
}

function doc(entries: string[]): ConfigInput {
  return {
    interfaces: [{ name: 'wan0', zone: 'wan' }],
    aliases: [
      { name: 'big', type: 'network', entries },
      { name: 'web', type: 'port', entries: ['80', '8000-8080'] },
    ],
    firewall: {
      defaults: { input: 'accept', forward: 'accept' },
      zones: [{ name: 'wan', input: 'accept', forward: 'accept' }],
      rules: [
        { name: 'drop-big', direction: 'input', from: 'wan', source: ['big'], action: 'drop' },
        { name: 'web', direction: 'input', from: 'wan', protocol: 'tcp', ports: ['web'], action: 'accept' },
      ],
    },
  } as ConfigInput;
}

function compile(d: ConfigInput): NftDesired {
  const v = validateDocument(d, () => '');
  assert.ok(v.validated, v.issues.map(formatIssue).join('\n'));
  const { desired, issues } = nftSubsystem.compile({ openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' });
  assert.deepEqual(issues, []);
  return desired;
}

describe('nftables: a 100k-prefix firewall alias', { skip: missing('netns'), timeout: 300_000 }, () => {
  let L: ControlLab;
  const nftCalls: string[][] = [];
  // IPv6 too (a_big_v6, up to the top of the address space): after a hand change every set is read back and must compare equal
  const entries = [...prefixes(N), '192.0.2.0/24', '2001:db8::/48', '2001:db8:1::/48', 'ffff::/16'];
  let A: NftDesired;

  const ping = () => execa('ip', ['netns', 'exec', L.peer.name, 'ping', '-c', '2', '-i', '0.2', '-W', '1', '192.0.2.2'], { reject: false, timeout: 20_000 });
  const plan = async (d: NftDesired) => changesOf(await nftSubsystem.steps(d, L.host));
  const apply = async (d: NftDesired) => {
    for (const s of await nftSubsystem.steps(d, L.host)) await s.run();
  };

  before(async () => {
    L = await controlLab();
    const run = L.host.run.bind(L.host);
    L.host.run = (cmd, args, opts) => {
      if (cmd === 'nft' || args.includes('nft')) nftCalls.push([cmd, ...args]);
      return run(cmd, args, opts);
    };
    A = compile(doc(entries));
  });
  after(async () => {
    await L?.teardown();
  });

  it('plans the new table with its element count, applies it, and drops packets from a listed prefix', async () => {
    assert.equal((await ping()).exitCode, 0, 'the peer answers before the apply');
    const changes = await plan(A);
    assert.equal(changes.length, 1);
    assert.match(changes[0]!.detail ?? '', new RegExp(`${N + 1 + 3 + 2 + 2} set elements`));
    await apply(A);
    assert.notEqual((await ping()).exitCode, 0, 'the peer (192.0.2.1, listed) is dropped');
    const c = (await readCounters(L.host)).find((x) => x.key === 'rule:drop-big');
    assert.ok(c && c.packets > 0, 'the rule counted the dropped packets');
  });

  it('plans nothing for the unchanged set, and finds no drift', async () => {
    assert.deepEqual(await plan(A), []);
    assert.deepEqual(await nftSubsystem.drift!(A, L.host), []);
    // a transaction that is not ours moves the generation: every set is read back from the kernel, and still equal
    await L.host.run('nft', ['add', 'table', 'inet', 'bystander']);
    assert.deepEqual(await nftSubsystem.drift!(A, L.host), []);
    assert.deepEqual(await plan(A), []);
  });

  it('plans one prefix changed as an element diff', async () => {
    const B = compile(doc([...entries.slice(1), '10.200.1.0/24']));
    const changes = await plan(B);
    assert.deepEqual(
      changes.map((c) => [c.object, c.detail]),
      [['table inet patronus set a_big_v4', '+1 -1 elements\n+ element 10.200.1.0/24\n- element 10.0.0.0/24']],
    );
  });

  it('finds a hand-deleted and a hand-added element, and the apply repairs both', async () => {
    await L.host.run('nft', ['delete', 'element', 'inet', 'patronus', 'a_big_v4', '{ 10.0.4.0/24 }']);
    await L.host.run('nft', ['add', 'element', 'inet', 'patronus', 'a_big_v4', '{ 10.0.5.0/24 }']);
    const found = await nftSubsystem.drift!(A, L.host);
    assert.deepEqual(found, [
      { object: 'table inet patronus set a_big_v4', reason: '1 elements missing (10.0.4.0/24)' },
      { object: 'table inet patronus set a_big_v4', reason: '1 unexpected elements (10.0.5.0/24)' },
    ]);
    assert.deepEqual((await plan(A)).map((c) => c.detail), ['+1 -1 elements\n+ element 10.0.4.0/24\n- element 10.0.5.0/24']);
    await apply(A);
    assert.deepEqual(await nftSubsystem.drift!(A, L.host), []);
    assert.deepEqual(await plan(A), []);
  });

  it('never had nft list set elements', () => {
    // listing the table or a set prints every element; only terse ruleset listings and the scratch copy (sets declared empty) are allowed
    const listings = nftCalls.filter((c) => c.includes('list') && !(c.includes('-t') && c.includes('ruleset')));
    assert.deepEqual(listings, []);
    assert.ok(nftCalls.some((c) => c.includes('-t')), 'the live table was listed terse');
  });
});
