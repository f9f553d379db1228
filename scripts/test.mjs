// Runs the whole test suite with ava and ends with one plain line, `N passed, N failed`, which CI
// reads. ava's TAP output is streamed as it comes so progress is visible in CI logs.
import { spawn } from 'node:child_process';

const args = ['ava', '--tap', ...process.argv.slice(2)];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0;
let failed = 0;
let skipped = 0;
let buf = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buf += chunk;
  let nl;
  while ((nl = buf.indexOf('\n')) !== -1) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    if (/^ok \d+/.test(line)) {
      if (/# SKIP/.test(line)) skipped++;
      else passed++;
    } else if (/^not ok \d+/.test(line)) {
      if (/# TODO/.test(line)) skipped++;
      else failed++;
    }
  }
});
child.on('close', (code) => {
  if (code !== 0 && failed === 0) failed = 1; // ava itself failed (crash, timeout, no tests)
  console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code === 0 && failed === 0 ? 0 : 1);
});
