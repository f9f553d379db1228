/**
 * @packageDocumentation
 * WAN gossip: memberlist (SWIM + Lifeguard) and Serf, wire-compatible with HashiCorp's agents.
 */
export * from './gossip-pool.js';
export * from './wan-pool.js';
export { Keyring, keygen, parseKey } from './keyring.js';
export {
  Memberlist,
  profiles,
  suspicionTimeout,
  type MemberlistConfig,
  type NodeInfo,
  type NodeStatus,
} from './memberlist.js';
export { MemoryNetwork, NetTransport, StreamConn, type Addr, type Transport } from './transport.js';
export { lzwCompress, lzwDecompress } from './lzw.js';
export * as msgpack from './msgpack.js';
export * as wire from './wire.js';
export { DelayGate, GatedClock, SimClock, StallGate, seededRandom, type StallOptions } from './sim.js';
export { SimCluster, type SimClusterOptions, type SimDecision, type SimEvent } from './sim-cluster.js';
