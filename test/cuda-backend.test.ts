/**
 * The CUDA backend's option errors that need no GPU: the option checks that
 * flexFlashAttnCuda / flexFlashAttnBackwardCuda run before they touch any tensor. (The checks on
 * tensor-valued options and dtypes need DeviceTensors, so they run in
 * test/device/cuda-backend-gpu.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../src/errors.js';
import { cudaUnsupported } from '../src/kernels/cuda/backend.js';
import { checkCudaBackwardOptions, checkCudaForwardOptions } from '../src/kernels/cuda/flex-flash-attn-cuda.js';

const mask = { qRanges: [[0, 128]] as Array<[number, number]>, kRanges: [[0, 128]] as Array<[number, number]>, maskTypes: 'causal' };

test('cudaUnsupported names the option and says the CUDA backend does not support it yet', () => {
  const e = cudaUnsupported('sink', 'attention sinks');
  assert.ok(e instanceof InvalidArgumentError);
  assert.equal(e.message, 'sink: the CUDA backend does not support attention sinks yet');
});

test('forward options: out and lse accumulators must come together', () => {
  assert.throws(() => checkCudaForwardOptions({ ...mask, out: {} as never }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'lse');
  assert.throws(() => checkCudaForwardOptions({ ...mask, lse: {} as never }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'out');
});

test('options: tensor-valued options must be DeviceTensors', () => {
  assert.throws(() => checkCudaForwardOptions({ ...mask, sink: {} as never }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'sink');
  assert.throws(() => checkCudaBackwardOptions({ ...mask, dq: {} as never }), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'dq');
});

test('supported option values pass the option checks', () => {
  assert.doesNotThrow(() => checkCudaForwardOptions({ ...mask, deterministic: true, returnMaxLogits: true, softcap: 10, softmaxScale: 0.1 }));
  assert.doesNotThrow(() => checkCudaBackwardOptions({ ...mask, deterministic: true }));
});
