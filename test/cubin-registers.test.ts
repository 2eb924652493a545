/**
 * scripts/cubin-registers.ts (check-cuda.sh's register report for setmaxnreg kernels) on a
 * hand-built ELF64 image: one entry section of known instructions, so that the field positions it
 * reads (opcode bits 0-11, destination register bits 16-23) and the instructions it skips or
 * counts are pinned. The real cubins are checked by check-cuda.sh against ptxas (the file's header).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cubinEventOrder, cubinRegisterUse, formatEventRuns, formatRegisterUse } from '../scripts/cubin-registers.js';

/** An ELF64 image whose sections are the null section, .shstrtab and one `.text.<name>` per entry. */
function elf(entries: Array<{ name: string; instructions: Array<{ op: number; rd: number; word1?: number; word2?: number }> }>): Uint8Array {
  const names = ['', '.shstrtab', ...entries.map((e) => `.text.${e.name}`)];
  const strtab = Buffer.from(names.map((n) => `${n}\0`).join(''), 'latin1');
  const nameOff = names.map((_, i) => names.slice(0, i).reduce((a, n) => a + n.length + 1, 0));
  const texts = entries.map((e) => {
    const b = Buffer.alloc(16 * e.instructions.length);
    e.instructions.forEach(({ op, rd, word1 = 0, word2 = 0 }, i) => {
      b.writeUInt32LE((op | (rd << 16)) >>> 0, 16 * i);
      b.writeUInt32LE(word1 >>> 0, 16 * i + 4);
      b.writeUInt32LE(word2 >>> 0, 16 * i + 8);
    });
    return b;
  });
  const datas = [Buffer.alloc(0), strtab, ...texts];
  const offsets: number[] = [];
  let at = 64;
  for (const d of datas) {
    offsets.push(at);
    at += d.length;
  }
  const shoff = at;
  const image = Buffer.alloc(shoff + 64 * datas.length);
  image.writeUInt32BE(0x7f454c46, 0);
  image[4] = 2; // ELF64
  image[5] = 1; // little-endian
  image.writeBigUInt64LE(BigInt(shoff), 0x28);
  image.writeUInt16LE(64, 0x3a);
  image.writeUInt16LE(datas.length, 0x3c);
  image.writeUInt16LE(1, 0x3e);
  datas.forEach((d, i) => {
    d.copy(image, offsets[i]);
    const h = shoff + 64 * i;
    image.writeUInt32LE(nameOff[i], h);
    image.writeBigUInt64LE(BigInt(offsets[i]), h + 24);
    image.writeBigUInt64LE(BigInt(d.length), h + 32);
  });
  return image;
}

test('cubinRegisterUse: highest register written, branches skipped, spills and wgmma counted per entry', () => {
  const image = elf([
    {
      name: 'consumer_kernel',
      instructions: [
        { op: 0x223, rd: 200 }, // an FFMA into R200
        { op: 0x947, rd: 250 }, // a branch: its offset bits are no register
        { op: 0x950, rd: 240 }, // other control flow, skipped too
        { op: 0x983, rd: 7 }, // LDL into R7
        { op: 0x387, rd: 255 }, // STL (no destination)
        { op: 0x9f0, rd: 24 }, // HGMMA, A in shared memory
        { op: 0xdf0, rd: 88 }, // HGMMA, A in registers
        { op: 0x20c, rd: 255 }, // RZ is no register
      ],
    },
    { name: 'empty_kernel', instructions: [{ op: 0x94d, rd: 0 }] },
  ]);
  const [a, b] = cubinRegisterUse(image);
  assert.deepEqual(a, { name: 'consumer_kernel', instructions: 8, highestRegister: 200, localLoads: 1, localStores: 1, wgmmaShared: 1, wgmmaRegisters: 1 });
  assert.deepEqual(b, { name: 'empty_kernel', instructions: 1, highestRegister: -1, localLoads: 0, localStores: 0, wgmmaShared: 0, wgmmaRegisters: 0 });
  assert.equal(formatRegisterUse(a), 'consumer_kernel: highest register written R200, 1 local loads / 1 stores, 8 instructions, wgmma 1 + 1 (A in shared memory + registers)');
  assert.equal(formatRegisterUse(b), 'empty_kernel: no register written, 0 local loads / 0 stores, 1 instructions');
});

test('cubinRegisterUse: an image that is not a little-endian ELF64 is an error', () => {
  assert.throws(() => cubinRegisterUse(new Uint8Array(100)), /not a little-endian ELF64 image/);
  const big = elf([{ name: 'k', instructions: [] }]);
  big[5] = 2; // big-endian
  assert.throws(() => cubinRegisterUse(big), /not a little-endian ELF64 image/);
});

test('cubinEventOrder: wgmma issues, waits with their pending count, and exp2 (not other MUFU) in address order', () => {
  const image = elf([
    {
      name: 'fwd',
      instructions: [
        { op: 0x9f0, rd: 88 }, // HGMMA, A in shared memory
        { op: 0xdf0, rd: 24 }, // HGMMA, A in registers
        { op: 0x9c5, rd: 0 }, // WARPGROUP.ARRIVE: bit 47 clear, not a wait
        { op: 0x9c5, rd: 0, word1: 0x8000, word2: 0x10100 }, // WARPGROUP.DEPBAR.LE gsb0, 0x1
        { op: 0x308, rd: 30, word2: 0x800 }, // MUFU.EX2
        { op: 0x308, rd: 31, word2: 0x800 }, // MUFU.EX2
        { op: 0x308, rd: 32, word2: 0x1000 }, // MUFU.RCP: not followed
        { op: 0x9c5, rd: 0, word1: 0x8000, word2: 0x10000 }, // WARPGROUP.DEPBAR.LE gsb0, 0x0
        { op: 0x223, rd: 40 }, // an FFMA
      ],
    },
  ]);
  const events = cubinEventOrder(image, 'fwd');
  assert.deepEqual(events, [
    { at: 0, event: 'wgmma' },
    { at: 1, event: 'wgmma' },
    { at: 3, event: 'wait', pending: 1 },
    { at: 4, event: 'exp2' },
    { at: 5, event: 'exp2' },
    { at: 7, event: 'wait', pending: 0 },
  ]);
  assert.equal(formatEventRuns(events), '0 wgmma x2, 3 wait 1, 4 exp2 x2, 7 wait 0');
  assert.throws(() => cubinEventOrder(image, 'bwd'), /no entry point bwd/);
});
