// SPIFFE IDs in Consul's formats. They are the identities in every leaf certificate's URI SAN:
//
//   service        spiffe://<td>/ns/<ns>/dc/<dc>/svc/<svc>
//                  spiffe://<td>/ap/<ap>/ns/<ns>/dc/<dc>/svc/<svc>     (non-default partition)
//   server         spiffe://<td>/agent/server/dc/<dc>
//   client agent   spiffe://<td>/agent/client/dc/<dc>/id/<node-id>
//   mesh gateway   spiffe://<td>/gateway/mesh/dc/<dc>
//                  spiffe://<td>/ap/<ap>/gateway/mesh/dc/<dc>
//   signing (CA)   spiffe://<td>

import { fail, ok, type Result } from './errors.js';
import { DEFAULT_NAMESPACE, DEFAULT_PARTITION, nameProblem, type NameKind } from './names.js';

export type SpiffeId =
  | {
      kind: 'service';
      trustDomain: string;
      partition: string;
      namespace: string;
      datacenter: string;
      service: string;
    }
  | { kind: 'server'; trustDomain: string; datacenter: string }
  | { kind: 'agent'; trustDomain: string; datacenter: string; nodeId: string }
  | { kind: 'mesh-gateway'; trustDomain: string; partition: string; datacenter: string }
  | { kind: 'signing'; trustDomain: string };

const isDefault = (p: string | undefined): boolean => p === undefined || p === '' || p === DEFAULT_PARTITION;

export function serviceSpiffeId(args: {
  trustDomain: string;
  datacenter: string;
  service: string;
  namespace?: string;
  partition?: string;
}): string {
  const ap = isDefault(args.partition) ? '' : `/ap/${args.partition}`;
  return `spiffe://${args.trustDomain}${ap}/ns/${args.namespace || DEFAULT_NAMESPACE}/dc/${args.datacenter}/svc/${args.service}`;
}

export function serverSpiffeId(trustDomain: string, datacenter: string): string {
  return `spiffe://${trustDomain}/agent/server/dc/${datacenter}`;
}

export function agentSpiffeId(trustDomain: string, datacenter: string, nodeId: string): string {
  return `spiffe://${trustDomain}/agent/client/dc/${datacenter}/id/${nodeId}`;
}

export function meshGatewaySpiffeId(trustDomain: string, datacenter: string, partition?: string): string {
  const ap = isDefault(partition) ? '' : `/ap/${partition}`;
  return `spiffe://${trustDomain}${ap}/gateway/mesh/dc/${datacenter}`;
}

export function signingSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}`;
}

export function formatSpiffeId(id: SpiffeId): string {
  switch (id.kind) {
    case 'service':
      return serviceSpiffeId(id);
    case 'server':
      return serverSpiffeId(id.trustDomain, id.datacenter);
    case 'agent':
      return agentSpiffeId(id.trustDomain, id.datacenter, id.nodeId);
    case 'mesh-gateway':
      return meshGatewaySpiffeId(id.trustDomain, id.datacenter, id.partition);
    case 'signing':
      return signingSpiffeId(id.trustDomain);
  }
}

const TRUST_DOMAIN_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
const NODE_ID_RE = /^[A-Za-z0-9-]{1,64}$/;

/** Parse a SPIFFE URI. Never throws; unknown shapes come back with a reason. */
export function parseSpiffeId(uri: string): Result<SpiffeId> {
  if (typeof uri !== 'string') return fail('SPIFFE ID must be a string');
  if (!uri.startsWith('spiffe://')) return fail('SPIFFE ID must start with spiffe://');
  if (uri.length > 2048) return fail('SPIFFE ID longer than 2048 bytes');
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  if (!TRUST_DOMAIN_RE.test(trustDomain))
    return fail(`trust domain "${trustDomain}" is not a lowercase DNS name`);
  if (slash === -1 || slash === rest.length - 1) return ok({ kind: 'signing', trustDomain });
  const segs = rest.slice(slash + 1).split('/');

  let partition = 'default';
  if (segs[0] === 'ap') {
    if (segs.length < 2) return fail('"/ap/" must be followed by a partition');
    partition = segs[1]!;
    segs.splice(0, 2);
    const p = nameProblem('partition', partition);
    if (p) return fail(p);
  }

  // ns/<ns>/dc/<dc>/svc/<svc>
  if (segs.length === 6 && segs[0] === 'ns' && segs[2] === 'dc' && segs[4] === 'svc') {
    return checked(
      {
        kind: 'service',
        trustDomain,
        partition,
        namespace: segs[1]!,
        datacenter: segs[3]!,
        service: segs[5]!,
      },
      [
        ['namespace', segs[1]],
        ['datacenter', segs[3]],
        ['service', segs[5]],
      ],
    );
  }
  // gateway/mesh/dc/<dc>
  if (segs.length === 4 && segs[0] === 'gateway' && segs[1] === 'mesh' && segs[2] === 'dc') {
    return checked({ kind: 'mesh-gateway', trustDomain, partition, datacenter: segs[3]! }, [
      ['datacenter', segs[3]],
    ]);
  }
  if (partition !== 'default') return fail('only service and mesh-gateway IDs may carry a partition');
  // agent/server/dc/<dc>
  if (segs.length === 4 && segs[0] === 'agent' && segs[1] === 'server' && segs[2] === 'dc') {
    return checked({ kind: 'server', trustDomain, datacenter: segs[3]! }, [['datacenter', segs[3]]]);
  }
  // agent/client/dc/<dc>/id/<node-id>
  if (
    segs.length === 6 &&
    segs[0] === 'agent' &&
    segs[1] === 'client' &&
    segs[2] === 'dc' &&
    segs[4] === 'id'
  ) {
    if (!NODE_ID_RE.test(segs[5]!)) return fail('agent node ID must be 1-64 letters, digits or "-"');
    return checked({ kind: 'agent', trustDomain, datacenter: segs[3]!, nodeId: segs[5]! }, [
      ['datacenter', segs[3]],
    ]);
  }
  return fail(`unrecognised SPIFFE path "/${segs.join('/')}"`);
}

function checked(id: SpiffeId, names: [NameKind, string | undefined][]): Result<SpiffeId> {
  for (const [kind, value] of names) {
    const p = nameProblem(kind, value);
    if (p) return fail(p);
  }
  return ok(id);
}
