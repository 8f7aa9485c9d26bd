/**
 * A tiny TCP/UDP server and client for namespace tests (no socat/nc on these
 * machines). Run inside a namespace with nsenter:
 *
 *   node flowtool.js server tcp|udp ADDR PORT NAME
 *     prints "listening PORT"; every TCP connection gets
 *     "NAME peer=ADDR:PORT local=ADDR:PORT\n" then each line echoed back as "NAME echo LINE";
 *     every UDP datagram gets the same greeting as its reply.
 *   node flowtool.js client tcp|udp ADDR PORT TIMEOUT_MS [LOCAL_ADDR]
 *     prints the server's greeting and exits 0; exits 3 on timeout, 4 on error.
 *   node flowtool.js session ADDR PORT TIMEOUT_MS [LOCAL_ADDR]
 *     keeps one TCP connection: prints the greeting, then sends each stdin line and
 *     prints each reply line (what a long-lived connection across a reload needs).
 */
import { createServer, connect, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

const [mode, ...args] = process.argv.slice(2);

function lines(sock: Socket, onLine: (l: string) => void): void {
  let buf = '';
  sock.on('data', (d) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

if (mode === 'server') {
  const [proto, addr, port, name] = args as [string, string, string, string];
  if (proto === 'tcp') {
    const srv = createServer((sock) => {
      sock.on('error', () => {});
      sock.write(`${name} peer=${sock.remoteAddress}:${sock.remotePort} local=${sock.localAddress}:${sock.localPort}\n`);
      lines(sock, (l) => sock.write(`${name} echo ${l}\n`));
    });
    srv.listen(Number(port), addr, () => console.log(`listening ${(srv.address() as { port: number }).port}`));
  } else {
    const s = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    s.on('message', (_m, r) => s.send(`${name} peer=${r.address}:${r.port} local=${addr}:${port}\n`, r.port, r.address));
    s.bind(Number(port), addr, () => console.log(`listening ${s.address().port}`));
  }
} else if (mode === 'client') {
  const [proto, addr, port, timeout, local] = args as [string, string, string, string, string | undefined];
  const t = setTimeout(() => {
    console.log('timeout');
    process.exit(3);
  }, Number(timeout));
  if (proto === 'tcp') {
    const sock = connect({ host: addr, port: Number(port), ...(local ? { localAddress: local } : {}) });
    sock.on('error', (e) => {
      console.log(`error ${e.message}`);
      process.exit(4);
    });
    lines(sock, (l) => {
      console.log(l);
      clearTimeout(t);
      sock.destroy();
      process.exit(0);
    });
  } else {
    const s = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    s.on('message', (m) => {
      process.stdout.write(m.toString());
      clearTimeout(t);
      process.exit(0);
    });
    const send = () => s.send('hello', Number(port), addr);
    if (local) s.bind(0, local, send);
    else send();
  }
} else if (mode === 'session') {
  const [addr, port, timeout, local] = args as [string, string, string, string | undefined];
  const sock = connect({ host: addr, port: Number(port), timeout: Number(timeout), ...(local ? { localAddress: local } : {}) });
  sock.on('error', (e) => {
    console.log(`error ${e.message}`);
    process.exit(4);
  });
  lines(sock, (l) => console.log(l));
  sock.on('close', () => {
    console.log('closed');
    process.exit(0);
  });
  createInterface({ input: process.stdin }).on('line', (l) => sock.write(`${l}\n`));
} else if (mode === 'udpsession') {
  const [addr, port, local] = args as [string, string, string | undefined];
  const s = createSocket('udp4');
  s.on('message', (m) => process.stdout.write(m.toString()));
  s.bind(0, local, () => {
    createInterface({ input: process.stdin }).on('line', (l) => s.send(l, Number(port), addr));
    console.log('ready');
  });
} else {
  console.error('usage: flowtool server|client|session ...');
  process.exit(2);
}
