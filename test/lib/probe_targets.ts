/**
 * What the fleet health probes talk to, run inside a test namespace:
 *   node probe_targets.js ADDRESS TCP_PORT NAME ANSWER
 * a DNS server on ADDRESS:53/udp that answers A queries for NAME with
 * ANSWER (NXDOMAIN for anything else), and a TCP listener on
 * ADDRESS:TCP_PORT that accepts and closes. Prints "ready" once both listen;
 * exits when stdin closes or on SIGTERM.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

const [address, tcpPort, name, answer] = process.argv.slice(2) as [string, string, string, string];

const tcp = createServer((c) => c.end());
const udp = createSocket('udp4');

udp.on('message', (msg, rinfo) => {
  if (msg.length < 12) return;
  // question: labels from byte 12, then QTYPE, QCLASS
  let off = 12;
  const labels: string[] = [];
  while (off < msg.length && msg[off]! > 0) {
    const len = msg[off]!;
    labels.push(msg.subarray(off + 1, off + 1 + len).toString('ascii'));
    off += 1 + len;
  }
  const qEnd = off + 5;
  if (qEnd > msg.length) return;
  const qtype = msg.readUInt16BE(off + 1);
  const hit = labels.join('.').toLowerCase() === name.toLowerCase() && qtype === 1;
  const header = Buffer.alloc(12);
  msg.copy(header, 0, 0, 2); // id
  header.writeUInt16BE(0x8180 | (hit ? 0 : 3), 2); // response, RD+RA, NOERROR or NXDOMAIN
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(hit ? 1 : 0, 6);
  const parts = [header, msg.subarray(12, qEnd)];
  if (hit) {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question
    rr.writeUInt16BE(1, 2); // A
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(60, 6); // TTL
    rr.writeUInt16BE(4, 10);
    answer.split('.').forEach((o, i) => rr.writeUInt8(Number(o), 12 + i));
    parts.push(rr);
  }
  udp.send(Buffer.concat(parts), rinfo.port, rinfo.address);
});

let listening = 0;
const ready = () => {
  if (++listening === 2) process.stdout.write('ready\n');
};
udp.bind(53, address, ready);
tcp.listen(Number(tcpPort), address, ready);

const stop = () => {
  udp.close();
  tcp.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
