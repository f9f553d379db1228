// `meshfed services` and `meshfed catalog nodes|services`: what the DC's catalog holds.

import type { CommandSpec } from '../command.js';

interface CatalogNode {
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses?: Record<string, string>;
}

const dcOption = { dc: { type: 'string' as const, describe: 'Datacenter to ask (default: the local one)' } };

export const servicesCommand: CommandSpec = {
  command: 'services',
  describe: 'List the services in the catalog with their tags',
  options: dcOption,
  async handler(args, { out, client }) {
    const res = await client().get<Record<string, string[]>>('/v1/catalog/services', {
      query: { dc: args['dc'] as string | undefined },
    });
    const rows = Object.entries(res.body)
      .map(([name, tags]) => ({ name, tags }))
      .sort((a, b) => a.name.localeCompare(b.name));
    out.table(
      rows,
      [
        { header: 'SERVICE', value: (r) => r.name },
        { header: 'TAGS', value: (r) => r.tags.join(',') },
      ],
      res.body,
    );
  },
};

const nodesCommand: CommandSpec = {
  command: 'nodes',
  describe: 'List the nodes in the catalog',
  options: dcOption,
  async handler(args, { out, client }) {
    const res = await client().get<CatalogNode[]>('/v1/catalog/nodes', {
      query: { dc: args['dc'] as string | undefined },
    });
    out.table(res.body, [
      { header: 'NODE', value: (r) => r.Node },
      { header: 'ADDRESS', value: (r) => r.Address },
      { header: 'DC', value: (r) => r.Datacenter },
      { header: 'WAN', value: (r) => r.TaggedAddresses?.['wan'] },
    ]);
  },
};

export const catalogCommand: CommandSpec = {
  command: 'catalog',
  describe: 'Read the catalog: nodes and services',
  subcommands: [nodesCommand, { ...servicesCommand, command: 'services' }],
};
