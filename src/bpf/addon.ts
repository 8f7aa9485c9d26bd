/**
 * The one door to the compiled addon (native/build/Release by default).
 * Loading is lazy: importing src/bpf costs nothing, and the addon is loaded
 * by the first operation that needs it, so `patronus --help`, validate and
 * plan rendering run on a machine without it. As with better-sqlite3's
 * `nativeBinding` option, the binding can be injected: a path in
 * PATRONUS_NATIVE_BINDING or setNativeBinding(path | object) before first use.
 * Only src/bpf imports this module.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { NativeAddon } from './native.js';
import { BpfError, NativeAddonUnavailableError, NotSupportedError, VerifierError } from './errors.js';

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

let loaded: NativeAddon | undefined;
let injected: string | NativeAddon | undefined;

/** The file the addon is loaded from: the injected path, PATRONUS_NATIVE_BINDING, or the build output. */
export function nativeBindingPath(): string {
  if (typeof injected === 'string') return injected;
  const fromEnv = process.env.PATRONUS_NATIVE_BINDING;
  if (fromEnv) return path.resolve(fromEnv);
  return path.join(projectRoot(), 'native/build/Release/patronus_bpf.node');
}

/**
 * Chooses the binding: a path to a compiled addon, or an object implementing
 * NativeAddon (a test double). Must come before the first BPF operation.
 */
export function setNativeBinding(binding: string | NativeAddon): void {
  if (loaded) throw new Error('the native BPF addon is already loaded: setNativeBinding must be called before the first BPF operation');
  injected = typeof binding === 'string' ? path.resolve(binding) : binding;
}

/** The addon, loaded on first use. Throws NativeAddonUnavailableError when it cannot be. */
export function addon(): NativeAddon {
  loaded ??= load();
  return loaded;
}

/** Whether the addon can be loaded (loads it if so). */
export function addonAvailable(): boolean {
  try {
    addon();
    return true;
  } catch (e) {
    if (e instanceof NativeAddonUnavailableError) return false;
    throw e;
  }
}

function load(): NativeAddon {
  if (injected !== undefined && typeof injected !== 'string') {
    injected.setErrorClasses(BpfError, VerifierError, NotSupportedError);
    return injected;
  }
  const file = nativeBindingPath();
  if (!existsSync(file)) {
    throw new NativeAddonUnavailableError(file, 'file missing; run "npm run build:native" (scripts/setup.sh does it)');
  }
  let binding: NativeAddon;
  try {
    binding = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (e) {
    throw new NativeAddonUnavailableError(file, (e as Error).message);
  }
  binding.setErrorClasses(BpfError, VerifierError, NotSupportedError);
  return binding;
}
