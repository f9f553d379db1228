// Intentions in Consul's legacy-API shape (`/v1/connect/intentions...`), stored under `intentions`
// keyed by ID, one per source/destination pair. Decisions use @meshfed/core's precedence table over
// these rows plus the Sources of service-intentions config entries, so both ways of writing an
// intention govern traffic.

import { randomUUID } from 'node:crypto';
import {
  decideIntention,
  intentionPrecedence,
  sortIntentions,
  type IntentionAction,
  type IntentionDecision,
  type IntentionRule,
} from '@meshfed/core';
import type { Store, StoredRow } from '@meshfed/store';
import { T_CONFIG, validateActionOrPermissions } from './config-entries.js';
import { bad, name, obj, optStr, optStrMap, type Json } from './validate.js';

export const T_INTENTIONS = 'intentions';

export interface IntentionValue {
  ID: string;
  Description: string;
  SourceNS: string;
  SourceName: string;
  DestinationNS: string;
  DestinationName: string;
  SourceType: 'consul';
  Action?: IntentionAction;
  Permissions?: unknown[];
  Precedence: number;
  Meta: Record<string, string>;
  CreatedAt: string;
  UpdatedAt: string;
}

export interface Endpoint {
  namespace: string;
  name: string;
}

/** `name`, `ns/name` or `partition/ns/name` (partition must be default) → endpoint. */
export function parseEndpoint(v: unknown, field: string): Endpoint {
  if (typeof v !== 'string' || v === '')
    throw bad(field, 'expected a service name like "web" or "default/web"');
  const parts = v.split('/');
  if (parts.length > 3) throw bad(field, `too many "/" in "${v}"`);
  const svc = parts[parts.length - 1]!;
  const ns = parts.length >= 2 ? parts[parts.length - 2]! : 'default';
  if (parts.length === 3 && parts[0] !== 'default' && parts[0] !== '')
    throw bad(field, `partition "${parts[0]}" is not supported (only "default")`);
  if (ns !== '*') name('namespace', ns, field);
  if (svc !== '*') name('service', svc, field);
  if (ns === '*' && svc !== '*') throw bad(field, 'a wildcard namespace needs a wildcard name ("*/*")');
  return { namespace: ns, name: svc };
}

export function toRule(v: IntentionValue): IntentionRule {
  return {
    id: v.ID,
    source: { namespace: v.SourceNS, name: v.SourceName },
    destination: { namespace: v.DestinationNS, name: v.DestinationName },
    action: v.Action,
    hasPermissions: Array.isArray(v.Permissions) && v.Permissions.length > 0,
  };
}

export type IntentionOut = IntentionValue & { CreateIndex: number; ModifyIndex: number };

export class Intentions {
  constructor(
    private readonly store: Store,
    private readonly clock: { now(): number },
  ) {}

  /**
   * Every intention, highest precedence first: the intentions table plus the sources of
   * `service-intentions` config entries (Consul stores intentions as those entries; either way of
   * writing one must govern traffic and show up in list/match).
   */
  all(): IntentionOut[] {
    const rows: IntentionOut[] = this.store.list<IntentionValue>(T_INTENTIONS).map((r) => ({
      ...r.value,
      CreateIndex: r.createIndex,
      ModifyIndex: r.modifyIndex,
    }));
    for (const r of this.store.list<Json>(T_CONFIG, { prefix: 'service-intentions/' })) {
      const e = r.value;
      const dst = { namespace: (e['Namespace'] as string) || 'default', name: e['Name'] as string };
      for (const [i, src] of ((e['Sources'] as Json[]) ?? []).entries()) {
        const source = { namespace: (src['Namespace'] as string) || 'default', name: src['Name'] as string };
        const perms = src['Permissions'];
        rows.push({
          ID: `config:${dst.name}:${i}`,
          Description: (src['Description'] as string) ?? '',
          SourceNS: source.namespace,
          SourceName: source.name,
          DestinationNS: dst.namespace,
          DestinationName: dst.name,
          SourceType: 'consul',
          Precedence: intentionPrecedence({ source, destination: dst }),
          Meta: {},
          CreatedAt: '',
          UpdatedAt: '',
          ...(src['Action'] ? { Action: src['Action'] as IntentionAction } : {}),
          ...(Array.isArray(perms) && perms.length > 0 ? { Permissions: perms } : {}),
          CreateIndex: r.createIndex,
          ModifyIndex: r.modifyIndex,
        });
      }
    }
    const byId = new Map(rows.map((r) => [r.ID, r]));
    return sortIntentions(rows.map(toRule)).map((r) => byId.get(r.id)!);
  }

  get(id: string): StoredRow<IntentionValue> | undefined {
    return this.store.get<IntentionValue>(T_INTENTIONS, id);
  }

  findExact(src: Endpoint, dst: Endpoint): StoredRow<IntentionValue> | undefined {
    return this.store
      .list<IntentionValue>(T_INTENTIONS)
      .find(
        (r) =>
          r.value.SourceNS === src.namespace &&
          r.value.SourceName === src.name &&
          r.value.DestinationNS === dst.namespace &&
          r.value.DestinationName === dst.name,
      );
  }

  /** Build a validated intention value from a body; src/dst from the body or the query string. */
  build(
    body: unknown,
    existing: IntentionValue | undefined,
    ends?: { src: Endpoint; dst: Endpoint },
  ): IntentionValue {
    const b = obj(body, 'body');
    const src: Endpoint = ends?.src ?? {
      namespace: optStr(b['SourceNS'], 'SourceNS') || 'default',
      name: typeof b['SourceName'] === 'string' ? b['SourceName'] : '',
    };
    const dst: Endpoint = ends?.dst ?? {
      namespace: optStr(b['DestinationNS'], 'DestinationNS') || 'default',
      name: typeof b['DestinationName'] === 'string' ? b['DestinationName'] : '',
    };
    if (!ends) {
      parseEndpoint(`${src.namespace}/${src.name}`, 'SourceName');
      parseEndpoint(`${dst.namespace}/${dst.name}`, 'DestinationName');
    }
    const st = optStr(b['SourceType'], 'SourceType');
    if (st !== undefined && st !== '' && st !== 'consul')
      throw bad('SourceType', `only "consul" is supported, got "${st}"`);
    validateActionOrPermissions(b, 'body');
    const nowIso = new Date(this.clock.now()).toISOString();
    const v: IntentionValue = {
      ID: existing?.ID ?? randomUUID(),
      Description: optStr(b['Description'], 'Description') ?? '',
      SourceNS: src.namespace,
      SourceName: src.name,
      DestinationNS: dst.namespace,
      DestinationName: dst.name,
      SourceType: 'consul',
      Precedence: intentionPrecedence({ source: src, destination: dst }),
      Meta: optStrMap(b['Meta'], 'Meta') ?? {},
      CreatedAt: existing?.CreatedAt ?? nowIso,
      UpdatedAt: nowIso,
    };
    if (b['Action'] !== undefined && b['Action'] !== null && b['Action'] !== '')
      v.Action = b['Action'] as IntentionAction;
    if (Array.isArray(b['Permissions']) && b['Permissions'].length > 0)
      v.Permissions = b['Permissions'] as unknown[];
    return v;
  }

  /** Every rule that governs traffic: intentions plus service-intentions config entry sources. */
  rules(): IntentionRule[] {
    const rules = this.store.list<IntentionValue>(T_INTENTIONS).map((r) => toRule(r.value));
    for (const r of this.store.list<Json>(T_CONFIG, { prefix: 'service-intentions/' })) {
      const e = r.value;
      const dst = { namespace: (e['Namespace'] as string) || 'default', name: e['Name'] as string };
      for (const [i, s] of ((e['Sources'] as Json[]) ?? []).entries()) {
        const perms = s['Permissions'];
        rules.push({
          id: `config:${dst.name}:${i}`,
          source: { namespace: (s['Namespace'] as string) || 'default', name: s['Name'] as string },
          destination: dst,
          action: s['Action'] as IntentionAction | undefined,
          hasPermissions: Array.isArray(perms) && perms.length > 0,
        });
      }
    }
    return rules;
  }

  decide(src: Endpoint, dst: Endpoint, defaultPolicy: IntentionAction): IntentionDecision {
    return decideIntention(this.rules(), src, dst, defaultPolicy);
  }

  /** GET /v1/connect/intentions/match: intentions whose source (or destination) pattern matches. */
  match(by: 'source' | 'destination', ep: Endpoint): IntentionOut[] {
    return this.all().filter((v) => {
      const ns = by === 'source' ? v.SourceNS : v.DestinationNS;
      const n = by === 'source' ? v.SourceName : v.DestinationName;
      return (ns === '*' || ns === ep.namespace) && (n === '*' || n === ep.name);
    });
  }
}
