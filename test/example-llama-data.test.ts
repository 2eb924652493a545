/**
 * The Llama example's data path and checkpoint format: the corpus from the npm datasets
 * (tokenised once, cached as safetensors), vocabulary compaction, document packing as the
 * reference's benchmark packs (pieces of at most a quarter pack, a piece that does not fit split
 * across packs), next-token targets with -1 at every document end, and safetensors round trips.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, freshSeed } from 'magi-attention';
import { DocumentPacker, compactVocab, docCount, loadCorpus, readCorpus, writeCorpus, type Corpus } from '../examples/llama/data.js';
import { readSafetensors, writeSafetensors } from '../examples/llama/safetensors.js';

const seed = freshSeed();
console.log(`example-llama-data seed ${seed} (replay with MAGI_SEED=${seed})`);

test('moby-dick loads as one document per chapter (and front/back matter), r50k token ids', async () => {
  const c = await loadCorpus('moby-dick');
  assert.ok(docCount(c) >= 135, `${docCount(c)} documents`);
  assert.equal(c.vocabSize, 50257);
  assert.ok(c.tokens.length > 250_000);
  assert.ok(c.tokens.every((t) => t >= 0 && t < 50257));
});

function toyCorpus(lengths: number[]): Corpus {
  const offsets = new Int32Array(lengths.length + 1);
  lengths.forEach((l, i) => (offsets[i + 1] = offsets[i] + l));
  // token value = its global index, so a pack can be traced back to the corpus
  return { name: 'toy', vocabSize: 1 << 20, tokens: Int32Array.from({ length: offsets[lengths.length] }, (_, i) => i), docOffsets: offsets };
}

test('packing: every pack is full, pieces are at most a quarter pack, targets are the next token of the same document, -1 at ends; an epoch covers every token once', () => {
  const rng = new Rng(seed);
  const lengths = Array.from({ length: 40 }, () => rng.int(1, 90));
  const corpus = toyCorpus(lengths);
  const seqLen = 64;
  const packer = new DocumentPacker(corpus, seqLen, { seed });
  assert.equal(packer.pieceCap, 16);
  const docOf = (tok: number): number => {
    let d = 0;
    while (corpus.docOffsets[d + 1] <= tok) d++;
    return d;
  };
  const seen = new Uint8Array(corpus.tokens.length);
  const total = corpus.tokens.length;
  let packed = 0;
  while (packer.epoch === 0 && packed + seqLen <= total) {
    const b = packer.nextBatch();
    assert.equal(b.tokens.length, seqLen);
    assert.equal(b.cuSeqlens[0], 0);
    assert.equal(b.cuSeqlens[b.cuSeqlens.length - 1], seqLen);
    let valid = 0;
    for (let d = 0; d + 1 < b.cuSeqlens.length; d++) {
      const [s, e] = [b.cuSeqlens[d], b.cuSeqlens[d + 1]];
      assert.ok(e - s >= 1 && e - s <= 16, `segment of ${e - s} tokens`);
      for (let i = s; i < e; i++) {
        const tok = b.tokens[i];
        if (i > s) assert.equal(tok, b.tokens[i - 1] + 1, 'a segment is a contiguous run of one document');
        assert.equal(docOf(tok), docOf(b.tokens[s]), 'a segment stays inside one document');
        if (i < e - 1) {
          assert.equal(b.targets[i], tok + 1);
          valid++;
        } else assert.equal(b.targets[i], -1);
        seen[tok]++;
      }
    }
    assert.equal(b.validTargets, valid);
    packed += seqLen;
  }
  assert.ok(packed > 0);
  for (let i = 0; i < seen.length; i++) assert.ok(seen[i] <= 1, `token ${i} packed twice in one epoch`);
});

test('packing is reproducible from the seed and differs across seeds', () => {
  const corpus = toyCorpus([50, 70, 30, 90, 20]);
  const a = new DocumentPacker(corpus, 32, { seed: 1 }).nextBatch();
  const b = new DocumentPacker(corpus, 32, { seed: 1 }).nextBatch();
  const c = new DocumentPacker(corpus, 32, { seed: 2 }).nextBatch();
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.tokens, c.tokens);
});

test('compactVocab keeps the most frequent ids in order of frequency and maps the rest to the last id', () => {
  const c: Corpus = { name: 'x', vocabSize: 10, tokens: Int32Array.from([5, 5, 5, 2, 2, 9, 9, 1, 7]), docOffsets: Int32Array.from([0, 9]) };
  const k = compactVocab(c, 4);
  assert.equal(k.vocabSize, 4);
  // 5 (3x) -> 0, 2 and 9 (2x each, ties by id) -> 1, 2; 1 and 7 -> unknown 3
  assert.deepEqual([...k.tokens], [0, 0, 0, 1, 1, 2, 2, 3, 3]);
  assert.equal(compactVocab(c, 10), c);
});

test('safetensors: tensors of every dtype round-trip with metadata; the header is 8-byte aligned JSON', () => {
  const dir = mkdtempSync(join(tmpdir(), 'llama-st-'));
  try {
    const path = join(dir, 'x.safetensors');
    const tensors = [
      ['a', { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6.5]) }],
      ['b', { dtype: 'BF16', shape: [2], data: Uint16Array.from([0x3f80, 0xc000]) }],
      ['c', { dtype: 'I32', shape: [3], data: Int32Array.from([-1, 0, 7]) }],
      ['d', { dtype: 'F64', shape: [], data: Float64Array.from([Math.PI]) }],
    ] as const;
    writeSafetensors(path, tensors, { step: '12' });
    const raw = readFileSync(path);
    const n = Number(raw.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const header = JSON.parse(raw.subarray(8, 8 + n).toString('utf8'));
    assert.deepEqual(header.a, { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    const back = readSafetensors(path);
    assert.deepEqual(back.metadata, { step: '12' });
    for (const [name, t] of tensors) {
      const r = back.tensors.get(name)!;
      assert.equal(r.dtype, t.dtype);
      assert.deepEqual(r.shape, t.shape);
      assert.deepEqual([...r.data], [...t.data]);
    }
    assert.throws(() => readSafetensors(path, ['missing']), /no tensor named missing/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a corpus survives its cache file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'llama-corpus-'));
  try {
    const c = toyCorpus([3, 4]);
    const path = join(dir, 'toy.safetensors');
    writeCorpus(path, c);
    const back = readCorpus(path);
    assert.deepEqual(back, c);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
