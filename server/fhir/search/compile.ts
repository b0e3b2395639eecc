// Search parameters -> SQL conditions over the idx_* tables. Every condition is a boolean SQL
// expression about one row of a resource table, reached through an alias (alias.id,
// alias.last_updated); chains and _has nest the same compiler on another alias. Every value is a
// bind parameter; table names come only from the validated resource-type list.
import { getSearchParameters } from '@medplum/core';
import type { SearchParameter } from '@medplum/fhirtypes';
import { isResourceType } from '../definitions.ts';
import { expandValueSet, subsumption } from '../terminology.ts';
import { parseFilter, type FilterNode, type FilterOp } from './filter.ts';
import { IDENTIFIER_SUFFIX, OF_TYPE_SUFFIX, fewValues, findPair, isServedParam, parseReference } from './index-rows.ts';
import { normalizeString } from './normalize.ts';
import {
  ParamError,
  likeEscape,
  parseDate,
  parseNumber,
  splitEscaped,
  splitPipe,
  splitPrefix,
  unescapeValue,
  type Prefix,
} from './values.ts';

export class SqlBuilder {
  readonly values: unknown[] = [];
  private n = 0;
  /**
   * Some condition's best plan depends on its bound value: a LIKE pattern (only a known prefix
   * can use the index), a full-text query. Such a statement is planned for its values each time;
   * the others are prepared, and PostgreSQL may keep one plan for all values (search.ts statement()).
   */
  planByValue = false;
  /**
   * Range conditions compiled so far (date, number, quantity, near's box): how many rows one
   * matches depends on its values, so the best plan may too, unless an equality on the same
   * index comes first (a keyed token + date pair: Driver.anchorsRange). See search.ts fixedPlan.
   */
  ranges = 0;
  bind(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
  /** Drops the values bound after the first n (their SQL was discarded). */
  truncate(n: number): void {
    this.values.length = n;
  }
  alias(prefix: string): string {
    return `${prefix}${++this.n}`;
  }
}

/** Quoted table name of a resource type; only ever called with a validated type. */
export function table(type: string): string {
  if (!isResourceType(type)) throw new Error(`not a resource type: ${type}`);
  return `"${type}"`;
}

export function paramDef(type: string, code: string): SearchParameter | undefined {
  if (!isServedParam(code)) return undefined;
  return getSearchParameters(type)?.[code];
}

/** Parameters that shape the result rather than filter it. */
export const RESULT_PARAMS = new Set([
  '_sort',
  '_count',
  '_total',
  '_summary',
  '_elements',
  '_include',
  '_revinclude',
  '_cursor',
  '_format',
  '_pretty',
  '_type',
]);

export interface Near {
  lat: number;
  lng: number;
  /** kilometres */
  distance: number;
}

const MAX_CHAIN_DEPTH = 4;

/** The alias of the searched resource table in the top-level query (search.ts). */
export const TOP_ALIAS = 'a';

/**
 * A top-level condition "EXISTS an index row of a.id with ..." can instead be the source of the
 * candidate ids (see search.ts). When several can, the likeliest to be selective is used:
 * references (one patient's observations) and chains before tokens (a code, an identifier) before strings,
 * composites, numbers and quantities, and dates (ranges) last.
 */
const DRIVER_RANK: Record<string, number> = { reference: 1, geo: 2, chain: 2, token: 3, uri: 3, composite: 4, string: 5, number: 6, quantity: 6, date: 7 };
/** A token of few values (gender, status, active: index-rows.ts fewValues) drives after a string, before a range. */
const FEW_VALUES_RANK = 5.5;

export interface Driver {
  rank: number;
  /** SELECT ... AS id FROM idx_* ...: the ids of the (live) resources the condition holds for. */
  sql: string;
  /** The parts of an exists() condition, so a token and a date condition can become one pair driver. */
  part?: { tbl: string; code: string; x: string; rt: string; param: string; cond: string };
  /** The SQL yields each id at most once (no DISTINCT needed; see PairRows.onePerCoding). */
  unique?: boolean;
  /**
   * A pair driver whose date range follows an equality on one key in its index (keyed token +
   * date rows): one index range scan is the best plan whatever the values.
   */
  anchorsRange?: boolean;
  /**
   * How many rows it yields varies widely with the value (a token of few values: one status
   * may be most rows, another none), so the best plan may too.
   */
  skewed?: boolean;
  /**
   * A search without _sort can page in the order of the index this driver scans (then id),
   * reading its first page straight off the index instead of sorting every match: `sql` yields
   * each id once with its keys (o0, o1, ...: never null) in that order.
   */
  ordered?: OrderedDriver;
}

export interface OrderedDriver {
  sql: string;
  keys: { cast: 'timestamptz' | 'text'; /** text_pattern_ops order (byte order), as the string index. */ pattern?: boolean }[];
  /**
   * Its rows cost no more than the plain driver's (index rows, no probe each): usable with a
   * total and with other conditions filtering them. Otherwise only alone and without a total.
   */
  countable: boolean;
}

/** Rank of a pair driver: with a date, after references (one patient's rows), before a token alone; with a reference, first. */
const PAIR_RANK = { date: 2.5, reference: 0.5 } as Record<string, number>;

/** Columns of a pair row (idx_composite) for the columns of the paired conditions' index rows. */
const PAIR_COLUMNS: Record<string, Record<string, string>> = {
  token: { system: 'system1', code: 'code1' },
  date: { low: 'dlow2', high: 'dhigh2' },
  reference: { target_type: 'system2', target_id: 'code2' },
};

/**
 * `cond`, a condition on index row alias x, on pair row alias y instead; undefined when it uses
 * a column the pair rows do not have (a token's :text display, a reference's URL).
 */
function onPairRow(cond: string, x: string, kind: string, y = 'y'): string | undefined {
  const cols = PAIR_COLUMNS[kind];
  let ok = true;
  const out = cond.replace(new RegExp(`\\b${x}\\.([a-z_0-9]+)\\b`, 'g'), (_, col: string) => {
    if (!cols[col]) ok = false;
    return `${y}.${cols[col]}`;
  });
  return ok ? out : undefined;
}

/** A token condition the pair rows can answer: it names the code or the system. */
function pairable(part: NonNullable<Driver['part']>): boolean {
  return part.tbl === 'token' && new RegExp(`\\b${part.x}\\.(code|system)\\b`).test(part.cond);
}

/**
 * A top-level token condition and a date or reference condition of a type with pair rows for
 * their parameters (index-rows.ts INDEX_PAIRS) -> one driver over those rows that holds exactly
 * when both do (the rows are every combination). The two conditions' SQL is reused with its
 * columns renamed, and every value they bound stays referenced (an unreferenced bind parameter
 * has no type and fails the statement).
 */
export function pairDriver(type: string, token: Driver, other: Driver): Driver | undefined {
  const t = token.part;
  const o = other.part;
  if (!t || !o || t.tbl !== 'token' || (o.tbl !== 'date' && o.tbl !== 'reference')) return undefined;
  // Pair rows exist only for coded tokens and local references: a condition that does not
  // name a code / target (:missing=false) would miss text-only tokens and URL references.
  if (!pairable(t) || (o.tbl === 'reference' && !/\.target_id\b/.test(o.cond))) return undefined;
  const pair = findPair(type, t.code, o.code);
  if (!pair) return undefined;
  const tc = onPairRow(t.cond, t.x, 'token');
  const oc = onPairRow(o.cond, o.x, o.tbl);
  if (!tc || !oc) return undefined;
  // Literals, not bind parameters: this is called for every candidate pair of conditions and
  // only one is used (names from INDEX_PAIRS and resource type names, checked here).
  const literal = (v: string) => {
    if (!/^[A-Za-z0-9+-]+$/.test(v)) throw new Error(`bad pair name ${v}`);
    return `'${v}'`;
  };
  const target = pair.targetType ? ` AND y.system2 = ${literal(pair.targetType)}` : '';
  // One exact system|code (tokenValueCond's shape): at most one matching coding per resource.
  const oneCoding = new RegExp(`^\\(${t.x}\\.system = \\$\\d+ AND ${t.x}\\.code = \\$\\d+\\)$`).test(t.cond);
  const unique = pair.onePerCoding && oneCoding;
  // The date index a condition scans is the one on the bound it starts with (dateCond puts the
  // range-scannable bound first: high for ge / gt / eb, low for the others); both indexes
  // (migration 006) go on with the other bound, the system and the id.
  const bounds = /^\(?y\.dhigh2\b/.test(oc) ? ['dhigh2', 'dlow2'] : ['dlow2', 'dhigh2'];
  // The conditions' own type and parameter values are compared too, so they stay referenced.
  // Token + date rows of one code are found by their key (migration 011), the others by the
  // text columns.
  const key = o.tbl === 'date' ? keyedTokenCond(tc, t.rt, literal(pair.param)) : undefined;
  const tokenCond = key ?? `y.resource_type = ${t.rt} AND y.param = ${literal(pair.param)} AND ${tc}`;
  const from = `FROM idx_composite y WHERE ${tokenCond} AND ${o.rt} = ${t.rt} AND ${t.param} || '+' || ${o.param} IS NOT NULL AND ${oc}${target}`;
  const ordered: OrderedDriver | undefined =
    unique && o.tbl === 'date'
      ? {
          sql: `SELECT y.resource_id AS id, y.${bounds[0]} AS o0, y.${bounds[1]} AS o1, y.system1 AS o2 ${from}`,
          keys: [{ cast: 'timestamptz' }, { cast: 'timestamptz' }, { cast: 'text' }],
          countable: true,
        }
      : undefined;
  return { unique, ordered, rank: PAIR_RANK[o.tbl], sql: `SELECT y.resource_id AS id ${from}`, anchorsRange: key !== undefined };
}

/**
 * A pair row token condition (onPairRow's) on one code, or a list of codes, as a condition on
 * the rows' key1 = hashtextextended(type | pair | code1) (migration 011), which the
 * (key1, date bound, ...) indexes range-scan with one int8 comparison per entry; the system, if
 * named, is still compared. undefined for any other token condition (several system|code
 * values, :in, :below...), which then goes by the text columns.
 */
function keyedTokenCond(tc: string, rt: string, pairLiteral: string): string | undefined {
  const key = (code: string) => `hashtextextended(${rt}::text || '|' || ${pairLiteral} || '|' || ${code}::text, 0)`;
  let m = /^\((y\.system1 = \$\d+|y\.system1 IS NULL) AND y\.code1 = (\$\d+)\)$/.exec(tc);
  if (m) return `y.key1 = ${key(m[2])} AND ${m[1]}`;
  m = /^y\.code1 = (\$\d+)$/.exec(tc);
  if (m) return `y.key1 = ${key(m[1])}`;
  m = /^y\.code1 = ANY\((\$\d+)::text\[\]\)$/.exec(tc);
  if (m) return `y.key1 = ANY(ARRAY(SELECT ${key('c')} FROM unnest(${m[1]}::text[]) AS c))`;
  return undefined;
}

/**
 * A string prefix search ("name=smi") in the order of the prefix index (value, then id): each
 * resource once, at the smallest of its values that match (a patient named Smith, given name
 * Smitty, is listed under "smith" only: a probe of the resource's own rows by the owner index).
 * Its first page reads about as many index entries as it shows, where the id order must first
 * gather, de-duplicate and sort every match (thousands for a common prefix). A count needs every
 * match anyway, and with a probe each it costs more than de-duplicating: not countable.
 */
function prefixOrdered(part: NonNullable<Driver['part']>, x2: string): OrderedDriver {
  const { x, rt, param, cond } = part;
  const cond2 = cond.replace(new RegExp(`\\b${x}\\.`, 'g'), `${x2}.`);
  return {
    sql: `SELECT ${x}.resource_id AS id, ${x}.value AS o0 FROM idx_string ${x} WHERE ${x}.resource_type = ${rt} AND ${x}.param = ${param} AND ${cond}
      AND NOT EXISTS (SELECT 1 FROM idx_string ${x2} WHERE ${x2}.resource_type = ${x}.resource_type AND ${x2}.resource_id = ${x}.resource_id AND ${x2}.param = ${x}.param AND ${cond2} AND ${x2}.value ~<~ ${x}.value)`,
    keys: [{ cast: 'text', pattern: true }],
    countable: false,
  };
}

export class Compiler {
  readonly sql: SqlBuilder;
  readonly fhirBase: string;
  /** Set when the request has a Location near filter (used for the default distance order). */
  near?: Near;
  /** Top-level index conditions that can be a source of ids instead (keyed by the condition). */
  readonly drivers = new Map<string, Driver>();
  /** The parts of every exists() condition (keyed by the condition), for pair rows. */
  readonly parts = new Map<string, NonNullable<Driver['part']>>();

  constructor(sql: SqlBuilder, fhirBase: string) {
    this.sql = sql;
    this.fhirBase = fhirBase;
  }

  /**
   * One query parameter (name as written, e.g. "subject:Patient.name:exact", value as written)
   * -> a condition about `alias` (a row of `type`'s table). Throws ParamError when unusable.
   */
  param(type: string, alias: string, name: string, value: string, depth = 0): string {
    if (depth > MAX_CHAIN_DEPTH) throw new ParamError(name, `Chains and _has nest at most ${MAX_CHAIN_DEPTH} levels`);
    if (name.startsWith('_has:')) return this.has(type, alias, name, value, depth);
    const dot = name.indexOf('.');
    if (dot > 0) return this.chain(type, alias, name, dot, value, depth);
    const colon = name.indexOf(':');
    const code = colon >= 0 ? name.slice(0, colon) : name;
    const modifier = colon >= 0 ? name.slice(colon + 1) : undefined;
    if (code === '_id') return this.idParam(alias, name, modifier, value);
    if (code === '_lastUpdated') return this.lastUpdated(alias, name, modifier, value);
    if (code === '_text' || code === '_content') return this.fullText(alias, name, code, modifier, value);
    if (code === '_list') return this.list(type, alias, name, modifier, value);
    if (code === '_filter') {
      this.noModifier(name, modifier);
      return this.filter(type, alias, value, depth);
    }
    const sp = paramDef(type, code);
    if (!sp) throw new ParamError(name, `Unknown search parameter "${code}" for ${type}`);
    if (modifier === 'missing') return this.missing(type, alias, name, sp, value);
    switch (sp.type) {
      case 'token':
        return this.token(type, alias, name, code, modifier, value);
      case 'string':
        return this.string(type, alias, name, code, modifier, value);
      case 'date':
        this.noModifier(name, modifier);
        return this.exists('date', type, alias, code, this.orValues(name, value, (v, x) => this.dateCond(name, v, `${x}.low`, `${x}.high`)));
      case 'number':
        this.noModifier(name, modifier);
        return this.exists('number', type, alias, code, this.orValues(name, value, (v, x) => this.numberCond(name, v, x)));
      case 'quantity':
        this.noModifier(name, modifier);
        return this.exists('quantity', type, alias, code, this.orValues(name, value, (v, x) => this.quantityCond(name, v, x)));
      case 'reference':
        return this.reference(type, alias, name, code, sp, modifier, value);
      case 'uri':
        return this.uri(type, alias, name, code, modifier, value);
      case 'composite':
        this.noModifier(name, modifier);
        return this.composite(type, alias, name, code, sp, value);
      case 'special':
        if (type === 'Location' && code === 'near') {
          this.noModifier(name, modifier);
          return this.nearCond(alias, name, value);
        }
        throw new ParamError(name, `Search parameter "${code}" is not supported`);
      default:
        throw new ParamError(name, `Search parameter "${code}" is not supported`);
    }
  }

  private noModifier(name: string, modifier: string | undefined): void {
    if (modifier !== undefined) throw new ParamError(name, `Modifier ":${modifier}" is not supported on ${name.split(':')[0]}`);
  }

  /** Comma-separated values, each compiled against one index row alias, OR-ed together. */
  private orValues(name: string, value: string, one: (v: string, x: string) => string): (x: string) => string {
    const values = splitEscaped(value, ',');
    if (values.some((v) => v === '')) throw new ParamError(name, `Empty value in ${name}`);
    return (x) => {
      const conds = values.map((v) => one(v, x));
      return conds.length === 1 ? conds[0] : `(${conds.join(' OR ')})`;
    };
  }

  /** EXISTS an index row of `type`/`code` owned by alias that satisfies cond. */
  private exists(tbl: string, type: string, alias: string, code: string, cond: (x: string) => string): string {
    const x = this.sql.alias('x');
    const c = cond(x);
    const rt = this.sql.bind(type);
    const param = this.sql.bind(code);
    const condition = `EXISTS (SELECT 1 FROM idx_${tbl} ${x} WHERE ${x}.resource_type = ${rt} AND ${x}.resource_id = ${alias}.id AND ${x}.param = ${param} AND ${c})`;
    this.parts.set(condition, { tbl, code, x, rt, param, cond: c });
    if (alias === TOP_ALIAS) {
      this.drivers.set(condition, {
        rank: tbl === 'token' && fewValues(type, code) ? FEW_VALUES_RANK : (DRIVER_RANK[tbl] ?? 9),
        skewed: tbl === 'token' && fewValues(type, code),
        sql: `SELECT ${x}.resource_id AS id FROM idx_${tbl} ${x} WHERE ${x}.resource_type = ${rt} AND ${x}.param = ${param} AND ${c}`,
        part: { tbl, code, x, rt, param, cond: c },
      });
    }
    return condition;
  }

  private missing(type: string, alias: string, name: string, sp: SearchParameter, value: string): string {
    if (value !== 'true' && value !== 'false') throw new ParamError(name, `:missing takes true or false, not "${value}"`);
    const tbl =
      sp.type === 'special' ? 'geo' : sp.type === 'composite' ? 'composite' : (sp.type as string);
    const code = sp.type === 'special' ? 'near' : sp.code ?? name.split(':')[0];
    const e = this.exists(tbl, type, alias, code, () => 'true');
    return value === 'true' ? `NOT ${e}` : e;
  }

  // ------------------------------------------------------------------ _id, _lastUpdated

  private idParam(alias: string, name: string, modifier: string | undefined, value: string): string {
    const ids = splitEscaped(value, ',').map(unescapeValue);
    if (modifier === 'missing') return value === 'true' ? 'false' : 'true';
    if (modifier === 'not') return `NOT (${alias}.id = ANY(${this.sql.bind(ids)}::text[]))`;
    this.noModifier(name, modifier);
    return ids.length === 1 ? `${alias}.id = ${this.sql.bind(ids[0])}` : `${alias}.id = ANY(${this.sql.bind(ids)}::text[])`;
  }

  private lastUpdated(alias: string, name: string, modifier: string | undefined, value: string): string {
    if (modifier === 'missing') return value === 'true' ? 'false' : 'true';
    this.noModifier(name, modifier);
    return this.orValues(name, value, (v) => this.dateCond(name, v, `${alias}.last_updated`, `${alias}.last_updated`))('');
  }

  // ------------------------------------------------------------------ _text, _content, _list

  /**
   * _text (the narrative) and _content (every string of the resource): PostgreSQL full-text
   * search with web-search syntax (words all present, "a phrase", or, -word), case-insensitive,
   * whole words, no stemming (clinical text is multilingual and stemming mangles terms). The
   * expressions are exactly those of the GIN indexes of migration 006.
   */
  private fullText(alias: string, name: string, code: '_text' | '_content', modifier: string | undefined, value: string): string {
    this.sql.planByValue = true;
    this.noModifier(name, modifier);
    return this.orValues(name, value, (v) => `${fullTextSql(code, alias)} @@ websearch_to_tsquery('simple'::regconfig, ${this.sql.bind(unescapeValue(v))})`)('');
  }

  /**
   * _list=id: the resource is an item of List/id. Functional lists ($current-allergies and the
   * like) would need the patient context of the request: refused rather than guessed.
   */
  private list(type: string, alias: string, name: string, modifier: string | undefined, value: string): string {
    this.noModifier(name, modifier);
    const ids = splitEscaped(value, ',').map((v) => unescapeValue(v).replace(/^List\//, ''));
    for (const id of ids) {
      if (id.startsWith('$')) throw new ParamError(name, `Functional list "${id}" is not supported (use the id of a List resource)`);
      if (!/^[A-Za-z0-9\-.]{1,64}$/.test(id)) throw new ParamError(name, `"${id}" is not a List id`);
    }
    const l = this.sql.alias('l');
    const rows = `idx_reference ${l} WHERE ${l}.resource_type = 'List' AND ${l}.param = 'item' AND ${l}.resource_id = ANY(${this.sql.bind(ids)}::text[]) AND ${l}.target_type = ${this.sql.bind(type)}`;
    // In parentheses: the rows are the List's, not the resource's, so a chain must still check
    // that the resource is live (see onIdOnly).
    const condition = `(EXISTS (SELECT 1 FROM ${rows} AND ${l}.target_id = ${alias}.id))`;
    if (alias === TOP_ALIAS) {
      // The List's rows name their items, which may have been deleted since: checked here
      // (a driver yields only live resources).
      const d = this.sql.alias('d');
      this.drivers.set(condition, {
        rank: DRIVER_RANK.reference,
        sql: `SELECT ${l}.target_id AS id FROM ${rows} AND EXISTS (SELECT 1 FROM ${table(type)} ${d} WHERE ${d}.id = ${l}.target_id AND NOT ${d}.deleted)`,
      });
    }
    return condition;
  }

  // ------------------------------------------------------------------ _filter

  /** Set while a _filter is compiled: its string eq / ew use modes no URL modifier reaches. */
  private inFilter = 0;

  /** _filter: each comparison compiled as the parameter it names, the logic around them. */
  private filter(type: string, alias: string, value: string, depth: number): string {
    const tree = parseFilter(value);
    const walk = (n: FilterNode): string => {
      switch (n.kind) {
        case 'and':
          return `(${walk(n.left)} AND ${walk(n.right)})`;
        case 'or':
          return `(${walk(n.left)} OR ${walk(n.right)})`;
        case 'not':
          return `NOT (${walk(n.expr)})`;
        case 'cmp':
          return this.filterComparison(type, alias, n.path, n.op, n.value, depth);
      }
    };
    this.inFilter++;
    try {
      // In parentheses: one condition about the row as a whole (never an index driver).
      return `(${walk(tree)})`;
    } finally {
      this.inFilter--;
    }
  }

  private filterComparison(type: string, alias: string, path: string, op: FilterOp, raw: string, depth: number): string {
    const kind = pathKind(type, path);
    if (!kind) throw new ParamError('_filter', `Unknown search parameter "${path}" for ${type} in _filter`);
    if (op === 'pr') {
      if (raw !== 'true' && raw !== 'false') throw new ParamError('_filter', `pr takes true or false, not "${raw}"`);
      return this.param(type, alias, `${path}:missing`, raw === 'true' ? 'false' : 'true', depth);
    }
    // The value is literal: escape what the parameter syntax would split on (',', '$', and '|'
    // where a | is no separator).
    const piped = kind === 'token' || kind === 'reference' || kind === 'quantity';
    const v = raw.replace(piped ? /[\\,$]/g : /[\\,$|]/g, '\\$&');
    const p = (modifier?: string, val = v) => this.param(type, alias, modifier ? `${path}:${modifier}` : path, val, depth);
    const bad = () => new ParamError('_filter', `_filter operator "${op}" cannot be used with ${kind} parameter ${path}`);
    switch (kind) {
      case 'date':
      case 'number':
      case 'quantity':
      case '_lastUpdated':
        if (op === 'co' || op === 'sw' || op === 'ew') throw bad();
        return p(undefined, op + v);
      case 'string':
        switch (op) {
          case 'eq':
            return p('x-eq');
          case 'ne':
            return `NOT ${p('x-eq')}`;
          case 'sw':
            return p();
          case 'co':
            return p('contains');
          case 'ew':
            return p('x-ew');
          default:
            throw bad();
        }
      case 'uri':
        if (op === 'sw') return p('below');
      // falls through: eq / ne as for tokens
      case 'token':
      case 'reference':
      case '_id':
        if (op === 'eq') return p();
        if (op === 'ne') return `NOT ${p()}`;
        throw bad();
      default:
        throw new ParamError('_filter', `${kind} parameter ${path} cannot be used in _filter`);
    }
  }

  // ------------------------------------------------------------------ date

  /**
   * R4 date semantics: the search value and the indexed value are both ranges; eq = the
   * resource range lies within the search range, gt/lt = the range above/below the search
   * range overlaps the resource range, ge/le = gt/lt or eq, sa/eb = starts after / ends before,
   * ap = the ranges overlap after widening the search range by 10% of its distance from now.
   */
  dateCond(name: string, raw: string, low: string, high: string): string {
    this.sql.ranges++;
    const { prefix, rest } = splitPrefix(unescapeValue(raw));
    const r = parseDate(name, rest);
    const b = (v: string) => `${this.sql.bind(v)}::timestamptz`;
    switch (prefix) {
      // eq, ge and le also carry a redundant bound on one column (low <= high always), so the
      // index on (resource_type, param, low | high) gives a range scan instead of a filter.
      case 'eq':
        return `(${low} >= ${b(r.low)} AND ${low} <= ${b(r.high)} AND ${high} <= ${b(r.high)})`;
      case 'ne':
        return `NOT (${low} >= ${b(r.low)} AND ${high} <= ${b(r.high)})`;
      case 'gt':
        return `${high} > ${b(r.high)}`;
      case 'lt':
        return `${low} < ${b(r.low)}`;
      case 'ge':
        return `(${high} >= ${b(r.low)} AND (${high} > ${b(r.high)} OR (${low} >= ${b(r.low)} AND ${high} <= ${b(r.high)})))`;
      case 'le':
        return `(${low} <= ${b(r.high)} AND (${low} < ${b(r.low)} OR (${low} >= ${b(r.low)} AND ${high} <= ${b(r.high)})))`;
      case 'sa':
        return `${low} > ${b(r.high)}`;
      case 'eb':
        return `${high} < ${b(r.low)}`;
      case 'ap': {
        const lo = Date.parse(r.low);
        const hi = Date.parse(r.high);
        const now = Date.now();
        const gap = Math.max(Math.abs(now - lo), Math.abs(now - hi)) * 0.1;
        const wide = Math.max(gap, 86_400_000);
        return `(${low} <= ${b(new Date(hi + wide).toISOString())} AND ${high} >= ${b(new Date(lo - wide).toISOString())})`;
      }
    }
  }

  // ------------------------------------------------------------------ number / quantity

  /** Conditions on a numeric range [lowCol, highCol] (a point has low = high). */
  private numericCond(name: string, prefix: Prefix, s: string, lowCol: string, highCol: string): string {
    this.sql.ranges++;
    const n = parseNumber(name, s);
    const b = (v: string) => `${this.sql.bind(v)}::numeric`;
    switch (prefix) {
      case 'eq':
        return `(${lowCol} >= ${b(n.low)} AND ${highCol} < ${b(n.high)})`;
      case 'ne':
        return `NOT (${lowCol} >= ${b(n.low)} AND ${highCol} < ${b(n.high)})`;
      case 'gt':
        return `${highCol} > ${b(n.text)}`;
      case 'lt':
        return `${lowCol} < ${b(n.text)}`;
      case 'ge':
        return `${highCol} >= ${b(n.text)}`;
      case 'le':
        return `${lowCol} <= ${b(n.text)}`;
      case 'sa':
        return `${lowCol} > ${b(n.text)}`;
      case 'eb':
        return `${highCol} < ${b(n.text)}`;
      case 'ap': {
        const d = Math.abs(n.value) * 0.1;
        return `(${lowCol} <= ${b(String(n.value + d))} AND ${highCol} >= ${b(String(n.value - d))})`;
      }
    }
  }

  private numberCond(name: string, raw: string, x: string): string {
    const { prefix, rest } = splitPrefix(unescapeValue(raw));
    return this.numericCond(name, prefix, rest, `${x}.low`, `${x}.high`);
  }

  /** [prefix]number|system|code ; number||code matches code or unit in any system. */
  private quantityCond(name: string, raw: string, x: string, cols = { low: 'low', high: 'high', system: 'system', code: 'code', unit: 'unit' as string | undefined }): string {
    const [num, system, code] = splitPipe(raw, 3).map(unescapeValue);
    const { prefix, rest } = splitPrefix(num);
    const conds = [this.numericCond(name, prefix, rest, `${x}.${cols.low}`, `${x}.${cols.high}`)];
    if (system) conds.push(`${x}.${cols.system} = ${this.sql.bind(system)}`);
    if (code) {
      const c = this.sql.bind(code);
      conds.push(system || !cols.unit ? `${x}.${cols.code} = ${c}` : `(${x}.${cols.code} = ${c} OR ${x}.${cols.unit} = ${c})`);
    }
    return `(${conds.join(' AND ')})`;
  }

  // ------------------------------------------------------------------ token

  /** system|code, |code, system|, code -> condition on (systemCol, codeCol). */
  private tokenValueCond(raw: string, sysCol: string, codeCol: string): string {
    const parts = splitPipe(raw, 2).map(unescapeValue);
    if (parts.length === 1) return `${codeCol} = ${this.sql.bind(parts[0])}`;
    const [system, code] = parts;
    if (system === '') return `(${sysCol} IS NULL AND ${codeCol} = ${this.sql.bind(code)})`;
    if (code === '') return `${sysCol} = ${this.sql.bind(system)}`;
    return `(${sysCol} = ${this.sql.bind(system)} AND ${codeCol} = ${this.sql.bind(code)})`;
  }

  private token(type: string, alias: string, name: string, code: string, modifier: string | undefined, value: string): string {
    switch (modifier) {
      case undefined:
        return this.exists('token', type, alias, code, this.tokenOr(name, value));
      case 'not':
        return `NOT ${this.exists('token', type, alias, code, this.tokenOr(name, value))}`;
      case 'text':
        return this.exists('token', type, alias, code, this.orValues(name, value, (v, x) => this.textCond(v, `${x}.display`)));
      case 'of-type':
        return this.exists('token', type, alias, code + OF_TYPE_SUFFIX, this.orValues(name, value, (v, x) => {
          const [system, tcode, val] = splitPipe(v, 3).map(unescapeValue);
          if (!system || !tcode || val === undefined || val === '') throw new ParamError(name, ':of-type takes system|code|value');
          return `(${x}.system = ${this.sql.bind(system)} AND ${x}.code = ${this.sql.bind(`${tcode}|${val}`)})`;
        }));
      case 'in':
        return this.exists('token', type, alias, code, this.orValues(name, value, (v, x) => this.inValueSet(name, v, x)));
      case 'not-in':
        return `NOT ${this.exists('token', type, alias, code, this.orValues(name, value, (v, x) => this.inValueSet(name, v, x)))}`;
      case 'above':
      case 'below':
        return this.exists('token', type, alias, code, this.orValues(name, value, (v, x) => this.subsumes(name, modifier, v, x)));
      default:
        throw new ParamError(name, `Modifier ":${modifier}" is not supported on token parameter ${code}`);
    }
  }

  /**
   * :in / :not-in: a token in the value set (expanded from the bundled definitions). A code
   * without a system matches a code of any system of the expansion.
   */
  private inValueSet(name: string, raw: string, x: string): string {
    const url = unescapeValue(raw);
    const expansion = expandValueSet(url);
    if (!expansion) {
      throw new ParamError(name, `The value set ${url} cannot be expanded from the bundled definitions (unknown, or drawn from a code system this server does not hold)`);
    }
    const conds: string[] = [];
    const all = new Set<string>();
    for (const [system, codes] of expansion) {
      if (!codes.size) continue;
      conds.push(`(${x}.system = ${this.sql.bind(system)} AND ${x}.code = ANY(${this.sql.bind([...codes])}::text[]))`);
      for (const c of codes) all.add(c);
    }
    if (!all.size) return 'false';
    conds.push(`(${x}.system IS NULL AND ${x}.code = ANY(${this.sql.bind([...all])}::text[]))`);
    return `(${conds.join(' OR ')})`;
  }

  /** :below / :above system|code: the code and its descendants / ancestors in a bundled code system. */
  private subsumes(name: string, modifier: 'above' | 'below', raw: string, x: string): string {
    const parts = splitPipe(raw, 2).map(unescapeValue);
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw new ParamError(name, `:${modifier} takes system|code`);
    const [system, code] = parts;
    const codes = subsumption(system, code, modifier);
    if (!codes) throw new ParamError(name, `:${modifier} needs the hierarchy of ${system}, which is not among the code systems this server holds`);
    return `(${x}.system = ${this.sql.bind(system)} AND ${x}.code = ANY(${this.sql.bind([...codes])}::text[]))`;
  }

  private tokenOr(name: string, value: string): (x: string) => string {
    const values = splitEscaped(value, ',');
    if (values.some((v) => v === '')) throw new ParamError(name, `Empty value in ${name}`);
    // Plain codes OR-ed together become one = ANY(array) (one index scan).
    const plain = values.filter((v) => splitPipe(v, 2).length === 1).map(unescapeValue);
    const other = values.filter((v) => splitPipe(v, 2).length > 1);
    return (x) => {
      const conds = other.map((v) => this.tokenValueCond(v, `${x}.system`, `${x}.code`));
      if (plain.length === 1) conds.push(`${x}.code = ${this.sql.bind(plain[0])}`);
      else if (plain.length > 1) conds.push(`${x}.code = ANY(${this.sql.bind(plain)}::text[])`);
      return conds.length === 1 ? conds[0] : `(${conds.join(' OR ')})`;
    };
  }

  /**
   * `col LIKE pattern`. Only a known pattern can use an index (a prefix one the btree, any the
   * trigram GIN), so the statement is then planned for its values each time (planByValue).
   */
  private like(col: string, pattern: string): string {
    this.sql.planByValue = true;
    return `${col} LIKE ${this.sql.bind(pattern)}`;
  }

  /** :text: the display/text starts with the value or has a word starting with it. */
  private textCond(raw: string, col: string): string {
    const v = likeEscape(normalizeString(unescapeValue(raw)));
    return `(${this.like(col, v + '%')} OR ${this.like(col, '% ' + v + '%')})`;
  }

  // ------------------------------------------------------------------ string

  private string(type: string, alias: string, name: string, code: string, modifier: string | undefined, value: string): string {
    switch (modifier) {
      case undefined: {
        const condition = this.exists('string', type, alias, code, this.orValues(name, value, (v, x) =>
          this.like(`${x}.value`, likeEscape(normalizeString(unescapeValue(v))) + '%')));
        const driver = this.drivers.get(condition);
        if (driver?.part && splitEscaped(value, ',').length === 1) driver.ordered = prefixOrdered(driver.part, this.sql.alias('x'));
        return condition;
      }
      case 'exact':
        return this.exists('string', type, alias, code, this.orValues(name, value, (v, x) =>
          `${x}.exact = ${this.sql.bind(unescapeValue(v))}`));
      // _filter's string eq / ew (whole value / end, case- and accent-insensitive)
      case 'x-eq':
      case 'x-ew':
        if (!this.inFilter) throw new ParamError(name, `Modifier ":${modifier}" is not supported on string parameter ${code}`);
        return this.exists('string', type, alias, code, this.orValues(name, value, (v, x) => {
          const n = normalizeString(unescapeValue(v));
          return modifier === 'x-eq' ? `${x}.value = ${this.sql.bind(n)}` : this.like(`${x}.value`, '%' + likeEscape(n));
        }));
      case 'contains':
      case 'text':
        return this.exists('string', type, alias, code, this.orValues(name, value, (v, x) =>
          this.like(`${x}.value`, '%' + likeEscape(normalizeString(unescapeValue(v))) + '%')));
      default:
        throw new ParamError(name, `Modifier ":${modifier}" is not supported on string parameter ${code}`);
    }
  }

  // ------------------------------------------------------------------ uri

  private uri(type: string, alias: string, name: string, code: string, modifier: string | undefined, value: string): string {
    switch (modifier) {
      case undefined:
        return this.exists('uri', type, alias, code, this.orValues(name, value, (v, x) => `${x}.value = ${this.sql.bind(unescapeValue(v))}`));
      case 'below':
        return this.exists('uri', type, alias, code, this.orValues(name, value, (v, x) =>
          this.like(`${x}.value`, likeEscape(unescapeValue(v)) + '%')));
      case 'above':
        return this.exists('uri', type, alias, code, this.orValues(name, value, (v, x) => {
          // Every path prefix of the value: http://a/b/c is below http://a/b and http://a.
          const u = unescapeValue(v);
          const prefixes: string[] = [];
          for (let i = u.length; i > 0; i = u.lastIndexOf('/', i - 1)) {
            const p = u.slice(0, i);
            if (/^[a-z][a-z0-9+.-]*:\/?\/?$/i.test(p)) break;
            prefixes.push(p);
          }
          return `${x}.value = ANY(${this.sql.bind(prefixes)}::text[])`;
        }));
      default:
        throw new ParamError(name, `Modifier ":${modifier}" is not supported on uri parameter ${code}`);
    }
  }

  // ------------------------------------------------------------------ reference

  /** Reference value -> condition on (target_type, target_id, target_url). */
  private refValueCond(name: string, raw: string, x: string, typeModifier?: string): string {
    const v = unescapeValue(raw);
    const local = parseReference(v, this.fhirBase);
    if (local) {
      if (typeModifier && local.type !== typeModifier) return 'false';
      return `(${x}.target_type = ${this.sql.bind(local.type)} AND ${x}.target_id = ${this.sql.bind(local.id)})`;
    }
    if (/^[a-z][a-z0-9+.-]*:/i.test(v)) return `${x}.target_url = ${this.sql.bind(v)}`;
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(v)) throw new ParamError(name, `"${v}" is not a reference, id or URL`);
    if (typeModifier) return `(${x}.target_type = ${this.sql.bind(typeModifier)} AND ${x}.target_id = ${this.sql.bind(v)})`;
    return `${x}.target_id = ${this.sql.bind(v)}`;
  }

  private reference(type: string, alias: string, name: string, code: string, sp: SearchParameter, modifier: string | undefined, value: string): string {
    if (modifier === 'identifier') {
      return this.exists('token', type, alias, code + IDENTIFIER_SUFFIX, this.tokenOr(name, value));
    }
    if (modifier !== undefined) {
      if (!isResourceType(modifier)) throw new ParamError(name, `Modifier ":${modifier}" is not supported on reference parameter ${code}`);
      if (sp.target && !sp.target.includes(modifier as never)) {
        throw new ParamError(name, `${code} cannot refer to ${modifier} (targets: ${sp.target.join(', ')})`);
      }
    }
    return this.exists('reference', type, alias, code, this.orValues(name, value, (v, x) => this.refValueCond(name, v, x, modifier)));
  }

  /** subject:Patient.name=x -> the reference points at a Patient whose name matches. */
  private chain(type: string, alias: string, name: string, dot: number, value: string, depth: number): string {
    const head = name.slice(0, dot);
    const rest = name.slice(dot + 1);
    const [code, typeModifier, ...extra] = head.split(':');
    if (extra.length) throw new ParamError(name, `Bad chain "${head}"`);
    const sp = paramDef(type, code);
    if (!sp) throw new ParamError(name, `Unknown search parameter "${code}" for ${type}`);
    if (sp.type !== 'reference') throw new ParamError(name, `${code} is not a reference parameter; it cannot be chained`);
    let targets = (sp.target ?? []) as string[];
    if (typeModifier) {
      if (!targets.includes(typeModifier)) throw new ParamError(name, `${code} cannot refer to ${typeModifier}`);
      targets = [typeModifier];
    }
    const restCode = rest.split(/[.:]/)[0];
    const usable = targets.filter(
      (t) => isResourceType(t) && (rest.startsWith('_has:') || COLUMN_PARAMS.has(restCode) || paramDef(t, restCode)),
    );
    if (usable.length === 0) throw new ParamError(name, `None of the targets of ${code} (${targets.join(', ')}) has a parameter "${restCode}"`);
    const r = this.sql.alias('r');
    const perTarget: string[] = [];
    let firstError: unknown;
    for (const t of usable) {
      // A target the rest cannot apply to (subject._has:Condition:subject:... for a Device
      // subject) is left out; only when none can is the parameter unusable.
      const bound = this.sql.values.length;
      const a = this.sql.alias('t');
      let cond: string;
      try {
        cond = this.param(t, a, rest, value, depth + 1);
      } catch (e) {
        if (!(e instanceof ParamError)) throw e;
        this.sql.truncate(bound);
        firstError ??= e;
        continue;
      }
      const byId = onIdOnly(cond, a, `${r}.target_id`);
      if (byId) perTarget.push(`(${r}.target_type = ${this.sql.bind(t)} AND ${byId})`);
      else perTarget.push(`(${r}.target_type = ${this.sql.bind(t)} AND EXISTS (SELECT 1 FROM ${table(t)} ${a} WHERE ${a}.id = ${r}.target_id AND NOT ${a}.deleted AND ${cond}))`);
    }
    if (!perTarget.length) throw firstError;
    const rt = this.sql.bind(type);
    const param = this.sql.bind(code);
    const targetCond = perTarget.length === 1 ? perTarget[0] : `(${perTarget.join(' OR ')})`;
    const condition = `EXISTS (SELECT 1 FROM idx_reference ${r} WHERE ${r}.resource_type = ${rt} AND ${r}.resource_id = ${alias}.id AND ${r}.param = ${param} AND ${targetCond})`;
    if (alias === TOP_ALIAS) {
      this.drivers.set(condition, {
        rank: DRIVER_RANK.chain,
        sql: `SELECT ${r}.resource_id AS id FROM idx_reference ${r} WHERE ${r}.resource_type = ${rt} AND ${r}.param = ${param} AND ${targetCond}`,
      });
    }
    return condition;
  }

  /** _has:Observation:patient:code=x -> some Observation whose patient is this resource has code x. */
  private has(type: string, alias: string, name: string, value: string, depth: number): string {
    const parts = name.split(':');
    const [, srcType, refCode] = parts;
    const rest = parts.slice(3).join(':');
    if (!srcType || !refCode || !rest) throw new ParamError(name, `_has takes _has:Type:reference:parameter`);
    if (!isResourceType(srcType)) throw new ParamError(name, `Unknown resource type "${srcType}" in ${name}`);
    const sp = paramDef(srcType, refCode);
    if (!sp || sp.type !== 'reference') throw new ParamError(name, `${srcType} has no reference parameter "${refCode}"`);
    if (sp.target && !sp.target.includes(type as never)) throw new ParamError(name, `${srcType}.${refCode} cannot refer to ${type}`);
    const r = this.sql.alias('r');
    const a = this.sql.alias('h');
    const cond = this.param(srcType, a, rest, value, depth + 1);
    // The conditions below are about rows of the source resources, not of `alias`: in
    // parentheses so a chain does not take them for the target's own index rows (onIdOnly)
    // and still checks that the target is live.
    const part = this.parts.get(cond);
    const pair = part && pairable(part) ? findPair(srcType, part.code, refCode) : undefined;
    const y = this.sql.alias('y');
    const onPair = pair && part ? onPairRow(part.cond, part.x, 'token', y) : undefined;
    if (pair && part && onPair) {
      // A token condition on the source with (token, reference) pair rows: one probe of
      // idx_composite per candidate instead of one per source resource (index-rows.ts INDEX_PAIRS).
      return `(EXISTS (SELECT 1 FROM idx_composite ${y} WHERE ${y}.resource_type = ${part.rt} AND ${y}.param = ${this.sql.bind(pair.param)} AND ${part.param}::text IS NOT NULL AND ${onPair} AND ${y}.system2 = ${this.sql.bind(type)} AND ${y}.code2 = ${alias}.id))`;
    }
    const byId = onIdOnly(cond, a, `${r}.resource_id`);
    if (byId) {
      return `(EXISTS (SELECT 1 FROM idx_reference ${r} WHERE ${r}.resource_type = ${this.sql.bind(srcType)} AND ${r}.param = ${this.sql.bind(refCode)} AND ${r}.target_type = ${this.sql.bind(type)} AND ${r}.target_id = ${alias}.id AND ${byId}))`;
    }
    return `(EXISTS (SELECT 1 FROM idx_reference ${r} JOIN ${table(srcType)} ${a} ON ${a}.id = ${r}.resource_id AND NOT ${a}.deleted WHERE ${r}.resource_type = ${this.sql.bind(srcType)} AND ${r}.param = ${this.sql.bind(refCode)} AND ${r}.target_type = ${this.sql.bind(type)} AND ${r}.target_id = ${alias}.id AND ${cond}))`;
  }

  // ------------------------------------------------------------------ composite

  private composite(type: string, alias: string, name: string, code: string, sp: SearchParameter, value: string): string {
    const all = Object.values(getSearchParameters(type) ?? {});
    const compTypes = (sp.component ?? []).map((c) => all.find((d) => d.url === c.definition)?.type);
    if (compTypes.length < 2 || compTypes.some((t) => !t)) throw new ParamError(name, `Composite ${code} is not supported`);
    return this.exists('composite', type, alias, code, this.orValues(name, value, (v, x) => {
      const parts = splitEscaped(v, '$');
      if (parts.length !== compTypes.length) throw new ParamError(name, `${code} takes ${compTypes.length} values separated by $`);
      const conds: string[] = [];
      // first component: token (or reference stored as Type/id in code1)
      if (compTypes[0] === 'reference') {
        const local = parseReference(unescapeValue(parts[0]), this.fhirBase);
        conds.push(`${x}.code1 = ${this.sql.bind(local ? `${local.type}/${local.id}` : unescapeValue(parts[0]))}`);
      } else {
        conds.push(this.tokenValueCond(parts[0], `${x}.system1`, `${x}.code1`));
      }
      const t2 = compTypes[1];
      const p2 = parts[1];
      if (t2 === 'token') conds.push(this.tokenValueCond(p2, `${x}.system2`, `${x}.code2`));
      else if (t2 === 'quantity') conds.push(this.quantityCond(name, p2, x, { low: 'low2', high: 'high2', system: 'system2', code: 'code2', unit: undefined }));
      else if (t2 === 'number') {
        const { prefix, rest } = splitPrefix(unescapeValue(p2));
        conds.push(this.numericCond(name, prefix, rest, `${x}.low2`, `${x}.high2`));
      } else if (t2 === 'date') conds.push(this.dateCond(name, p2, `${x}.dlow2`, `${x}.dhigh2`));
      else if (t2 === 'string') conds.push(this.like(`${x}.text2`, likeEscape(normalizeString(unescapeValue(p2))) + '%'));
      else if (t2 === 'uri' || t2 === 'reference') conds.push(`${x}.code2 = ${this.sql.bind(unescapeValue(p2))}`);
      else throw new ParamError(name, `Composite ${code} is not supported`);
      if (compTypes[2]) {
        const { prefix, rest } = splitPrefix(unescapeValue(parts[2]));
        conds.push(this.numericCond(name, prefix, rest, `${x}.low3`, `${x}.high3`));
      }
      return `(${conds.join(' AND ')})`;
    }));
  }

  // ------------------------------------------------------------------ near

  parseNear(name: string, value: string, distanceOverride?: number): Near {
    const [lat, lng, dist, unit] = splitPipe(value, 4).map(unescapeValue);
    const la = Number(lat);
    const ln = Number(lng);
    if (!lat || !lng || !Number.isFinite(la) || !Number.isFinite(ln) || Math.abs(la) > 90 || Math.abs(ln) > 180) {
      throw new ParamError(name, `near takes latitude|longitude|distance|unit, got "${value}"`);
    }
    let km = distanceOverride ?? 50;
    if (dist) {
      const d = Number(dist);
      if (!Number.isFinite(d) || d < 0) throw new ParamError(name, `near distance "${dist}" is not a number`);
      km = toKm(name, d, unit || 'km');
    }
    return { lat: la, lng: ln, distance: km };
  }

  /** SQL distance in km from near's point to (lat, lng) columns (haversine). */
  distanceSql(n: Near, latCol: string, lngCol: string): string {
    const lat = `${this.sql.bind(n.lat)}::float8`;
    const lng = `${this.sql.bind(n.lng)}::float8`;
    return `(12742.0176 * asin(least(1, sqrt(power(sin(radians(${latCol} - ${lat}) / 2), 2) + cos(radians(${lat})) * cos(radians(${latCol})) * power(sin(radians(${lngCol} - ${lng}) / 2), 2)))))`;
  }

  nearDistanceOverride?: number;

  private nearCond(alias: string, name: string, value: string): string {
    const n = this.parseNear(name, value, this.nearDistanceOverride);
    this.near = n;
    this.sql.ranges++;
    const g = this.sql.alias('g');
    const dLat = n.distance / 111.2;
    const cosLat = Math.cos((n.lat * Math.PI) / 180);
    const dLng = cosLat < 1e-6 ? 180 : Math.min(180, n.distance / (111.32 * cosLat));
    const f = (v: number) => `${this.sql.bind(v)}::float8`;
    // The bounding box (latitude range on the index, longitude checked from the same index
    // entries) prefilters before the exact great-circle distance.
    const box = `${g}.lat BETWEEN ${f(n.lat - dLat)} AND ${f(n.lat + dLat)} AND ${g}.lng BETWEEN ${f(n.lng - dLng)} AND ${f(n.lng + dLng)} AND ${this.distanceSql(n, `${g}.lat`, `${g}.lng`)} <= ${f(n.distance)}`;
    const condition = `EXISTS (SELECT 1 FROM idx_geo ${g} WHERE ${g}.resource_type = 'Location' AND ${g}.param = 'near' AND ${g}.resource_id = ${alias}.id AND ${box})`;
    if (alias === TOP_ALIAS) {
      this.drivers.set(condition, { rank: DRIVER_RANK.geo, sql: `SELECT ${g}.resource_id AS id FROM idx_geo ${g} WHERE ${g}.resource_type = 'Location' AND ${g}.param = 'near' AND ${box}` });
    }
    return condition;
  }
}

/**
 * The kind of the parameter a _filter path names ("name", "subject:Patient.name",
 * "patient.general-practitioner.identifier"): the search parameter type of its last part, or
 * _id / _lastUpdated; undefined when unknown.
 */
function pathKind(type: string, path: string): string | undefined {
  const parts = path.split('.');
  let types = [type];
  for (let i = 0; i < parts.length; i++) {
    const [code, typeModifier] = parts[i].split(':');
    if (i === parts.length - 1) {
      if (code === '_id' || code === '_lastUpdated') return code;
      for (const t of types) {
        const sp = paramDef(t, code);
        if (sp) return sp.type;
      }
      return undefined;
    }
    const next = new Set<string>();
    for (const t of types) {
      const sp = paramDef(t, code);
      if (sp?.type !== 'reference') continue;
      for (const target of sp.target ?? []) if (!typeModifier || target === typeModifier) next.add(target);
    }
    types = [...next];
    if (!types.length) return undefined;
  }
  return undefined;
}

/** The tsvector of a row's narrative (_text) or of all its strings (_content); see migration 006. */
export function fullTextSql(code: '_text' | '_content', alias: string): string {
  return code === '_text'
    ? `to_tsvector('simple'::regconfig, ${alias}.content #>> '{text,div}')`
    : `jsonb_to_tsvector('simple'::regconfig, ${alias}.content, '["string"]')`;
}

/** Parameters every type has that are not index rows. */
export const COLUMN_PARAMS = new Set(['_id', '_lastUpdated', '_text', '_content', '_list']);

/**
 * A chained / _has condition about the resource `alias` that only asks for index rows of its id
 * (a positive EXISTS over idx_*, which exist only for live resources of that type), rewritten
 * on the id column `idSql` so the resource table need not be visited; undefined otherwise
 * (negations and :missing=true must see that the resource exists and is not deleted).
 */
function onIdOnly(cond: string, alias: string, idSql: string): string | undefined {
  if (!cond.startsWith('EXISTS (') || new RegExp(`\\b${alias}\\.(?!id\\b)`).test(cond)) return undefined;
  return cond.replace(new RegExp(`\\b${alias}\\.id\\b`, 'g'), idSql);
}

export function toKm(name: string, d: number, unit: string): number {
  switch (unit) {
    case 'km':
      return d;
    case 'm':
      return d / 1000;
    case 'mi':
    case '[mi_i]':
    case '[mi_us]':
      return d * 1.609344;
    default:
      throw new ParamError(name, `Unknown distance unit "${unit}" (use km, m or [mi_i])`);
  }
}
