import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdtempSync,
  readFileSync,
  readSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { localEndpoint } from '../../src/exec/endpoint.js';
import { makeKernelPipes } from '../../src/transport/kernel-pipe.js';
import { PipelineError, type Stage, runPipeline } from '../../src/transport/pipeline.js';

const dir = mkdtempSync(join(tmpdir(), 'zr-pipeline-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const stage = (name: string, ...argv: string[]): Stage => ({ name, endpoint: localEndpoint, command: { argv } });
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

function openFdTargets(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/self/fd/${fd}`)];
    } catch {
      return [];
    }
  });
}

test('bytes in equal bytes out through three stages joined by kernel pipes', async () => {
  const input = join(dir, 'in.bin');
  const output = join(dir, 'out.bin');
  writeFileSync(input, randomBytes(8 * 1024 * 1024));
  const outcomes = await runPipeline([
    stage('produce', 'cat', input),
    stage('relay', 'cat'),
    stage('consume', 'dd', `of=${output}`, 'bs=1M', 'status=none'),
  ]);
  assert.equal(sha256(output), sha256(input));
  assert.deepEqual(
    outcomes.map((outcome) => outcome.exitStatus),
    [0, 0, 0],
  );
});

test('the stages are joined by kernel pipes (fifo), not sockets, and the parent keeps no end of them', async () => {
  const outcomes = await runPipeline([
    stage('produce', 'sh', '-c', 'exec 3>&1; stat -L -c %F /proc/self/fd/3 >&2; readlink /proc/self/fd/3 >&2'),
    stage('consume', 'sh', '-c', 'stat -L -c %F /proc/self/fd/0 >&2; cat >/dev/null'),
  ]);
  const [kind, pipe] = outcomes[0]!.stderr.trim().split('\n');
  assert.equal(kind, 'fifo');
  assert.equal(outcomes[1]!.stderr.trim(), 'fifo');
  assert.match(pipe ?? '', /zfs_replicate-pipe-/);
  assert.ok(!openFdTargets().includes(pipe ?? ''), `the parent still holds ${pipe}`);
});

test('pipes made ahead in batches are each handed out once, and each carries only its own bytes', () => {
  const pipes = Array.from({ length: 40 }, () => makeKernelPipes(3)).flat();
  const fds = pipes.flatMap((pipe) => [pipe.readFd, pipe.writeFd]);
  assert.equal(new Set(fds).size, fds.length);
  const targets = new Set(pipes.map((pipe) => readlinkSync(`/proc/self/fd/${pipe.readFd}`)));
  assert.equal(targets.size, pipes.length, 'every pipe is a FIFO of its own');
  pipes.forEach((pipe, index) => writeSync(pipe.writeFd, `pipe ${index}`));
  pipes.forEach((pipe, index) => {
    const buffer = Buffer.alloc(64);
    assert.equal(buffer.toString('utf8', 0, readSync(pipe.readFd, buffer)), `pipe ${index}`);
    closeSync(pipe.readFd);
    closeSync(pipe.writeFd);
  });
});

test('a producer dying midway fails the pipeline and names that stage, even though the consumer exits 0', async () => {
  await assert.rejects(
    runPipeline([
      stage('send', 'sh', '-c', 'head -c 100000 /dev/zero; echo "send broke" >&2; exit 3'),
      stage('recv', 'cat'),
    ]),
    (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.equal(error.failedStage.name, 'send');
      assert.equal(error.stages[1]!.exitStatus, 0);
      assert.match(error.message, /send on local .* exit 3: send broke/);
      return true;
    },
  );
});

test('a consumer dying fails the pipeline and the producer does not hang', async () => {
  await assert.rejects(
    runPipeline([
      stage('send', 'cat', '/dev/zero'),
      stage('recv', 'sh', '-c', 'head -c 1000 >/dev/null; echo "recv refused" >&2; exit 1'),
    ]),
    (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.equal(error.failedStage.name, 'recv');
      assert.match(error.message, /recv refused/);
      assert.equal(error.stages[0]!.signal, 'SIGPIPE');
      return true;
    },
  );
});

test('a middle stage dying fails the pipeline', async () => {
  await assert.rejects(
    runPipeline([
      stage('send', 'cat', '/dev/zero'),
      stage('buffer', 'sh', '-c', 'head -c 5000 >/dev/null; exit 7'),
      stage('recv', 'cat'),
    ]),
    (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.equal(error.failedStage.name, 'buffer');
      assert.match(error.message, /exit 7/);
      return true;
    },
  );
});

test('a missing binary is reported as "command not found" for its stage', async () => {
  await assert.rejects(
    runPipeline([stage('send', 'cat', '/dev/zero'), stage('mbuffer', 'no-such-binary-zr'), stage('recv', 'cat')]),
    (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.equal(error.failedStage.name, 'mbuffer');
      assert.match(error.message, /command not found/);
      return true;
    },
  );
});

test('abort kills every stage and rejects as interrupted, without hanging', async () => {
  const controller = new AbortController();
  const started = Date.now();
  setTimeout(() => controller.abort(), 300);
  await assert.rejects(
    runPipeline([stage('send', 'cat', '/dev/zero'), stage('recv', 'sh', '-c', 'cat >/dev/null')], {
      cancelSignal: controller.signal,
    }),
    (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.equal(error.code, 'EINTERRUPTED');
      return true;
    },
  );
  assert.ok(Date.now() - started < 5000);
});

test('a stop after the last stage ended well interrupts nothing; a stage that ends only when stopped does', async () => {
  // The sender closes its output at once, so the receiver ends well; the sender itself lingers, then leaves
  // with 0 when told to stop, as a remote sh wrapper would.
  const lingeringSend = stage('send', 'sh', '-c', 'echo x; exec 1>&-; trap "exit 0" TERM; sleep 5 & wait');
  const stopAt = (ms: number) => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), ms);
    return { cancelSignal: controller.signal };
  };
  const outcomes = await runPipeline([lingeringSend, stage('recv', 'sh', '-c', 'cat >/dev/null')], stopAt(300));
  assert.deepEqual(
    outcomes.map((outcome) => outcome.exitStatus),
    [0, 0],
  );
  const lingeringRecv = stage('recv', 'sh', '-c', 'cat >/dev/null; trap "exit 0" TERM; sleep 5 & wait');
  await assert.rejects(runPipeline([lingeringSend, lingeringRecv], stopAt(300)), { code: 'EINTERRUPTED' });
});

test('a stage that ignores SIGTERM is still killed after the grace period', async () => {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 200);
  await assert.rejects(
    runPipeline([stage('send', 'sh', '-c', 'trap "" TERM; while :; do sleep 0.1; done'), stage('recv', 'cat')], {
      cancelSignal: controller.signal,
    }),
    PipelineError,
  );
});

test('a consumer that fails names itself, even when the stage before it reported the broken pipe first', async () => {
  for (let round = 0; round < 5; round++) {
    await assert.rejects(
      runPipeline([
        stage('send', 'sh', '-c', 'yes'),
        // Like mbuffer: SIGPIPE ignored, it exits 1 on EPIPE, saying so, long before the consumer says why.
        stage('mbuffer', 'sh', '-c', 'trap "" PIPE; cat || { echo "mbuffer: error: Broken pipe" >&2; exit 1; }'),
        stage(
          'recv',
          'sh',
          '-c',
          'head -c 10 >/dev/null; exec 0<&-; sleep 0.3; echo "cannot receive: bad stream" >&2; exit 1',
        ),
      ]),
      (error: unknown) => {
        assert.ok(error instanceof PipelineError);
        assert.equal(error.failedStage.name, 'recv', error.message);
        assert.match(error.message, /cannot receive: bad stream/);
        return true;
      },
    );
  }
});

test('an ssh stage that exits 255 is named by why its connection went', async () => {
  const lost = {
    ...localEndpoint,
    label: 'alpha',
    isRemote: true,
    connectionLost: () => 'ssh connection to alpha lost: Timeout, server alpha not responding.',
  };
  await assert.rejects(
    runPipeline([
      {
        name: 'send',
        endpoint: lost,
        command: { argv: ['sh', '-c', 'echo "client_loop: send disconnect" >&2; exit 255'] },
      },
      stage(
        'recv',
        'sh',
        '-c',
        'cat >/dev/null; sleep 0.2; echo "cannot receive: failed to read from stream" >&2; exit 1',
      ),
    ]),
    (error: unknown) => {
      assert.ok(error instanceof PipelineError);
      assert.equal(error.failedStage.name, 'send');
      assert.match(
        error.message,
        /transfer failed: ssh connection to alpha lost: Timeout, server alpha not responding/,
      );
      return true;
    },
  );
});
