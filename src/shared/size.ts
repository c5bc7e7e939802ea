// Size parsing and the three ways QEMU's tools print sizes and times, so our output lines up with theirs.
import { QzonedError } from './errors.js';

/** A command-line mistake: no machine reason, just the sentence. */
export function usageError(message: string): QzonedError {
  return new QzonedError('GenericError', undefined, message);
}

const SUFFIX_SHIFT: Record<string, number> = { b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 };

/**
 * Parses a size as qemu_strtosz does: decimal (a fraction is allowed when a suffix scales it) or 0x hex,
 * optional suffix B/K/M/G/T/P/E in either case, binary multiples. Returns undefined when it is not a size.
 */
export function tryParseSize(text: string): number | undefined {
  const m = /^\s*(?:0x([0-9a-f]+)|(\d+)(?:\.(\d+))?)([bkmgtpe])?\s*$/i.exec(text);
  if (!m) return undefined;
  const shift = m[4] ? SUFFIX_SHIFT[m[4].toLowerCase()]! : 0;
  let value: number;
  if (m[1] !== undefined) {
    value = Number.parseInt(m[1], 16) * 2 ** shift;
  } else {
    const whole = m[2]!;
    const fraction = m[3];
    // A fraction of a byte means nothing: qemu refuses "1.5" and "1.5b" alike.
    if (fraction !== undefined && shift === 0) return undefined;
    value = Number(`${whole}.${fraction ?? '0'}`) * 2 ** shift;
    value = Math.floor(value);
  }
  if (!Number.isSafeInteger(value)) return undefined;
  return value;
}

/** Like tryParseSize but throws one sentence naming what was wrong. */
export function parseSize(text: string, what = 'size'): number {
  const value = tryParseSize(text);
  if (value === undefined) {
    throw usageError(`Invalid ${what} '${text}': expected a byte count such as 512, 64k, 64M, 1G, 16T or 0x10000 (binary multiples, at most 2^53-1)`);
  }
  return value;
}

/**
 * An integer as C's strtol with base 0 reads it, the whole text consumed (qemu_strtol and
 * qemu_strtoul, which every count qemu-img and qemu-io take goes through): optional blanks and
 * sign, then 0x/0X and hex digits, or a leading 0 and octal digits, or decimal. Undefined when
 * the text is not such a number or lies beyond 2^53.
 */
export function tryParseInteger(text: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(text);
  if (!m) return undefined;
  const magnitude = m[2] !== undefined ? Number.parseInt(m[2], 16) : m[3] !== undefined ? Number.parseInt(m[3], 8) : Number(m[4]);
  if (!Number.isSafeInteger(magnitude)) return undefined;
  return m[1] === '-' ? -magnitude : magnitude;
}

/** A non-negative integer as strtol base 0 reads it (counts such as conventional-zones take no suffix). */
export function parseCount(text: string, what: string): number {
  const value = tryParseInteger(text);
  if (value === undefined || value < 0) {
    throw usageError(`Invalid ${what} '${text}': expected a non-negative integer (decimal, 0x hex or 0 octal)`);
  }
  return value;
}

/** C's "%.<precision>g": shortest of fixed/exponent, trailing zeros removed. */
export function formatG(value: number, precision: number): string {
  if (value === 0) return '0';
  const exponent = Math.floor(Math.log10(Math.abs(Number(value.toPrecision(precision)))));
  let text: string;
  if (exponent < -4 || exponent >= precision) {
    text = value.toExponential(precision - 1);
    const [mantissa, exp] = text.split('e') as [string, string];
    const trimmed = mantissa.includes('.') ? mantissa.replace(/0+$/, '').replace(/\.$/, '') : mantissa;
    const sign = exp.startsWith('-') ? '-' : '+';
    const digits = exp.replace(/^[+-]/, '').padStart(2, '0');
    return `${trimmed}e${sign}${digits}`;
  }
  text = value.toFixed(Math.max(0, precision - 1 - exponent));
  return text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text;
}

const IEC = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];

/** QEMU's size_to_str(), used by qemu-img info: "1 GiB", "1.5 GiB", "1.75 MiB", "196 KiB", "512 B". */
export function formatHumanSize(bytes: number): string {
  // frexp(val / (1000/1024)) exponent minus one, grouped by ten: switches unit once the integer part reaches 1000.
  const scaled = bytes / (1000 / 1024);
  const frexpExponent = scaled === 0 ? 0 : Math.floor(Math.log2(scaled)) + 1;
  const unit = Math.trunc((frexpExponent - 1) / 10);
  const index = Math.max(0, Math.min(unit, IEC.length - 1));
  return `${formatG(bytes / 2 ** (index * 10), 3)} ${IEC[index]}B`;
}

const IO_UNITS: Array<[number, string]> = [
  [2 ** 60, ' EiB'], [2 ** 50, ' PiB'], [2 ** 40, ' TiB'], [2 ** 30, ' GiB'], [2 ** 20, ' MiB'], [2 ** 10, ' KiB'],
];

/** qemu-io's cvtstr(): "4 KiB", "1.500 MiB", "40 bytes", "966.989 KiB". */
export function formatIoSize(value: number): string {
  let suffix = ' bytes';
  let scaled = value;
  for (const [unit, name] of IO_UNITS) {
    if (value >= unit) {
      suffix = name;
      scaled = value / unit;
      break;
    }
  }
  const text = scaled.toFixed(3);
  // qemu-io replaces a ".000" tail by the suffix.
  const trim = text.indexOf('.000');
  return trim >= 0 ? text.slice(0, trim) + suffix : text + suffix;
}

/** qemu-io's timestr() without flags: "00.00 sec" under a second, "H:MM:SS.ss" from one second on. */
export function formatIoTime(seconds: number): string {
  const whole = Math.floor(seconds);
  const fraction = seconds - whole;
  if (whole === 0) return `${fraction.toFixed(2).padStart(5, '0')} sec`;
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = (whole % 60) + fraction;
  return `${hours}:${String(minutes).padStart(2, '0')}:${secs.toFixed(2).padStart(5, '0')}`;
}
