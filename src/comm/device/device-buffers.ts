/**
 * Device memory as a buffer kind of the exchange layer (comm/exchange-group.ts): copies are
 * device-to-device copies queued on a stream, scratch comes from the caching allocator and goes
 * back once that stream is done with it, and reductions are one rank-ordered kernel. Node-only.
 */
import { bytesPerElement } from '../../dtype.js';
import type { CudaDevice, Stream } from '../../device/device.js';
import { type DeviceArray, deviceByteLength, deviceSubarray } from '../../device/device-array.js';
import { tensorOpsFor } from '../../kernels/cuda/tensor-ops.js';
import type { BufferKind } from '../exchange-group.js';
import type { ProcessGroup } from '../process-group.js';

/**
 * A process group over device memory. Collectives are queued on `stream`: the handle resolves
 * once the collective is queued there, and its data is ready for any work ordered after it
 * (`otherStream.waitStream(group.stream)`); the host never waits for the device.
 */
export interface DeviceProcessGroup extends ProcessGroup<DeviceArray> {
  readonly device: CudaDevice;
  /** Where this rank's collectives are queued. */
  readonly stream: Stream;
  /** Where the distributed runtime queues this rank's compute. */
  readonly computeStream: Stream;
}

/** Structural test: is `g` a process group over device memory? */
export function isDeviceProcessGroup(g: unknown): g is DeviceProcessGroup {
  return typeof g === 'object' && g !== null && 'computeStream' in g && 'stream' in g && 'device' in g;
}

/** Device arrays whose copies and reductions are queued on `stream`. */
export function deviceBuffers(device: CudaDevice, stream: Stream): BufferKind<DeviceArray> {
  return {
    length: (b) => b.length,
    typeName: (b) => b.dtype,
    subarray: (b, start, end) => deviceSubarray(b, start, end),
    alloc: (like, length) => ({ buffer: device.alloc(length * bytesPerElement(like.dtype)), byteOffset: 0, length, dtype: like.dtype }),
    release: (b) => b.buffer.freeAfter(stream),
    copy: (dst, src) => dst.buffer.copyFrom(src.buffer, deviceByteLength(src), stream, src.byteOffset, dst.byteOffset),
    reduceInOrder: (dst, parts, P, op) => tensorOpsFor(device).reduceParts(dst, parts, P, op, stream),
    // Device arrays carry their dtype: 16-bit data needs no halfType.
    isHalfStorage: () => false,
  };
}
