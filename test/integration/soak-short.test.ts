import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { formatReport, runSoak } from '../soak/soak.js';
import { Testbed } from '../testbed/testbed.js';

/** The soak (test/soak/soak.ts) for 20 rounds: the same code as `npm run soak`, short. ZR_SOAK_SEED replays one. */
const seed = Number(process.env.ZR_SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
const rounds = Number(process.env.ZR_SOAK_ROUNDS ?? 20);

describe(`short soak on real zfs-fuse hosts (seed ${seed})`, () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta', 'gamma', 'delta']);
  });
  after(async () => {
    await tb?.down();
  });

  test(
    `${rounds} rounds of alpha -> beta -> gamma and alpha -> delta with faults: no violation, no full resend, no leaked hold`,
    {
      timeout: 420_000,
    },
    async () => {
      const report = await runSoak(tb, {
        rounds,
        seed,
        faultFraction: 0.3,
        keep: '15s',
        maxMinutes: 6,
        log: (line) => console.log(line),
      });
      const table = formatReport(report);
      console.log(table);
      assert.equal(report.timedOut, false, `the soak ran out of time\n${table}`);
      assert.equal(report.violations.length, 0, table);
      assert.equal(report.fullResends, 0, table);
      assert.equal(report.leakedHolds, 0, table);
    },
  );
});
