// The operator endpoints the server daemon adds to the HTTP API: the WAN gossip pool (Consul's
// /v1/agent/members?wan, join, leave, /v1/operator/keyring, /v1/event/fire), federation (join
// tokens, join, status — ours) and root rotation. They live here because they join the server to
// the gossip pool, the federation and the CA, which the server package knows nothing of.

import type { CertificateAuthority } from '@meshfed/ca';
import type { MeshfedConfig } from '@meshfed/config';
import { MeshError, parseDuration, type Registry } from '@meshfed/core';
import type { Federation, JoinResult, JoinTokenInfo } from '@meshfed/federation';
import type { KeyOpResult, WanPool } from '@meshfed/gossip';
import type { ApiRequest, MeshServer } from '@meshfed/server';

export interface OperatorRouteDeps {
  ca: CertificateAuthority;
  gossip: WanPool;
  federation: Federation;
  registry: Registry;
  config: MeshfedConfig;
  /** Remember a token join and join the WAN gossip pool it names; returns members reached. */
  afterJoin(r: JoinResult, dialled: string | undefined): Promise<number>;
}

const memberStatusCode = { alive: 1, leaving: 2, left: 3, failed: 4, suspect: 1 } as Record<string, number>;

async function jsonBody(req: ApiRequest): Promise<Record<string, unknown>> {
  const b = await req.body();
  if (b === undefined) return {};
  if (typeof b !== 'object' || b === null || Array.isArray(b))
    throw new MeshError('MESH_ERR_API_BAD_REQUEST', 'request body must be a JSON object');
  return b as Record<string, unknown>;
}

function keyFrom(body: Record<string, unknown>): string {
  const key = body['Key'];
  if (typeof key !== 'string' || Buffer.from(key, 'base64').length === 0)
    throw new MeshError('MESH_ERR_API_BAD_REQUEST', 'Key must be a base64 gossip key (meshfed keygen)');
  return key;
}

function keyringAnswer(r: KeyOpResult, dc: string): unknown {
  if (r.numErr > 0)
    throw new MeshError(
      'MESH_ERR_UNAVAILABLE',
      `${r.numErr} of ${r.numNodes} members failed: ${Object.entries(r.messages)
        .map(([n, m]) => `${n}: ${m}`)
        .join('; ')}`,
    );
  return [{ WAN: true, Datacenter: dc, Keys: r.keys, PrimaryKeys: r.primaryKeys, NumNodes: r.numNodes }];
}

export function mountOperatorRoutes(server: MeshServer, deps: OperatorRouteDeps): void {
  const { gossip, federation, ca, config } = deps;
  const dc = config.datacenter;

  // --- gossip -------------------------------------------------------------------------------
  server.addRoute('GET', '/v1/agent/members', () => ({
    body: gossip.pool.members().map((m) => ({
      Name: m.name,
      Addr: m.addr,
      Port: m.port,
      Tags: m.tags,
      Status: memberStatusCode[m.status] ?? 0,
      ProtocolMin: m.protocolMin,
      ProtocolMax: m.protocolMax,
      ProtocolCur: m.protocolCur,
      DelegateMin: m.delegateMin,
      DelegateMax: m.delegateMax,
      DelegateCur: m.delegateCur,
    })),
  }));
  server.addRoute('PUT', '/v1/agent/join/:address', async (req) => {
    const addr = req.params['address'] ?? '';
    const n = await gossip.pool.join([addr]);
    if (n === 0) throw new MeshError('MESH_ERR_UNAVAILABLE', `could not join the WAN pool at ${addr}`);
    return { body: null };
  });
  server.addRoute('PUT', '/v1/agent/leave', async () => {
    await gossip.pool.leave();
    return { body: null };
  });
  server.addRoute('GET', '/v1/operator/keyring', async () => ({
    body: keyringAnswer(await gossip.pool.keys.list(), dc),
  }));
  server.addRoute('POST', '/v1/operator/keyring', async (req) => ({
    body: keyringAnswer(await gossip.pool.keys.install(keyFrom(await jsonBody(req))), dc),
  }));
  server.addRoute('PUT', '/v1/operator/keyring', async (req) => ({
    body: keyringAnswer(await gossip.pool.keys.use(keyFrom(await jsonBody(req))), dc),
  }));
  server.addRoute('DELETE', '/v1/operator/keyring', async (req) => ({
    body: keyringAnswer(await gossip.pool.keys.remove(keyFrom(await jsonBody(req))), dc),
  }));
  server.addRoute('PUT', '/v1/event/fire/:name', async (req) => {
    const payload = await req.body();
    const text = payload === undefined ? '' : typeof payload === 'string' ? payload : JSON.stringify(payload);
    gossip.pool.userEvent(req.params['name']!, text, false);
    return { body: { ID: `${Date.now().toString(16)}`, Name: req.params['name'] } };
  });

  // --- federation -----------------------------------------------------------------------------
  server.addRoute('POST', '/v1/federation/token', async (req) => {
    const body = await jsonBody(req);
    const parsed =
      typeof body['TTL'] === 'string' ? parseDuration(body['TTL']) : { ok: true as const, value: 3_600_000 };
    if (!parsed.ok) throw new MeshError('MESH_ERR_API_BAD_REQUEST', `TTL: ${parsed.reason}`);
    const ttl = parsed.value;
    const t = federation.createJoinToken({ ttlMs: ttl });
    return { body: { Token: t.token, ID: t.id, ExpiresAt: new Date(t.expiresAt).toISOString() } };
  });
  // Listing is a read served by the primary (a secondary asks it over the channel, as for ?dc=).
  server.addRoute('GET', '/v1/federation/tokens', () => ({
    body: federation.listJoinTokens().map(tokenJson),
  }));
  // A write under /v1/federation/token: a secondary forwards it to the primary.
  server.addRoute('DELETE', '/v1/federation/token/:id', (req) => ({
    body: tokenJson(federation.revokeJoinToken(req.params['id']!)),
  }));
  server.addRoute('POST', '/v1/federation/join', async (req) => {
    const body = await jsonBody(req);
    if (typeof body['Token'] !== 'string' || body['Token'] === '')
      throw new MeshError('MESH_ERR_API_BAD_REQUEST', 'Token is required');
    const address = typeof body['Address'] === 'string' && body['Address'] ? body['Address'] : undefined;
    const r = await federation.join(body['Token'], {
      ...(address ? { address } : {}),
      force: body['Force'] === true,
    });
    return {
      body: {
        Datacenter: dc,
        Primary: r.primaryDatacenter,
        PrimaryAddrs: r.primaryAddrs,
        Discarded: r.discarded,
        GossipJoined: await deps.afterJoin(r, address),
      },
    };
  });
  server.addRoute('GET', '/v1/federation/status', () => {
    const s = federation.status();
    return {
      body: {
        datacenter: s.datacenter,
        primaryDatacenter: s.primaryDatacenter,
        datacenters: s.datacenters.map((d) => ({
          datacenter: d.datacenter,
          role: d.role,
          local: d.local,
          reachable: d.reachable,
          gossip: d.gossip,
          inSync: d.role === 'primary' ? true : d.hashesEqual === true,
          appliedIndex: d.replicationIndex,
          lagMs: d.lagMs,
          stale: d.stale,
          downForMs: d.downForMs,
          lastError: d.lastError,
        })),
        kinds: s.kinds,
      },
    };
  });
  server.addRoute('GET', '/v1/internal/federation-states', () => ({ body: federation.federationStates() }));

  // --- CA rotation (Consul rotates through PUT configuration; this says what it does) ---------
  server.addRoute('POST', '/v1/connect/ca/rotate', async (req) => {
    const b = await jsonBody(req);
    const str = (k: string) => (typeof b[k] === 'string' && b[k] !== '' ? (b[k] as string) : undefined);
    const type = str('PrivateKeyType');
    const rootCertPem = str('RootCert');
    const rootKeyPem = str('PrivateKey');
    if (type && !['ec', 'rsa', 'ed25519'].includes(type))
      throw new MeshError('MESH_ERR_API_BAD_REQUEST', 'PrivateKeyType must be ec, rsa or ed25519');
    await ca.rotateRoot({
      ...(type ? { privateKeyType: type as 'ec' | 'rsa' | 'ed25519' } : {}),
      ...(typeof b['PrivateKeyBits'] === 'number' ? { privateKeyBits: b['PrivateKeyBits'] } : {}),
      ...(rootCertPem ? { rootCertPem } : {}),
      ...(rootKeyPem ? { rootKeyPem } : {}),
      force: b['Force'] === true,
    });
    return { body: ca.rootsResponse() };
  });

  server.addRoute('GET', '/v1/agent/metrics', () => ({ body: deps.registry.render(), text: true }));
}

function tokenJson(t: JoinTokenInfo): Record<string, unknown> {
  const iso = (ms: number | undefined): string | undefined =>
    ms === undefined ? undefined : new Date(ms).toISOString();
  return {
    ID: t.id,
    State: t.state,
    CreatedAt: iso(t.createdAt),
    ExpiresAt: iso(t.expiresAt),
    UsedAt: iso(t.usedAt),
    UsedBy: t.usedBy,
    RevokedAt: iso(t.revokedAt),
  };
}
