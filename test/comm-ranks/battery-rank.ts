/**
 * Rank script for the thread backend: runs the collective and group-collective batteries on this
 * rank and returns what it checked and what failed.
 */
import type { ProcessGroup } from '../../src/comm/process-group.js';
import { collectiveBattery, type BatteryResult } from './collective-battery.js';
import { groupBattery } from './group-battery.js';

export default async function batteryRank(group: ProcessGroup, args: { seed: number; rounds: number; cases: number }): Promise<BatteryResult> {
  const a = await collectiveBattery(group, args.seed, args.rounds);
  const b = await groupBattery(group, args.seed, args.cases);
  return { checks: a.checks + b.checks, failures: [...a.failures, ...b.failures] };
}
