/**
 * The console's browser tests: Debian's chromium driven by playwright-core,
 * axe-core injected into the page, screenshots under the test output folder.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium, type Browser, type Page } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
export const CHROMIUM = process.env.PATRONUS_CHROMIUM ?? '/usr/bin/chromium';
/** Screenshots of the console's pages (docs/console.md shows copies). */
export const CONSOLE_OUT = process.env.PATRONUS_TEST_OUTPUT ? join(process.env.PATRONUS_TEST_OUTPUT, 'console') : fileURLToPath(new URL('../../test-output/console/', import.meta.url));

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'], timeout: 60_000 });
}

/** axe-core in the page: no serious or critical violation (the context needs bypassCSP: axe is an inline script). */
export async function assertAccessible(page: Page, where: string): Promise<void> {
  await page.addScriptTag({ path: AXE });
  const result = (await page.evaluate(`axe.run(document, { resultTypes: ['violations'] })`)) as { violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[] };
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join('; ')})`),
    [],
    `${where}: axe-core violations`,
  );
}
