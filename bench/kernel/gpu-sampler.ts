/**
 * bench/kernel/gpu-sampler: nvidia-smi sampled every 100 ms in a child process (SM clock, board
 * power, temperature, clock-event reasons), and statistics per time window, so that a benchmark
 * can say at what clock and power each of its timings ran. The H200 runs these kernels at its
 * 700 W cap, where the clock a kernel sustains depends on the energy of its steps
 * (bench/kernel/README.md, "Backward: why causal reads below full"). Best-effort: without
 * nvidia-smi the windows are empty.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export interface Sample {
  t: number;
  mhz: number;
  watts: number;
  temp: number;
  reasons: bigint | null;
}
export interface WindowStats {
  samples: number;
  mhz: number | null;
  watts: number | null;
  maxTemp: number | null;
  reasons: string;
}

const REASON_BITS: Array<[bigint, string]> = [
  [0x1n, 'idle'],
  [0x2n, 'app-clocks'],
  [0x4n, 'pwr'],
  [0x8n, 'hw-slowdown'],
  [0x20n, 'sw-thermal'],
  [0x40n, 'hw-thermal'],
  [0x80n, 'hw-power-brake'],
];

export class GpuSampler {
  private child: ChildProcess | null = null;
  private pending = '';
  private offsetMs = 0;
  readonly samples: Sample[] = [];

  /** The first query that this nvidia-smi accepts (the reasons field was renamed in newer drivers), or null. */
  private static query(): string | null {
    for (const reasons of ['clocks_event_reasons.active', 'clocks_throttle_reasons.active', null]) {
      const q = `timestamp,clocks.sm,power.draw,temperature.gpu${reasons === null ? '' : `,${reasons}`}`;
      const r = spawnSync('nvidia-smi', [`--query-gpu=${q}`, '--format=csv,noheader,nounits', '-i', '0'], { encoding: 'utf8' });
      if (r.status === 0) return q;
    }
    return null;
  }

  /** Starts sampling; resolves once the first sample is in (or after 3 s without one). */
  static async start(): Promise<GpuSampler> {
    const s = new GpuSampler();
    const q = GpuSampler.query();
    if (q === null) {
      console.log('note: nvidia-smi did not answer; the clock / power columns stay empty');
      return s;
    }
    const child = spawn('nvidia-smi', [`--query-gpu=${q}`, '--format=csv,noheader,nounits', '-i', '0', '-lms', '100'], { stdio: ['ignore', 'pipe', 'ignore'] });
    s.child = child;
    child.on('error', () => undefined); // sampling is best-effort: the columns stay empty
    process.on('exit', () => child.kill()); // never outlive this process, even after a throw
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const lines = (s.pending + chunk).split('\n');
      s.pending = lines.pop() ?? '';
      for (const line of lines) {
        const x = parseSample(line);
        if (x === null) continue;
        if (s.samples.length === 0) {
          // nvidia-smi prints local wall time: align it with Date.now() to the nearest 15 minutes
          // (a time-zone difference between the two; the event loop is free here, so arrival ≈ sample)
          s.offsetMs = Math.round((Date.now() - x.t) / 900_000) * 900_000;
        }
        s.samples.push({ ...x, t: x.t + s.offsetMs });
      }
    });
    for (let waited = 0; s.samples.length === 0 && waited < 3000; waited += 50) await sleep(50);
    return s;
  }

  window(t0: number, t1: number): WindowStats {
    const xs = this.samples.filter((x) => x.t >= t0 && x.t <= t1);
    const mean = (f: (x: Sample) => number): number | null => {
      const v = xs.map(f).filter(Number.isFinite);
      return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length;
    };
    const temps = xs.map((x) => x.temp).filter(Number.isFinite);
    let bits = 0n;
    for (const x of xs) bits |= x.reasons ?? 0n;
    const names = REASON_BITS.filter(([b]) => (bits & b) !== 0n).map(([, n]) => n);
    return { samples: xs.length, mhz: mean((x) => x.mhz), watts: mean((x) => x.watts), maxTemp: temps.length === 0 ? null : Math.max(...temps), reasons: xs.some((x) => x.reasons !== null) ? names.join('+') || 'none' : '?' };
  }

  /** Waits until the samples of the time just past are in (nvidia-smi's output lags its 100 ms period). */
  async settled(): Promise<void> {
    await sleep(300);
  }

  async stop(): Promise<void> {
    await this.settled(); // the last window's samples
    this.child?.kill();
  }
}

/** One line of `nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu[,reasons] --format=csv,noheader,nounits`, its time as local wall time; null for anything else. */
export function parseSample(line: string): Omit<Sample, 't'> & { t: number } | null {
  const f = line.split(',').map((s) => s.trim());
  const m = /^(\d+)\/(\d+)\/(\d+) (\d+):(\d+):(\d+)(?:\.(\d+))?$/.exec(f[0] ?? '');
  if (m === null || f.length < 4) return null;
  const t = new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6], m[7] === undefined ? 0 : +m[7].padEnd(3, '0').slice(0, 3)).getTime();
  let reasons: bigint | null = null;
  try {
    reasons = f[4] !== undefined && /^0x[0-9a-f]+$/i.test(f[4]) ? BigInt(f[4]) : null;
  } catch {
    reasons = null;
  }
  return { t, mhz: Number(f[1]), watts: Number(f[2]), temp: Number(f[3]), reasons };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
