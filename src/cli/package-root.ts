/**
 * The installed package's root folder, found from a module inside it (src/ when run from source,
 * dist/src/ when built): where the shipped kernel benchmark results and the built planner page are.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's root folder (holding package.json), from a module inside it (src/ or dist/src/). */
export function packageRoot(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'magi-attention') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('packageRoot: no magi-attention package.json above ' + from);
    dir = up;
  }
}
