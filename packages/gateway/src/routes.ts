// The routing table: SNI name → route class, datacenter and endpoints. A table is immutable once
// built; the gateway swaps the whole table when its source changes, so a connection routes against
// one consistent table and established connections are never touched.
//
// Lookup is an exact match first, then suffix matches (`*.dc2.internal.<td>`) from the longest
// suffix to the shortest: O(labels) map lookups, no regexes, no per-connection allocation beyond
// the suffix slices.

import { MeshError, parseHostPort, formatHostPort, type HostPort } from '@meshfed/core';

/** Bounded set: metric label. */
export type RouteClass = 'remote_dc' | 'remote_server' | 'local_server' | 'local_service' | 'static';

export interface RouteSpec {
  /** An exact SNI name, or `*.suffix` for every name under the suffix. Lowercase. */
  match: string;
  class: RouteClass;
  /** Datacenter the route leads to (metric label); static routes use the gateway's own. */
  datacenter: string;
  endpoints: HostPort[];
}

export interface Route extends RouteSpec {
  /** Round-robin cursor, per table (a new table starts over: harmless). */
  rr: number;
}

export class RouteTable {
  private readonly exact = new Map<string, Route>();
  private readonly suffix = new Map<string, Route>(); // key: ".suffix"
  readonly routes: readonly Route[];

  constructor(
    specs: readonly RouteSpec[],
    /** Trust domain the table was built for (undefined for static-only tables). */
    readonly trustDomain?: string,
  ) {
    const routes: Route[] = [];
    for (const s of specs) {
      const match = s.match.toLowerCase();
      const route: Route = { ...s, match, endpoints: [...s.endpoints], rr: 0 };
      if (match.startsWith('*.')) {
        if (!this.suffix.has(match.slice(1))) this.suffix.set(match.slice(1), route);
        else continue;
      } else if (!this.exact.has(match)) this.exact.set(match, route);
      else continue;
      routes.push(route);
    }
    this.routes = routes;
  }

  static empty = new RouteTable([]);

  get size(): number {
    return this.routes.length;
  }

  /** The route for a (lowercase) SNI name, or undefined. */
  lookup(sni: string): Route | undefined {
    const hit = this.exact.get(sni);
    if (hit) return hit;
    if (this.suffix.size === 0) return undefined;
    for (let i = sni.indexOf('.'); i !== -1; i = sni.indexOf('.', i + 1)) {
      const r = this.suffix.get(sni.slice(i));
      if (r) return r;
    }
    return undefined;
  }

  /** Plain JSON for /routes and `meshfed gateway routes --json`. */
  toJSON(): RouteJson[] {
    return this.routes.map((r) => ({
      match: r.match,
      class: r.class,
      datacenter: r.datacenter,
      endpoints: r.endpoints.map(formatHostPort),
    }));
  }
}

export interface RouteJson {
  match: string;
  class: RouteClass;
  datacenter: string;
  endpoints: string[];
}

/**
 * Parse `--static-route '<sni or *.suffix>=<host:port>[,<host:port>...]'`. Throws
 * MESH_ERR_GATEWAY_ROUTE_INVALID with what was wrong.
 */
export function parseStaticRoute(text: string, datacenter = 'local'): RouteSpec {
  const eq = text.indexOf('=');
  const bad = (why: string): MeshError =>
    new MeshError('MESH_ERR_GATEWAY_ROUTE_INVALID', `static route "${text}": ${why}`, {
      details: { route: text },
    });
  if (eq <= 0) throw bad('expected <sni or *.suffix>=<host:port>[,<host:port>...]');
  const match = text.slice(0, eq).trim().toLowerCase();
  const name = match.startsWith('*.') ? match.slice(2) : match;
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(name) || name.length > 253)
    throw bad(`"${match}" is not a host name or *.suffix`);
  const targets = text
    .slice(eq + 1)
    .split(',')
    .map((t) => t.trim());
  if (targets.length === 0 || targets.some((t) => t === '')) throw bad('empty endpoint');
  const endpoints = targets.map((t) => {
    const hp = parseHostPort(t);
    if (!hp.ok) throw bad(hp.reason);
    if (hp.value.port === 0) throw bad(`endpoint ${t} has port 0`);
    return hp.value;
  });
  return { match, class: 'static', datacenter, endpoints };
}
