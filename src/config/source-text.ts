/**
 * The text of a configuration source given as text or as UTF-8 bytes (a
 * large request body's document travels between threads as bytes:
 * src/config/parse-worker.ts). No imports: the lean CLI uses it too.
 */
export function sourceText(source: { text: string } | { bytes: Uint8Array }): string {
  return 'text' in source ? source.text : Buffer.from(source.bytes.buffer, source.bytes.byteOffset, source.bytes.byteLength).toString('utf8');
}
