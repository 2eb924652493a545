// Prints the compiled test files `npm test` runs: dist/test/<name>.test.js for every
// test/<name>.test.ts, so a compiled copy whose source was deleted or renamed is never run
// (tsc leaves such outputs in dist/). node --test sorts the files it is given.
import { readdirSync } from 'node:fs';

const names = readdirSync(new URL('../test/', import.meta.url)).filter((f) => f.endsWith('.test.ts'));
console.log(names.map((f) => `dist/test/${f.slice(0, -'.ts'.length)}.js`).join('\n'));
