/**
 * @packageDocumentation
 * Server-to-server federation: the mutual-TLS WebSocket channel, push replication of the
 * primary's intentions and config entries, the federated CA (intermediates signed over the
 * channel), single-use join tokens that pin the primary's CA, catalog export between every DC,
 * and status/metrics.
 */
export * from './interfaces.js';
export * from './memory-store.js';
export * from './join-token.js';
export * from './channel.js';
export * from './federation.js';
export * from './membership.js';
export * from './render.js';
export * from './commit-times.js';
