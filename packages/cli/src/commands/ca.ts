// `meshfed ca …`: the federated CA's roots, rotation, configuration, and a leaf for debugging.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeshError, type CaRootsResponse } from '@meshfed/core';
import type { CommandSpec } from '../command.js';

type CaRoots = CaRootsResponse;

const roots: CommandSpec = {
  command: 'roots',
  describe: 'List the CA roots in the trust bundle (the active one signs new certificates)',
  options: { pem: { type: 'boolean', describe: 'Print the root certificates as PEM (a trust bundle)' } },
  async handler(args, { out, client }) {
    const res = await client().get<CaRoots>('/v1/connect/ca/roots');
    if (args['pem']) {
      for (const r of res.body.Roots) out.line(r.RootCert.trim());
      return;
    }
    out.table(
      res.body.Roots,
      [
        { header: 'ID', value: (r) => r.ID },
        { header: 'NAME', value: (r) => r.Name },
        { header: 'KEY', value: (r) => r.PrivateKeyType },
        { header: 'ACTIVE', value: (r) => (r.Active ? 'yes' : 'no') },
        { header: 'NOT AFTER', value: (r) => r.NotAfter },
      ],
      res.body,
    );
    if (!args.json) out.line(`trust domain: ${res.body.TrustDomain}`);
  },
};

const rotate: CommandSpec = {
  command: 'rotate',
  describe: 'Rotate the root: a new root, cross-signed by the old one, so no connection drops',
  options: {
    'key-type': { type: 'string', choices: ['ec', 'rsa', 'ed25519'], describe: 'Key type of the new root' },
    'key-bits': { type: 'number', describe: 'Key size (ec: 256/384, rsa: 2048/4096)' },
    'root-cert': { type: 'string', describe: 'PEM file of an operator-provided root certificate' },
    'root-key': {
      type: 'string',
      describe: 'PEM file of its private key (read here, sent once, never logged)',
    },
    force: { type: 'boolean', describe: 'Rotate even when the old root cannot cross-sign the new one' },
  },
  async handler(args, { out, client }) {
    const { readFileSync } = await import('node:fs');
    const body = {
      PrivateKeyType: args['key-type'],
      PrivateKeyBits: args['key-bits'],
      RootCert: args['root-cert'] ? readFileSync(args['root-cert'] as string, 'utf8') : undefined,
      PrivateKey: args['root-key'] ? readFileSync(args['root-key'] as string, 'utf8') : undefined,
      Force: args['force'] === true,
    };
    out.progress('rotating the root (new key, cross-signature, new intermediates) ...');
    await client().post('/v1/connect/ca/rotate', body);
    const res = await client().get<CaRoots>('/v1/connect/ca/roots');
    if (args.json) out.data(res.body);
    else
      out.line(
        `Root rotated; active root ${res.body.ActiveRootID} (${res.body.Roots.length} roots in the bundle)`,
      );
  },
};

const configGet: CommandSpec = {
  command: 'get',
  describe: 'Show the CA configuration',
  async handler(_args, { out, client }) {
    out.data((await client().get('/v1/connect/ca/configuration')).body);
  },
};

const configSet: CommandSpec = {
  command: 'set',
  describe: "Change the CA configuration (JSON file with Consul's shape; a key-type change rotates the root)",
  options: { 'config-file': { type: 'string', demandOption: true, describe: 'JSON file, `-` for stdin' } },
  async handler(args, { out, client }) {
    const { readFileSync } = await import('node:fs');
    const file = args['config-file'] as string;
    let body: unknown;
    try {
      body = JSON.parse(readFileSync(file === '-' ? 0 : file, 'utf8'));
    } catch (err) {
      throw new MeshError('MESH_ERR_INVALID_ARGUMENT', `${file}: not valid JSON (${(err as Error).message})`);
    }
    await client().put('/v1/connect/ca/configuration', body);
    out.line('CA configuration updated');
  },
};

const leaf: CommandSpec = {
  command: 'leaf <service>',
  describe: 'Get a leaf certificate for a service into a folder (for openssl/curl debugging)',
  positional: { service: { type: 'string', describe: 'Service name' } },
  options: {
    out: { type: 'string', demandOption: true, describe: 'Folder for leaf.pem, key.pem, roots.pem' },
  },
  async handler(args, { out, client }) {
    const service = args['service'] as string;
    const dir = args['out'] as string;
    const res = await client().get<{
      CertPEM: string;
      PrivateKeyPEM: string;
      ValidBefore: string;
      ServiceURI: string;
    }>(`/v1/agent/connect/ca/leaf/${encodeURIComponent(service)}`);
    const rootsRes = await client().get<CaRoots>('/v1/connect/ca/roots');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'leaf.pem'), res.body.CertPEM);
    writeFileSync(join(dir, 'key.pem'), res.body.PrivateKeyPEM, { mode: 0o600 });
    writeFileSync(
      join(dir, 'roots.pem'),
      rootsRes.body.Roots.map((r) => r.RootCert.trim()).join('\n') + '\n',
    );
    const files = { leaf: join(dir, 'leaf.pem'), key: join(dir, 'key.pem'), roots: join(dir, 'roots.pem') };
    if (args.json) out.data({ ...files, uri: res.body.ServiceURI, validBefore: res.body.ValidBefore });
    else {
      out.line(`${res.body.ServiceURI}, valid until ${res.body.ValidBefore}`);
      out.line(`wrote ${files.leaf}, ${files.key} (0600), ${files.roots}`);
      out.line(`check: openssl verify -CAfile ${files.roots} -untrusted ${files.leaf} ${files.leaf}`);
    }
  },
};

export const caCommand: CommandSpec = {
  command: 'ca',
  describe: 'The federated CA: roots, rotation, configuration, leaf certificates',
  subcommands: [
    roots,
    rotate,
    { command: 'config', describe: 'CA configuration', subcommands: [configGet, configSet] },
    leaf,
  ],
};
