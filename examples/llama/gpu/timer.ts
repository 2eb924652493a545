/**
 * Attention's share of a GPU training step: CUDA events recorded around every attention call on
 * the default stream (where the step's kernels run), summed when the step is done.
 */
import type { CudaDevice, DeviceTensor, Event } from 'magi-attention/device';
import type { Attention } from '../attention.js';
import type { AttentionTimer } from '../experiments.js';

export function eventAttentionTimer(device: CudaDevice): AttentionTimer<DeviceTensor> {
  const pairs: Array<[Event, Event]> = [];
  const timed = async <R>(fn: () => Promise<R>): Promise<R> => {
    const start = device.createEvent().record();
    const r = await fn();
    pairs.push([start, device.createEvent().record()]);
    return r;
  };
  return {
    wrap: (a: Attention<DeviceTensor>): Attention<DeviceTensor> => ({
      name: a.name,
      forward: (q, k, v) => timed(() => a.forward(q, k, v)),
      backward: (dout, q, k, v, fwd, grads) => timed(() => a.backward(dout, q, k, v, fwd, grads)),
      dispose: () => a.dispose?.(),
    }),
    take: () => {
      let ms = 0;
      for (const [s, e] of pairs) {
        ms += e.elapsedSince(s);
        s.destroy();
        e.destroy();
      }
      pairs.length = 0;
      return ms;
    },
  };
}
