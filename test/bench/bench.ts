/**
 * Benchmarks on the zfs-fuse test bed (root). Prints figures; asserts nothing (targets live here, not in tests).
 *   npm run bench [-- --runs N]
 * 1. Stream throughput: the hand-written bash pipeline vs our pipeline module with the same stages vs the CLI.
 * 2. Wall time of a no-op run and of a 200 MB incremental, with ssh handshakes per run; a no-op -R run over a tree.
 * 3. Planning cost against the number of snapshots (pure planner, in process).
 */
import { performance } from 'node:perf_hooks';
import { planReplication } from '../../src/replication/plan.js';
import { runPipeline } from '../../src/transport/pipeline.js';
import type { Snapshot } from '../../src/zfs/types.js';
import { sshHandshakes } from '../integration/helpers.js';
import { Testbed } from '../testbed/testbed.js';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 3;
const MB = 1e6;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const format = (values: number[], unit: string) =>
  `${median(values).toFixed(unit === 's' ? 2 : 0)} ${unit} (runs: ${values.map((value) => value.toFixed(unit === 's' ? 2 : 0)).join(', ')})`;

async function timed(action: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await action();
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const tb = await Testbed.up(['alpha', 'beta']);
  try {
    await tb.zfs('alpha', 'create', '-o', 'compression=off', 'tank/bench');
    const mountpoint = await tb.mountpoint('alpha', 'tank/bench');
    await tb.sh(
      'alpha',
      `head -c 200000000 /dev/urandom > '${mountpoint}/random'; head -c 200000000 < <(yes 'the quick brown fox jumps over the lazy dog 0123456789') > '${mountpoint}/text'`,
    );
    await tb.zfs('alpha', 'snapshot', 'tank/bench@b1');
    const streamBytes = Number((await tb.sh('alpha', 'zfs send tank/bench@b1 | wc -c')).trim());
    console.log(
      `stream: tank/bench@b1, ${(streamBytes / MB).toFixed(0)} MB (200 MB random + 200 MB text), ${runs} runs each, interleaved`,
    );

    const hand: number[] = [];
    const module: number[] = [];
    const cliPlain: number[] = [];
    const cliDefault: number[] = [];
    const clear = async (dataset: string) => {
      await tb.on('beta', ['zfs', 'release', 'bench', `${dataset}@b1`]);
      await tb.destroyTree('beta', dataset);
    };
    const cli = async (argv: string[]) => {
      const outcome = await tb.cli('beta', argv);
      if (outcome.exitCode !== 0)
        throw new Error(`zfs_replicate ${argv.join(' ')}: exit ${outcome.exitCode}: ${outcome.stderr}`);
    };
    for (let run = 0; run < runs; run++) {
      hand.push(
        streamBytes /
          MB /
          (await timed(() =>
            tb.sh('beta', 'ssh alpha zfs send tank/bench@b1 | mbuffer -q -s 128k -m 256M | zfs recv -u tank/hand'),
          )),
      );
      await clear('tank/hand');
      module.push(
        streamBytes /
          MB /
          (await timed(() =>
            runPipeline([
              {
                name: 'send',
                endpoint: tb.endpoint('beta'),
                command: { argv: ['ssh', 'alpha', 'zfs', 'send', 'tank/bench@b1'] },
              },
              {
                name: 'mbuffer',
                endpoint: tb.endpoint('beta'),
                command: { argv: ['mbuffer', '-q', '-s', '128k', '-m', '256M'] },
              },
              { name: 'recv', endpoint: tb.endpoint('beta'), command: { argv: ['zfs', 'recv', '-u', 'tank/module'] } },
            ]),
          )),
      );
      await clear('tank/module');
      cliPlain.push(
        streamBytes /
          MB /
          (await timed(() =>
            cli(['-h', 'alpha', '-r', 'tank/bench', '-l', 'tank/cli', '-t', 'bench', '-k', '30', '-n']),
          )),
      );
      await clear('tank/cli');
      await tb.on('alpha', ['zfs', 'release', 'bench', 'tank/bench@b1']);
      cliDefault.push(
        streamBytes /
          MB /
          (await timed(() => cli(['-h', 'alpha', '-r', 'tank/bench', '-l', 'tank/cli', '-t', 'bench', '-k', '30']))),
      );
      await clear('tank/cli');
      await tb.on('alpha', ['zfs', 'release', 'bench', 'tank/bench@b1']);
    }
    console.log(`hand pipeline (bash: ssh | mbuffer | zfs recv):      ${format(hand, 'MB/s')}`);
    console.log(
      `our pipeline module, same stages:                    ${format(module, 'MB/s')} = ${((median(module) / median(hand)) * 100).toFixed(0)} % of hand`,
    );
    console.log(
      `zfs_replicate -n (whole run, no compression):        ${format(cliPlain, 'MB/s')} = ${((median(cliPlain) / median(hand)) * 100).toFixed(0)} % of hand`,
    );
    console.log(`zfs_replicate (whole run, default lz4 compression):  ${format(cliDefault, 'MB/s')}`);

    const args = ['-h', 'alpha', '-r', 'tank/bench', '-l', 'tank/cli', '-t', 'bench', '-k', '30', '-n'];
    await cli(args);
    const noop: number[] = [];
    const handshakes: number[] = [];
    for (let run = 0; run < Math.max(5, runs); run++) {
      const before = sshHandshakes('alpha');
      noop.push(await timed(() => cli(args)));
      handshakes.push(sshHandshakes('alpha') - before);
    }
    console.log(
      `no-op run (nothing new), wall time:                  ${format(noop, 's')}, ssh handshakes per run: ${handshakes.join(', ')}`,
    );

    const incremental: number[] = [];
    for (let run = 0; run < runs; run++) {
      await tb.sh('alpha', `head -c 200000000 /dev/urandom > '${mountpoint}/random-${run}'`);
      await tb.zfs('alpha', 'snapshot', `tank/bench@inc${run}`);
      const before = sshHandshakes('alpha');
      incremental.push(await timed(() => cli(args)));
      handshakes.push(sshHandshakes('alpha') - before);
    }
    console.log(
      `200 MB incremental run, wall time:                   ${format(incremental, 's')}, ssh handshakes per run: ${handshakes.slice(-runs).join(', ')}`,
    );

    // A tree of 10 datasets: one -R run against 10 single-dataset runs, with nothing new.
    const members = Array.from({ length: 10 }, (_, index) => `m${index}`);
    for (const member of members) await tb.zfs('alpha', 'create', '-p', `tank/tree/${member}`);
    await tb.zfs('alpha', 'snapshot', '-r', 'tank/tree@t1');
    const treeArgs = ['-h', 'alpha', '-r', 'tank/tree', '-l', 'tank/treecopy', '-t', 'bench', '-k', '30', '-R'];
    await cli(treeArgs);
    const treeNoop: number[] = [];
    const singles: number[] = [];
    for (let run = 0; run < runs; run++) {
      treeNoop.push(await timed(() => cli(treeArgs)));
      singles.push(
        await timed(async () => {
          for (const member of members)
            await cli([
              '-h',
              'alpha',
              '-r',
              `tank/tree/${member}`,
              '-l',
              `tank/treecopy/${member}`,
              '-t',
              'bench',
              '-k',
              '30',
            ]);
        }),
      );
    }
    console.log(
      `no-op -R run over 11 datasets (root + 10), wall time: ${format(treeNoop, 's')}; 10 single-dataset no-op runs: ${format(singles, 's')}`,
    );
  } finally {
    await tb.down();
  }

  for (const count of [100, 1_000, 10_000, 20_000]) {
    const snapshots = (offset: number): Snapshot[] =>
      Array.from({ length: count }, (_, index) => ({
        name: `s${index}`,
        guid: String(index + 1 + offset),
        createtxg: index + 1,
        creation: index,
        userrefs: 0,
      }));
    const remote = { dataset: 'tank/a', exists: true, snapshots: snapshots(0), bookmarks: [] };
    const local = { dataset: 'tank/b', exists: true, snapshots: snapshots(0).slice(0, count - 10), bookmarks: [] };
    const rounds = 20;
    const started = performance.now();
    for (let round = 0; round < rounds; round++)
      planReplication({ remote, local, remoteHost: 'a', nowSeconds: count, keepSeconds: 1, rollback: false });
    const perPlan = (performance.now() - started) / rounds;
    console.log(
      `planning with ${String(count).padStart(6)} snapshots per side: ${perPlan.toFixed(2)} ms per plan (${((perPlan / count) * 1000).toFixed(2)} µs per snapshot)`,
    );
  }
}

await main();
