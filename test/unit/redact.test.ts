/**
 * redactSecrets as the API uses it on documents: secret values go, the
 * paths of files that hold secrets stay (the document may name them).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { redactSecrets, REDACTED } from '../../src/services/common/redact.js';

describe('redactSecrets on documents', () => {
  it('keeps secret file paths, hides inline secrets', () => {
    const doc = {
      ipsec: { connections: [{ name: 'hq', auth: 'psk', pskFile: '/etc/patronus/hq.psk' }] },
      openvpn: { clients: [{ name: 'up', tlsCryptFile: '/etc/patronus/ta.key', keyFile: '/etc/patronus/up.key' }] },
      frr: { neighbors: [{ address: '192.0.2.9', password: 'md5-secret' }] },
      wireguard: { interfaces: [{ name: 'wg0', peers: [{ name: 'p', presharedKey: true }] }] },
      status: { private_key: 'abc', tlsCrypt: '-----BEGIN OpenVPN Static key V1-----\n00\n-----END OpenVPN Static key V1-----' },
    };
    assert.deepEqual(redactSecrets(doc), {
      ...doc,
      frr: { neighbors: [{ address: '192.0.2.9', password: REDACTED }] },
      status: { private_key: REDACTED, tlsCrypt: REDACTED },
    });
  });
});
