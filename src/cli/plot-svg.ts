/**
 * Observable Plot charts written to standalone SVG files from Node: the same library the planner
 * page draws with, given a DOM document from linkedom. Charts meant for files keep everything
 * inside the <svg> (no HTML legends or captions, which Plot would wrap in a <figure>).
 */
import * as Plot from '@observablehq/plot';
import { parseHTML } from 'linkedom';

export function plotToSvg(options: Plot.PlotOptions): string {
  const { document } = parseHTML('<!DOCTYPE html><html><body></body></html>');
  const node = Plot.plot({ ...options, document }) as unknown as { tagName: string; outerHTML: string; setAttribute(k: string, v: string): void };
  if (node.tagName.toLowerCase() !== 'svg') throw new Error(`plotToSvg: the chart must render to a bare <svg> (got <${node.tagName}>): leave out legends, title and caption`);
  node.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
  node.setAttribute('style', 'background: white');
  return `<?xml version="1.0" encoding="UTF-8"?>\n${node.outerHTML}\n`;
}
