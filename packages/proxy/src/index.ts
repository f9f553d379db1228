/**
 * @packageDocumentation
 * The built-in sidecar: inbound mTLS with intentions, upstream listeners with Consul's target
 * choice (service-resolver, failover, mesh-gateway modes), identity renewal without drops.
 */
export * from './data-sources.js';
export * from './identity.js';
export * from './bexpr.js';
export * from './resolver.js';
export * from './mesh-proxy.js';
export * from './run.js';
