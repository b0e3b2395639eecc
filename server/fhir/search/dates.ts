// FHIR date / dateTime / instant strings -> the instant range they cover at their precision:
// "2015" covers the whole year, "2015-03" the month, "2015-03-14T10:00:00Z" that second.
// Values without a time zone are taken as UTC (R4 leaves this to the server).

export interface InstantRange {
  low: string;
  high: string;
}

const DATE_RE =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

export function dateRange(value: string): InstantRange | undefined {
  const m = DATE_RE.exec(value.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  const year = Number(y);
  const offsetMs = tz && tz !== 'Z' ? (tz[0] === '-' ? -1 : 1) * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6))) * 60000 : 0;
  let start: number;
  let end: number; // exclusive
  if (mo === undefined) {
    start = Date.UTC(year, 0, 1);
    end = Date.UTC(year + 1, 0, 1);
  } else if (d === undefined) {
    start = Date.UTC(year, Number(mo) - 1, 1);
    end = Date.UTC(year, Number(mo), 1);
  } else if (h === undefined) {
    start = Date.UTC(year, Number(mo) - 1, Number(d));
    end = start + 86400000;
  } else {
    const base = Date.UTC(year, Number(mo) - 1, Number(d), Number(h), Number(mi)) - offsetMs;
    if (s === undefined) {
      start = base;
      end = base + 60000;
    } else if (frac === undefined) {
      start = base + Number(s) * 1000;
      end = start + 1000;
    } else {
      const ms = Number((frac + '00').slice(0, 3));
      start = base + Number(s) * 1000 + ms;
      end = start + 1;
    }
  }
  if (Number.isNaN(start) || Number.isNaN(end)) return undefined;
  return { low: new Date(start).toISOString(), high: new Date(end - 1).toISOString() };
}
