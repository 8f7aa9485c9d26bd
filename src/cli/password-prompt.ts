/**
 * A new password for `patronus user add|passwd`: the first line of stdin
 * when it is not a terminal (scripts: `echo "$PW" | patronus user add ...`),
 * otherwise asked for twice on the terminal without echo.
 */
import { passwordProblem } from '../api/auth/passwords.js';
import { RejectedError } from './errors.js';

export async function readNewPassword(what: string): Promise<string> {
  let password: string;
  if (!process.stdin.isTTY) {
    password = firstLine(await readAll(process.stdin));
  } else {
    password = await askHidden(`${what}: `);
    if ((await askHidden(`${what} (again): `)) !== password) throw new RejectedError('the two passwords differ');
  }
  const problem = passwordProblem(password);
  if (problem) throw new RejectedError(`${what}: ${problem}`);
  return password;
}

function firstLine(text: string): string {
  return text.split(/\r?\n/)[0] ?? '';
}

async function readAll(stream: NodeJS.ReadStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** One line typed on the terminal, not echoed (raw mode; Ctrl-C aborts). */
function askHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let value = '';
    input.setRawMode(true);
    input.resume();
    const done = (err?: Error) => {
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new RejectedError('cancelled'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch >= ' ') value += ch;
      }
    };
    input.on('data', onData);
  });
}
