// Demo seed for the boards: five departments with SLA settings, a head, doctors and a nurse each,
// patients, and consults / referrals in every state, created through the workflow engine (as the
// server's own trusted code). Runs once: later starts find the departments and stop.
import type { Organization, Patient, Practitioner, PractitionerRole } from '@medplum/fhirtypes';
import type { Db } from '../db/pool.ts';
import { Repository } from '../fhir/repository.ts';
import type { FhirContext } from '../fhir/request.ts';
import { findMatches } from '../fhir/search/search.ts';
import { addNote, applyAction, createRequest } from './engine.ts';
import { EXT_DEPARTMENT_SLA, type Action, type Priority, type Workflow } from './model.ts';

const DEPARTMENTS: [string, string, number, number, number][] = [
  ['cardiology', 'Cardiology', 30, 180, 1380],
  ['neurology', 'Neurology', 60, 240, 1380],
  ['surgery', 'General Surgery', 45, 240, 1440],
  ['internal-medicine', 'Internal Medicine', 60, 240, 1380],
  ['psychiatry', 'Psychiatry', 120, 480, 2880],
];

export interface WorkflowSeedOptions {
  db: Db;
  fhirBase: string;
  /** The hospital Organization the departments belong to (the auth demo organisation). */
  hospital?: string;
  /** Fallback administrator for second-tier escalation (Practitioner/...). */
  administrator?: string;
  /**
   * The demo sign-ins' Practitioners (server/auth/demo.ts), given places in the departments so
   * each finds a populated board: the department head heads Cardiology, the clinician is a
   * Neurology doctor (consults assigned there are theirs), the nurse works in Cardiology.
   */
  staff?: { head?: string; clinician?: string; nurse?: string };
}

export async function seedWorkflowDemo(options: WorkflowSeedOptions): Promise<boolean> {
  const repo = new Repository(options.db, { baseUrl: options.fhirBase }, options.db);
  const seen = await findMatches(options.db, 'Organization', [['identifier', 'urn:wardlink:demo|dept-cardiology']], 1);
  if (seen.length) return false;
  const ctx: FhirContext = { repo, fhirBase: options.fhirBase, defaultCount: 50, maxCount: 1000, maxBinaryBytes: 1 << 20 };
  const hospital = options.hospital ?? `Organization/${(await repo.create<Organization>({ resourceType: 'Organization', name: 'Wardlink Demo Hospital' })).id}`;
  const person = async (given: string, family: string) =>
    `Practitioner/${(await repo.create<Practitioner>({ resourceType: 'Practitioner', active: true, name: [{ given: [given], family }] })).id}`;
  const member = (practitioner: string, org: string, code: string) =>
    repo.create<PractitionerRole>({
      resourceType: 'PractitionerRole',
      active: true,
      practitioner: { reference: practitioner },
      organization: { reference: org },
      code: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/practitioner-role', code: code === 'nurse' ? 'nurse' : 'doctor' }], text: code }],
    });
  const depts: { ref: string; head: string; doctors: string[] }[] = [];
  const staff = options.staff ?? {};
  for (const [key, name, stat, urgent, routine] of DEPARTMENTS) {
    const head = (key === 'cardiology' && staff.head) || (await person('Head', name));
    const org = await repo.create<Organization>({
      resourceType: 'Organization',
      identifier: [{ system: 'urn:wardlink:demo', value: `dept-${key}` }],
      active: true,
      type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'dept' }] }],
      name,
      partOf: { reference: hospital },
      extension: [
        {
          url: EXT_DEPARTMENT_SLA,
          extension: [
            { url: 'stat', valueInteger: stat },
            { url: 'asap', valueInteger: urgent },
            { url: 'urgent', valueInteger: urgent },
            { url: 'routine', valueInteger: routine },
            { url: 'second-tier-delay', valueInteger: 60 },
            { url: 'head', valueReference: { reference: head } },
            ...(options.administrator ? [{ url: 'administrator', valueReference: { reference: options.administrator } }] : []),
          ],
        },
      ],
    });
    const ref = `Organization/${org.id}`;
    await member(head, ref, 'head');
    const doctors = [await person('Dr A', name), (key === 'neurology' && staff.clinician) || (await person('Dr B', name))];
    for (const d of doctors) await member(d, ref, 'doctor');
    await member((key === 'cardiology' && staff.nurse) || (await person('Nurse', name)), ref, 'nurse');
    depts.push({ ref, head, doctors });
  }
  const other = await repo.create<Organization>({ resourceType: 'Organization', identifier: [{ system: 'urn:wardlink:demo', value: 'partner-hospital' }], name: 'Partner Rehabilitation Clinic', active: true });
  const patients: string[] = [];
  for (const [given, family] of [['Anna', 'Berg'], ['Omar', 'Haddad'], ['Li', 'Wei'], ['Maria', 'Santos'], ['John', 'Okafor'], ['Eva', 'Novak']]) {
    const p = await repo.create<Patient>({ resourceType: 'Patient', active: true, name: [{ given: [given], family }], gender: 'unknown', managingOrganization: { reference: hospital } });
    patients.push(`Patient/${p.id}`);
  }
  const now = Date.now();
  let n = 0;
  const make = async (workflow: Workflow, from: number, to: number, priority: Priority, steps: (Action | 'note')[], minutesAgo: number, draft = false) => {
    const requester = depts[from].doctors[0];
    const performer = workflow === 'referral' ? `Organization/${other.id}` : depts[to].ref;
    const { task } = await createRequest(ctx, {
      workflow,
      patient: patients[n++ % patients.length],
      performer,
      priority,
      requester,
      draft,
      reason: workflow === 'consult' ? `Please assess (${priority})` : 'Referral for rehabilitation',
      authoredOn: new Date(now - minutesAgo * 60_000),
    });
    for (const step of steps) {
      if (step === 'note') await addNote(ctx, task.id as string, 'Seen; plan discussed with the team.');
      else await applyAction(ctx, task.id as string, step, { owner: depts[to].doctors[1], reason: step === 'decline' ? 'Outside our scope' : undefined });
    }
  };
  // Consults in every state (PENDING, ASSIGNED, IN_PROGRESS, FOLLOW_UP, COMPLETED, ESCALATED, DECLINED, CANCELLED), some overdue.
  await make('consult', 1, 0, 'urgent', [], 10);
  await make('consult', 2, 0, 'stat', [], 90); // overdue: the timer escalates it
  await make('consult', 3, 1, 'routine', ['assign'], 60);
  await make('consult', 0, 2, 'urgent', ['assign', 'start'], 30);
  await make('consult', 0, 3, 'routine', ['assign', 'note'], 120);
  await make('consult', 4, 3, 'routine', ['assign', 'start', 'follow-up'], 600);
  await make('consult', 1, 4, 'urgent', ['assign', 'start', 'complete'], 300);
  await make('consult', 2, 1, 'stat', ['escalate'], 20);
  await make('consult', 3, 4, 'routine', ['decline'], 400);
  await make('consult', 0, 1, 'routine', ['cancel'], 500);
  // Referrals: Draft, Sent, Viewed, Accepted, In progress, Declined, Completed, Cancelled, Escalated.
  await make('referral', 0, 0, 'routine', [], 5, true);
  await make('referral', 1, 0, 'routine', [], 60);
  await make('referral', 2, 0, 'urgent', ['receive'], 100);
  await make('referral', 3, 0, 'routine', ['accept'], 200);
  await make('referral', 4, 0, 'routine', ['accept', 'start'], 300);
  await make('referral', 0, 0, 'routine', ['decline'], 400);
  await make('referral', 1, 0, 'routine', ['accept', 'start', 'complete'], 3000);
  await make('referral', 2, 0, 'routine', ['cancel'], 600);
  await make('referral', 3, 0, 'urgent', ['receive', 'escalate'], 45);
  return true;
}
