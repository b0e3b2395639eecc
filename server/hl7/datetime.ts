// HL7 v2 DTM / DT / TM values -> FHIR date, dateTime and instant. v2 allows any precision
// (YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]); FHIR instants need seconds and a zone, so a
// value without a zone is read in the configured default zone (UTC unless told otherwise).

const DTM = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$/;

export interface V2Time {
  year: string;
  month?: string;
  day?: string;
  hour?: string;
  minute?: string;
  second?: string;
  fraction?: string;
  zone?: string;
}

export function parseDtm(value: string): V2Time | undefined {
  const m = DTM.exec(value.trim());
  if (!m) return undefined;
  const [, year, month, day, hour, minute, second, fraction, zone] = m;
  const t: V2Time = { year, month, day, hour, minute, second, fraction, zone };
  if (month && (Number(month) < 1 || Number(month) > 12)) return undefined;
  if (day) {
    const d = new Date(Date.UTC(Number(year), Number(month) - 1, Number(day)));
    if (d.getUTCDate() !== Number(day)) return undefined;
  }
  if (hour && Number(hour) > 23) return undefined;
  if (minute && Number(minute) > 59) return undefined;
  if (second && Number(second) > 59) return undefined;
  if (zone && (Number(zone.slice(1, 3)) > 14 || Number(zone.slice(3)) > 59)) return undefined;
  return t;
}

function fhirZone(zone: string | undefined, defaultZone: string): string {
  const z = zone ?? defaultZone;
  return z === 'Z' ? 'Z' : `${z.slice(0, 3)}:${z.slice(3)}`;
}

/** FHIR date (YYYY, YYYY-MM or YYYY-MM-DD). */
export function toFhirDate(value: string): string | undefined {
  const t = parseDtm(value);
  if (!t) return undefined;
  return [t.year, t.month, t.day].filter(Boolean).join('-');
}

/**
 * FHIR dateTime: keeps the precision for dates; a time part needs a zone in FHIR, so hours get
 * minutes and seconds added and the default zone when the value has none.
 */
export function toFhirDateTime(value: string, defaultZone = 'Z'): string | undefined {
  const t = parseDtm(value);
  if (!t) return undefined;
  if (!t.hour) return [t.year, t.month, t.day].filter(Boolean).join('-');
  const frac = t.fraction ? `.${t.fraction}` : '';
  return `${t.year}-${t.month}-${t.day}T${t.hour}:${t.minute ?? '00'}:${t.second ?? '00'}${frac}${fhirZone(t.zone, defaultZone)}`;
}

/** FHIR instant (needs a full date and time); a date alone reads as midnight. */
export function toFhirInstant(value: string, defaultZone = 'Z'): string | undefined {
  const t = parseDtm(value);
  if (!t || !t.month || !t.day) return undefined;
  const frac = t.fraction ? `.${t.fraction}` : '';
  return `${t.year}-${t.month}-${t.day}T${t.hour ?? '00'}:${t.minute ?? '00'}:${t.second ?? '00'}${frac}${fhirZone(t.zone, defaultZone)}`;
}

/** Milliseconds since the epoch (for ordering events), or undefined. */
export function toEpochMs(value: string, defaultZone = 'Z'): number | undefined {
  const instant = toFhirInstant(value, defaultZone);
  if (!instant) return undefined;
  const ms = Date.parse(instant);
  return Number.isNaN(ms) ? undefined : ms;
}

/** Now as a v2 DTM with seconds and zone (for MSH-7 of the messages we write). */
export function nowDtm(date = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${date.getUTCFullYear()}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}+0000`;
}

/** A FHIR date/dateTime/instant -> v2 DTM. */
export function fromFhirDateTime(value: string | undefined): string {
  if (!value) return '';
  const m = /^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(?:T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?)?$/.exec(value);
  if (!m) return '';
  const [, y, mo, d, h, mi, s, z] = m;
  let out = `${y}${mo ?? ''}${d ?? ''}${h ?? ''}${mi ?? ''}${s ?? ''}`;
  if (h && z) out += z === 'Z' ? '+0000' : z.replace(':', '');
  return out;
}
