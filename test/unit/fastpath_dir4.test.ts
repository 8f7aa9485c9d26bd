/**
 * DIR-16-8 for IPv4 (src/fastpath/compile.ts buildDir4): for every address,
 * the table must give the vector of the longest matching prefix, or send the
 * lookup to the trie; checked against a naive longest-prefix match on random
 * and boundary addresses, including prefixes longer than /24 and more /16s
 * than there are chunks.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildDir4, compileFastpath, type Dir4, type LpmEntry } from '../../src/fastpath/compile.js';
import { DIR4_CHUNKS, DIR4_CLASSES, DIR_CHUNK, DIR_TRIE, FEAT, PORT_CLASSES, emptyBits, setBit } from '../../src/fastpath/layout.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';

function entry(a: number, length: number, rule: number): LpmEntry {
  const data = Buffer.alloc(4);
  data.writeUInt32BE((length === 0 ? 0 : (a >>> (32 - length)) << (32 - length)) >>> 0);
  const bits = emptyBits();
  setBit(bits, rule);
  return { data, length, bits };
}

/** Longest-prefix match over the entries (what the trie answers). */
function lpm(entries: LpmEntry[], addr: number): Buffer | undefined {
  let best: LpmEntry | undefined;
  for (const e of entries) {
    const mask = e.length === 0 ? 0 : (0xffffffff << (32 - e.length)) >>> 0;
    if (((addr & mask) >>> 0) === e.data.readUInt32BE(0) && (!best || e.length > best.length)) best = e;
  }
  return best?.bits;
}

/** The table's answer: a vector, or 'trie'. */
function dir(d: Dir4, addr: number): Buffer | 'trie' {
  let c = d.dir16[addr >>> 16]!;
  if (c === DIR_TRIE) return 'trie';
  if (c & DIR_CHUNK) {
    c = d.chunks[c & (DIR4_CHUNKS - 1)]![(addr >>> 8) & 255]!;
    if (c === DIR_TRIE) return 'trie';
  }
  return d.classes[c]!;
}

let seed = 7;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed;
};

describe('IPv4 DIR-16-8 tables', () => {
  it('agree with longest-prefix match everywhere, and defer to the trie below /24', () => {
    const entries: LpmEntry[] = [entry(0, 0, 0)];
    const lens = [1, 8, 12, 16, 17, 20, 23, 24, 24, 24, 25, 28, 32];
    for (let i = 0; i < 400; i++) entries.push(entry(rnd(), lens[i % lens.length]!, 1 + (i % 60)));
    // nested chains in one /16, so chunks hold several lengths
    for (const [len, r] of [[16, 61], [18, 62], [22, 63], [24, 1], [30, 2]] as const) entries.push(entry(0x0a010203, len, r));
    // one entry per prefix, as the compiler emits them
    const seen = new Set<string>();
    const unique = entries.filter((e) => {
      const k = `${e.data.toString('hex')}/${e.length}`;
      return !seen.has(k) && seen.add(k);
    });
    entries.splice(0, entries.length, ...unique);
    const d = buildDir4(entries)!;
    assert.ok(d, 'fits');
    let trie = 0;
    const probes = [...entries.map((e) => e.data.readUInt32BE(0)), ...entries.map((e) => (e.data.readUInt32BE(0) + 2 ** (32 - e.length) - 1) >>> 0)];
    for (let i = 0; i < 20000; i++) probes.push(rnd());
    for (const a of probes) {
      const got = dir(d, a);
      if (got === 'trie') {
        trie++;
        // only /24s holding a longer prefix go to the trie
        assert.ok(entries.some((e) => e.length > 24 && e.data.readUInt32BE(0) >>> 8 === a >>> 8), `address ${a >>> 0} sent to the trie without a longer prefix in its /24`);
        continue;
      }
      assert.ok(got.equals(lpm(entries, a)!), `address ${a >>> 0}`);
    }
    assert.ok(trie > 0, 'some probes fall into /24s with longer prefixes');
  });

  it('a /16 beyond the chunk budget goes to the trie as a whole; too many vectors: no table', () => {
    const entries: LpmEntry[] = [entry(0, 0, 0)];
    for (let i = 0; i < DIR4_CHUNKS + 10; i++) entries.push(entry(((i + 1) << 16) >>> 0, 24, 1));
    const d = buildDir4(entries)!;
    assert.equal(d.chunks.length, DIR4_CHUNKS);
    assert.equal(dir(d, ((DIR4_CHUNKS + 5) << 16) + 5), 'trie');
    assert.ok(dir(d, (3 << 16) + 5) !== 'trie');

    const many: LpmEntry[] = [entry(0, 0, 0)];
    for (let i = 0; i < DIR4_CLASSES + 1; i++) {
      const e = entry(((i + 1) << 8) >>> 0, 24, 0);
      e.bits = Buffer.from(e.bits);
      e.bits.writeUInt32LE(i + 1, 8); // distinct vectors
      many.push(e);
    }
    assert.equal(buildDir4(many), undefined);
  });

  it('compile: the table replaces the trie lookup only for constrained IPv4 fields', () => {
    const { desired } = compileFastpath({
      fastpath: fastpathSchema.parse({ interfaces: [{ name: 'lo' }], rules: [{ name: 'a', source: ['10.0.0.0/8', '192.0.2.7'], action: 'drop' }] }),
      aliases: new Map(),
    });
    assert.ok(desired.dir4.src_v4);
    assert.equal(desired.dir4.dst_v4, undefined);
    assert.equal(desired.genConfig.features, FEAT.src_v4 | FEAT.src_v4_dir);
  });
});

describe('TCP/UDP port arrays', () => {
  /** Longest-prefix match over port-field entries (what the trie answers). */
  const lpmPort = (entries: LpmEntry[], proto: number, port: number): Buffer | undefined => {
    let best: LpmEntry | undefined;
    const key = (proto << 16) | port;
    for (const e of entries) {
      const v = (e.data[0]! << 16) | (e.data[1]! << 8) | e.data[2]!;
      const mask = e.length === 0 ? 0 : (0xffffff << (24 - e.length)) & 0xffffff;
      if ((key & mask) === v && (!best || e.length > best.length)) best = e;
    }
    return best?.bits;
  };

  it('agree with longest-prefix match for every TCP and UDP port, ranges, aliases and protocol-only rules', () => {
    const { desired, issues } = compileFastpath({
      fastpath: fastpathSchema.parse({
        interfaces: [{ name: 'lo' }],
        rules: [
          { name: 'ssh', protocol: 'tcp', destinationPorts: 22, action: 'drop' },
          { name: 'range', protocol: ['tcp', 'udp'], destinationPorts: '8000-8100', action: 'drop' },
          { name: 'udp-any', protocol: 'udp', action: 'count' },
          { name: 'dns', protocol: 'udp', destinationPorts: [53, '5353'], sourcePorts: '1024-65535', action: 'pass' },
          { name: 'icmp', protocol: 'icmp', icmpType: 8, action: 'drop' },
          { name: 'gre', protocol: 'gre', action: 'drop' },
          { name: 'all', action: 'pass' },
        ],
      }),
      aliases: new Map(),
    });
    assert.deepEqual(issues, []);
    for (const f of ['sport', 'dport'] as const) {
      const p = desired.ports[f]!;
      assert.ok(p, `${f} has arrays`);
      assert.ok(desired.genConfig.features & FEAT[`${f}_arr`]);
      for (const [proto, arr] of [[6, p.tcp], [17, p.udp]] as const) {
        for (let port = 0; port < 65536; port += port < 9000 ? 1 : 97) {
          assert.ok(p.classes[arr[port]!]!.equals(lpmPort(desired.fields[f], proto, port)!), `${f} proto ${proto} port ${port}`);
        }
      }
    }
  });

  it('1024 single-port rules fit the class budget', () => {
    const rules = Array.from({ length: 1024 }, (_, i) => ({ name: `r${i}`, protocol: 'tcp', destinationPorts: 1 + i * 3, action: 'drop' }));
    const { desired } = compileFastpath({ fastpath: fastpathSchema.parse({ interfaces: [{ name: 'lo' }], rules }), aliases: new Map() });
    assert.ok(desired.ports.dport, '1024 single ports fit');
    assert.ok(desired.ports.dport!.classes.length <= PORT_CLASSES);
  });
});
