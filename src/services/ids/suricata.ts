/**
 * Suricata as a service module: IDS mode on af-packet (it reads copies of
 * the traffic, so a crash or overload never stops forwarding), alerts to
 * eve.json in the instance directory, rules from the config (patronus.rules),
 * from files, and from suricata-update when it is installed and enabled.
 *
 * Rule-only changes reload live (SIGUSR2, Suricata's rule reload); any
 * other change restarts it.
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { CompileContext } from '../../apply/subsystem.js';
import type { Issue, IssuePath } from '../../config/issues.js';
import type { Host } from '../../system/host.js';
import { resolveNetworkRef } from '../../aliases/aliases.js';
import { formatPrefix } from '../../net/address.js';
import { daemonPid, signalDaemon, startDaemon, stopDaemon, tailLog } from '../common/daemon.js';
import type { InstancePaths, RenderedFile, ServiceModule } from '../common/service.js';

export const SURICATA = 'suricata';
export const SURICATA_UPDATE = 'suricata-update';

export interface IdsModel {
  interfaces: string[];
  /** resolved prefixes */
  homeNet: string[];
  externalNet?: string[];
  customRules: string[];
  ruleFiles: string[];
  update: boolean;
  disabledSignatureIds: number[];
  autoBlock: {
    enabled: boolean;
    maxSeverity: number;
    signatureIds: number[];
    excludeSignatureIds: number[];
    ttl: number;
    /** exempt prefixes, homeNet included unless blockHomeNet */
    exempt: string[];
  };
  recentAlerts: number;
}

/** Where the instance's files live, relative to its directory. */
export const IDS_FILES = {
  config: 'suricata.yaml',
  rules: 'rules/patronus.rules',
  updated: 'rules/suricata.rules',
  classification: 'classification.config',
  reference: 'reference.config',
  threshold: 'threshold.config',
  disable: 'update/disable.conf',
  logDir: 'log',
  eve: 'log/eve.json',
  position: 'eve.position',
  socket: 'suricata.sock',
} as const;

export function eveFile(paths: InstancePaths): string {
  return paths.file(IDS_FILES.eve);
}

export const suricataModule: ServiceModule<IdsModel> = {
  name: 'ids',

  desired(ctx: CompileContext) {
    const c = ctx.config.ids;
    if (!c.enabled) return { desired: null, issues: [] };
    const issues: Issue[] = [];
    const known = new Set(ctx.config.interfaces.map((i) => i.name));
    if (!c.interfaces.length) issues.push({ path: ['ids', 'interfaces'], message: 'name at least one interface for Suricata to watch' });
    c.interfaces.forEach((name, i) => {
      if (!known.has(name)) issues.push({ path: ['ids', 'interfaces', i], message: `interface "${name}" is not listed under interfaces` });
    });
    const nets = (list: string[], base: IssuePath): string[] => {
      const out: string[] = [];
      list.forEach((ref, i) => {
        try {
          const n = resolveNetworkRef(ref, ctx.aliases);
          if (n.countries.length) issues.push({ path: [...base, i], message: `"${ref}" includes countries (${n.countries.join(', ')}); Suricata address groups take prefixes only` });
          out.push(...n.prefixes.map(formatPrefix));
        } catch (e) {
          issues.push({ path: [...base, i], message: (e as Error).message });
        }
      });
      return [...new Set(out)];
    };
    const homeNet = nets(c.homeNet, ['ids', 'homeNet']);
    if (!homeNet.length && !issues.length) issues.push({ path: ['ids', 'homeNet'], message: 'homeNet resolves to no prefixes' });
    const externalNet = c.externalNet ? nets(c.externalNet, ['ids', 'externalNet']) : undefined;
    const exempt = nets(c.autoBlock.exempt, ['ids', 'autoBlock', 'exempt']);
    const sids = new Map<number, number>();
    c.rules.custom.forEach((r, i) => {
      const sid = Number(/\bsid\s*:\s*(\d+)/.exec(r)![1]);
      if (sids.has(sid)) issues.push({ path: ['ids', 'rules', 'custom', i], message: `sid ${sid} is already used by rules.custom[${sids.get(sid)}]` });
      else sids.set(sid, i);
    });
    if (issues.length) return { desired: null, issues };
    return {
      desired: {
        interfaces: [...c.interfaces],
        homeNet,
        ...(externalNet ? { externalNet } : {}),
        customRules: c.rules.custom.map((r) => r.trim()),
        ruleFiles: [...c.rules.files],
        update: c.rules.update,
        disabledSignatureIds: [...c.rules.disabledSignatureIds],
        autoBlock: {
          enabled: c.autoBlock.enabled,
          maxSeverity: c.autoBlock.maxSeverity,
          signatureIds: [...c.autoBlock.signatureIds],
          excludeSignatureIds: [...c.autoBlock.excludeSignatureIds],
          ttl: c.autoBlock.ttl,
          exempt: [...new Set([...exempt, ...(c.autoBlock.blockHomeNet ? [] : homeNet)])],
        },
        recentAlerts: c.recentAlerts,
      },
      issues: [],
    };
  },

  render(m, paths) {
    return renderSuricata(m, paths);
  },

  async check(m, paths, host) {
    const issues: Issue[] = [];
    for (const [i, name] of m.interfaces.entries()) {
      if ((await host.run('ip', ['link', 'show', 'dev', name], { reject: false })).exitCode !== 0) {
        issues.push({ path: ['ids', 'interfaces', i], message: `interface "${name}" does not exist (${host.where})` });
      }
    }
    for (const [i, f] of m.ruleFiles.entries()) if (!existsSync(f)) issues.push({ path: ['ids', 'rules', 'files', i], message: `rule file ${f} does not exist` });
    if (!(await installed(host, SURICATA))) {
      issues.push({ path: ['ids', 'enabled'], message: 'Suricata is not installed on this machine (no "suricata" in PATH): install it or set ids.enabled to false' });
      return issues;
    }
    if (m.update && !(await installed(host, SURICATA_UPDATE))) {
      issues.push({ path: ['ids', 'rules', 'update'], message: 'suricata-update is not installed: install it or set rules.update to false' });
    }
    mkdirSync(paths.file(IDS_FILES.logDir), { recursive: true });
    // -T: load the config and every rule, then exit; rule errors name the file and line
    const r = await host.run(SURICATA, ['-T', '-c', paths.file(IDS_FILES.config), '-l', paths.file(IDS_FILES.logDir)], { reject: false, timeout: 120_000 });
    if (r.exitCode !== 0) {
      const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /error|E:|invalid|failed/i.test(l)).slice(-10);
      issues.push({ path: ['ids'], message: `suricata -T rejected the rendered configuration:\n${lines.join('\n') || (r.stderr || r.stdout).trim()}` });
    }
    return issues;
  },

  async start(m, paths, host) {
    mkdirSync(paths.file(IDS_FILES.logDir), { recursive: true });
    if (m.update) await runUpdate(paths, host);
    await startDaemon(host, {
      name: 'suricata',
      command: SURICATA,
      args: ['-c', paths.file(IDS_FILES.config), '--af-packet', '-l', paths.file(IDS_FILES.logDir)],
      pidFile: paths.pidFile,
      logFile: paths.logFile,
      // rule loading takes seconds; the command socket appears once it is up
      ready: async () => existsSync(path.join(paths.runDir, IDS_FILES.socket)),
      readyTimeoutMs: 120_000,
    });
  },

  async reload(m, paths, host, changed) {
    if (m.update) await runUpdate(paths, host);
    if (changed.every((f) => f.startsWith('rules/'))) {
      signalDaemon(spec(paths), 'SIGUSR2'); // live rule reload
      return;
    }
    await stopDaemon(spec(paths), 15_000);
    await this.start(m, paths, host);
  },

  async stop(paths) {
    await stopDaemon(spec(paths), 15_000);
  },

  async running(paths) {
    return daemonPid(paths.pidFile, SURICATA) !== undefined;
  },

  async status(paths) {
    return { pid: daemonPid(paths.pidFile, SURICATA), log: tailLog(paths.logFile, 5) };
  },
};

function spec(paths: InstancePaths) {
  return { name: 'suricata', pidFile: paths.pidFile, command: SURICATA };
}

async function installed(host: Host, cmd: string): Promise<boolean> {
  return (await host.run('sh', ['-c', 'command -v "$1"', 'sh', cmd], { reject: false })).exitCode === 0;
}

async function runUpdate(paths: InstancePaths, host: Host): Promise<void> {
  await host.run(
    SURICATA_UPDATE,
    [
      '--suricata-conf', paths.file(IDS_FILES.config),
      '--data-dir', paths.file('update'),
      '--output', paths.file('rules'),
      '--disable-conf', paths.file(IDS_FILES.disable),
      '--no-test', '--no-reload', '--quiet',
    ],
    { timeout: 300_000 },
  );
}

/** Pure: every file the instance needs. */
export function renderSuricata(m: IdsModel, paths: InstancePaths): RenderedFile[] {
  const group = (list: string[]) => JSON.stringify(`[${list.join(',')}]`);
  const ruleFiles = [path.basename(IDS_FILES.rules), ...(m.update ? [path.basename(IDS_FILES.updated)] : []), ...m.ruleFiles];
  const yaml = [
    '%YAML 1.1',
    '---',
    '# Rendered by Patronus from the ids: section; edits are overwritten.',
    'vars:',
    '  address-groups:',
    `    HOME_NET: ${group(m.homeNet)}`,
    `    EXTERNAL_NET: ${m.externalNet ? group(m.externalNet) : '"!$HOME_NET"'}`,
    '    HTTP_SERVERS: "$HOME_NET"',
    '    SMTP_SERVERS: "$HOME_NET"',
    '    SQL_SERVERS: "$HOME_NET"',
    '    DNS_SERVERS: "$HOME_NET"',
    '    TELNET_SERVERS: "$HOME_NET"',
    '    AIM_SERVERS: "$EXTERNAL_NET"',
    '    DC_SERVERS: "$HOME_NET"',
    '    DNP3_SERVER: "$HOME_NET"',
    '    DNP3_CLIENT: "$HOME_NET"',
    '    MODBUS_CLIENT: "$HOME_NET"',
    '    MODBUS_SERVER: "$HOME_NET"',
    '    ENIP_CLIENT: "$HOME_NET"',
    '    ENIP_SERVER: "$HOME_NET"',
    '  port-groups:',
    '    HTTP_PORTS: "80"',
    '    SHELLCODE_PORTS: "!80"',
    '    ORACLE_PORTS: 1521',
    '    SSH_PORTS: 22',
    '    DNP3_PORTS: 20000',
    '    MODBUS_PORTS: 502',
    '    FILE_DATA_PORTS: "[$HTTP_PORTS,110,143]"',
    '    FTP_PORTS: 21',
    '    GENEVE_PORTS: 6081',
    '    VXLAN_PORTS: 4789',
    '    TEREDO_PORTS: 3544',
    `default-log-dir: ${JSON.stringify(paths.file(IDS_FILES.logDir))}`,
    `default-rule-path: ${JSON.stringify(paths.file('rules'))}`,
    'rule-files:',
    ...ruleFiles.map((f) => `  - ${JSON.stringify(f)}`),
    `classification-file: ${JSON.stringify(paths.file(IDS_FILES.classification))}`,
    `reference-config-file: ${JSON.stringify(paths.file(IDS_FILES.reference))}`,
    `threshold-file: ${JSON.stringify(paths.file(IDS_FILES.threshold))}`,
    'runmode: workers',
    'host-mode: sniffer-only',
    'outputs:',
    '  - eve-log:',
    '      enabled: yes',
    '      filetype: regular',
    '      filename: eve.json',
    '      types:',
    '        - alert:',
    '            tagged-packets: no',
    '        - anomaly:',
    '            enabled: no',
    'logging:',
    '  default-log-level: notice',
    '  outputs:',
    '    - console:',
    '        enabled: yes',
    'af-packet:',
    ...m.interfaces.flatMap((name, i) => [
      `  - interface: ${JSON.stringify(name)}`,
      `    cluster-id: ${99 - i}`,
      '    cluster-type: cluster_flow',
      '    defrag: yes',
      '    use-mmap: yes',
      '    checksum-checks: auto',
    ]),
    'unix-command:',
    '  enabled: yes',
    `  filename: ${JSON.stringify(path.join(paths.runDir, IDS_FILES.socket))}`,
    'detect:',
    '  profile: medium',
    '',
  ].join('\n');
  return [
    { path: IDS_FILES.config, content: yaml },
    { path: IDS_FILES.rules, content: m.customRules.map((r) => `${r}\n`).join('') },
    { path: IDS_FILES.classification, content: CLASSIFICATION },
    { path: IDS_FILES.reference, content: 'config reference: url http://\nconfig reference: cve http://cve.mitre.org/cgi-bin/cvename.cgi?name=\n' },
    { path: IDS_FILES.threshold, content: '# thresholds and suppressions (none)\n' },
    ...(m.update ? [{ path: IDS_FILES.disable, content: m.disabledSignatureIds.map((s) => `1:${s}\n`).join('') }] : []),
  ];
}

/** Suricata's stock classification list: classtype -> description, priority (= alert severity). */
const CLASSIFICATION = `config classification: not-suspicious,Not Suspicious Traffic,3
config classification: unknown,Unknown Traffic,3
config classification: bad-unknown,Potentially Bad Traffic, 2
config classification: attempted-recon,Attempted Information Leak,2
config classification: successful-recon-limited,Information Leak,2
config classification: successful-recon-largescale,Large Scale Information Leak,2
config classification: attempted-dos,Attempted Denial of Service,2
config classification: successful-dos,Denial of Service,2
config classification: attempted-user,Attempted User Privilege Gain,1
config classification: unsuccessful-user,Unsuccessful User Privilege Gain,1
config classification: successful-user,Successful User Privilege Gain,1
config classification: attempted-admin,Attempted Administrator Privilege Gain,1
config classification: successful-admin,Successful Administrator Privilege Gain,1
config classification: rpc-portmap-decode,Decode of an RPC Query,2
config classification: shellcode-detect,Executable code was detected,1
config classification: string-detect,A suspicious string was detected,3
config classification: suspicious-filename-detect,A suspicious filename was detected,2
config classification: suspicious-login,An attempted login using a suspicious username was detected,2
config classification: system-call-detect,A system call was detected,2
config classification: tcp-connection,A TCP connection was detected,4
config classification: trojan-activity,A Network Trojan was detected, 1
config classification: unusual-client-port-connection,A client was using an unusual port,2
config classification: network-scan,Detection of a Network Scan,3
config classification: denial-of-service,Detection of a Denial of Service Attack,2
config classification: non-standard-protocol,Detection of a non-standard protocol or event,2
config classification: protocol-command-decode,Generic Protocol Command Decode,3
config classification: web-application-activity,access to a potentially vulnerable web application,2
config classification: web-application-attack,Web Application Attack,1
config classification: misc-activity,Misc activity,3
config classification: misc-attack,Misc Attack,2
config classification: icmp-event,Generic ICMP event,3
config classification: inappropriate-content,Inappropriate Content was Detected,1
config classification: policy-violation,Potential Corporate Privacy Violation,1
config classification: default-login-attempt,Attempt to login by a default username and password,2
config classification: exploit-kit,Exploit Kit Activity Detected,1
config classification: external-ip-check,Device Retrieving External IP Address Detected,2
config classification: domain-c2,Domain Observed Used for C2 Detected,1
config classification: pup-activity,Possibly Unwanted Program Detected,2
config classification: credential-theft,Successful Credential Theft Detected,1
config classification: social-engineering,Possible Social Engineering Attempted,2
config classification: coin-mining,Crypto Currency Mining Activity Detected,2
config classification: command-and-control,Malware Command and Control Activity Detected,1
`;
