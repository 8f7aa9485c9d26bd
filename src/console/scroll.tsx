/**
 * A wide table's scroll box. It is a focusable, named region: a keyboard
 * user tabs to it and scrolls it with the arrow keys (axe-core's
 * scrollable-region-focusable; on a phone most tables scroll sideways).
 */
import type { ComponentChildren } from 'preact';

export function Scroll({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="scroll" tabIndex={0} role="region" aria-label={label}>
      {children}
    </div>
  );
}
