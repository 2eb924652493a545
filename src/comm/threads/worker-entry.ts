/**
 * The code every rank's worker thread starts with: builds the rank's ThreadProcessGroup from the
 * ports the launcher handed over, imports the rank script, runs its default export and reports
 * the result (or the error) to the launcher. Not imported by anything; `spawnRanks` points
 * Workers at it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../errors.js';
import { ThreadProcessGroup } from './thread-group.js';
import { unwrapTensors, wrapTensors } from './transfer.js';
import type { ToRank, ToLauncher, WorkerInit } from './spawn.js';

const init = workerData as WorkerInit;
const launcher = parentPort;
if (launcher === null) throw new Error('worker-entry.js runs only inside a worker thread started by spawnRanks');

const group = new ThreadProcessGroup({ rank: init.rank, size: init.size, name: init.name, timeoutMs: init.timeoutMs, ports: init.ports });
let start: () => void = () => undefined;
let isStarted = false;
const started = new Promise<void>((resolve) => (start = resolve));
launcher.on('message', (m: ToRank) => {
  if (m.t === 'start') {
    isStarted = true;
    start();
    return;
  }
  if (m.t === 'exit') {
    // With the ports closed and the launcher's port unreferenced, the thread ends once the
    // script's own timers are done, and its output is flushed on the way.
    group.close();
    (launcher as NonNullable<typeof launcher>).unref();
    return;
  }
  group.abort(m.rank, m.reason);
  if (!isStarted) report({ t: 'failed', error: { name: 'CommAbortedError', message: `rank ${init.rank} did not start: rank ${m.rank} failed: ${m.reason}` } });
});

function report(m: ToLauncher): void {
  (launcher as NonNullable<typeof launcher>).postMessage(m);
}

try {
  const mod = (await import(init.script)) as { default?: unknown };
  if (typeof mod.default !== 'function') throw new TypeError(`${init.script} must export a default function (group, args) => result`);
  // Wait until every rank has loaded its script, so that the first collective's timeout does
  // not count another thread's start-up.
  report({ t: 'ready' });
  await started;
  const value: unknown = await (mod.default as (g: ThreadProcessGroup, a: unknown) => unknown)(group, unwrapTensors(init.args));
  try {
    report({ t: 'result', value: wrapTensors(value) });
  } catch (e) {
    throw new TypeError(`the result of rank ${init.rank} cannot be sent to the launcher (it must be structured-clonable): ${serializeError(e).message}`);
  }
} catch (e) {
  report({ t: 'failed', error: serializeError(e) });
}
// The thread stays alive (its ports are open) until the launcher says every rank is done: a peer
// may still need this rank's acks for collectives it started but did not wait on.
