// Validation on every write: refused requests name the element, and store nothing.
import { describe, expect, it } from 'vitest';
import { http, unique } from '../support/fhir.ts';

async function countFamily(family: string): Promise<number> {
  const res = await http('GET', `Patient?family=${family}&_total=accurate`);
  return res.body.total;
}

describe('validation', () => {
  const cases: { name: string; body: unknown; status: number; expression?: string; message: RegExp }[] = [
    { name: 'malformed JSON', body: '{"resourceType": "Patient", ', status: 400, message: /not valid JSON/ },
    { name: 'a non-object body', body: '[1,2]', status: 400, message: /JSON object/ },
    { name: 'a missing resourceType', body: { name: [{ family: 'x' }] }, status: 400, expression: 'resourceType', message: /resourceType/ },
    { name: 'a type that does not match the URL', body: { resourceType: 'Observation' }, status: 400, message: /does not match/ },
    { name: 'an unknown element', body: { resourceType: 'Patient', colour: 'blue' }, status: 422, expression: 'Patient.colour', message: /colour/ },
    { name: 'a wrong type', body: { resourceType: 'Patient', active: 'yes' }, status: 422, expression: 'Patient.active', message: /boolean/ },
    { name: 'a bad date', body: { resourceType: 'Patient', birthDate: '1980-13-45' }, status: 422, expression: 'Patient.birthDate', message: /date/i },
    { name: 'a bad code', body: { resourceType: 'Patient', gender: 'banana' }, status: 422, expression: 'Patient.gender', message: /.+/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.name} with ${c.status} and an OperationOutcome`, async () => {
      const res = await http('POST', 'Patient', { body: c.body });
      expect(res.status).toBe(c.status);
      expect(res.body.resourceType).toBe('OperationOutcome');
      const issue = res.body.issue[0];
      expect(issue.severity).toBe('error');
      expect(issue.diagnostics ?? issue.details?.text).toMatch(c.message);
      if (c.expression) expect(res.body.issue.flatMap((i: any) => i.expression ?? [])).toContain(c.expression);
    });
  }

  it('refuses a missing required element (Observation.status, Observation.code)', async () => {
    const res = await http('POST', 'Observation', { body: { resourceType: 'Observation' } });
    expect(res.status).toBe(422);
    const expressions = res.body.issue.flatMap((i: any) => i.expression ?? []);
    expect(expressions).toContain('Observation.status');
    expect(expressions).toContain('Observation.code');
  });

  it('refuses a bad client id on update', async () => {
    const res = await http('PUT', 'Patient/bad_id!', { body: { resourceType: 'Patient', id: 'bad_id!' } });
    expect([400, 404]).toContain(res.status);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });

  it('stores nothing from a refused write', async () => {
    const family = unique('Refused');
    const res = await http('POST', 'Patient', { body: { resourceType: 'Patient', name: [{ family }], birthDate: 'not-a-date' } });
    expect(res.status).toBe(422);
    expect(await countFamily(family)).toBe(0);
  });

  it('refuses a stack-trace-worthy body without leaking internals', async () => {
    const res = await http('POST', 'Patient', { body: { resourceType: 'Patient', name: { family: 'not-an-array' } } });
    expect(res.status).toBe(422);
    expect(res.text).not.toMatch(/at .*\.ts:\d+|SELECT|INSERT/);
  });
});

describe('profiles of the implementation guide', () => {
  it('enforces a profile from ig/profiles that a resource claims in meta.profile', async () => {
    const task = { resourceType: 'Task', status: 'requested', intent: 'order' };
    const claimed = await http('POST', 'Task', {
      body: { ...task, meta: { profile: ['http://wardlink.org/fhir/StructureDefinition/wardlink-consult-task'] } },
    });
    expect(claimed.status).toBe(422);
    const expressions = claimed.body.issue.flatMap((i: any) => i.expression ?? []);
    expect(expressions).toEqual(expect.arrayContaining(['Task.businessStatus', 'Task.code', 'Task.focus']));
    // The same resource without the claim is valid R4.
    expect((await http('POST', 'Task', { body: task })).status).toBe(201);
  });
});

describe('$validate', () => {
  it('validates a posted resource at type level without storing it', async () => {
    const bad = await http('POST', 'Patient/$validate', { body: { resourceType: 'Patient', gender: 5 } });
    expect(bad.status).toBe(200);
    expect(bad.body.issue[0].severity).toBe('error');
    expect(bad.body.issue[0].expression).toContain('Patient.gender');
    const good = await http('POST', 'Patient/$validate', {
      body: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient', gender: 'male' } }] },
    });
    expect(good.status).toBe(200);
    expect(good.body.issue[0].severity).toBe('information');
  });

  it('validates a stored resource at instance level', async () => {
    const created = await http('POST', 'Patient', { body: { resourceType: 'Patient', gender: 'male' } });
    const res = await http('GET', `Patient/${created.body.id}/$validate`);
    expect(res.status).toBe(200);
    expect(res.body.issue[0].severity).toBe('information');
  });
});
