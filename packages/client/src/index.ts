/**
 * @packageDocumentation
 * Client for meshfed's Consul-compatible HTTP API: requests with tokens and response metadata, and
 * blocking-query watches. Used by the gateway, the sidecar, the CLI and the testbed.
 */
export * from './api-client.js';
export * from './server-api.js';
