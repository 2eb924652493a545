/**
 * Where the suite finds the checkout's files, whether a test runs from source (test/x.test.ts under
 * `node --import tsx`) or compiled (dist/test/x.test.js, as `npm test` runs it). Rank scripts and
 * child processes start in the same form as the test that starts them, so a compiled run never
 * pays for tsx in every worker; fixtures and sources are read from the checkout either way.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { packageRoot } from '../../src/cli/package-root.js';

const fromSource = import.meta.url.endsWith('.ts');

/** The checkout's root folder. */
export const repoRoot = packageRoot(import.meta.url);

/** A file of the checkout by its path from the root ('README.md', 'test/fixtures/...', 'src/...ts'). */
export function repoFile(path: string): URL {
  return new URL(path, pathToFileURL(repoRoot + '/'));
}

/**
 * A module of the checkout in the form this run executes: `runnable('test/comm-ranks/cli-rank')` is
 * test/comm-ranks/cli-rank.ts from source and dist/test/comm-ranks/cli-rank.js compiled.
 */
export function runnable(pathWithoutExtension: string): URL {
  return repoFile(fromSource ? `${pathWithoutExtension}.ts` : `dist/${pathWithoutExtension}.js`);
}

/** runnable() as a file system path. */
export function runnablePath(pathWithoutExtension: string): string {
  return fileURLToPath(runnable(pathWithoutExtension));
}

/** Node's flags for a child process that imports runnable() modules: tsx's loader from source, none compiled. */
export const childNodeFlags: readonly string[] = fromSource ? ['--import', 'tsx'] : [];
