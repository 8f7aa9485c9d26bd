#!/usr/bin/env node
/**
 * patronus: the command-line entry point. Every command but `serve` and
 * `token` talks to the running server over REST (--server, token from
 * --token / $PATRONUS_TOKEN / the state dir), or with --direct works on the
 * store and the kernel itself. Human tables by default, --json for scripts.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
// only what every REST command needs is imported here; the engine, server and store load on demand
// (a CLI that imported them spent ~1 s of CPU before it sent a request: src/cli/client.ts)
import { defaultStateDir, LAB_STATE_DIR } from '../api/state-dir.js';
import { formatPlan } from '../apply/plan.js';
import { parseSavedPlan, savedPlanSource, writeSavedPlan } from '../apply/saved-plan.js';
import type { ApplyReport, ConfigSource, ProgressEvent } from '../apply/engine.js';
import { detectFormat, readRegularFile } from '../config/input.js';
import type { Store } from '../store/store.js';
import { ROLES, parseRole, type Role } from '../api/auth/roles.js';
import { hashPassword } from '../api/auth/passwords.js';
import { readNewPassword } from './password-prompt.js';
import { RestClient, describeError, findToken, findTokenWithOrigin, type Client } from './client.js';
import type { DirectClient } from './direct.js';
import { RejectedError, errorJson, exitCodeFor, EXIT } from './errors.js';
import { buildInfo } from '../metrics/build-info.js';
import { colorEnabled, colorize, colorizeError } from './color.js';
import { bashCompletion, zshCompletion } from './completion.js';
import { ConfigError } from '../config/issues.js';
import { table, bytes, count, setOutputWidth, wrapLines } from './table.js';
import { statusText, type StatusJson } from './status.js';
import { runLog } from './log.js';
import { addFleetCommands, addServeFleetOptions, serveFleetOptions } from '../fleet/cli.js';
import { trace, traceProcessStart } from '../system/trace.js';

interface Globals {
  netns?: string;
  server: string;
  token?: string;
  direct: boolean;
  lab: boolean;
  stateDir?: string;
  json: boolean;
}

/** --json, also when commander fails before it parsed the options */
const jsonRequested = () => program.opts<Globals>().json || process.argv.slice(2).includes('--json');
/** plan --detailed-exitcode: 0 no changes, 2 changes, 1 any error (terraform's convention) */
let detailedExitcode = false;

const program = new Command('patronus')
  .description('Linux firewall and edge data-plane manager')
  .option('--server <url>', 'REST address of the running server', process.env.PATRONUS_SERVER ?? 'http://127.0.0.1:9180')
  .option('--token <token>', 'API bearer token (default: $PATRONUS_TOKEN or the admin token in the state dir)')
  .option('--direct', 'work on the store and kernel directly instead of through the server', false)
  .option('--lab', 'the lab (scripts/run.sh): with --direct act on its namespace; with token/user act on its store (state in /var/lib/patronus-lab)', false)
  .option('--netns <name>', 'with --direct: act inside this network namespace instead of the host')
  .option('--state-dir <dir>', 'state directory (store, tokens); default /var/lib/patronus or $PATRONUS_STATE_DIR')
  .option('--json', 'print JSON for scripts instead of tables (errors too: {"error": ...} on stdout)', false)
  // git describe runs only when the version is asked for (not on every command's start)
  .option('-V, --version', 'print the version (package version and git describe of the checkout)')
  .on('option:version', () => {
    console.log(versionText());
    process.exit(EXIT.ok);
  })
  // usage errors go through the same exit codes and --json handling as every other error
  .exitOverride()
  .configureOutput({ outputError: (text, write) => (jsonRequested() ? undefined : write(text)) });

function versionText(): string {
  const b = buildInfo();
  return `patronus ${b.version}${b.revision ? ` (${b.revision})` : ''}`;
}

const globals = (): Globals => program.opts<Globals>();
// tables and plans wrap to a terminal ($COLUMNS or the tty's width); pipes get unwrapped lines
setOutputWidth(process.stdout.isTTY ? Number(process.env.COLUMNS) || process.stdout.columns : undefined);
const out = (value: unknown, human: () => string) => console.log(globals().json ? JSON.stringify(value, null, 2) : colorEnabled(process.stdout) ? colorize(human()) : human());

/** readOnly: the command changes nothing (validate): --direct then never creates a state database. */
async function client(readOnly = false): Promise<Client> {
  const g = globals();
  if (!g.direct) {
    const { token, origin } = findTokenWithOrigin(g.token, g.stateDir, g.server);
    return new RestClient(g.server, token, origin);
  }
  const [{ DirectClient }, { LAB_NS }] = await Promise.all([import('./direct.js'), import('../lab/lab.js')]);
  const stateDir = g.stateDir ?? defaultStateDir(g.lab);
  const netns = g.netns ?? (g.lab ? LAB_NS : undefined);
  return new DirectClient({ stateDir, readOnly, ...(netns ? { netns } : {}), ...(g.json ? {} : { onProgress: progress }) });
}

/** progress of a direct apply, on stderr so --json output stays clean */
function progress(e: ProgressEvent): void {
  if (e.phase === 'apply' || e.phase === 'rollback') process.stderr.write(`${e.phase === 'rollback' ? 'rolling back' : 'applying'} ${e.subsystem} (${e.index + 1}/${e.total}) ... `);
  else if (e.phase === 'step-done') process.stderr.write(`${e.ok ? 'ok' : 'FAILED'} (${e.ms.toFixed(0)} ms)\n`);
}

/** The document the command read, named in its error lines (`FILE:LINE:COL: path: message`). */
let documentFile: string | undefined;

/** The document in FILE (- for stdin); a file must be a regular file within the size limit. */
function readSource(file: string, o: { allowEmpty?: boolean } = {}): ConfigSource {
  documentFile = file === '-' ? '<stdin>' : file;
  let text: string;
  try {
    text = file === '-' ? readFileSync(0, 'utf8') : readRegularFile(file);
  } catch (e) {
    throw new ConfigError([{ path: [], message: `cannot read ${file === '-' ? 'stdin' : file}: ${(e as Error).message}` }]);
  }
  return { text, format: detectFormat(text, file === '-' ? undefined : file), ...(o.allowEmpty ? { allowEmpty: true } : {}) };
}

/** a flag value in seconds, checked here rather than by the server */
function parseSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`"${v}" is not a positive number of seconds`);
  return n;
}

/** a flag value that must be a whole number >= 1 (and <= max) */
function positiveInt(v: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`"${v}" is not a whole number from 1 to ${max}`);
  return n;
}

/** serve --listen: host:port (IPv6 in brackets), port 1-65535, checked before anything starts */
function listenAddress(v: string): string {
  const m = /^(\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(v);
  if (!m) throw new InvalidArgumentError(`"${v}" is not host:port (an IPv6 address goes in brackets: [::1]:9180)`);
  const port = Number(m[4]);
  if (port < 1 || port > 65535) throw new InvalidArgumentError(`port ${m[4]} of "${v}" is not from 1 to 65535`);
  const host = m[2] ?? m[3]!;
  if (m[2] !== undefined ? !isIPv6(host) : !isIPv4(host) && !/^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(host)) {
    throw new InvalidArgumentError(`"${host}" in "${v}" is not an IP address or host name`);
  }
  return v;
}

/** serve --keep-revisions: 0 (no limit) or a whole number of revisions */
function keepRevisionsOption(v: string): string {
  if (!/^(0|[1-9][0-9]{0,8})$/.test(v)) throw new InvalidArgumentError(`"${v}" is not a whole number of revisions (0 = no limit)`);
  return v;
}

/** serve --keep-days: 0 (no limit) or a positive number of days */
function keepDaysOption(v: string): string {
  if (!/^[0-9]{1,6}(\.[0-9]+)?$/.test(v) || (v !== '0' && !(Number(v) > 0))) throw new InvalidArgumentError(`"${v}" is not a number of days (0 = no limit)`);
  return v;
}

const ALLOW_EMPTY = 'accept an empty document (applying it removes everything Patronus manages)';

async function withClient<T>(fn: (c: Client) => Promise<T>, readOnly = false): Promise<T> {
  const c = await client(readOnly);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

function reportText(r: ApplyReport): string {
  if (r.unchanged) return `No changes: the running system matches the committed revision ${r.revision} (nothing recorded, nothing touched)`;
  const lines = [`revision ${r.revision}: ${r.state} in ${r.durationMs.toFixed(0)} ms`];
  lines.push(table(['step', 'result', 'ms'], r.steps.map((s) => [s.subsystem, s.unchanged ? 'unchanged' : s.ok ? 'ok' : `FAILED: ${s.error}`, s.ms.toFixed(1)])));
  if (r.rollback) lines.push('rollback:', table(['step', 'result', 'ms'], r.rollback.map((s) => [s.subsystem, s.ok ? 'ok' : `FAILED: ${s.error}`, s.ms.toFixed(1)])));
  if (r.confirmDeadline) lines.push(`awaiting confirmation until ${r.confirmDeadline}: run \`patronus confirm\` or it rolls back by itself`);
  return lines.join('\n');
}

program
  .command('validate')
  .argument('<file>', 'configuration document (YAML or JSON; - for stdin)')
  .description('check a configuration: schema, aliases, every subsystem; lists every problem')
  .option('--allow-empty', ALLOW_EMPTY, false)
  .action(async (file: string, o: { allowEmpty: boolean }) => {
    await withClient(async (c) => {
      await c.validate(readSource(file, o));
      out({ valid: true }, () => `${file}: valid`);
    }, true);
  });

program
  .command('plan')
  .argument('<file>', 'configuration document (YAML or JSON; - for stdin)')
  .description('show what applying the configuration would change')
  .option('--allow-empty', ALLOW_EMPTY, false)
  .option('--detailed-exitcode', 'exit 0 when there is nothing to change, 2 when there are changes, 1 on any error (like terraform)', false)
  .option('-o, --out <planfile>', 'also save the plan to this file: `patronus apply PLANFILE` applies exactly it, and refuses once the committed revision or the running system changed')
  .action(async (file: string, o: { allowEmpty: boolean; detailedExitcode: boolean; out?: string }) => {
    detailedExitcode = o.detailedExitcode;
    await withClient(async (c) => {
      const src = readSource(file, o);
      const plan = await c.plan(src);
      if (o.out) writeSavedPlan(o.out, src, plan);
      out(plan, () => wrapLines(formatPlan(plan)) + (o.out ? `\n\nSaved the plan to ${o.out}. To apply exactly it: patronus apply ${o.out}` : ''));
      if (o.detailedExitcode && Object.values(plan.summary).some((n) => n > 0)) process.exitCode = EXIT.changes;
    });
  });

program
  .command('apply')
  .argument('<file>', 'configuration document (YAML or JSON; - for stdin), or a plan saved with `plan -o`')
  .description('apply the configuration as a new revision (all or nothing)')
  .option('-m, --message <text>', 'why (kept with the revision)', '')
  .option('--confirm-within <seconds>', 'roll back by itself unless `patronus confirm` runs within this time', parseSeconds)
  .option('--allow-empty', ALLOW_EMPTY, false)
  .action(async (file: string, o: { message: string; confirmWithin?: number; allowEmpty: boolean }) => {
    traceProcessStart('cli: process start');
    trace('cli: apply action');
    await withClient(async (c) => {
      let src = readSource(file, o);
      trace('cli: file read');
      const saved = 'text' in src ? parseSavedPlan(src.text, file) : undefined;
      if (saved) src = savedPlanSource(saved);
      // over REST the server streams each step (the same lines as a direct apply), on stderr
      const streamed = !globals().json && !globals().direct;
      if (streamed) process.stderr.write(`applying ${file} via ${globals().server}\n`);
      const r: ApplyReport = await c.apply(src, { message: o.message, ...(o.confirmWithin !== undefined ? { confirmWithin: o.confirmWithin } : {}), ...(streamed ? { onProgress: progress } : {}) });
      trace('cli: report received');
      out(r, () => reportText(r));
      if (globals().direct && r.state === 'confirming') {
        // direct mode: this process holds the timer, so it stays until confirmed (from another shell) or rolled back
        process.stderr.write(`waiting: run \`patronus --direct${globals().lab ? ' --lab' : ''} confirm\` in another shell within ${o.confirmWithin} s\n`);
        const confirmed = await (c as DirectClient).engine.waitForConfirmation(r.revision);
        console.error(confirmed ? `revision ${r.revision} confirmed` : `revision ${r.revision} was not confirmed: rolled back`);
        if (!confirmed) process.exitCode = EXIT.unconfirmed;
      }
    });
  });

program
  .command('confirm')
  .description('confirm the revision applied with --confirm-within')
  .action(async () => {
    await withClient(async (c) => {
      const r = await c.confirm();
      out(r, () => `revision ${r.id} confirmed`);
    });
  });

program
  .command('rollback')
  .description('roll back the revision awaiting confirmation, or go back to the previous committed revision')
  .option('--to <revision>', 'go back to this revision instead', positiveInt)
  .action(async (o: { to?: number }) => {
    await withClient(async (c) => {
      // over REST streamed like apply: each step on stderr, no client timeout while the server works
      const streamed = !globals().json && !globals().direct;
      if (streamed) process.stderr.write(`rolling back via ${globals().server}\n`);
      const r = await c.rollback(o.to, streamed ? { onProgress: progress } : {});
      out(r, () => reportText(r));
    });
  });

program
  .command('status')
  .description('revisions, drift, and per subsystem what runs (fast-path interfaces and program ids, map fill, nft table, daemons with pids)')
  .action(async () => {
    await withClient(async (c) => {
      const [s, services] = await Promise.all([c.status() as Promise<StatusJson>, c.services()]);
      out({ ...s, services }, () => statusText(s, services));
      // like /healthz: drift is a failure for scripts
      if (s.drift?.state === 'drift') process.exitCode = 1;
    });
  });

program
  .command('rules')
  .description('rules with their live packet and byte counters')
  .action(async () => {
    await withClient(async (c) => {
      const r = await c.rules();
      out(r, () =>
        [
          r.rules.length
            ? table(['subsystem', 'rule', 'action', 'packets', 'bytes', 'rate-limited'], r.rules.map((x) => [x.subsystem, x.rule, x.action ?? '', count(x.packets), bytes(x.bytes), x.rateLimited === undefined ? '' : count(x.rateLimited)]), { right: [3, 4, 5] })
            : 'no rules with counters',
          ...(r.verdicts.length ? ['', table(['subsystem', 'direction', 'verdict', 'packets', 'bytes'], r.verdicts.map((x) => [x.subsystem, x.direction, x.verdict, count(x.packets), bytes(x.bytes)]), { right: [3, 4] })] : []),
        ].join('\n'),
      );
    });
  });

program
  .command('log')
  .description('the firewall event log: fast-path drops (sampled per rule) and nftables log/reject events; -f follows')
  .option('-f, --follow', 'keep printing events as they happen', false)
  .option('--rule <name>', 'only this rule (fast path: "default" for default-drop policies, "blocklist")')
  .option('--src <cidr>', 'only sources in this address or prefix')
  .option('--iface <name>', 'only this interface')
  .option('--source <source>', 'only xdp (fast path) or nft (nftables) events')
  .option('-n, --limit <n>', 'recent events to print first (default 100; with -f 0)', (v) => positiveInt(v, 10_000))
  .action(async (o: { follow: boolean; rule?: string; src?: string; iface?: string; source?: string; limit?: number }) => {
    const g = globals();
    if (g.direct) throw new RejectedError('log: the event log lives in the running server (it reads the kernel\'s event ring and NFLOG group); run without --direct');
    if (o.source !== undefined && o.source !== 'xdp' && o.source !== 'nft') throw new RejectedError(`log: --source must be xdp or nft, not "${o.source}"`);
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await runLog(g.server, findToken(g.token, g.stateDir, g.server), { ...o, json: g.json }, (line) => console.log(line), ac.signal);
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  });

program
  .command('revisions')
  .description('revision history, newest first')
  .option('-n, --limit <n>', 'how many (1-1000)', (v) => positiveInt(v, 1000), 20)
  .action(async (o: { limit: number }) => {
    await withClient(async (c) => {
      const list = await c.revisions(o.limit);
      out(list, () => table(['id', 'state', 'created', 'author', 'message'], list.map((r) => [String(r.id), r.state, r.createdAt.replace('T', ' ').slice(0, 19), r.author, r.message])));
    });
  });

/**
 * The store of the state dir (token and user commands work on it directly).
 * Without --state-dir, $PATRONUS_STATE_DIR or --lab that is the host's
 * /var/lib/patronus; when no server ever ran there but the lab's (the
 * README's `scripts/run.sh`) did, a new store there would hold a user or
 * token no server reads, and say "created": refused, naming both choices.
 */
const openStore = async (): Promise<Store> => {
  const g = globals();
  const dir = g.stateDir ?? defaultStateDir(g.lab);
  const db = join(dir, 'patronus.db');
  if (!g.stateDir && !process.env.PATRONUS_STATE_DIR && !g.lab && !existsSync(db) && existsSync(join(LAB_STATE_DIR, 'patronus.db'))) {
    throw new RejectedError(`no store in ${dir} (no server has run with it), but the lab's is in ${LAB_STATE_DIR}: add --lab to act on the lab server's store, or --state-dir ${dir} to create one there`);
  }
  return (await import('../store/store.js')).Store.open(db);
};

/** --role: checked before anything is opened */
function roleOption(v: string): Role {
  try {
    return parseRole(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}
const ROLE_HELP = `role: ${ROLES.join(', ')} (see docs/control-plane.md "Roles")`;

/** A name that exists already is the operator's mistake (exit 2), said in a sentence. */
function rejectTaken<T>(fn: () => T, hint: string): T {
  try {
    return fn();
  } catch (e) {
    if ((e as Error).name === 'NameTakenError') throw new RejectedError(`${(e as Error).message} (${hint})`);
    throw e;
  }
}

const token = program.command('token').description('API tokens (works on the store directly; stored hashed)');
token
  .command('add')
  .argument('<name>')
  .option('--role <role>', ROLE_HELP, roleOption, 'admin' as Role)
  .description('create a token and print it (the only time it is shown)')
  .action(async (name: string, o: { role: Role }) => {
    using s = await openStore();
    const secret = rejectTaken(() => s.addToken(name, o.role), `remove it first: patronus token remove ${name}`);
    out({ name, role: o.role, token: secret }, () => secret);
  });
token
  .command('list')
  .action(async () => {
    using s = await openStore();
    const list = s.listTokens();
    out(list, () => table(['name', 'role', 'created'], list.map((t) => [t.name, t.role, t.createdAt])));
  });
token
  .command('role')
  .argument('<name>')
  .argument('<role>', ROLE_HELP, roleOption)
  .description("change a token's role (its console sessions follow at once)")
  .action(async (name: string, role: Role) => {
    using s = await openStore();
    if (!s.setTokenRole(name, role)) throw new Error(`no token named "${name}"`);
    out({ name, role }, () => `token ${name} is now ${role}`);
  });
token
  .command('remove')
  .argument('<name>')
  .description('remove a token (its console sessions end too)')
  .action(async (name: string) => {
    using s = await openStore();
    if (!s.removeToken(name)) throw new Error(`no token named "${name}"`);
  });

const user = program.command('user').description('console users (works on the store directly; passwords hashed with scrypt)');
user
  .command('add')
  .argument('<name>')
  .option('--role <role>', ROLE_HELP, roleOption, 'viewer' as Role)
  .description('create a console user; the password is read from stdin (first line), or asked for twice on a terminal')
  .action(async (name: string, o: { role: Role }) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) throw new RejectedError(`user name "${name}": letters, digits and ._@- only, 1-64 characters, starting with a letter or digit`);
    {
      using s = await openStore();
      if (s.user(name)) throw new RejectedError(`a user named "${name}" already exists (patronus user passwd ${name} changes its password)`);
    }
    const hash = await hashPassword(await readNewPassword(`password for ${name}`));
    using s = await openStore();
    const u = rejectTaken(() => s.addUser(name, o.role, hash), `patronus user passwd ${name} changes its password`);
    out({ name: u.name, role: u.role, createdAt: u.createdAt }, () => `user ${u.name} (${u.role}) created`);
  });
user
  .command('passwd')
  .argument('<name>')
  .description("set a user's password (stdin or prompt, as for add); its sessions end")
  .action(async (name: string) => {
    {
      using s = await openStore();
      if (!s.user(name)) throw new Error(`no user named "${name}"`);
    }
    const hash = await hashPassword(await readNewPassword(`new password for ${name}`));
    using s = await openStore();
    if (!s.setUserPassword(name, hash)) throw new Error(`no user named "${name}"`);
    out({ name, passwordChanged: true }, () => `password of ${name} changed; its sessions were signed out`);
  });
user
  .command('list')
  .action(async () => {
    using s = await openStore();
    const list = s.listUsers();
    out(list, () => table(['name', 'role', 'created'], list.map((u) => [u.name, u.role, u.createdAt])));
  });
user
  .command('role')
  .argument('<name>')
  .argument('<role>', ROLE_HELP, roleOption)
  .description("change a user's role (its sessions follow at once)")
  .action(async (name: string, role: Role) => {
    using s = await openStore();
    if (!s.setUserRole(name, role)) throw new Error(`no user named "${name}"`);
    out({ name, role }, () => `user ${name} is now ${role}`);
  });
user
  .command('remove')
  .argument('<name>')
  .description('remove a user (its sessions end too)')
  .action(async (name: string) => {
    using s = await openStore();
    if (!s.removeUser(name)) throw new Error(`no user named "${name}"`);
  });

program
  .command('completion')
  .argument('<shell>', 'bash or zsh')
  .description('print a shell completion script (bash: > /etc/bash_completion.d/patronus; zsh: > a directory in $fpath as _patronus)')
  .action((shell: string) => {
    if (shell === 'bash') process.stdout.write(bashCompletion(program));
    else if (shell === 'zsh') process.stdout.write(zshCompletion(program));
    else throw new RejectedError(`completion: "${shell}" is not a supported shell (bash, zsh)`);
  });

program
  .command('wait-ready')
  .description('wait until the server at --server answers /healthz (the unit\'s readiness check: serve reconciles before it listens)')
  .option('--timeout <seconds>', 'give up after this long (exit 1)', parseSeconds, 60)
  .action(async (o: { timeout: number }) => {
    const url = new URL('/healthz', globals().server);
    const deadline = Date.now() + o.timeout * 1000;
    for (;;) {
      const answered = await fetch(url, { signal: AbortSignal.timeout(5000) }).then(
        (r) => `HTTP ${r.status}`,
        (e: { cause?: { code?: string } }) => {
          const code = e.cause?.code ?? '';
          // refused/reset/not yet resolvable: not listening yet; a TLS complaint means a server answered
          return /^(ECONNREFUSED|ECONNRESET|ENOENT|EAI_AGAIN|UND_ERR_SOCKET|UND_ERR_CONNECT_TIMEOUT|ABORT_ERR)$/.test(code) || !code ? undefined : code;
        },
      );
      if (answered) {
        out({ ready: true, server: globals().server, answer: answered }, () => `${globals().server}: ready (${answered})`);
        return;
      }
      if (Date.now() > deadline) throw new Error(`${url.href} did not answer within ${o.timeout} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
  });

addFleetCommands(program, out);

addServeFleetOptions(program
  .command('serve')
  .description('run the control plane in the foreground (REST API, /metrics)')
  .option('--listen <host:port>', 'REST/metrics listen address (default: api.listen of the configuration, 127.0.0.1:9180)', listenAddress)
  .option('--lab', 'create the lab namespaces and manage patronus-lab with the embedded default configuration', false)
  .option('--config <file>', 'configuration to apply when the store is empty (default: the embedded default)')
  .option('--tls-cert <file>', 'serve HTTPS with this certificate')
  .option('--tls-key <file>', 'private key for --tls-cert')
  .option('--keep-revisions <n>', 'revisions to keep (older finished ones are pruned; 0 = no limit; default $PATRONUS_KEEP_REVISIONS or 500)', keepRevisionsOption)
  .option('--keep-days <days>', 'keep revisions younger than this too (0 = no limit; default $PATRONUS_KEEP_DAYS); the committed and pending ones are never pruned', keepDaysOption))
  .action(async (o: { listen?: string; lab: boolean; config?: string; tlsCert?: string; tlsKey?: string; keepRevisions?: string; keepDays?: string } & Parameters<typeof serveFleetOptions>[0]) => {
    const g = globals();
    const [{ serve }, { parseRetention }] = await Promise.all([import('../api/serve.js'), import('../store/store.js')]);
    const { listen, lab, config, tlsCert, tlsKey, keepRevisions, keepDays } = o;
    const retention = keepRevisions !== undefined || keepDays !== undefined ? parseRetention(keepRevisions, keepDays) : undefined;
    const fleet = serveFleetOptions(o);
    await serve({ ...(listen ? { listen } : {}), lab: lab || g.lab, ...(config ? { config } : {}), ...(tlsCert ? { tlsCert } : {}), ...(tlsKey ? { tlsKey } : {}), ...(retention ? { retention } : {}), ...(g.stateDir ? { stateDir: g.stateDir } : {}), ...(g.netns ? { netns: g.netns } : {}), ...(fleet ? { fleet } : {}) });
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  // --help and --version end parsing through the same path, successfully
  if (e instanceof CommanderError && e.exitCode === 0) process.exit(EXIT.ok);
  const code = detailedExitcode ? EXIT.error : exitCodeFor(e);
  if (jsonRequested()) console.log(JSON.stringify(errorJson(e, code), null, 2));
  // commander already printed its usage error
  else if (!(e instanceof CommanderError)) console.error(colorEnabled(process.stderr) ? colorizeError(`patronus: ${describeError(e, documentFile)}`) : `patronus: ${describeError(e, documentFile)}`);
  process.exit(code);
});
