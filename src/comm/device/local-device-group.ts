/**
 * cp ranks on one GPU, in one process: the device twin of the in-process host group
 * (comm/local-group.ts), with the same rendezvous, ordering, timeouts and errors. It exists
 * because NCCL (up to 2.29) refuses two ranks of one communicator on one GPU, and it is how the
 * GPU pipeline is tested at cp 2-8 on a one-GPU machine.
 *
 * All ranks share one communication stream and one compute stream: a collective's copies are
 * queued on the communication stream when the last rank reaches it, so they follow every rank's
 * earlier work there, and the ranks' kernels run in one stream order (which keeps shared kernel
 * scratch safe). Both streams are blocking streams, ordered against the legacy default stream.
 * Node-only.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { CudaDevice, Stream } from '../../device/device.js';
import type { DeviceArray } from '../../device/device-array.js';
import { bytesPerElement } from '../../dtype.js';
import { LocalExchangeGroup, LocalWorld, runRanksOf, type LocalRunOptions } from '../local-group.js';
import { type DeviceProcessGroup, deviceBuffers } from './device-buffers.js';

export class LocalDeviceGroup extends LocalExchangeGroup<DeviceArray> implements DeviceProcessGroup {
  override readonly backend = 'local-device';

  constructor(
    world: LocalWorld<DeviceArray>,
    rank: number,
    name: string,
    timeoutMs: number,
    readonly device: CudaDevice,
    readonly stream: Stream,
    readonly computeStream: Stream,
  ) {
    super(world, rank, name, timeoutMs, { buffer: device.alloc(0), byteOffset: 0, length: 0, dtype: 'float32' }, (b) => bytesPerElement(b.dtype));
  }

  /** Sub-groups share this group's device and streams (and its world's buffer kind). */
  protected override subGroup(world: LocalWorld<DeviceArray>, rank: number, name: string): LocalDeviceGroup {
    return new LocalDeviceGroup(world, rank, name, this.timeoutMs, this.device, this.stream, this.computeStream);
  }

  override split(color: number, key?: number): Promise<LocalDeviceGroup> {
    return super.split(color, key) as Promise<LocalDeviceGroup>;
  }
}

/** A world of `size` ranks on `device`, its groups in rank order, and the world (to abort it). */
function makeDeviceWorld(device: CudaDevice, size: number, options: LocalRunOptions): { world: LocalWorld<DeviceArray>; groups: LocalDeviceGroup[] } {
  if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError('size', 'must be a positive integer', `got ${size}`);
  const stream = device.createStream({ blocking: true });
  const computeStream = device.createStream({ blocking: true });
  const world = new LocalWorld<DeviceArray>(size, deviceBuffers(device, stream));
  const groups = Array.from({ length: size }, (_, r) => new LocalDeviceGroup(world, r, options.name ?? 'local-device', options.timeoutMs ?? 60_000, device, stream, computeStream));
  return { world, groups };
}

/** The groups of `size` cp ranks on one GPU; drive them concurrently (they meet at every collective). */
export function createLocalDeviceGroups(device: CudaDevice, size: number, options: LocalRunOptions = {}): LocalDeviceGroup[] {
  return makeDeviceWorld(device, size, options).groups;
}

/**
 * Runs `fn` on `size` cp ranks on one GPU concurrently and resolves with the results in rank
 * order; the first rank that throws aborts the others (RankFailedError names it).
 */
export function runLocalDeviceRanks<R>(device: CudaDevice, size: number, fn: (group: LocalDeviceGroup, rank: number) => R | Promise<R>, options: LocalRunOptions = {}): Promise<R[]> {
  const { world, groups } = makeDeviceWorld(device, size, options);
  return runRanksOf(world, groups, fn);
}
