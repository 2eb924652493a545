/** Benchmark inputs shared by bench/kernel/run.ts and bench/kernel-fwd-gpu.ts. */

/** Random finite bf16 bits in ±1 (a 1M-element random pattern repeated with a shifting offset). */
export function randomBf16(n: number, seed: number): Uint16Array {
  const pattern = new Uint16Array(1 << 20);
  let s = seed >>> 0 || 1;
  const f = new Float32Array(1);
  const u32 = new Uint32Array(f.buffer);
  for (let i = 0; i < pattern.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const u = ((s >>> 0) / 4294967296) * 2 - 1;
    f[0] = u === 0 ? 0.5 : u;
    pattern[i] = u32[0] >>> 16;
  }
  const out = new Uint16Array(n);
  for (let off = 0, r = 0; off < n; off += pattern.length, r++) {
    const len = Math.min(pattern.length, n - off);
    const shift = (r * 7919) % pattern.length;
    out.set(pattern.subarray(shift, Math.min(pattern.length, shift + len)), off);
    const done = Math.min(pattern.length - shift, len);
    if (done < len) out.set(pattern.subarray(0, len - done), off + done);
  }
  return out;
}
