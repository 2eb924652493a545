/**
 * The document-length histogram the reference benchmarks draw packed ("varlen") masks from
 * (shared/data/doc_length_distribution.csv, a long-context SFT dataset), embedded as data so the
 * sampler needs no file access and runs in a browser too. Bins are closed intervals [lo, hi] of
 * lengths in tokens; `count` is the number of documents in the bin.
 */

export interface DocLengthBin {
  readonly lo: number;
  readonly hi: number;
  readonly count: number;
}

export const DOC_LENGTH_HISTOGRAM: readonly DocLengthBin[] = Object.freeze([
  { lo: 0, hi: 10, count: 30254 },
  { lo: 11, hi: 50, count: 391188 },
  { lo: 51, hi: 100, count: 699596 },
  { lo: 101, hi: 200, count: 1377757 },
  { lo: 201, hi: 500, count: 3794735 },
  { lo: 501, hi: 1024, count: 3316785 },
  { lo: 1025, hi: 2048, count: 2106566 },
  { lo: 2049, hi: 4096, count: 988525 },
  { lo: 4097, hi: 8192, count: 410002 },
  { lo: 8193, hi: 16384, count: 173574 },
  { lo: 16385, hi: 32768, count: 115007 },
  { lo: 32769, hi: 65536, count: 18428 },
  { lo: 65537, hi: 131072, count: 22513 },
  { lo: 131073, hi: 196608, count: 18284 },
].map((bin) => Object.freeze(bin)));
