// Dates read from message fields and components. A value that is not an HL7 date (a
// placeholder such as "DOB", masked "****", an impossible "19801301") is left out of the mapped
// resource, and the message is not refused for it (a lab result must not be lost over a bad
// birth date): the ACK AA carries an ERR of severity W (warning) naming the field, and the
// message store keeps the same text in its notes. The warnings of the message being mapped are
// collected here while mapMessage runs (mapping is synchronous).
import type { AckError } from '../ack.ts';
import { toFhirDate, toFhirDateTime, toFhirInstant } from '../datetime.ts';
import { ErrorCode, type ErrorLocation, type Field, type Segment } from '../message.ts';

let collecting: AckError[] | undefined;

/** Runs a (synchronous) mapping; returns the warnings it raised. */
export function collectingWarnings(map: () => void): AckError[] {
  const outer = collecting;
  const warnings: AckError[] = [];
  collecting = warnings;
  try {
    map();
    return warnings;
  } finally {
    collecting = outer;
  }
}

const CONVERT = { date: toFhirDate, dateTime: toFhirDateTime, instant: toFhirInstant };
type DateKind = keyof typeof CONVERT;

/** "PID-5", "PID-5(2).10.1": a place in a message as HL7 texts write it. */
function placeText(at: ErrorLocation): string {
  const rep = at.repetition && at.repetition > 1 ? `(${at.repetition})` : '';
  const sub = at.subcomponent && at.subcomponent > 1 ? `.${at.subcomponent}` : '';
  const comp = (at.component && at.component > 1) || sub ? `.${at.component ?? 1}${sub}` : '';
  return `${at.segment}${at.field ? `-${at.field}` : ''}${rep}${comp}`;
}

/** The ERR of a value that is no HL7 date, as severity W (left out) or E (refused by the caller). */
export function invalidDate(value: string, at: ErrorLocation, outcome = 'left out', severity: 'W' | 'E' = 'W'): AckError {
  return { code: ErrorCode.dataType, severity, text: `${placeText(at)} "${value}" is not a valid HL7 date/time: ${outcome}`, location: at };
}

/** Raises a warning for the message being mapped (see collectingWarnings). */
export function warn(warning: AckError): void {
  collecting?.push(warning);
}

/** value as a FHIR date / dateTime / instant; undefined when empty, or (with a warning) when it is not an HL7 date. */
function convert(value: string, kind: DateKind, at: ErrorLocation): string | undefined {
  if (!value || value === '""') return undefined;
  const converted = CONVERT[kind](value);
  if (converted === undefined) warn(invalidDate(value, at));
  return converted;
}

/**
 * The FHIR date / dateTime / instant of field n (component c) of the segment; undefined when
 * empty, or (with a warning) when it is not an HL7 date.
 */
export function dateOf(seg: Segment, n: number, kind: DateKind, c = 1): string | undefined {
  return convert(seg.get(n, c), kind, locationOf(seg, n, c));
}

/** Where field n, component c of a segment is. */
export function locationOf(seg: Segment, n: number, c = 1): ErrorLocation {
  return { ...seg.locate(n, 1), ...(c > 1 ? { component: c } : {}) };
}

/** dateOf for component c (subcomponent s) of a field read from a segment (a name's or address's validity dates). */
export function componentDate(f: Field, c: number, s = 1): string | undefined {
  const at = f.at ?? { segment: '' };
  return convert(f.get(c, s), 'dateTime', { ...at, ...(c > 1 || s > 1 ? { component: c } : {}), ...(s > 1 ? { subcomponent: s } : {}) });
}

/** A FHIR period of two FHIR dateTimes (either may be missing); an end before the start is dropped. */
export function periodFrom(s?: string, e?: string): { start?: string; end?: string } | undefined {
  if (!s && !e) return undefined;
  if (s && e && Date.parse(e) < Date.parse(s)) return { start: s };
  return { ...(s ? { start: s } : {}), ...(e ? { end: e } : {}) };
}

/** The period of two date fields of a segment (start, end), as periodFrom makes it, with dateOf's warnings. */
export function periodOf(seg: Segment, startField: number, endField: number): { start?: string; end?: string } | undefined {
  return periodFrom(dateOf(seg, startField, 'dateTime'), dateOf(seg, endField, 'dateTime'));
}
