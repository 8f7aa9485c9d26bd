/**
 * UDP traffic with exact accounting for fast-path tests: count what
 * arrives per source address at the receiver, never trust the sender.
 * Run inside a namespace with nsenter:
 *
 *   node udpcount.js recv ADDR PORT
 *     prints "listening PORT"; each stdin line "report" prints one JSON line
 *     {source: datagrams} of everything received so far.
 *   node udpcount.js send DST PORT PPS DURATION_MS SRC [SRC...]
 *     sends PPS datagrams a second from each SRC (bound as the source
 *     address) for DURATION_MS, then prints JSON {source: sent ok}. With
 *     UDPCOUNT_STOP_ON_STDIN=1 a stdin line "stop" ends the sending earlier
 *     (DURATION_MS is then the longest it runs).
 */
import { createSocket, type Socket } from 'node:dgram';
import { createInterface } from 'node:readline';

const [mode, ...args] = process.argv.slice(2);

if (mode === 'recv') {
  const [addr, port] = args as [string, string];
  const counts: Record<string, number> = {};
  const sock = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
  sock.on('message', (_m, rinfo) => {
    counts[rinfo.address] = (counts[rinfo.address] ?? 0) + 1;
  });
  sock.bind(Number(port), addr, () => {
    sock.setRecvBufferSize(8 * 1024 * 1024);
    process.stdout.write(`listening ${sock.address().port}\n`);
  });
  createInterface({ input: process.stdin }).on('line', (l) => {
    if (l.trim() === 'report') process.stdout.write(`${JSON.stringify(counts)}\n`);
  });
} else if (mode === 'send') {
  const [dst, port, pps, duration, ...sources] = args as [string, string, string, string, ...string[]];
  const sent: Record<string, number> = {};
  const socks: [string, Socket][] = [];
  let pending = 0;
  const tickMs = 5;
  const perTick = Number(pps) * (tickMs / 1000);
  await Promise.all(
    sources.map(
      (src) =>
        new Promise<void>((resolve, reject) => {
          const s = createSocket(src.includes(':') ? 'udp6' : 'udp4');
          s.once('error', reject);
          s.bind(0, src, () => {
            s.setSendBufferSize(4 * 1024 * 1024);
            sent[src] = 0;
            socks.push([src, s]);
            resolve();
          });
        }),
    ),
  );
  const payload = Buffer.alloc(32, 0x61);
  const t0 = Date.now();
  let due = 0;
  let done = 0;
  let stopped = false;
  const rl = process.env.UDPCOUNT_STOP_ON_STDIN === '1' ? createInterface({ input: process.stdin }) : undefined;
  rl?.on('line', (l) => {
    if (l.trim() === 'stop') stopped = true;
  });
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = Date.now() - t0;
      if (elapsed >= Number(duration) || stopped) {
        clearInterval(timer);
        return resolve();
      }
      // catch up on ticks the event loop missed, so the rate holds
      const target = Math.floor((elapsed / tickMs + 1) * perTick);
      const n = target - due;
      due = target;
      for (let i = 0; i < n; i++) {
        for (const [src, s] of socks) {
          pending++;
          s.send(payload, Number(port), dst, (err) => {
            pending--;
            done++;
            if (!err) sent[src]!++;
          });
        }
      }
    }, tickMs);
  });
  while (pending > 0) await new Promise((r) => setTimeout(r, 5));
  void done;
  for (const [, s] of socks) s.close();
  rl?.close();
  process.stdin.destroy();
  process.stdout.write(`${JSON.stringify(sent)}\n`);
} else {
  process.stderr.write('usage: udpcount.js recv ADDR PORT | send DST PORT PPS DURATION_MS SRC...\n');
  process.exit(2);
}
