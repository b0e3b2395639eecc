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

/**
 * An index of subscriptions by their filters, so an event is checked against the few whose
 * filter may match it rather than all N (1,000 subscriptions on Patient each filtering on one
 * family name: an event looks at the one or two that share a three-letter piece of its values).
 * A subscription is indexed by the first pre-checkable parameter of its first filter that has
 * one, under one three-letter piece of each value it wants (the piece with the fewest
 * subscriptions filed under it): a wanted value contained in one of the focus's values (what
 * mayMatch needs) has every one of its pieces in that value too. Everything
 * else (no filter, no checkable parameter, a value shorter than three) is always a candidate.
 * Like mayMatch it only narrows: the full match still decides.
 */
export class FilterIndex {
  /** filter resource type ('*': any) -> parameter code -> trigram -> subscription ids */
  private readonly grams = new Map<string, Map<string, Map<string, Set<string>>>>();
  private readonly always = new Set<string>();
  private readonly placed = new Map<string, [type: string, code: string, gram: string][]>();

  add(id: string, filters: { type?: string; params: [string, string][] }[]): void {
    this.remove(id);
    for (const f of filters) {
      const check = prepare(f.params)[0];
      if (!check) continue;
      const [code, wanted] = check;
      if (wanted.some((w) => w.length < 3)) continue;
      const type = f.type ?? '*';
      const byCode = this.grams.get(type) ?? new Map<string, Map<string, Set<string>>>();
      this.grams.set(type, byCode);
      const byGram = byCode.get(code) ?? new Map<string, Set<string>>();
      byCode.set(code, byGram);
      const keys: [string, string, string][] = [];
      for (const w of wanted) {
        const gram = this.pick(byGram, w);
        const ids = byGram.get(gram) ?? new Set<string>();
        ids.add(id);
        byGram.set(gram, ids);
        keys.push([type, code, gram]);
      }
      this.placed.set(id, keys);
      return;
    }
    this.always.add(id);
  }

  /**
   * The trigram of w to file it under: the one whose bucket is smallest now, the later one on a
   * tie (values that share a prefix, "SubBench000123", differ at the end), so buckets stay small.
   */
  private pick(byGram: Map<string, Set<string>>, w: string): string {
    let best = w.slice(w.length - 3);
    let size = byGram.get(best)?.size ?? 0;
    for (let i = w.length - 4; i >= 0 && size > 0; i--) {
      const gram = w.slice(i, i + 3);
      const n = byGram.get(gram)?.size ?? 0;
      if (n < size) {
        best = gram;
        size = n;
      }
    }
    return best;
  }

  remove(id: string): void {
    this.always.delete(id);
    for (const [type, code, gram] of this.placed.get(id) ?? []) {
      const byCode = this.grams.get(type);
      const byGram = byCode?.get(code);
      const ids = byGram?.get(gram);
      ids?.delete(id);
      if (ids && ids.size === 0) byGram!.delete(gram);
      if (byGram && byGram.size === 0) byCode!.delete(code);
      if (byCode && byCode.size === 0) this.grams.delete(type);
    }
    this.placed.delete(id);
  }

  /** The subscriptions whose filters may match a focus of this type with these values. */
  candidates(type: string, values: EventValues): Set<string> {
    const out = new Set(this.always);
    for (const key of type === '*' ? ['*'] : [type, '*']) {
      const byCode = this.grams.get(key);
      if (!byCode) continue;
      for (const [code, byGram] of byCode) {
        const have = values.values(code);
        if (!have) {
          // Not pre-checkable on this focus: every subscription under it stays a candidate.
          for (const ids of byGram.values()) for (const id of ids) out.add(id);
          continue;
        }
        for (const h of have) {
          for (let i = 0; i + 3 <= h.length; i++) {
            const ids = byGram.get(h.slice(i, i + 3));
            if (ids) for (const id of ids) out.add(id);
          }
        }
      }
    }
    return out;
  }
}
