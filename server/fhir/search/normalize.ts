// How string index values and string search values are folded, in one place: lower case with
// accents removed, so "Müller" is found by "muller" (R4 string search is case- and
// accent-insensitive).
export function normalizeString(s: string): string {
  return s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
}
