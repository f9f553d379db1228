// The one table of meshfed's error codes. A code is stable: callers (and peers across the wire)
// branch on it, never on message text. Each entry says what happened and, where the operator can do
// something, what to do. `status` is the HTTP status the API answers with when the error reaches it.
//
// Add codes in the section of your area; never change or reuse an existing code's meaning.

export interface ErrorCodeSpec {
  /** Short description of the failure, used when no message is given. */
  readonly message: string;
  /** HTTP status the API maps this error to. */
  readonly status: number;
}

export const errorCodes = {
  // --- generic -------------------------------------------------------------------------------
  MESH_ERR_INTERNAL: { message: 'internal error', status: 500 },
  MESH_ERR_INVALID_ARGUMENT: { message: 'invalid argument', status: 400 },
  MESH_ERR_TIMEOUT: { message: 'operation timed out', status: 504 },
  MESH_ERR_CLOSED: { message: 'component is closed', status: 503 },
  MESH_ERR_UNAVAILABLE: { message: 'service unavailable', status: 503 },

  // --- names and identities (core) -----------------------------------------------------------
  MESH_ERR_NAME_INVALID: { message: 'invalid name', status: 400 },
  MESH_ERR_SNI_INVALID: { message: 'invalid SNI name', status: 400 },
  MESH_ERR_SPIFFE_INVALID: { message: 'invalid SPIFFE ID', status: 400 },
  MESH_ERR_ADDRESS_INVALID: { message: 'invalid address', status: 400 },
  MESH_ERR_DURATION_INVALID: { message: 'invalid duration', status: 400 },

  // --- frame codec (core) --------------------------------------------------------------------
  MESH_ERR_FRAME_TOO_LARGE: { message: 'frame exceeds the maximum size', status: 413 },
  MESH_ERR_FRAME_DECODE: { message: 'frame does not decode', status: 400 },
  MESH_ERR_FRAME_VERSION: { message: 'unsupported frame version', status: 400 },

  // --- configuration -------------------------------------------------------------------------
  MESH_ERR_CONFIG_INVALID: { message: 'invalid configuration', status: 400 },
  MESH_ERR_CONFIG_READ: { message: 'cannot read configuration file', status: 400 },

  // --- store ---------------------------------------------------------------------------------
  MESH_ERR_STORE_OPEN: { message: 'cannot open the data store', status: 500 },
  MESH_ERR_STORE_MIGRATION: { message: 'data store schema migration failed', status: 500 },
  MESH_ERR_STORE_CAS_FAILED: { message: 'check-and-set index did not match', status: 409 },
  MESH_ERR_STORE_NOT_FOUND: { message: 'not found', status: 404 },

  // --- HTTP API ------------------------------------------------------------------------------
  MESH_ERR_API_BAD_REQUEST: { message: 'bad request', status: 400 },
  MESH_ERR_API_NOT_FOUND: { message: 'not found', status: 404 },
  MESH_ERR_API_METHOD_NOT_ALLOWED: { message: 'method not allowed', status: 405 },
  MESH_ERR_API_PERMISSION_DENIED: {
    message: 'Permission denied: token with insufficient privileges',
    status: 403,
  },
  MESH_ERR_API_BODY_TOO_LARGE: { message: 'request body too large', status: 413 },
  MESH_ERR_API_CONFLICT: { message: 'conflict', status: 409 },

  // --- CA ------------------------------------------------------------------------------------
  MESH_ERR_CA_NOT_INITIALIZED: { message: 'the CA has no active root yet', status: 503 },
  MESH_ERR_CA_CSR_INVALID: { message: 'certificate signing request is invalid', status: 400 },
  MESH_ERR_CA_CSR_FORBIDDEN: { message: 'the caller may not request this identity', status: 403 },
  MESH_ERR_CA_RATE_LIMITED: { message: 'CSR signing rate limit reached, retry later', status: 429 },
  MESH_ERR_CA_CHAIN_INVALID: { message: 'certificate chain does not verify', status: 400 },
  MESH_ERR_CA_ROTATION_REFUSED: { message: 'CA rotation refused', status: 400 },
  MESH_ERR_CA_CONFIG_INVALID: { message: 'invalid CA configuration', status: 400 },

  // --- gossip --------------------------------------------------------------------------------
  MESH_ERR_GOSSIP_PACKET: { message: 'gossip packet rejected', status: 400 },
  MESH_ERR_GOSSIP_KEY: { message: 'gossip encryption key invalid', status: 400 },
  MESH_ERR_GOSSIP_JOIN: { message: 'could not join the gossip pool', status: 502 },
  MESH_ERR_GOSSIP_QUERY: { message: 'gossip query failed', status: 502 },

  // --- gateway -------------------------------------------------------------------------------
  MESH_ERR_GATEWAY_ROUTE_INVALID: { message: 'invalid gateway route', status: 400 },
  MESH_ERR_GATEWAY_LISTEN: { message: 'gateway cannot listen', status: 500 },

  // --- proxy ---------------------------------------------------------------------------------
  MESH_ERR_PROXY_REGISTRATION: { message: 'sidecar registration not usable', status: 400 },
  MESH_ERR_PROXY_NO_TARGET: { message: 'no healthy target for upstream', status: 503 },

  // --- federation ----------------------------------------------------------------------------
  MESH_ERR_FED_TOKEN_INVALID: { message: 'join token is invalid', status: 403 },
  MESH_ERR_FED_TOKEN_USED: { message: 'join token was already used', status: 403 },
  MESH_ERR_FED_TOKEN_EXPIRED: { message: 'join token has expired', status: 403 },
  MESH_ERR_FED_TOKEN_REVOKED: { message: 'join token was revoked', status: 403 },
  MESH_ERR_FED_PRIMARY_UNREACHABLE: { message: 'the primary datacenter is unreachable', status: 502 },
  MESH_ERR_FED_NOT_PRIMARY: { message: 'this datacenter is not the primary', status: 400 },
  MESH_ERR_FED_DC_UNKNOWN: { message: 'unknown datacenter', status: 404 },
  MESH_ERR_FED_JOIN_CONFLICT: { message: 'joining would discard local data', status: 409 },
  MESH_ERR_FED_PEER_REJECTED: { message: 'federation peer rejected', status: 403 },
  // --- CA (packages/ca, issue 3) -------------------------------------------------------------
  MESH_ERR_CA_IDENTITY_DENIED: { message: 'the requested certificate identity is not allowed', status: 403 },
  MESH_ERR_CA_UNTRUSTED: { message: 'certificate does not chain to a trusted root', status: 400 },
  MESH_ERR_CA_CERT_EXPIRED: { message: 'certificate has expired', status: 400 },
  MESH_ERR_CA_CERT_NOT_YET_VALID: { message: 'certificate is not yet valid', status: 400 },
  MESH_ERR_CA_TRUST_DOMAIN: { message: 'certificate is not in the expected trust domain', status: 400 },
  MESH_ERR_CA_NAME_CONSTRAINT: {
    message: 'certificate name is outside the issuer name constraint',
    status: 400,
  },
  MESH_ERR_CA_NOT_PRIMARY: { message: 'this CA operation needs the primary datacenter', status: 400 },
  MESH_ERR_CA_NO_INTERMEDIATE: {
    message: 'this secondary datacenter has no intermediate CA yet',
    status: 503,
  },
  MESH_ERR_CA_STATE: { message: 'CA state cannot be loaded or saved', status: 500 },
  // --- server (catalog, health, intentions, config entries, HTTP API) -------------------------
  MESH_ERR_SERVER_DC_UNKNOWN: { message: 'no path to datacenter', status: 404 },
  MESH_ERR_SERVER_CA_NOT_READY: { message: 'the CA is not available on this server yet', status: 503 },
  MESH_ERR_SERVER_TLS_REQUIRED: {
    message: 'the HTTP API binds to a non-loopback address and needs http.tls',
    status: 400,
  },
  MESH_ERR_SERVER_CHECK_NOT_FOUND: { message: 'unknown check ID', status: 404 },
  MESH_ERR_SERVER_SERVICE_NOT_FOUND: { message: 'unknown service ID', status: 404 },

  // --- federation channel and replication ----------------------------------------------------
  MESH_ERR_FED_UNKNOWN_MESSAGE: { message: 'unknown federation message kind', status: 400 },
  MESH_ERR_FED_CHANNEL_CLOSED: {
    message: 'the federation channel to that datacenter is closed',
    status: 503,
  },
  MESH_ERR_FED_TIMEOUT: { message: 'the federation peer did not answer in time', status: 504 },
  MESH_ERR_FED_REPLICATION: { message: 'replication batch rejected', status: 500 },
  MESH_ERR_FED_PIN_MISMATCH: {
    message: "the primary's CA does not match the join token's fingerprint",
    status: 403,
  },

  // --- proxy: sidecar target choice ----------------------------------------------------------
  MESH_ERR_PROXY_FILTER_INVALID: { message: 'service-resolver subset filter is invalid', status: 400 },
} as const satisfies Record<string, ErrorCodeSpec>;

export type ErrorCode = keyof typeof errorCodes;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCodes, value);
}
