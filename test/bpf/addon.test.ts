/**
 * The native addon against the real kernel: every operation, and its errors.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import path from 'node:path';
import {
  BpfError,
  BpfObject,
  BpfProgram,
  BpfMap,
  VerifierError,
  codecs,
  probes,
  unpin,
  XDP,
  BPF_NOEXIST,
  BPF_EXIST,
} from '../../src/bpf/index.js';
import { formatPrefix, parsePrefix } from '../../src/net/address.js';
import { frame } from '../lib/packets.js';
import { missing } from '../lib/skip.js';

const skip = missing('root', { file: '/sys/fs/bpf' });
const pinDir = () => mkdtempSync('/sys/fs/bpf/pt-test-');

describe('BPF object', { timeout: 300_000, skip }, () => {
  it('lists programs and maps before load and resizes a map', async () => {
    using obj = BpfObject.open('test_progs');
    assert.deepEqual(
      obj.programs().map((p) => [p.name, p.type]),
      [['xdp_mark', 'xdp']],
    );
    const names = obj.maps().filter((m) => !m.internal).map((m) => m.name).sort();
    assert.deepEqual(names, ['test_hash', 'test_lpm', 'test_other', 'test_percpu']);
    obj.setMapMaxEntries('test_hash', 4096);
    await obj.load();
    assert.equal(obj.loaded, true);
    using m = obj.map('test_hash', codecs.u32, codecs.u64);
    assert.equal(m.info.maxEntries, 4096);
    assert.equal(m.info.type, 'hash');
    assert.equal(m.info.keySize, 4);
    assert.equal(m.info.valueSize, 8);
  });

  it('a missing file is a BpfError naming the file', () => {
    assert.throws(
      () => BpfObject.open('/nonexistent/x.bpf.o'),
      (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' && e.object.includes('/nonexistent/x.bpf.o'),
    );
  });

  it('an unknown map name is ENOENT with the map name', () => {
    using obj = BpfObject.open('test_progs');
    assert.throws(() => obj.setMapMaxEntries('nope', 1), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' && /map nope/.test(e.message));
  });

  it('a program the verifier rejects gives a VerifierError with the log', async () => {
    using obj = BpfObject.open('test_reject');
    await assert.rejects(obj.load(), (e: unknown) => {
      assert.ok(e instanceof VerifierError, `expected VerifierError, got ${String(e)}`);
      assert.ok(e instanceof BpfError);
      assert.equal(e.code, 'EACCES');
      assert.match(e.log, /invalid access to packet/);
      assert.match(e.tail(), /processed \d+ insns/);
      return true;
    });
  });

  it('handles outlive the object; closing twice is harmless; a closed handle is a clear error', async () => {
    const obj = BpfObject.open('test_progs');
    await obj.load();
    const m = obj.map('test_hash', codecs.u32, codecs.u64);
    const p = obj.program('xdp_mark');
    obj.close();
    obj.close();
    m.set(1, 2n);
    assert.equal(m.get(1), 2n);
    m.close();
    m.close();
    assert.equal(m.closed, true);
    assert.throws(() => m.get(1), (e: unknown) => e instanceof BpfError && e.code === 'EBADF' && /handle is closed/.test(e.message) && /test_hash/.test(e.message));
    p.close();
    p.close();
    await assert.rejects(p.testRun({ data: frame() }), (e: unknown) => e instanceof BpfError && e.code === 'EBADF');
    assert.throws(() => obj.programs(), (e: unknown) => e instanceof BpfError && e.code === 'EBADF');
  });

  it('refuses map handles before load', () => {
    using obj = BpfObject.open('test_progs');
    assert.throws(() => obj.map('test_hash', codecs.u32, codecs.u64), (e: unknown) => e instanceof BpfError && /not loaded/.test(e.message));
  });
});

describe('BPF maps', { timeout: 300_000, skip }, () => {
  let obj: BpfObject;
  before(async () => {
    obj = BpfObject.open('test_progs');
    await obj.load();
  });
  after(() => obj.close());

  it('lookup, update with flags, delete, iterate', () => {
    using m = obj.map('test_hash', codecs.u32, codecs.u64);
    assert.equal(m.get(7), undefined);
    m.set(7, 70n, BPF_NOEXIST);
    assert.throws(() => m.set(7, 71n, BPF_NOEXIST), (e: unknown) => e instanceof BpfError && e.code === 'EEXIST' && e.operation === 'bpf_map_update_elem');
    assert.throws(() => m.set(8, 80n, BPF_EXIST), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT');
    m.set(7, 71n, BPF_EXIST);
    m.set(9, 90n);
    assert.equal(m.get(7), 71n);
    assert.deepEqual([...m.keys()].sort(), [7, 9]);
    assert.equal(m.delete(7), true);
    assert.equal(m.delete(7), false);
    assert.deepEqual([...m.keys()], [9]);
    m.delete(9);
  });

  it('an oversized value or key is refused with a clear message', () => {
    using m = obj.map('test_hash', codecs.u32, codecs.u64);
    assert.throws(
      () => m.setRaw(Buffer.alloc(4), Buffer.alloc(12)),
      (e: unknown) => e instanceof BpfError && e.code === 'EINVAL' && /value is 12 bytes, map expects 8/.test(e.message) && /test_hash/.test(e.message),
    );
    assert.throws(() => m.setRaw(Buffer.alloc(6), Buffer.alloc(8)), (e: unknown) => e instanceof BpfError && /key is 6 bytes, map expects 4/.test(e.message));
  });

  it('a full map reports E2BIG', async () => {
    using o = BpfObject.open('test_progs');
    o.setMapMaxEntries('test_hash', 2);
    await o.load();
    using m = o.map('test_hash', codecs.u32, codecs.u64);
    m.set(1, 1n);
    m.set(2, 2n);
    assert.throws(() => m.set(3, 3n), (e: unknown) => e instanceof BpfError && e.code === 'E2BIG');
  });

  it('batch update, lookup and delete', async () => {
    using m = obj.map('test_hash', codecs.u32, codecs.u64);
    const entries = Array.from({ length: 600 }, (_, i) => [i, BigInt(i * 3)] as const);
    assert.equal(await m.setMany(entries), 600);
    const all = await m.entries();
    assert.equal(all.length, 600);
    assert.deepEqual(new Map(all).get(599), 1797n);
    assert.equal(await m.deleteMany(entries.slice(0, 500).map(([k]) => k)), 500);
    assert.equal((await m.entries()).length, 100);
    await m.clear();
    assert.equal((await m.entries()).length, 0);
  });

  it('batch lookup of an empty map is empty, deleting missing keys in a batch fails with ENOENT', async () => {
    using m = obj.map('test_hash', codecs.u32, codecs.u64);
    assert.deepEqual(await m.entries(), []);
    await assert.rejects(m.deleteMany([12345]), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' && e.operation === 'bpf_map_delete_batch');
  });

  it('per-CPU values come back one per possible CPU', () => {
    using m = obj.perCpuMap('test_percpu', codecs.u32, codecs.u64);
    const cpus = probes.possibleCpus();
    assert.equal(m.possibleCpus, cpus);
    const vals = Array.from({ length: cpus }, (_, i) => BigInt(i + 10));
    m.set(3, vals);
    assert.deepEqual(m.get(3), vals);
    assert.throws(() => m.set(3, [1n]), /need \d+ per-CPU values/);
    assert.throws(
      () => m.setRaw(codecs.u32.encode(3), Buffer.alloc(8)),
      (e: unknown) => cpus === 1 || (e instanceof BpfError && /CPUs x 8/.test(e.message)),
    );
  });

  it('LPM trie keys match the longest prefix (via iteration fallback for batch)', async () => {
    using m = obj.map('test_lpm', codecs.lpmV4Key, codecs.u32);
    m.set(parsePrefix('10.0.0.0/8'), 1);
    m.set(parsePrefix('10.1.0.0/16'), 2);
    assert.equal(m.get(parsePrefix('10.1.2.3/32')), 2);
    assert.equal(m.get(parsePrefix('10.2.2.3/32')), 1);
    assert.equal(m.get(parsePrefix('11.0.0.1/32')), undefined);
    const all = (await m.entries()).map(([k, v]) => `${formatPrefix(k)}=${v}`).sort();
    assert.deepEqual(all, ['10.0.0.0/8=1', '10.1.0.0/16=2']);
    await m.setMany([[parsePrefix('192.168.0.0/24'), 3]]);
    assert.equal(m.get(parsePrefix('192.168.0.9')), 3);
    await m.clear();
  });

  it('pin, open the pinned map, unpin; a missing pin path is ENOENT', () => {
    const dir = pinDir();
    try {
      using m = obj.map('test_hash', codecs.u32, codecs.u64);
      m.pin(path.join(dir, 'h'));
      m.set(42, 4242n);
      using again = BpfMap.openPinned(path.join(dir, 'h'), codecs.u32, codecs.u64);
      assert.equal(again.get(42), 4242n);
      assert.equal(again.info.id, m.info.id);
      unpin(path.join(dir, 'h'));
      assert.equal(existsSync(path.join(dir, 'h')), false);
      assert.throws(
        () => BpfMap.openPinned(path.join(dir, 'h'), codecs.u32, codecs.u64),
        (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' && e.errno === 2 && e.operation === 'bpf_obj_get',
      );
      m.delete(42);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a map pinned before load is reused by the next object (adoption)', async () => {
    const dir = pinDir();
    try {
      {
        using a = BpfObject.open('test_progs');
        a.setMapPinPath('test_hash', path.join(dir, 'shared'));
        await a.load();
        using m = a.map('test_hash', codecs.u32, codecs.u64);
        m.set(5, 55n);
      }
      using b = BpfObject.open('test_progs');
      b.setMapPinPath('test_hash', path.join(dir, 'shared'));
      await b.load();
      using m2 = b.map('test_hash', codecs.u32, codecs.u64);
      assert.equal(m2.get(5), 55n);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('BPF programs', { timeout: 300_000, skip }, () => {
  it('test run returns verdict, output packet and duration', async () => {
    using obj = BpfObject.open('test_progs');
    await obj.load();
    using p = obj.program('xdp_mark');
    using counts = obj.perCpuMap('test_percpu', codecs.u32, codecs.u64);
    counts.setAll(1, 0n);
    assert.equal(p.info.type, 'xdp');
    assert.match(p.info.tag, /^[0-9a-f]{16}$/);
    const input = frame();
    const r = await p.testRun({ data: input, repeat: 100 });
    assert.equal(r.retval, XDP.TX);
    assert.equal(r.data.length, input.length);
    assert.equal(r.data[0], 0xee);
    assert.deepEqual(r.data.subarray(1), input.subarray(1));
    assert.ok(r.duration >= 0);
    assert.equal(counts.get(1)!.reduce((a, b) => a + b, 0n), 100n);
  });

  it('a frame under 14 bytes is refused by test run with EINVAL', async () => {
    using obj = BpfObject.open('test_progs');
    await obj.load();
    using p = obj.program('xdp_mark');
    await assert.rejects(p.testRun({ data: Buffer.alloc(10) }), (e: unknown) => e instanceof BpfError && e.code === 'EINVAL' && /xdp_mark/.test(e.message));
  });

  it('pin and open a pinned program; opening a map pin as a program is refused', async () => {
    const dir = pinDir();
    try {
      using obj = BpfObject.open('test_progs');
      await obj.load();
      using p = obj.program('xdp_mark');
      p.pin(path.join(dir, 'prog'));
      using q = BpfProgram.openPinned(path.join(dir, 'prog'));
      assert.equal(q.info.id, p.info.id);
      assert.equal((await q.testRun({ data: frame() })).retval, XDP.TX);
      using m = obj.map('test_hash', codecs.u32, codecs.u64);
      m.pin(path.join(dir, 'map'));
      assert.throws(() => BpfProgram.openPinned(path.join(dir, 'map')), (e: unknown) => e instanceof BpfError && /not a program/.test(e.message));
      assert.throws(() => BpfMap.openPinned(path.join(dir, 'prog'), codecs.u32, codecs.u64), (e: unknown) => e instanceof BpfError && /not a map/.test(e.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('probes report the features this kernel has', () => {
    assert.equal(probes.hasProgType('xdp'), true);
    assert.equal(probes.hasMapType('lpm_trie'), true);
    assert.doesNotThrow(() => probes.requireFastPathFeatures());
  });
});

/**
 * The fd lifetime of async work (issue 14): a batch or test run queued on the
 * thread pool must act on the object it was started on, even when its handle
 * is closed and the fd number is reused before the worker runs. The thread
 * pool is kept busy first so the queued job deterministically runs after the
 * close (without that, the race is still there, only rarer).
 */
describe('async work and handle lifetime', { timeout: 300_000, skip }, () => {
  let obj: BpfObject;
  before(async () => {
    obj = BpfObject.open('test_progs');
    await obj.load();
  });
  after(() => obj.close());

  /** Occupies every thread-pool worker for a while with test runs. */
  function busyThreadPool(): Promise<unknown> {
    const p = obj.program('xdp_mark');
    const size = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    const runs = Array.from({ length: size }, () => p.testRun({ data: frame(), repeat: 500_000 }));
    return Promise.all(runs).finally(() => p.close());
  }

  it('a batch write whose handle is closed meanwhile lands in its own map, never in the map that reuses the fd', async () => {
    using check = obj.map('test_hash', codecs.u32, codecs.u64);
    using otherCheck = obj.map('test_other', codecs.u32, codecs.u64);
    await check.clear();
    await otherCheck.clear();
    const busy = busyThreadPool();
    const m = obj.map('test_hash', codecs.u32, codecs.u64);
    const pending = m.setMany(Array.from({ length: 10 }, (_, i) => [i, 0x4141414141414141n] as const));
    m.close();
    using other = obj.map('test_other', codecs.u32, codecs.u64); // takes the lowest free fd: the one just closed
    assert.equal(await pending, 10);
    await busy;
    assert.deepEqual([...other.keys()], [], 'the other map was written');
    assert.deepEqual([...check.keys()].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(check.get(3), 0x4141414141414141n);
    await check.clear();
  });

  it('closing a map while a batch lookup runs: the lookup reads its own map', async () => {
    using check = obj.map('test_hash', codecs.u32, codecs.u64);
    await check.clear();
    await check.setMany([[1, 11n], [2, 22n]]);
    const busy = busyThreadPool();
    const m = obj.map('test_hash', codecs.u32, codecs.u64);
    const pending = m.entries();
    m.close();
    using other = obj.map('test_other', codecs.u32, codecs.u64);
    other.set(99, 9n);
    const got = await pending;
    await busy;
    assert.deepEqual(got.sort((a, b) => a[0] - b[0]), [[1, 11n], [2, 22n]]);
    other.delete(99);
    await check.clear();
  });

  it('closing a program while its test run is queued: the run completes on that program', async () => {
    const busy = busyThreadPool();
    const p = obj.program('xdp_mark');
    const pending = p.testRun({ data: frame() });
    p.close();
    assert.equal(p.closed, true);
    const r = await pending;
    await busy;
    assert.equal(r.retval, XDP.TX);
    assert.equal(r.data[0], 0xee);
  });

  it('closing an object while it loads is refused with EBUSY', async () => {
    const o = BpfObject.open('test_progs');
    const loading = o.load();
    assert.throws(() => o.close(), (e: unknown) => e instanceof BpfError && e.code === 'EBUSY' && /load is in progress/.test(e.message));
    await loading;
    o.close();
  });

  it('a failed batch reports how many entries it really wrote', async () => {
    using o = BpfObject.open('test_progs');
    o.setMapMaxEntries('test_hash', 500);
    await o.load();
    using m = o.map('test_hash', codecs.u32, codecs.u64);
    const entries = Array.from({ length: 1000 }, (_, i) => [i, BigInt(i)] as const);
    await assert.rejects(m.setMany(entries), (e: unknown) => {
      assert.ok(e instanceof BpfError, String(e));
      assert.equal(e.code, 'E2BIG');
      assert.equal(e.operation, 'bpf_map_update_batch');
      assert.equal(e.done, 500);
      assert.match(e.message, /500 of 1000 entries written/);
      return true;
    });
    assert.equal([...m.keys()].length, 500);
  });

  it('a batch the kernel refuses before writing anything reports 0 written, not all', async () => {
    using m = obj.map('test_other', codecs.u32, codecs.u64);
    const keys = Buffer.alloc(4 * 1000);
    for (let i = 0; i < 1000; i++) keys.writeUInt32LE(i, i * 4);
    // elem_flags other than BPF_F_LOCK are refused by the kernel up front
    await assert.rejects(m.nativeHandle.updateBatch(keys, Buffer.alloc(8 * 1000), BPF_NOEXIST), (e: unknown) => {
      assert.ok(e instanceof BpfError, String(e));
      assert.equal(e.code, 'EINVAL');
      assert.equal(e.done, 0);
      assert.match(e.message, /0 of 1000 entries written/);
      return true;
    });
    assert.deepEqual([...m.keys()], []);
  });

  it('setMany with BPF_NOEXIST writes one by one and reports the real count at the first conflict', async () => {
    using m = obj.map('test_other', codecs.u32, codecs.u64);
    m.set(7, 1n);
    const entries = [5, 6, 7, 8].map((k) => [k, 2n] as const);
    await assert.rejects(m.setMany(entries, BPF_NOEXIST), (e: unknown) => e instanceof BpfError && e.code === 'EEXIST' && e.done === 2 && /key 7|entry 2/.test(e.message));
    assert.deepEqual([...m.keys()].sort((a, b) => a - b), [5, 6, 7]);
    await m.clear();
  });

  it('batch support is probed once, and this kernel has it', () => {
    assert.equal(probes.hasBatchApi(), true);
  });
});
