// The API over TLS, judged by curl: a self-signed certificate from openssl; curl verifies it with
// --cacert and reads the catalog, and refuses it without. close() does not hang on the refused
// handshake.

import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '@meshfed/testkit';
import { startServer } from './helpers.js';

// curl runs asynchronously: the server under test lives in this process's event loop.
const run = promisify(execFile);

test('http.tls serves HTTPS that curl verifies against the certificate', async (t) => {
  const dir = tempDir(t);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const srv = await startServer(t, {
    http: { bindAddress: '127.0.0.1', port: 0, tls: { certFile: cert, keyFile: key } },
  });
  const base = srv.httpAddress();
  t.true(base.startsWith('https://127.0.0.1:'));
  const { stdout: out } = await run('curl', [
    '-sS',
    '--max-time',
    '10',
    '--cacert',
    cert,
    '-D',
    '-',
    `${base}/v1/catalog/services`,
  ]);
  t.regex(out, /^HTTP\/1\.1 200/);
  t.regex(out, /x-consul-index: \d+/i);
  t.true(out.trimEnd().endsWith('{"consul":[]}'));
  await t.throwsAsync(run('curl', ['-sS', '--max-time', '10', `${base}/v1/catalog/services`]));
  const t0 = Date.now();
  await srv.close();
  t.true(Date.now() - t0 < 5000, 'close() returned promptly');
});
