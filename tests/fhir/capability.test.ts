// The CapabilityStatement is generated from what is registered, for every R4 resource type.
import { describe, expect, it } from 'vitest';
import { client, http } from '../support/fhir.ts';

describe('CapabilityStatement', () => {
  it('lists every R4 resource type with interactions, search parameters and operations', async () => {
    const cs = (await client().capabilityStatement()) as any;
    expect(cs.resourceType).toBe('CapabilityStatement');
    expect(cs.fhirVersion).toBe('4.0.1');
    const rest = cs.rest[0];
    const types = rest.resource.map((r: any) => r.type);
    expect(types.length).toBeGreaterThanOrEqual(145);
    for (const t of ['Patient', 'ServiceRequest', 'Task', 'Appointment', 'Location', 'Device', 'Communication', 'AuditEvent', 'Binary']) {
      expect(types).toContain(t);
    }
    const patient = rest.resource.find((r: any) => r.type === 'Patient');
    expect(patient.interaction.map((i: any) => i.code)).toEqual(
      expect.arrayContaining(['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type']),
    );
    expect(patient.searchParam.map((p: any) => p.name)).toEqual(expect.arrayContaining(['name', 'identifier', 'birthdate']));
    expect(patient.operation.map((o: any) => o.name)).toContain('validate');
    expect(rest.interaction.map((i: any) => i.code)).toEqual(expect.arrayContaining(['transaction', 'batch', 'history-system']));
  });

  it('only answers GET', async () => {
    expect((await http('POST', 'metadata', { body: {} })).status).toBe(405);
  });
});
