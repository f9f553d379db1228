// host:port addresses as operators write them: "127.0.0.1:8500", "[::1]:8443", "gw.example.com:8443".

import { fail, ok, type Result } from './errors.js';

export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(input: string, defaultPort?: number): Result<HostPort> {
  const s = input.trim();
  if (s === '') return fail('empty address');
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end === -1) return fail(`"${input}": missing "]" after IPv6 address`);
    host = s.slice(1, end);
    const rest = s.slice(end + 1);
    if (rest !== '' && !rest.startsWith(':')) return fail(`"${input}": expected ":port" after "]"`);
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon !== -1 && s.indexOf(':') !== colon)
      return fail(`"${input}": write IPv6 addresses as [addr]:port`);
    host = colon === -1 ? s : s.slice(0, colon);
    portText = colon === -1 ? undefined : s.slice(colon + 1);
  }
  if (host === '') return fail(`"${input}": missing host`);
  if (!/^[A-Za-z0-9.:_%-]+$/.test(host)) return fail(`"${input}": host contains invalid characters`);
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return fail(`"${input}": missing ":port"`);
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) return fail(`"${input}": port "${portText}" is not a number`);
    port = Number(portText);
  }
  if (port < 0 || port > 65535) return fail(`"${input}": port ${port} is out of range 0-65535`);
  return ok({ host, port });
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
