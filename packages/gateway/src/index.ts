/**
 * @packageDocumentation
 * The mesh gateway: SNI-passthrough routing between datacenters. accept → peek ClientHello →
 * route → pipe lives in gateway.ts; the ClientHello parser in client-hello.ts; routes and where
 * they come from in routes.ts, route-source.ts and catalog-route-source.ts.
 */
export * from './client-hello.js';
export * from './routes.js';
export * from './route-source.js';
export * from './gateway.js';
export * from './admin.js';
export * from './catalog-route-source.js';
export * from './registration.js';
export * from './main.js';
