/**
 * flexFlashAttn / flexFlashAttnBackward choose the backend from where the tensors live, with no
 * GPU: host Tensors go to the CPU backend; a fake device-tensor kind goes to the backend
 * registered for its location; mixing kinds, or device tensors with no backend, fail with errors
 * naming the argument. Also: the core entry's import graph never reaches the device layer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InvalidArgumentError } from '../src/errors.js';
import type { DType } from '../src/dtype.js';
import { Tensor } from '../src/tensor.js';
import type { FfaBackwardArgs, FfaForwardArgs } from '../src/kernels/backend.js';
import { cpuBackend } from '../src/kernels/cpu/index.js';
import {
  type DeviceKernelBackend,
  type FlexFlashAttnResult,
  flexFlashAttn,
  flexFlashAttnBackward,
  registerKernelBackend,
  selectKernelBackend,
} from '../src/kernels/flex-flash-attn.js';
import { repoRoot } from './util/paths.js';

/** A device-tensor kind that keeps its data on the host: enough to see where calls go. */
class FakeDeviceTensor {
  constructor(
    readonly host: Tensor,
    readonly location: string = 'fake',
  ) {}
  get shape(): readonly number[] {
    return this.host.shape;
  }
  get rank(): number {
    return this.host.rank;
  }
  get dtype(): DType {
    return this.host.dtype;
  }
}

const wrap = (t: Tensor): FakeDeviceTensor => new FakeDeviceTensor(t);
const unwrapOpt = (t: FakeDeviceTensor | undefined): Tensor | undefined => t?.host;

function fakeBackend(calls: string[]): DeviceKernelBackend<FakeDeviceTensor> {
  return {
    name: 'fake-gpu',
    location: 'fake',
    accepts: (t) => t instanceof FakeDeviceTensor && t.location === 'fake',
    forward(args: FfaForwardArgs<FakeDeviceTensor>) {
      calls.push('forward');
      const r = cpuBackend.forward({ ...args, q: args.q.host, k: args.k.host, v: args.v.host, sink: unwrapOpt(args.sink), outAcc: unwrapOpt(args.outAcc), lseAcc: unwrapOpt(args.lseAcc), maxLogitsAcc: unwrapOpt(args.maxLogitsAcc) });
      return { out: wrap(r.out), lse: wrap(r.lse) };
    },
    backward(args: FfaBackwardArgs<FakeDeviceTensor>) {
      calls.push('backward');
      const r = cpuBackend.backward({
        ...args, dout: args.dout.host, q: args.q.host, k: args.k.host, v: args.v.host, out: args.out.host, lse: args.lse.host,
        sink: unwrapOpt(args.sink), dqAcc: unwrapOpt(args.dqAcc), dkAcc: unwrapOpt(args.dkAcc), dvAcc: unwrapOpt(args.dvAcc),
      });
      return { dq: wrap(r.dq), dk: wrap(r.dk), dv: wrap(r.dv) };
    },
  };
}

function random(shape: number[], seed: number): Tensor {
  let a = seed;
  const n = shape.reduce((x, y) => x * y, 1);
  return Tensor.fromValues('float32', shape, Array.from({ length: n }, () => ((a = (a * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1));
}

const mask = { qRanges: [[0, 6]] as Array<[number, number]>, kRanges: [[0, 6]] as Array<[number, number]>, maskTypes: 'causal' };
const q = random([6, 2, 8], 1);
const k = random([6, 1, 8], 2);
const v = random([6, 1, 8], 3);

function invalid(argument: string, pattern?: RegExp): (e: unknown) => boolean {
  return (e: unknown) => e instanceof InvalidArgumentError && e.argument === argument && (pattern === undefined || pattern.test(e.message));
}

test('host tensors go to the CPU backend and come back as host Tensors', () => {
  const calls: string[] = [];
  const unregister = registerKernelBackend(fakeBackend(calls));
  const forward = cpuBackend.forward;
  let cpuCalls = 0;
  cpuBackend.forward = (args) => {
    cpuCalls++;
    return forward(args);
  };
  try {
    assert.equal(selectKernelBackend(q).name, 'cpu');
    const r: FlexFlashAttnResult<Tensor> = flexFlashAttn(q, k, v, mask);
    assert.ok(r.out instanceof Tensor && r.lse instanceof Tensor);
    assert.equal(cpuCalls, 1);
    assert.deepEqual(calls, []);
  } finally {
    cpuBackend.forward = forward;
    unregister();
  }
});

test('device-kind tensors go to the backend registered for their location, results in that kind', () => {
  const calls: string[] = [];
  const unregister = registerKernelBackend(fakeBackend(calls));
  try {
    const [fq, fk, fv] = [q, k, v].map(wrap);
    assert.equal(selectKernelBackend(fq).name, 'fake-gpu');
    const r: FlexFlashAttnResult<FakeDeviceTensor> = flexFlashAttn(fq, fk, fv, mask);
    assert.ok(r.out instanceof FakeDeviceTensor && r.lse instanceof FakeDeviceTensor);
    const want = flexFlashAttn(q, k, v, mask);
    assert.deepEqual(Array.from(r.out.host.data), Array.from(want.out.data));
    assert.deepEqual(Array.from(r.lse.host.data), Array.from(want.lse.data));
    const dout = random([6, 2, 8], 4);
    const g = flexFlashAttnBackward(wrap(dout), fq, fk, fv, r.out, r.lse, mask);
    assert.ok(g.dq instanceof FakeDeviceTensor && g.dk instanceof FakeDeviceTensor && g.dv instanceof FakeDeviceTensor);
    const gw = flexFlashAttnBackward(dout, q, k, v, want.out, want.lse, mask);
    assert.deepEqual(Array.from(g.dk.host.data), Array.from(gw.dk.data));
    assert.deepEqual(calls, ['forward', 'backward']);
    // The public rules still run first, on any kind.
    assert.throws(() => flexFlashAttn(fq, wrap(random([6, 3, 8], 5)), wrap(random([6, 3, 8], 5)), mask), (e: unknown) => e instanceof InvalidArgumentError && e.argument === 'k');
    assert.throws(() => flexFlashAttn(fq, fk, fv, { ...mask, softcap: -1 }), invalid('softcap'));
    assert.throws(() => flexFlashAttn(fq, fk, fv, { ...mask, backend: 'cpu' }), invalid('backend'));
  } finally {
    unregister();
  }
  assert.throws(() => selectKernelBackend(wrap(q)), invalid('q', /no kernel backend for 'fake' is registered/));
});

test('mixing host and device tensors is an error naming the argument', () => {
  const calls: string[] = [];
  const unregister = registerKernelBackend(fakeBackend(calls));
  try {
    const [fq, fk, fv] = [q, k, v].map(wrap);
    const mixed = /host and device tensors cannot be mixed/;
    assert.throws(() => flexFlashAttn(q, fk as unknown as Tensor, v, mask), invalid('k', mixed));
    assert.throws(() => flexFlashAttn(fq, fk, v as unknown as FakeDeviceTensor, mask), invalid('v', mixed));
    assert.throws(() => flexFlashAttn(fq, fk, fv, { ...mask, out: Tensor.zeros('float32', [6, 2, 8]) as unknown as FakeDeviceTensor, lse: wrap(Tensor.zeros('float32', [6, 2])) }), invalid('out', mixed));
    assert.throws(() => flexFlashAttn(q, k, v, { ...mask, sink: wrap(Tensor.zeros('float32', [1, 2])) as unknown as Tensor }), invalid('sink', mixed));
    const r = flexFlashAttn(q, k, v, mask);
    assert.throws(() => flexFlashAttnBackward(wrap(r.out) as unknown as Tensor, q, k, v, r.out, r.lse, mask), invalid('dout', mixed));
    assert.throws(() => flexFlashAttn(fq, new FakeDeviceTensor(k, 'other'), fv, mask), invalid('k', /on 'fake'/));
    assert.deepEqual(calls, []);
  } finally {
    unregister();
  }
});

test("device tensors with no registered backend: the error says to import 'magi-attention/device'", () => {
  const cuda = (t: Tensor): FakeDeviceTensor => new FakeDeviceTensor(t, 'cuda');
  assert.throws(() => flexFlashAttn(cuda(q), cuda(k), cuda(v), mask), invalid('q', /import 'magi-attention\/device'/));
  const r = flexFlashAttn(q, k, v, mask);
  assert.throws(() => flexFlashAttnBackward(cuda(r.out), cuda(q), cuda(k), cuda(v), cuda(r.out), cuda(r.lse), mask), invalid('q', /import 'magi-attention\/device'/));
  const other = (t: Tensor): FakeDeviceTensor => new FakeDeviceTensor(t, 'tpu');
  assert.throws(() => flexFlashAttn(other(q), other(k), other(v), mask), invalid('q', /no kernel backend for 'tpu'/));
  assert.throws(() => flexFlashAttn({} as Tensor, k, v, mask), invalid('q'));
});

test('the core entry never imports the device layer or koffi (value imports, transitively)', () => {
  const root = repoRoot;
  const seen = new Set<string>();
  const offenders: string[] = [];
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    // Value imports and re-exports; `import type` / `export type` are erased.
    for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+'([^']+)'/gms)) {
      const spec = m[1];
      if (spec === 'koffi') offenders.push(`${file} imports koffi`);
      if (!spec.startsWith('.')) continue;
      const target = join(dirname(file), spec.replace(/\.js$/, '.ts'));
      if (target.includes(join('src', 'device'))) offenders.push(`${file} imports ${spec}`);
      visit(target);
    }
  };
  visit(join(root, 'src', 'index.ts'));
  assert.ok(seen.size > 20, `walked ${seen.size} modules`);
  assert.deepEqual(offenders, []);
});
