// `meshfed validate` and `meshfed config print`: check configuration files and show the
// effective result (defaults, env vars and flags applied; secrets hidden).

import { effectiveConfig, effectiveConfigYaml, formatIssues, loadConfig } from '@meshfed/config';
import type { CommandSpec } from '../command.js';

export const validateCommand: CommandSpec = {
  command: 'validate <files..>',
  describe: 'Check configuration files; prints every problem with file:line:col (exit 0 valid, 1 invalid)',
  positional: { files: { type: 'string', array: true, describe: 'YAML files to check (each on its own)' } },
  examples: [['meshfed validate configs/*.yaml', 'check every sample']],
  async handler(args, { out }) {
    const files = args['files'] as string[];
    let bad = 0;
    const results = files.map((file) => {
      const r = loadConfig({ files: [file] });
      if (!r.ok) bad++;
      return { file, valid: r.ok, issues: r.ok ? [] : r.issues };
    });
    if (args.json) out.data(results);
    else
      for (const r of results) {
        if (r.valid) out.line(`${r.file}: valid`);
        else
          out.error(
            `${r.file}: ${r.issues.length} problem${r.issues.length === 1 ? '' : 's'}\n${formatIssues(r.issues)}`,
          );
      }
    return bad === 0 ? 0 : 1;
  },
};

export const configPrintCommand: CommandSpec = {
  command: 'print [files..]',
  describe: 'Print the effective configuration (defaults, MESHFED_* env vars and --set overrides applied)',
  positional: {
    files: { type: 'string', array: true, describe: 'YAML files, later ones override earlier ones' },
  },
  options: {
    set: { type: 'string', array: true, describe: 'Override a key: --set ports.http=8501 (repeatable)' },
  },
  async handler(args, { out, env }) {
    const flags: Record<string, string> = {};
    for (const s of (args['set'] as string[] | undefined) ?? []) {
      const eq = s.indexOf('=');
      if (eq < 1) {
        out.error(`--set ${s}: write key=value, e.g. --set ports.http=8501`);
        return 2;
      }
      flags[s.slice(0, eq)] = s.slice(eq + 1);
    }
    const r = loadConfig({ files: (args['files'] as string[] | undefined) ?? [], env, flags });
    if (!r.ok) {
      out.error(`invalid configuration:\n${formatIssues(r.issues)}`);
      return 1;
    }
    if (args.json) out.data(effectiveConfig(r.config));
    else out.line(effectiveConfigYaml(r.config).trimEnd());
  },
};
