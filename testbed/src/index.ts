/**
 * @packageDocumentation
 * The testbed: several datacenters on one machine as real processes, the white paper's demo apps,
 * and the helpers the end-to-end suite uses.
 */
export * from './process-group.js';
export { startCounting } from './apps/counting.js';
export { startDashboard, type CountAnswer } from './apps/dashboard.js';
export * from './testbed.js';
