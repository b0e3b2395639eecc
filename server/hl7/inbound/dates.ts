// Dates read from message fields. A field that holds something that is not an HL7 date (a
// placeholder such as "DOB", masked "****", an impossible "19801301") is left out of the mapped
// resource, and the message is not refused for it (a lab result must not be lost over a bad
// birth date): the ACK AA carries an ERR of severity W (warning) naming the field, and the
// message store keeps the same text in its notes. The warnings of the message being mapped are
// collected here while mapMessage runs (mapping is synchronous).
import type { AckError } from '../ack.ts';
import { toFhirDate, toFhirDateTime, toFhirInstant } from '../datetime.ts';
import { ErrorCode, type Segment } from '../message.ts';
import { periodFrom } from './datatypes.ts';

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

/**
 * The FHIR date / dateTime / instant of field n (component c) of the segment; undefined when
 * empty, or (with a warning) when it is not an HL7 date.
 */
export function dateOf(seg: Segment, n: number, kind: keyof typeof CONVERT, c = 1): string | undefined {
  const value = seg.get(n, c);
  if (!value || value === '""') return undefined;
  const converted = CONVERT[kind](value);
  if (converted === undefined) {
    const where = `${seg.name}-${n}${c > 1 ? `.${c}` : ''}`;
    collecting?.push({
      code: ErrorCode.dataType,
      severity: 'W',
      text: `${where} "${value}" is not a valid HL7 date/time: left out`,
      location: { segment: seg.name, sequence: seg.sequence, field: n, ...(c > 1 ? { component: c } : {}) },
    });
  }
  return converted;
}

/** The period of two date fields of a segment (start, end), as datatypes.ts periodFrom makes it, with dateOf's warnings. */
export function periodOf(seg: Segment, startField: number, endField: number): { start?: string; end?: string } | undefined {
  return periodFrom(dateOf(seg, startField, 'dateTime'), dateOf(seg, endField, 'dateTime'));
}
