/**
 * The commit-confirm guard: a detached process the engine spawns when it
 * applies a revision with a confirmation deadline (Engine.spawnGuard), so the
 * deadline holds even when the server or the `--direct` CLI that applied is
 * killed. It watches the revision in the store; when it is confirmed or rolled
 * back by someone else it exits; at the deadline (plus a short grace, so a
 * living owner's own timer goes first) it takes the apply lock and rolls the
 * revision back if it still awaits confirmation, with the same subsystems on
 * the same host, namespace and state dir as the engine that applied.
 *
 *   node guard.js '<GuardSpec as JSON>'
 */
import { existsSync } from 'node:fs';
import { Engine, GUARD_GRACE_MS, type GuardSpec, type PreparedRestore } from './engine.js';
import { loadDomains, subsystemsOf } from './domain.js';
import { Store } from '../store/store.js';
import { Host } from '../system/host.js';

const spec = JSON.parse(process.argv[2] ?? '{}') as GuardSpec;
const log = (msg: string) => process.stdout.write(`${new Date().toISOString()} guard pid ${process.pid} revision ${spec.revision}: ${msg}\n`);

async function main(): Promise<number> {
  const deadline = Date.parse(spec.deadline);
  if (!Number.isFinite(deadline) || !spec.storePath) {
    log(`bad guard spec ${process.argv[2]}`);
    return 2;
  }
  let domains;
  try {
    domains = await loadDomains(spec.domains ?? []);
  } catch (e) {
    log(`cannot load the domains ${JSON.stringify(spec.domains)}: ${(e as Error).message}`);
    return 2;
  }
  const registry = subsystemsOf(domains);
  const chosen = spec.subsystems.map((name) => registry.find((s) => s.name === name));
  if (chosen.some((s) => !s)) {
    log(`unknown subsystem in ${spec.subsystems.join(', ')}: cannot act`);
    return 2;
  }
  // never create a store: one that is gone (state dir removed) has nothing to guard
  if (!existsSync(spec.storePath)) {
    log('the store is gone: nothing to guard');
    return 0;
  }
  const store = Store.open(spec.storePath, { retention: spec.retention });
  const engine = new Engine({ host: new Host(spec.host), store, domains, subsystems: chosen as NonNullable<(typeof chosen)[number]>[], lockPath: spec.lockPath, confirmGuard: false });
  engine.on('error', (e) => log(`error: ${e.message}`));
  let prepared: PreparedRestore | undefined;
  let preparedTried = false;
  try {
    // watch until the deadline: exit as soon as the revision is confirmed or rolled back by someone else
    for (;;) {
      if (!existsSync(spec.storePath)) {
        log('the store is gone: nothing to guard');
        return 0;
      }
      const state = store.get(spec.revision)?.state;
      if (state !== 'confirming' && state !== 'applying') {
        log(`revision is ${state ?? 'gone'}: nothing to do`);
        return 0;
      }
      const left = deadline + GUARD_GRACE_MS - Date.now();
      if (left <= 0) break;
      // while waiting: compile what the rollback goes back to, so the deadline costs only the converge
      if (!preparedTried) {
        preparedTried = true;
        try {
          prepared = await engine.prepareRestore();
        } catch (e) {
          log(`cannot compile the committed revision ahead (the rollback will try again): ${(e as Error).message}`);
        }
        continue;
      }
      await new Promise((r) => setTimeout(r, Math.min(left, 1000)));
    }
    const report = await engine.expireIfPending(spec.revision, `not confirmed by its deadline ${spec.deadline} (rolled back by the confirm guard: the process that applied it was gone)`, prepared);
    if (!report) {
      log('confirmed or rolled back in time: nothing to do');
      return 0;
    }
    const failed = report.rollback?.filter((s) => !s.ok) ?? [];
    log(failed.length ? `ROLLBACK INCOMPLETE: ${failed.map((s) => `${s.subsystem}: ${s.error}`).join('; ')}` : `rolled back to ${report.rolledBackTo ? `revision ${report.rolledBackTo}` : 'the empty configuration'}`);
    return failed.length ? 1 : 0;
  } finally {
    engine.close();
    store.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    log(`failed: ${e.stack ?? e.message}`);
    process.exit(1);
  },
);
