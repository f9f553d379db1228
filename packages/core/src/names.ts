// Names of datacenters, services, namespaces, partitions, subsets and nodes.
//
// Every one of them is placed as a single label in an SNI name (`api.default.dc2.internal.<td>`),
// and SNI names are positional, so a name must be exactly one DNS label: lowercase letters, digits
// and hyphens, starting and ending with a letter or digit, at most 63 bytes. A dot would shift
// every label after it; uppercase would be folded by TLS stacks and break exact matches.

import { MeshError, type Result } from './errors.js';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type Datacenter = Brand<string, 'Datacenter'>;
export type ServiceName = Brand<string, 'ServiceName'>;
export type Namespace = Brand<string, 'Namespace'>;
export type Partition = Brand<string, 'Partition'>;
export type SubsetName = Brand<string, 'SubsetName'>;
export type NodeName = Brand<string, 'NodeName'>;

export type NameKind = 'datacenter' | 'service' | 'namespace' | 'partition' | 'subset' | 'node';

export const DEFAULT_NAMESPACE = 'default' as Namespace;
export const DEFAULT_PARTITION = 'default' as Partition;
export const MAX_LABEL_BYTES = 63;

/**
 * Why `value` is not a valid single-label name, or undefined when it is.
 * The reason is written for the operator: it says which character, where, and what is allowed.
 */
export function nameProblem(kind: NameKind, value: unknown): string | undefined {
  if (typeof value !== 'string') return `${kind} name must be a string, got ${describeType(value)}`;
  if (value.length === 0) return `${kind} name must not be empty`;
  if (Buffer.byteLength(value) > MAX_LABEL_BYTES)
    return `${kind} name "${truncate(value)}" is ${Buffer.byteLength(value)} bytes; the limit is ${MAX_LABEL_BYTES} (one DNS label)`;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    const lower = c >= 97 && c <= 122;
    const digit = c >= 48 && c <= 57;
    if (lower || digit) continue;
    const ch = value[i];
    if (ch === '-') {
      if (i === 0 || i === value.length - 1)
        return `${kind} name "${value}" must start and end with a letter or digit, not "-"`;
      continue;
    }
    if (ch === '.')
      return `${kind} name "${value}" contains "." at position ${i + 1}; names are single DNS labels because SNI names are positional`;
    if (c >= 65 && c <= 90) {
      const lower = value.toLowerCase();
      const hint = nameProblem(kind, lower) === undefined ? ` (${lower})` : '';
      return `${kind} name "${value}" contains uppercase "${ch}" at position ${i + 1}; names are lowercase${hint}`;
    }
    return `${kind} name "${value}" contains "${ch}" at position ${i + 1}; allowed are a-z, 0-9 and "-"`;
  }
  return undefined;
}

export function isValidName(kind: NameKind, value: unknown): boolean {
  return nameProblem(kind, value) === undefined;
}

export function checkName(kind: NameKind, value: unknown): Result<string> {
  const problem = nameProblem(kind, value);
  return problem === undefined ? { ok: true, value: value as string } : { ok: false, reason: problem };
}

function assertName(kind: NameKind, value: unknown): string {
  const problem = nameProblem(kind, value);
  if (problem !== undefined) throw new MeshError('MESH_ERR_NAME_INVALID', problem, { details: { kind } });
  return value as string;
}

export const datacenter = (v: unknown): Datacenter => assertName('datacenter', v) as Datacenter;
export const serviceName = (v: unknown): ServiceName => assertName('service', v) as ServiceName;
export const namespace = (v: unknown): Namespace => assertName('namespace', v) as Namespace;
export const partition = (v: unknown): Partition => assertName('partition', v) as Partition;
export const subsetName = (v: unknown): SubsetName => assertName('subset', v) as SubsetName;
export const nodeName = (v: unknown): NodeName => assertName('node', v) as NodeName;

export function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `the string "${truncate(value)}"`;
  return `${typeof value} ${String(value)}`;
}

function truncate(s: string, max = 40): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}
