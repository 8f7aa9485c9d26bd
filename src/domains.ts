/**
 * The domains Patronus runs, in the order of the document (and of the
 * configuration reference); the apply order comes from each subsystem's
 * phase (src/apply/domain.ts). Imported only by entry points (serve, the
 * CLI, the docs generators, benches and tests), which hand the list to the
 * core: `new Engine({ domains, ... })`; the engine builds the document schema,
 * the subsystems in apply order, and buildServer()/createMetrics() read
 * `engine.domains` for the routes and the series. Adding a domain: its
 * folder (with a domain.ts), its import here and its name in the list.
 */
import { subsystemsOf } from './apply/domain.js';
import { documentOf, type DocumentConfig, type DocumentInput, type DocumentModel } from './config/document.js';
import { loadConfigFileOf, loadConfigTextOf, type ConfigFormat, type LoadedConfig } from './config/load.js';
import type { FileReader } from './aliases/aliases.js';
import { domain as interfaces } from './interfaces/domain.js';
import { domain as dhclient } from './services/dhclient/domain.js';
import { domain as aliases } from './aliases/domain.js';
import { domain as fastpath } from './fastpath/domain.js';
import { domain as firewall } from './nft/domain.js';
import { domain as gateways } from './multiwan/domain.js';
import { domain as wireguard } from './services/wireguard/domain.js';
import { domain as openvpn } from './services/openvpn/domain.js';
import { domain as ipsec } from './services/ipsec/domain.js';
import { domain as dns } from './services/unbound/domain.js';
import { domain as dhcp } from './services/kea/domain.js';
import { domain as dhcp6 } from './services/kea6/domain.js';
import { domain as ra } from './services/radvd/domain.js';
import { domain as routing } from './routing/domain.js';
import { domain as ha } from './services/keepalived/domain.js';
import { domain as qos } from './services/qos/domain.js';
import { domain as ids } from './services/ids/domain.js';
import { domain as certificates } from './certificates/domain.js';

export const domains = [interfaces, dhclient, aliases, fastpath, firewall, gateways, wireguard, openvpn, ipsec, dns, dhcp, dhcp6, ra, routing, ha, qos, ids, certificates] as const;

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
