// history at instance, type and system level (R4 http.html#history): newest first, _since,
// _at (versions current at a time) and _count, paged by links that stay valid while new
// versions arrive (each page link pins the newest instant it may show, so offsets never shift).
import { instantSql } from '../../db/pool.ts';
import { assertVisible, isRestricted } from '../authorize.ts';
import { badRequest, forbidden } from '../outcome.ts';
import { dateRange } from '../search/dates.ts';
import { queryValue, type FhirContext, type FhirRequest, type FhirResponse } from '../request.ts';

interface HistoryRow {
  resource_type: string;
  id: string;
  version: number;
  last_updated: string;
  deleted: boolean;
  method: string;
  json: string | null;
}

export async function historyInteraction(ctx: FhirContext, req: FhirRequest, type?: string, id?: string): Promise<FhirResponse> {
  const count = pageSize(ctx, queryValue(req.query, '_count'));
  const offset = Number(queryValue(req.query, '_offset') ?? 0);
  if (!Number.isInteger(offset) || offset < 0) throw badRequest('_offset must be a whole number', ['_offset']);
  const since = instantParam(req, '_since');
  const at = instantParam(req, '_at');
  // The first page pins "now" (the database's clock, which stamps versions); later pages carry
  // it so versions written after the first page never shift the offsets.
  const till =
    instantParam(req, '_till') ??
    (await ctx.repo.db.query<{ now: string }>(`SELECT ${instantSql('clock_timestamp()')} AS now`)).rows[0].now;

  const where: string[] = ['last_updated <= $1'];
  const values: unknown[] = [till];
  const add = (sql: string, v: unknown) => {
    values.push(v);
    where.push(sql.replace('?', `$${values.length}`));
  };
  if (type) add('resource_type = ?', type);
  if (id) add('id = ?', id);
  if (since) add('last_updated >= ?', since);
  if (at) add('last_updated <= ?', at);
  const filter = where.join(' AND ');

  // Confirm the instance exists (history of an unknown id is a 404) and may be seen.
  if (type && id) {
    const current = await ctx.repo.readVersion(type, id);
    if (isRestricted(ctx)) {
      if (!current.json) throw forbidden(`The history of deleted ${type}/${id} is not available to a restricted token`);
      await assertVisible(ctx, JSON.parse(current.json));
    }
  }

  const [page, total] = await Promise.all([
    ctx.repo.db.query<HistoryRow>(
      `SELECT resource_type, id, version, ${instantSql('last_updated')} AS last_updated, deleted, method, content::text AS json
       FROM resource_history WHERE ${filter}
       ORDER BY last_updated DESC, resource_type DESC, id DESC, version DESC
       LIMIT ${count} OFFSET ${offset}`,
      values,
    ),
    ctx.repo.db.query<{ n: string }>(`SELECT count(*) AS n FROM resource_history WHERE ${filter}`, values),
  ]);
  const n = Number(total.rows[0].n);

  const base = ctx.fhirBase + '/' + [type, id, '_history'].filter(Boolean).join('/');
  const keep = req.query.filter(([k]) => !['_offset', '_till', '_count'].includes(k));
  const link = (rel: string, off: number) => {
    const q = new URLSearchParams([...keep, ['_count', String(count)], ['_till', till], ['_offset', String(off)]]);
    return `{"relation":"${rel}","url":${JSON.stringify(`${base}?${q}`)}}`;
  };
  const links = [link('self', offset)];
  if (offset + count < n) links.push(link('next', offset + count));
  if (offset > 0) links.push(link('previous', Math.max(0, offset - count)));

  const entries = page.rows.map((r) => historyEntry(ctx, r));
  const json = `{"resourceType":"Bundle","type":"history","total":${n},"link":[${links.join(',')}],"entry":[${entries.join(',')}]}`;
  return { status: 200, body: { json } };
}

function historyEntry(ctx: FhirContext, r: HistoryRow): string {
  const fullUrl = `${ctx.fhirBase}/${r.resource_type}/${r.id}`;
  const request = r.method === 'POST' ? { method: 'POST', url: r.resource_type } : { method: r.method, url: `${r.resource_type}/${r.id}` };
  const status = r.deleted ? '204 No Content' : r.version === 1 ? '201 Created' : '200 OK';
  const response = { status, etag: `W/"${r.version}"`, lastModified: r.last_updated };
  const resource = r.deleted || r.json === null ? '' : `"resource":${r.json},`;
  return `{"fullUrl":${JSON.stringify(fullUrl)},${resource}"request":${JSON.stringify(request)},"response":${JSON.stringify(response)}}`;
}

function pageSize(ctx: FhirContext, raw: string | undefined): number {
  if (raw === undefined) return ctx.defaultCount;
  if (!/^\d+$/.test(raw)) throw badRequest('_count must be a whole number', ['_count']);
  return Math.min(Number(raw), ctx.maxCount);
}

function instantParam(req: FhirRequest, name: string): string | undefined {
  const raw = queryValue(req.query, name);
  if (raw === undefined) return undefined;
  const range = dateRange(raw);
  if (!range) throw badRequest(`${name} must be a FHIR instant or date, got "${raw}"`, [name]);
  return name === '_since' ? range.low : range.high;
}
