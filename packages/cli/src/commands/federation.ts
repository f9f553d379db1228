// Federation and the WAN gossip pool from the command line:
//   meshfed federation token create --ttl 1h     (in the primary)
//   meshfed join <primary address> --token <t>   (in the new DC: one command, no key copied)
//   meshfed federation status
//   meshfed join -wan <addr…> | members -wan | leave | keygen | keyring | event

import { randomBytes } from 'node:crypto';
import { ApiClient } from '@meshfed/client';
import { MeshError } from '@meshfed/core';
import type { CommandSpec } from '../command.js';

export interface FederationStatusRow {
  datacenter: string;
  role: 'primary' | 'secondary';
  reachable: boolean;
  gossip?: string;
  inSync: boolean;
  appliedIndex?: number;
  lagMs?: number;
  lastError?: string;
}

const tokenCreate: CommandSpec = {
  command: 'create',
  describe: 'Create a single-use join token that pins this CA (run in the primary)',
  options: { ttl: { type: 'string', default: '1h', describe: 'How long the token is valid (Go duration)' } },
  async handler(args, { out, client }) {
    const res = await client().post<{ Token: string; ID: string; ExpiresAt: string }>(
      '/v1/federation/token',
      {
        TTL: args['ttl'],
      },
    );
    if (args.json) out.data({ id: res.body.ID, token: res.body.Token, expiresAt: res.body.ExpiresAt });
    else {
      out.line(res.body.Token);
      out.error(
        `token ${res.body.ID}: single use, valid until ${res.body.ExpiresAt}; in the new DC: meshfed join <this DC's address> --token <token>`,
      );
    }
  },
};

interface TokenRow {
  ID: string;
  State: 'valid' | 'used' | 'expired' | 'revoked';
  CreatedAt: string;
  ExpiresAt: string;
  UsedAt?: string;
  UsedBy?: string;
  RevokedAt?: string;
}

const tokenList: CommandSpec = {
  command: 'list',
  describe: 'List join tokens (ID, state, expiry, which DC used one); secrets are never shown',
  async handler(args, { out, client }) {
    // Tokens live in the primary; ask it through this server (?dc=) wherever we are.
    const api = client();
    const st = await api.get<{ primaryDatacenter: string }>('/v1/federation/status');
    const res = await api.get<TokenRow[]>('/v1/federation/tokens', {
      query: { dc: st.body.primaryDatacenter },
    });
    out.table(
      res.body,
      [
        { header: 'ID', value: (r) => r.ID },
        { header: 'STATE', value: (r) => r.State },
        { header: 'CREATED', value: (r) => r.CreatedAt },
        { header: 'EXPIRES', value: (r) => r.ExpiresAt },
        { header: 'USED BY', value: (r) => r.UsedBy },
      ],
      res.body,
    );
  },
};

const tokenRevoke: CommandSpec = {
  command: 'revoke <id>',
  describe: 'Revoke an unused join token so it can never join a DC',
  positional: { id: { type: 'string', describe: 'Token ID (from create or list)' } },
  async handler(args, { out, client }) {
    const id = String(args['id']);
    const res = await client().delete<TokenRow>(`/v1/federation/token/${encodeURIComponent(id)}`);
    if (args.json) out.data(res.body);
    else out.line(`join token ${res.body.ID} revoked at ${res.body.RevokedAt}`);
  },
};

const status: CommandSpec = {
  command: 'status',
  describe: 'Every DC: role, reachability, gossip, replication index, lag, content in sync',
  async handler(args, { out, client }) {
    const res = await client().get<{ datacenters: FederationStatusRow[] }>('/v1/federation/status');
    out.table(
      res.body.datacenters,
      [
        { header: 'DC', value: (r) => r.datacenter },
        { header: 'ROLE', value: (r) => r.role },
        { header: 'REACHABLE', value: (r) => (r.reachable ? 'yes' : 'no') },
        { header: 'GOSSIP', value: (r) => r.gossip },
        { header: 'INDEX', value: (r) => r.appliedIndex, align: 'right' },
        { header: 'LAG MS', value: (r) => r.lagMs, align: 'right' },
        { header: 'IN SYNC', value: (r) => (r.role === 'primary' ? '' : r.inSync ? 'yes' : 'no') },
        { header: 'LAST ERROR', value: (r) => r.lastError },
      ],
      res.body,
    );
  },
};

export const federationCommand: CommandSpec = {
  command: 'federation',
  describe: "Join tokens and the federation's status",
  subcommands: [
    { command: 'token', describe: 'Join tokens', subcommands: [tokenCreate, tokenList, tokenRevoke] },
    status,
  ],
};

export const joinCommand: CommandSpec = {
  command: 'join <addresses..>',
  describe: 'Join this DC to a federation with a token, or (-wan) join the WAN gossip pool',
  positional: {
    addresses: {
      type: 'string',
      array: true,
      describe: 'Primary server/gateway address, or gossip addresses with -wan',
    },
  },
  options: {
    wan: { type: 'boolean', describe: 'Only join the WAN gossip pool at these addresses' },
    force: {
      type: 'boolean',
      describe: 'Join even though local intentions/config entries would be replaced',
    },
  },
  examples: [
    ['meshfed join 127.0.0.1:8300 --token mfj1...', 'join the federation whose primary listens there'],
    ['meshfed join -wan 127.0.0.1:8302', 'join the WAN gossip pool only'],
  ],
  async handler(args, { out, client, env }) {
    const addresses = args['addresses'] as string[];
    if (args['wan']) {
      for (const a of addresses)
        await client().put(`/v1/agent/join/${encodeURIComponent(a)}`, undefined, { query: { wan: 1 } });
      out.line(
        `Successfully joined the WAN pool through ${addresses.length} address${addresses.length === 1 ? '' : 'es'}`,
      );
      return;
    }
    // --token here is the join token; the ACL token for our own server then comes from
    // MESHFED_HTTP_TOKEN only.
    const token = args.token;
    if (!token) {
      throw new MeshError(
        'MESH_ERR_INVALID_ARGUMENT',
        'give --token <join token> (create one in the primary: meshfed federation token create), or -wan for gossip only',
      );
    }
    out.progress(
      `joining through ${addresses[0]}: verifying the primary, signing our intermediate, replicating ...`,
    );
    const local = new ApiClient({ address: args['http-addr'], token: env['MESHFED_HTTP_TOKEN'] });
    const res = await local.post<{ Datacenter: string; Primary: string; Replicated: Record<string, number> }>(
      '/v1/federation/join',
      { Address: addresses[0], Token: token, Force: args['force'] === true },
    );
    if (args.json) out.data(res.body);
    else out.line(`Joined the federation of primary ${res.body.Primary} as ${res.body.Datacenter}`);
  },
};

interface Member {
  Name: string;
  Addr: string;
  Port: number;
  Status: number | string;
  Tags: Record<string, string>;
}
const memberStatus = (s: number | string) =>
  typeof s === 'string' ? s : (['none', 'alive', 'leaving', 'left', 'failed'][s] ?? String(s));

export const membersCommand: CommandSpec = {
  command: 'members',
  describe: 'Members of the WAN gossip pool: name, address, status, DC, role',
  options: {
    wan: { type: 'boolean', default: true, describe: 'The WAN pool (the only pool servers share)' },
    detailed: { type: 'boolean', describe: 'Show every tag' },
  },
  async handler(args, { out, client }) {
    const res = await client().get<Member[]>('/v1/agent/members', { query: { wan: 1 } });
    const rows = [...res.body].sort((a, b) => a.Name.localeCompare(b.Name));
    out.table(rows, [
      { header: 'NODE', value: (r) => r.Name },
      { header: 'ADDRESS', value: (r) => `${r.Addr}:${r.Port}` },
      { header: 'STATUS', value: (r) => memberStatus(r.Status) },
      { header: 'DC', value: (r) => r.Tags['dc'] },
      { header: 'ROLE', value: (r) => r.Tags['role'] },
      ...(args['detailed']
        ? [
            {
              header: 'TAGS',
              value: (r: Member) =>
                Object.entries(r.Tags)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(','),
            },
          ]
        : []),
    ]);
  },
};

export const leaveCommand: CommandSpec = {
  command: 'leave',
  describe: 'Leave the WAN gossip pool gracefully (others see `left`, not `failed`)',
  async handler(_args, { out, client }) {
    await client().put('/v1/agent/leave');
    out.line('Graceful leave complete');
  },
};

export const keygenCommand: CommandSpec = {
  command: 'keygen',
  describe: 'Print a new gossip encryption key (32 random bytes, base64)',
  async handler(args, { out }) {
    const key = randomBytes(32).toString('base64');
    if (args.json) out.data({ key });
    else out.line(key);
  },
};

export const keyringCommand: CommandSpec = {
  command: 'keyring',
  describe: 'Gossip encryption keys on every member: -list, -install, -use, -remove',
  options: {
    list: { type: 'boolean', describe: 'List the keys and how many members hold each' },
    install: { type: 'string', describe: 'Install a new key on every member' },
    use: { type: 'string', describe: 'Make an installed key the primary (used for sending)' },
    remove: { type: 'string', describe: 'Remove a key that is not the primary' },
  },
  async handler(args, { out, client }) {
    const ops = ['install', 'use', 'remove'].filter((o) => args[o] !== undefined);
    if (ops.length > 1)
      throw new MeshError('MESH_ERR_INVALID_ARGUMENT', 'give one of -list, -install, -use, -remove');
    const op = ops[0];
    if (op) {
      const key = args[op] as string;
      const method = op === 'install' ? 'post' : op === 'use' ? 'put' : 'delete';
      if (method === 'delete') await client().delete('/v1/operator/keyring', { body: { Key: key } });
      else await client()[method]('/v1/operator/keyring', { Key: key });
      out.line(`${op}: done on every member`);
      return;
    }
    const res = await client().get<
      {
        WAN: boolean;
        Keys: Record<string, number>;
        PrimaryKeys?: Record<string, number>;
        NumNodes: number;
      }[]
    >('/v1/operator/keyring');
    const rows = res.body.flatMap((pool) =>
      Object.entries(pool.Keys).map(([key, count]) => ({
        key,
        members: `${count}/${pool.NumNodes}`,
        primary: (pool.PrimaryKeys?.[key] ?? 0) > 0,
      })),
    );
    out.table(
      rows,
      [
        { header: 'KEY', value: (r) => r.key },
        { header: 'MEMBERS', value: (r) => r.members },
        { header: 'PRIMARY', value: (r) => (r.primary ? 'yes' : '') },
      ],
      res.body,
    );
  },
};

export const eventCommand: CommandSpec = {
  command: 'event <name> [payload]',
  describe: 'Fire a user event to every member of the WAN pool',
  positional: {
    name: { type: 'string', describe: 'Event name' },
    payload: { type: 'string', describe: 'Payload (small: it rides in gossip)' },
  },
  async handler(args, { out, client }) {
    const res = await client().put<{ ID: string }>(
      `/v1/event/fire/${encodeURIComponent(args['name'] as string)}`,
      (args['payload'] as string | undefined) ?? '',
    );
    if (args.json) out.data(res.body);
    else out.line(`Event ${args['name'] as string} fired (ID ${res.body.ID})`);
  },
};
