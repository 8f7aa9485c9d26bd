/**
 * Probes that decide whether a test can run here. A test that cannot run
 * prints why, through node:test's skip reason. Under CI=true a missing
 * command is an error instead: CI may skip only for what the kernel lacks.
 */
import { execaSync } from 'execa';
import { existsSync } from 'node:fs';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export function hasCommand(cmd: string): boolean {
  return execaSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { reject: false }).exitCode === 0;
}

/** undefined when everything is there; otherwise the reason to skip. */
export function missing(...needs: ({ cmd: string } | { file: string } | 'root' | 'netns')[]): string | undefined {
  for (const n of needs) {
    if (n === 'root' && !isRoot()) return 'needs root';
    if (n === 'netns' && (!isRoot() || !hasCommand('ip'))) return 'needs root and iproute2 for network namespaces';
    if (typeof n === 'object' && 'cmd' in n && !hasCommand(n.cmd)) {
      // CI installs every command a test uses (scripts/setup.sh): a missing one there is a failure, not a skip
      if (process.env.CI === 'true') throw new Error(`CI=true: ${n.cmd} is not installed; add its Debian package to APT_PACKAGES in scripts/setup.sh`);
      return `needs ${n.cmd} (not installed)`;
    }
    if (typeof n === 'object' && 'file' in n && !existsSync(n.file)) return `needs ${n.file}`;
  }
  return undefined;
}
