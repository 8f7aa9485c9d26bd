/**
 * Gateway services: DHCP leases, DNS statistics and blocklists, VPN tunnels
 * and peers (client exports for admins only), routing neighbours, VRRP, IDS
 * alerts and blocks, and every subsystem's own status.
 */
import { useEffect, useState } from 'preact/hooks';
import { download, get, request, type Delete, type Get, type Identity } from '../api';
import { useLive } from '../live';
import { ago, bytes, count, until } from '../format';
import { Scroll } from '../scroll';

const VRRP = ['init', 'backup', 'master', 'fault', 'stopped'];

type Leases = Get<'/api/v1/dhcp/leases'>;
type Alerts = Get<'/api/v1/ids/alerts'>;
type Document = NonNullable<Get<'/api/v1/config'>['config']>;
/** The document's VPN sections: whose client configurations an admin may export. */
type VpnDoc = Partial<Pick<Document, 'wireguard' | 'openvpn'>>;

export function Services({ me }: { me: Identity }) {
  const live = useLive();
  const g = live.frame?.gateway;
  const [leases, setLeases] = useState<Leases>();
  const [alerts, setAlerts] = useState<Alerts>();
  const [status, setStatus] = useState<Get<'/api/v1/services'>>([]);
  const [vpn, setVpn] = useState<VpnDoc>({});
  const [error, setError] = useState<string>();
  useEffect(() => {
    const load = () => {
      get('/api/v1/dhcp/leases').then(setLeases, (e: Error) => setError(e.message));
      get('/api/v1/ids/alerts', '?limit=50').then(setAlerts, (e: Error) => setError(e.message));
      get('/api/v1/services').then(setStatus, (e: Error) => setError(e.message));
      get('/api/v1/config').then((c) => setVpn(c.pending?.config ?? c.config ?? {}), () => undefined);
    };
    load();
    const t = setInterval(load, 5000);
    return () => clearInterval(t);
  }, []);
  const isAdmin = me.role === 'admin';
  const canUnblock = isAdmin || me.role === 'operator';
  const [unblockStatus, setUnblockStatus] = useState<string>();
  const blocked = alerts?.summary?.autoBlock.current ?? [];
  const unblock = async (address: string) => {
    try {
      const r = await request<Delete<'/api/v1/ids/blocks/{address}'>>('DELETE', `/api/v1/ids/blocks/${encodeURIComponent(address)}`);
      setUnblockStatus(r.removed ? `${r.address} unblocked.` : `${r.address} was not on the block list (its block may have expired).`);
      setAlerts(await get('/api/v1/ids/alerts', '?limit=50'));
    } catch (e) {
      setUnblockStatus(`Could not unblock ${address}: ${(e as Error).message}`);
    }
  };

  return (
    <>
      <h1 tabIndex={-1}>Services</h1>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div class="grid">
        <section class="card" aria-labelledby="h-dhcp">
          <h2 id="h-dhcp">DHCP leases</h2>
          {!leases?.enabled ? (
            <p class="muted">DHCP is not enabled.</p>
          ) : (
            <Table head={['Address', 'MAC', 'Host', 'State', 'Subnet', 'Expires']} rows={leases.leases.map((l) => [l.address, l.mac, l.hostname ?? '', l.state, String(l.subnetId), until(l.expires)])} empty="No leases." />
          )}
        </section>
        <section class="card" aria-labelledby="h-dns">
          <h2 id="h-dns">DNS</h2>
          {!g?.dns ? (
            <p class="muted">No resolver runs.</p>
          ) : (
            <>
              <p>
                Queries: {count(Object.values(g.dns.queriesByType).reduce((a, b) => a + b, 0))} · cache hits {count(g.dns.cacheHits)}, misses {count(g.dns.cacheMisses)}
              </p>
              <Table head={['Answer', 'Count']} rows={Object.entries(g.dns.answersByRcode).map(([k, v]) => [k, count(v)])} empty="No answers yet." />
              <Table head={['Blocklist', 'Domains']} rows={g.dns.blocklists.map((b) => [b.list, count(b.domains)])} empty="No blocklists." />
            </>
          )}
        </section>
        <section class="card" aria-labelledby="h-vpn">
          <h2 id="h-vpn">VPN tunnels</h2>
          <Table
            head={['Service', 'Tunnel', 'Peer', 'State', 'Received', 'Sent', 'Handshake']}
            rows={(g?.vpnTunnels ?? []).map((t) => [t.service, t.tunnel, t.peer, t.up ? 'up' : 'down', bytes(t.rxBytes), bytes(t.txBytes), t.latestHandshake ? ago(new Date(t.latestHandshake * 1000).toISOString()) : '–'])}
            empty="No tunnels."
          />
          <h3>Client configurations</h3>
          {!isAdmin && <p class="muted">Exports hold private keys: administrators only.</p>}
          {isAdmin && <Exports vpn={vpn} />}
        </section>
        <section class="card" aria-labelledby="h-routing">
          <h2 id="h-routing">Routing and VRRP</h2>
          <Table head={['BGP peer', 'Family', 'State', 'Received', 'Sent']} rows={(g?.bgpPeers ?? []).map((p) => [p.peer, p.afi, p.established ? 'established' : 'down', count(p.prefixesReceived), count(p.prefixesSent)])} empty="No BGP peers." />
          <Table head={['OSPF neighbour', 'Interface', 'State']} rows={(g?.ospfNeighbors ?? []).map((n) => [n.routerId, n.interface, n.full ? 'Full' : 'not full'])} empty="No OSPF neighbours." />
          <Table head={['VRRP instance', 'State', 'Transitions']} rows={(g?.vrrp ?? []).map((v) => [v.instance, VRRP[v.state] ?? String(v.state), v.transitions.map((t) => `${t.to}: ${t.count}`).join(', ')])} empty="No VRRP instances." />
        </section>
        <section class="card" aria-labelledby="h-ids">
          <h2 id="h-ids">IDS</h2>
          {!alerts?.ingesting ? (
            <p class="muted">The IDS is not running.</p>
          ) : (
            <>
              <p>Sources blocked by the IDS: {g?.idsBlocks ?? 0}.</p>
              {unblockStatus && (
                <p role="status" data-testid="unblock-status">
                  {unblockStatus}
                </p>
              )}
              {!blocked.length ? (
                <p class="muted">No source is blocked now.</p>
              ) : (
                <ul class="plain" data-testid="ids-blocks">
                  {blocked.map((b) => (
                    <li key={b.address}>
                      {b.address} blocked {b.expiresAt ? `until ${new Date(b.expiresAt).toLocaleTimeString()}` : 'until unblocked'}
                      {canUnblock && (
                        <>
                          {' '}
                          <button type="button" onClick={() => unblock(b.address)} aria-label={`Unblock ${b.address}`}>
                            Unblock
                          </button>
                        </>
                      )}
                    </li>
                  ))}
                </ul>
              )}
              <Table head={['Time', 'Severity', 'Signature', 'From', 'To', 'Action']} rows={alerts.alerts.map((a) => [ago(a.timestamp), String(a.severity), a.signature || String(a.signatureId), a.srcIp, a.destIp, a.action])} empty="No alerts." />
            </>
          )}
        </section>
        <section class="card wide" aria-labelledby="h-status">
          <h2 id="h-status">Subsystems</h2>
          {status.map((s) => (
            <details key={s.subsystem}>
              <summary>
                {s.subsystem}
                {s.error && <span class="bad"> — {s.error}</span>}
              </summary>
              <pre class="json">{JSON.stringify(s.status ?? {}, null, 2)}</pre>
            </details>
          ))}
        </section>
      </div>
    </>
  );
}

function Exports({ vpn }: { vpn: VpnDoc }) {
  const [qr, setQr] = useState<{ name: string; url: string }>();
  const [error, setError] = useState<string>();
  const save = async (path: string, name: string) => {
    try {
      const blob = await download(path);
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = name;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const showQr = async (path: string, name: string) => {
    try {
      const blob = await download(path);
      if (qr) URL.revokeObjectURL(qr.url);
      setQr({ name, url: URL.createObjectURL(blob) });
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const wg = (vpn.wireguard?.interfaces ?? []).flatMap((i) => (i.peers ?? []).map((p) => ({ iface: i.name, peer: p.name })));
  const ovpn = (vpn.openvpn?.servers ?? []).flatMap((s) => (s.clients ?? []).map((c) => ({ server: s.name, client: c.name })));
  if (!wg.length && !ovpn.length) return <p class="muted">No WireGuard peers or OpenVPN clients configured.</p>;
  return (
    <div data-testid="exports">
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <ul class="plain">
        {wg.map(({ iface, peer }) => {
          const base = `/api/v1/vpn/wireguard/${encodeURIComponent(iface)}/peers/${encodeURIComponent(peer)}/config`;
          return (
            <li key={`${iface}/${peer}`}>
              WireGuard {iface} / {peer}:{' '}
              <button type="button" onClick={() => showQr(`${base}?format=svg`, `${iface}/${peer}`)}>
                QR code
              </button>{' '}
              <button type="button" onClick={() => save(`${base}?format=text`, `${peer}-${iface}.conf`)}>
                Download .conf
              </button>
            </li>
          );
        })}
        {ovpn.map(({ server, client }) => (
          <li key={`${server}/${client}`}>
            OpenVPN {server} / {client}:{' '}
            <button type="button" onClick={() => save(`/api/v1/vpn/openvpn/${encodeURIComponent(server)}/clients/${encodeURIComponent(client)}/profile`, `${client}-${server}.ovpn`)}>
              Download .ovpn
            </button>
          </li>
        ))}
      </ul>
      {qr && (
        <figure>
          <img src={qr.url} alt={`WireGuard configuration of ${qr.name} as a QR code`} width={240} height={240} />
          <figcaption>{qr.name}</figcaption>
        </figure>
      )}
    </div>
  );
}

function Table({ head, rows, empty }: { head: string[]; rows: string[][]; empty: string }) {
  if (!rows.length) return <p class="muted">{empty}</p>;
  return (
    <Scroll label={`${head[0]} table`}>
      <table>
        <thead>
          <tr>
            {head.map((h) => (
              <th scope="col" key={h}>
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              {r.map((c, j) => (j === 0 ? <th scope="row" key={j}>{c}</th> : <td key={j}>{c}</td>))}
            </tr>
          ))}
        </tbody>
      </table>
    </Scroll>
  );
}
