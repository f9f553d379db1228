// The meshfed sidecar as the "product" pair of /work/shared/bench/sidecar (see its README,
// "Measuring the product sidecar"). It runs the real MeshProxy — the same listeners, handshake
// checks, intentions decision, target resolver and byte relay as `meshfed proxy` — with a static
// ProxyDataSources built from the harness's BENCH_* variables instead of a server's HTTP API.
//   BENCH_ROLE=out: upstream "counting" on BENCH_LISTEN, its one instance at BENCH_UPSTREAM.
//   BENCH_ROLE=in : public listener on BENCH_LISTEN, local app at BENCH_UPSTREAM.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Registry, createLogger, systemClock } from '@meshfed/core';
import { MeshProxy, spiffeIdFromSan } from '@meshfed/proxy';

const env = process.env;
const hp = (v) => {
  const i = v.lastIndexOf(':');
  return { host: v.slice(0, i), port: Number(v.slice(i + 1)) };
};
const role = env.BENCH_ROLE;
const listen = hp(env.BENCH_LISTEN);
const upstream = hp(env.BENCH_UPSTREAM);
const certPem = readFileSync(env.BENCH_CERT, 'utf8');
const x = new X509Certificate(certPem);
const id = spiffeIdFromSan(x.subjectAltName);
if (!id.ok || id.value.kind !== 'service')
  throw new Error(`BENCH_CERT has no service SPIFFE ID: ${id.reason}`);
const me = id.value;
const peer = spiffeIdFromSan(`URI:${env.BENCH_PEER_SPIFFE_ID}`);
if (!peer.ok || peer.value.kind !== 'service') throw new Error('BENCH_PEER_SPIFFE_ID is not a service ID');

const leaf = {
  SerialNumber: x.serialNumber,
  CertPEM: certPem,
  PrivateKeyPEM: readFileSync(env.BENCH_KEY, 'utf8'),
  Service: me.service,
  ServiceURI: `spiffe://${me.trustDomain}/ns/${me.namespace}/dc/${me.datacenter}/svc/${me.service}`,
  ValidAfter: new Date(x.validFrom).toISOString(),
  ValidBefore: new Date(x.validTo).toISOString(),
};
const roots = {
  ActiveRootID: 'bench',
  TrustDomain: me.trustDomain,
  Roots: [{ ID: 'bench', RootCert: readFileSync(env.BENCH_CA, 'utf8'), Active: true }],
};
const proxyId = `${me.service}-sidecar-proxy`;
const reg =
  role === 'in'
    ? {
        ID: proxyId,
        Service: proxyId,
        Kind: 'connect-proxy',
        Address: listen.host,
        Port: listen.port,
        Proxy: {
          DestinationServiceName: me.service,
          LocalServiceAddress: upstream.host,
          LocalServicePort: upstream.port,
        },
      }
    : {
        ID: proxyId,
        Service: proxyId,
        Kind: 'connect-proxy',
        Address: '127.0.0.1',
        Port: 0, // public listener unused by the benchmark: any free port
        Proxy: {
          DestinationServiceName: me.service,
          Upstreams: [
            {
              DestinationName: peer.value.service,
              LocalBindAddress: listen.host,
              LocalBindPort: listen.port,
            },
          ],
        },
      };
const instance = {
  Node: { Node: 'bench', Address: upstream.host },
  Service: {
    ID: 'b',
    Service: `${peer.value.service}-sidecar-proxy`,
    Address: upstream.host,
    Port: upstream.port,
  },
  Checks: [{ Status: 'passing' }],
};
const sources = {
  localDatacenter: async () => me.datacenter,
  findSidecarFor: async () => reg,
  watchRegistration: (_id, on) => on(reg),
  watchLeaf: (_s, on) => on(leaf),
  fetchLeaf: async () => leaf,
  watchRoots: (on) => on(roots),
  watchIntentions: (_d, on) => on([]),
  watchConnectHealth: (_s, _dc, on) => on([instance]),
  watchMeshGateways: (_dc, _l, on) => on([]),
  watchConfigEntry: (_k, _n, on) => on(undefined),
  registerProxy: async () => undefined,
};
const logger = createLogger({ level: 'warn', pretty: false, destination: process.stderr });
const proxy = new MeshProxy(
  {
    proxyId,
    datacenter: me.datacenter,
    defaultIntentionPolicy: 'allow',
    tlsMinVersion: 'TLSv1.3',
    // A resumes only when the harness runs with --resume (its checks require full handshakes
    // otherwise). B (inbound) issues session tickets like the HAProxy pair's B does (two per
    // connection; its config has no `no-tls-tickets`), so both pairs do the same work per
    // connection; MESHFED_BENCH_B_TICKETS=0 measures B without tickets (sessionResumption: false).
    sessionResumption: env.BENCH_RESUME === '1' || (role === 'in' && env.MESHFED_BENCH_B_TICKETS !== '0'),
  },
  { logger, clock: systemClock, registry: new Registry(), sources },
);
await proxy.start();
const stop = () => proxy.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
const parent = Number(env.BENCH_PARENT_PID);
if (parent > 0)
  setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      void stop();
    }
  }, 1000).unref();
