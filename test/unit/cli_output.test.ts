/**
 * The CLI's human output: tables wrap their widest text columns to a width,
 * long plan lines wrap with indented continuations, color follows a wrapped
 * plan line, and nothing wraps without a width (pipes).
 */
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { setOutputWidth, table, wrap, wrapLines } from '../../src/cli/table.js';
import { colorEnabled, colorize } from '../../src/cli/color.js';

const long = 'rolled back because the unbound check failed: error: syntax error in forward-zone at line 12 of the rendered configuration';

describe('CLI output', () => {
  afterEach(() => setOutputWidth(undefined));

  it('a table wider than the terminal wraps its widest text column; numbers stay right-aligned', () => {
    const rows = [
      ['1', 'committed', long],
      ['22', 'failed', 'short'],
    ];
    const flat = table(['id', 'state', 'message'], rows, { right: [0] });
    assert.equal(flat.split('\n').length, 4, 'no width: one line per row');
    const wrapped = table(['id', 'state', 'message'], rows, { right: [0], width: 60 });
    const lines = wrapped.split('\n');
    assert.ok(lines.every((l) => l.length <= 60), wrapped);
    assert.ok(lines.length > 4);
    // the message reads the same once its pieces are joined back
    const messageStart = lines[0]!.indexOf('message');
    const pieces = lines.slice(2, -1).map((l) => l.slice(messageStart).trim());
    assert.equal(pieces.join(' '), long);
    assert.match(lines[lines.length - 1]!, /^22  failed +short$/);
    assert.match(lines[2]!, /^ 1  committed  /);
  });

  it('long plan lines wrap under the terminal width, continuations indented and colored like their line', () => {
    const plan = `nftables:\n  + set blocklist  (${'203.0.113.0/24, '.repeat(300)})\n  - rule old\n\nPlan: 1 to add, 0 to change, 1 to remove.`;
    assert.equal(wrapLines(plan), plan, 'no terminal: unchanged');
    setOutputWidth(80);
    const wrapped = wrapLines(plan);
    const lines = wrapped.split('\n');
    assert.ok(lines.every((l) => l.length <= 80));
    assert.ok(lines.length > 50);
    assert.ok(lines.slice(2, -3).every((l) => l.startsWith('      ')), 'continuations indented');
    const colored = colorize(wrapped).split('\n');
    assert.ok(colored.slice(1, -3).every((l) => l.startsWith('\x1b[32m')), 'the added set is green throughout');
    assert.ok(colored[colored.length - 3]!.startsWith('\x1b[31m  - rule old'));
  });

  it('wrap breaks at spaces, or hard where a word is longer than the line', () => {
    assert.deepEqual(wrap('aaa bbb ccc', 7), ['aaa bbb', 'ccc']);
    assert.deepEqual(wrap('x'.repeat(25), 10), ['x'.repeat(10), 'x'.repeat(10), 'x'.repeat(5)]);
  });

  it('color: a terminal, FORCE_COLOR; never NO_COLOR or TERM=dumb', () => {
    assert.equal(colorEnabled({ isTTY: true }, {}), true);
    assert.equal(colorEnabled({ isTTY: false }, {}), false);
    assert.equal(colorEnabled({ isTTY: false }, { FORCE_COLOR: '1' }), true);
    assert.equal(colorEnabled({ isTTY: true }, { NO_COLOR: '1' }), false);
    assert.equal(colorEnabled({ isTTY: false }, { NO_COLOR: '1', FORCE_COLOR: '1' }), false);
    assert.equal(colorEnabled({ isTTY: true }, { TERM: 'dumb' }), false);
  });
});
