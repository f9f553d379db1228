// The CertificateAuthority: one per server. In the primary DC it owns the root(s) of the trust
// domain and signs leaves directly with the active root (as Consul's built-in provider does) and
// signs the secondaries' intermediates. In a secondary DC it holds an intermediate the primary
// signed, and signs its leaves with that. Rotation, cross-signing and retirement follow Consul
// (anchors §3.4). Leaves are built by our DER encoder and signed with node:crypto (see docs/ca.md).

import { randomBytes, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import {
  formatDuration,
  meshGatewaySpiffeId,
  MeshError,
  nameProblem,
  parseDuration,
  serverSpiffeId,
  serviceSpiffeId,
  signingSpiffeId,
  type Clock,
  type Counter,
  type Logger,
  type Registry,
  type TimerHandle,
} from '@meshfed/core';
import type { CaRoot, CaRootsResponse, IssuedLeaf } from '@meshfed/core';
import {
  akiExt,
  basicConstraintsExt,
  CA_KEY_USAGE,
  certPem,
  checkKeyParams,
  colonHex,
  createCsr,
  eku,
  generateKey,
  generateLeafKey,
  keyId,
  keyInfo,
  keyUsageExt,
  LEAF_KEY_USAGE,
  loadCert,
  loadPrivateKey,
  nameConstraintsExt,
  newSerial,
  OID,
  parseCertParts,
  parseCsr,
  privateKeyPem,
  sanExt,
  signCertificate,
  signingKeyId,
  skiExt,
  spkiDer,
  subjectKeyIdOf,
  type PrivateKeyType,
} from './certs.js';
import * as der from './der.js';
import { SigningLimiter } from './limiter.js';
import type { CaConfigState, CaState, CaStateStorage, StoredRoot } from './storage.js';
import { verifyChain } from './verify.js';

const HOUR = 3_600_000;
const BACKDATE_MS = 60_000;

export interface CaOptions {
  datacenter: string;
  primaryDatacenter: string;
  /** Trust domain is `<clusterId>.<domain>`; generated (UUID) at first bootstrap when absent. */
  clusterId?: string;
  domain: string;
  privateKeyType: PrivateKeyType;
  privateKeyBits: number;
  leafTtlMs: number;
  intermediateTtlMs: number;
  rootTtlMs: number;
  /** 0 disables. Consul defaults to 50; our signer does >1,000/s per core, so we default to 1000. */
  csrMaxPerSecond: number;
  csrMaxConcurrent: number;
}

export const defaultCaOptions: Omit<CaOptions, 'datacenter' | 'primaryDatacenter'> = {
  domain: 'consul',
  privateKeyType: 'ec',
  privateKeyBits: 256,
  leafTtlMs: 72 * HOUR,
  intermediateTtlMs: 8760 * HOUR,
  rootTtlMs: 87600 * HOUR,
  csrMaxPerSecond: 1000,
  csrMaxConcurrent: 0,
};

export interface CaDeps {
  logger: Logger;
  clock: Clock;
  storage: CaStateStorage;
  registry?: Registry;
}

export type LeafIdentity =
  | { kind: 'service'; service: string; namespace?: string; partition?: string; datacenter?: string }
  | { kind: 'server'; node: string }
  | { kind: 'mesh-gateway'; partition?: string };

export type { CaRoot, CaRootsResponse, IssuedLeaf };

export interface CaConfigResponse {
  Provider: 'consul';
  ClusterID: string;
  Config: {
    LeafCertTTL: string;
    IntermediateCertTTL: string;
    RootCertTTL: string;
    PrivateKeyType: PrivateKeyType;
    PrivateKeyBits: number;
    CSRMaxPerSecond: number;
    CSRMaxConcurrent: number;
  };
  CreateIndex: number;
  ModifyIndex: number;
}

export interface RotateOptions {
  privateKeyType?: PrivateKeyType;
  privateKeyBits?: number;
  /** Operator-provided root (with its key) instead of a generated one. */
  rootCertPem?: string;
  rootKeyPem?: string;
  /** Rotate without cross-signing: refused unless `force` (Consul's ForceWithoutCrossSigning). */
  skipCrossSign?: boolean;
  force?: boolean;
}

export type CaChange = 'roots' | 'intermediate' | 'config';

/** Everything the leaf signer needs, rebuilt when the signing certificate changes. */
interface Signer {
  key: KeyObject;
  issuerName: Buffer;
  aki: Buffer | undefined;
  chainPems: string[];
  notAfter: number;
}

const rfc3339 = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const intermediateName = (dc: string): string => `meshfed intermediate CA ${dc}`;

export class CertificateAuthority {
  readonly isPrimary: boolean;
  private state!: CaState;
  private signer: Signer | undefined;
  private readonly limiter: SigningLimiter;
  private readonly listeners = new Set<(what: CaChange) => void>();
  private readonly logger: Logger;
  private pruneTimer: TimerHandle | undefined;
  private mutex: Promise<unknown> = Promise.resolve();
  private readonly signed: Counter | undefined;
  private readonly rejected: Counter | undefined;
  private started = false;

  constructor(
    private readonly options: CaOptions,
    private readonly deps: CaDeps,
  ) {
    this.isPrimary = options.datacenter === options.primaryDatacenter;
    this.logger = deps.logger;
    checkKeyParams(options.privateKeyType, options.privateKeyBits);
    validateTtls(options.leafTtlMs, options.intermediateTtlMs, options.rootTtlMs);
    this.limiter = new SigningLimiter(
      { maxPerSecond: options.csrMaxPerSecond, maxConcurrent: options.csrMaxConcurrent },
      deps.clock,
    );
    this.signed = deps.registry?.counter('meshfed_ca_leaf_signed_total', 'Leaf certificates signed', [
      'kind',
    ]);
    this.rejected = deps.registry?.counter('meshfed_ca_csr_rejected_total', 'CSRs refused', ['code']);
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.started) return;
    const loaded = await this.deps.storage.load();
    if (loaded) {
      this.state = loaded;
    } else {
      const clusterId = this.options.clusterId ?? (this.isPrimary ? randomUUID() : '');
      this.state = {
        version: 1,
        clusterId,
        trustDomain: this.isPrimary ? `${clusterId}.${this.options.domain}` : '',
        index: 1,
        config: {
          leafTtlMs: this.options.leafTtlMs,
          intermediateTtlMs: this.options.intermediateTtlMs,
          rootTtlMs: this.options.rootTtlMs,
          privateKeyType: this.options.privateKeyType,
          privateKeyBits: this.options.privateKeyBits,
          csrMaxPerSecond: this.options.csrMaxPerSecond,
          csrMaxConcurrent: this.options.csrMaxConcurrent,
          createIndex: 1,
          modifyIndex: 1,
        },
        roots: [],
      };
    }
    this.limiter.reconfigure({
      maxPerSecond: this.state.config.csrMaxPerSecond,
      maxConcurrent: this.state.config.csrMaxConcurrent,
    });
    if (this.isPrimary && !this.activeRoot()?.keyPem) {
      const key = generateKey(this.state.config.privateKeyType, this.state.config.privateKeyBits);
      this.state.roots.push(this.makeRoot(key, undefined));
      this.logger.info(
        { rootId: this.activeRoot()!.id, trustDomain: this.state.trustDomain },
        'CA root created',
      );
    }
    await this.deps.storage.save(this.state);
    this.rebuildSigner();
    const every = Math.max(60_000, Math.min(HOUR, this.state.config.leafTtlMs / 4));
    this.pruneTimer = this.deps.clock.setInterval(() => {
      this.pruneRoots().catch((err: unknown) =>
        this.logger.warn({ err: String(err) }, 'CA root pruning failed'),
      );
    }, every);
    this.pruneTimer.unref();
    this.started = true;
  }

  async close(): Promise<void> {
    this.deps.clock.clearInterval(this.pruneTimer);
    this.pruneTimer = undefined;
    this.listeners.clear();
    await this.mutex.catch(() => undefined);
  }

  get trustDomain(): string {
    return this.state?.trustDomain ?? '';
  }

  /** The CA's change index (CreateIndex/ModifyIndex, X-Consul-Index for roots). */
  index(): number {
    return this.state.index;
  }

  ready(): boolean {
    return this.signer !== undefined;
  }

  onChange(listener: (what: CaChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- read APIs (never carry private keys) ----------------------------------------------------

  rootsResponse(): CaRootsResponse {
    const active = this.activeRoot();
    return {
      ActiveRootID: active?.id ?? '',
      TrustDomain: this.state.trustDomain,
      Roots: this.state.roots.map((r) => {
        const c = new X509Certificate(r.certPem);
        return {
          ID: r.id,
          Name: r.name,
          SerialNumber: Number.parseInt(c.serialNumber, 16),
          SigningKeyID: signingKeyId(spkiDer(c.publicKey)),
          ExternalTrustDomain: this.state.trustDomain,
          NotBefore: rfc3339(Date.parse(c.validFrom)),
          NotAfter: rfc3339(Date.parse(c.validTo)),
          RootCert: r.certPem,
          IntermediateCerts: r.intermediateCerts.length > 0 ? [...r.intermediateCerts] : null,
          Active: r.active,
          PrivateKeyType: r.privateKeyType,
          PrivateKeyBits: r.privateKeyBits,
          CreateIndex: r.createIndex,
          ModifyIndex: r.modifyIndex,
        };
      }),
    };
  }

  trustBundlePems(): string[] {
    return this.state.roots.map((r) => r.certPem);
  }

  configuration(): CaConfigResponse {
    const c = this.state.config;
    return {
      Provider: 'consul',
      ClusterID: this.state.clusterId,
      Config: {
        LeafCertTTL: formatDuration(c.leafTtlMs),
        IntermediateCertTTL: formatDuration(c.intermediateTtlMs),
        RootCertTTL: formatDuration(c.rootTtlMs),
        PrivateKeyType: c.privateKeyType,
        PrivateKeyBits: c.privateKeyBits,
        CSRMaxPerSecond: c.csrMaxPerSecond,
        CSRMaxConcurrent: c.csrMaxConcurrent,
      },
      CreateIndex: c.createIndex,
      ModifyIndex: c.modifyIndex,
    };
  }

  // ---- leaves ----------------------------------------------------------------------------------

  /** The CA makes the key itself (agent leaf endpoint, `meshfed ca leaf`). Rate limited. */
  async issueLeaf(id: LeafIdentity): Promise<IssuedLeaf> {
    const sans = this.identitySans(id);
    return this.limiter.run(async () => {
      const key = await generateLeafKey();
      const leaf = this.signLeaf(spkiDer(key), id, sans);
      return { ...leaf, PrivateKeyPEM: privateKeyPem(key) };
    });
  }

  /**
   * Sign a CSR for an identity the caller is allowed (decided by the caller's ACL, passed as
   * `allowed`). The CSR must ask for exactly that SPIFFE ID (and, for servers, only its DNS names).
   * The returned PrivateKeyPEM is empty: the key never left the requester.
   */
  async signLeafCsr(csrPem: string, allowed: LeafIdentity): Promise<IssuedLeaf> {
    try {
      const sans = this.identitySans(allowed);
      return await this.limiter.run(async () => {
        const csr = parseCsr(csrPem);
        if (csr.uris.length !== 1 || csr.uris[0] !== sans.uri)
          throw new MeshError(
            'MESH_ERR_CA_IDENTITY_DENIED',
            `CSR asks for ${csr.uris.join(', ') || 'no SPIFFE ID'}; the caller may only have ${sans.uri}`,
            {
              details: { requested: csr.uris, allowed: sans.uri },
            },
          );
        const extra = csr.dns.filter((d) => !sans.dns.includes(d));
        if (extra.length > 0)
          throw new MeshError(
            'MESH_ERR_CA_IDENTITY_DENIED',
            `CSR asks for DNS names ${extra.join(', ')} the caller may not have`,
            {
              details: { requested: csr.dns },
            },
          );
        return this.signLeaf(csr.spki, allowed, sans);
      });
    } catch (err) {
      if (err instanceof MeshError) this.rejected?.labels(err.code).inc();
      throw err;
    }
  }

  private identitySans(id: LeafIdentity): { uri: string; dns: string[]; cn: string; service: string } {
    if (!this.signer) {
      throw this.isPrimary || this.state?.trustDomain
        ? new MeshError(
            'MESH_ERR_CA_NO_INTERMEDIATE',
            `datacenter ${this.options.datacenter} has no intermediate CA yet`,
          )
        : new MeshError('MESH_ERR_CA_NOT_INITIALIZED');
    }
    const td = this.state.trustDomain;
    const dc = this.options.datacenter;
    const deny = (msg: string): MeshError => new MeshError('MESH_ERR_CA_IDENTITY_DENIED', msg);
    switch (id.kind) {
      case 'service': {
        for (const [kind, v] of [
          ['service', id.service],
          ['namespace', id.namespace],
          ['partition', id.partition],
        ] as const) {
          const p = v === undefined ? undefined : nameProblem(kind, v);
          if (p) throw deny(p);
        }
        if (id.datacenter !== undefined && id.datacenter !== dc)
          throw deny(`this CA signs for datacenter ${dc}, not ${id.datacenter}`);
        const args = { trustDomain: td, datacenter: dc, service: id.service } as Parameters<
          typeof serviceSpiffeId
        >[0];
        if (id.namespace !== undefined) args.namespace = id.namespace;
        if (id.partition !== undefined) args.partition = id.partition;
        return { uri: serviceSpiffeId(args), dns: [], cn: id.service, service: id.service };
      }
      case 'server': {
        const p = nameProblem('node', id.node);
        if (p) throw deny(p);
        const base = `server.${dc}.${this.options.domain}`;
        return {
          uri: serverSpiffeId(td, dc),
          dns: [base, `${id.node}.${base}`],
          cn: base,
          service: `${id.node}.${base}`,
        };
      }
      case 'mesh-gateway': {
        const p = id.partition === undefined ? undefined : nameProblem('partition', id.partition);
        if (p) throw deny(p);
        return {
          uri: meshGatewaySpiffeId(td, dc, id.partition),
          dns: [],
          cn: 'mesh-gateway',
          service: 'mesh-gateway',
        };
      }
      default:
        throw deny(`unknown identity kind ${String((id as { kind: unknown }).kind)}`);
    }
  }

  /** The fast path: one TBSCertificate from a handful of precomputed pieces, one sign(). */
  private signLeaf(
    spki: Buffer,
    id: LeafIdentity,
    sans: { uri: string; dns: string[]; cn: string; service: string },
  ): IssuedLeaf {
    const s = this.signer!;
    const now = this.deps.clock.now();
    if (s.notAfter <= now + BACKDATE_MS)
      throw this.isPrimary
        ? new MeshError(
            'MESH_ERR_CA_NOT_INITIALIZED',
            `the active root expired at ${rfc3339(s.notAfter)}; rotate to a new root`,
          )
        : new MeshError(
            'MESH_ERR_CA_NO_INTERMEDIATE',
            `the intermediate of ${this.options.datacenter} expired at ${rfc3339(s.notAfter)}`,
          );
    const notBefore = now - BACKDATE_MS;
    const notAfter = Math.min(now + this.state.config.leafTtlMs, s.notAfter);
    const serial = newSerial();
    const extensions = [
      basicConstraintsExt(false),
      LEAF_KU,
      LEAF_EKU,
      skiExt(keyId(spki)),
      ...(s.aki ? [s.aki] : []),
      sanExt({ uris: [sans.uri], dns: sans.dns }),
    ];
    const d = signCertificate(
      {
        serial,
        subject: der.name({ cn: sans.cn }),
        issuer: s.issuerName,
        notBefore,
        notAfter,
        spki,
        extensions,
      },
      s.key,
    );
    this.signed?.labels(id.kind).inc();
    const leaf: IssuedLeaf = {
      SerialNumber: colonHex(serial),
      CertPEM: certPem(d) + s.chainPems.join(''),
      PrivateKeyPEM: '',
      Service: sans.service,
      ServiceURI: sans.uri,
      ValidAfter: rfc3339(Math.floor(notBefore / 1000) * 1000),
      ValidBefore: rfc3339(Math.floor(notAfter / 1000) * 1000),
      CreateIndex: this.state.index,
      ModifyIndex: this.state.index,
    };
    if (id.kind === 'service') {
      leaf.Namespace = id.namespace ?? 'default';
      if (id.partition !== undefined) leaf.Partition = id.partition;
    }
    return leaf;
  }

  // ---- primary: roots, rotation, retirement, intermediates -------------------------------------

  private activeRoot(): StoredRoot | undefined {
    return this.state?.roots.find((r) => r.active);
  }

  private nextIndex(): number {
    return ++this.state.index;
  }

  private makeRoot(key: KeyObject, provided: X509Certificate | undefined): StoredRoot {
    const td = this.state.trustDomain;
    const n = this.state.roots.length + 1;
    let pem: string;
    if (provided) pem = provided.toString();
    else {
      const now = this.deps.clock.now();
      const spki = spkiDer(key);
      const ski = keyId(spki);
      const nameDer = der.name({ cn: `meshfed CA ${n}`, ou: td });
      const serial = randomBytes(6);
      serial[0] = (serial[0]! & 0x7f) | 0x01;
      pem = certPem(
        signCertificate(
          {
            serial,
            subject: nameDer,
            issuer: nameDer,
            notBefore: now - BACKDATE_MS,
            notAfter: now + this.state.config.rootTtlMs,
            spki,
            extensions: [
              basicConstraintsExt(true),
              keyUsageExt(CA_KEY_USAGE),
              skiExt(ski),
              akiExt(ski),
              sanExt({ uris: [signingSpiffeId(td)] }),
              nameConstraintsExt({ dns: [td, this.options.domain], uriHosts: [td] }),
            ],
          },
          key,
        ),
      );
    }
    const cert = new X509Certificate(pem);
    const info = keyInfo(key);
    const idx = this.nextIndex();
    return {
      id: cert.fingerprint,
      name: provided ? `Operator-provided root ${n}` : `meshfed CA Primary Cert ${n}`,
      certPem: pem,
      keyPem: privateKeyPem(key),
      intermediateCerts: [],
      active: true,
      privateKeyType: info.type,
      privateKeyBits: info.bits,
      createIndex: idx,
      modifyIndex: idx,
    };
  }

  /** Rotate the root (primary only). The old root cross-signs the new one unless forced without. */
  rotateRoot(opts: RotateOptions = {}): Promise<void> {
    return this.locked(async () => {
      this.requirePrimary();
      const type = opts.privateKeyType ?? this.state.config.privateKeyType;
      const bits =
        opts.privateKeyBits ?? (opts.privateKeyType ? defaultBits(type) : this.state.config.privateKeyBits);
      let key: KeyObject;
      let provided: X509Certificate | undefined;
      if (opts.rootCertPem !== undefined || opts.rootKeyPem !== undefined) {
        if (opts.rootCertPem === undefined || opts.rootKeyPem === undefined)
          throw new MeshError(
            'MESH_ERR_CA_ROTATION_REFUSED',
            'an operator-provided root needs both RootCert and PrivateKey',
          );
        provided = loadCert(opts.rootCertPem);
        key = loadPrivateKey(opts.rootKeyPem);
        if (!provided.ca || !provided.checkPrivateKey(key))
          throw new MeshError(
            'MESH_ERR_CA_ROTATION_REFUSED',
            'the provided root is not a CA certificate or does not match the provided key',
          );
        const uris = (provided.subjectAltName ?? '')
          .split(/,\s*/)
          .filter((p) => p.startsWith('URI:spiffe://'));
        if (uris.some((u) => u !== `URI:${signingSpiffeId(this.state.trustDomain)}`))
          throw new MeshError(
            'MESH_ERR_CA_ROTATION_REFUSED',
            `the provided root names another trust domain (${uris.join(', ')})`,
          );
        if (Date.parse(provided.validTo) <= this.deps.clock.now())
          throw new MeshError('MESH_ERR_CA_ROTATION_REFUSED', 'the provided root has expired');
      } else {
        checkKeyParams(type, bits);
        key = generateKey(type, bits);
      }
      const old = this.activeRoot();
      const crossSignPossible =
        !!old?.keyPem && Date.parse(new X509Certificate(old.certPem).validTo) > this.deps.clock.now();
      if ((opts.skipCrossSign || !crossSignPossible) && !opts.force)
        throw new MeshError(
          'MESH_ERR_CA_ROTATION_REFUSED',
          opts.skipCrossSign
            ? 'rotation without cross-signing is refused: connections may fail until every peer has the new root; pass force to do it anyway'
            : 'the old root cannot cross-sign the new one (no key or expired); pass force to rotate without cross-signing',
        );
      const root = this.makeRoot(key, provided);
      const now = this.deps.clock.now();
      if (old) {
        if (!opts.skipCrossSign && crossSignPossible) root.intermediateCerts = [this.crossSign(old, root)];
        old.active = false;
        old.rotatedOutAt = now;
        old.modifyIndex = root.createIndex;
      }
      this.state.roots.push(root);
      if (!provided) {
        this.state.config.privateKeyType = type;
        this.state.config.privateKeyBits = bits;
      }
      await this.commit('roots');
      this.logger.info(
        { rootId: root.id, oldRootId: old?.id, crossSigned: root.intermediateCerts.length > 0 },
        'CA root rotated',
      );
    });
  }

  /** New root's subject, key and extensions, issued by the old root (Consul's CrossSignCA). */
  private crossSign(oldRoot: StoredRoot, newRoot: StoredRoot): string {
    const oldCert = new X509Certificate(oldRoot.certPem);
    const newCert = new X509Certificate(newRoot.certPem);
    const oldParts = parseCertParts(oldCert.raw);
    const newParts = parseCertParts(newCert.raw);
    const oldSki = subjectKeyIdOf(oldParts);
    const exts = [...newParts.extensions.entries()]
      .filter(([o]) => o !== OID.authorityKeyId)
      .map(([, e]) => e.raw);
    if (oldSki) exts.push(akiExt(oldSki));
    const d = signCertificate(
      {
        serial: newSerial(),
        subject: newParts.subject,
        issuer: oldParts.subject,
        notBefore: this.deps.clock.now() - BACKDATE_MS,
        notAfter: Math.min(Date.parse(newCert.validTo), Date.parse(oldCert.validTo)),
        spki: newParts.spki,
        extensions: exts,
      },
      loadPrivateKey(oldRoot.keyPem!),
    );
    return certPem(d);
  }

  /** Remove inactive roots once no valid leaf can depend on them (2 × leaf TTL), or expired ones. */
  pruneRoots(): Promise<number> {
    return this.locked(async () => {
      const now = this.deps.clock.now();
      const keep = this.state.roots.filter(
        (r) =>
          r.active ||
          !(
            (r.rotatedOutAt !== undefined && now - r.rotatedOutAt > 2 * this.state.config.leafTtlMs) ||
            Date.parse(new X509Certificate(r.certPem).validTo) < now
          ),
      );
      const removed = this.state.roots.length - keep.length;
      if (removed === 0 || !this.isPrimary) return 0;
      this.state.roots = keep;
      this.nextIndex();
      await this.commit('roots');
      this.logger.info({ removed }, 'retired old CA roots');
      return removed;
    });
  }

  /** Primary: validate a secondary's intermediate CSR and sign it with the active root. */
  async signIntermediateCsr(
    csrPem: string,
    datacenter: string,
  ): Promise<{ certPem: string; rootsResponse: CaRootsResponse }> {
    this.requirePrimary();
    const p = nameProblem('datacenter', datacenter);
    if (p) throw new MeshError('MESH_ERR_CA_CSR_INVALID', p);
    const csr = parseCsr(csrPem);
    const td = this.state.trustDomain;
    if (csr.uris.length !== 1 || csr.uris[0] !== signingSpiffeId(td))
      throw new MeshError(
        'MESH_ERR_CA_TRUST_DOMAIN',
        `intermediate CSR must name ${signingSpiffeId(td)}, got ${csr.uris.join(', ') || 'none'}`,
      );
    if (csr.dns.length > 0)
      throw new MeshError('MESH_ERR_CA_CSR_INVALID', 'intermediate CSR must not carry DNS names');
    if (csr.commonName !== intermediateName(datacenter))
      throw new MeshError(
        'MESH_ERR_CA_IDENTITY_DENIED',
        `intermediate CSR is for "${csr.commonName ?? ''}", not datacenter ${datacenter}`,
      );
    const ki = keyInfo(csr.publicKey);
    try {
      checkKeyParams(ki.type, ki.bits);
    } catch {
      throw new MeshError(
        'MESH_ERR_CA_CSR_INVALID',
        `intermediate key type ${ki.type}/${ki.bits} is not allowed`,
      );
    }
    const root = this.activeRoot()!;
    const rootCert = new X509Certificate(root.certPem);
    const rootParts = parseCertParts(rootCert.raw);
    const ski = subjectKeyIdOf(rootParts);
    const now = this.deps.clock.now();
    const d = signCertificate(
      {
        serial: newSerial(),
        subject: der.name({ cn: intermediateName(datacenter), ou: td }),
        issuer: rootParts.subject,
        notBefore: now - BACKDATE_MS,
        notAfter: Math.min(now + this.state.config.intermediateTtlMs, Date.parse(rootCert.validTo)),
        spki: csr.spki,
        extensions: [
          basicConstraintsExt(true, 0),
          keyUsageExt(CA_KEY_USAGE),
          skiExt(keyId(csr.spki)),
          ...(ski ? [akiExt(ski)] : []),
          sanExt({ uris: [signingSpiffeId(td)] }),
        ],
      },
      loadPrivateKey(root.keyPem!),
    );
    this.logger.info({ datacenter, rootId: root.id }, 'signed intermediate CA for secondary datacenter');
    return { certPem: certPem(d), rootsResponse: this.rootsResponse() };
  }

  // ---- secondary -------------------------------------------------------------------------------

  /** Secondary: make a key and an intermediate CSR for the primary to sign. */
  createIntermediateCsr(): Promise<string> {
    return this.locked(async () => {
      if (this.isPrimary)
        throw new MeshError(
          'MESH_ERR_FED_NOT_PRIMARY',
          'the primary datacenter does not need an intermediate',
        );
      if (!this.state.trustDomain)
        throw new MeshError(
          'MESH_ERR_CA_NOT_INITIALIZED',
          'no roots from the primary yet (applyPrimaryRoots first)',
        );
      const key = generateKey(this.state.config.privateKeyType, this.state.config.privateKeyBits);
      this.state.pendingIntermediateKeyPem = privateKeyPem(key);
      await this.deps.storage.save(this.state);
      return createCsr(
        key,
        { cn: intermediateName(this.options.datacenter) },
        { uris: [signingSpiffeId(this.state.trustDomain)] },
      );
    });
  }

  /** Secondary: install the intermediate the primary signed for our pending CSR. */
  installIntermediate(certPem: string, roots: CaRootsResponse): Promise<void> {
    return this.locked(async () => {
      if (this.isPrimary)
        throw new MeshError(
          'MESH_ERR_FED_NOT_PRIMARY',
          'the primary datacenter does not use an intermediate',
        );
      const pending = this.state.pendingIntermediateKeyPem;
      if (!pending) throw new MeshError('MESH_ERR_CA_CHAIN_INVALID', 'no intermediate CSR is pending');
      const cert = loadCert(certPem);
      if (!cert.checkPrivateKey(loadPrivateKey(pending)))
        throw new MeshError(
          'MESH_ERR_CA_CHAIN_INVALID',
          'the intermediate does not match the pending CSR key',
        );
      const rootPems = roots.Roots.map((r) => r.RootCert);
      const v = verifyChain([certPem], rootPems, { now: this.deps.clock.now(), leafMayBeCa: true });
      if (!v.ok) throw new MeshError(v.code, `intermediate rejected: ${v.reason}`);
      this.adoptRoots(roots);
      this.state.intermediate = { certPem: cert.toString(), keyPem: pending };
      delete this.state.pendingIntermediateKeyPem;
      this.nextIndex();
      await this.commit('intermediate');
      this.logger.info(
        { datacenter: this.options.datacenter, notAfter: cert.validTo },
        'installed intermediate CA',
      );
    });
  }

  /** Secondary: take the primary's current roots (blocking-query result). */
  applyPrimaryRoots(roots: CaRootsResponse): Promise<void> {
    return this.locked(async () => {
      if (this.isPrimary) throw new MeshError('MESH_ERR_FED_NOT_PRIMARY', 'the primary owns its roots');
      const before = JSON.stringify(this.state.roots.map((r) => [r.id, r.active, r.intermediateCerts]));
      this.adoptRoots(roots);
      const after = JSON.stringify(this.state.roots.map((r) => [r.id, r.active, r.intermediateCerts]));
      if (before === after) return;
      this.nextIndex();
      await this.commit('roots');
    });
  }

  /** Secondary with no intermediate, past half life, or not under the active root. */
  needsIntermediate(): boolean {
    if (this.isPrimary) return false;
    const inter = this.state.intermediate;
    if (!inter) return true;
    const c = new X509Certificate(inter.certPem);
    const from = Date.parse(c.validFrom);
    const to = Date.parse(c.validTo);
    if (this.deps.clock.now() >= from + (to - from) / 2) return true;
    const active = this.activeRoot();
    if (!active) return false;
    return !c.checkIssued(new X509Certificate(active.certPem));
  }

  private adoptRoots(roots: CaRootsResponse): void {
    if (
      !roots ||
      !Array.isArray(roots.Roots) ||
      typeof roots.TrustDomain !== 'string' ||
      !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(roots.TrustDomain) ||
      !roots.Roots.every(
        (r) =>
          typeof r === 'object' &&
          r !== null &&
          typeof r.ID === 'string' &&
          typeof r.RootCert === 'string' &&
          typeof r.Active === 'boolean' &&
          (r.IntermediateCerts === null ||
            r.IntermediateCerts === undefined ||
            (Array.isArray(r.IntermediateCerts) && r.IntermediateCerts.every((c) => typeof c === 'string'))),
      ) ||
      roots.Roots.filter((r) => r.Active).length !== 1
    )
      throw new MeshError(
        'MESH_ERR_CA_CHAIN_INVALID',
        'roots response is malformed or has no single active root',
      );
    const parsed = roots.Roots.map((r) => {
      const c = loadCert(r.RootCert);
      if (!c.ca) throw new MeshError('MESH_ERR_CA_CHAIN_INVALID', `root ${r.ID} is not a CA certificate`);
      for (const ic of r.IntermediateCerts ?? []) loadCert(ic);
      return { r, c };
    });
    if (this.state.trustDomain && this.state.trustDomain !== roots.TrustDomain)
      this.logger.warn(
        { from: this.state.trustDomain, to: roots.TrustDomain },
        'primary trust domain changed',
      );
    this.state.trustDomain = roots.TrustDomain;
    this.state.clusterId = roots.TrustDomain.split('.')[0] ?? '';
    this.state.roots = parsed.map(({ r, c }) => ({
      id: r.ID,
      name: r.Name,
      certPem: c.toString(),
      intermediateCerts: [...(r.IntermediateCerts ?? [])],
      active: r.Active,
      privateKeyType: (r.PrivateKeyType as PrivateKeyType) ?? 'ec',
      privateKeyBits: r.PrivateKeyBits,
      createIndex: r.CreateIndex,
      modifyIndex: r.ModifyIndex,
    }));
  }

  // ---- configuration ---------------------------------------------------------------------------

  /** PUT /v1/connect/ca/configuration. A key type change or a provided root rotates (cross-signed). */
  async setConfiguration(body: unknown): Promise<void> {
    const parsed = parseConfigBody(body, this.state.config);
    {
      this.requirePrimary();
      const c = this.state.config;
      const keyChanged =
        parsed.config.privateKeyType !== c.privateKeyType ||
        parsed.config.privateKeyBits !== c.privateKeyBits;
      if (keyChanged || parsed.rootCertPem !== undefined) {
        const opts: RotateOptions = {
          privateKeyType: parsed.config.privateKeyType,
          privateKeyBits: parsed.config.privateKeyBits,
          force: parsed.force,
        };
        if (parsed.rootCertPem !== undefined) opts.rootCertPem = parsed.rootCertPem;
        if (parsed.rootKeyPem !== undefined) opts.rootKeyPem = parsed.rootKeyPem;
        await this.rotateRoot(opts);
      }
      await this.locked(async () => {
        const idx = this.nextIndex();
        this.state.config = {
          ...parsed.config,
          createIndex: this.state.config.createIndex,
          modifyIndex: idx,
        };
        this.limiter.reconfigure({
          maxPerSecond: parsed.config.csrMaxPerSecond,
          maxConcurrent: parsed.config.csrMaxConcurrent,
        });
        await this.commit('config');
      });
    }
  }

  // ---- internals -------------------------------------------------------------------------------

  private requirePrimary(): void {
    if (!this.isPrimary)
      throw new MeshError(
        'MESH_ERR_CA_NOT_PRIMARY',
        `datacenter ${this.options.datacenter} is a secondary; do this in ${this.options.primaryDatacenter}`,
      );
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.mutex.then(fn, fn);
    this.mutex = run.catch(() => undefined);
    return run;
  }

  private async commit(what: CaChange): Promise<void> {
    await this.deps.storage.save(this.state);
    this.rebuildSigner();
    for (const l of [...this.listeners]) {
      try {
        l(what);
      } catch (err) {
        this.logger.warn({ err: String(err) }, 'CA change listener threw');
      }
    }
  }

  private rebuildSigner(): void {
    const active = this.activeRoot();
    let certPemStr: string;
    let keyPemStr: string;
    let chain: string[];
    if (this.isPrimary) {
      if (!active?.keyPem) return void (this.signer = undefined);
      certPemStr = active.certPem;
      keyPemStr = active.keyPem;
      chain = [...active.intermediateCerts];
    } else {
      const inter = this.state.intermediate;
      if (!inter) return void (this.signer = undefined);
      certPemStr = inter.certPem;
      keyPemStr = inter.keyPem;
      const ic = new X509Certificate(inter.certPem);
      const underActive = active ? ic.checkIssued(new X509Certificate(active.certPem)) : false;
      chain = [inter.certPem, ...(underActive && active ? active.intermediateCerts : [])];
    }
    const cert = new X509Certificate(certPemStr);
    const parts = parseCertParts(cert.raw);
    const ski = subjectKeyIdOf(parts);
    this.signer = {
      key: loadPrivateKey(keyPemStr),
      issuerName: parts.subject,
      aki: ski ? akiExt(ski) : undefined,
      chainPems: chain,
      notAfter: Date.parse(cert.validTo),
    };
  }
}

const LEAF_KU = keyUsageExt(LEAF_KEY_USAGE);
const LEAF_EKU = eku();

const defaultBits = (t: PrivateKeyType): number => (t === 'rsa' ? 2048 : 256);

function validateTtls(leaf: number, inter: number, root: number): void {
  if (!(leaf >= HOUR && leaf <= 8760 * HOUR))
    throw new MeshError(
      'MESH_ERR_CA_CONFIG_INVALID',
      `LeafCertTTL must be between 1h and 8760h, got ${formatDuration(leaf)}`,
    );
  if (!(inter >= 3 * leaf))
    throw new MeshError(
      'MESH_ERR_CA_CONFIG_INVALID',
      `IntermediateCertTTL (${formatDuration(inter)}) must be at least 3 × LeafCertTTL`,
    );
  if (!(root > inter))
    throw new MeshError(
      'MESH_ERR_CA_CONFIG_INVALID',
      `RootCertTTL (${formatDuration(root)}) must exceed IntermediateCertTTL`,
    );
}

/** Validate a Consul CA configuration body into our config; throws MESH_ERR_CA_CONFIG_INVALID. */
export function parseConfigBody(
  body: unknown,
  current: CaConfigState,
): {
  config: Omit<CaConfigState, 'createIndex' | 'modifyIndex'>;
  rootCertPem?: string;
  rootKeyPem?: string;
  force: boolean;
} {
  const bad = (m: string): MeshError => new MeshError('MESH_ERR_CA_CONFIG_INVALID', m);
  if (typeof body !== 'object' || body === null) throw bad('CA configuration must be a JSON object');
  const b = body as Record<string, unknown>;
  if (b['Provider'] !== undefined && b['Provider'] !== 'consul')
    throw bad(`Provider must be "consul", got ${JSON.stringify(b['Provider'])}`);
  const cfg = (b['Config'] ?? {}) as Record<string, unknown>;
  if (typeof cfg !== 'object' || cfg === null) throw bad('Config must be an object');
  const dur = (k: string, cur: number): number => {
    const v = cfg[k];
    if (v === undefined) return cur;
    if (typeof v === 'number' && Number.isFinite(v)) return v / 1e6; // Go nanoseconds
    if (typeof v !== 'string') throw bad(`Config.${k} must be a duration like "72h"`);
    const r = parseDuration(v);
    if (!r.ok) throw bad(`Config.${k}: ${r.reason}`);
    return r.value;
  };
  const num = (k: string, cur: number): number => {
    const v = cfg[k];
    if (v === undefined) return cur;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw bad(`Config.${k} must be a non-negative integer`);
    return v;
  };
  const type = (cfg['PrivateKeyType'] ?? current.privateKeyType) as PrivateKeyType;
  const bits = num(
    'PrivateKeyBits',
    cfg['PrivateKeyType'] !== undefined && cfg['PrivateKeyType'] !== current.privateKeyType
      ? defaultBits(type)
      : current.privateKeyBits,
  );
  checkKeyParams(type, bits);
  const config = {
    leafTtlMs: dur('LeafCertTTL', current.leafTtlMs),
    intermediateTtlMs: dur('IntermediateCertTTL', current.intermediateTtlMs),
    rootTtlMs: dur('RootCertTTL', current.rootTtlMs),
    privateKeyType: type,
    privateKeyBits: bits,
    csrMaxPerSecond: num('CSRMaxPerSecond', current.csrMaxPerSecond),
    csrMaxConcurrent: num('CSRMaxConcurrent', current.csrMaxConcurrent),
  };
  validateTtls(config.leafTtlMs, config.intermediateTtlMs, config.rootTtlMs);
  const out: ReturnType<typeof parseConfigBody> = { config, force: b['ForceWithoutCrossSigning'] === true };
  const rc = cfg['RootCert'];
  const pk = cfg['PrivateKey'];
  if (rc !== undefined) {
    if (typeof rc !== 'string') throw bad('Config.RootCert must be a PEM string');
    out.rootCertPem = rc;
  }
  if (pk !== undefined) {
    if (typeof pk !== 'string') throw bad('Config.PrivateKey must be a PEM string');
    out.rootKeyPem = pk;
  }
  return out;
}
