/**
 * @packageDocumentation
 * Test-only fakes and helpers. Production packages never import this.
 */
export * from './manual-clock.js';
export * from './helpers.js';
