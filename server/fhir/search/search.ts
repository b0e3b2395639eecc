// Search entry points used by the REST layer and by conditional interactions.
//
// A search page is one SQL statement: the filters (EXISTS over the idx_* tables, see
// compile.ts), the sort keys, keyset paging and the optional count, with the page's content
// joined back by id so only the page's rows are read from the resource table. _include /
// _revinclude are one more statement (a recursive CTE for :iterate). The Bundle is assembled
// by string concatenation around each row's stored JSON text.
//
// Paging is keyset-based: next/previous links carry an opaque cursor holding the sort-key values
// (and type + id) of the last/first row of the page, so pages stay correct while data changes
// (nothing is skipped or repeated because rows were inserted or deleted before the cursor).
import { randomUUID } from 'node:crypto';
import { getSearchParameters } from '@medplum/core';
import type { OperationOutcomeIssue, SearchParameter } from '@medplum/fhirtypes';
import type pg from 'pg';
import type { Queryable } from '../../db/pool.ts';
import { instantSql, isDb, preparedStatement } from '../../db/pool.ts';
import { isResourceType, loadDefinitions } from '../definitions.ts';
import { badRequest, forbidden } from '../outcome.ts';
import { isServedParam } from './index-rows.ts';
import { Compiler, RESULT_PARAMS, SqlBuilder, pairDriver, paramDef, table, toKm, type Driver, type Near } from './compile.ts';
import type { Restriction } from '../../auth/access.ts';
import { patientCompartmentParams } from '../compartment.ts';
import { subsetJson as subset, type SummaryMode as Summary } from '../elements.ts';
import { ParamError, splitPipe } from './values.ts';

export interface SearchOptions {
  /** Public FHIR base, e.g. http://localhost:8080/fhir (for fullUrl and links). */
  fhirBase: string;
  defaultCount: number;
  maxCount: number;
  /** Prefer: handling=strict -> unknown/malformed parameters are a 400. */
  strict: boolean;
  /**
   * The caller's access rules per resource type (server/auth/access.ts): undefined = may not
   * read that type at all (its resources are left out of includes); a Restriction = conditions
   * compiled into the SQL. Absent for the server's own trusted searches.
   */
  access?: (type: string) => Restriction | undefined;
}

export interface SearchRequest {
  /** undefined for a system-level search (GET /fhir?_type=...). */
  resourceType?: string;
  /** Query parameters in order, repeated names kept (AND). */
  params: [string, string][];
}

export interface Match {
  id: string;
  version: number;
  lastUpdated: string;
  json: string;
}

type KeyCast = 'text' | 'timestamptz' | 'numeric' | 'float8';

interface SortKey {
  desc: boolean;
  /** The key is never null (so a cursor on it also bounds an index range scan). */
  notNull?: boolean;
  /** Compared in byte order (text_pattern_ops: ~<~ ~>~), the order of the string prefix index. */
  pattern?: boolean;
  /** The key reads a column of the resource row (not just its id). */
  usesRow?: boolean;
  cast: KeyCast;
  /** SQL of the key for a row of `type` reached through alias a. */
  sql: (type: string, alias: string) => string;
}

interface IncludeSpec {
  source: string;
  /** undefined = '*' */
  param?: string;
  target?: string;
  iterate: boolean;
  reverse: boolean;
}

interface Parsed {
  types: string[];
  filters: Map<string, string[]>;
  sort: SortKey[];
  count: number;
  /** auto: no _total given (see search()). */
  total: 'none' | 'estimate' | 'accurate' | 'auto';
  summary?: Summary;
  elements?: string[];
  includes: IncludeSpec[];
  cursor?: Cursor;
  /** The values the filters bound (they come first). */
  filterValues: unknown[];
  /** Range conditions within each filter (SqlBuilder.ranges), for Source.fixedPlan. */
  rangesOf: Map<string, number>;
  warnings: OperationOutcomeIssue[];
}

interface Cursor {
  /** n: the page after the row; p: the page before it */
  d: 'n' | 'p';
  k: (string | number | null)[];
  t: string;
  i: string;
}

const UNSUPPORTED = new Set(['_query', '_contained', '_containedType', '_score']);

// ---------------------------------------------------------------------------------------- parse

function fail(strict: boolean, warnings: OperationOutcomeIssue[], e: unknown): void {
  if (!(e instanceof ParamError)) throw e;
  if (strict) throw badRequest(e.message, [e.param]);
  warnings.push({ severity: 'warning', code: 'not-supported', diagnostics: `Ignored parameter ${e.param}: ${e.message}`, expression: [e.param] });
}

function sortKeyFor(c: Compiler, types: string[], raw: string): SortKey {
  const desc = raw.startsWith('-');
  const code = desc ? raw.slice(1) : raw;
  if (code === '_id') return { desc, cast: 'text', sql: (_t, a) => `${a}.id` };
  if (code === '_lastUpdated') return { desc, usesRow: true, cast: 'timestamptz', sql: (_t, a) => `${a}.last_updated` };
  const defs = types.map((t) => paramDef(t, code));
  const kind = defs[0]?.type;
  if (!kind || defs.some((d) => d?.type !== kind)) throw new ParamError('_sort', `Cannot sort ${types.join(',')} by "${code}"`);
  const agg = desc ? 'max' : 'min';
  const sub = (tbl: string, expr: string, cast: KeyCast): SortKey => ({
    desc,
    cast,
    sql: (t, a) =>
      `(SELECT ${agg}(${expr}) FROM idx_${tbl} x WHERE x.resource_type = ${c.sql.bind(t)} AND x.resource_id = ${a}.id AND x.param = ${c.sql.bind(code)})`,
  });
  switch (kind) {
    case 'string':
      return sub('string', 'x.value', 'text');
    case 'token':
      return sub('token', 'x.code', 'text');
    case 'uri':
      return sub('uri', 'x.value', 'text');
    case 'reference':
      return sub('reference', `coalesce(x.target_type || '/' || x.target_id, x.target_url)`, 'text');
    case 'date':
      return sub('date', desc ? 'x.high' : 'x.low', 'timestamptz');
    case 'number':
      return sub('number', desc ? 'x.high' : 'x.low', 'numeric');
    case 'quantity':
      return sub('quantity', desc ? 'x.high' : 'x.low', 'numeric');
    default:
      throw new ParamError('_sort', `Cannot sort by ${kind} parameter "${code}"`);
  }
}

function distanceKey(c: Compiler, near: Near): SortKey {
  return {
    desc: false,
    cast: 'float8',
    sql: (_t, a) =>
      `(SELECT min(${c.distanceSql(near, 'g.lat', 'g.lng')}) FROM idx_geo g WHERE g.resource_type = 'Location' AND g.resource_id = ${a}.id AND g.param = 'near')`,
  };
}

function parseInclude(name: string, value: string, types: string[], reverse: boolean): IncludeSpec {
  const iterate = name.endsWith(':iterate') || name.endsWith(':recurse');
  if (value === '*') return { source: reverse ? '*' : types[0], iterate, reverse };
  const [source, param, target] = value.split(':');
  if (!source || !isResourceType(source)) throw new ParamError(name, `${name}=${value}: unknown resource type "${source}"`);
  if (!param) throw new ParamError(name, `${name} takes Type:parameter[:TargetType]`);
  if (param !== '*') {
    const sp = paramDef(source, param);
    if (!sp || sp.type !== 'reference') throw new ParamError(name, `${source} has no reference parameter "${param}"`);
    if (target && (!isResourceType(target) || (sp.target && !sp.target.includes(target as never)))) {
      throw new ParamError(name, `${source}.${param} cannot refer to "${target}"`);
    }
  }
  return { source, param: param === '*' ? undefined : param, target, iterate, reverse };
}

function decodeCursor(raw: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Cursor;
    if ((c.d === 'n' || c.d === 'p') && Array.isArray(c.k) && typeof c.t === 'string' && typeof c.i === 'string') return c;
  } catch {
    // fall through
  }
  throw new ParamError('_cursor', 'The paging cursor is not valid (follow the links of a previous page)');
}

function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c), 'utf8').toString('base64url');
}

function parseRequest(c: Compiler, request: SearchRequest, options: SearchOptions, forMatch: boolean): Parsed {
  const warnings: OperationOutcomeIssue[] = [];
  const strict = options.strict || forMatch;
  let types: string[];
  if (request.resourceType) {
    if (!isResourceType(request.resourceType)) throw badRequest(`Unknown resource type "${request.resourceType}"`);
    types = [request.resourceType];
  } else {
    const t = request.params.filter(([k]) => k === '_type').flatMap(([, v]) => v.split(',')).filter(Boolean);
    const bad = t.filter((x) => !isResourceType(x));
    if (bad.length) throw badRequest(`Unknown resource type(s) in _type: ${bad.join(', ')}`, ['_type']);
    types = t.length ? [...new Set(t)] : loadDefinitions();
    if (types.length > 20) throw badRequest('A system-level search needs _type with at most 20 resource types', ['_type']);
  }
  const parsed: Parsed = {
    types,
    filters: new Map(types.map((t) => [t, []])),
    rangesOf: new Map(),
    sort: [],
    count: options.defaultCount,
    total: 'auto',
    includes: [],
    filterValues: [],
    warnings,
  };
  /** Compiles one filter, noting how many range conditions it holds. */
  const filter = <T extends string | undefined>(compile: () => T): T => {
    const before = c.sql.ranges;
    const cond = compile();
    if (cond) parsed.rangesOf.set(cond, (parsed.rangesOf.get(cond) ?? 0) + c.sql.ranges - before);
    return cond;
  };
  const nd = request.params.find(([k]) => k === 'near-distance');
  if (nd) {
    try {
      const [num, , unit] = splitPipe(nd[1], 3);
      const d = Number(num.replace(/^(le|lt|eq)/, ''));
      if (!Number.isFinite(d)) throw new ParamError('near-distance', `"${nd[1]}" is not a distance`);
      c.nearDistanceOverride = toKm('near-distance', d, unit || 'km');
    } catch (e) {
      fail(strict, warnings, e);
    }
  }
  let sortRaw: string | undefined;
  for (const [name, value] of request.params) {
    const base = name.split(':')[0];
    // A parameter that fails half-way may have bound values already: they go with it (an
    // unreferenced bind parameter is an error in PostgreSQL).
    const bound = c.sql.values.length;
    try {
      if (name === 'near-distance') continue;
      if (RESULT_PARAMS.has(base)) {
        if (forMatch && base !== '_format' && base !== '_pretty') throw new ParamError(name, `${name} cannot be used in a conditional request`);
        switch (base) {
          case '_sort':
            sortRaw = value;
            break;
          case '_count': {
            if (!/^\d+$/.test(value)) throw new ParamError(name, `_count must be a whole number, got "${value}"`);
            parsed.count = Math.min(Number(value), options.maxCount);
            break;
          }
          case '_total':
            if (value !== 'none' && value !== 'estimate' && value !== 'accurate') throw new ParamError(name, `_total takes none, estimate or accurate`);
            parsed.total = value;
            break;
          case '_summary':
            if (!['true', 'false', 'text', 'data', 'count'].includes(value)) throw new ParamError(name, `_summary takes true, false, text, data or count`);
            parsed.summary = value as Summary;
            break;
          case '_elements':
            parsed.elements = value.split(',').map((s) => s.trim()).filter(Boolean).map((s) => s.replace(/^[A-Z][A-Za-z]+\./, ''));
            break;
          case '_include':
          case '_revinclude':
            parsed.includes.push(parseInclude(name, value, types, base === '_revinclude'));
            break;
          case '_cursor':
            parsed.cursor = decodeCursor(value);
            break;
          default:
            break; // _format, _pretty (HTTP layer), _type (handled above)
        }
        continue;
      }
      if (UNSUPPORTED.has(base)) throw new ParamError(name, `${base} is not supported`);
      const conds = types.map((t) => filter(() => c.param(t, 'a', name, value)));
      types.forEach((t, i) => parsed.filters.get(t)!.push(conds[i]));
    } catch (e) {
      c.sql.truncate(bound);
      fail(strict, warnings, e);
    }
  }
  if (options.access) {
    // The caller's restriction is one more set of filters, compiled like any parameter (strict:
    // a restriction that cannot be compiled refuses the search rather than widening it).
    for (const t of types) {
      const r = options.access(t);
      if (!r) throw forbidden(`The token may not search ${t}`);
      for (const [name, value] of r.params) parsed.filters.get(t)!.push(filter(() => c.param(t, 'a', name, value)));
      const cond = filter(() => restrictionSql(c.sql, t, 'a', r));
      if (cond) parsed.filters.get(t)!.push(cond);
    }
  }
  parsed.filterValues = c.sql.values.slice();
  if (sortRaw !== undefined) {
    try {
      parsed.sort = sortRaw.split(',').filter(Boolean).map((s) => sortKeyFor(c, types, s.trim()));
    } catch (e) {
      fail(strict, warnings, e);
    }
  } else if (c.near && types.length === 1 && types[0] === 'Location') {
    parsed.sort = [distanceKey(c, c.near)];
  }
  return parsed;
}

// ----------------------------------------------------------------------------------------- SQL

function whereOf(filters: string[]): string {
  return ['NOT a.deleted', ...filters].join(' AND ');
}

/**
 * FROM and WHERE of the rows of one type matching the filters (alias a).
 *
 * Index rows exist only for live resources (a delete removes them, reindex skips deleted
 * rows), so when one filter is "EXISTS an index row of a.id with ..." that index scan can be
 * the source of the candidate ids itself: no visit of the resource table per candidate (which
 * costs more than everything else in a search over tens of thousands of candidates), the other
 * filters probing indexes by id. Not when something needs the row (_lastUpdated).
 */
interface Source {
  from: string;
  where: string;
  /** The ids come from an index driver. */
  driven: boolean;
  /** ... each at most once. */
  unique: boolean;
  /** Set when `from` yields the matches in its driver's index order: the keys of that order. */
  indexOrder?: SortKey[];
  /**
   * The best plan is the same whatever the values: every filter is the driver's (nothing left
   * to filter by), the driver's own selectivity does not swing with the value (Driver.skewed),
   * and no filter holds a range whose selectivity decides between plans, except one that
   * follows an equality in the driver's index (Driver.anchorsRange). Such a statement runs
   * with PostgreSQL's generic plan (db/pool.ts FIXED_PLAN).
   */
  fixedPlan: boolean;
}

/**
 * `indexOrder`: the search has no _sort, so the matches may come in the order of the driver's
 * index where it has one (see OrderedDriver); `counted`: a total is wanted, so only where the
 * ordered rows count as cheaply.
 */
function sourceOf(c: Compiler, p: Parsed, t: string, opts: { indexOrder: boolean; counted: boolean }): Source {
  const filters = p.filters.get(t)!;
  const needsRow = p.sort.some((k) => k.usesRow) || filters.some((f) => /\ba\.(?!id\b)/.test(f));
  let best: { index: number[]; driver: Driver } | undefined;
  if (!needsRow) {
    filters.forEach((f, index) => {
      const driver = c.drivers.get(f);
      if (driver && (!best || driver.rank < best.driver.rank)) best = { index: [index], driver };
    });
    // A token condition and a date or reference condition with pair rows: one driver for both (see pairDriver).
    filters.forEach((f, i) => {
      filters.forEach((g, j) => {
        const a = c.drivers.get(f);
        const b = c.drivers.get(g);
        const driver = a && b && i !== j ? pairDriver(t, a, b) : undefined;
        if (driver && (!best || driver.rank < best.driver.rank)) best = { index: [i, j], driver };
      });
    });
  }
  if (!best) return { from: `${table(t)} a`, where: whereOf(filters), driven: false, unique: false, fixedPlan: false };
  const rest = filters.filter((_, i) => !best!.index.includes(i));
  const where = rest.length ? rest.join(' AND ') : 'true';
  const { unique, ordered, anchorsRange, skewed } = best.driver;
  const rangesOf = (i: number) => p.rangesOf.get(filters[i]) ?? 1;
  // A keyed pair's filters: the token's (first) holds no range; the date's are anchored.
  const fixedPlan =
    rest.length === 0 && !skewed && (anchorsRange ? rangesOf(best.index[0]) === 0 : best.index.every((i) => rangesOf(i) === 0));
  // With other conditions the ordered rows are filtered as they stream: fine when each is a
  // plain index row (pairs), but the string order probes every row it passes, and a filter that
  // rejects the first thousands (name=joh&gender=female) would probe them all.
  if (ordered && opts.indexOrder && (ordered.countable || (!opts.counted && !rest.length))) {
    const indexOrder = ordered.keys.map((k, i): SortKey => ({ desc: false, notNull: true, cast: k.cast, pattern: k.pattern, sql: (_t, a) => `${a}.o${i}` }));
    return { from: `(${ordered.sql}) a`, where, driven: true, unique: true, indexOrder, fixedPlan };
  }
  const ids = unique ? best.driver.sql : `SELECT DISTINCT d.id FROM (${best.driver.sql}) d`;
  return { from: `(${ids}) a`, where, driven: true, unique: unique === true, fixedPlan };
}

/** Keyset condition: the row comes strictly after (or before) the cursor row in the sort order. */
function keysetCond(c: SqlBuilder, sort: SortKey[], cursor: Cursor, multi: boolean): string {
  const before = cursor.d === 'p';
  const terms: { later: string; equal: string }[] = sort.map((k, i) => {
    const col = `s.k${i}`;
    const v = cursor.k[i];
    if (v === null || v === undefined) {
      // nulls sort last in the forward order
      return before ? { later: `${col} IS NOT NULL`, equal: `${col} IS NULL` } : { later: 'false', equal: `${col} IS NULL` };
    }
    const b = `${c.bind(v)}::${k.cast}`;
    const [gt, lt] = k.pattern ? ['~>~', '~<~'] : ['>', '<'];
    const fwd = k.desc ? lt : gt;
    const back = k.desc ? gt : lt;
    return before ? { later: `${col} ${back} ${b}`, equal: `${col} = ${b}` } : { later: `(${col} ${fwd} ${b} OR ${col} IS NULL)`, equal: `${col} = ${b}` };
  });
  const op = before ? '<' : '>';
  // The same condition once more as a plain bound on the first key when it cannot be null: the
  // index the rows come from (in this order) then starts its scan at the cursor.
  const k0 = sort[0];
  const [ge, le] = k0?.pattern ? ['~>=~', '~<=~'] : ['>=', '<='];
  const bound = k0?.notNull && cursor.k[0] !== null && cursor.k[0] !== undefined
    ? `s.k0 ${k0.desc !== before ? le : ge} ${c.bind(cursor.k[0])}::${k0.cast} AND `
    : '';
  if (multi) terms.push({ later: `s.rt ${op} ${c.bind(cursor.t)}`, equal: `s.rt = ${c.bind(cursor.t)}` });
  let cond = `s.id ${op} ${c.bind(cursor.i)}`;
  for (let i = terms.length - 1; i >= 0; i--) cond = `(${terms[i].later} OR (${terms[i].equal} AND ${cond}))`;
  return bound + cond;
}

function orderBy(prefix: string, sort: SortKey[], reverse: boolean, multi: boolean): string {
  const parts = sort.map((k, i) => {
    const desc = k.desc !== reverse;
    const direction = k.pattern ? `USING ${desc ? '~>~' : '~<~'}` : desc ? 'DESC' : 'ASC';
    return `${prefix}k${i} ${direction} NULLS ${reverse ? 'FIRST' : 'LAST'}`;
  });
  if (multi) parts.push(`${prefix}rt ${reverse ? 'DESC' : 'ASC'}`);
  parts.push(`${prefix}id ${reverse ? 'DESC' : 'ASC'}`);
  return parts.join(', ');
}

interface PageRow {
  rt: string;
  id: string;
  json: string | null;
  total: string | null;
  [k: string]: unknown;
}

/**
 * A search statement, prepared (named) unless one of its conditions is best planned for its
 * values (SqlBuilder.planByValue: a LIKE pattern, a full-text query). Prepared, it is parsed once
 * per connection, and PostgreSQL keeps one plan for all values once that plan is estimated no
 * costlier than those made for the first values (plan_cache_mode auto). Planning was half or
 * more of PostgreSQL's CPU for most searches on the bench data; a generic plan for a prefix
 * pattern could not use the index at all (36 ms instead of 0.6), hence the exception.
 */
function statement(sql: SqlBuilder, text: string): pg.QueryConfig {
  return sql.planByValue ? { text, values: sql.values } : preparedStatement(text, sql.values, 'search');
}

/**
 * Runs a search statement (see statement()); one whose plan cannot depend on its values
 * (every Source.fixedPlan) with PostgreSQL's generic plan, on the pool's fixed-plan connections
 * (not inside a transaction: there it runs on the transaction's connection, planned as usual).
 */
function runSearch<R extends pg.QueryResultRow>(db: Queryable, sql: SqlBuilder, text: string, fixedPlan: boolean): Promise<pg.QueryResult<R>> {
  const config = statement(sql, text);
  return fixedPlan && !sql.planByValue && isDb(db) ? db.queryFixedPlan<R>(config) : db.query<R>(config);
}

// -------------------------------------------------------------------------------------- search

/** Runs a search and returns the searchset Bundle as JSON text. */
export async function search(db: Queryable, request: SearchRequest, options: SearchOptions): Promise<string> {
  const sql = new SqlBuilder();
  const c = new Compiler(sql, options.fhirBase);
  const p = parseRequest(c, request, options, false);
  const multi = p.types.length > 1;
  // A count costs time proportional to the number of matches (every match is visited, however
  // good the indexes): counting 100,000 matches takes tens of milliseconds whatever we do, and
  // even 1,000 cost more than the page itself. So Bundle.total is given
  //  - without _total: only when it comes free, i.e. the whole result fits on the first page
  //    (otherwise it is left out, which R4 allows; ask for _total=accurate);
  //  - _total=estimate: counted up to TOTAL_CAP, beyond that the planner's row estimate
  //    (exact when the matches come from an index driver: see `shared` below);
  //  - _total=accurate and _summary=count: always counted in full.
  //  Matches that come from an index driver yielding each id once (pair rows for one exact
  //  code) are counted by an index-only count, which is cheap enough to be exact for estimate too.
  const countOnly = p.summary === 'count' || p.count === 0;
  const countInSql = countOnly || p.total === 'accurate' || p.total === 'estimate';
  // No _sort: a single type whose driver can read its matches in index order pages in that order
  // (any order is the server's to choose without _sort; this one costs the first page about 21
  // index entries instead of a sort of every match).
  const orderOpts = { indexOrder: p.sort.length === 0 && p.types.length === 1, counted: countInSql };
  const sources = new Map(p.types.map((t) => [t, sourceOf(c, p, t, orderOpts)]));
  const indexOrder = sources.get(p.types[0])!.indexOrder;
  if (indexOrder) p.sort = indexOrder;
  const unique = p.types.every((t) => sources.get(t)!.unique);
  const fixedPlan = p.types.every((t) => sources.get(t)!.fixedPlan);
  // A cursor carries one value per sort key: one from another search (or from before an upgrade
  // that changed this search's order) cannot be placed in this one.
  if (p.cursor && p.cursor.k.length !== p.sort.length) {
    throw badRequest('The paging cursor does not belong to this search (follow the links of a previous page)', ['_cursor']);
  }
  const cap = p.total === 'estimate' && !unique ? TOTAL_CAP : undefined;
  const countSql = p.types
    .map((t) => {
      const { from, where } = sources.get(t)!;
      return cap === undefined
        ? `(SELECT count(*) FROM ${from} WHERE ${where})`
        : `(SELECT count(*) FROM (SELECT 1 FROM ${from} WHERE ${where} LIMIT ${cap + 1}) c)`;
    })
    .join(' + ');

  let rows: PageRow[] = [];
  let total: number | undefined;
  let hasMoreForward = false;
  let hasMoreBackward = false;
  if (countOnly) {
    const res = await runSearch<{ total: string }>(db, sql, `SELECT ${countSql} AS total`, fixedPlan);
    total = Number(res.rows[0].total);
    if (cap !== undefined && total > cap) total = await estimateTotal(db, p, total);
  } else {
    const reverse = p.cursor?.d === 'p';
    const inner = p.types
      .map((t) => {
        const keys = p.sort.map((k, i) => `, ${k.sql(t, 'a')} AS k${i}`).join('');
        const { from, where } = sources.get(t)!;
        return `SELECT '${t}'::text AS rt, a.id${keys} FROM ${from} WHERE ${where}`;
      })
      .join(' UNION ALL ');
    // _total=accurate: the matches are found once (materialized), then counted and paged,
    // rather than searched twice. So is _total=estimate when every type's matches come from an
    // index driver: the page must gather all of them (distinct ids) before it can take the
    // first ones in order, so the exact count costs next to nothing more; a capped count plus
    // a planner estimate would cost more and say less. Not with the index order: there the page
    // stops after its rows, and a plain count(*) is cheaper than materializing every match
    // (measured 1.6-2x the throughput); an id-ordered page beside such a count was not.
    const shared = countInSql && indexOrder === undefined && (cap === undefined || p.types.every((t) => sources.get(t)!.driven));
    const keyset = p.cursor ? `WHERE ${keysetCond(sql, p.sort, p.cursor, multi)}` : '';
    // A literal (a validated integer), not a bind parameter: with an unknown LIMIT a prepared
    // statement's plan is costed for 10% of the matches and never chosen (see statement()).
    const limit = String(p.count + 1);
    const page = `SELECT s.*, row_number() OVER () AS ord FROM (SELECT s.* FROM ${shared ? 'm' : `(${inner})`} s ${keyset} ORDER BY ${orderBy('s.', p.sort, reverse, multi)} LIMIT ${limit}) s`;
    const joins = p.types.map((t, i) => `LEFT JOIN ${table(t)} t${i} ON p.rt = '${t}' AND t${i}.id = p.id`).join(' ');
    const content = p.types.length === 1 ? 't0.content' : `COALESCE(${p.types.map((_, i) => `t${i}.content`).join(', ')})`;
    const fetch = `SELECT p.*, ${content}::text AS json FROM (${page}) p ${joins}`;
    const text = shared
      ? `WITH m AS MATERIALIZED (${inner}) SELECT q.*, cnt.total FROM (SELECT count(*) AS total FROM m) cnt LEFT JOIN (${fetch}) q ON true ORDER BY q.ord`
      : countInSql
        ? `SELECT q.*, cnt.total FROM (SELECT ${countSql} AS total) cnt LEFT JOIN (${fetch}) q ON true ORDER BY q.ord`
        : `SELECT q.*, NULL AS total FROM (${fetch}) q ORDER BY q.ord`;
    const res = await runSearch<PageRow>(db, sql, text, fixedPlan);
    rows = res.rows.filter((r) => r.id !== null);
    if (countInSql) total = Number(res.rows[0]?.total ?? 0);
    if (total !== undefined && cap !== undefined && total > cap && !shared) total = await estimateTotal(db, p, total);
    const more = rows.length > p.count;
    if (more) rows = rows.slice(0, p.count);
    // The whole result on the first page: its size is the total, at no cost.
    if (total === undefined && p.total === 'auto' && !p.cursor && !more) total = rows.length;
    if (reverse) {
      rows.reverse();
      hasMoreBackward = more;
      hasMoreForward = true;
    } else {
      hasMoreForward = more;
      hasMoreBackward = p.cursor !== undefined;
    }
  }

  // Includes: one more statement.
  let included: { rt: string; id: string; json: string }[] = [];
  if (rows.length && p.includes.length) {
    included = await fetchIncludes(db, rows, p.includes, options.access);
  }

  // Links
  const baseParams = request.params.filter(([k]) => k !== '_cursor');
  const url = (extra?: [string, string]) => {
    const q = new URLSearchParams(extra ? [...baseParams, extra] : request.params).toString();
    const path = request.resourceType ? `${options.fhirBase}/${request.resourceType}` : options.fhirBase;
    return q ? `${path}?${q}` : path;
  };
  const links = [`{"relation":"self","url":${JSON.stringify(url())}}`];
  const cursorOf = (r: PageRow, d: 'n' | 'p') =>
    encodeCursor({ d, k: p.sort.map((_, i) => (r[`k${i}`] ?? null) as string | number | null), t: r.rt, i: r.id });
  if (rows.length && hasMoreForward) links.push(`{"relation":"next","url":${JSON.stringify(url(['_cursor', cursorOf(rows[rows.length - 1], 'n')]))}}`);
  if (rows.length && hasMoreBackward) links.push(`{"relation":"previous","url":${JSON.stringify(url(['_cursor', cursorOf(rows[0], 'p')]))}}`);

  // Bundle
  const entries: string[] = [];
  const seen = new Set<string>();
  for (const r of rows) {
    seen.add(`${r.rt}/${r.id}`);
    const json = subset(r.json as string, p.summary, p.elements);
    entries.push(`{"fullUrl":${JSON.stringify(`${options.fhirBase}/${r.rt}/${r.id}`)},"resource":${json},"search":{"mode":"match"}}`);
  }
  for (const r of included) {
    const key = `${r.rt}/${r.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const json = subset(r.json, p.summary, undefined);
    entries.push(`{"fullUrl":${JSON.stringify(`${options.fhirBase}/${key}`)},"resource":${json},"search":{"mode":"include"}}`);
  }
  if (p.warnings.length) {
    entries.push(`{"resource":${JSON.stringify({ resourceType: 'OperationOutcome', issue: p.warnings })},"search":{"mode":"outcome"}}`);
  }
  let out = `{"resourceType":"Bundle","id":"${randomUUID()}","meta":{"lastUpdated":"${new Date().toISOString()}"},"type":"searchset"`;
  if (total !== undefined) out += `,"total":${total}`;
  out += `,"link":[${links.join(',')}]`;
  if (entries.length) out += `,"entry":[${entries.join(',')}]`;
  return out + '}';
}

/** _total=estimate counts matches up to this many, then asks the planner (see search()). */
export const TOTAL_CAP = 1000;

/**
 * _total=estimate beyond TOTAL_CAP: the planner's row estimate of the filtered rows (at least
 * what was counted). Only the filters' values are bound ($1..$n, bound before anything else).
 */
async function estimateTotal(db: Queryable, p: Parsed, atLeast: number): Promise<number> {
  // With several types each one's filters use their own values; the lower bound must do.
  if (p.types.length !== 1) return atLeast;
  const t = p.types[0];
  const res = await db.query<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(
    `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${table(t)} a WHERE ${whereOf(p.filters.get(t)!)}`,
    p.filterValues,
  );
  return Math.max(atLeast, Math.round(res.rows[0]['QUERY PLAN'][0].Plan['Plan Rows']));
}

const MAX_INCLUDE_DEPTH = 4;
const MAX_INCLUDED = 5000;

/** _include / _revinclude (with :iterate) for a page, as one recursive SQL statement. */
async function fetchIncludes(
  db: Queryable,
  page: PageRow[],
  specs: IncludeSpec[],
  access?: (type: string) => Restriction | undefined,
): Promise<{ rt: string; id: string; json: string }[]> {
  const sql = new SqlBuilder();
  const fwdCond = (list: IncludeSpec[]) =>
    list
      .filter((s) => !s.reverse)
      .map((s) => {
        const c = [`r.resource_type = ${sql.bind(s.source)}`];
        if (s.param) c.push(`r.param = ${sql.bind(s.param)}`);
        if (s.target) c.push(`r.target_type = ${sql.bind(s.target)}`);
        return `(${c.join(' AND ')})`;
      });
  const revCond = (list: IncludeSpec[]) =>
    list
      .filter((s) => s.reverse)
      .map((s) => {
        const c: string[] = [];
        if (s.source !== '*') c.push(`r.resource_type = ${sql.bind(s.source)}`);
        if (s.param) c.push(`r.param = ${sql.bind(s.param)}`);
        if (s.target) c.push(`r.target_type = ${sql.bind(s.target)}`);
        return c.length ? `(${c.join(' AND ')})` : 'true';
      });
  const step = (from: string, list: IncludeSpec[]) => {
    const parts: string[] = [];
    const f = fwdCond(list);
    const r = revCond(list);
    if (f.length) {
      parts.push(`SELECT r.target_type AS rt, r.target_id AS id FROM idx_reference r WHERE r.resource_type = ${from}.rt AND r.resource_id = ${from}.id AND r.target_id IS NOT NULL AND (${f.join(' OR ')})`);
    }
    if (r.length) {
      parts.push(`SELECT r.resource_type AS rt, r.resource_id AS id FROM idx_reference r WHERE r.target_type = ${from}.rt AND r.target_id = ${from}.id AND (${r.join(' OR ')})`);
    }
    return parts.join(' UNION ALL ');
  };
  const iterating = specs.filter((s) => s.iterate);
  const rts = sql.bind(page.map((r) => r.rt));
  const ids = sql.bind(page.map((r) => r.id));
  let cte = `base(rt, id) AS (SELECT * FROM unnest(${rts}::text[], ${ids}::text[])),
    inc(rt, id, depth) AS (
      SELECT x.rt, x.id, 1 FROM base b CROSS JOIN LATERAL (${step('b', specs)}) x`;
  if (iterating.length) {
    cte += ` UNION SELECT x.rt, x.id, i.depth + 1 FROM inc i CROSS JOIN LATERAL (${step('i', iterating)}) x WHERE i.depth < ${MAX_INCLUDE_DEPTH}`;
  }
  cte += ')';
  // Candidate tables: the types the include specs can reach.
  const candidates = new Set<string>();
  for (const s of specs) {
    if (s.reverse) {
      if (s.source !== '*') candidates.add(s.source);
      else for (const t of loadDefinitions()) candidates.add(t);
    } else if (s.target) candidates.add(s.target);
    else {
      const params = s.param ? [paramDef(s.source, s.param)] : referenceParams(s.source);
      for (const sp of params) for (const t of sp?.target ?? []) if (isResourceType(t)) candidates.add(t);
    }
  }
  const selects: string[] = [];
  for (const t of candidates) {
    let extra = '';
    if (access) {
      // Included resources obey the caller's access rules too: a type it may not read is left
      // out, and one with search-parameter restrictions as well (they are not compiled here).
      const r = access(t);
      if (!r || r.params.length) continue;
      const cond = restrictionSql(sql, t, 't', r);
      if (cond) extra = ` AND ${cond}`;
    }
    selects.push(
      `SELECT '${t}'::text AS rt, t.id, t.content::text AS json FROM ${table(t)} t WHERE t.id IN (SELECT d.id FROM found d WHERE d.rt = '${t}') AND NOT t.deleted${extra}`,
    );
  }
  if (!selects.length) return [];
  const text = `WITH RECURSIVE ${cte}, found AS (SELECT DISTINCT rt, id FROM inc LIMIT ${MAX_INCLUDED}) ${selects.join(' UNION ALL ')}`;
  const res = await db.query<{ rt: string; id: string; json: string }>(statement(sql, text));
  return res.rows;
}

/**
 * SQL for the compartment / organisation part of an access restriction on rows of `type`
 * reached through `alias` (undefined when nothing applies). Resources outside the Patient
 * compartment (reference data) are not limited by it.
 */
function restrictionSql(sql: SqlBuilder, type: string, alias: string, r: Restriction): string | undefined {
  const conds: string[] = [];
  const params = patientCompartmentParams(type);
  // "the Patient ids this row belongs to", as a condition on a patient id expression
  const viaPatients = (onPatient: (pid: string) => string): string =>
    type === 'Patient'
      ? onPatient(`${alias}.id`)
      : `EXISTS (SELECT 1 FROM idx_reference cp WHERE cp.resource_type = ${sql.bind(type)} AND cp.resource_id = ${alias}.id
          AND cp.param = ANY(${sql.bind(params)}::text[]) AND cp.target_type = 'Patient' AND ${onPatient('cp.target_id')})`;
  if (type !== 'Patient' && !params) return undefined;
  if (r.patientCompartment) conds.push(viaPatients((pid) => `${pid} = ${sql.bind(r.patientCompartment)}`));
  if (r.organization) {
    const org = sql.bind(r.organization.replace(/^Organization\//, ''));
    // As for single reads (authorize.ts meets()): a row that names no patient at all (e.g. a
    // Provenance of a Task) holds no patient's data, so the organisation rule does not hide it.
    const namesNoPatient =
      type === 'Patient'
        ? undefined
        : `NOT EXISTS (SELECT 1 FROM idx_reference np WHERE np.resource_type = ${sql.bind(type)} AND np.resource_id = ${alias}.id
            AND np.param = ANY(${sql.bind(params ?? [])}::text[]) AND np.target_type = 'Patient')`;
    const shared = viaPatients(
        (pid) => `(EXISTS (SELECT 1 FROM idx_reference mo WHERE mo.resource_type = 'Patient' AND mo.resource_id = ${pid}
            AND mo.param = 'organization' AND mo.target_type = 'Organization' AND mo.target_id = ${org})
          OR EXISTS (SELECT 1 FROM idx_reference sr JOIN idx_reference so ON so.resource_type = 'ServiceRequest' AND so.resource_id = sr.resource_id
            AND so.param IN ('performer', 'requester') AND so.target_type = 'Organization' AND so.target_id = ${org}
            WHERE sr.resource_type = 'ServiceRequest' AND sr.param = 'subject' AND sr.target_type = 'Patient' AND sr.target_id = ${pid}))`,
    );
    conds.push(namesNoPatient ? `(${shared} OR ${namesNoPatient})` : shared);
  }
  return conds.length ? conds.join(' AND ') : undefined;
}

/** The reference parameters of a type (for _include=Type:*). */
function referenceParams(type: string): SearchParameter[] {
  return Object.entries(getSearchParameters(type) ?? {})
    .filter(([code, sp]) => isServedParam(code) && sp.type === 'reference')
    .map(([, sp]) => sp);
}

// --------------------------------------------------------------------------------- findMatches

/**
 * The current, non-deleted resources matching params (conditional create / update / delete /
 * patch). Unknown or malformed parameters are always an error here (a conditional write must not
 * silently match more than asked).
 */
export async function findMatches(
  db: Queryable,
  resourceType: string,
  params: [string, string][],
  limit: number,
  access?: (type: string) => Restriction | undefined,
): Promise<Match[]> {
  const sql = new SqlBuilder();
  const c = new Compiler(sql, '');
  const p = parseRequest(c, { resourceType, params }, { fhirBase: '', defaultCount: limit, maxCount: limit, strict: true, access }, true);
  const filters = p.filters.get(resourceType)!;
  if (filters.length === 0) throw badRequest('A conditional request needs at least one search parameter');
  const text = `SELECT a.id, a.version, ${instantSql('a.last_updated')} AS last_updated, a.content::text AS json FROM ${table(resourceType)} a WHERE ${whereOf(filters)} ORDER BY a.id LIMIT ${Math.max(0, Math.floor(limit))}`;
  const res = await db.query<{ id: string; version: number; last_updated: string; json: string }>(statement(sql, text));
  return res.rows.map((r) => ({ id: r.id, version: r.version, lastUpdated: r.last_updated, json: r.json }));
}

