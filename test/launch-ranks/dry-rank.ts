/**
 * Rank script for test/launch-gpus.test.ts (a dry launch: no GPU, no NCCL): reports what the
 * launcher gave the process, or fails the way the test asks.
 */
interface DryGroup {
  rank: number;
  size: number;
  rendezvousPayload: string;
}

export default async function main(group: DryGroup, [mode, who]: string[]): Promise<unknown> {
  const me = group.rank === Number(who);
  if (mode === 'throw' && me) throw new Error(`rank ${group.rank} throws on purpose`);
  if (mode === 'exit' && me) process.exit(7);
  if (mode === 'hang') console.log(me ? 'hanging' : 'waiting'); // the test checks every rank got this far before the deadline
  if (mode === 'hang' && me) await new Promise<never>(() => setInterval(() => undefined, 1000));
  if (mode !== 'ok') await new Promise<never>(() => setInterval(() => undefined, 1000)); // the others wait to be aborted
  const e = process.env;
  return { rank: group.rank, size: group.size, env: [e.RANK, e.WORLD_SIZE, e.LOCAL_RANK, e.MASTER_ADDR, e.NCCL_NVLS_ENABLE], id: group.rendezvousPayload };
}
