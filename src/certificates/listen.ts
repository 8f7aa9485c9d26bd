/** "host:port" (IPv6 in brackets) -> its parts; the schemas have checked the shape. */
export function splitListen(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}
