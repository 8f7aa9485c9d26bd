/**
 * Saved plans (terraform's `plan -out` / `apply PLANFILE`): `patronus plan -o
 * FILE` writes the document together with the plan and what it was made
 * against (the committed revision and a fingerprint of the planned changes,
 * which are computed from the desired and the observed kernel and daemon
 * state); `patronus apply FILE` applies that document only while the plan
 * still holds: the engine refuses it (StalePlanError, 409) when another
 * revision was committed since or the plan computed now differs.
 */
import { writeFileSync } from 'node:fs';
import { sourceText } from '../config/source-text.js';
import type { ConfigSource, Plan, PlanBasis } from './engine.js';

export const SAVED_PLAN_KIND = 'patronus-plan';

export interface SavedPlan {
  kind: typeof SAVED_PLAN_KIND;
  version: 1;
  createdAt: string;
  /** the document as given to plan */
  source: { text: string; format?: 'yaml' | 'json' } | { document: unknown };
  allowEmpty?: boolean;
  plan: Plan & { basis: PlanBasis };
}

export function writeSavedPlan(file: string, src: ConfigSource, plan: Plan): void {
  if (!plan.basis) throw new Error('the plan carries no basis (a server older than saved plans?): it cannot be saved');
  const saved: SavedPlan = {
    kind: SAVED_PLAN_KIND,
    version: 1,
    createdAt: new Date().toISOString(),
    source: 'document' in src ? { document: src.document } : { text: sourceText(src), ...(src.format ? { format: src.format } : {}) },
    ...(src.allowEmpty ? { allowEmpty: true } : {}),
    plan: plan as SavedPlan['plan'],
  };
  writeFileSync(file, `${JSON.stringify(saved, null, 2)}\n`, { mode: 0o600 });
}

/** The saved plan in `text`, or undefined when it is a configuration document. Throws when it claims to be a plan but is not a valid one. */
export function parseSavedPlan(text: string, file: string): SavedPlan | undefined {
  if (!/^\s*\{/.test(text) || !text.includes(SAVED_PLAN_KIND)) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  const p = v as Partial<SavedPlan>;
  if (p?.kind !== SAVED_PLAN_KIND) return undefined;
  const basis = p.plan?.basis;
  if (p.version !== 1 || !p.source || !basis || typeof basis.fingerprint !== 'string' || !(basis.revision === null || typeof basis.revision === 'number')) {
    throw new Error(`${file}: not a saved plan this version of Patronus reads (kind ${SAVED_PLAN_KIND}, version 1, with source and plan.basis)`);
  }
  return p as SavedPlan;
}

/** What to apply for a saved plan: its document, expected to plan as it did. */
export function savedPlanSource(saved: SavedPlan): ConfigSource {
  return { ...saved.source, ...(saved.allowEmpty ? { allowEmpty: true } : {}), expect: saved.plan.basis };
}
