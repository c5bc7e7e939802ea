/**
 * `npm run bench`: every benchmark of the project, printed as ratios against references measured
 * in the same run. `npm run bench -- qcow2`, `-- zones`, `-- rpc` or `-- nbd` runs one group.
 */
import { printSummary } from './lib.js';
import { qcow2Benchmarks } from './qcow2.js';
import { zoneBenchmarks } from './zones.js';
import { rpcBenchmarks } from './rpc.js';
import { stallBenchmarks } from './stalls.js';
import { nbdBenchmarks } from './nbd.js';
import { cliBenchmarks } from './cli.js';
import { powerBenchmarks } from './power.js';

const groups: Record<string, () => Promise<void>> = {
  qcow2: qcow2Benchmarks,
  zones: zoneBenchmarks,
  rpc: rpcBenchmarks,
  stalls: stallBenchmarks,
  nbd: nbdBenchmarks,
  cli: cliBenchmarks,
  power: powerBenchmarks,
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const name of wanted.length ? wanted : Object.keys(groups)) {
  const fn = groups[name];
  if (!fn) {
    console.error(`unknown benchmark group '${name}'; known: ${Object.keys(groups).join(', ')}`);
    process.exit(2);
  }
  console.log(`== ${name}`);
  await fn();
}
printSummary();
