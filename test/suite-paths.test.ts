/**
 * npm test runs the suite compiled, from dist/test/, and a single file can run from source
 * (node --import tsx --test test/x.test.ts): a path built from import.meta in a test points into
 * dist/ in one case and into test/ in the other (a fixture, a .ts rank script, a folder of
 * sources to scan). test/util/paths.ts is the one place that tells them apart; this keeps it so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { repoFile } from './util/paths.js';

test('no test file but test/util/paths.ts builds a path from import.meta (use repoFile / runnable)', () => {
  const root = fileURLToPath(repoFile('test'));
  const offenders: string[] = [];
  let scanned = 0;
  const visit = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.name.endsWith('.ts')) {
        scanned++;
        const rel = relative(root, path);
        if (rel !== join('util', 'paths.ts') && /import\.meta\.(url|dirname|filename)/.test(readFileSync(path, 'utf8'))) offenders.push(rel);
      }
    }
  };
  visit(root);
  assert.ok(scanned > 40, `scanned only ${scanned} files under test/`);
  assert.deepEqual(offenders, []);
});
