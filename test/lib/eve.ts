/**
 * Suricata 7 eve.json lines as Suricata writes them (field order and shape
 * taken from real 7.0 output), for ingestion and auto-block tests.
 */
let flowId = 1_234_567_890_123_456;

export interface EveAlertSpec {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  proto?: 'TCP' | 'UDP' | 'ICMP';
  sid: number;
  signature: string;
  category?: string;
  severity: number;
  iface?: string;
  /** Suricata 7 `target:` keyword output */
  source?: string;
  when?: Date;
}

function ts(d = new Date()): string {
  return d.toISOString().replace('Z', '+0000').replace(/\.(\d{3})/, '.$1' + String(Math.floor(Math.random() * 1000)).padStart(3, '0'));
}

export function eveAlert(s: EveAlertSpec): string {
  const proto = s.proto ?? 'TCP';
  const fid = flowId++;
  const ev: Record<string, unknown> = {
    timestamp: ts(s.when),
    flow_id: fid,
    in_iface: s.iface ?? 'wan0',
    event_type: 'alert',
    src_ip: s.src,
    ...(proto !== 'ICMP' ? { src_port: s.sport ?? 51544 } : {}),
    dest_ip: s.dst,
    ...(proto !== 'ICMP' ? { dest_port: s.dport ?? 22 } : {}),
    proto,
    ...(proto === 'ICMP' ? { icmp_type: 8, icmp_code: 0 } : {}),
    pkt_src: 'wire/pcap',
    alert: {
      action: 'allowed',
      gid: 1,
      signature_id: s.sid,
      rev: 3,
      signature: s.signature,
      category: s.category ?? 'Attempted Information Leak',
      severity: s.severity,
      ...(s.source ? { source: { ip: s.source, port: s.sport ?? 51544 }, target: { ip: s.dst, port: s.dport ?? 22 } } : {}),
      metadata: { created_at: ['2010_07_30'], updated_at: ['2019_07_26'] },
    },
    ...(proto === 'TCP' ? { app_proto: 'ssh' } : {}),
    direction: 'to_server',
    flow: {
      pkts_toserver: 1,
      pkts_toclient: 0,
      bytes_toserver: 74,
      bytes_toclient: 0,
      start: ts(s.when),
      src_ip: s.src,
      dest_ip: s.dst,
      ...(proto !== 'ICMP' ? { src_port: s.sport ?? 51544, dest_port: s.dport ?? 22 } : {}),
    },
  };
  return JSON.stringify(ev);
}

/** Non-alert events Suricata writes to the same file. */
export function eveFlow(src: string, dst: string): string {
  return JSON.stringify({
    timestamp: ts(),
    flow_id: flowId++,
    in_iface: 'wan0',
    event_type: 'flow',
    src_ip: src,
    src_port: 40000,
    dest_ip: dst,
    dest_port: 443,
    proto: 'TCP',
    app_proto: 'tls',
    flow: { pkts_toserver: 12, pkts_toclient: 10, bytes_toserver: 1500, bytes_toclient: 9000, start: ts(), end: ts(), age: 2, state: 'closed', reason: 'timeout', alerted: false },
    tcp: { tcp_flags: '1b', tcp_flags_ts: '1b', tcp_flags_tc: '1b', syn: true, fin: true, psh: true, ack: true, state: 'closed' },
  });
}

export function eveStats(): string {
  return JSON.stringify({ timestamp: ts(), event_type: 'stats', stats: { uptime: 8, capture: { kernel_packets: 120, kernel_drops: 0 }, decoder: { pkts: 120, bytes: 14000 }, detect: { alert: 2 } } });
}
