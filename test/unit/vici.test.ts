/**
 * The vici codec against the wire format of strongSwan's vici README:
 * hand-assembled bytes decode to the message, messages encode to the same
 * bytes, and malformed packets are refused with a reason. (The codec
 * against a real charon: test/integration/ipsec.test.ts.)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodePacket, encodePacket, PacketType, type ViciMessage } from '../../src/services/ipsec/vici.js';
import { listSas } from '../../src/services/ipsec/ipsec.js';
import { instancePaths } from '../../src/services/common/service.js';

const b = (...parts: (number | string)[]) => Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.from([p]) : Buffer.from(p, 'utf8'))));

describe('vici codec', () => {
  // EVENT "list-sa" { s2s { state = ESTABLISHED; local-vips = [10.9.0.1]; child-sas { } } }
  const payload = b(
    7, 7, 'list-sa',
    1, 3, 's2s',
    3, 5, 'state', 0, 11, 'ESTABLISHED',
    4, 10, 'local-vips', 5, 0, 8, '10.9.0.1', 6,
    1, 9, 'child-sas', 2,
    2,
  );
  const message: ViciMessage = { s2s: { state: 'ESTABLISHED', 'local-vips': ['10.9.0.1'], 'child-sas': {} } };

  it('decodes a named packet with sections, key/values and lists', () => {
    assert.deepEqual(decodePacket(payload), { type: PacketType.EVENT, name: 'list-sa', message });
  });

  it('encodes to the same bytes, with the 32-bit length in front', () => {
    const wire = encodePacket({ type: PacketType.EVENT, name: 'list-sa', message });
    assert.equal(wire.readUInt32BE(0), payload.length);
    assert.deepEqual(wire.subarray(4), payload);
    // unnamed types carry no name
    assert.deepEqual(encodePacket({ type: PacketType.CMD_RESPONSE, message: { success: 'yes' } }).subarray(4), b(1, 3, 7, 'success', 0, 3, 'yes'));
  });

  it('refuses truncated and malformed packets', () => {
    assert.throws(() => decodePacket(payload.subarray(0, payload.length - 3)), /truncated|unterminated/);
    assert.throws(() => decodePacket(b(1, 2)), /section end without a section/);
    assert.throws(() => decodePacket(b(1, 5, 0, 1, 'x')), /list item outside a list/);
    assert.throws(() => decodePacket(b(1, 9)), /unknown element type 9/);
    assert.throws(() => encodePacket({ type: PacketType.CMD_REQUEST, name: 'x'.repeat(256), message: {} }), /longer than 255/);
  });
});

describe('IPsec status over vici: not running vs broken', () => {
  it('no socket or nobody listening: no SAs; a socket that hangs up mid-conversation: an error naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pt-vici-'));
    const paths = instancePaths(dir, 'ipsec');
    mkdirSync(paths.runDir, { recursive: true });
    const server = createServer((c) => c.destroy());
    try {
      assert.deepEqual(await listSas(paths), [], 'no socket file');
      const socket = join(paths.runDir, 'charon.vici');
      await new Promise<void>((resolve) => server.listen(socket, resolve));
      await assert.rejects(listSas(paths), (e: Error) => e.message.startsWith(`IPsec status over vici (${socket}): `) && /connection closed|EPIPE|ECONNRESET/.test(e.message));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
