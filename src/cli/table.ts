/**
 * Tables for terminal reports (cli-table3): a header row, first column left-aligned, numbers
 * right-aligned, no colour codes so that the text stays greppable and pastes cleanly.
 */
import Table from 'cli-table3';

export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const table = new Table({
    head: [...header],
    style: { head: [], border: [], compact: true, 'padding-left': 1, 'padding-right': 1 },
    colAligns: header.map((_, i) => (i === 0 ? 'left' : 'right')),
    chars: { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '─', 'mid-mid': '─', right: '', 'right-mid': '', middle: ' ' },
  });
  for (const r of rows) table.push([...r]);
  return table.toString();
}
