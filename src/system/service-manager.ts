/**
 * Readiness and state notifications to the service manager, the sd_notify(3)
 * protocol: systemd starts `patronus serve` as Type=notify with
 * NOTIFY_SOCKET set, and the unit counts as started (network-pre.target
 * reached) only when the server says READY=1, which it does once it has
 * reconciled the kernel and listens. A reload (SIGHUP) is bracketed by
 * RELOADING=1 ... READY=1, a stop announced by STOPPING=1; STATUS= shows in
 * `systemctl status`. While the start-up reconciliation makes progress (a
 * step begins), EXTEND_TIMEOUT_USEC keeps TimeoutStartSec from killing a
 * long but moving start; a step that hangs still runs into the timeout.
 *
 * NOTIFY_SOCKET is taken out of the environment when read (as sd_notify's
 * unset_environment does): the daemons Patronus starts (charon-systemd,
 * for one, speaks sd_notify itself) must not talk to Patronus' unit.
 * Without NOTIFY_SOCKET (OpenRC, a terminal) every call does nothing.
 */
import { notifyServiceManager } from '../bpf/index.js';

export interface ServiceManager {
  /** the unit is up: the rule set is in place and the API answers */
  ready(status: string): void;
  /** a reload (drift check and repair) begins; ready() ends it */
  reloading(): void;
  stopping(): void;
  status(text: string): void;
  /** start-up goes on: give it `ms` more before the start timeout (EXTEND_TIMEOUT_USEC), saying what it does */
  extendTimeout(ms: number, status: string): void;
}

/**
 * The notifier for this process's service manager (reads and removes
 * NOTIFY_SOCKET from `env`). A failing send is reported through `onError`
 * and never stops the server.
 */
export function serviceManager(env: NodeJS.ProcessEnv = process.env, onError: (e: Error) => void = () => undefined): ServiceManager {
  const socket = env.NOTIFY_SOCKET;
  delete env.NOTIFY_SOCKET;
  const send = (fields: Record<string, string | number>) => {
    if (!socket) return;
    const message = Object.entries(fields)
      .map(([k, v]) => `${k}=${String(v).replace(/\n/g, ' ')}`)
      .join('\n');
    try {
      notifyServiceManager(socket, message);
    } catch (e) {
      onError(new Error(`service manager notification ${JSON.stringify(message.split('\n')[0])} to ${socket}: ${(e as Error).message}`));
    }
  };
  return {
    ready: (status) => send({ READY: 1, STATUS: status, MAINPID: process.pid }),
    // MONOTONIC_USEC: systemd 253's Type=notify-reload wants it with RELOADING=1 (libuv's hrtime is CLOCK_MONOTONIC)
    reloading: () => send({ RELOADING: 1, MONOTONIC_USEC: (process.hrtime.bigint() / 1000n).toString(), STATUS: 'reloading: checking drift' }),
    stopping: () => send({ STOPPING: 1, STATUS: 'stopping' }),
    status: (text) => send({ STATUS: text }),
    extendTimeout: (ms, status) => send({ EXTEND_TIMEOUT_USEC: Math.round(ms * 1000), STATUS: status }),
  };
}
