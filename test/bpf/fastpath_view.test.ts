/**
 * The observers' view of the data plane (FastpathDataPlane.observe): it
 * adopts what is pinned and nothing else. No pins: an error, and nothing is
 * created; the leftovers of an interrupted upgrade are left for apply to
 * finish (open() renames them, observe() must not); a view of a running data
 * plane reads it, and is not a data plane (no apply, attach, upgrade).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, renameSync } from 'node:fs';
import { FastpathDataPlane, removePins } from '../../src/fastpath/dataplane.js';
import { compileFastpath } from '../../src/fastpath/compile.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import { LPM_FIELDS } from '../../src/fastpath/layout.js';
import { missing } from '../lib/skip.js';

const CAP = { prefixes: 64, portPrefixes: 64, rateLimitSources: 64, blocklist: 64 };

describe('fast path view for observers', { timeout: 300_000, skip: missing('root') }, () => {
  const root = mkdtempSync('/sys/fs/bpf/pt-fastpath-view-');
  const pinDir = `${root}/fastpath`;
  after(() => {
    for (const d of [pinDir, `${pinDir}_next`, `${pinDir}_old`]) removePins(d);
    removePins(root);
  });

  it('no data plane pinned: throws, creates nothing', () => {
    assert.throws(() => FastpathDataPlane.observe({ pinDir }), /no data plane is pinned/);
    assert.equal(existsSync(pinDir), false);
  });

  it('an instance that remembers what it wrote reads the maps again after another one wrote them (writer token)', async () => {
    const dir = `${root}/token`;
    const compile = (prefixes: string[]) =>
      compileFastpath({ fastpath: fastpathSchema.parse({ interfaces: [{ name: 'lo' }], rules: [{ name: 'r', source: prefixes, action: 'drop' }], capacity: CAP }), aliases: new Map() }).desired;
    const lo = () => 1;
    const a = await FastpathDataPlane.open({ pinDir: dir, capacity: CAP });
    const b = await FastpathDataPlane.open({ pinDir: dir, capacity: CAP });
    try {
      await a.apply(compile(['10.1.0.0/16', '10.2.0.0/16']), lo); // generation 1
      await a.apply(compile(['10.3.0.0/16']), lo); // generation 0
      assert.equal(a.cachesCurrent(), true);
      // another writer (another process, an older build...) writes generation 1 and then 0
      await b.apply(compile(['10.4.0.0/16', '10.5.0.0/16', '10.6.0.0/16']), lo);
      assert.equal(a.cachesCurrent(), false, 'the token in gen_meta is not a\'s any more');
      await b.apply(compile(['10.7.0.0/16']), lo);
      // a writes generation 1 again: what it remembered of it (10.1, 10.2) is stale; 10.4-10.6 are there
      const want = compile(['10.1.0.0/16', '10.8.0.0/16']);
      await a.apply(want, lo);
      assert.equal(a.cachesCurrent(), true);
      using view = FastpathDataPlane.observe({ pinDir: dir });
      for (const f of LPM_FIELDS) {
        const live = await view.activeTable(f);
        assert.equal(live.count, want.fields[f].length, `${f}: ${live.count} entries in the kernel, ${want.fields[f].length} wanted (a stale entry of the other writer left behind?)`);
      }
    } finally {
      a.close();
      b.close();
      removePins(dir);
    }
  });

  it('reads a running data plane; never finishes an interrupted upgrade', async () => {
    const dp = await FastpathDataPlane.open({ pinDir, capacity: CAP });
    const id = dp.xdp.info.id;
    dp.close();
    {
      using view = FastpathDataPlane.observe({ pinDir });
      assert.equal(view.xdp.info.id, id);
      assert.equal(view.generation, 0);
      assert.deepEqual(view.ruleCounters(), []);
      // a view is not a data plane: it has nothing that loads, writes a generation, attaches or upgrades
      assert.equal(view instanceof FastpathDataPlane, false);
      for (const m of ['apply', 'attach', 'replaceWith', 'destroy', 'rcuBarrier', 'retireSuperseded']) assert.equal(m in view, false, `view.${m}`);
    }
    // an upgrade that died between its two renames: only <pinDir>_next holds the programs
    renameSync(pinDir, `${pinDir}_next`);
    const before = readdirSync(root).sort();
    assert.throws(() => FastpathDataPlane.observe({ pinDir }), /no data plane is pinned/);
    assert.deepEqual(readdirSync(root).sort(), before, 'nothing renamed or created');
  });
});
