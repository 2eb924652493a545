/**
 * A flat, typed view of device memory: what the device process groups move (the device twin of a
 * host typed array; counts and offsets are in elements). A DeviceTensor gives one with
 * `deviceArrayOf`; views share the tensor's memory.
 */
import { type DType, bytesPerElement } from '../dtype.js';
import { InvalidArgumentError } from '../errors.js';
import type { CuDevicePtr } from './cuda-driver.js';
import type { DeviceBuffer } from './device.js';
import type { DeviceTensor } from './device-tensor.js';

export interface DeviceArray {
  readonly buffer: DeviceBuffer;
  /** Offset of element 0 in the buffer, in bytes. */
  readonly byteOffset: number;
  /** Number of elements. */
  readonly length: number;
  readonly dtype: DType;
}

/** All elements of a device tensor, as a flat view. */
export function deviceArrayOf(t: DeviceTensor): DeviceArray {
  return { buffer: t.buffer, byteOffset: 0, length: t.size, dtype: t.dtype };
}

/** Elements [start, end) of `a`, sharing its memory. */
export function deviceSubarray(a: DeviceArray, start: number, end: number): DeviceArray {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > a.length) {
    throw new InvalidArgumentError('range', `must satisfy 0 <= start <= end <= ${a.length}`, `got [${start}, ${end})`);
  }
  return { buffer: a.buffer, byteOffset: a.byteOffset + start * bytesPerElement(a.dtype), length: end - start, dtype: a.dtype };
}

/** The device address of element 0. */
export function devicePtr(a: DeviceArray): CuDevicePtr {
  return a.buffer.ptr + BigInt(a.byteOffset);
}

export function deviceByteLength(a: DeviceArray): number {
  return a.length * bytesPerElement(a.dtype);
}
