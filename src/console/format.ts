/** Numbers as people read them on a firewall console. */
export function rate(n: number, unit = '/s'): string {
  if (!Number.isFinite(n)) return '–';
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(2)} G${unit}`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(2)} M${unit}`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(1)} k${unit}`;
  return `${n.toFixed(n && abs < 10 ? 1 : 0)} ${unit}`.replace(' /', '/');
}

export function bits(bytesPerSecond: number): string {
  return rate(bytesPerSecond * 8, 'bit/s');
}

export function count(n: number): string {
  return n.toLocaleString('en-US');
}

export function bytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

export function ago(iso: string | null | undefined): string {
  if (!iso) return '–';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return new Date(iso).toLocaleString();
}

/** A time ahead (a lease's end): "in 9 min"; past ones as ago() says them. */
export function until(iso: string | null | undefined): string {
  if (!iso) return '–';
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (s < 0) return ago(iso);
  if (s < 60) return `in ${s} s`;
  if (s < 3600) return `in ${Math.round(s / 60)} min`;
  return new Date(iso).toLocaleString();
}
