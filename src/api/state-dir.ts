/** Where Patronus keeps its state (store, tokens) by default; light, for the CLI's REST commands. */
export const DEFAULT_STATE_DIR = '/var/lib/patronus';
export const LAB_STATE_DIR = '/var/lib/patronus-lab';

export function defaultStateDir(lab: boolean): string {
  // an empty variable is unset (not a store in the working directory)
  return process.env.PATRONUS_STATE_DIR || (lab ? LAB_STATE_DIR : DEFAULT_STATE_DIR);
}
