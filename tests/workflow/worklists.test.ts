// The worklists the consult board shows are plain FHIR searches (ig/worklists.md): my requests,
// assigned to me, incoming to my department, overdue, follow-up. On the demo seed's hospital
// (server/workflow/seed.ts: five departments, consults and referrals in every state) each list
// is asked over HTTP with the person's own SMART token, and must return exactly the Tasks that
// the list's definition picks out of all Tasks (read from the database).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Task } from '@medplum/fhirtypes';
import { registerClient } from '../../server/auth/clients.ts';
import type { Role } from '../../server/auth/context.ts';
import { createUser } from '../../server/auth/users.ts';
import { seedWorkflowDemo } from '../../server/workflow/index.ts';
import { WORKFLOW_STATUS_SYSTEM } from '../../server/workflow/model.ts';
import { findMatches } from '../../server/fhir/search/search.ts';
import { startAuthTestServer, type AuthTestServer } from '../auth/support.ts';
import { CLIENT, REDIRECT, SCOPE, fhirCall, signIn } from './http-support.ts';

let srv: AuthTestServer;
let all: Task[];
const who: Record<string, { ref: string; token: string; org: string }> = {};
const dept: Record<string, string> = {};

const OPEN = ['draft', 'requested', 'received', 'accepted', 'in-progress', 'on-hold'];
const seed = (t: Task) => t.businessStatus?.coding?.find((c) => c.system === WORKFLOW_STATUS_SYSTEM)?.code;
const recipient = (t: Task) => t.restriction?.recipient?.map((r) => r.reference) ?? [];

async function search(token: string, query: string): Promise<{ tasks: Task[]; included: any[] }> {
  const res = await fhirCall(srv, token, 'GET', query);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const entries = res.body.entry ?? [];
  expect(res.body.link?.find((l: any) => l.relation === 'next'), 'one page holds the list').toBeUndefined();
  return {
    tasks: entries.filter((e: any) => e.search?.mode !== 'include').map((e: any) => e.resource),
    included: entries.filter((e: any) => e.search?.mode === 'include').map((e: any) => e.resource),
  };
}
const ids = (tasks: Task[]) => tasks.map((t) => t.id).sort();
const expected = (pick: (t: Task) => boolean) => ids(all.filter(pick));

beforeAll(async () => {
  srv = await startAuthTestServer();
  await registerClient(srv.db, { clientId: CLIENT, kind: 'public', redirectUris: [REDIRECT], scopes: SCOPE, trusted: true });
  await seedWorkflowDemo({ db: srv.db, fhirBase: srv.fhirBase });
  const one = async (type: string, params: [string, string][]) => {
    const found = await findMatches(srv.db, type, params, 2);
    expect(found.length, JSON.stringify(params)).toBe(1);
    return `${type}/${found[0].id}`;
  };
  dept.cardiology = await one('Organization', [['identifier', 'urn:wardlink:demo|dept-cardiology']]);
  dept.internal = await one('Organization', [['identifier', 'urn:wardlink:demo|dept-internal-medicine']]);
  // Staff belong to the hospital (their token's organisation, as the demo users do); which
  // department they work in is their PractitionerRole.
  const hospital = await one('Organization', [['name:exact', 'Wardlink Demo Hospital']]);
  // Seed people signed in as themselves: users linked to the seed's Practitioners.
  const person = async (key: string, given: string, family: string, role: Role, org: string) => {
    const ref = await one('Practitioner', [['given:exact', given], ['family:exact', family]]);
    const user = { username: `wl-${key.toLowerCase()}`, password: `pw-${Math.random().toString(36).slice(2)}-long` };
    await createUser(srv.db, { ...user, fhirUser: ref, role, organization: org });
    who[key] = { ref, token: await signIn(srv, user), org };
  };
  await person('cardRequester', 'Dr A', 'Cardiology', 'clinician', hospital);
  await person('internalDoc', 'Dr B', 'Internal Medicine', 'clinician', hospital);
  await person('cardHead', 'Head', 'Cardiology', 'department-head', hospital);
  all = (await findMatches(srv.db, 'Task', [['_lastUpdated', 'gt2000-01-01']], 500)).map((m) => JSON.parse(m.json) as Task);
  expect(all.length).toBeGreaterThanOrEqual(18);
});

afterAll(async () => {
  await srv?.stop();
});

describe('worklists over HTTP on the demo seed', () => {
  it('my requests: Task?requester=<me>&status=<open>&_sort=due', async () => {
    const me = who.cardRequester;
    const { tasks } = await search(me.token, `Task?requester=${me.ref}&status=${OPEN.join(',')}&_sort=due`);
    const want = expected((t) => t.requester?.reference === me.ref && OPEN.includes(t.status));
    expect(want.length).toBe(3); // two consults in progress elsewhere, one draft referral
    expect(ids(tasks)).toEqual(want);
    const dues = tasks.map((t) => t.restriction?.period?.end ?? '').filter(Boolean);
    expect(dues).toEqual([...dues].sort());
  });

  it('assigned to me: Task?owner=<me>&status=accepted,in-progress, with the ServiceRequest and patient included', async () => {
    const me = who.internalDoc;
    const { tasks, included } = await search(me.token, `Task?owner=${me.ref}&status=accepted,in-progress&_sort=due&_include=Task:focus&_include=Task:patient`);
    const want = expected((t) => t.owner?.reference === me.ref && ['accepted', 'in-progress'].includes(t.status));
    expect(want.length).toBe(2);
    expect(ids(tasks)).toEqual(want);
    expect(included.filter((r) => r.resourceType === 'ServiceRequest').map((r) => `ServiceRequest/${r.id}`).sort()).toEqual(tasks.map((t) => t.focus?.reference).sort());
    expect(included.some((r) => r.resourceType === 'Patient')).toBe(true);
  });

  it('incoming to my department: Task?recipient=<department>&status=requested,received', async () => {
    const head = who.cardHead;
    const { tasks } = await search(head.token, `Task?recipient=${dept.cardiology}&status=requested,received&_sort=due`);
    const want = expected((t) => recipient(t).includes(dept.cardiology) && ['requested', 'received'].includes(t.status));
    expect(want.length).toBe(2); // pending, and pending overdue
    expect(ids(tasks)).toEqual(want);
    // The same department's requests once claimed are found by recipient too (owner is a person then).
    const open = await search(head.token, `Task?recipient=${dept.cardiology}&status=${OPEN.join(',')}`);
    expect(ids(open.tasks)).toEqual(expected((t) => recipient(t).includes(dept.cardiology) && OPEN.includes(t.status)));
  });

  it('overdue: Task?due=lt<now>&status=<open>, hospital-wide and per department', async () => {
    const now = new Date().toISOString();
    const head = who.cardHead;
    const open = 'requested,received,accepted,in-progress,on-hold';
    const { tasks } = await search(head.token, `Task?due=lt${now}&status=${open}&_sort=due`);
    const want = expected((t) => !!t.restriction?.period?.end && t.restriction.period.end < now && open.split(',').includes(t.status));
    expect(want.length).toBeGreaterThanOrEqual(1); // the stat consult to Cardiology authored 90 min ago (SLA 30 min)
    expect(ids(tasks)).toEqual(want);
    const mine = await search(head.token, `Task?recipient=${dept.cardiology}&due=lt${now}&status=${open}`);
    expect(ids(mine.tasks)).toEqual(expected((t) => want.includes(t.id) && recipient(t).includes(dept.cardiology)));
    expect(mine.tasks.length).toBe(1);
  });

  it('follow-up: Task?business-status=<workflow-status>|FOLLOW_UP (mine: &owner=<me>)', async () => {
    const me = who.internalDoc;
    const { tasks } = await search(me.token, `Task?business-status=${WORKFLOW_STATUS_SYSTEM}|FOLLOW_UP&owner=${me.ref}`);
    const want = expected((t) => seed(t) === 'FOLLOW_UP' && t.owner?.reference === me.ref);
    expect(want.length).toBe(1);
    expect(ids(tasks)).toEqual(want);
    const hospital = await search(who.cardHead.token, `Task?business-status=${WORKFLOW_STATUS_SYSTEM}|FOLLOW_UP`);
    expect(ids(hospital.tasks)).toEqual(expected((t) => seed(t) === 'FOLLOW_UP'));
  });

  it('escalated: Task?business-status=<workflow-status>|ESCALATED&recipient=<department>', async () => {
    const head = who.cardHead;
    const { tasks } = await search(head.token, `Task?business-status=${WORKFLOW_STATUS_SYSTEM}|ESCALATED&recipient=${dept.cardiology}`);
    expect(ids(tasks)).toEqual(expected((t) => seed(t) === 'ESCALATED' && recipient(t).includes(dept.cardiology)));
  });
});
