// `meshfed intention …`: the same words as `consul intention`. Intentions say which service may
// call which; the destination's sidecar enforces them on each new connection.

import { MeshError } from '@meshfed/core';
import type { CommandSpec } from '../command.js';

export interface Intention {
  ID?: string;
  SourceName: string;
  DestinationName: string;
  SourceNS?: string;
  DestinationNS?: string;
  Action?: 'allow' | 'deny';
  Permissions?: unknown[];
  Description?: string;
  Precedence?: number;
  CreateIndex?: number;
  ModifyIndex?: number;
}

const columns = [
  { header: 'SOURCE', value: (r: Intention) => r.SourceName },
  { header: 'ACTION', value: (r: Intention) => r.Action ?? (r.Permissions ? 'L7' : '') },
  { header: 'DESTINATION', value: (r: Intention) => r.DestinationName },
  { header: 'PRECEDENCE', value: (r: Intention) => r.Precedence, align: 'right' as const },
  { header: 'DESCRIPTION', value: (r: Intention) => r.Description },
];

function pair(args: Record<string, unknown>): { source: string; destination: string } {
  const source = args['source'] as string | undefined;
  const destination = args['destination'] as string | undefined;
  if (!source || !destination) {
    throw new MeshError(
      'MESH_ERR_INVALID_ARGUMENT',
      'give a source and a destination service, e.g. `dashboard counting`',
    );
  }
  return { source, destination };
}

const srcDst = {
  source: { type: 'string' as const, describe: 'Source service (`*` for any)' },
  destination: { type: 'string' as const, describe: 'Destination service (`*` for any)' },
};

const create: CommandSpec = {
  command: 'create <source> <destination>',
  describe: 'Create or replace the intention source → destination (allow by default)',
  positional: srcDst,
  options: {
    allow: { type: 'boolean', describe: 'Allow the connection (default)' },
    deny: { type: 'boolean', describe: 'Deny the connection' },
    description: { type: 'string', describe: 'Why this intention exists' },
    replace: { type: 'boolean', default: true, describe: 'Replace an existing intention for the same pair' },
  },
  examples: [['meshfed intention create -deny dashboard counting', 'block dashboard → counting']],
  async handler(args, { out, client }) {
    const { source, destination } = pair(args);
    if (args['allow'] && args['deny'])
      throw new MeshError('MESH_ERR_INVALID_ARGUMENT', 'choose one of --allow and --deny');
    const body: Intention = {
      SourceName: source,
      DestinationName: destination,
      Action: args['deny'] ? 'deny' : 'allow',
      ...(args['description'] ? { Description: args['description'] as string } : {}),
    };
    await client().put('/v1/connect/intentions/exact', body, { query: { source, destination } });
    if (args.json) out.data(body);
    else out.line(`Created: ${source} => ${destination} (${body.Action})`);
  },
};

const del: CommandSpec = {
  command: 'delete <source> <destination>',
  describe: 'Delete the intention source → destination',
  positional: srcDst,
  async handler(args, { out, client }) {
    const { source, destination } = pair(args);
    await client().delete('/v1/connect/intentions/exact', { query: { source, destination } });
    out.line(`Intention deleted: ${source} => ${destination}`);
  },
};

const get: CommandSpec = {
  command: 'get <source> <destination>',
  describe: 'Show the intention source → destination',
  positional: srcDst,
  async handler(args, { out, client }) {
    const { source, destination } = pair(args);
    const res = await client().get<Intention>('/v1/connect/intentions/exact', {
      query: { source, destination },
    });
    out.table([res.body], columns, res.body);
  },
};

const list: CommandSpec = {
  command: 'list',
  describe: 'List every intention, highest precedence first',
  async handler(_args, { out, client }) {
    const res = await client().get<Intention[]>('/v1/connect/intentions');
    out.table(res.body, columns);
  },
};

const check: CommandSpec = {
  command: 'check <source> <destination>',
  describe: 'Would a connection source → destination be allowed? (exit 0 allowed, 2 denied)',
  positional: srcDst,
  async handler(args, { out, client }) {
    const { source, destination } = pair(args);
    const res = await client().get<{ Allowed: boolean }>('/v1/connect/intentions/check', {
      query: { source, destination },
    });
    if (args.json) out.data(res.body);
    else out.line(res.body.Allowed ? 'Allowed' : 'Denied');
    return res.body.Allowed ? 0 : 2;
  },
};

const match: CommandSpec = {
  command: 'match <name>',
  describe: 'Intentions that match a service as destination (default) or as source, in precedence order',
  positional: { name: { type: 'string', describe: 'Service name' } },
  options: {
    source: { type: 'boolean', describe: 'Match the service as the source' },
    destination: { type: 'boolean', describe: 'Match the service as the destination (default)' },
  },
  async handler(args, { out, client }) {
    const name = args['name'] as string;
    const by = args['source'] ? 'source' : 'destination';
    const res = await client().get<Record<string, Intention[]>>('/v1/connect/intentions/match', {
      query: { by, name },
    });
    out.table(res.body[name] ?? [], columns, res.body[name] ?? []);
  },
};

export const intentionCommand: CommandSpec = {
  command: 'intention',
  describe: 'Create and inspect intentions (which service may call which)',
  subcommands: [create, del, get, list, check, match],
};
