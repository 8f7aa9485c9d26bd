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
