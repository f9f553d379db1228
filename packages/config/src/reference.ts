// Rendering the schema and a loaded config for people: the configuration reference
// (docs/configuration.md) and `meshfed config print` (effective config, secrets hidden).

import { formatDuration } from '@meshfed/core';
import { stringify } from 'yaml';
import { configSchema, type MeshfedConfig } from './schema.js';
import { envVarName } from './loader.js';
import type { Spec } from './schema-dsl.js';

type AnySpec = Spec<unknown> & { fields?: Record<string, AnySpec>; of?: AnySpec; defaultText?: string };

/** Markdown reference of every key: path, what it takes, default, env var, description. */
export function renderConfigReference(): string {
  const rows: string[] = [];
  const walk = (spec: AnySpec, path: string[], inList: boolean): void => {
    if (spec.kind === 'object' && spec.fields) {
      if (path.length > 0) rows.push(row(path, spec, inList, true));
      for (const [k, f] of Object.entries(spec.fields)) walk(f, [...path, k], inList);
      return;
    }
    if (spec.kind === 'list' && spec.of?.kind === 'object') {
      rows.push(row(path, spec, inList, true));
      for (const [k, f] of Object.entries(spec.of.fields ?? {})) walk(f, [...path, '[]', k], true);
      return;
    }
    rows.push(row(path, spec, inList, false));
  };
  walk(configSchema as AnySpec, [], false);
  return [
    '# Configuration reference',
    '',
    '<!-- Generated from packages/config/src/schema.ts by `npm run docs:config`; do not edit by hand. -->',
    '',
    'One YAML file describes what runs in a datacenter: the server, the gateway and the sidecars of its',
    'services, and how the DC federates. Values are taken, in increasing priority, from the defaults',
    'below, the YAML files given with `--config` (later files override earlier ones), `MESHFED_*`',
    'environment variables, and command-line flags of the same name (`--ports.http 8501`). Lists can',
    'be given to env vars and flags comma-separated. Durations use Go syntax (`30s`, `5m`, `72h`).',
    'Check a file with `meshfed validate <file>`; see the effective result with `meshfed config print <file>`.',
    '',
    '| key | takes | default | env | description |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

function row(path: string[], spec: AnySpec, inList: boolean, group: boolean): string {
  const key = path.join('.').replace(/\.\[\]/g, '[]');
  const takes = group ? (spec.kind === 'list' ? 'list of maps' : 'map') : spec.expected;
  const env = group || inList || spec.kind === 'map' ? '' : `\`${envVarName(path)}\``;
  let def = '';
  if (!group) {
    if (spec.defaultText !== undefined) def = `\`${spec.defaultText}\``;
    else if (spec.default !== undefined) def = `\`${JSON.stringify(spec.default)}\``;
    else def = spec.optional ? '(none)' : '**required**';
  }
  const doc = spec.doc.replace(/\|/g, '\\|');
  return `| \`${key}\` | ${takes.replace(/\|/g, '\\|')} | ${def} | ${env} | ${doc} |`;
}

/** The effective config as YAML (or a JSON-ready object): durations written back, secrets hidden. */
export function effectiveConfig(config: MeshfedConfig): unknown {
  const walk = (spec: AnySpec, value: unknown): unknown => {
    if (value === undefined) return undefined;
    if (spec.secret) return value === '' ? '' : '[hidden]';
    if (spec.kind === 'duration' && typeof value === 'number') return formatDuration(value);
    if (spec.kind === 'object' && spec.fields && typeof value === 'object' && value !== null) {
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries(spec.fields)) {
        const v = walk(f, (value as Record<string, unknown>)[k]);
        if (v !== undefined) out[k] = v;
      }
      return out;
    }
    if (spec.kind === 'list' && spec.of && Array.isArray(value)) return value.map((v) => walk(spec.of!, v));
    return value;
  };
  return walk(configSchema as AnySpec, config);
}

export function effectiveConfigYaml(config: MeshfedConfig): string {
  return stringify(effectiveConfig(config), { lineWidth: 0 });
}
