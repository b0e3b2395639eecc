// Parsing of search values: escaping (\, \| \$ \\), prefixes, numbers with their implicit
// precision range, dates. Pure functions, no SQL.
import { dateRange, type InstantRange } from './dates.ts';

/** A search parameter value or name that cannot be used; the caller decides strict vs lenient. */
export class ParamError extends Error {
  readonly param: string;
  constructor(param: string, message: string) {
    super(message);
    this.param = param;
  }
}

/** Splits on an unescaped separator and removes the escapes of that separator only. */
export function splitEscaped(input: string, sep: ',' | '|' | '$'): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    if (ch === '\\' && i + 1 < input.length) {
      const next = input[i + 1];
      if (next === sep) {
        cur += next;
        i++;
        continue;
      }
      cur += ch + next;
      i++;
      continue;
    }
    if (ch === sep) {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  out.push(cur);
  return out;
}

/** Removes any remaining escapes (after all splitting is done). */
export function unescapeValue(v: string): string {
  return v.replace(/\\([\\,|$])/g, '$1');
}

/** Splits a value on an unescaped '|' into at most n parts (the last keeps the rest). */
export function splitPipe(v: string, n: number): string[] {
  const parts = splitEscaped(v, '|');
  if (parts.length <= n) return parts;
  return [...parts.slice(0, n - 1), parts.slice(n - 1).join('|')];
}

export const PREFIXES = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'] as const;
export type Prefix = (typeof PREFIXES)[number];

export function splitPrefix(v: string): { prefix: Prefix; rest: string } {
  const p = v.slice(0, 2);
  if ((PREFIXES as readonly string[]).includes(p) && v.length > 2 && !/^[a-z]$/.test(v[2])) {
    return { prefix: p as Prefix, rest: v.slice(2) };
  }
  return { prefix: 'eq', rest: v };
}

const NUMBER_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

export interface SearchNumber {
  /** The value as written (bound as numeric text, so no float rounding). */
  text: string;
  value: number;
  /** The implicit range of the value at its precision (R4: 100 means [99.5, 100.5)). */
  low: string;
  high: string;
}

export function parseNumber(param: string, s: string): SearchNumber {
  if (!NUMBER_RE.test(s)) throw new ParamError(param, `"${s}" is not a number`);
  const m = /^[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(s);
  const decimals = m?.[2]?.length ?? 0;
  const exp = m?.[3] ? Number(m[3]) : 0;
  const value = Number(s);
  const half = 0.5 * Math.pow(10, exp - decimals);
  // Rounded to the precision involved so the bounds are exact decimal strings.
  const digits = Math.max(0, decimals - exp + 1);
  return { text: String(value), value, low: (value - half).toFixed(digits), high: (value + half).toFixed(digits) };
}

export function parseDate(param: string, s: string): InstantRange {
  const r = dateRange(s);
  if (!r) throw new ParamError(param, `"${s}" is not a valid date/dateTime for ${param}`);
  return r;
}

/** Escapes LIKE wildcards so user input only ever matches literally. */
export function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => '\\' + c);
}
