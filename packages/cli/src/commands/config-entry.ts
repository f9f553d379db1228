// `meshfed config write|read|list|delete`: config entries (service-resolver, service-defaults, …)
// in the server, from YAML or JSON files in Consul's PascalCase shape. Written in a secondary, a
// replicated kind is forwarded to the primary and comes back through replication.

import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { MeshError } from '@meshfed/core';
import type { CommandSpec } from '../command.js';

interface ConfigEntry {
  Kind: string;
  Name: string;
  CreateIndex?: number;
  ModifyIndex?: number;
  [key: string]: unknown;
}

/** Reads one or more entries (YAML documents or JSON) from a file, or stdin with `-`. */
export function readEntries(file: string): ConfigEntry[] {
  const text = readFileSync(file === '-' ? 0 : file, 'utf8');
  const docs = parseAllDocuments(text);
  const entries: ConfigEntry[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const [line, col] = e.linePos?.[0] ? [e.linePos[0].line, e.linePos[0].col] : [0, 0];
      throw new MeshError('MESH_ERR_CONFIG_INVALID', `${file}:${line}:${col}: ${e.message.split('\n')[0]}`);
    }
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new MeshError(
        'MESH_ERR_CONFIG_INVALID',
        `${file}: a config entry is a mapping with Kind and Name`,
      );
    }
    const entry = value as ConfigEntry;
    if (typeof entry.Kind !== 'string' || typeof entry.Name !== 'string') {
      throw new MeshError(
        'MESH_ERR_CONFIG_INVALID',
        `${file}: every config entry needs Kind and Name (found ${Object.keys(entry).join(', ') || 'nothing'})`,
      );
    }
    entries.push(entry);
  }
  if (entries.length === 0)
    throw new MeshError('MESH_ERR_CONFIG_INVALID', `${file}: no config entry in the file`);
  return entries;
}

const write: CommandSpec = {
  command: 'write <file>',
  describe: 'Create or update config entries from a YAML/JSON file (`-` for stdin)',
  positional: { file: { type: 'string', describe: 'File with one or more entries' } },
  options: { cas: { type: 'number', describe: 'Only write if the entry is still at this ModifyIndex' } },
  examples: [['meshfed config write configs/entries/counting-resolver.yaml', 'fail counting over to dc3']],
  async handler(args, { out, client }) {
    const entries = readEntries(args['file'] as string);
    for (const entry of entries) {
      const res = await client().put<boolean>('/v1/config', entry, {
        query: { cas: args['cas'] as number | undefined },
      });
      if (res.body === false) {
        throw new MeshError(
          'MESH_ERR_API_CONFLICT',
          `${entry.Kind}/${entry.Name} changed since ModifyIndex ${String(args['cas'])}; read it again and retry`,
        );
      }
      if (!args.json) out.line(`Config entry written: ${entry.Kind}/${entry.Name}`);
    }
    if (args.json) out.data(entries.map((e) => ({ Kind: e.Kind, Name: e.Name, written: true })));
  },
};

const read: CommandSpec = {
  command: 'read',
  describe: 'Show one config entry',
  options: {
    kind: { type: 'string', demandOption: true, describe: 'Entry kind, e.g. service-resolver' },
    name: { type: 'string', demandOption: true, describe: 'Entry name' },
  },
  async handler(args, { out, client }) {
    const res = await client().get<ConfigEntry>(
      `/v1/config/${encodeURIComponent(args['kind'] as string)}/${encodeURIComponent(args['name'] as string)}`,
    );
    out.data(res.body);
  },
};

const list: CommandSpec = {
  command: 'list',
  describe: 'List config entries of one kind',
  options: { kind: { type: 'string', demandOption: true, describe: 'Entry kind, e.g. service-defaults' } },
  async handler(args, { out, client }) {
    const res = await client().get<ConfigEntry[]>(`/v1/config/${encodeURIComponent(args['kind'] as string)}`);
    out.table(res.body, [
      { header: 'KIND', value: (r) => r.Kind },
      { header: 'NAME', value: (r) => r.Name },
      { header: 'MODIFY INDEX', value: (r) => r.ModifyIndex, align: 'right' },
    ]);
  },
};

const del: CommandSpec = {
  command: 'delete',
  describe: 'Delete one config entry',
  options: {
    kind: { type: 'string', demandOption: true, describe: 'Entry kind' },
    name: { type: 'string', demandOption: true, describe: 'Entry name' },
  },
  async handler(args, { out, client }) {
    const kind = args['kind'] as string;
    const name = args['name'] as string;
    await client().delete(`/v1/config/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`);
    out.line(`Config entry deleted: ${kind}/${name}`);
  },
};

export const configEntryCommands = [write, read, list, del];
