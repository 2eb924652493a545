/**
 * The JSON mask format (mask files for `magi-attn plan`, the planner page, saved masks), one zod
 * schema validating it field by field. A mask file is one of
 *   { "qRanges": [[qs, qe], ...], "kRanges": [[ks, ke], ...], "maskTypes": "causal" | [type, ...], "totalSeqlen"?: n }
 *   { "slices": [[[qs, qe], [ks, ke], type], ...], "totalSeqlen"?: n }
 *   [[[qs, qe], [ks, ke], type], ...]
 * where a type is a name (full, causal, inv_causal, bi_causal) or a code 0-3, and totalSeqlen
 * defaults to the largest range end. Unknown fields are errors (a mask that silently lost its
 * types once ran as full attention).
 */
import { z } from 'zod';
import { parseWithSchema } from '../util/schema.js';
import { makeSliceList, sliceCount, type SliceList } from './slice-list.js';
import { maskTypeFromInt } from './mask-type.js';

const nat = z.int().nonnegative();
const range = z.tuple([nat, nat]);
const maskType = z.union([z.enum(['full', 'causal', 'inv_causal', 'bi_causal']), z.int().min(0).max(3)]);
const sliceTriple = z.tuple([range, range, maskType]);

export const maskJSONSchema = z.union([
  z.strictObject({ qRanges: z.array(range), kRanges: z.array(range), maskTypes: z.union([maskType, z.array(maskType)]), totalSeqlen: nat.optional() }),
  z.strictObject({ slices: z.array(sliceTriple), totalSeqlen: nat.optional() }),
  z.array(sliceTriple),
]);

export type MaskJSON = z.infer<typeof maskJSONSchema>;

export interface ParsedMask {
  readonly mask: SliceList;
  /** The given totalSeqlen, else the largest range end. */
  readonly totalSeqlen: number;
}

/** Validates a parsed JSON mask and builds its slice list; errors name the field under `root`. */
export function maskFromJSON(json: unknown, root = 'mask'): ParsedMask {
  // The union's first failing member says little; pick the member by shape, then validate it.
  const member = Array.isArray(json) ? maskJSONSchema.options[2] : json !== null && typeof json === 'object' && 'slices' in json ? maskJSONSchema.options[1] : maskJSONSchema.options[0];
  const m = parseWithSchema(member, json, root) as MaskJSON;
  const triples = Array.isArray(m) ? m : 'slices' in m ? m.slices : null;
  const mask =
    triples !== null
      ? makeSliceList(triples.map((s) => s[0]), triples.map((s) => s[1]), triples.map((s) => s[2]))
      : makeSliceList((m as { qRanges: Array<[number, number]> }).qRanges, (m as { kRanges: Array<[number, number]> }).kRanges, (m as { maskTypes: string | number | Array<string | number> }).maskTypes);
  let end = 0;
  for (let b = 0; b < sliceCount(mask); b++) end = Math.max(end, mask.qRanges[2 * b + 1], mask.kRanges[2 * b + 1]);
  const given = Array.isArray(m) ? undefined : m.totalSeqlen;
  return { mask, totalSeqlen: given ?? end };
}

/** "3 slices (2 causal, 1 full)": what a mask is made of, for reports. */
export function describeSliceTypes(mask: SliceList): string {
  const counts = new Map<string, number>();
  for (let b = 0; b < sliceCount(mask); b++) {
    const t = maskTypeFromInt(mask.maskTypes[b]);
    counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  const parts = [...counts].map(([t, c]) => `${c} ${t}`);
  return `${sliceCount(mask)} slice${sliceCount(mask) === 1 ? '' : 's'}${parts.length > 0 ? ` (${parts.join(', ')})` : ''}`;
}
