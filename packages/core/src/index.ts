/**
 * @packageDocumentation
 * meshfed's shared vocabulary. Names and branded IDs, SNI and SPIFFE builders and parsers, the
 * frame codec for server-to-server messages, the error table, the Logger and Clock interfaces,
 * Startable, durations, addresses and a small Prometheus registry. No I/O lives here.
 */
export * from './error-codes.js';
export * from './errors.js';
export * from './names.js';
export * from './sni.js';
export * from './spiffe.js';
export * from './codec.js';
export * from './logger.js';
export * from './clock.js';
export * from './startable.js';
export * from './metrics.js';
export * from './duration.js';
export * from './address.js';
export * from './intentions.js';
export * from './wire-types.js';
