/**
 * Link presets: how fast one GPU moves bytes to a peer in its node and to a peer in another node.
 * Figures are peak link rates per GPU and per direction (send and receive run at once), as their
 * vendors state them; achieved all-to-all bandwidth is lower, so predicted transfer times are lower
 * bounds. A preset is plain data, so a user value is just another one.
 */
import { InvalidArgumentError } from '../errors.js';

export interface LinkModel {
  readonly name: string;
  /** Ranks that share the fast intra-node link (ranks r and s are in one node when floor(r/g) = floor(s/g)). */
  readonly gpusPerNode: number;
  /** Bytes per second, per GPU and direction, to a peer in the same node. */
  readonly intraNodeBytesPerSecond: number;
  /** Bytes per second, per GPU and direction, to a peer in another node. */
  readonly interNodeBytesPerSecond: number;
  /** Where the figures come from. */
  readonly source: string;
}

/**
 * NVLink 4 on H100 / H200 SXM: 18 links, 900 GB/s per GPU in total, i.e. 450 GB/s each way
 * (NVIDIA H100 and H200 Tensor Core GPU datasheets: "NVLink: 900GB/s").
 */
export const NVLINK4_BYTES_PER_SECOND = 450e9;

/**
 * InfiniBand NDR: 400 Gb/s per port, one ConnectX-7 port per GPU in a DGX H100 / H200
 * (NVIDIA DGX H100/H200 user guide: "8x single-port ConnectX-7 ... 400Gb/s"), i.e. 50 GB/s each way.
 */
export const IB_NDR_BYTES_PER_SECOND = 400e9 / 8;

export const LINK_PRESETS = {
  /** DGX-style nodes of 8 GPUs: NVLink 4 inside a node, InfiniBand NDR between nodes. */
  'nvlink-ib': {
    name: 'nvlink-ib',
    gpusPerNode: 8,
    intraNodeBytesPerSecond: NVLINK4_BYTES_PER_SECOND,
    interNodeBytesPerSecond: IB_NDR_BYTES_PER_SECOND,
    source: 'nodes of 8 GPUs; NVLink 4 450 GB/s per direction (H100/H200 datasheets), InfiniBand NDR 400 Gb/s per GPU (DGX H100/H200 user guide)',
  },
  /** Every rank in one NVLink domain (an upper bound: H100/H200 nodes hold 8 GPUs). */
  nvlink: {
    name: 'nvlink',
    gpusPerNode: Number.MAX_SAFE_INTEGER,
    intraNodeBytesPerSecond: NVLINK4_BYTES_PER_SECOND,
    interNodeBytesPerSecond: NVLINK4_BYTES_PER_SECOND,
    source: 'all ranks on NVLink 4, 450 GB/s per direction (H100/H200 datasheets)',
  },
  /** Every peer over InfiniBand NDR (one GPU per node). */
  ib: {
    name: 'ib',
    gpusPerNode: 1,
    intraNodeBytesPerSecond: IB_NDR_BYTES_PER_SECOND,
    interNodeBytesPerSecond: IB_NDR_BYTES_PER_SECOND,
    source: 'all peers over InfiniBand NDR 400 Gb/s per GPU (DGX H100/H200 user guide)',
  },
} as const satisfies Record<string, LinkModel>;

export type LinkPresetName = keyof typeof LINK_PRESETS;
export const LINK_PRESET_NAMES = Object.keys(LINK_PRESETS) as LinkPresetName[];

/** A user's own figure: one bandwidth (GB/s per direction) for every peer. */
export function userLink(gigabytesPerSecond: number): LinkModel {
  if (!(Number.isFinite(gigabytesPerSecond) && gigabytesPerSecond > 0)) {
    throw new InvalidArgumentError('bandwidth', 'must be a positive number of GB/s', `got ${gigabytesPerSecond}`);
  }
  const b = gigabytesPerSecond * 1e9;
  return { name: `${gigabytesPerSecond} GB/s`, gpusPerNode: Number.MAX_SAFE_INTEGER, intraNodeBytesPerSecond: b, interNodeBytesPerSecond: b, source: 'user value' };
}

export function linkPreset(name: string): LinkModel {
  const p = (LINK_PRESETS as Record<string, LinkModel>)[name];
  if (p === undefined) throw new InvalidArgumentError('link', `must be one of ${LINK_PRESET_NAMES.join(', ')} or a number of GB/s`, `got ${name}`);
  return p;
}

/** A preset name, or a number (GB/s) for a user value. */
export function parseLink(value: string): LinkModel {
  const n = Number(value);
  return value.trim() !== '' && Number.isFinite(n) ? userLink(n) : linkPreset(value);
}

export function sameNode(link: LinkModel, a: number, b: number): boolean {
  return Math.floor(a / link.gpusPerNode) === Math.floor(b / link.gpusPerNode);
}

/**
 * Seconds for one rank's part of an exchange: intra- and inter-node traffic run on their own links
 * at once, and so do sending and receiving.
 */
export function transferSeconds(link: LinkModel, bytes: { intraSend: number; intraRecv: number; interSend: number; interRecv: number }): number {
  return Math.max(
    Math.max(bytes.intraSend, bytes.intraRecv) / link.intraNodeBytesPerSecond,
    Math.max(bytes.interSend, bytes.interRecv) / link.interNodeBytesPerSecond,
  );
}
