/** Saved plans (`patronus plan -o FILE`, `patronus apply FILE`): the file round-trips and is told apart from documents. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseSavedPlan, savedPlanSource, writeSavedPlan } from '../../src/apply/saved-plan.js';
import type { Plan } from '../../src/apply/engine.js';

describe('saved plans', () => {
  it('round-trip: the document, and the basis apply must still find', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pt-savedplan-'));
    try {
      const file = path.join(dir, 'x.plan');
      const plan: Plan = {
        subsystems: [{ subsystem: 'interfaces', changes: [{ action: 'add', object: 'address 10.0.0.1/24 on lan0' }] }],
        summary: { add: 1, remove: 0, change: 0, reload: 0, restart: 0, start: 0, stop: 0 },
        basis: { revision: 7, fingerprint: 'a'.repeat(64) },
      };
      writeSavedPlan(file, { text: 'interfaces: []\n', format: 'yaml' }, plan);
      const saved = parseSavedPlan(readFileSync(file, 'utf8'), file)!;
      assert.deepEqual(savedPlanSource(saved), { text: 'interfaces: []\n', format: 'yaml', expect: { revision: 7, fingerprint: 'a'.repeat(64) } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('documents are not plans; a broken plan file says so', () => {
    assert.equal(parseSavedPlan('interfaces: []\n', 'a.yaml'), undefined);
    assert.equal(parseSavedPlan('{"interfaces": []}', 'a.json'), undefined);
    assert.throws(() => parseSavedPlan('{"kind": "patronus-plan", "version": 2}', 'b.plan'), /b\.plan: not a saved plan this version of Patronus reads/);
  });
});
