// Fails when a workspace's tsconfig `references` do not mirror its @meshfed/* dependencies, when the
// root tsconfig misses a workspace, or when the dependency graph has a cycle. A missing reference
// makes a clean `tsc -b` fail or silently use stale declarations, so this runs on every test run.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const read = (p) => JSON.parse(readFileSync(p, 'utf8'));
const dirs = [
  ...readdirSync(join(root, 'packages')).map((d) => join(root, 'packages', d)),
  join(root, 'testbed'),
].filter((d) => existsSync(join(d, 'package.json')));

const byName = new Map(dirs.map((d) => [read(join(d, 'package.json')).name, d]));
const problems = [];
const graph = new Map();
for (const dir of dirs) {
  const pkg = read(join(dir, 'package.json'));
  const deps = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies }).filter((n) =>
    n.startsWith('@meshfed/'),
  );
  const refs = (read(join(dir, 'tsconfig.json')).references ?? []).map((r) => resolve(dir, r.path));
  const wanted = deps.map((n) => byName.get(n) ?? `(unknown package ${n})`);
  const name = relative(root, dir);
  for (const w of wanted)
    if (!refs.includes(w))
      problems.push(`${name}: depends on ${relative(root, w)} but its tsconfig.json has no reference to it`);
  for (const r of refs)
    if (!wanted.includes(r))
      problems.push(
        `${name}: tsconfig.json references ${relative(root, r)} but package.json does not depend on it`,
      );
  graph.set(dir, wanted);
}
const rootRefs = read(join(root, 'tsconfig.json')).references.map((r) => resolve(root, r.path));
for (const d of dirs)
  if (!rootRefs.includes(d)) problems.push(`tsconfig.json: missing reference to ${relative(root, d)}`);

const state = new Map();
const visit = (d, path) => {
  if (state.get(d) === 'done') return;
  if (state.get(d) === 'active') {
    problems.push(`dependency cycle: ${[...path, d].map((p) => relative(root, p)).join(' -> ')}`);
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
console.log(`references ok: ${dirs.length} workspaces, no cycles`);
