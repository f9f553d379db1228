// Fails when a package's tsconfig `references` do not mirror its @meshfed/* dependencies, or when the
// dependency graph between packages has a cycle. A missing reference makes a clean `tsc -b` fail
// or silently use stale declarations, so we check it on every test run.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const dirs = readdirSync(join(root, 'packages')).filter((d) =>
  existsSync(join(root, 'packages', d, 'package.json')),
);
const byName = new Map();
for (const d of dirs) {
  const pkg = JSON.parse(readFileSync(join(root, 'packages', d, 'package.json'), 'utf8'));
  byName.set(pkg.name, { dir: d, pkg });
}
const problems = [];
const graph = new Map();
for (const [name, { dir, pkg }] of byName) {
  const deps = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies }).filter((n) =>
    n.startsWith('@meshfed/'),
  );
  const tsconfig = JSON.parse(readFileSync(join(root, 'packages', dir, 'tsconfig.json'), 'utf8'));
  const refs = (tsconfig.references ?? []).map((r) => r.path.replace(/^\.\.\//, ''));
  const wanted = deps.map((n) => byName.get(n)?.dir ?? `(unknown ${n})`);
  for (const w of wanted)
    if (!refs.includes(w))
      problems.push(`${name}: depends on ${w} but tsconfig.json has no reference to ../${w}`);
  for (const r of refs)
    if (!wanted.includes(r))
      problems.push(`${name}: tsconfig.json references ../${r} but package.json does not depend on it`);
  graph.set(dir, wanted);
}
const rootRefs = JSON.parse(readFileSync(join(root, 'tsconfig.json'), 'utf8')).references.map((r) => r.path);
for (const d of dirs)
  if (!rootRefs.includes(`packages/${d}`)) problems.push(`tsconfig.json: missing reference to packages/${d}`);
const state = new Map();
const visit = (d, path) => {
  if (state.get(d) === 'done') return;
  if (state.get(d) === 'active') {
    problems.push(`dependency cycle: ${[...path, d].join(' -> ')}`);
    return;
  }
  state.set(d, 'active');
  for (const n of graph.get(d) ?? []) visit(n, [...path, d]);
  state.set(d, 'done');
};
for (const d of dirs) visit(d, []);
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`references ok: ${dirs.length} packages, no cycles`);
