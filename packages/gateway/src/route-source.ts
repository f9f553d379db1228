// Where routing tables come from. The gateway declares this interface; the catalog-backed source
// (catalog-route-source.ts) and static routes implement it, and a server could implement it in
// process. A source calls `onTable` with a complete table each time something changes.

import { RouteTable, parseStaticRoute, type RouteSpec } from './routes.js';

export interface RouteSource {
  start(onTable: (table: RouteTable) => void): Promise<void>;
  close(): Promise<void>;
}

/** Fixed routes from `--static-route` strings (or already-parsed specs). */
export class StaticRouteSource implements RouteSource {
  readonly specs: RouteSpec[];
  constructor(routes: readonly (string | RouteSpec)[], datacenter = 'local') {
    this.specs = routes.map((r) => (typeof r === 'string' ? parseStaticRoute(r, datacenter) : r));
  }
  async start(onTable: (table: RouteTable) => void): Promise<void> {
    onTable(new RouteTable(this.specs));
  }
  async close(): Promise<void> {}
}

/** Static routes first (they win on the same name), then whatever the other source says. */
export class CombinedRouteSource implements RouteSource {
  private tables: RouteTable[];
  constructor(private readonly sources: readonly RouteSource[]) {
    this.tables = sources.map(() => RouteTable.empty);
  }
  async start(onTable: (table: RouteTable) => void): Promise<void> {
    await Promise.all(
      this.sources.map((s, i) =>
        s.start((t) => {
          this.tables[i] = t;
          const td = this.tables.find((x) => x.trustDomain)?.trustDomain;
          onTable(
            new RouteTable(
              this.tables.flatMap((x) => x.routes),
              td,
            ),
          );
        }),
      ),
    );
  }
  async close(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.close()));
  }
}
