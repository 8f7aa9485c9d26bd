/**
 * The domains Patronus runs, in the order of the document (and of the
 * configuration reference); the apply order comes from each subsystem's
 * phase (src/apply/domain.ts). Imported only by entry points (serve, the
 * CLI, the docs generators, benches and tests), which hand the list to the
 * core: `new Engine({ domains, ... })`; the engine builds the document schema,
 * the subsystems in apply order, and buildServer()/createMetrics() read
 * `engine.domains` for the routes and the series. Adding a domain: its
 * folder (with a domain.ts) and its one line in the list below.
 */
import { subsystemsOf } from './apply/domain.js';
import { documentOf, type DocumentConfig, type DocumentInput, type DocumentModel } from './config/document.js';
import { loadConfigFileOf, loadConfigTextOf, type ConfigFormat, type LoadedConfig } from './config/load.js';
import type { FileReader } from './aliases/aliases.js';

export const domains = [
  (await import('./interfaces/domain.js')).domain,
  (await import('./services/dhclient/domain.js')).domain,
  (await import('./aliases/domain.js')).domain,
  (await import('./fastpath/domain.js')).domain,
  (await import('./nft/domain.js')).domain,
  (await import('./multiwan/domain.js')).domain,
  (await import('./services/wireguard/domain.js')).domain,
  (await import('./services/openvpn/domain.js')).domain,
  (await import('./services/ipsec/domain.js')).domain,
  (await import('./services/unbound/domain.js')).domain,
  (await import('./services/kea/domain.js')).domain,
  (await import('./services/kea6/domain.js')).domain,
  (await import('./services/radvd/domain.js')).domain,
  (await import('./routing/domain.js')).domain,
  (await import('./services/keepalived/domain.js')).domain,
  (await import('./services/qos/domain.js')).domain,
  (await import('./services/ids/domain.js')).domain,
  (await import('./certificates/domain.js')).domain,
] as const;

/** The document of these domains: its schema and validation (src/config/document.ts). */
export const document: DocumentModel<typeof domains> = documentOf(domains);
export const documentSchema = document.schema;
export const validateDocument = document.validate;
export const validateDocumentStages = document.validateStages;

/** Parse + validate a document's text or file (src/config/load.ts) against these domains. */
export const loadConfigText = (text: string, readFile?: FileReader, format?: ConfigFormat): LoadedConfig => loadConfigTextOf(document, text, readFile, format);
export const loadConfigFile = (path: string, readFile?: FileReader): LoadedConfig => loadConfigFileOf(document, path, readFile);

/** The validated, defaulted document of these domains. */
export type Config = DocumentConfig<typeof domains>;
export type ConfigInput = DocumentInput<typeof domains>;

/** Every subsystem of these domains, in apply order (src/apply/domain.ts PHASES). */
export const subsystems = subsystemsOf(domains);
