// The configuration schema: every key an operator can write in a meshfed YAML file, with its
// type, default and documentation. docs/configuration.md is generated from this file
// (`npm run docs:config`); a test fails when the two disagree.
//
// Key names are snake_case like Consul's own config files, so Consul users recognise them.

import {
  address,
  bool,
  duration,
  int,
  list,
  map,
  name,
  obj,
  oneOf,
  port,
  str,
  type Infer,
} from './schema-dsl.js';

const meshGatewayMode = obj('Mesh gateway mode for cross-datacenter traffic.', {
  mode: oneOf(
    "local: through this DC's gateway, then the remote gateway; remote: straight to the remote DC's gateway; none: directly to the remote instance.",
    ['local', 'remote', 'none', ''],
    { default: '' },
  ),
});

const check = obj('A health check the server runs for this service (one of tcp, http, ttl).', {
  name: str('Check name shown in health output.', { optional: true }),
  tcp: address('host:port to open a TCP connection to.', { optional: true }),
  http: str('URL to GET; 2xx is passing, 429 warning, anything else critical.', { optional: true }),
  ttl: duration('The service must report within this interval (PUT /v1/agent/check/pass/<id>).', {
    optional: true,
  }),
  interval: duration('How often to run tcp and http checks.', { default: '10s' }),
  timeout: duration('How long one tcp or http probe may take.', { default: '5s' }),
  deregister_critical_service_after: duration(
    'Deregister the service after it has been critical this long.',
    {
      optional: true,
    },
  ),
});

const upstream = obj('A service this one calls through its sidecar.', {
  destination_name: name('Service to call.', 'service'),
  destination_namespace: name('Namespace of the destination.', 'namespace', { default: 'default' }),
  datacenter: name('Datacenter of the destination; default: the local one.', 'datacenter', {
    optional: true,
  }),
  local_bind_address: str('Address the sidecar listens on for this upstream.', { default: '127.0.0.1' }),
  local_bind_port: port('Port the sidecar listens on for this upstream; the app connects here.'),
  mesh_gateway: meshGatewayMode,
  connect_timeout: duration('Timeout for connecting to one target endpoint.', { default: '5s' }),
});

const service = obj('A service instance registered in this DC at startup.', {
  name: name('Service name.', 'service'),
  id: str('Unique instance ID; default: the name.', { optional: true }),
  address: str('Address the service listens on; default: the node address.', { optional: true }),
  port: port('Port the service listens on.'),
  tags: list('Tags.', str('A tag.')),
  meta: map('Metadata (used by service-resolver subset filters).', str('A value.')),
  check: obj('One health check.', check.fields, { optional: true }),
  checks: list('More health checks.', check),
  connect: obj('Service mesh settings.', {
    sidecar_service: obj('Register a sidecar proxy (meshfed proxy) for this service.', {
      enabled: bool('Register the sidecar. Set false to run the service outside the mesh.', {
        default: true,
      }),
      port: port('Public mTLS listener port of the sidecar; 0 picks one from 21000-21255.', { default: 0 }),
      address: str('Public listener address of the sidecar; default: the service address.', {
        optional: true,
      }),
      proxy: obj('Sidecar settings.', {
        local_service_address: str('Where the sidecar reaches the app.', { default: '127.0.0.1' }),
        local_service_port: port('Port where the sidecar reaches the app; default: the service port.', {
          optional: true,
        }),
        mesh_gateway: meshGatewayMode,
        upstreams: list('Upstreams of this service.', upstream),
      }),
    }),
  }),
});

const staticRoute = obj('A static gateway route.', {
  sni: str('SNI name, or *.suffix for every name under a suffix.'),
  targets: list('host:port endpoints; connections are balanced across them.', address('An endpoint.')),
});

export const configSchema = obj('meshfed configuration', {
  datacenter: name('Name of this datacenter. Must be unique in the federation.', 'datacenter', {
    default: 'dc1',
  }),
  primary_datacenter: name(
    'The datacenter that owns CA roots, intentions and config entries. Same value in every DC; default: this datacenter.',
    'datacenter',
    { optional: true },
  ),
  node_name: name('Name of this node (server). Default: the host name, sanitised to a DNS label.', 'node', {
    optional: true,
  }),
  data_dir: str(
    "Directory for the server's SQLite store, CA state and keys (created with owner-only permissions).",
    {
      default: './data',
    },
  ),
  domain: str("Domain of server SNI names (server.<dc>.<domain>), as Consul's `domain`.", {
    default: 'consul',
  }),
  log_level: oneOf('Log level.', ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], {
    default: 'info',
  }),
  log_json: bool('Write JSON log lines even on a terminal.', { default: false }),
  bind_addr: str('Address the server, gossip and federation listeners bind to.', { default: '127.0.0.1' }),
  advertise_addr: str('Address other servers in this DC use to reach this one; default: bind_addr.', {
    optional: true,
  }),
  advertise_addr_wan: str('Address servers in other DCs use to reach this one; default: advertise_addr.', {
    optional: true,
  }),
  client_addr: str('Address the HTTP API binds to. Non-loopback requires tls.http.', {
    default: '127.0.0.1',
  }),

  ports: obj('Ports.', {
    http: port('HTTP API (Consul-compatible).', { default: 8500 }),
    server: port('Server-to-server federation channel (WebSocket over mTLS).', { default: 8300 }),
    serf_wan: port('WAN gossip pool (UDP and TCP).', { default: 8302 }),
  }),

  tls: obj("TLS for the HTTP API. Federation and the mesh always use certificates from meshfed's own CA.", {
    http: obj('Serve the HTTP API over TLS (required when client_addr is not loopback).', {
      cert_file: str('PEM certificate for the HTTP API.', { optional: true }),
      key_file: str('PEM private key for the HTTP API.', { optional: true }),
      ca_file: str('PEM CA bundle clients are verified against (enables client-certificate checking).', {
        optional: true,
      }),
    }),
  }),

  ca: obj(
    'The federated CA. Read at first start of the primary; later changes go through `meshfed ca config set`.',
    {
      private_key_type: oneOf('Key type of CA keys (leaves are always EC P-256).', ['ec', 'rsa', 'ed25519'], {
        default: 'ec',
      }),
      private_key_bits: int('Key size: 256 or 384 for ec, 2048 or 4096 for rsa.', { default: 256 }),
      leaf_cert_ttl: duration('Lifetime of service leaf certificates (1h to 1 year).', {
        default: '72h',
        minMs: 3_600_000,
        maxMs: 8760 * 3_600_000,
      }),
      intermediate_cert_ttl: duration("Lifetime of secondary DCs' intermediates; renewed at half-life.", {
        default: '8760h',
      }),
      root_cert_ttl: duration('Lifetime of a root certificate.', { default: '87600h' }),
      csr_max_per_second: int('CSR signing rate limit (0 disables).', { default: 1000, min: 0 }),
      csr_max_concurrent: int('Concurrent CSR signings (0 disables).', { default: 0, min: 0 }),
    },
  ),

  intentions: obj('Authorization between services.', {
    default_policy: oneOf(
      'What happens when no intention matches a (source, destination) pair.',
      ['allow', 'deny'],
      {
        default: 'deny',
      },
    ),
    cut_denied_connections: bool(
      'Close established connections when an intention changes to deny (Consul keeps them).',
      {
        default: false,
      },
    ),
  }),

  acl: obj('Access control for the HTTP API.', {
    enabled: bool('Require a token for writes (and for reads with default_policy deny).', {
      default: false,
    }),
    default_policy: oneOf(
      'Reads without a token: allow (as Consul) or deny. The CA roots are always readable.',
      ['allow', 'deny'],
      { default: 'allow' },
    ),
    tokens: obj('Tokens. Never logged.', {
      management: str('Token with full access.', { optional: true, secret: true }),
      agent: str("Token this node's own processes (gateway, sidecars) use: reads and /v1/agent/ writes.", {
        optional: true,
        secret: true,
      }),
    }),
  }),

  gossip: obj('The WAN gossip pool of all servers (memberlist/Serf wire protocol).', {
    profile: oneOf(
      'Timing profile: wan for real deployments, lan, or local for loopback tests.',
      ['wan', 'lan', 'local'],
      {
        default: 'wan',
      },
    ),
    encrypt: str('Base64 32-byte gossip key (meshfed keygen). Empty: gossip unencrypted.', {
      optional: true,
      secret: true,
    }),
    join: list('Addresses of WAN pool members to join at start (retried with backoff).', str('host[:port]')),
    retry_interval: duration('Wait between join attempts.', { default: '30s' }),
    retry_max: int('Join attempts before giving up (0: forever).', { default: 0, min: 0 }),
  }),

  federation: obj('How this DC joins the federation.', {
    primary_gateways: list(
      'Mesh gateway addresses of the primary DC, used to reach it before federation states are known.',
      address('host:port'),
    ),
    primary_address: address(
      "Address of a primary server's federation port, when not reaching it through gateways.",
      {
        optional: true,
      },
    ),
    join_token: str('One-time join token from `meshfed federation token create`, for unattended start.', {
      optional: true,
      secret: true,
    }),
  }),

  gateway: obj('The mesh gateway of this DC (`meshfed gateway`).', {
    name: name('Service name the gateway registers under.', 'service', { default: 'mesh-gateway' }),
    listen: address('Address the gateway accepts TLS connections on.', { default: '0.0.0.0:8443' }),
    lan_address: address(
      'Address local sidecars use to reach the gateway; default: listen (0.0.0.0 → bind_addr).',
      {
        optional: true,
      },
    ),
    wan_address: address('Address other DCs use to reach this gateway; default: lan_address.', {
      optional: true,
    }),
    admin: address('Admin listener: /metrics, /ready, /routes. Keep it on loopback.', {
      default: '127.0.0.1:19100',
    }),
    workers: int(
      'Worker processes sharing the listener; 0 = one per CPU core (measure first: on a busy 2-core machine 1 was as fast).',
      {
        default: 1,
        min: 0,
      },
    ),
    expose_servers: bool('Carry server-to-server federation traffic (server SNI names).', { default: true }),
    register: bool('Register the gateway in the catalog (kind mesh-gateway) with a health check.', {
      default: true,
    }),
    static_routes: list('Static routes, in addition to (or instead of) the catalog.', staticRoute),
    limits: obj('Protection against broken and hostile clients.', {
      hello_timeout: duration('Time a client has to send a complete ClientHello.', { default: '10s' }),
      max_hello_bytes: int('Largest ClientHello accepted.', { default: 16384, min: 512 }),
      idle_timeout: duration('Close a connection idle this long in both directions.', { default: '1h' }),
      connect_timeout: duration('Timeout connecting to one upstream endpoint.', { default: '5s' }),
      max_connections: int('Connections at once (all clients).', { default: 10000, min: 1 }),
      max_connections_per_ip: int('Connections at once from one client IP.', { default: 1000, min: 1 }),
      drain_timeout: duration('On SIGTERM, how long established connections may finish.', { default: '30s' }),
    }),
  }),

  proxy: obj('Sidecar proxies started with `meshfed proxy` on this node.', {
    admin_port_base: port('Admin (metrics) port of the first sidecar; 0 disables.', { default: 0 }),
  }),

  services: list('Service instances to register in this DC when the server starts.', service),
});

export type MeshfedConfig = Infer<typeof configSchema>;
export type ServiceConfig = Infer<typeof service>;
export type UpstreamConfig = Infer<typeof upstream>;
export type CheckConfig = Infer<typeof check>;
