/**
 * The collectives of one calcAttn call, flat or hierarchical: a stage's k/v GroupCast and its
 * mirror GroupReduce of partial dk/dv, over the key's group, or over its 2-D mesh when the plan
 * is hierarchical (solver/hier-group-collective.ts: pre-intra, inter and post-intra GroupCasts,
 * then a gather into the flat order; the reduce the exact reverse, partials summed at the relay
 * before they cross nodes). Written once over AttnOps, like the pipeline.
 *
 * Order of issue. Every rank must issue its collectives on every group in the same order. A
 * hierarchical collective has a step that can only start once an earlier one has finished (the
 * relay forwards what the inter step delivered; the relay's sum goes across once summed), while
 * the pipeline goes on issuing the next stage's collectives. So collectives are issued through
 * one queue in program order: each starts once every collective before it has started (and its
 * own input is ready). With nothing waiting (a flat plan) a collective starts at once, exactly
 * as a direct call.
 */
import type { GroupReduceArgs } from '../comm/group-collective-args.js';
import { toGroupReduceArgs } from '../comm/group-collective-args.js';
import { RangeBuffer } from '../mask/range-list.js';
import { hierRows, type HierGroupCastArgs } from '../solver/hier-group-collective.js';
import type { StagePlan } from '../solver/plan.js';
import type { AttnOps } from './attn-ops.js';
import type { DistAttnRuntimeKey } from './key.js';

/** Starts collectives in the order they are asked for, each once the ones before it have started. */
export class IssueQueue {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;

  /**
   * Calls `start` (which issues one collective and returns its completion) once every earlier
   * collective has been issued and `after` has settled; resolves with what `start` resolves.
   */
  issue<R>(start: () => Promise<R>, after?: Promise<unknown>): Promise<R> {
    if (this.waiting === 0 && after === undefined) return start();
    this.waiting++;
    let done: Promise<R> | undefined;
    const issued = Promise.all([this.tail, after]).then(
      () => {
        this.waiting--;
        done = start();
      },
      (e: unknown) => {
        this.waiting--;
        throw e;
      },
    );
    // A failed step fails every later one (the call is lost anyway) instead of issuing past it.
    this.tail = issued;
    const result = issued.then(() => done as Promise<R>);
    result.catch(() => undefined);
    return result;
  }
}

/** The reverse of a hierarchical GroupCast, derived once per arguments object. */
interface HierReduce {
  readonly preIntra: GroupReduceArgs;
  readonly inter: GroupReduceArgs;
  readonly postIntra: GroupReduceArgs;
  /** Ranges of the stage buffer in [pre-intra ; post-intra] order (the inverse of placeRanges). */
  readonly unplace: Int32Array;
}

const hierReduces = new WeakMap<HierGroupCastArgs, HierReduce>();

function hierReduceOf(h: HierGroupCastArgs): HierReduce {
  let r = hierReduces.get(h);
  if (r === undefined) {
    // placeRanges lists [pre ; post] rows in stage order; sorting its pieces by source inverts it.
    const p = h.placeRanges;
    const pieces: Array<[number, number, number]> = [];
    for (let i = 0, at = 0; i < p.length; i += 2) {
      pieces.push([p[i], at, p[i + 1] - p[i]]);
      at += p[i + 1] - p[i];
    }
    pieces.sort((a, b) => a[0] - b[0]);
    const unplace = new RangeBuffer(pieces.length);
    for (const [, at, len] of pieces) unplace.pushJoined(at, at + len);
    r = { preIntra: toGroupReduceArgs(h.preIntra), inter: toGroupReduceArgs(h.inter), postIntra: toGroupReduceArgs(h.postIntra), unplace: unplace.toArray() };
    hierReduces.set(h, r);
  }
  return r;
}

/** One call's stage collectives over the key's group or mesh. */
export class StageComm<T> {
  private readonly queue = new IssueQueue();

  constructor(
    private readonly ops: AttnOps<T>,
    private readonly key: DistAttnRuntimeKey,
  ) {}

  /**
   * Starts the GroupCast of every input's rows (k and v) for `stage`. Resolves once the exchange
   * is done (device: queued) with one function per input that, called after ops.joinComm(),
   * gives its stage buffer [stageBufferLength, ...]. The inputs share each step, so a relay
   * waits once for all of them.
   */
  cast(inputs: readonly T[], stage: StagePlan): Promise<Array<() => T>> {
    const ops = this.ops;
    const h = stage.hierGroupCast;
    const mesh = this.key.mesh;
    if (h === undefined || mesh === null) {
      return Promise.all(inputs.map((input) => this.queue.issue(() => ops.groupCast(input, stage.groupCast, stage.stageBufferLength)).then((out) => () => out)));
    }
    const rows = hierRows(h);
    const both = inputs.map((input) => ops.empty(ops.dtype(input), [rows.pre + rows.post, ...ops.shape(input).slice(1)]));
    const pre = inputs.map((input, i) => this.queue.issue(() => ops.groupCast(input, h.preIntra, rows.pre, { group: mesh.intra, into: ops.rowsView(both[i], 0, rows.pre) })));
    const relays: T[] = [];
    const inter = Promise.all(inputs.map((input, i) => this.queue.issue(() => ops.groupCast(input, h.inter, rows.relay, { group: mesh.inter })).then((t) => void (relays[i] = t))));
    const post = inputs.map((_, i) =>
      this.queue.issue(() => ops.groupCast(relays[i], h.postIntra, rows.post, { group: mesh.intra, into: ops.rowsView(both[i], rows.pre, rows.pre + rows.post) }), inter),
    );
    return Promise.all([...pre, ...post]).then(() => {
      for (const t of relays) ops.release(t);
      return both.map((b) => () => {
        const out = ops.gatherRows(b, h.placeRanges, stage.stageBufferLength, 0);
        ops.release(b);
        return out;
      });
    });
  }

  /** Starts the GroupReduce(sum) of the stage's partials (float32, consumed) into their accumulators (into[i] for partials[i]). */
  reduceSum(partials: readonly T[], into: readonly T[], stage: StagePlan): Promise<void> {
    const ops = this.ops;
    const h = stage.hierGroupCast;
    const mesh = this.key.mesh;
    if (h === undefined || mesh === null) return Promise.all(partials.map((p, i) => this.queue.issue(() => ops.groupReduceSum(p, into[i], stage.groupReduce)))).then(() => undefined);
    const r = hierReduceOf(h);
    const rows = hierRows(h);
    // Each partial in [pre-intra ; post-intra] order: the rows that go back directly, then those via the relay.
    const parts = partials.map((p) => {
      const g = ops.gatherRows(p, r.unplace, rows.pre + rows.post, 0);
      ops.release(p);
      return g;
    });
    const relays = parts.map((p) => ops.zeros('float32', [rows.relay, ...ops.shape(p).slice(1)]));
    const toRelay = Promise.all(parts.map((p, i) => this.queue.issue(() => ops.groupReduceSum(ops.rowsView(p, rows.pre, rows.pre + rows.post), relays[i], r.postIntra, mesh.intra))));
    const direct = parts.map((p, i) => this.queue.issue(() => ops.groupReduceSum(ops.rowsView(p, 0, rows.pre), into[i], r.preIntra, mesh.intra)));
    const across = relays.map((relay, i) => this.queue.issue(() => ops.groupReduceSum(relay, into[i], r.inter, mesh.inter), toRelay));
    return Promise.all([toRelay, ...direct, ...across]).then(() => {
      for (const p of parts) ops.release(p);
    });
  }

  /** An all-reduce over the key's group, in issue order with the stage collectives. */
  allReduce(t: T, op: 'sum' | 'max'): Promise<void> {
    return this.queue.issue(() => this.ops.allReduce(t, op));
  }
}
