/**
 * One long TCP stream for failover tests (run inside a namespace with nsenter):
 *
 *   node tcpstreamtool.js sink ADDR PORT
 *     prints "listening PORT", then "bytes N" every 20 ms while a connection
 *     delivers data, and "closed" / "error CODE" if the connection ends.
 *   node tcpstreamtool.js source ADDR PORT BYTES_PER_10MS
 *     connects and writes that many bytes every 10 ms; prints "error CODE"
 *     and exits 4 if the connection fails.
 */
import { createServer, connect } from 'node:net';

const [mode, addr, port, rate] = process.argv.slice(2) as [string, string, string, string | undefined];

if (mode === 'sink') {
  const srv = createServer((sock) => {
    let bytes = 0;
    let reported = -1;
    sock.on('data', (d) => (bytes += d.length));
    const t = setInterval(() => {
      if (bytes !== reported) console.log(`bytes ${(reported = bytes)}`);
    }, 20);
    sock.on('error', (e: NodeJS.ErrnoException) => console.log(`error ${e.code ?? e.message}`));
    sock.on('close', () => {
      clearInterval(t);
      console.log(`bytes ${bytes}`);
      console.log('closed');
    });
  });
  srv.listen(Number(port), addr, () => console.log(`listening ${(srv.address() as { port: number }).port}`));
} else if (mode === 'source') {
  const chunk = Buffer.alloc(Number(rate ?? 16384), 0x61);
  const sock = connect({ host: addr, port: Number(port) });
  sock.on('error', (e: NodeJS.ErrnoException) => {
    console.log(`error ${e.code ?? e.message}`);
    process.exit(4);
  });
  sock.on('connect', () => {
    console.log('connected');
    setInterval(() => sock.write(chunk), 10);
  });
} else {
  console.error('usage: tcpstreamtool sink ADDR PORT | source ADDR PORT BYTES_PER_10MS');
  process.exit(2);
}
