// SearchParameters from ig/ are loaded at start: indexed on write, searchable, advertised.
import { describe, expect, it } from 'vitest';
import { http } from '../support/fhir.ts';

describe('implementation guide SearchParameters', () => {
  it('indexes and searches Task?due (ig/search-parameters/Task-due.json) with no code', async () => {
    const task = (end: string) => ({
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      restriction: { period: { end } },
    });
    const early = await http('POST', 'Task', { body: task('2031-01-01T10:00:00Z') });
    const late = await http('POST', 'Task', { body: task('2031-01-03T10:00:00Z') });
    const res = await http('GET', 'Task?due=lt2031-01-02&due=gt2030-12-31&_count=50');
    const ids = res.body.entry.map((e: any) => e.resource.id);
    expect(ids).toContain(early.body.id);
    expect(ids).not.toContain(late.body.id);
    const cs = await http('GET', 'metadata');
    const taskRes = cs.body.rest[0].resource.find((r: any) => r.type === 'Task');
    expect(taskRes.searchParam.find((p: any) => p.name === 'due')?.definition).toBe('http://wardlink.org/fhir/SearchParameter/Task-due');
  });
});
