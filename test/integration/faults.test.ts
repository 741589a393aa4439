import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Pair, durationSeconds, pairArgs, seededRandom, startCli, writeAndSnapshot } from '../faults/harness.js';
import { runFault } from '../faults/run-fault.js';
import { FAULTS } from '../faults/table.js';
import { Testbed } from '../testbed/testbed.js';

/**
 * Issue 9's fault suite: every row of test/faults/table.ts on its own pair (alpha:tank/f/N -> beta:tank/r/N),
 * first synced, then faulted, then a fault-free run, then every invariant (test/faults/invariants.ts).
 * ZR_FAULT_SEED replays the random delays of a failed run; ZR_FAULT_ONLY=substring runs only matching rows.
 */
const seed = Number(process.env.ZR_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const only = process.env.ZR_FAULT_ONLY;

describe(`fault suite on real zfs-fuse hosts (seed ${seed})`, () => {
  let tb: Testbed;
  before(async () => {
    console.log(`fault suite seed: ${seed} (replay with ZR_FAULT_SEED=${seed})`);
    tb = await Testbed.up(['alpha', 'beta']);
    await tb.zfs('alpha', 'create', 'tank/f');
  });
  after(async () => {
    await tb?.down();
  });

  FAULTS.forEach((row, index) => {
    if (only !== undefined && !row.name.includes(only)) return;
    test(row.name, { timeout: row.timeoutMs ?? 90_000 }, async () => {
      const keep = row.keep ?? '1d';
      const pair: Pair = {
        remoteHost: 'alpha',
        remoteDataset: `tank/f/${index}`,
        localHost: 'beta',
        localDataset: `tank/r/${index}`,
        tag: 'zr',
        keep,
        keepSeconds: durationSeconds(keep),
      };
      await tb.zfs('alpha', 'create', pair.remoteDataset);
      await writeAndSnapshot(tb, 'alpha', pair.remoteDataset, 's0', 64);
      const initial = await startCli('beta', pairArgs(pair)).done;
      assert.equal(initial.exitCode, 0, `initial sync: ${initial.stderr}`);

      const rng = seededRandom(seed + index);
      const lines: string[] = [];
      const result = await runFault(tb, pair, row, {
        rng,
        log: (line) => lines.push(line),
        originRemote: true,
      });
      for (const line of lines) console.log(`  ${row.name}: ${line}`);
      for (const outcome of result.faulted)
        for (const line of outcome.stderr.split('\n'))
          if (/: (info: receiv|warning|error)/.test(line)) console.log(`  ${row.name}: faulted: ${line}`);
      const codes = result.faulted.map((outcome) => outcome.exitCode).join(',');
      console.log(`  ${row.name}: faulted exit ${codes}, fault-free exit ${result.clean.exitCode}`);
      assert.deepEqual(
        result.violations,
        [],
        `seed ${seed}; faulted run stderr:\n${result.faulted.map((outcome) => outcome.stderr).join('\n---\n')}\nfault-free run stderr:\n${result.clean.stderr}`,
      );
    });
  });
});
