/**
 * Validating JSON that comes from outside (plan files, mask files) with zod schemas, turned into
 * the project's typed errors: the first problem becomes an InvalidArgumentError whose argument
 * is the path of the offending field (`plan.perRank[3].stages[0].groupCast.srcIndex`).
 */
import { z } from 'zod';
import { InvalidArgumentError } from '../errors.js';

function pathOf(root: string, path: ReadonlyArray<PropertyKey>): string {
  let out = root;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return out;
}

/** Parses `value` with `schema` or throws an InvalidArgumentError naming the first bad field under `root`. */
export function parseWithSchema<S extends z.ZodType>(schema: S, value: unknown, root: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  // A foreign field is reported first: it is usually a misspelling of the field found missing.
  const issues = result.error.issues;
  const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0];
  if (issue.code === 'unrecognized_keys') {
    throw new InvalidArgumentError(pathOf(root, [...issue.path, issue.keys[0]]), 'is not a field here', `fields: ${fieldsOf(schema, issue.path)}`);
  }
  if (valueAt(value, issue.path) === undefined) throw new InvalidArgumentError(pathOf(root, issue.path), 'is required');
  throw new InvalidArgumentError(pathOf(root, issue.path), issue.message);
}

function valueAt(value: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v = value;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/** The field names an object schema allows at `path` (for the message), or '?' when unknown. */
function fieldsOf(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): string {
  let s: unknown = schema;
  for (const p of path) {
    if (s instanceof z.ZodObject) s = s.shape[String(p)];
    else if (s instanceof z.ZodArray) s = s.element;
    else return '?';
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape).join(', ') : '?';
}
