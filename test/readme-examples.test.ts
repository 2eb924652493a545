/**
 * The README's examples, run as written: every code block whose first line is `// file: NAME`
 * is written to a fresh project folder (with `magi-attention` resolving to this package, as after
 * `npm install magi-attention`), and its `(run: ...)` command runs there. Needs the built package
 * (`npm test` builds first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './util/paths.js';

const root = repoRoot;
const run = promisify(execFile);

interface Example {
  file: string;
  command: string;
  code: string;
}

function readmeExamples(): Example[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const out: Example[] = [];
  for (const m of readme.matchAll(/```(?:js|ts)\n\/\/ file: (\S+)\s+\(run: ([^)]+)\)\n([\s\S]*?)```/g)) out.push({ file: m[1], command: m[2], code: m[3] });
  return out;
}

test('the README has runnable examples for the API tour, a rank script, spawnRanks and the 1.1.1 parity calls', () => {
  assert.deepEqual(readmeExamples().map((e) => e.file), ['tour.mjs', 'rank.mjs', 'main.mjs', 'parity.mjs']);
});

test('every README example runs as written in a fresh project and prints what it says', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'magi-readme-'));
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(root, join(dir, 'node_modules', 'magi-attention'), 'dir');
    // A default `npm init` project: no "type" field, so only .mjs files are ES modules.
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'readme-example', version: '1.0.0' }));
    mkdirSync(join(dir, 'node_modules', '.bin'));
    symlinkSync(join(root, 'dist', 'src', 'cli', 'main.js'), join(dir, 'node_modules', '.bin', 'magi-attn'));
    const examples = readmeExamples();
    for (const e of examples) writeFileSync(join(dir, e.file), `// file: ${e.file}\n${e.code}`);
    const outputs = new Map<string, string>();
    for (const e of examples) {
      const [cmd, ...args] = e.command.replace(/^npx /, '').trim().split(/\s+/);
      const exe = cmd === 'node' ? process.execPath : join(dir, 'node_modules', '.bin', cmd);
      const { stdout } = await run(exe, args, { cwd: dir, env: { ...process.env, NODE_OPTIONS: '' } });
      outputs.set(e.file, stdout);
    }
    assert.match(outputs.get('tour.mjs') ?? '', /\[ 1024, 8, 64 \] \[ 1024, 8 \] \[ 1024, 8, 64 \] \[ 1024, 2, 64 \] \[ 1024, 2, 64 \]/);
    const ranks = outputs.get('rank.mjs') ?? '';
    for (let r = 0; r < 4; r++) assert.match(ranks, new RegExp(`rank ${r}: ok \\{"rank":${r},"shardTokens":\\d+,"out":\\[2048,8,64\\],"dk":\\[\\d+,2,64\\]\\}`));
    assert.match(ranks, /4 ranks ok in/);
    assert.match(outputs.get('main.mjs') ?? '', /rank: 1,\s+shardTokens: \d+,\s+out: \[ 1024, 8, 64 \]/);
    const parity = outputs.get('parity.mjs') ?? '';
    const shards: number[] = [];
    for (let r = 0; r < 4; r++) {
      const m = new RegExp(`rank ${r}: ok \\{"rank":${r},"shardTokens":(\\d+),"labelsOk":true,"gradSum":10,"out":\\[\\d+,4,32\\]\\}`).exec(parity);
      assert.ok(m !== null, parity);
      shards.push(Number(m[1]));
    }
    assert.equal(shards.reduce((a, b) => a + b, 0), 1000, 'uneven shards add up to the sequence, with no padding');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
