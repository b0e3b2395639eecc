// instance / type / system history with _since, _count and paging that survives new writes.
import { describe, expect, it } from 'vitest';
import { client, http, unique } from '../support/fhir.ts';

describe('history', () => {
  it('lists instance versions newest first with request/response details', async () => {
    const c = client();
    const p = (await c.create({ resourceType: 'Patient', body: { resourceType: 'Patient', gender: 'male' } })) as any;
    await c.update({ resourceType: 'Patient', id: p.id, body: { ...p, gender: 'female' } });
    await c.update({ resourceType: 'Patient', id: p.id, body: { ...p, gender: 'other' } });
    const h = (await c.history({ resourceType: 'Patient', id: p.id })) as any;
    expect(h.type).toBe('history');
    expect(h.total).toBe(3);
    expect(h.entry.map((e: any) => e.resource.meta.versionId)).toEqual(['3', '2', '1']);
    expect(h.entry[2].request).toEqual({ method: 'POST', url: 'Patient' });
    expect(h.entry[0].request).toEqual({ method: 'PUT', url: `Patient/${p.id}` });
    expect(h.entry[0].response.etag).toBe('W/"3"');
    expect(h.entry[0].fullUrl).toMatch(new RegExp(`/fhir/Patient/${p.id}$`));
    expect((await http('GET', 'Patient/nope-nope/_history')).status).toBe(404);
  });

  it('filters type history by _since and pages with stable next links while data changes', async () => {
    const since = new Date().toISOString();
    const marker = unique('Hist');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await http('POST', 'Practitioner', { body: { resourceType: 'Practitioner', name: [{ family: `${marker}${i}` }] } });
      ids.push(r.body.id);
    }
    const page1 = await http('GET', `Practitioner/_history?_since=${encodeURIComponent(since)}&_count=2`);
    expect(page1.body.entry).toHaveLength(2);
    const total = page1.body.total;
    expect(total).toBeGreaterThanOrEqual(5);
    // New writes after the first page must not shift what the next pages show.
    await http('POST', 'Practitioner', { body: { resourceType: 'Practitioner', name: [{ family: `${marker}late` }] } });
    const seen = [...page1.body.entry];
    let next = page1.body.link.find((l: any) => l.relation === 'next')?.url;
    while (next) {
      const page = await http('GET', next);
      seen.push(...page.body.entry);
      next = page.body.link.find((l: any) => l.relation === 'next')?.url;
    }
    // (Other test files write Practitioners concurrently, so only our own writes are checked.)
    const seenIds = seen.map((e) => e.resource.id);
    expect(seen.length).toBeGreaterThanOrEqual(total);
    for (const id of ids) expect(seenIds).toContain(id);
    expect(new Set(seenIds.map((id, i) => `${id}/${seen[i].resource.meta.versionId}`)).size).toBe(seen.length);
    expect(seen.some((e) => e.resource.name?.[0]?.family === `${marker}late`)).toBe(false);
  });

  it('serves system history across types', async () => {
    const since = new Date(Date.now() - 1000).toISOString();
    const org = await http('POST', 'Organization', { body: { resourceType: 'Organization', name: unique('Org') } });
    const h = await http('GET', `_history?_since=${encodeURIComponent(since)}&_count=100`);
    expect(h.status).toBe(200);
    expect(h.body.entry.some((e: any) => e.resource?.id === org.body.id)).toBe(true);
    expect((await http('GET', '_history?_since=notadate')).status).toBe(400);
  });
});
