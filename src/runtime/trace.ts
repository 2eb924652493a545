/**
 * Tracing a distributed attention call: what each stage computed and moved, and when, on the
 * rank's compute and communication lanes. The pipeline records marks into a trace only when the
 * caller passes one (`calcAttn(..., { trace })`); otherwise it records into a tracer that does
 * nothing. Marks are host clock readings for host tensors and CUDA events for device tensors, so
 * a trace is read after the call's work is done (`await trace.spans()`).
 */
import type { AttnOps, Lane, TimeMark } from './attn-ops.js';

export type SpanKind = 'compute' | 'fetch' | 'reduce' | 'wait' | 'final';

/** One interval of a rank's timeline, in milliseconds from the start of the call. */
export interface TraceSpan {
  /** 'host' or the remote stage index; 'all' for the call's final collectives. */
  readonly stage: 'host' | number | 'all';
  readonly lane: Lane;
  readonly kind: SpanKind;
  readonly startMs: number;
  readonly endMs: number;
  /** compute: unmasked cells; fetch/reduce: bytes this rank sent and received. */
  readonly area?: number;
  readonly sendBytes?: number;
  readonly recvBytes?: number;
}

interface OpenSpan {
  stage: TraceSpan['stage'];
  lane: Lane;
  kind: SpanKind;
  start: TimeMark;
  end?: TimeMark;
  extra: Pick<TraceSpan, 'area' | 'sendBytes' | 'recvBytes'>;
}

/** What the pipeline records into. */
export interface Tracer {
  begin(stage: TraceSpan['stage'], lane: Lane, kind: SpanKind, extra?: OpenSpan['extra']): OpenSpan | null;
  end(span: OpenSpan | null): void;
}

export const NO_TRACE: Tracer = { begin: () => null, end: () => undefined };

/** A trace the caller passes to calcAttn / calcAttnBackward and reads afterwards. */
export class AttnTrace {
  private readonly open: OpenSpan[] = [];
  private origin: TimeMark | null = null;

  /** @internal The tracer of one call over `ops`. */
  tracerFor<T>(ops: AttnOps<T>): Tracer {
    this.origin ??= ops.mark('compute');
    return {
      begin: (stage, lane, kind, extra = {}) => {
        const s: OpenSpan = { stage, lane, kind, start: ops.mark(lane), extra };
        this.open.push(s);
        return s;
      },
      end: (s) => {
        if (s !== null) s.end = ops.mark(s.lane);
      },
    };
  }

  /** The recorded spans, in recording order (device marks are read here, once their work is done). */
  spans(): TraceSpan[] {
    const origin = this.origin;
    if (origin === null) return [];
    return this.open
      .filter((s) => s.end !== undefined)
      .map((s) => ({ stage: s.stage, lane: s.lane, kind: s.kind, startMs: s.start.since(origin), endMs: (s.end as TimeMark).since(origin), ...s.extra }));
  }
}

/** One stage of one rank, summarised: what it computed, how long, and how long compute waited for its data. */
export interface StageProfile {
  readonly stage: 'host' | number;
  /** Unmasked cells computed. */
  readonly area: number;
  readonly computeMs: number;
  /** Compute blocked on this stage's fetch before computing (0 for the host stage). */
  readonly waitMs: number;
  /** Bytes this rank sent / received for this stage (copies to itself included), fetch and reduce together. */
  readonly sendBytes: number;
  readonly recvBytes: number;
}

export interface CalcAttnProfile {
  readonly stages: StageProfile[];
  /** Time on the final collectives (max-logits all-reduce; backward: dk/dv reduces, dsink). */
  readonly finalWaitMs: number;
  readonly totalMs: number;
}

/** Per-stage totals of a call's trace. */
export function profileOf(spans: readonly TraceSpan[]): CalcAttnProfile {
  const byStage = new Map<'host' | number, { area: number; computeMs: number; waitMs: number; sendBytes: number; recvBytes: number }>();
  let finalWaitMs = 0;
  let totalMs = 0;
  for (const s of spans) {
    const ms = s.endMs - s.startMs;
    totalMs = Math.max(totalMs, s.endMs);
    if (s.stage === 'all') {
      finalWaitMs += ms;
      continue;
    }
    let row = byStage.get(s.stage);
    if (row === undefined) byStage.set(s.stage, (row = { area: 0, computeMs: 0, waitMs: 0, sendBytes: 0, recvBytes: 0 }));
    if (s.kind === 'compute') {
      row.computeMs += ms;
      row.area += s.area ?? 0;
    } else if (s.kind === 'wait') row.waitMs += ms;
    row.sendBytes += s.sendBytes ?? 0;
    row.recvBytes += s.recvBytes ?? 0;
  }
  const stages = [...byStage].map(([stage, r]) => ({ stage, ...r }));
  stages.sort((a, b) => (a.stage === 'host' ? -1 : b.stage === 'host' ? 1 : a.stage - b.stage));
  return { stages, finalWaitMs, totalMs };
}
