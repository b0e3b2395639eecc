// A cheap, conservative pre-check of a Subscription's filter criteria against one event's focus
// resource, so the engine does not run medplum's full matchesSearchRequest (FHIRPath per
// subscription) for each of N subscriptions on every change. Per event, each search parameter
// used by a filter is evaluated on the focus once (EventValues); a subscription then needs only
// string tests. The pre-check may pass what does not match (the full match confirms), never the
// reverse: it only rejects a plain string or token parameter (no modifier, no chain, no escape)
// when none of its comma-separated values occurs, case- and accent-insensitively, inside any
// string of the focus's values for that parameter. FHIR string search is "starts with" and
// token search is code equality, both of which imply that containment.
import { evalFhirPath, getSearchParameter } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';

const fold = (s: string): string => s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();

function strings(value: unknown, out: string[]): void {
  if (typeof value === 'string') out.push(fold(value));
  else if (typeof value === 'number' || typeof value === 'boolean') out.push(String(value));
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) strings(v, out);
}

/** The focus's values per search parameter code, evaluated at most once per event. */
export class EventValues {
  private readonly focus: Resource;
  private readonly cache = new Map<string, string[] | null>();
  constructor(focus: Resource) {
    this.focus = focus;
  }

  /** Folded strings of the parameter's values; null when the parameter cannot be pre-checked. */
  values(code: string): string[] | null {
    let v = this.cache.get(code);
    if (v !== undefined) return v;
    v = null;
    const sp = getSearchParameter(this.focus.resourceType, code);
    if (sp?.expression && (sp.type === 'string' || sp.type === 'token')) {
      try {
        const out: string[] = [];
        strings(evalFhirPath(sp.expression, this.focus), out);
        v = out;
      } catch {
        v = null;
      }
    }
    this.cache.set(code, v);
    return v;
  }
}

type Check = [code: string, wanted: string[]];
/** The checkable parameters of a filter, folded once per filter (keyed by its params array). */
const prepared = new WeakMap<[string, string][], Check[]>();

function prepare(params: [string, string][]): Check[] {
  let checks = prepared.get(params);
  if (checks) return checks;
  checks = [];
  for (const [code, raw] of params) {
    if (code.startsWith('_') || code.includes(':') || code.includes('.') || raw.includes('\\') || raw === '') continue;
    const wanted = raw.split(',').map((x) => fold(x.slice(x.lastIndexOf('|') + 1)));
    if (wanted.some((w) => w === '')) continue; // "system|" matches on the system alone
    checks.push([code, wanted]);
  }
  prepared.set(params, checks);
  return checks;
}

/** false only when the filter's parameters certainly do not match the focus (see above). */
export function mayMatch(params: [string, string][], values: EventValues): boolean {
  for (const [code, wanted] of prepare(params)) {
    const have = values.values(code);
    if (!have) continue;
    if (!wanted.some((w) => have.some((h) => h.includes(w)))) return false;
  }
  return true;
}
