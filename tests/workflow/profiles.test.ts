// The consult / referral profiles (ig/profiles) are enforced on any write that claims them: what
// each differential adds to R4 (cardinality, fixed and pattern values, reference targets). The
// check is ours (server/fhir/profiles.ts), so these pin its behaviour rule by rule.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROFILE, REQUEST_CATEGORY_SYSTEM } from '../../server/workflow/model.ts';
import { call, setupWorld, type World } from './support.ts';

let w: World;
beforeAll(async () => {
  w = await setupWorld();
});
afterAll(async () => {
  await w?.close();
});

function task(overrides: Record<string, unknown> = {}) {
  return {
    resourceType: 'Task',
    meta: { profile: [PROFILE.consultTask] },
    status: 'requested',
    intent: 'order',
    businessStatus: { text: 'Pending' },
    code: { coding: [{ system: REQUEST_CATEGORY_SYSTEM, code: 'consult' }] },
    focus: { reference: 'ServiceRequest/x1' },
    for: { reference: `Patient/${w.ids.patient}` },
    requester: { reference: `Practitioner/${w.ids.requester}` },
    restriction: { period: { end: '2030-01-01T00:00:00Z' }, recipient: [{ reference: `Organization/${w.ids.cardiology}` }] },
    ...overrides,
  };
}

const expressions = (body: any): string[] => body.issue.flatMap((i: any) => i.expression ?? []);

describe('consult Task profile', () => {
  it('accepts a conforming Task', async () => {
    const res = await call(w.admin, 'POST', 'Task', task());
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  });

  it('refuses a missing required element, with its path', async () => {
    const res = await call(w.admin, 'POST', 'Task', task({ requester: undefined }));
    expect(res.status).toBe(422);
    expect(expressions(res.body)).toContain('Task.requester');
  });

  it('refuses a wrong fixed value, a code outside the pattern and a focus that is not a ServiceRequest', async () => {
    const res = await call(
      w.admin,
      'POST',
      'Task',
      task({ intent: 'plan', code: { coding: [{ system: REQUEST_CATEGORY_SYSTEM, code: 'lab' }] }, focus: { reference: `Patient/${w.ids.patient}` } }),
    );
    expect(res.status).toBe(422);
    expect(expressions(res.body)).toEqual(expect.arrayContaining(['Task.intent', 'Task.code', 'Task.focus']));
  });

  it('checks elements inside datatypes only where their parent is present (restriction.period.end)', async () => {
    const missingEnd = await call(w.admin, 'POST', 'Task', task({ restriction: { period: { start: '2030-01-01T00:00:00Z' }, recipient: [{ reference: `Organization/${w.ids.cardiology}` }] } }));
    expect(missingEnd.status).toBe(422);
    expect(expressions(missingEnd.body)).toContain('Task.restriction.period.end');
  });
});

describe('referral ServiceRequest profile', () => {
  it('allows one performer only', async () => {
    const sr = {
      resourceType: 'ServiceRequest',
      meta: { profile: [PROFILE.referralServiceRequest] },
      status: 'active',
      intent: 'order',
      category: [{ coding: [{ system: REQUEST_CATEGORY_SYSTEM, code: 'referral' }] }],
      priority: 'routine',
      subject: { reference: `Patient/${w.ids.patient}` },
      authoredOn: '2030-01-01T00:00:00Z',
      requester: { reference: `Practitioner/${w.ids.requester}` },
      performer: [{ reference: `Organization/${w.ids.cardiology}` }],
    };
    expect((await call(w.admin, 'POST', 'ServiceRequest', sr)).status).toBe(201);
    const two = await call(w.admin, 'POST', 'ServiceRequest', { ...sr, performer: [...sr.performer, { reference: `Organization/${w.ids.neurology}` }] });
    expect(two.status).toBe(422);
    expect(expressions(two.body)).toContain('ServiceRequest.performer');
  });
});
