/**
 * The shape every gateway daemon module has (docs/architecture.md, "Slow path and
 * services"), and the adapter that turns one into a Subsystem:
 *
 *   desired (pure)  config section -> instance model, or null when disabled
 *   render (pure)   model + paths -> files
 *   check           the daemon's own checker on the rendered files, in a
 *                   scratch directory, before anything running is touched
 *   start/reload/stop, status, openings
 *
 * Its steps (what plan prints and apply runs) write each changed file (only
 * after the files passed check in validate), start the daemon when it is not
 * running, reload (or restart) it when its files changed, and stop it and
 * remove its files when the section is disabled. A daemon that
 * fails to start throws a DaemonError with its log, which makes the engine
 * roll the whole apply back.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Host } from '../../system/host.js';
import { defineSubsystem, step, type CompileContext, type DriftFinding, type ServiceOpening, type Step, type Subsystem } from '../../apply/subsystem.js';
import { daemonPid, processUptime } from './daemon.js';
import { certificateFiles } from '../../certificates/acme.js';
import { ensureCert } from '../pki/pki.js';
import type { Config } from '../../config/document.js';
import type { Issue } from '../../config/issues.js';

export interface RenderedFile {
  /** relative to the instance directory */
  path: string;
  content: string;
  mode?: number;
}

/** Where one service instance keeps everything (all under the Host's state dir). */
export interface InstancePaths {
  /** <stateDir>/services/<name> */
  dir: string;
  /** absolute path of a rendered file */
  file(rel: string): string;
  pidFile: string;
  logFile: string;
  /** runtime directory for sockets (short path: unix sockets are limited to 108 bytes) */
  runDir: string;
}

export interface ServiceModule<M> {
  /** subsystem name and directory name */
  readonly name: string;
  desired(ctx: CompileContext): { desired: M | null; issues: Issue[] };
  render(model: M, paths: InstancePaths): RenderedFile[];
  /** runs the daemon's checker against files rendered into `paths` (a scratch instance) */
  check(model: M, paths: InstancePaths, host: Host): Promise<Issue[]>;
  start(model: M, paths: InstancePaths, host: Host): Promise<void>;
  /** apply changed files to the running daemon (reload or restart) */
  reload(model: M, paths: InstancePaths, host: Host, changed: string[]): Promise<void>;
  stop(paths: InstancePaths, host: Host): Promise<void>;
  running(paths: InstancePaths, host: Host): Promise<boolean>;
  status?(paths: InstancePaths, host: Host): Promise<unknown>;
  openings?(config: Config): ServiceOpening[];
  /**
   * Certificates of the `certificates:` section this daemon serves: each is
   * copied into the instance dir as FILE.pem (full chain) and FILE.key
   * (0600) beside the rendered files, so a renewal is a changed file like
   * any other (plan shows it, apply reloads with it, drift reports a
   * daemon still serving the old one).
   */
  certificates?(model: M): { name: string; file: string }[];
}

export function instancePaths(stateDir: string, name: string): InstancePaths {
  const dir = path.join(stateDir, 'services', name);
  return {
    dir,
    file: (rel) => path.join(dir, rel),
    pidFile: path.join(dir, 'run', `${name}.pid`),
    logFile: path.join(dir, `${name}.log`),
    runDir: path.join(dir, 'run'),
  };
}

export function writeRendered(paths: InstancePaths, files: readonly RenderedFile[]): void {
  mkdirSync(paths.runDir, { recursive: true });
  for (const f of files) {
    const target = paths.file(f.path);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, f.content, { mode: f.mode ?? 0o644 });
  }
}

/** Which rendered files differ from what is on disk. */
export function changedFiles(paths: InstancePaths, files: readonly RenderedFile[]): string[] {
  return files
    .filter((f) => {
      try {
        return readFileSync(paths.file(f.path), 'utf8') !== f.content;
      } catch {
        return true;
      }
    })
    .map((f) => f.path);
}

interface Desired<M> {
  model: M | null;
}

export function serviceSubsystem<M>(mod: ServiceModule<M>): Subsystem<Desired<M>> {
  const pathsFor = (host: Host) => instancePaths(host.stateDir, mod.name);
  return defineSubsystem<Desired<M>>({
    name: mod.name,
    compile(ctx) {
      const { desired, issues } = mod.desired(ctx);
      return { desired: { model: desired }, issues };
    },
    async validate(d, host) {
      if (!d.model) return [];
      const scratch = mkdtempSync(path.join(os.tmpdir(), `patronus-check-${mod.name}-`));
      try {
        const paths = instancePaths(scratch, mod.name);
        writeRendered(paths, [...mod.render(d.model, paths), ...(await certificateCopies(mod, d.model, host.stateDir, scratch))]);
        return await mod.check(d.model, paths, host);
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    },
    async steps(d, host) {
      const paths = pathsFor(host);
      const running = await mod.running(paths, host);
      const model = d.model;
      if (!model) {
        // a partly running instance (one daemon of several died) is "not running" yet must go: stop whatever is left
        if (!running && !existsSync(paths.dir)) return [];
        return [
          step({ action: 'stop', object: mod.name }, async () => {
            await mod.stop(paths, host);
            rmSync(paths.dir, { recursive: true, force: true });
          }),
        ];
      }
      // a certificate the certificates step has not issued yet (a first apply) is a file to add: plan can
      // show it, and apply (which runs this subsystem's steps after that one) copies it when the step runs
      const copies = await certificateCopies(mod, model, host.stateDir, undefined, true);
      const pending = new Set(copies.filter((c) => c.pending).map((c) => c.path));
      const files = [...mod.render(model, paths), ...copies];
      const changed = changedFiles(paths, files);
      const steps: Step[] = changed.map((f) =>
        step({ action: existsSync(paths.file(f)) ? 'change' : 'add', object: `${mod.name} file ${f}` }, async () =>
          writeRendered(paths, (pending.has(f) ? await certificateCopies(mod, model, host.stateDir) : files).filter((x) => x.path === f)),
        ),
      );
      if (!running) {
        steps.push(
          step({ action: 'start', object: mod.name }, async () => {
            mkdirSync(paths.runDir, { recursive: true });
            await mod.start(model, paths, host);
          }),
        );
      } else if (changed.length) steps.push(step({ action: 'reload', object: mod.name }, () => mod.reload(model, paths, host, changed)));
      return steps;
    },
    async teardown(host) {
      const paths = pathsFor(host);
      await mod.stop(paths, host);
      if (existsSync(paths.dir)) rmSync(paths.dir, { recursive: true, force: true });
    },
    async status(host) {
      const paths = pathsFor(host);
      const running = await mod.running(paths, host);
      // the instance's main pid (modules with several daemons list theirs in detail)
      const pid = daemonPid(paths.pidFile);
      const uptimeSeconds = pid === undefined ? undefined : processUptime(pid);
      return {
        running,
        configured: existsSync(paths.dir),
        ...(pid !== undefined ? { pid, ...(uptimeSeconds !== undefined ? { uptimeSeconds } : {}) } : {}),
        ...(running && mod.status ? { detail: await mod.status(paths, host) } : {}),
      };
    },
    /**
     * Supervision: a configured daemon that is not running (crashed, killed)
     * is drift, and the drift loop's repair is apply(), which starts it again
     * (with backoff when it keeps dying). A daemon running while its section
     * is disabled is drift too.
     */
    async drift(d, host) {
      const paths = pathsFor(host);
      const running = await mod.running(paths, host);
      const out: DriftFinding[] = [];
      if (!d.model) {
        if (running) out.push({ object: mod.name, reason: 'running, but not configured' });
        return out;
      }
      if (!running) out.push({ object: mod.name, reason: `not running (no live process for ${paths.pidFile}; log: ${paths.logFile})` });
      // (one not issued yet is the certificates subsystem's finding)
      const copies = (await certificateCopies(mod, d.model, host.stateDir, undefined, true)).filter((c) => !c.pending);
      for (const f of changedFiles(paths, copies).filter((f) => f.endsWith('.pem'))) {
        out.push({ object: `${mod.name} ${f}`, reason: 'a renewed certificate is in service; the daemon still serves the one before' });
      }
      return out;
    },
    configured(d) {
      return d.model !== null;
    },
    ...(mod.openings ? { openings: (config: Config) => mod.openings!(config) } : {}),
  });
}

/** Lists files under the instance dir (for status/debugging). */
export function instanceFiles(paths: InstancePaths): string[] {
  return existsSync(paths.dir) ? readdirSync(paths.dir, { recursive: true }).map(String) : [];
}

/**
 * The copies of the certificates `mod` serves. With `scratch` (the checker's
 * instance), a certificate not issued yet gets a throwaway self-signed
 * stand-in there: validation runs before the apply that orders it. With
 * `pendingOk`, one not issued yet is an empty copy marked pending (plan);
 * otherwise it is an error.
 */
async function certificateCopies<M>(mod: ServiceModule<M>, model: M, stateDir: string, scratch?: string, pendingOk = false): Promise<(RenderedFile & { pending?: boolean })[]> {
  const out: (RenderedFile & { pending?: boolean })[] = [];
  for (const { name, file } of mod.certificates?.(model) ?? []) {
    const f = certificateFiles(stateDir, name);
    let cert: string;
    let key: string;
    try {
      cert = readFileSync(f.fullchain, 'utf8');
      key = readFileSync(f.key, 'utf8');
    } catch {
      if (pendingOk) {
        out.push({ path: `${file}.pem`, content: '', pending: true }, { path: `${file}.key`, content: '', mode: 0o600, pending: true });
        continue;
      }
      if (!scratch) throw new Error(`${mod.name}: certificate "${name}" is not in service (the certificates step orders it; see its error)`);
      const standIn = await ensureCert(scratch, 'stand-in', { name, commonName: name, usage: 'server' });
      cert = standIn.cert;
      key = standIn.key;
    }
    out.push({ path: `${file}.pem`, content: cert }, { path: `${file}.key`, content: key, mode: 0o600 });
  }
  return out;
}
