// The GPU check scripts (test/device/*.ts) run only on the GPU machine, so a flag one of them
// reads but scriptProgram() does not register would pass typecheck and CI and then stop a device
// run with "unknown option" (it happened twice: --blockn, then --dims / --shard / --speed-dims on
// experiment branches). This reads every `args.has('--x')` / `args.value('--x', ...)` in the
// scripts and checks the parser knows it, and that an unregistered read throws at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SCRIPT_FLAGS, scriptArgs } from './device/common.js';
import { repoFile } from './util/paths.js';

// The scripts' source, also when this test runs compiled from dist/test/.
const dir = fileURLToPath(repoFile('test/device'));

test('every flag a GPU script reads is registered with the scripts parser', () => {
  const reads: Array<[string, string]> = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(join(dir, file), 'utf8');
    for (const m of text.matchAll(/\b(?:args|a)\.(?:has|value)\(\s*'(--[a-z0-9-]+)'/g)) reads.push([file, m[1]]);
  }
  assert.ok(reads.length >= 10, `found only ${reads.length} flag reads: has the scripts' argument API changed?`);
  const missing = reads.filter(([, flag]) => !SCRIPT_FLAGS.includes(flag)).map(([f, flag]) => `${f}: ${flag}`);
  assert.deepEqual(missing, []);
});

test('the scripts parser rejects a read of a flag it does not register', () => {
  const args = scriptArgs(['node', 'script', '--seed', '3', '--sm90']);
  assert.equal(args.seed, 3);
  assert.equal(args.has('--sm90'), true);
  assert.equal(args.value('--warps', '4,8'), '4,8');
  assert.throws(() => args.has('--no-such-flag'), /does not register/);
  assert.throws(() => args.value('--no-such-flag', ''), /does not register/);
});
