/**
 * Stands in, in the page, for the Node-only modules that src/cli/plan.ts imports next to the
 * preset mask builder the page shares with `magi-attn plan` (node:fs, node:path, commander,
 * cli-table3). The page only calls buildMask with a preset, whose path touches none of them;
 * anything else throws. Once the presets live in a browser-safe module of their own, this goes.
 */
function unavailable(): never {
  throw new Error('not available in the browser');
}
export const accessSync = unavailable;
export const existsSync = unavailable;
export const readFileSync = unavailable;
export const writeFileSync = unavailable;
export const constants = {};
export const dirname = unavailable;
export const resolve = unavailable;
export class Option {
  constructor() {
    unavailable();
  }
}
export class Command extends Option {}
export class CommanderError extends Error {}
export class InvalidArgumentError extends Error {}
export default class Table extends Option {}
