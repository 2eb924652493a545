/**
 * Reference models of GroupCast / GroupReduce on plain per-rank arrays, for tests: the semantics
 * written the slow, obvious way (through matchGroupCast's ordering contract), and an in-memory
 * run of the all-to-all-v lowering, which must agree with them.
 */
import { InvalidArgumentError } from '../../src/errors.js';
import { matchGroupCast, type A2AVLowering, type GroupCastArgs, type GroupReduceArgs } from '../../src/comm/group-collective-args.js';

function prefix(sizes: ArrayLike<number>): number[] {
  const out = [0];
  for (let i = 0; i < sizes.length; i++) out.push(out[i] + sizes[i]);
  return out;
}

/** GroupCast on plain per-rank row arrays (any row values): the semantics, for tests and checks. */
export function simulateGroupCast<T>(inputs: readonly (readonly T[])[], args: readonly GroupCastArgs[]): T[][] {
  const match = matchGroupCast(args);
  const inOff = args.map((a) => prefix(a.inputSplitSizes));
  return args.map((a, r) => {
    const out: T[] = [];
    match[r].forEach(([s, i]) => {
      out.push(...inputs[s].slice(inOff[s][i], inOff[s][i + 1]));
    });
    if (out.length !== a.outputSplitSizes.reduce((x, y) => x + y, 0)) throw new InvalidArgumentError(`rank ${r}`, 'output splits must add up to the received rows');
    return out;
  });
}

/**
 * GroupReduce on per-rank arrays of one number per row: every input split is reduced into the
 * output split of its destination that the mirrored ordering contract matches. 'sum' adds onto
 * the old value; 'avg' averages with the old value counted as one contributor.
 */
export function simulateGroupReduce(
  inputs: readonly (readonly number[])[],
  outputs: readonly (readonly number[])[],
  args: readonly GroupReduceArgs[],
  op: 'sum' | 'avg' = 'sum',
): number[][] {
  // A GroupReduce is the reverse of the GroupCast with the transposed arguments.
  const cast: GroupCastArgs[] = args.map((a) => ({ inputSplitSizes: a.outputSplitSizes, dstIndices: a.srcIndices, outputSplitSizes: a.inputSplitSizes, srcIndex: a.dstIndex }));
  const match = matchGroupCast(cast);
  const inOff = args.map((a) => prefix(a.inputSplitSizes));
  const outOff = args.map((a) => prefix(a.outputSplitSizes));
  const result = outputs.map((o) => [...o]);
  const contributors = outputs.map((o) => new Array<number>(o.length).fill(0));
  // cast rank r's output split j (= reduce input split j of r) came from cast input split i of s
  // (= reduce output split i of s): reduce r's input split j into s's output split i.
  match.forEach((splits, r) =>
    splits.forEach(([s, i], j) => {
      for (let x = 0; x < args[r].inputSplitSizes[j]; x++) {
        result[s][outOff[s][i] + x] += inputs[r][inOff[r][j] + x];
        contributors[s][outOff[s][i] + x]++;
      }
    }),
  );
  if (op === 'avg') result.forEach((o, s) => o.forEach((v, x) => (o[x] = contributors[s][x] > 0 ? v / (1 + contributors[s][x]) : v)));
  return result;
}

/**
 * GroupReduce with op 'lse' on one (out, lse) pair per row: the log-sum-exp weighted merge of the
 * old (out, lse) with every contribution.
 */
export function simulateGroupReduceLse(
  inputs: readonly { out: readonly number[]; lse: readonly number[] }[],
  outputs: readonly { out: readonly number[]; lse: readonly number[] }[],
  args: readonly GroupReduceArgs[],
): Array<{ out: number[]; lse: number[] }> {
  const cast: GroupCastArgs[] = args.map((a) => ({ inputSplitSizes: a.outputSplitSizes, dstIndices: a.srcIndices, outputSplitSizes: a.inputSplitSizes, srcIndex: a.dstIndex }));
  const match = matchGroupCast(cast);
  const inOff = args.map((a) => prefix(a.inputSplitSizes));
  const outOff = args.map((a) => prefix(a.outputSplitSizes));
  const parts = outputs.map((o) => o.out.map((v, x) => [[v, o.lse[x]]] as Array<[number, number]>));
  match.forEach((splits, r) =>
    splits.forEach(([s, i], j) => {
      for (let x = 0; x < args[r].inputSplitSizes[j]; x++) parts[s][outOff[s][i] + x].push([inputs[r].out[inOff[r][j] + x], inputs[r].lse[inOff[r][j] + x]]);
    }),
  );
  return parts.map((rows) => {
    const out: number[] = [];
    const lse: number[] = [];
    for (const row of rows) {
      const m = Math.max(...row.map((p) => p[1]));
      if (m === -Infinity) {
        out.push(row[0][0]);
        lse.push(-Infinity);
        continue;
      }
      const L = m + Math.log(row.reduce((acc, p) => acc + Math.exp(p[1] - m), 0));
      out.push(row.reduce((acc, p) => acc + (p[1] === -Infinity ? 0 : Math.exp(p[1] - L) * p[0]), 0));
      lse.push(L);
    }
    return { out, lse };
  });
}

/**
 * Runs lowered collectives on plain per-rank row arrays with an in-memory all-to-all-v; 'cast'
 * places rows, 'reduce' adds them onto `outputs`. For tests: it must agree with the simulators.
 */
export function runLoweredA2AV(lowerings: readonly A2AVLowering[], inputs: readonly (readonly number[])[], outputs: readonly (readonly number[])[], mode: 'cast' | 'reduce'): number[][] {
  const P = lowerings.length;
  const sendBufs = lowerings.map((l, r) => {
    const buf: number[] = [];
    for (let i = 0; i < l.sendGather.length; i += 2) buf.push(...inputs[r].slice(l.sendGather[i], l.sendGather[i + 1]));
    return buf;
  });
  const sendOff = lowerings.map((l) => prefix(l.sendCounts));
  return lowerings.map((l, r) => {
    const recvBuf: number[] = [];
    for (let s = 0; s < P; s++) {
      const rows = sendBufs[s].slice(sendOff[s][r], sendOff[s][r + 1]);
      if (rows.length !== l.recvCounts[s]) throw new InvalidArgumentError(`rank ${r} recvCounts[${s}]`, 'must equal what the sender packs for it', `${l.recvCounts[s]} vs ${rows.length}`);
      recvBuf.push(...rows);
    }
    const out = [...outputs[r]];
    for (let i = 0; i < l.recvPlace.length; i += 3) {
      for (let x = 0; x < l.recvPlace[i + 2]; x++) {
        if (mode === 'cast') out[l.recvPlace[i + 1] + x] = recvBuf[l.recvPlace[i] + x];
        else out[l.recvPlace[i + 1] + x] += recvBuf[l.recvPlace[i] + x];
      }
    }
    return out;
  });
}
