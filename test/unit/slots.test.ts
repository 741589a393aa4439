import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Slots } from '../../src/replication/slots.js';

test('slots run at most their count at once, the waiting ones in the order they asked, and free on failure', async () => {
  const slots = new Slots(2);
  const started: number[] = [];
  let running = 0;
  let mostAtOnce = 0;
  const task = (index: number) =>
    slots.run(async () => {
      started.push(index);
      mostAtOnce = Math.max(mostAtOnce, ++running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      if (index === 1) throw new Error('task 1 failed');
      return index;
    });
  const results = await Promise.allSettled([0, 1, 2, 3, 4].map(task));
  assert.equal(mostAtOnce, 2);
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.deepEqual(
    results.map((result) => result.status),
    ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled'],
  );
});

test('a count that is not a positive integer is refused', () => {
  for (const count of [0, -1, 1.5, Number.NaN]) assert.throws(() => new Slots(count), RangeError);
});

test('a task set aside frees its slot for the next, is told when all are idle, then waits its turn again', async () => {
  const events: string[] = [];
  let idle: () => void = () => undefined;
  const slots = new Slots(1, () => {
    events.push('idle');
    idle();
  });
  const allAside = new Promise<void>((resolve) => {
    idle = resolve;
  });
  const task = (name: string) =>
    slots.run(async () => {
      events.push(`${name} starts`);
      await slots.aside(() => allAside);
      events.push(`${name} resumes`);
    });
  await Promise.all([task('a'), task('b')]);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(events, ['a starts', 'b starts', 'idle', 'a resumes', 'b resumes', 'idle']);
});
