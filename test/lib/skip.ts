/**
 * Probes that decide whether a test can run here. A test that cannot run
 * prints why, through node:test's skip reason.
 */
import { execaSync } from 'execa';
import { existsSync } from 'node:fs';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export function hasCommand(cmd: string): boolean {
  return execaSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { reject: false }).exitCode === 0;
}

/**
 * undefined when everything is there; otherwise the reason to skip. Under
 * CI=true a missing command or file is not a reason: set-up installs and
 * builds those, so it throws (the test file fails, naming what is missing).
 */
export function missing(...needs: ({ cmd: string } | { file: string } | 'root' | 'netns')[]): string | undefined {
  const absent = (what: string) => {
    if (process.env.CI === 'true') throw new Error(`CI=true: ${what} is missing; set-up (scripts/setup.sh, scripts/packages.sh) must provide it`);
    return `needs ${what} (not installed)`;
  };
  for (const n of needs) {
    if (n === 'root' && !isRoot()) return 'needs root';
    if (n === 'netns' && (!isRoot() || !hasCommand('ip'))) return hasCommand('ip') ? 'needs root for network namespaces' : absent('ip (iproute2)');
    if (typeof n === 'object' && 'cmd' in n && !hasCommand(n.cmd)) return absent(n.cmd);
    if (typeof n === 'object' && 'file' in n && !existsSync(n.file)) return absent(n.file);
  }
  return undefined;
}
