import test from 'ava';
import { sleep } from '@meshfed/core';
import { ManualClock } from '@meshfed/testkit';

test('timers fire in due order at their own time, intervals repeat, cleared timers do not fire', (t) => {
  const c = new ManualClock(1000);
  const seen: string[] = [];
  c.setTimeout(() => seen.push(`b@${c.monotonic()}`), 20);
  c.setTimeout(() => seen.push(`a@${c.monotonic()}`), 10);
  const x = c.setTimeout(() => seen.push('never'), 15);
  const i = c.setInterval(() => seen.push(`i@${c.monotonic()}`), 8);
  c.clearTimeout(x);
  c.advance(25);
  c.clearInterval(i);
  c.advance(100);
  t.deepEqual(seen, ['i@8', 'a@10', 'i@16', 'b@20', 'i@24']);
  t.is(c.now(), 1000 + 125);
  t.is(c.pending, 0);
});

test('advanceAsync lets promise chains proceed between timers', async (t) => {
  const c = new ManualClock();
  let done = false;
  void (async () => {
    await sleep(c, 100);
    await sleep(c, 100);
    done = true;
  })();
  await c.advanceAsync(150);
  t.false(done);
  await c.advanceAsync(60);
  t.true(done);
});
