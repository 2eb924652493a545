/**
 * Rank script for the `magi-attn run` tests: `fail <rank>` makes that rank throw; otherwise each
 * rank returns its rank, the group size, its arguments and an all-reduced sum.
 */
import type { ProcessGroup } from '../../src/comm/process-group.js';

export default async function cliRank(group: ProcessGroup, args: string[]): Promise<unknown> {
  if (args[0] === 'fail' && Number(args[1]) === group.rank) throw new Error(`rank ${group.rank} was told to fail`);
  const sum = await group.allReduce(Float64Array.of(group.rank + 1), 'sum').wait();
  return { rank: group.rank, size: group.size, args, sum: sum[0] };
}
