/**
 * A small client for strongSwan's vici protocol (the socket swanctl itself
 * talks to; no maintained npm client exists), enough for status: named
 * commands, and streamed commands whose results arrive as events
 * (list-sas -> list-sa events).
 *
 * Wire format (strongSwan src/libcharon/plugins/vici/README.md): each
 * packet is a 32-bit big-endian length and then the payload: one byte of
 * packet type, for named types a name (8-bit length + bytes), then a
 * message, a sequence of elements:
 *   1 SECTION_START name | 2 SECTION_END | 3 KEY_VALUE name value16
 *   4 LIST_START name | 5 LIST_ITEM value16 | 6 LIST_END
 * (value16: 16-bit big-endian length + bytes).
 */
import net from 'node:net';

export type ViciValue = string | string[] | ViciMessage;
export interface ViciMessage {
  [key: string]: ViciValue;
}

export const PacketType = {
  CMD_REQUEST: 0,
  CMD_RESPONSE: 1,
  CMD_UNKNOWN: 2,
  EVENT_REGISTER: 3,
  EVENT_UNREGISTER: 4,
  EVENT_CONFIRM: 5,
  EVENT_UNKNOWN: 6,
  EVENT: 7,
} as const;
const NAMED = new Set<number>([PacketType.CMD_REQUEST, PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER, PacketType.EVENT]);

const SECTION_START = 1;
const SECTION_END = 2;
const KEY_VALUE = 3;
const LIST_START = 4;
const LIST_ITEM = 5;
const LIST_END = 6;

export interface Packet {
  type: number;
  name?: string;
  message: ViciMessage;
}

/** One packet on the wire (length prefix included). */
export function encodePacket(p: Packet): Buffer {
  const parts: Buffer[] = [Buffer.from([p.type])];
  if (NAMED.has(p.type)) parts.push(name8(p.name ?? ''));
  encodeMessage(p.message, parts);
  const payload = Buffer.concat(parts);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  return Buffer.concat([len, payload]);
}

/** The payload of one packet (without its length prefix). */
export function decodePacket(payload: Buffer): Packet {
  let at = 0;
  const need = (n: number) => {
    if (at + n > payload.length) throw new Error(`vici: truncated packet (${payload.length} bytes, wanted ${at + n})`);
  };
  const u8 = () => {
    need(1);
    return payload[at++]!;
  };
  const name = () => {
    const n = u8();
    need(n);
    const s = payload.toString('utf8', at, at + n);
    at += n;
    return s;
  };
  const value = () => {
    need(2);
    const n = payload.readUInt16BE(at);
    at += 2;
    need(n);
    const s = payload.toString('utf8', at, at + n);
    at += n;
    return s;
  };
  const type = u8();
  const packet: Packet = { type, message: {} };
  if (NAMED.has(type)) packet.name = name();
  const stack: ViciMessage[] = [packet.message];
  let list: string[] | undefined;
  while (at < payload.length) {
    const el = u8();
    const top = stack[stack.length - 1]!;
    switch (el) {
      case SECTION_START: {
        const s: ViciMessage = {};
        top[name()] = s;
        stack.push(s);
        break;
      }
      case SECTION_END:
        if (stack.length < 2) throw new Error('vici: section end without a section');
        stack.pop();
        break;
      case KEY_VALUE: {
        const k = name();
        top[k] = value();
        break;
      }
      case LIST_START:
        list = [];
        top[name()] = list;
        break;
      case LIST_ITEM:
        if (!list) throw new Error('vici: list item outside a list');
        list.push(value());
        break;
      case LIST_END:
        list = undefined;
        break;
      default:
        throw new Error(`vici: unknown element type ${el}`);
    }
  }
  if (stack.length !== 1) throw new Error('vici: unterminated section');
  return packet;
}

/**
 * Runs a command over the vici socket at `path`. With `event`, registers
 * for it first and returns every event message that arrived before the
 * command's response (streamed commands such as list-sas / list-sa).
 */
export async function viciCommand(path: string, command: string, args: ViciMessage = {}, event?: string, timeoutMs = 10_000): Promise<{ response: ViciMessage; events: ViciMessage[] }> {
  const sock = net.createConnection(path);
  const packets = packetReader(sock);
  const fail = (what: string) => new Error(`vici ${path}: ${what}`);
  const timer = setTimeout(() => sock.destroy(fail(`no answer to ${command} within ${timeoutMs} ms`)), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    if (event) {
      sock.write(encodePacket({ type: PacketType.EVENT_REGISTER, name: event, message: {} }));
      const confirm = await packets.next();
      if (confirm.type !== PacketType.EVENT_CONFIRM) throw fail(`cannot register for event ${event} (packet type ${confirm.type})`);
    }
    sock.write(encodePacket({ type: PacketType.CMD_REQUEST, name: command, message: args }));
    const events: ViciMessage[] = [];
    for (;;) {
      const p = await packets.next();
      if (p.type === PacketType.EVENT && p.name === event) events.push(p.message);
      else if (p.type === PacketType.CMD_UNKNOWN) throw fail(`unknown command ${command}`);
      else if (p.type === PacketType.CMD_RESPONSE) {
        if (p.message.success === 'no') throw fail(`${command} failed: ${typeof p.message.errmsg === 'string' ? p.message.errmsg : 'no reason given'}`);
        return { response: p.message, events };
      }
    }
  } finally {
    clearTimeout(timer);
    sock.destroy();
  }
}

// ---------------------------------------------------------------------------

function name8(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length > 255) throw new Error(`vici: name "${s.slice(0, 20)}..." longer than 255 bytes`);
  return Buffer.concat([Buffer.from([b.length]), b]);
}

function value16(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length > 65535) throw new Error('vici: value longer than 65535 bytes');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function encodeMessage(m: ViciMessage, parts: Buffer[]): void {
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === 'string') parts.push(Buffer.from([KEY_VALUE]), name8(k), value16(v));
    else if (Array.isArray(v)) {
      parts.push(Buffer.from([LIST_START]), name8(k));
      for (const item of v) parts.push(Buffer.from([LIST_ITEM]), value16(item));
      parts.push(Buffer.from([LIST_END]));
    } else {
      parts.push(Buffer.from([SECTION_START]), name8(k));
      encodeMessage(v, parts);
      parts.push(Buffer.from([SECTION_END]));
    }
  }
}

/** Reads length-prefixed packets off a socket, one at a time. */
function packetReader(sock: net.Socket): { next(): Promise<Packet> } {
  let buf = Buffer.alloc(0);
  const ready: Packet[] = [];
  let waiting: { resolve(p: Packet): void; reject(e: Error): void } | undefined;
  let failed: Error | undefined;
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const len = buf.readUInt32BE(0);
      let p: Packet;
      try {
        p = decodePacket(buf.subarray(4, 4 + len));
      } catch (e) {
        sock.destroy(e as Error);
        return;
      }
      buf = buf.subarray(4 + len);
      if (waiting) {
        const w = waiting;
        waiting = undefined;
        w.resolve(p);
      } else ready.push(p);
    }
  });
  const stop = (e: Error) => {
    failed ??= e;
    waiting?.reject(failed);
    waiting = undefined;
  };
  sock.on('error', stop);
  sock.on('close', () => stop(new Error('vici: connection closed')));
  return {
    next() {
      const p = ready.shift();
      if (p) return Promise.resolve(p);
      if (failed) return Promise.reject(failed);
      return new Promise((resolve, reject) => (waiting = { resolve, reject }));
    },
  };
}
