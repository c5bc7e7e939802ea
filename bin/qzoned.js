#!/usr/bin/env node
// Entry point of the `qzoned` executable; the TypeScript is compiled to dist/ by `npm ci` (prepare).
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`qzoned: ${err && err.message ? err.message : String(err)}\n`); process.exitCode = 1; },
);
