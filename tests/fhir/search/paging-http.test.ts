// Paging and POST _search over real HTTP (the server the vitest globalSetup started): a real
// FHIR client (fhir-kit-client) walks every page of a large result with its search / nextPage
// helpers and sees each resource exactly once; GET and POST _search (form body) agree.
import { beforeAll, describe, expect, it } from 'vitest';
import { client, http, unique } from '../../support/fhir.ts';

const N = 120;
const family = unique('Pager').replace(/-/g, '');
let ids: string[] = [];

interface Bundle {
  resourceType: 'Bundle';
  total?: number;
  link?: { relation: string; url: string }[];
  entry?: { fullUrl?: string; resource: { resourceType: string; id: string }; search?: { mode: string } }[];
}

const matchIds = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource.id);

beforeAll(async () => {
  const entry = Array.from({ length: N }, (_, i) => ({
    fullUrl: `urn:uuid:${crypto.randomUUID()}`,
    resource: {
      resourceType: 'Patient',
      name: [{ family, given: [`G${String(i).padStart(3, '0')}`] }],
      // a few birth dates shared by many patients: sort ties must not lose or repeat anyone
      birthDate: `19${50 + (i % 7)}-01-0${1 + (i % 3)}`,
      gender: i % 2 ? 'female' : 'male',
    },
    request: { method: 'POST', url: 'Patient' },
  }));
  const res = await http('POST', '', { body: { resourceType: 'Bundle', type: 'transaction', entry } });
  expect(res.status).toBe(200);
  ids = (res.body.entry as { response: { location: string } }[]).map((e) => e.response.location.split('/')[1]);
  expect(new Set(ids).size).toBe(N);
});

async function walk(searchParams: Record<string, string | number>): Promise<{ seen: string[]; pages: number; first: Bundle }> {
  const c = client();
  const first = (await c.search({ resourceType: 'Patient', searchParams })) as unknown as Bundle;
  let bundle: Bundle | undefined = first;
  const seen: string[] = [];
  let pages = 0;
  while (bundle) {
    pages++;
    expect(pages).toBeLessThan(100);
    const page = matchIds(bundle);
    expect(page.length).toBeLessThanOrEqual(Number(searchParams._count));
    seen.push(...page);
    const next: Promise<unknown> | undefined = c.nextPage({ bundle: bundle as never });
    bundle = next ? ((await next) as Bundle) : undefined;
  }
  return { seen, pages, first };
}

describe('paging over HTTP with fhir-kit-client', () => {
  it.each([
    ['no _sort (by id)', { _total: 'accurate' }],
    ['_sort=birthdate (many ties)', { _sort: 'birthdate' }],
    ['_sort=-birthdate,given', { _sort: '-birthdate,given' }],
    ['_sort=-_lastUpdated', { _sort: '-_lastUpdated' }],
  ])('walks every page, each resource exactly once: %s', async (_label, extra) => {
    const { seen, pages, first } = await walk({ family, _count: 7, ...extra });
    expect(pages).toBe(Math.ceil(N / 7));
    expect(seen).toHaveLength(N);
    expect(new Set(seen).size).toBe(N);
    expect([...seen].sort()).toEqual([...ids].sort());
    // Bundle.total: counted when asked for; without _total only when the result fits one page
    expect(first.total).toBe('_total' in extra ? N : undefined);
  });

  it('without _total, the total is given when the whole result is on the first page', async () => {
    const c = client();
    const all = (await c.search({ resourceType: 'Patient', searchParams: { family, _count: 500 } })) as unknown as Bundle;
    expect(all.total).toBe(N);
    const estimate = (await c.search({ resourceType: 'Patient', searchParams: { family, _count: 5, _total: 'estimate' } })) as unknown as Bundle;
    expect(estimate.total).toBe(N);
  });

  it('walks back with prevPage from the last page to the first', async () => {
    const c = client();
    let bundle = (await c.search({ resourceType: 'Patient', searchParams: { family, _count: 7, _sort: 'birthdate' } })) as unknown as Bundle;
    const forward: string[][] = [];
    for (;;) {
      forward.push(matchIds(bundle));
      const next: Promise<unknown> | undefined = c.nextPage({ bundle: bundle as never });
      if (!next) break;
      bundle = (await next) as Bundle;
    }
    const backward: string[][] = [matchIds(bundle)];
    for (;;) {
      const prev: Promise<unknown> | undefined = c.prevPage({ bundle: bundle as never });
      if (!prev) break;
      bundle = (await prev) as Bundle;
      backward.push(matchIds(bundle));
    }
    expect(backward.reverse()).toEqual(forward);
  });
});

describe('GET and POST _search', () => {
  const queries: Record<string, string>[] = [
    { family, _count: '50' },
    { family, gender: 'female', _sort: '-birthdate,given', _count: '13' },
    { family, birthdate: 'ge1953', _count: '100' },
    { family: family.toLowerCase(), 'given:exact': 'G007' },
  ];

  it.each(queries)('same result: %o', async (q) => {
    const qs = new URLSearchParams(q).toString();
    const get = await http<Bundle>('GET', `Patient?${qs}`);
    const post = await http<Bundle>('POST', 'Patient/_search', {
      raw: qs,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(get.status).toBe(200);
    expect(post.status).toBe(200);
    expect(matchIds(post.body)).toEqual(matchIds(get.body));
    expect(matchIds(get.body).length).toBeGreaterThan(0);
    expect(post.body.total).toBe(get.body.total);
    // the next link of a POST search is a GET link that continues the same result
    const nextGet = get.body.link?.find((l) => l.relation === 'next')?.url;
    const nextPost = post.body.link?.find((l) => l.relation === 'next')?.url;
    if (nextGet || nextPost) {
      expect(nextPost).toBeDefined();
      const a = await http<Bundle>('GET', nextGet as string);
      const b = await http<Bundle>('GET', nextPost as string);
      expect(matchIds(b.body)).toEqual(matchIds(a.body));
    }
  });

  it('fhir-kit-client with postSearch gives what GET gives', async () => {
    const c = client();
    const searchParams = { family, _sort: 'given', _count: 11 };
    const viaGet = (await c.search({ resourceType: 'Patient', searchParams })) as unknown as Bundle;
    const viaPost = (await c.search({ resourceType: 'Patient', searchParams, options: { postSearch: true } as never })) as unknown as Bundle;
    expect(matchIds(viaPost)).toEqual(matchIds(viaGet));
    expect(matchIds(viaGet)).toHaveLength(11);
  });

  it('POST _search with query-string and body parameters combines them (AND)', async () => {
    const post = await http<Bundle>('POST', `Patient/_search?gender=male`, {
      raw: new URLSearchParams({ family, _count: '200' }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(post.status).toBe(200);
    expect(matchIds(post.body)).toHaveLength(N / 2);
  });
});
