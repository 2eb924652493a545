/**
 * bench/kernel/gpu-sampler (no GPU needed): nvidia-smi's CSV lines parsed, and the statistics of a
 * time window (mean clock and power, highest temperature, the clock-event reasons seen).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GpuSampler, parseSample } from '../bench/kernel/gpu-sampler.js';

test('gpu sampler: a CSV line with and without the reasons field; other lines refused', () => {
  const x = parseSample('2026/12/03 08:42:29.848, 1515, 637.87, 61, 0x0000000000000004');
  assert.ok(x !== null);
  assert.equal(x.t, new Date(2026, 11, 3, 8, 42, 29, 848).getTime());
  assert.deepEqual([x.mhz, x.watts, x.temp, x.reasons], [1515, 637.87, 61, 4n]);
  const y = parseSample('2026/12/03 08:42:30, 1980, 124.5, 40');
  assert.ok(y !== null && y.reasons === null && y.t === new Date(2026, 11, 3, 8, 42, 30).getTime());
  for (const bad of ['timestamp, clocks.current.sm [MHz], power.draw [W]', '', '2026/12/03 08:42:30, 1980']) assert.equal(parseSample(bad), null, bad);
});

test('gpu sampler: a window averages clock and power over its samples, keeps the hottest reading and names the reasons', () => {
  const s = new GpuSampler();
  s.samples.push(
    { t: 1000, mhz: 1980, watts: 120, temp: 40, reasons: 0n },
    { t: 2000, mhz: 1500, watts: 690, temp: 60, reasons: 4n },
    { t: 2100, mhz: 1700, watts: 694, temp: 62, reasons: 4n | 0x20n },
    { t: 3000, mhz: 1900, watts: 300, temp: 50, reasons: 0n },
  );
  const w = s.window(1500, 2500);
  assert.deepEqual(w, { samples: 2, mhz: 1600, watts: 692, maxTemp: 62, reasons: 'pwr+sw-thermal' });
  assert.deepEqual(s.window(900, 1100).reasons, 'none');
  const empty = s.window(5000, 6000);
  assert.deepEqual(empty, { samples: 0, mhz: null, watts: null, maxTemp: null, reasons: '?' });
});
