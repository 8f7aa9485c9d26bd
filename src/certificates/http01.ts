/**
 * The http-01 challenge responder: a tiny HTTP server that answers
 * /.well-known/acme-challenge/TOKEN with the key authorization stored in
 * WEBROOT/TOKEN, and 404 for everything else. A process of its own so that
 * it listens in the managed host's network namespace (Host.spawn), which
 * may not be the control plane's; it runs only while an order is pending.
 *   node http01.js HOST:PORT WEBROOT     prints "ready" once listening
 */
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const TOKEN = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256})$/;

const [listen, webroot] = process.argv.slice(2) as [string, string];
const at = listen.lastIndexOf(':');
const host = listen.slice(0, at).replace(/^\[|\]$/g, '');
const port = Number(listen.slice(at + 1));

const server = createServer((req, res) => {
  const m = TOKEN.exec((req.url ?? '').split('?')[0]!);
  if (req.method !== 'GET' || !m) {
    res.writeHead(404).end();
    return;
  }
  readFile(path.join(webroot, m[1]!), 'utf8').then(
    (body) => res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body),
    () => res.writeHead(404).end(),
  );
});
server.on('error', (e: NodeJS.ErrnoException) => {
  process.stderr.write(`cannot listen on ${listen}: ${e.code ?? e.message}\n`);
  process.exit(1);
});
server.listen(port, host, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
