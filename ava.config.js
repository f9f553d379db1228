// One ava config for every package. `tsc -b` compiles first (project references); ava picks test
// files from the .ts sources and runs their compiled output from each package's dist/.
import { readdirSync } from 'node:fs';

const roots = [
  ...readdirSync(new URL('packages/', import.meta.url), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => `packages/${d.name}/`),
  'testbed/',
];

export default {
  files: ['packages/*/test/**/*.test.ts', 'testbed/test/**/*.test.ts'],
  typescript: {
    compile: false,
    rewritePaths: Object.fromEntries(roots.map((r) => [r, `${r}dist/`])),
  },
  timeout: '60s',
  concurrency: 2,
};
