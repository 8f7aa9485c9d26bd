/**
 * The etcd client for the fleet (npm etcd3: gRPC to etcd v3, works with the
 * Debian etcd 3.4 server). `etcd://h1:p1,h2:p2` lists the cluster's client
 * endpoints (plain HTTP/2); `etcds://` or a CA file means TLS, with a client
 * certificate and key for mutual TLS. User and password turn on etcd's auth
 * (the password from a file or $PATRONUS_FLEET_PASSWORD, never a flag that
 * `ps` would show).
 */
import { readFileSync } from 'node:fs';
import { Etcd3, type IOptions } from 'etcd3';

export interface FleetConnection {
  /** etcd://host:port[,host:port...] or etcds://... */
  url: string;
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
  /** key prefix (default /patronus/) */
  prefix?: string;
  /** ms for one call before it counts as failed (default 5000) */
  callTimeoutMs?: number;
}

export function parseFleetUrl(url: string): { tls: boolean; hosts: string[] } {
  const m = /^(etcds?):\/\/([^/?#]+)\/?$/.exec(url.trim());
  if (!m) throw new Error(`--fleet "${url}": must be etcd://host:port[,host:port...] (or etcds:// for TLS)`);
  const hosts = m[2]!.split(',').map((h) => h.trim());
  for (const h of hosts) {
    const hp = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(h);
    if (!hp || Number(hp[2]) < 1 || Number(hp[2]) > 65535) throw new Error(`--fleet "${url}": endpoint "${h}" is not host:port`);
  }
  return { tls: m[1] === 'etcds', hosts };
}

export function etcdClient(c: FleetConnection): Etcd3 {
  const { tls, hosts } = parseFleetUrl(c.url);
  const useTls = tls || !!c.ca;
  const read = (what: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new Error(`fleet: cannot read the ${what} ${path}: ${(e as Error).message}`);
    }
  };
  if (!!c.cert !== !!c.key) throw new Error('fleet: a client certificate needs its key (--fleet-cert with --fleet-key)');
  if (c.cert && !useTls) throw new Error('fleet: a client certificate needs TLS (etcds:// or --fleet-ca)');
  const opts: IOptions = {
    hosts: hosts.map((h) => `${useTls ? 'https' : 'http'}://${h}`),
    dialTimeout: 3000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + (c.callTimeoutMs ?? 5000) }),
  };
  if (useTls) {
    if (!c.ca) throw new Error('fleet: etcds:// needs the CA that signed the etcd servers\' certificates (--fleet-ca)');
    opts.credentials = {
      rootCertificate: read('CA certificate', c.ca),
      ...(c.cert ? { certChain: read('client certificate', c.cert), privateKey: read('client key', c.key!) } : {}),
    };
  }
  if (c.user) {
    const password = c.passwordFile ? read('password file', c.passwordFile).toString('utf8').trim() : process.env.PATRONUS_FLEET_PASSWORD;
    if (password === undefined) throw new Error(`fleet: user "${c.user}" needs a password (--fleet-password-file or $PATRONUS_FLEET_PASSWORD)`);
    opts.auth = { username: c.user, password };
  }
  return new Etcd3(opts);
}

/** Where the fleet is, for messages ("etcd 127.0.0.1:2379,127.0.0.1:2381"). */
export function describeFleet(url: string): string {
  return `etcd ${parseFleetUrl(url).hosts.join(',')}`;
}
