/**
 * What ptxas's "Used N registers" does not say about a warp-specialised Hopper kernel: how many
 * registers its code really uses once `setmaxnreg` has raised the consumers' budget. ptxas prints
 * the launch cap (168 for 384 threads and one block a multiprocessor), while the consumer code
 * after `setmaxnreg.inc 240` may use up to 240. This reads an sm_90 cubin (nvcc -cubin) and prints,
 * per entry point, the highest general register any instruction writes, the local-memory loads and
 * stores (spills), the wgmma instructions and the instruction count. No disassembler is needed
 * (there is none on the development machines).
 *
 *   node --import tsx scripts/cubin-registers.ts FILE.cubin...
 *
 * How the machine code is read (sm_90: 16-byte instructions, little-endian): the opcode is bits
 * 0-11 of the low word and the destination register bits 16-23 (255 = RZ, no register). Control
 * flow (opcodes 0x940-0x95f) keeps branch offsets there and is skipped. LDL 0x983 / STL 0x387 are
 * local-memory loads / stores; HGMMA is 0x9f0 (A from shared memory) and 0xdf0 (A from registers).
 * Checked against ptxas on this project's kernels (nvcc 13.0): with setmaxnreg taken out, the
 * highest register written stays under the 168 cap (R165) and LDL / STL appear exactly where
 * ptxas reports spill bytes; the wgmma counts equal the source's (the backward 32 + 8, the forward
 * 16 + 16 at head dim 128). A figure from another nvcc should be checked the same way.
 *
 *   node --import tsx scripts/cubin-registers.ts --order ENTRY FILE.cubin
 *
 * prints instead where ptxas put ENTRY's wgmma issues, wgmma waits and exp2 (MUFU.EX2), in address
 * order, as runs ("2013 wgmma x16, 2133 wait 1, 3392 wait 0, 3453 exp2 x66"): whether the machine
 * code keeps the softmax between two waits, which the PTX does not decide (bench/kernel/README.md,
 * "Hopper forward: where the softmax runs"). Read from the same fields plus two more, learned by
 * matching an ncu export's instruction text (ncu --page source --print-source sass) onto this
 * machine's nvcc 13.0 cubin of the same source, instruction by instruction: WARPGROUP.* is opcode
 * 0x9c5, a wait (DEPBAR.LE gsb0, N) when bit 47 is set (else ARRIVE), N in bits 72-79; MUFU is
 * 0x308, its function in bits 72-77 (EX2 8, RCP 16).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';

export interface EntryRegisterUse {
  /** The entry point (the `.text.NAME` section). */
  name: string;
  instructions: number;
  /** Highest general register written (R0 = 0); -1 when none is. */
  highestRegister: number;
  localLoads: number;
  localStores: number;
  /** wgmma instructions with A from shared memory / from registers. */
  wgmmaShared: number;
  wgmmaRegisters: number;
}

const OP_LDL = 0x983;
const OP_STL = 0x387;
const OP_HGMMA_SS = 0x9f0;
const OP_HGMMA_RS = 0xdf0;
const OP_WARPGROUP = 0x9c5;
const OP_MUFU = 0x308;
const MUFU_EX2 = 8;
const isControlFlow = (op: number): boolean => op >= 0x940 && op <= 0x95f;

/** The entry points' code sections (`.text.NAME`) of an sm_90 cubin (an ELF64 image). */
function entrySections(image: Uint8Array): Array<{ name: string; offset: number; instructions: number }> {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (image.length < 64 || v.getUint32(0, false) !== 0x7f454c46 || image[4] !== 2 || image[5] !== 1) {
    throw new Error('not a little-endian ELF64 image (a cubin from nvcc -cubin)');
  }
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  const shstrndx = v.getUint16(0x3e, true);
  const header = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    return { name: v.getUint32(at, true), offset: Number(v.getBigUint64(at + 24, true)), size: Number(v.getBigUint64(at + 32, true)) };
  };
  const strtab = header(shstrndx).offset;
  const nameAt = (off: number): string => {
    let end = strtab + off;
    while (image[end] !== 0) end++;
    return Buffer.from(image.subarray(strtab + off, end)).toString('latin1');
  };
  const out: Array<{ name: string; offset: number; instructions: number }> = [];
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    const section = nameAt(h.name);
    if (section.startsWith('.text.')) out.push({ name: section.slice(6), offset: h.offset, instructions: h.size >> 4 });
  }
  return out;
}

/** The register use of every entry point of an sm_90 cubin (an ELF64 image). */
export function cubinRegisterUse(image: Uint8Array): EntryRegisterUse[] {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const out: EntryRegisterUse[] = [];
  for (const h of entrySections(image)) {
    const e: EntryRegisterUse = { name: h.name, instructions: h.instructions, highestRegister: -1, localLoads: 0, localStores: 0, wgmmaShared: 0, wgmmaRegisters: 0 };
    for (let k = 0; k < e.instructions; k++) {
      const lo = v.getUint32(h.offset + 16 * k, true);
      const op = lo & 0xfff;
      if (op === OP_LDL) e.localLoads++;
      else if (op === OP_STL) e.localStores++;
      else if (op === OP_HGMMA_SS) e.wgmmaShared++;
      else if (op === OP_HGMMA_RS) e.wgmmaRegisters++;
      if (isControlFlow(op)) continue;
      const rd = (lo >>> 16) & 0xff;
      if (rd !== 255 && rd > e.highestRegister) e.highestRegister = rd;
    }
    out.push(e);
  }
  return out;
}

/** One of the instructions `--order` follows, at its index in the entry's code. */
export interface OrderEvent {
  at: number;
  event: 'wgmma' | 'wait' | 'exp2';
  /** wait: how many wgmma groups may still be pending (DEPBAR.LE gsb0, N) */
  pending?: number;
}

/** Where `entry`'s wgmma issues, wgmma waits and MUFU.EX2 lie, in address order. */
export function cubinEventOrder(image: Uint8Array, entry: string): OrderEvent[] {
  const h = entrySections(image).find((e) => e.name === entry);
  if (h === undefined) throw new Error(`no entry point ${entry} in this cubin (its .text.${entry} section)`);
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const out: OrderEvent[] = [];
  for (let k = 0; k < h.instructions; k++) {
    const at = h.offset + 16 * k;
    const lo = v.getUint32(at, true);
    const word1 = v.getUint32(at + 4, true);
    const word2 = v.getUint32(at + 8, true);
    const op = lo & 0xfff;
    if (op === OP_HGMMA_SS || op === OP_HGMMA_RS) out.push({ at: k, event: 'wgmma' });
    else if (op === OP_WARPGROUP && (word1 & (1 << 15)) !== 0) out.push({ at: k, event: 'wait', pending: (word2 >>> 8) & 0xff });
    else if (op === OP_MUFU && ((word2 >>> 8) & 0x3f) === MUFU_EX2) out.push({ at: k, event: 'exp2' });
  }
  return out;
}

/** The events as runs: "2013 wgmma x16, 2133 wait 1, 3392 wait 0, 3453 exp2 x66". */
export function formatEventRuns(events: readonly OrderEvent[]): string {
  const runs: string[] = [];
  for (let i = 0; i < events.length; ) {
    const e = events[i];
    if (e.event === 'wait') {
      runs.push(`${e.at} wait ${e.pending}`);
      i++;
      continue;
    }
    let j = i;
    while (j < events.length && events[j].event === e.event) j++;
    runs.push(`${e.at} ${e.event} x${j - i}`);
    i = j;
  }
  return runs.join(', ');
}

/** One line per entry point, as check-cuda.sh prints it. */
export function formatRegisterUse(e: EntryRegisterUse): string {
  const regs = e.highestRegister < 0 ? 'no register written' : `highest register written R${e.highestRegister}`;
  const wgmma = e.wgmmaShared + e.wgmmaRegisters > 0 ? `, wgmma ${e.wgmmaShared} + ${e.wgmmaRegisters} (A in shared memory + registers)` : '';
  return `${e.name}: ${regs}, ${e.localLoads} local loads / ${e.localStores} stores, ${e.instructions} instructions${wgmma}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const program = new Command()
    .name('cubin-registers')
    .argument('<cubin...>', 'sm_90 cubins (nvcc -cubin)')
    .option('--order <entry>', "print where this entry's wgmma issues, waits and exp2 lie instead")
    .parse();
  const files = program.args;
  const order = program.opts<{ order?: string }>().order;
  for (const file of files) {
    const prefix = files.length > 1 ? `${basename(file)}: ` : '';
    if (order !== undefined) console.log(`${prefix}${order}: ${formatEventRuns(cubinEventOrder(readFileSync(file), order))}`);
    else for (const e of cubinRegisterUse(readFileSync(file))) console.log(`${prefix}${formatRegisterUse(e)}`);
  }
}
