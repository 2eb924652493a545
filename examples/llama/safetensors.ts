/**
 * The safetensors file format (the Hugging Face checkpoint format): an 8-byte little-endian
 * header length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian data. Checkpoints, the token corpus and the twin's gradients travel in it, so
 * PyTorch reads what we write with `safetensors.torch.load_file` and we read what it writes.
 * Tensors are written and read one by one (a 1 GB checkpoint never sits in one buffer).
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { InvalidArgumentError } from 'magi-attention';

/** The dtypes we read and write; BF16 and F16 travel as their raw 16-bit patterns. */
export type SafeDtype = 'F64' | 'F32' | 'BF16' | 'F16' | 'I32' | 'I64';

type DataFor<D extends SafeDtype> = D extends 'F64' ? Float64Array : D extends 'F32' ? Float32Array : D extends 'I32' ? Int32Array : D extends 'I64' ? BigInt64Array : Uint16Array;

export interface SafeTensor<D extends SafeDtype = SafeDtype> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: DataFor<D>;
}

const BYTES: Record<SafeDtype, number> = { F64: 8, F32: 4, BF16: 2, F16: 2, I32: 4, I64: 8 };

function alloc(dtype: SafeDtype, n: number): SafeTensor['data'] {
  switch (dtype) {
    case 'F64':
      return new Float64Array(n);
    case 'F32':
      return new Float32Array(n);
    case 'I32':
      return new Int32Array(n);
    case 'I64':
      return new BigInt64Array(n);
    default:
      return new Uint16Array(n);
  }
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Writes `tensors` (in the given order) and string metadata to `path`. */
export function writeSafetensors(path: string, tensors: ReadonlyArray<readonly [string, SafeTensor]>, metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const [name, t] of tensors) {
    if (seen.has(name) || name === '__metadata__') throw new InvalidArgumentError('tensors', 'names must be unique and not __metadata__', `got ${name}`);
    seen.add(name);
    if (!(t.dtype in BYTES)) throw new InvalidArgumentError(`${name}.dtype`, `must be one of ${Object.keys(BYTES).join(', ')}`, `got ${t.dtype}`);
    const n = elementCount(t.shape);
    if (t.data.length !== n) throw new InvalidArgumentError(`${name}.data`, 'length must equal the product of the shape', `${t.data.length} vs [${t.shape.join(', ')}]`);
    const bytes = n * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // data starts 8-byte aligned
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8);
  const fd = openSync(path, 'w');
  try {
    writeAll(fd, head);
    for (const [, t] of tensors) writeAll(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  const CHUNK = 1 << 26;
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, Math.min(CHUNK, bytes.length - at));
}

export interface SafetensorsFile {
  readonly metadata: Record<string, string>;
  readonly tensors: Map<string, SafeTensor>;
}

/** Reads every tensor of a safetensors file (or only those `names` lists). */
export function readSafetensors(path: string, names?: readonly string[]): SafetensorsFile {
  const fd = openSync(path, 'r');
  try {
    const lenBuf = Buffer.alloc(8);
    readExactly(fd, lenBuf, 0, path);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || headerLen > 1 << 27) throw new InvalidArgumentError('path', 'is not a safetensors file (bad header length)', `${path}: ${headerLen}`);
    const headBuf = Buffer.alloc(headerLen);
    readExactly(fd, headBuf, 8, path);
    const header = JSON.parse(headBuf.toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> & {
      __metadata__?: Record<string, string>;
    };
    const tensors = new Map<string, SafeTensor>();
    const wanted = names === undefined ? null : new Set(names);
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      if (wanted !== null && !wanted.has(name)) continue;
      const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
      if (!(e.dtype in BYTES)) throw new InvalidArgumentError(name, `has dtype ${e.dtype}; this reader takes ${Object.keys(BYTES).join(', ')}`);
      const dtype = e.dtype as SafeDtype;
      const n = elementCount(e.shape);
      const [begin, end] = e.data_offsets;
      if (end - begin !== n * BYTES[dtype]) throw new InvalidArgumentError(name, 'byte range does not match its shape and dtype', `${end - begin} bytes for [${e.shape.join(', ')}] ${dtype}`);
      const data = alloc(dtype, n);
      readExactly(fd, new Uint8Array(data.buffer), 8 + headerLen + begin, path);
      tensors.set(name, { dtype, shape: e.shape, data } as SafeTensor);
    }
    if (wanted !== null) for (const n of wanted) if (!tensors.has(n)) throw new InvalidArgumentError('names', `${path} has no tensor named ${n}`);
    return { metadata: header.__metadata__ ?? {}, tensors };
  } finally {
    closeSync(fd);
  }
}

function readExactly(fd: number, into: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, Math.min(1 << 26, into.length - done), position + done);
    if (n === 0) throw new InvalidArgumentError('path', 'is truncated', `${path}: wanted ${into.length} bytes at ${position}`);
    done += n;
  }
}
