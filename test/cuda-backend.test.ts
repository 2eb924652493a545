/**
 * The CUDA backend's unsupported-option errors that need no GPU: the option checks that
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

function unsupported(option: string): (e: unknown) => boolean {
  return (e: unknown) =>
    e instanceof InvalidArgumentError && e.argument === option && e.message.startsWith(`${option}: `) && /the CUDA backend does not support .* yet/.test(e.message);
}

test('cudaUnsupported names the option and says the CUDA backend does not support it yet', () => {
  const e = cudaUnsupported('sink', 'attention sinks');
  assert.ok(e instanceof InvalidArgumentError);
  assert.equal(e.message, 'sink: the CUDA backend does not support attention sinks yet');
});

test('forward options: deterministic and returnMaxLogits throw the clear error', () => {
  assert.throws(() => checkCudaForwardOptions({ ...mask, deterministic: true }), unsupported('deterministic'));
  assert.throws(() => checkCudaForwardOptions({ ...mask, returnMaxLogits: true }), unsupported('returnMaxLogits'));
});

test('backward options: deterministic throws the clear error', () => {
  assert.throws(() => checkCudaBackwardOptions({ ...mask, deterministic: true }), unsupported('deterministic'));
});

test('supported option values pass the option checks', () => {
  assert.doesNotThrow(() => checkCudaForwardOptions({ ...mask, deterministic: false, returnMaxLogits: false, softcap: 10, softmaxScale: 0.1 }));
  assert.doesNotThrow(() => checkCudaBackwardOptions({ ...mask, deterministic: false }));
});
