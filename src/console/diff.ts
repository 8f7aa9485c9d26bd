/** A side-by-side line diff (longest common subsequence; common head and tail trimmed first). */
export interface DiffRow {
  kind: 'same' | 'added' | 'removed' | 'changed';
  left?: string;
  right?: string;
}

export function sideBySide(a: string[], b: string[]): DiffRow[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const x = a.slice(head, a.length - tail);
  const y = b.slice(head, b.length - tail);
  const rows: DiffRow[] = a.slice(0, head).map((l) => ({ kind: 'same', left: l, right: l }));
  const n = x.length;
  const m = y.length;
  const ops: DiffRow[] = [];
  if (n * m > 4_000_000) {
    // too large for the table: everything in the middle differs
    for (let i = 0; i < Math.max(n, m); i++) ops.push({ kind: i < n && i < m ? 'changed' : i < n ? 'removed' : 'added', left: x[i], right: y[i] });
  } else {
    const L = new Uint32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i * (m + 1) + j] = x[i] === y[j] ? L[(i + 1) * (m + 1) + j + 1]! + 1 : Math.max(L[(i + 1) * (m + 1) + j]!, L[i * (m + 1) + j + 1]!);
    let i = 0;
    let j = 0;
    const del: string[] = [];
    const ins: string[] = [];
    const flush = () => {
      // a run of removals beside a run of additions is a change, row by row
      for (let k = 0; k < Math.max(del.length, ins.length); k++) ops.push({ kind: k < del.length && k < ins.length ? 'changed' : k < del.length ? 'removed' : 'added', left: del[k], right: ins[k] });
      del.length = 0;
      ins.length = 0;
    };
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) {
        flush();
        ops.push({ kind: 'same', left: x[i], right: y[j] });
        i++;
        j++;
      } else if (j < m && (i >= n || L[i * (m + 1) + j + 1]! >= L[(i + 1) * (m + 1) + j]!)) ins.push(y[j++]!);
      else del.push(x[i++]!);
    }
    flush();
  }
  return [...rows, ...ops, ...a.slice(a.length - tail).map((l): DiffRow => ({ kind: 'same', left: l, right: l }))];
}
