/**
 * @packageDocumentation
 * meshfed's configuration: the schema (every key, its type, default and documentation), the loader
 * (YAML files → env → flags, errors with file:line:col), and renderers for the reference docs and
 * `meshfed config print`.
 */
export {
  configSchema,
  type MeshfedConfig,
  type ServiceConfig,
  type UpstreamConfig,
  type CheckConfig,
} from './schema.js';
export {
  loadConfig,
  loadConfigOrThrow,
  formatIssues,
  envVarName,
  scalarPaths,
  sanitizeNodeName,
  formatPath,
  type ConfigIssue,
  type LoadOptions,
  type LoadResult,
} from './loader.js';
export { renderConfigReference, effectiveConfig, effectiveConfigYaml } from './reference.js';
