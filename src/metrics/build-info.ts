/**
 * What build this is: the package version and, when the code runs from a git
 * checkout, `git describe` of it. Shown by `patronus --version` and exported
 * as patronus_build_info{version, revision}.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  /** package.json version */
  version: string;
  /** `git describe --tags --always --dirty` of the checkout, or '' outside one (a package) */
  revision: string;
}

/** the repository (or package) root: this file is src/metrics/ under dist/ */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  cached ??= { version: packageVersion(), revision: gitDescribe() };
  return cached;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version?: string };
  if (!pkg.version) throw new Error(`${ROOT}package.json has no version`);
  return pkg.version;
}

function gitDescribe(): string {
  try {
    // -c safe.directory: root runs this on a checkout owned by another user (git refuses otherwise)
    return execFileSync('git', ['-c', `safe.directory=${ROOT.replace(/\/$/, '')}`, '-C', ROOT, 'describe', '--tags', '--always', '--dirty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  } catch {
    // no git, or not a checkout (an installed package): the version alone says what this is
    return '';
  }
}
