/**
 * `magi-attn planner`: serves the planner page (the static files `npm run build` writes to
 * dist/web, shipped in the package) on this machine and prints its URL. No build step at use and
 * nothing fetched: the page runs the solvers itself, in a Web Worker.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { intAtLeast } from './flags.js';
import { packageRoot } from './package-root.js';
import type { CliContext } from './program.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json',
};

export function plannerRoot(): string {
  return join(packageRoot(), 'dist', 'web');
}

/** Starts the static server; resolves with it and its URL once it listens. */
export function servePlanner(options: { port: number; host: string; root?: string }): Promise<{ server: Server; url: string }> {
  const root = options.root ?? plannerRoot();
  if (!existsSync(join(root, 'index.html'))) {
    throw new InvalidArgumentError('planner', `needs the built page in ${root} (run npm run build)`);
  }
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const file = normalize(join(root, path === '/' ? 'index.html' : path));
    if (!(file === root || file.startsWith(root + sep)) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache' }).end(readFileSync(file));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : options.port;
      const host = options.host.includes(':') ? `[${options.host}]` : options.host;
      resolve({ server, url: `http://${host}:${port}/` });
    });
  });
}

export function registerPlanner(program: Command, ctx: CliContext): void {
  program
    .command('planner')
    .description('serve the planner page (mask, dispatch, traffic, overlap timeline, memory, predicted time) on this machine and print its URL')
    .option('--port <n>', 'port (0: any free port)', intAtLeast(0), 5178)
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .action(async (opts: { port: number; host: string }) => {
      if (opts.port > 65535) throw new InvalidArgumentError('--port', 'must be at most 65535', `got ${opts.port}`);
      const { url } = await servePlanner({ port: opts.port, host: opts.host });
      ctx.out(`magi-attn planner: serving ${url}  (Ctrl-C to stop)\n`);
    });
}
