/**
 * A service manager's notification socket for tests (the systemd side of
 * sd_notify): python3 binds a unix datagram socket with SO_PASSCRED and
 * prints each message with the sender's pid from the kernel's credentials
 * (SCM_CREDENTIALS), as systemd checks NotifyAccess=main. Node's dgram has
 * no unix datagram sockets. `stop()` in `after`/`finally`.
 */
import { execa, type ResultPromise } from 'execa';

const RECEIVER = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
path = sys.argv[1]
s.bind("\\0" + path[1:] if path.startswith("@") else path)
print(json.dumps({"bound": path}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, d in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", d[:12])[0]
    print(json.dumps({"pid": pid, "message": data.decode()}), flush=True)
`;

export interface Notification {
  pid: number;
  /** KEY=VALUE lines as sent */
  message: string;
  fields: Record<string, string>;
}

export interface NotifySocket {
  /** for NOTIFY_SOCKET: a path, or @name (abstract namespace) */
  path: string;
  /** every message so far, in arrival order */
  received: Notification[];
  /** the first message (from index `from` on) that satisfies `pred`; rejects after timeoutMs naming what came */
  next(pred: (n: Notification) => boolean, timeoutMs: number, from?: number): Promise<Notification>;
  stop(): Promise<void>;
}

export async function notifySocket(path: string): Promise<NotifySocket> {
  const child: ResultPromise = execa('python3', ['-c', RECEIVER, path], { reject: false, buffer: false, stdin: 'ignore' });
  const received: Notification[] = [];
  let bound = false;
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (let i = out.indexOf('\n'); i >= 0; i = out.indexOf('\n')) {
      const line = JSON.parse(out.slice(0, i)) as { bound?: string; pid?: number; message?: string };
      out = out.slice(i + 1);
      if (line.bound) bound = true;
      else {
        const message = line.message!;
        received.push({ pid: line.pid!, message, fields: Object.fromEntries(message.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])) });
      }
    }
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const stop = async () => {
    child.kill('SIGKILL');
    await child;
  };
  try {
    for (const end = Date.now() + 30_000; !bound; await new Promise((r) => setTimeout(r, 50))) {
      if (child.exitCode !== null || Date.now() > end) throw new Error(`notify socket receiver did not bind ${path}: ${err || 'timed out after 30 s'}`);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    path,
    received,
    async next(pred, timeoutMs, from = 0) {
      for (const end = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 50))) {
        const hit = received.slice(from).find(pred);
        if (hit) return hit;
        if (Date.now() > end) throw new Error(`no such notification within ${timeoutMs} ms; received: ${JSON.stringify(received.map((n) => n.message))}`);
      }
    },
    stop,
  };
}
