/**
 * The one error type of the BPF boundary. Native code constructs these
 * (the classes are handed to the addon once, in addon.ts), so every failed
 * syscall arrives with errno, its code name, the operation and the object.
 */
export interface BpfErrorProps {
  errno: number;
  code: string;
  operation: string;
  object: string;
  log?: string;
  /** batch writes and deletes: entries really processed before the failure */
  done?: number;
}

export class BpfError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly operation: string;
  readonly object: string;
  /** Batch writes and deletes: how many entries were really processed before the failure. */
  readonly done?: number;

  constructor(message: string, props: BpfErrorProps) {
    super(message);
    this.name = 'BpfError';
    this.errno = props.errno;
    this.code = props.code;
    this.operation = props.operation;
    this.object = props.object;
    if (props.done !== undefined) this.done = props.done;
  }
}

/** The kernel verifier rejected a program; `log` holds its output. */
export class VerifierError extends BpfError {
  readonly log: string;

  constructor(message: string, props: BpfErrorProps) {
    super(message, props);
    this.name = 'VerifierError';
    this.log = props.log ?? '';
  }

  /** The last lines of the log, where the verifier says why it refused. */
  tail(lines = 10): string {
    return this.log.trimEnd().split('\n').slice(-lines).join('\n');
  }
}

/** The running kernel lacks a feature (from probes or EOPNOTSUPP). */
export class NotSupportedError extends BpfError {
  constructor(message: string, props: BpfErrorProps) {
    super(message, props);
    this.name = 'NotSupportedError';
  }
}

/** A pin that holds another kind of object than the caller asked for. */
export function wrongPinKind(path: string, found: 'map' | 'program', wanted: 'map' | 'program'): BpfError {
  return new BpfError(`bpf_obj_get ${path}: pinned object is a ${found}, not a ${wanted}`, {
    errno: 22,
    code: 'EINVAL',
    operation: 'bpf_obj_get',
    object: path,
  });
}

/**
 * The compiled addon (native/build/Release/patronus_bpf.node, or the file
 * PATRONUS_NATIVE_BINDING / setNativeBinding names) cannot be loaded. Only
 * operations that touch BPF need it: help, validate without a fast path and
 * plan rendering run without it.
 */
export class NativeAddonUnavailableError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`the native BPF addon is not available (${file}): ${reason}`);
    this.name = 'NativeAddonUnavailableError';
  }
}
