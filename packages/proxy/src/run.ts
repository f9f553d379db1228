// `meshfed proxy`: the runnable entry the CLI calls. Flags follow Consul's `consul connect proxy`:
// --sidecar-for <service-id>, --proxy-id, --http-addr (env MESHFED_HTTP_ADDR), --token (env
// MESHFED_HTTP_TOKEN), --check (start, print resolved upstreams and identity as JSON, stop).
// The environment is passed in by the caller; this module never reads process.env itself.

import { parseArgs } from 'node:util';
import { ApiClient, defaultApiAddress } from '@meshfed/client';
import { errorMessage, MeshError, Registry, systemClock, type Clock, type Logger } from '@meshfed/core';
import { ApiDataSources } from './data-sources.js';
import { MeshProxy } from './mesh-proxy.js';

export interface RunProxyDeps {
  logger: Logger;
  signal: AbortSignal;
  env?: Record<string, string | undefined>;
  clock?: Clock;
  registry?: Registry;
  /** Where --check output goes (default process.stdout). */
  out?: (text: string) => void;
  /** Called once the proxy is listening (tests, the CLI's readiness). */
  onReady?: (proxy: MeshProxy) => void;
}

/** Run a sidecar until `signal` aborts. Resolves with the process exit code. */
export async function runProxy(args: readonly string[], deps: RunProxyDeps): Promise<number> {
  const env = deps.env ?? {};
  let values;
  try {
    values = parseArgs({
      args: [...args],
      options: {
        'sidecar-for': { type: 'string' },
        'proxy-id': { type: 'string' },
        'http-addr': { type: 'string' },
        token: { type: 'string' },
        datacenter: { type: 'string' },
        'default-intention-policy': { type: 'string' },
        'cut-denied': { type: 'boolean' },
        register: { type: 'boolean' },
        check: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    deps.logger.error({ err: errorMessage(err) }, 'bad arguments');
    return 2;
  }
  const policy = values['default-intention-policy'] ?? 'allow';
  if (policy !== 'allow' && policy !== 'deny') {
    deps.logger.error({ policy }, '--default-intention-policy must be allow or deny');
    return 2;
  }
  if (!values['sidecar-for'] && !values['proxy-id']) {
    deps.logger.error('one of --sidecar-for <service-id> or --proxy-id <id> is required');
    return 2;
  }
  const clock = deps.clock ?? systemClock;
  const api = new ApiClient(
    {
      address: values['http-addr'] ?? env['MESHFED_HTTP_ADDR'] ?? defaultApiAddress,
      token: values.token ?? env['MESHFED_HTTP_TOKEN'],
    },
    { clock },
  );
  const logger = deps.logger.child({ component: 'proxy' });
  const sources = new ApiDataSources(api, { logger, clock });
  let proxy: MeshProxy | undefined;
  try {
    const proxyId =
      values['proxy-id'] ?? (await sources.findSidecarFor(values['sidecar-for']!, deps.signal)).ID;
    const options: ConstructorParameters<typeof MeshProxy>[0] = {
      proxyId,
      defaultIntentionPolicy: policy,
      cutDeniedOnIntentionChange: values['cut-denied'] ?? false,
      register: values.register ?? false,
    };
    if (values.datacenter) options.datacenter = values.datacenter;
    proxy = new MeshProxy(options, { logger, clock, registry: deps.registry ?? new Registry(), sources });
    const onAbort = (): void => void proxy?.close();
    deps.signal.addEventListener('abort', onAbort, { once: true });
    await proxy.start();
    deps.onReady?.(proxy);
    if (values.check) {
      const out = deps.out ?? ((t: string) => process.stdout.write(t));
      out(JSON.stringify(await proxy.check(), null, 2) + '\n');
      await proxy.close();
      return 0;
    }
    if (!deps.signal.aborted)
      await new Promise<void>((r) => deps.signal.addEventListener('abort', () => r(), { once: true }));
    await proxy.close();
    return 0;
  } catch (err) {
    await proxy?.close();
    if (deps.signal.aborted) return 0;
    const code = err instanceof MeshError ? err.code : 'MESH_ERR_INTERNAL';
    deps.logger.error({ code, err: errorMessage(err) }, 'proxy failed');
    return 1;
  } finally {
    api.close();
  }
}
