/**
 * Fast-path and nftables rules with live counters and rates. Only the rows in
 * view are in the DOM (fixed row height), so thousands of rules render and
 * update as fast as a screenful.
 */
import { useMemo, useRef, useState, useEffect } from 'preact/hooks';
import type { Identity } from '../api';
import { useLive, ruleKey } from '../live';
import { count, rate } from '../format';

const ROW = 32;
const OVERSCAN = 10;

export function Rules(_: { me: Identity }) {
  const live = useLive();
  const [query, setQuery] = useState('');
  const [subsystem, setSubsystem] = useState('');
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const box = useRef<HTMLDivElement>(null);
  const all = live.frame?.rules ?? [];
  const subsystems = useMemo(() => [...new Set(all.map((r) => r.subsystem))].sort(), [all.length]);
  const rows = useMemo(() => {
    const q = query.trim().toLowerCase();
    return all.filter((r) => (!subsystem || r.subsystem === subsystem) && (!q || r.rule.toLowerCase().includes(q) || (r.action ?? '').toLowerCase().includes(q)));
  }, [all, query, subsystem]);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const first = Math.max(0, Math.floor(scrollTop / ROW) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((scrollTop + height) / ROW) + OVERSCAN);
  const visible = rows.slice(first, last);

  return (
    <>
      <h1 tabIndex={-1}>Rules</h1>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label for="rule-filter">Filter</label>
        <input id="rule-filter" type="search" value={query} onInput={(e) => setQuery((e.target as HTMLInputElement).value)} placeholder="rule name or action" />
        <label for="rule-subsystem">Subsystem</label>
        <select id="rule-subsystem" value={subsystem} onChange={(e) => setSubsystem((e.target as HTMLSelectElement).value)}>
          <option value="">all</option>
          {subsystems.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <span class="muted" data-testid="rule-count">
          {rows.length} of {all.length} rules
        </span>
      </form>
      <div class="vtable" role="table" aria-label="Rules with live counters" aria-rowcount={rows.length + 1}>
        <div class="vrow head" role="row" aria-rowindex={1}>
          <span role="columnheader">Rule</span>
          <span role="columnheader">Subsystem</span>
          <span role="columnheader">Action</span>
          <span role="columnheader" class="num">
            Packets
          </span>
          <span role="columnheader" class="num">
            Rate
          </span>
          <span role="columnheader" class="num">
            Bytes
          </span>
        </div>
        <div class="vbody" ref={box} tabIndex={0} aria-label="Rule rows (scroll)" onScroll={(e) => setScrollTop((e.target as HTMLElement).scrollTop)} role="rowgroup">
          <div style={{ height: `${rows.length * ROW}px`, position: 'relative' }}>
            {visible.map((r, i) => (
              <div class="vrow" role="row" aria-rowindex={first + i + 2} key={ruleKey(r)} data-rule={r.rule} style={{ top: `${(first + i) * ROW}px` }}>
                <span role="cell" class="name" title={r.rule}>
                  {r.rule}
                </span>
                <span role="cell">{r.subsystem}</span>
                <span role="cell">{r.action ?? ''}</span>
                <span role="cell" class="num" data-testid="rule-packets">
                  {count(r.packets)}
                  {r.rateLimited !== undefined && <span class="muted"> ({count(r.rateLimited)} over limit)</span>}
                </span>
                <span role="cell" class="num">
                  {rate(live.rates.get(`rule:${ruleKey(r)}:p`) ?? 0, 'p/s')}
                </span>
                <span role="cell" class="num">
                  {count(r.bytes)}
                </span>
              </div>
            ))}
          </div>
        </div>
      </div>
    </>
  );
}
