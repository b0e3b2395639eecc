// indexRowsFor(resource): the search index rows of one resource, computed at write time from
// the SearchParameter FHIRPath expressions (R4 + the IG's own). The repository writes them in the
// same SQL statement as the resource; the search compiler reads the same tables.
import {
  AsAtom,
  DotAtom,
  FhirPathAtom,
  SymbolAtom,
  UnionAtom,
  convertToSearchableDates,
  convertToSearchableNumbers,
  convertToSearchableQuantities,
  convertToSearchableReferences,
  convertToSearchableStrings,
  convertToSearchableTokens,
  convertToSearchableUris,
  evalFhirPathTyped,
  formatAddress,
  formatHumanName,
  getElementDefinition,
  getSearchParameterDetails,
  getSearchParameters,
  parseFhirPath,
  toTypedValue,
  type Atom,
  type TypedValue,
} from '@medplum/core';
import type { Address, HumanName, Identifier, Location, Reference, Resource, SearchParameter } from '@medplum/fhirtypes';
import { dateRange } from './dates.ts';
import { normalizeString } from './normalize.ts';

export interface TokenRow { param: string; system: string | null; code: string | null; display: string | null }
export interface StringRow { param: string; value: string; exact: string }
export interface DateRow { param: string; low: string; high: string }
export interface NumberRow { param: string; value: number | null; low: number | null; high: number | null }
export interface QuantityRow extends NumberRow { system: string | null; code: string | null; unit: string | null }
export interface ReferenceRow { param: string; targetType: string | null; targetId: string | null; targetUrl: string | null }
export interface UriRow { param: string; value: string }
export interface GeoRow { param: string; lat: number; lng: number }
/**
 * One row per combination of component values of a composite parameter (e.g. Observation
 * code-value-quantity: the code of an Observation or component together with its value).
 * c1 is always a token (or a reference, stored as code "Type/id"); c2 is a token, a number /
 * quantity (low..high with system/code), a date range or a normalised string; c3 is the
 * third (numeric) component of the MolecularSequence coordinates.
 */
export interface CompositeRow {
  param: string;
  system1: string | null;
  code1: string | null;
  system2: string | null;
  code2: string | null;
  low2: number | null;
  high2: number | null;
  dlow2: string | null;
  dhigh2: string | null;
  text2: string | null;
  low3: number | null;
  high3: number | null;
}

export interface IndexRows {
  token: TokenRow[];
  string: StringRow[];
  date: DateRow[];
  number: NumberRow[];
  quantity: QuantityRow[];
  reference: ReferenceRow[];
  uri: UriRow[];
  geo: GeoRow[];
  composite: CompositeRow[];
}

export const INDEX_TABLES = ['token', 'string', 'date', 'number', 'quantity', 'reference', 'uri', 'geo', 'composite'] as const;
export type IndexTable = (typeof INDEX_TABLES)[number];

interface Indexer {
  code: string;
  type: SearchParameter['type'];
  atom: FhirPathAtom;
  /** Composite parameters: the component parameters, each with its expression relative to the base. */
  components?: { type: SearchParameter['type']; atom: FhirPathAtom }[];
  /**
   * The resource's properties the expression starts from (one or two steps each, readPaths):
   * when the resource has none of them, the parameter has no value and is not evaluated.
   * Undefined when the expression can read anything.
   */
  paths?: string[][];
}

/**
 * The property paths (the first one or two steps after the type) an expression can read from a
 * resource of `type`: `Patient.name.family | Patient.address` -> [[name, family], [address]].
 * Undefined unless every branch is such a path (possibly followed by functions, as in
 * `Patient.telecom.where(...)` or `(Patient.deceased as dateTime)`): a function or operator
 * at the start can produce a value from nothing (`Patient.deceased.exists() and ...`).
 */
function readPaths(atom: Atom, type: string): string[][] | undefined {
  if (atom instanceof FhirPathAtom) return readPaths(atom.child, type);
  if (atom instanceof UnionAtom) {
    const left = readPaths(atom.left, type);
    const right = readPaths(atom.right, type);
    return left && right ? [...left, ...right] : undefined;
  }
  if (atom instanceof AsAtom) return readPaths(atom.left, type);
  if (!(atom instanceof DotAtom)) return undefined;
  const steps: Atom[] = [];
  for (let a: Atom = atom; ; a = a.left) {
    if (!(a instanceof DotAtom)) {
      steps.unshift(a);
      break;
    }
    steps.unshift(a.right);
  }
  const [root, ...rest] = steps;
  if (!(root instanceof SymbolAtom)) return undefined;
  // Another type's branch (a shared parameter's expression) reads nothing of this one.
  if (root.name !== type && root.name !== 'Resource' && root.name !== 'DomainResource') return /^[A-Z]/.test(root.name) ? [] : undefined;
  const path: string[] = [];
  for (const step of rest.slice(0, 2)) {
    if (!(step instanceof SymbolAtom)) break;
    path.push(step.name);
  }
  return path.length ? [path] : undefined;
}

/**
 * The key under which `node` holds the property: as named, as a choice (`deceased` ->
 * deceasedBoolean), or only as its primitive extension (`_birthDate`); undefined when absent.
 */
function propertyKey(node: unknown, name: string): string | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  const obj = node as Record<string, unknown>;
  if (obj[name] !== undefined) return name;
  for (const key in obj) {
    if (key.length > name.length && key.startsWith(name) && key.charCodeAt(name.length) >= 65 && key.charCodeAt(name.length) <= 90) return key;
  }
  return obj[`_${name}`] !== undefined ? `_${name}` : undefined;
}

/** True when the resource has something at one of the paths (readPaths). */
function mayHaveValues(resource: Resource, paths: string[][]): boolean {
  return paths.some(([first, second]) => {
    const key = propertyKey(resource, first);
    if (key === undefined) return false;
    if (second === undefined) return true;
    const value = (resource as unknown as Record<string, unknown>)[key];
    return (Array.isArray(value) ? value : [value]).some((v) => propertyKey(v, second) !== undefined);
  });
}

/** Marks display-text tokens (for :text) coming out of medplum's token converter. */
const TEXT_SYSTEM = 'urn:wardlink:token-text';

/** Suffixes of the extra token rows: identifier type + value (:of-type), reference identifiers (:identifier). */
export const OF_TYPE_SUFFIX = ':of-type';
export const IDENTIFIER_SUFFIX = ':identifier';

/**
 * Parameters that @medplum/core adds for its own platform (not R4, not ours): never indexed,
 * never searchable.
 */
const NOT_R4_PARAMS = new Set(['_project', '_compartment']);

export function isServedParam(code: string): boolean {
  return !NOT_R4_PARAMS.has(code);
}

const indexersByType = new Map<string, Indexer[]>();

/** Facts about a parameter read from its definitions (singleValued, fewValues), by "fact type.code". */
const paramFacts = new Map<string, boolean>();

/** Drops the cached indexers and parameter facts (after SearchParameters change). */
export function resetIndexers(): void {
  indexersByType.clear();
  paramFacts.clear();
}

function paramFact(fact: string, type: string, code: string, compute: () => boolean): boolean {
  const key = `${fact} ${type}.${code}`;
  let value = paramFacts.get(key);
  if (value === undefined) paramFacts.set(key, (value = compute()));
  return value;
}

function findByUrl(resourceType: string, url: string | undefined): SearchParameter | undefined {
  if (!url) return undefined;
  return Object.values(getSearchParameters(resourceType) ?? {}).find((sp) => sp.url === url);
}

function indexersFor(resourceType: string): Indexer[] {
  let list = indexersByType.get(resourceType);
  if (list) return list;
  list = [];
  for (const [code, sp] of Object.entries(getSearchParameters(resourceType) ?? {})) {
    if (!sp.expression || sp.type === 'special' || !isServedParam(code)) continue;
    // _id and _lastUpdated are columns of the resource table, not index rows.
    if (code === '_id' || code === '_lastUpdated') continue;
    const details = getSearchParameterDetails(resourceType, sp);
    if (sp.type === 'composite') {
      const components: Indexer['components'] = [];
      for (const c of sp.component ?? []) {
        const def = findByUrl(resourceType, c.definition);
        if (!def || !c.expression) break;
        components.push({ type: def.type, atom: parseFhirPath(c.expression) });
      }
      if (components.length < 2 || components.length !== (sp.component ?? []).length) continue;
      // medplum's parsed expression drops a bare "Observation" term of "Observation | Observation.component".
      const atom = parseFhirPath(sp.expression);
      list.push({ code, type: sp.type, atom, components, paths: readPaths(atom, resourceType) });
      continue;
    }
    list.push({ code, type: sp.type, atom: details.parsedExpression, paths: readPaths(details.parsedExpression, resourceType) });
  }
  indexersByType.set(resourceType, list);
  return list;
}

const LOCAL_REF = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

export function parseReference(ref: string, baseUrl?: string): { type: string; id: string } | undefined {
  let local = ref;
  if (baseUrl && ref.startsWith(baseUrl + '/')) local = ref.slice(baseUrl.length + 1);
  const m = LOCAL_REF.exec(local);
  return m ? { type: m[1], id: m[2] } : undefined;
}

export function emptyIndexRows(): IndexRows {
  return { token: [], string: [], date: [], number: [], quantity: [], reference: [], uri: [], geo: [], composite: [] };
}

/** The searchable strings of one value: every part of a HumanName / Address, plus the whole. */
function stringsOf(values: TypedValue[]): string[] {
  const out = new Set<string>();
  for (const tv of values) {
    if (tv.type === 'HumanName') {
      const n = tv.value as HumanName;
      for (const part of [n.family, ...(n.given ?? []), ...(n.prefix ?? []), ...(n.suffix ?? []), n.text]) if (part) out.add(part);
      const full = formatHumanName(n);
      if (full) out.add(full);
    } else if (tv.type === 'Address') {
      const a = tv.value as Address;
      for (const part of [...(a.line ?? []), a.city, a.district, a.state, a.postalCode, a.country, a.text]) if (part) out.add(part);
      const full = formatAddress(a);
      if (full) out.add(full);
    } else {
      for (const s of convertToSearchableStrings([tv])) if (s) out.add(s);
    }
  }
  return [...out];
}

// btree entries must stay well under the 2704-byte limit; long values are cut for the index
// (prefix search still works on the first 1,000 characters; :exact compares `exact`).
const MAX_INDEXED = 1000;

/** Index rows for the simple (non-composite) parameter types; shared by components. */
function simpleRows(rows: IndexRows, code: string, type: SearchParameter['type'], values: TypedValue[], baseUrl?: string): void {
  switch (type) {
    case 'token':
      for (const t of convertToSearchableTokens(values, { textSearchSystem: TEXT_SYSTEM })) {
        if (t.system === TEXT_SYSTEM) {
          if (t.value) rows.token.push({ param: code, system: null, code: null, display: normalizeString(t.value).slice(0, MAX_INDEXED) });
        } else if (t.value !== undefined || t.system !== undefined) {
          rows.token.push({ param: code, system: t.system ?? null, code: t.value?.slice(0, MAX_INDEXED) ?? null, display: null });
        }
      }
      for (const tv of values) {
        if (tv.type !== 'Identifier') continue;
        const id = tv.value as Identifier;
        for (const c of id.type?.coding ?? []) {
          if (c.code && id.value) rows.token.push({ param: code + OF_TYPE_SUFFIX, system: c.system ?? null, code: `${c.code}|${id.value}`, display: null });
        }
      }
      break;
    case 'string':
      for (const s of stringsOf(values)) {
        rows.string.push({ param: code, value: normalizeString(s).slice(0, MAX_INDEXED), exact: s });
      }
      break;
    case 'date':
      for (const p of convertToSearchableDates(values)) {
        const low = p.start ? dateRange(p.start)?.low : '-infinity';
        const high = p.end ? dateRange(p.end)?.high : 'infinity';
        if (low && high) rows.date.push({ param: code, low, high });
      }
      break;
    case 'number':
      for (const [low, high] of convertToSearchableNumbers(values)) {
        const value = low !== undefined && low === high ? low : null;
        rows.number.push({ param: code, value, low: low ?? null, high: high ?? null });
      }
      break;
    case 'quantity':
      for (const q of convertToSearchableQuantities(values)) {
        if (q.value === undefined) continue;
        rows.quantity.push({
          param: code,
          value: q.value,
          low: q.value,
          high: q.value,
          system: q.system ?? null,
          code: q.code ?? null,
          unit: q.unit ?? null,
        });
      }
      break;
    case 'reference':
      for (const ref of convertToSearchableReferences(values)) {
        if (!ref || ref.startsWith('#')) continue;
        const local = parseReference(ref, baseUrl);
        rows.reference.push(
          local
            ? { param: code, targetType: local.type, targetId: local.id, targetUrl: null }
            : { param: code, targetType: null, targetId: null, targetUrl: ref },
        );
      }
      for (const tv of values) {
        const ident = tv.type === 'Reference' ? (tv.value as Reference).identifier : undefined;
        if (ident?.value || ident?.system) {
          rows.token.push({ param: code + IDENTIFIER_SUFFIX, system: ident.system ?? null, code: ident.value ?? null, display: null });
        }
      }
      break;
    case 'uri':
      for (const u of convertToSearchableUris(values)) {
        if (u) rows.uri.push({ param: code, value: u.slice(0, MAX_INDEXED) });
      }
      break;
  }
}

type Part = Partial<Omit<CompositeRow, 'param'>>;

/** The values of one composite component, as column sets for the given position (1, 2 or 3). */
function componentParts(type: SearchParameter['type'], values: TypedValue[], pos: 1 | 2 | 3, baseUrl?: string): Part[] {
  const r = emptyIndexRows();
  simpleRows(r, 'c', type, values, baseUrl);
  const parts: Part[] = [];
  if (pos === 3) {
    for (const n of r.number) parts.push({ low3: n.low, high3: n.high });
    for (const q of r.quantity) parts.push({ low3: q.low, high3: q.high });
    return parts;
  }
  const sys = pos === 1 ? 'system1' : 'system2';
  const cod = pos === 1 ? 'code1' : 'code2';
  for (const t of r.token) if (t.param === 'c' && t.code !== null) parts.push({ [sys]: t.system, [cod]: t.code });
  for (const ref of r.reference) parts.push({ [sys]: null, [cod]: ref.targetType ? `${ref.targetType}/${ref.targetId}` : ref.targetUrl });
  if (pos === 2) {
    for (const n of r.number) parts.push({ low2: n.low, high2: n.high });
    for (const q of r.quantity) parts.push({ low2: q.low, high2: q.high, system2: q.system, code2: q.code ?? q.unit });
    for (const d of r.date) parts.push({ dlow2: d.low, dhigh2: d.high });
    for (const s of r.string) parts.push({ text2: s.value });
    for (const u of r.uri) parts.push({ system2: null, code2: u.value });
  }
  return parts;
}

function compositeRows(rows: IndexRows, ix: Indexer, typed: TypedValue[], baseUrl?: string): void {
  const comps = ix.components as NonNullable<Indexer['components']>;
  for (const base of evalFhirPathTyped(ix.atom, typed)) {
    const ctx = [base];
    let combos: Part[] = [{}];
    comps.forEach((c, i) => {
      const vals = evalFhirPathTyped(c.atom, ctx, { '%resource': typed[0] });
      const parts = componentParts(c.type, vals, (i + 1) as 1 | 2 | 3, baseUrl);
      const next: Part[] = [];
      for (const a of combos) for (const b of parts) next.push({ ...a, ...b });
      combos = next;
    });
    for (const p of combos) {
      rows.composite.push({
        param: ix.code,
        system1: p.system1 ?? null,
        code1: p.code1 ?? null,
        system2: p.system2 ?? null,
        code2: p.code2 ?? null,
        low2: p.low2 ?? null,
        high2: p.high2 ?? null,
        dlow2: p.dlow2 ?? null,
        dhigh2: p.dhigh2 ?? null,
        text2: p.text2 ?? null,
        low3: p.low3 ?? null,
        high3: p.high3 ?? null,
      });
    }
  }
}

/**
 * Pairs of parameters searched together often enough, over large match sets, to deserve their
 * own index rows (in idx_composite, param "<token>+<other>", one row per combination of the
 * resource's token rows and the other parameter's rows):
 *
 * - token + date: "Observation?code=X&date=ge2025-06" as two separate index lookups means
 *   intersecting the ids of every X (a sixth of all Observations for heart rate) with the ids of
 *   every Observation in the date range, which no index can do quickly (hundreds of milliseconds
 *   at a million Observations, however it is joined). The pair rows (code1/system1 = the token,
 *   dlow2/dhigh2 = the date) give exactly the matches from one range scan, counted index-only.
 * - token + reference (subject): "Patient?_has:Observation:patient:code=X" walks patients in id
 *   order and needs, for each, "has an Observation with code X"; without the pair that is one
 *   index probe per Observation of the patient. The pair rows (system2/code2 = target type/id)
 *   answer it with one probe per patient, or one ordered merge. They also answer
 *   "Observation?patient=P&code=X" exactly.
 *
 * Kept to the clinical "what + when" and "what + whose" pairs so writes stay cheap (a few extra
 * rows per resource). compile.ts pairDriver / has() use them; migration 006 indexes them.
 */
export const INDEX_PAIRS: Readonly<Record<string, readonly (readonly [token: string, other: string])[]>> = {
  Observation: [['code', 'date'], ['category', 'date'], ['code', 'subject']],
  Condition: [['code', 'onset-date'], ['code', 'subject']],
  Procedure: [['code', 'date'], ['code', 'subject']],
  DiagnosticReport: [['code', 'date'], ['category', 'date'], ['code', 'subject']],
  MedicationRequest: [['code', 'authoredon'], ['code', 'subject']],
  Encounter: [['class', 'date'], ['type', 'date']],
  Immunization: [['vaccine-code', 'date']],
  ServiceRequest: [['code', 'authored']],
};

/** The idx_composite param of a pair (no SearchParameter code contains "+"). */
export function pairParam(token: string, other: string): string {
  return `${token}+${other}`;
}

/**
 * The pair rows that answer `token` together with `other` on `type`: the pair itself, or for
 * "patient" the (token, subject) pair restricted to Patient targets where patient is defined as
 * the subject that is a Patient (as in R4 for Observation, Condition and others).
 */
export function findPair(type: string, token: string, other: string): PairRows | undefined {
  const pairs = INDEX_PAIRS[type] ?? [];
  if (pairs.some(([t, o]) => t === token && o === other)) return { param: pairParam(token, other), onePerCoding: singleValued(type, other) };
  if (other === 'patient' && pairs.some(([t, o]) => t === token && o === 'subject')) {
    // R4's patient parameters share one expression for all types: this type's part of it
    const own = ownPaths(type, 'patient');
    if (own.length === 1 && own[0] === `${type}.subject.where(resolve()isPatient)`) {
      return { param: pairParam(token, 'subject'), targetType: 'Patient', onePerCoding: singleValued(type, 'subject') };
    }
  }
  return undefined;
}

export interface PairRows {
  /** The idx_composite param of the pair rows. */
  param: string;
  /** Only rows whose reference targets this type answer the search (patient = subject that is a Patient). */
  targetType?: string;
  /**
   * A resource has at most one pair row per coding (system|code): the other parameter yields at
   * most one index row per resource, and pairRows() writes each coding once. A search for one
   * exact system|code then finds each resource at most once, so its ids need no DISTINCT
   * (which costs more than the scan itself over thousands of matches).
   */
  onePerCoding: boolean;
}

/** This type's parts of a SearchParameter expression (R4 shares one expression over many types). */
function ownPaths(type: string, code: string): string[] {
  return (getSearchParameters(type)?.[code]?.expression ?? '')
    .split('|')
    .map((e) => e.replace(/\s+/g, '').replace(/^\((.*)\)$/, '$1'))
    .filter((e) => e.startsWith(`${type}.`));
}

/** The top-level element each part of this type's expression names (undefined when one is deeper or unknown). */
function topElements(type: string, code: string): Set<string | undefined> {
  return new Set(ownPaths(type, code).map((p) => /^[A-Za-z]+\.([a-z][A-Za-z0-9]*)(?:\.(?:ofType|as|where)\([^()]*(?:\(\))?[^()]*\))?$/.exec(p)?.[1]));
}

function elementDefinition(type: string, element: string | undefined) {
  return element ? (getElementDefinition(type, element) ?? getElementDefinition(type, `${element}[x]`)) : undefined;
}

/**
 * Whether token parameter `code` of `type` takes only a handful of values across all resources:
 * every element it reads is a `code` (bound to a small fixed value set: gender, status, intent)
 * or a boolean (active). Such a condition matches a large share of the rows (every woman, every
 * final Observation), so it is a poor source of candidate ids next to almost any other condition.
 */
export function fewValues(type: string, code: string): boolean {
  return paramFact('few', type, code, () => {
    const elements = [...topElements(type, code)];
    return (
      elements.length > 0 &&
      elements.every((e) => {
        const types = elementDefinition(type, e)?.type?.map((t) => t.code) ?? [];
        return types.length > 0 && types.every((t) => t === 'code' || t === 'boolean');
      })
    );
  });
}

/**
 * Whether date or reference parameter `code` of `type` yields at most one index row per
 * resource: every part of its expression for this type names the same top-level element (a
 * choice type's variants count as one), optionally narrowed by ofType / as / where, and that
 * element does not repeat in the R4 definitions (one dateTime, Period or Reference gives one
 * row; medplum indexes no Timing). Not for tokens: one CodeableConcept gives a row per coding.
 */
export function singleValued(type: string, code: string): boolean {
  return paramFact('single', type, code, () => {
    const kind = getSearchParameters(type)?.[code]?.type;
    const elements = topElements(type, code);
    const [element] = elements;
    return (kind === 'date' || kind === 'reference') && elements.size === 1 && elementDefinition(type, element)?.isArray === false;
  });
}

/** Whether a type writes pair rows (so its idx_composite rows must be cleared on update). */
export function hasPairRows(resourceType: string): boolean {
  return resourceType in INDEX_PAIRS;
}

/** Every combination of the pair's token rows (not the :text ones) and the other's rows. */
function pairRows(rows: IndexRows, resourceType: string): void {
  for (const [token, other] of INDEX_PAIRS[resourceType] ?? []) {
    const dates = rows.date.filter((d) => d.param === other);
    // local references only (an absolute URL has no type / id to pair)
    const refs = rows.reference.filter((r) => r.param === other && r.targetId !== null);
    if (!dates.length && !refs.length) continue;
    const seen = new Set<string>();
    for (const t of rows.token) {
      if (t.param !== token || t.display !== null) continue;
      const key = `${t.system}|${t.code}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const base = { param: pairParam(token, other), system1: t.system, code1: t.code, system2: null, code2: null, low2: null, high2: null, dlow2: null, dhigh2: null, text2: null, low3: null, high3: null };
      for (const d of dates) rows.composite.push({ ...base, dlow2: d.low, dhigh2: d.high });
      for (const r of refs) rows.composite.push({ ...base, system2: r.targetType, code2: r.targetId });
    }
  }
}

/**
 * Absolute references to this server ("<base>/Patient/1") become relative ones before the
 * FHIRPath runs, so `resolve() is Patient` and the reference rows treat both spellings alike.
 */
function localizeReferences<T>(value: T, prefix: string): T {
  if (Array.isArray(value)) return value.map((v) => localizeReferences(v, prefix)) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = k === 'reference' && typeof v === 'string' && v.startsWith(prefix) ? v.slice(prefix.length) : localizeReferences(v, prefix);
    }
    return out as T;
  }
  return value;
}

/**
 * The index rows of a resource. everyParam: evaluate every parameter's expression, without the
 * check that skips those whose properties the resource lacks (tests compare the two).
 */
export function indexRowsFor(input: Resource, baseUrl?: string, options: { everyParam?: boolean } = {}): IndexRows {
  const rows = emptyIndexRows();
  const resource = baseUrl && JSON.stringify(input).includes(`"${baseUrl}/`) ? localizeReferences(input, baseUrl + '/') : input;
  const typed = [toTypedValue(resource)];
  for (const ix of indexersFor(resource.resourceType)) {
    // Most parameters of a type find nothing in a given resource: skip the FHIRPath evaluation.
    if (ix.paths && !options.everyParam && !mayHaveValues(resource, ix.paths)) continue;
    if (ix.components) {
      compositeRows(rows, ix, typed, baseUrl);
      continue;
    }
    const values = evalFhirPathTyped(ix.atom, typed);
    if (values.length === 0) continue;
    simpleRows(rows, ix.code, ix.type, values, baseUrl);
  }
  pairRows(rows, resource.resourceType);
  if (resource.resourceType === 'Location') {
    const pos = (resource as Location).position;
    if (pos && typeof pos.latitude === 'number' && typeof pos.longitude === 'number') {
      rows.geo.push({ param: 'near', lat: pos.latitude, lng: pos.longitude });
    }
  }
  return rows;
}
