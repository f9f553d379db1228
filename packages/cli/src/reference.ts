// docs/cli.md, generated from the command objects themselves (`npm run docs:cli`), so the
// reference cannot drift from what `meshfed --help` says; a test fails when the two disagree.

import type { Options, PositionalOptions } from 'yargs';
import type { CommandSpec } from './command.js';
import { commands } from './commands/index.js';

function optionLine(name: string, o: Options | PositionalOptions, positional: boolean): string {
  const flag = positional ? `<${name}>` : `--${name}`;
  const type = o.type ? ` (${o.type}${'array' in o && o.array ? '…' : ''})` : '';
  const def = o.default !== undefined ? ` Default: \`${String(o.default)}\`.` : '';
  const req = 'demandOption' in o && o.demandOption ? ' Required.' : '';
  const what = (o.describe ?? '').replace(/\.?$/, '.');
  return `- \`${flag}\`${type} — ${what}${req}${def}`;
}

function render(spec: CommandSpec, parent: string, out: string[]): void {
  const name = spec.command === '$0' ? parent : `${parent} ${spec.command}`.trim();
  if (spec.handler) {
    out.push(`### \`meshfed ${name}\``, '', spec.describe, '');
    for (const [k, o] of Object.entries(spec.positional ?? {})) out.push(optionLine(k, o, true));
    for (const [k, o] of Object.entries(spec.options ?? {})) out.push(optionLine(k, o, false));
    if (spec.positional || spec.options) out.push('');
    for (const [cmd, what] of spec.examples ?? []) out.push('```sh', `${cmd}    # ${what}`, '```', '');
  }
  const base = spec.command.split(' ')[0]!;
  for (const sub of spec.subcommands ?? [])
    render(sub, spec.command === '$0' ? parent : `${parent} ${base}`.trim(), out);
}

export function renderCliReference(): string {
  const out = [
    '# CLI reference',
    '',
    '<!-- Generated from packages/cli/src/commands by `npm run docs:cli`; do not edit. -->',
    '',
    'Global options: `--json` (JSON output for scripts), `--log-level`, `--http-addr` (env',
    '`MESHFED_HTTP_ADDR`, default `http://127.0.0.1:8500`), `--token` (env `MESHFED_HTTP_TOKEN`, never',
    "logged). Consul's single-dash spelling works (`-wan`, `-deny`). Exit codes: 0 success, 1 the",
    'operation failed, 2 the command line was wrong (and `intention check`: 2 = denied).',
    '',
  ];
  for (const c of commands) render(c, '', out);
  return (
    out
      .join('\n')
      .replace(/\n{3,}/g, '\n\n')
      .trimEnd() + '\n'
  );
}
