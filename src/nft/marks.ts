/**
 * Packet and conntrack mark bits Patronus uses, in one place so the nftables
 * compiler, multi-WAN and anything else that marks never collide:
 *
 *   0x0000ff00  gateway id (multi-WAN): ct mark keeps it per connection,
 *               restored into the packet mark, ip rules `fwmark ID/0xff00`
 *               pick the gateway's routing table.
 *   0x40000000  hairpin: set on the packet that was DNATed from inside, so
 *               postrouting masquerades it (replies then return through the
 *               gateway instead of going straight back to the client).
 *
 * Bits outside these masks are left to the host.
 */
export const GATEWAY_MARK_MASK = 0x0000ff00;
export const GATEWAY_MARK_SHIFT = 8;
export const HAIRPIN_MARK = 0x40000000;

/** The mark of the n-th gateway (1-based; at most 255). */
export function gatewayMark(id: number): number {
  if (!Number.isInteger(id) || id < 1 || id > 255) throw new RangeError(`gateway id ${id} is outside 1-255`);
  return id << GATEWAY_MARK_SHIFT;
}

export function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}
