/**
 * Loads the addon built by cmake-js (native/build/Release) and hands it the
 * error classes. Only src/bpf imports this module.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { NativeAddon } from './native.js';
import { BpfError, NotSupportedError, VerifierError } from './errors.js';

export type * from './native.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Project root: two levels above src/bpf, three above dist/src/bpf. */
export function projectRoot(): string {
  for (const up of ['../..', '../../..']) {
    const root = path.resolve(here, up);
    if (existsSync(path.join(root, 'package.json'))) return root;
  }
  throw new Error(`cannot find the Patronus project root from ${here}`);
}

function load(): NativeAddon {
  const file = path.join(projectRoot(), 'native/build/Release/patronus_bpf.node');
  if (!existsSync(file)) {
    throw new Error(`native addon missing at ${file}: run "npm run build:native" (scripts/setup.sh does it)`);
  }
  const addon = createRequire(import.meta.url)(file) as NativeAddon;
  addon.setErrorClasses(BpfError, VerifierError, NotSupportedError);
  return addon;
}

export const native: NativeAddon = load();
