/**
 * Hierarchical GroupCast (reference 03 §1.6) over a 2-D mesh of ranks: `nodes` × `ranksPerNode`,
 * rank = node · ranksPerNode + local index. A flat GroupCast sends a split once per destination,
 * so a split read by three ranks of another node crosses the inter-node links three times; the
 * hierarchical form sends it across once and relays it inside the node:
 *   pre-intra   the sends to ranks of the sender's own node, over the node's intra group;
 *   inter       one copy per destination node, to the rank with the sender's local index there
 *               (the relay), over the inter group of that local index;
 *   post-intra  each relay forwards what it received to the destinations in its node (itself
 *               included), over the intra group;
 * and each receiver gathers [pre-intra output ; post-intra output] into the flat output order,
 * so the stage buffer (and the slices that read it) are the flat plan's. The GroupReduce that
 * sends partial gradients back is the exact reverse: the post-intra partials are summed at the
 * relay first, so they too cross each inter-node link once.
 *
 * Built from the flat arguments of every rank of one collective (the ordering contract of
 * comm/group-collective-args.ts gives each receiver's splits their senders), so any flat
 * GroupCast can be made hierarchical. Pure and browser-safe.
 */
import { matchGroupCast, type GroupCastArgs } from '../comm/group-collective-args.js';
import { InvalidArgumentError } from '../errors.js';
import { RangeBuffer } from '../mask/range-list.js';

/** A 2-D mesh of ranks: rank = node · ranksPerNode + local index. */
export interface MeshShape {
  readonly nodes: number;
  readonly ranksPerNode: number;
}

/** One rank's part of a hierarchical GroupCast. */
export interface HierGroupCastArgs {
  /** Over the intra group (ranks are local indices); input: the rank's buffer (the flat input splits). */
  readonly preIntra: GroupCastArgs;
  /** Over the inter group (ranks are node indices); input: the rank's buffer; output: its relay buffer. */
  readonly inter: GroupCastArgs;
  /** Over the intra group; input: the relay buffer (inter's output splits). */
  readonly postIntra: GroupCastArgs;
  /** Ranges of [pre-intra output ; post-intra output], in the flat output order. */
  readonly placeRanges: Int32Array;
}

/** Throws unless `mesh` tiles `cpSize` ranks. */
export function checkMeshShape(mesh: MeshShape, cpSize: number, argument = 'mesh'): void {
  for (const f of ['nodes', 'ranksPerNode'] as const) {
    if (!Number.isSafeInteger(mesh[f]) || mesh[f] < 1) throw new InvalidArgumentError(`${argument}.${f}`, 'must be a positive integer', `got ${String(mesh[f])}`);
  }
  if (mesh.nodes * mesh.ranksPerNode !== cpSize) {
    throw new InvalidArgumentError(argument, 'must have nodes × ranksPerNode = cp size', `${mesh.nodes} × ${mesh.ranksPerNode} vs cp ${cpSize}`);
  }
}

const sum = (a: ArrayLike<number>): number => {
  let t = 0;
  for (let i = 0; i < a.length; i++) t += a[i];
  return t;
};

/** Every rank's hierarchical arguments for one flat GroupCast (all ranks' arguments, rank order). */
export function buildHierGroupCast(flat: readonly GroupCastArgs[], mesh: MeshShape): HierGroupCastArgs[] {
  const P = flat.length;
  checkMeshShape(mesh, P);
  const L = mesh.ranksPerNode;
  const node = (r: number): number => Math.floor(r / L);
  const loc = (r: number): number => r % L;
  const match = matchGroupCast(flat);

  // Senders: the same input splits, destinations split into own-node ranks and other nodes.
  const preDst: number[][][] = [];
  const interDst: number[][][] = [];
  for (let s = 0; s < P; s++) {
    const pre: number[][] = [];
    const inter: number[][] = [];
    for (const dsts of flat[s].dstIndices) {
      const p: number[] = [];
      const x: number[] = [];
      for (const d of dsts) {
        if (node(d) === node(s)) p.push(loc(d));
        else if (x[x.length - 1] !== node(d)) x.push(node(d)); // dsts ascend, so nodes do
      }
      pre.push(p);
      inter.push(x);
    }
    preDst.push(pre);
    interDst.push(inter);
  }

  // Relays: what each receives over inter, in (source node, source's input order), and where it goes.
  const relayIn: Array<{ sizes: number[]; srcs: number[]; from: number[]; split: number[] }> = Array.from({ length: P }, () => ({ sizes: [], srcs: [], from: [], split: [] }));
  for (let s = 0; s < P; s++) {
    interDst[s].forEach((nodes, i) => {
      for (const n of nodes) {
        const relay = relayIn[n * L + loc(s)];
        relay.sizes.push(flat[s].inputSplitSizes[i]);
        relay.srcs.push(node(s));
        relay.from.push(s);
        relay.split.push(i);
      }
    });
  }

  // Post-intra: relays of a node in local order, each relayed split to its destinations there.
  // cAt[d] maps (source rank, source split) to the offset of that split in d's post-intra output.
  const stride = Math.max(1, ...flat.map((a) => a.inputSplitSizes.length)) + 1;
  const postDst: number[][][] = Array.from({ length: P }, () => []);
  const postOut: Array<{ sizes: number[]; srcs: number[] }> = Array.from({ length: P }, () => ({ sizes: [], srcs: [] }));
  const cAt: Array<Map<number, number>> = Array.from({ length: P }, () => new Map());
  const cRows = new Float64Array(P);
  for (let relay = 0; relay < P; relay++) {
    const b = relayIn[relay];
    for (let k = 0; k < b.sizes.length; k++) {
      const s = b.from[k];
      const i = b.split[k];
      const dsts: number[] = [];
      for (const d of flat[s].dstIndices[i]) {
        if (node(d) !== node(relay)) continue;
        dsts.push(loc(d));
        cAt[d].set(s * stride + i, cRows[d]);
        cRows[d] += b.sizes[k];
        postOut[d].sizes.push(b.sizes[k]);
        postOut[d].srcs.push(loc(relay));
      }
      postDst[relay].push(dsts);
    }
  }

  return flat.map((f, r) => {
    const preSizes: number[] = [];
    const preSrcs: number[] = [];
    const aRows = f.outputSplitSizes.reduce((t, x, j) => (node(f.srcIndex[j]) === node(r) ? t + x : t), 0);
    const place = new RangeBuffer(f.outputSplitSizes.length);
    let aAt = 0;
    match[r].forEach(([s, i], j) => {
      const size = f.outputSplitSizes[j];
      if (node(s) === node(r)) {
        preSizes.push(size);
        preSrcs.push(loc(s));
        place.pushJoined(aAt, aAt + size);
        aAt += size;
      } else {
        const at = aRows + (cAt[r].get(s * stride + i) as number);
        place.pushJoined(at, at + size);
      }
    });
    return {
      preIntra: { inputSplitSizes: f.inputSplitSizes, dstIndices: preDst[r], outputSplitSizes: Int32Array.from(preSizes), srcIndex: Int32Array.from(preSrcs) },
      inter: { inputSplitSizes: f.inputSplitSizes, dstIndices: interDst[r], outputSplitSizes: Int32Array.from(relayIn[r].sizes), srcIndex: Int32Array.from(relayIn[r].srcs) },
      postIntra: { inputSplitSizes: Int32Array.from(relayIn[r].sizes), dstIndices: postDst[r], outputSplitSizes: Int32Array.from(postOut[r].sizes), srcIndex: Int32Array.from(postOut[r].srcs) },
      placeRanges: place.toArray(),
    };
  });
}

/** Rows a rank's pre-intra, relay (inter output) and post-intra buffers hold. */
export function hierRows(h: HierGroupCastArgs): { pre: number; relay: number; post: number } {
  return { pre: sum(h.preIntra.outputSplitSizes), relay: sum(h.inter.outputSplitSizes), post: sum(h.postIntra.outputSplitSizes) };
}

/**
 * Rows that cross between nodes in one GroupCast, from the flat arguments of every rank: flat,
 * one copy per destination rank in another node; hierarchical, one copy per destination node.
 * (The mirrored GroupReduce moves the same rows back.)
 */
export function interNodeRows(flat: readonly GroupCastArgs[], mesh: MeshShape): { flat: number; hier: number } {
  const L = mesh.ranksPerNode;
  let flatRows = 0;
  let hierRows = 0;
  flat.forEach((a, s) => {
    const own = Math.floor(s / L);
    a.dstIndices.forEach((dsts, i) => {
      const size = a.inputSplitSizes[i];
      let last = -1;
      for (const d of dsts) {
        const n = Math.floor(d / L);
        if (n === own) continue;
        flatRows += size;
        if (n !== last) hierRows += size;
        last = n;
      }
    });
  });
  return { flat: flatRows, hier: hierRows };
}
