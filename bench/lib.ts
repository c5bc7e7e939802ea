/**
 * Benchmark plumbing: every figure is a ratio measured in one run against a reference on the same
 * machine and file system, runs alternated, median of several, because these machines are noisy.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const QZONED = path.join(ROOT, 'bin', 'qzoned.js');

export function hasTool(tool: string): boolean {
  return spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
}

export function benchDir(): string {
  // Beside the repository, on the same file system as the images a user would make (not tmpfs).
  const base = process.env.QZONED_BENCH_DIR ?? path.join(ROOT, '.bench-tmp');
  fs.mkdirSync(base, { recursive: true });
  return fs.mkdtempSync(path.join(base, 'run-'));
}

/**
 * Writes back every dirty page before a timed run, so no run pays for the previous one's
 * write-back (the kernel throttles writers once dirty pages pile up, which made runs vary 5x).
 */
export function settle(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Parses qemu-img bench's (and ours') "Run completed in N seconds." */
export function runCompleted(output: string): number {
  const m = /Run completed in ([0-9.]+) seconds\./.exec(output);
  if (!m) throw new Error(`no "Run completed in N seconds." line in:\n${output}`);
  return Number(m[1]);
}

export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

export function timeSync(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export async function timeAsync(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export interface Row {
  bench: string;
  ours: string;
  reference: string;
  ratio: string;
  goal: string;
  verdict: string;
}

const rows: Row[] = [];

export function report(bench: string, ours: number, reference: number, refName: string, unit: string,
  goal?: { max?: number; min?: number; text: string }, lowerIsBetter = true): void {
  const ratio = ours / reference;
  let verdict = '';
  if (goal) {
    const ok = (goal.max === undefined || ratio <= goal.max) && (goal.min === undefined || ratio >= goal.min);
    verdict = ok ? 'met' : 'MISSED';
  }
  rows.push({
    bench,
    ours: `${fmt(ours)} ${unit}`,
    reference: `${refName} ${fmt(reference)} ${unit}`,
    ratio: `${ratio.toFixed(2)}x${lowerIsBetter ? ' (time)' : ' (rate)'}`,
    goal: goal?.text ?? '',
    verdict,
  });
  console.log(`${bench}: ours ${fmt(ours)} ${unit}, ${refName} ${fmt(reference)} ${unit}, ratio ${ratio.toFixed(3)}${goal ? ` (goal ${goal.text}: ${verdict})` : ''}`);
}

export function absolute(bench: string, value: number, unit: string, goal?: { max: number; text: string }): void {
  const verdict = goal ? (value <= goal.max ? 'met' : 'MISSED') : '';
  rows.push({ bench, ours: `${fmt(value)} ${unit}`, reference: '', ratio: '', goal: goal?.text ?? '', verdict });
  console.log(`${bench}: ${fmt(value)} ${unit}${goal ? ` (goal ${goal.text}: ${verdict})` : ''}`);
}

function fmt(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(3) : x.toPrecision(3);
}

export function printSummary(): void {
  console.log('\n| benchmark | ours | reference | ratio | goal | |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.bench} | ${r.ours} | ${r.reference} | ${r.ratio} | ${r.goal} | ${r.verdict} |`);
  console.log(`\nmachine: ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'}; node ${process.version}`);
}
