import test from 'ava';
import { silentLogger } from '@meshfed/core';
import { ManualClock } from '@meshfed/testkit';
import { RenewalScheduler, softExpiry } from '../src/index.js';

const H = 3600_000;

test('soft expiry falls between 60 % and 90 % of the lifetime, by the random draw', (t) => {
  const a = 1_000_000;
  const b = a + 72 * H;
  t.is(
    softExpiry(a, b, a, () => 0),
    Math.round(a + 0.6 * 72 * H),
  );
  t.is(
    softExpiry(a, b, a, () => 1),
    Math.round(a + 0.9 * 72 * H),
  );
  t.is(
    softExpiry(a, b, a, () => 0.5),
    Math.round(a + 0.75 * 72 * H),
  );
  // past 90 %: now; short-lived (< 10 min): now
  t.is(
    softExpiry(a, b, a + 0.95 * 72 * H, () => 0.5),
    a + 0.95 * 72 * H,
  );
  t.is(
    softExpiry(a, a + 5 * 60_000, a, () => 0.5),
    a,
  );
});

test('RenewalScheduler renews at the soft expiry on the injected clock, and again for the next cert', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  let draws = [0.5, 0.0];
  const sched = new RenewalScheduler({ random: () => draws.shift() ?? 0.5 }, { clock, logger: silentLogger });
  const renewedAt: number[] = [];
  const issue = (from: number): void => {
    sched.schedule('web', from, from + 72 * H, async () => {
      renewedAt.push(clock.now());
      issue(clock.now());
    });
  };
  const start = clock.now();
  issue(start);
  await clock.advanceAsync(54 * H - 1);
  t.deepEqual(renewedAt, [], 'not before 75 % (draw 0.5)');
  await clock.advanceAsync(1);
  t.deepEqual(renewedAt, [start + 54 * H]);
  await clock.advanceAsync(0.6 * 72 * H);
  t.deepEqual(
    renewedAt,
    [start + 54 * H, start + 54 * H + Math.round(0.6 * 72 * H)],
    'second cert, draw 0 → 60 %',
  );
  sched.close();
  t.is(clock.pending, 0);
  draws = [];
});

test('on a root change every holder renews within the jitter window, spread, not all at once', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  let i = 0;
  const sched = new RenewalScheduler(
    { rootChangeJitterMs: 30_000, random: () => (i++ % 10) / 10 },
    { clock, logger: silentLogger },
  );
  const at: number[] = [];
  for (let n = 0; n < 10; n++)
    sched.schedule(`svc${n}`, clock.now(), clock.now() + 72 * H, async () => void at.push(clock.monotonic()));
  await clock.advanceAsync(H);
  t.is(at.length, 0);
  i = 0;
  sched.rootsChanged();
  await clock.advanceAsync(30_000);
  t.is(at.length, 10);
  t.true(at.every((m) => m >= H && m < H + 30_000));
  t.is(new Set(at).size, 10, 'spread over the window');
  sched.close();
});

test('a failed renewal is retried, and the scheduler keeps running', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const sched = new RenewalScheduler({ random: () => 0 }, { clock, logger: silentLogger });
  let calls = 0;
  sched.schedule('x', clock.now(), clock.now() + H, async () => {
    calls++;
    if (calls === 1) throw new Error('CA unavailable');
  });
  await clock.advanceAsync(0.6 * H);
  t.is(calls, 1);
  await clock.advanceAsync(10_000);
  t.is(calls, 2);
  sched.close();
});
