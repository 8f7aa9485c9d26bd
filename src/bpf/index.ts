export { BpfError, VerifierError, NotSupportedError } from './errors.js';
export { BpfObject, bpfObjectPath } from './object.js';
export { BpfMap, PerCpuMap, openPinnedMap, sumPerCpu, BPF_ANY, BPF_EXIST, BPF_NOEXIST } from './map.js';
export { RingBufferReader, NetlinkSocket, splitRecords, type RecordHandler } from './reader.js';
export {
  BpfProgram,
  queryXdp,
  detachXdp,
  detachTc,
  queryTc,
  destroyTcHook,
  unpin,
  XDP,
  TC_ACT,
  BPF_F_TEST_XDP_LIVE_FRAMES,
} from './program.js';
export type { XdpMode, XdpModeRequest, TcDirection } from './program.js';
export * as codecs from './codecs.js';
export * as probes from './probes.js';
export { releaseFreedMemory, notifyServiceManager } from './memory.js';
