#!/usr/bin/env node
/**
 * patronus: the command-line entry point. `serve` runs the control plane in
 * the foreground (the README's run command).
 */
import { Command } from 'commander';
import { serve } from '../api/serve.js';

const program = new Command('patronus').description('Linux firewall and edge data-plane manager');

program
  .command('serve')
  .description('run the control plane in the foreground')
  .option('--listen <host:port>', 'REST/metrics listen address', '127.0.0.1:9180')
  .option('--lab', 'create the lab namespaces and manage the fast path there', false)
  .action(async (opts: { listen: string; lab: boolean }) => {
    await serve(opts);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  console.error(`patronus: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
