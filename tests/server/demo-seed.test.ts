// The demo hospital `npm start` seeds on an empty database: the printed demo sign-ins have
// places in the departments, so each role finds a populated board (the department head heads
// Cardiology, the clinician is a Neurology doctor with consults assigned to them, the nurse works
// in Cardiology).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/server.ts';
import { startInProcessServer, type InProcessServer } from '../support/in-process-server.ts';
import { EXT_DEPARTMENT_SLA } from '../../server/workflow/model.ts';

let env: InProcessServer;
let server: RunningServer;
let accessToken: string;

beforeAll(async () => {
  env = await startInProcessServer({ SEED_DEMO: 'true' });
  ({ server, accessToken } = env);
}, 120_000);
afterAll(async () => {
  await env?.close();
});

async function get(path: string): Promise<any> {
  const res = await fetch(`${server.fhirBase}/${path}`, { headers: { authorization: `Bearer ${accessToken}` } });
  expect(res.status, path).toBe(200);
  return res.json();
}

const department = async (key: string) => (await get(`Organization?identifier=urn:wardlink:demo|dept-${key}`)).entry[0].resource;
const fhirUserOf = (role: string) => server.demo.find((a) => a.role === role)?.fhirUser as string;

describe('demo seed', () => {
  it('gives the demo department head, clinician and nurse their departments', async () => {
    const cardiology = await department('cardiology');
    const neurology = await department('neurology');
    const sla = cardiology.extension.find((e: any) => e.url === EXT_DEPARTMENT_SLA);
    expect(sla.extension.find((e: any) => e.url === 'head').valueReference.reference).toBe(fhirUserOf('department-head'));

    const roles = async (who: string, org: string) =>
      ((await get(`PractitionerRole?practitioner=${who}&organization=Organization/${org}`)).entry ?? []).map((e: any) => e.resource.code[0].text);
    expect(await roles(fhirUserOf('department-head'), cardiology.id)).toEqual(['head']);
    expect(await roles(fhirUserOf('clinician'), neurology.id)).toEqual(['doctor']);
    expect(await roles(fhirUserOf('nurse'), cardiology.id)).toEqual(['nurse']);
  });

  it('leaves consults assigned to the demo clinician and incoming to the head\'s department', async () => {
    const mine = await get(`Task?owner=${fhirUserOf('clinician')}&_count=50`);
    expect(mine.entry?.length ?? 0).toBeGreaterThan(0);
    const cardiology = await department('cardiology');
    const incoming = await get(`ServiceRequest?performer=Organization/${cardiology.id}&_count=50`);
    expect(incoming.entry?.length ?? 0).toBeGreaterThan(0);
  });
});
