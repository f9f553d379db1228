/**
 * @packageDocumentation
 * The DC server: catalog, health, intentions and config entries in the store, served over a
 * Consul-compatible HTTP API with blocking queries. `new MeshServer(options, deps)`.
 */
export * from './server.js';
export * from './ca.js';
export * from './catalog.js';
export { CheckRunner } from './checks.js';
export * from './config-entries.js';
export { Intentions, parseEndpoint, T_INTENTIONS, type IntentionValue } from './intentions.js';
export {
  Router,
  blockingRead,
  defaultBlockingOptions,
  type ApiRequest,
  type ApiResponse,
  type BlockingOptions,
} from './http.js';
