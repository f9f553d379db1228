#!/usr/bin/env node
// The `meshfed` executable: runs one command; SIGINT/SIGTERM abort long-running commands
// (daemons drain and exit), a second signal exits at once.
import { hideBin } from 'yargs/helpers';
import { run } from './cli.js';

const ac = new AbortController();
let signalled = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (signalled) process.exit(130);
    signalled = true;
    ac.abort(new Error(`received ${sig}`));
  });
}

const code = await run(hideBin(process.argv), { signal: ac.signal });
process.exitCode = code;
