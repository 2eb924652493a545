/**
 * What every process of `magi-attn run --gpus N` starts with (not imported by anything): reads
 * RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT as torchrun sets them, opens GPU
 * LOCAL_RANK, gets the NCCL unique id from rank 0 over the TCP rendezvous, joins the NCCL group,
 * runs the rank script's default export `(group, args)` and reports the result (or the error) to
 * the launcher. When the launcher says another rank failed, the group is aborted and the process
 * exits naming that rank. MAGI_ATTN_LAUNCH_DRY=1 (tests without a GPU) skips CUDA and NCCL: the
 * script gets a group that only says who it is, with the rendezvous payload.
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { serializeError } from '../errors.js';
import { unwrapTensors, wrapTensors } from '../threads/transfer.js';
import { rendezvous } from './rendezvous.js';
import type { FromRankProcess, ToRankProcess } from './launch-gpus.js';

const env = process.env;
const num = (name: string): number => {
  const v = Number(env[name]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer (set by magi-attn run --gpus), got ${env[name]}`);
  return v;
};

function report(m: FromRankProcess): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) resolve();
    else process.send(m, () => resolve());
  });
}

const rank = num('RANK');
const size = num('WORLD_SIZE');
const localRank = num('LOCAL_RANK');
const timeoutMs = Number(env.MAGI_ATTN_TIMEOUT_MS ?? 60_000);
const dry = env.MAGI_ATTN_LAUNCH_DRY === '1';
let abortGroup: (rank: number, reason: string) => void = () => undefined;

process.on('message', (m: ToRankProcess) => {
  if (m.t !== 'abort') return;
  abortGroup(m.rank, m.reason);
  void report({ t: 'failed', error: { name: 'CommAbortedError', message: `rank ${rank} stopped: rank ${m.rank} failed: ${m.reason}`, causeRank: m.rank } }).then(() => process.exit(3));
});

try {
  const script = env.MAGI_ATTN_SCRIPT ?? '';
  const args = unwrapTensors(JSON.parse(env.MAGI_ATTN_ARGS ?? '[]'));
  let group: object;
  if (dry) {
    const id = await rendezvous({ rank, size, addr: env.MASTER_ADDR ?? '127.0.0.1', port: num('MASTER_PORT'), timeoutMs, ...(rank === 0 ? { payload: randomBytes(128) } : {}) });
    group = { rank, size, name: 'dry', backend: 'dry', timeoutMs, localRank, rendezvousPayload: Buffer.from(id).toString('hex') };
  } else {
    const { CudaDevice } = await import('../../device/device.js');
    const { ncclLib } = await import('../device/nccl-lib.js');
    const { NcclProcessGroup } = await import('../device/nccl-group.js');
    const device = CudaDevice.open(localRank);
    const lib = ncclLib();
    const id = await rendezvous({ rank, size, addr: env.MASTER_ADDR ?? '127.0.0.1', port: num('MASTER_PORT'), timeoutMs, ...(rank === 0 ? { payload: lib.getUniqueId() } : {}) });
    const nccl = await NcclProcessGroup.create({
      device,
      rank,
      size,
      uniqueId: id,
      timeoutMs,
      onFatal: (e) => void report({ t: 'failed', error: serializeError(e) }).then(() => process.exit(1)),
    });
    abortGroup = (r, reason) => nccl.abort(r, reason);
    group = nccl;
  }
  const mod = (await import(pathToFileURL(script).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') throw new TypeError(`${script} must export a default function (group, args) => result`);
  const value: unknown = await (mod.default as (g: object, a: unknown) => unknown)(group, args);
  (group as { close?: () => void }).close?.();
  await report({ t: 'result', value: wrapTensors(value) });
  process.exit(0);
} catch (e) {
  await report({ t: 'failed', error: serializeError(e) });
  process.exit(1);
}
