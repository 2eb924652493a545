/**
 * The TCP rendezvous of a multi-process launch, as torchrun's: rank 0 listens on
 * MASTER_ADDR:MASTER_PORT, every other rank connects (retrying until rank 0 is up) and says who it
 * is, and once all have joined rank 0 sends each of them its payload (the NCCL unique id). A rank
 * that does not join within the timeout fails the rendezvous on rank 0 with an error naming it.
 * Node-only.
 */
import { createServer, connect, type Socket } from 'node:net';
import { InvalidArgumentError } from '../../errors.js';
import { CommTimeoutError } from '../errors.js';

export interface RendezvousOptions {
  readonly rank: number;
  readonly size: number;
  readonly addr: string;
  readonly port: number;
  readonly timeoutMs: number;
  /** Rank 0 only: the bytes every rank receives. */
  readonly payload?: Uint8Array;
}

const frame = (b: Uint8Array): Buffer => {
  const out = Buffer.alloc(4 + b.length);
  out.writeUInt32BE(b.length, 0);
  out.set(b, 4);
  return out;
};

/** Reads one length-prefixed frame from a socket. */
function readFrame(sock: Socket): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        sock.off('data', onData);
        resolve(new Uint8Array(buf.subarray(4, 4 + buf.readUInt32BE(0))));
      }
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.once('close', () => reject(new Error('the rendezvous connection closed before the payload arrived')));
  });
}

/** Every rank calls this; all resolve with rank 0's payload. */
export async function rendezvous(o: RendezvousOptions): Promise<Uint8Array> {
  if (!Number.isInteger(o.size) || o.size < 1) throw new InvalidArgumentError('size', 'must be a positive integer', `got ${o.size}`);
  if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.size) throw new InvalidArgumentError('rank', `must be in [0, ${o.size})`, `got ${o.rank}`);
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new InvalidArgumentError('MASTER_PORT', 'must be a TCP port in [1, 65535]', `got ${o.port}`);
  return o.rank === 0 ? host(o) : join(o);
}

function host(o: RendezvousOptions): Promise<Uint8Array> {
  const payload = o.payload;
  if (payload === undefined) throw new InvalidArgumentError('payload', 'rank 0 must provide the payload');
  if (o.size === 1) return Promise.resolve(payload);
  return new Promise((resolve, reject) => {
    const joined = new Map<number, Socket>();
    const server = createServer((sock) => {
      readFrame(sock)
        .then((b) => {
          const r = Buffer.from(b).readUInt32BE(0);
          if (r < 1 || r >= o.size || joined.has(r)) {
            sock.destroy();
            return;
          }
          joined.set(r, sock);
          if (joined.size === o.size - 1) {
            clearTimeout(timer);
            for (const s of joined.values()) s.end(frame(payload));
            server.close();
            resolve(payload);
          }
        })
        .catch(() => sock.destroy());
    });
    const timer = setTimeout(() => {
      server.close();
      for (const s of joined.values()) s.destroy();
      const missing = Array.from({ length: o.size - 1 }, (_, i) => i + 1).filter((r) => !joined.has(r));
      reject(new CommTimeoutError('rendezvous', 0, missing, `rendezvous on ${o.addr}:${o.port} timed out after ${o.timeoutMs} ms: ranks ${missing.join(', ')} did not join`));
    }, o.timeoutMs);
    server.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`rank 0 could not listen on ${o.addr}:${o.port} for the rendezvous: ${e.message}`));
    });
    server.listen(o.port, o.addr);
  });
}

async function join(o: RendezvousOptions): Promise<Uint8Array> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    try {
      const sock = await new Promise<Socket>((resolve, reject) => {
        const s = connect(o.port, o.addr, () => resolve(s));
        s.once('error', reject);
      });
      const me = Buffer.alloc(4);
      me.writeUInt32BE(o.rank, 0);
      const reply = readFrame(sock);
      sock.write(frame(me));
      return await reply;
    } catch (e) {
      if (Date.now() > deadline) throw new CommTimeoutError('rendezvous', o.rank, [0], `rank ${o.rank} could not reach rank 0 at ${o.addr}:${o.port} within ${o.timeoutMs} ms (${(e as Error).message})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
