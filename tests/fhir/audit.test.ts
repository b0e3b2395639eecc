// Every FHIR interaction leaves an AuditEvent (IHE BALP shape), written in batches, valid R4,
// and searchable like any resource.
import { describe, expect, it } from 'vitest';
import { http, unique } from '../support/fhir.ts';

async function auditFor(reference: string, subtype: string): Promise<any[]> {
  // Events are flushed in batches every 250 ms.
  for (let i = 0; i < 40; i++) {
    const res = await http('GET', `AuditEvent?entity=${reference}&subtype=${subtype}&_count=50`);
    if (res.body.entry?.length) return res.body.entry.map((e: any) => e.resource);
    await new Promise((r) => setTimeout(r, 100));
  }
  return [];
}

describe('audit trail', () => {
  it('records create, read and failed reads with BALP codes, and validates as R4', async () => {
    const created = await http('POST', 'Patient', { body: { resourceType: 'Patient', name: [{ family: unique('Audit') }] }, headers: { 'x-request-id': 'audit-test-1' } });
    const ref = `Patient/${created.body.id}`;
    await http('GET', ref);
    const creates = await auditFor(ref, 'create');
    expect(creates).toHaveLength(1);
    const ev = creates[0];
    expect(ev.action).toBe('C');
    expect(ev.outcome).toBe('0');
    expect(ev.type.code).toBe('rest');
    expect(ev.agent.some((a: any) => a.type.coding[0].code === '110153')).toBe(true);
    expect(ev.agent.some((a: any) => a.type.coding[0].code === '110152')).toBe(true);
    expect(ev.entity.some((e: any) => e.detail?.[0]?.valueString === 'audit-test-1')).toBe(true);
    const reads = await auditFor(ref, 'read');
    expect(reads[0].action).toBe('R');
    const check = await http('POST', 'AuditEvent/$validate', { body: ev });
    expect(check.body.issue[0].severity).toBe('information');
  });

  it('records searches with the query, base64-encoded', async () => {
    const family = unique('AuditQ');
    await http('GET', `Patient?family=${family}`);
    for (let i = 0; i < 40; i++) {
      const res = await http('GET', 'AuditEvent?subtype=search-type&_count=200&_sort=-date');
      const hit = (res.body.entry ?? []).find((e: any) =>
        e.resource.entity?.some((x: any) => x.query && Buffer.from(x.query, 'base64').toString().includes(family)),
      );
      if (hit) {
        expect(hit.resource.action).toBe('E');
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('no AuditEvent for the search');
  });

  it('folds a burst of searches by one client into few events, every query listed once', async () => {
    const families = [1, 2, 3, 4, 5].map((i) => unique(`AuditBurst${i}`));
    await Promise.all(families.map((f) => http('GET', `Patient?family=${f}`)));
    const decoded = (e: any): string[] => (e.entity ?? []).filter((x: any) => x.query).map((x: any) => Buffer.from(x.query, 'base64').toString());
    for (let i = 0; i < 40; i++) {
      const res = await http('GET', 'AuditEvent?subtype=search-type&_count=200&_sort=-date');
      const events = (res.body.entry ?? []).map((e: any) => e.resource).filter((e: any) => decoded(e).some((q) => families.some((f) => q.includes(f))));
      const listed = events.flatMap(decoded).filter((q: string) => families.some((f) => q.includes(f)));
      if (listed.length === families.length) {
        expect(events.length).toBeLessThan(families.length);
        expect(events.every((e: any) => e.period?.start && e.action === 'E')).toBe(true);
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('not every search was audited');
  });
});
