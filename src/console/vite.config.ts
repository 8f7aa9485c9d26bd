/**
 * The console build (scripts/setup.sh runs it): src/console -> dist/console,
 * served by the API server under /console/ (src/api/console.ts). Writes a
 * gzip copy of every text asset next to it (the server sends those to
 * clients that take gzip) and prints the first load's compressed JavaScript,
 * failing the build above the 300 kB budget.
 */
import { defineConfig, type Plugin } from 'vite';
import { gzipSync } from 'node:zlib';
import { readFileSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const outDir = fileURLToPath(new URL('../../dist/console', import.meta.url));
const BUDGET = 300 * 1024;

function budgetAndGzip(): Plugin {
  let firstLoad: string[] = [];
  return {
    name: 'patronus-console-budget',
    generateBundle(_opts, bundle) {
      const entry = Object.values(bundle).find((c) => c.type === 'chunk' && c.isEntry);
      const seen = new Set<string>();
      const walk = (name: string) => {
        if (seen.has(name)) return;
        seen.add(name);
        const c = bundle[name];
        if (c?.type === 'chunk') c.imports.forEach(walk);
      };
      if (entry) walk(entry.fileName);
      firstLoad = [...seen];
    },
    writeBundle() {
      const files: string[] = [];
      const list = (d: string) => {
        for (const f of readdirSync(d)) {
          const p = join(d, f);
          if (statSync(p).isDirectory()) list(p);
          else if (/\.(js|css|html|svg|json)$/.test(f)) files.push(p);
        }
      };
      list(outDir);
      for (const f of files) writeFileSync(`${f}.gz`, gzipSync(readFileSync(f), { level: 9 }));
      let total = 0;
      for (const f of firstLoad) total += gzipSync(readFileSync(join(outDir, f)), { level: 9 }).length;
      const kb = (n: number) => `${(n / 1024).toFixed(1)} kB`;
      console.log(`console: first load ${kb(total)} of gzip-compressed JavaScript (${firstLoad.join(', ')}); budget ${kb(BUDGET)}`);
      if (total > BUDGET) throw new Error(`console: first load ${kb(total)} of compressed JavaScript is over the ${kb(BUDGET)} budget`);
    },
  };
}

export default defineConfig({
  root,
  base: '/console/',
  logLevel: 'warn',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { outDir, emptyOutDir: true, target: 'es2022', sourcemap: false, reportCompressedSize: false, chunkSizeWarningLimit: 600 },
  plugins: [budgetAndGzip()],
});
