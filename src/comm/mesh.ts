/**
 * A 2-D mesh of ranks for hierarchical communication (the reference's 2-D DeviceMesh): `nodes`
 * rows of `ranksPerNode` ranks, rank = node · ranksPerNode + local index. Each rank holds the
 * whole group, its node's intra group (rank = local index) and the inter group of the ranks with
 * its local index (rank = node index), made by splitting the group. Pass a mesh where a key asks
 * for its group, and the plan's GroupCast / GroupReduce become hierarchical
 * (solver/hier-group-collective.ts). Browser-safe.
 */
import { InvalidArgumentError } from '../errors.js';
import type { GroupInfo, ProcessGroup } from './process-group.js';

export interface ProcessMesh<G extends GroupInfo = GroupInfo> {
  /** The whole group: its size is the cp size. */
  readonly group: G;
  /** This rank's node: ranksPerNode ranks, rank = local index. */
  readonly intra: G;
  /** The ranks with this rank's local index, one per node: rank = node index. */
  readonly inter: G;
  readonly nodes: number;
  readonly ranksPerNode: number;
}

/** Structural test: a mesh rather than a plain group. */
export function isProcessMesh(x: unknown): x is ProcessMesh {
  return typeof x === 'object' && x !== null && 'intra' in x && 'inter' in x && 'group' in x;
}

/**
 * Splits `group` into a mesh of nodes of `ranksPerNode` consecutive ranks (a collective: every
 * rank calls it). Both sub-groups come from `group.split`, so they are of its kind.
 */
export async function createProcessMesh<G extends ProcessGroup<object>>(group: G, ranksPerNode: number): Promise<ProcessMesh<G>> {
  if (!Number.isSafeInteger(ranksPerNode) || ranksPerNode < 1 || group.size % ranksPerNode !== 0) {
    throw new InvalidArgumentError('ranksPerNode', 'must be a positive integer dividing the group size', `${ranksPerNode} for a group of ${group.size}`);
  }
  const node = Math.floor(group.rank / ranksPerNode);
  const local = group.rank % ranksPerNode;
  const intra = (await group.split(node, local)) as G;
  const inter = (await group.split(local, node)) as G;
  return { group, intra, inter, nodes: group.size / ranksPerNode, ranksPerNode };
}
