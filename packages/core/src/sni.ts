// SNI names in Consul's exact formats. The gateway routes on nothing else, so building and parsing
// must agree byte for byte with what Consul's sidecars put in a ClientHello.
//
//   service            <svc>.<ns>.<dc>.internal.<td>
//   subset             <subset>.<svc>.<ns>.<dc>.internal.<td>
//   partition          <svc>.<ns>.<ap>.<dc>.internal-v1.<td>            (non-default partition)
//   subset + partition <subset>.<svc>.<ns>.<ap>.<dc>.internal-v1.<td>
//   datacenter         <dc>.internal.<td>   |   <ap>.<dc>.internal-v1.<td>
//   server (any)       server.<dc>.<domain>
//   server (one node)  <node>.server.<dc>.<domain>
//
// The trust domain <td> is `<cluster-id>.consul`; <domain> is the server domain (`consul`).

import { fail, ok, type Result } from './errors.js';
import { DEFAULT_NAMESPACE, DEFAULT_PARTITION, nameProblem, type NameKind } from './names.js';

export interface ServiceTarget {
  service: string;
  namespace?: string;
  partition?: string;
  datacenter: string;
  subset?: string;
}

export type ParsedSni =
  | {
      kind: 'service';
      service: string;
      namespace: string;
      partition: string;
      datacenter: string;
      subset: string | undefined;
    }
  | { kind: 'datacenter'; datacenter: string; partition: string }
  | { kind: 'server'; datacenter: string; node: string | undefined };

export interface SniContext {
  /** `<cluster-id>.consul`, lowercase. */
  trustDomain: string;
  /** Server domain for `server.<dc>.<domain>`; Consul's default is `consul`. */
  domain: string;
}

const isDefault = (p: string | undefined): boolean => p === undefined || p === '' || p === DEFAULT_PARTITION;

export function serviceSni(target: ServiceTarget, trustDomain: string): string {
  const ns = target.namespace || DEFAULT_NAMESPACE;
  const prefix = target.subset ? `${target.subset}.` : '';
  if (isDefault(target.partition))
    return `${prefix}${target.service}.${ns}.${target.datacenter}.internal.${trustDomain}`;
  return `${prefix}${target.service}.${ns}.${target.partition}.${target.datacenter}.internal-v1.${trustDomain}`;
}

export function datacenterSni(datacenter: string, trustDomain: string, partition?: string): string {
  if (isDefault(partition)) return `${datacenter}.internal.${trustDomain}`;
  return `${partition}.${datacenter}.internal-v1.${trustDomain}`;
}

export function serverSni(datacenter: string, domain: string, node?: string): string {
  return node ? `${node}.server.${datacenter}.${domain}` : `server.${datacenter}.${domain}`;
}

/** The trust domain for a cluster ID (a UUID minted when the CA is bootstrapped). */
export function trustDomainFor(clusterId: string): string {
  return `${clusterId.toLowerCase()}.consul`;
}

/**
 * Parse an SNI name into what it addresses. Never throws: malformed or foreign names come back as
 * a reason (the gateway counts them as `no_route`). Matching is case-insensitive, as DNS is.
 */
export function parseSni(sni: string, ctx: SniContext): Result<ParsedSni> {
  if (sni.length === 0) return fail('empty SNI');
  if (sni.length > 253) return fail('SNI longer than 253 bytes');
  const name = sni.toLowerCase();
  const td = ctx.trustDomain.toLowerCase();
  const domain = ctx.domain.toLowerCase();

  if (name.endsWith(`.${td}`)) {
    const labels = name.slice(0, name.length - td.length - 1).split('.');
    const marker = labels.pop();
    if (marker === 'internal') {
      // [subset.]svc.ns.dc | dc
      if (labels.length === 1)
        return labelsOk({ kind: 'datacenter', datacenter: labels[0]!, partition: 'default' });
      if (labels.length === 3 || labels.length === 4) {
        const [subset, svc, ns, dc] = labels.length === 4 ? labels : [undefined, ...labels];
        return labelsOk({
          kind: 'service',
          service: svc!,
          namespace: ns!,
          partition: 'default',
          datacenter: dc!,
          subset,
        });
      }
      return fail(`"internal" SNI needs 1, 3 or 4 labels before the trust domain, got ${labels.length}`);
    }
    if (marker === 'internal-v1') {
      // [subset.]svc.ns.ap.dc | ap.dc
      if (labels.length === 2)
        return labelsOk({ kind: 'datacenter', partition: labels[0]!, datacenter: labels[1]! });
      if (labels.length === 4 || labels.length === 5) {
        const [subset, svc, ns, ap, dc] = labels.length === 5 ? labels : [undefined, ...labels];
        return labelsOk({
          kind: 'service',
          service: svc!,
          namespace: ns!,
          partition: ap!,
          datacenter: dc!,
          subset,
        });
      }
      return fail(`"internal-v1" SNI needs 2, 4 or 5 labels before the trust domain, got ${labels.length}`);
    }
    return fail(`unsupported SNI form "${marker ?? ''}" under the trust domain`);
  }

  if (name.endsWith(`.${domain}`)) {
    const labels = name.slice(0, name.length - domain.length - 1).split('.');
    if (labels.length === 2 && labels[0] === 'server')
      return labelsOk({ kind: 'server', datacenter: labels[1]!, node: undefined });
    if (labels.length === 3 && labels[1] === 'server')
      return labelsOk({ kind: 'server', node: labels[0]!, datacenter: labels[2]! });
    return fail('server SNI must be server.<dc>.<domain> or <node>.server.<dc>.<domain>');
  }

  return fail('SNI is neither under the trust domain nor the server domain');
}

function labelsOk(parsed: ParsedSni): Result<ParsedSni> {
  const checks: [NameKind, string | undefined][] =
    parsed.kind === 'service'
      ? [
          ['service', parsed.service],
          ['namespace', parsed.namespace],
          ['partition', parsed.partition],
          ['datacenter', parsed.datacenter],
          ['subset', parsed.subset],
        ]
      : parsed.kind === 'datacenter'
        ? [
            ['datacenter', parsed.datacenter],
            ['partition', parsed.partition],
          ]
        : [
            ['datacenter', parsed.datacenter],
            ['node', parsed.node],
          ];
  for (const [kind, value] of checks) {
    if (value === undefined) continue;
    const problem = nameProblem(kind, value);
    if (problem) return fail(problem);
  }
  return ok(parsed);
}

/** Build the SNI a parsed name came from (the inverse of parseSni, in canonical form). */
export function formatSni(parsed: ParsedSni, ctx: SniContext): string {
  switch (parsed.kind) {
    case 'service': {
      const target: ServiceTarget = {
        service: parsed.service,
        namespace: parsed.namespace,
        partition: parsed.partition,
        datacenter: parsed.datacenter,
      };
      if (parsed.subset !== undefined) target.subset = parsed.subset;
      return serviceSni(target, ctx.trustDomain);
    }
    case 'datacenter':
      return datacenterSni(parsed.datacenter, ctx.trustDomain, parsed.partition);
    case 'server':
      return serverSni(parsed.datacenter, ctx.domain, parsed.node);
  }
}
