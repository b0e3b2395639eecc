// FHIR operations: each one is its OperationDefinition plus a handler, registered here. The
// router dispatches $name to it and the CapabilityStatement lists it from the same record.
import type { OperationDefinition } from '@medplum/fhirtypes';
import type { FhirContext, FhirRequest, FhirResponse } from '../request.ts';

export interface OperationTarget {
  /** undefined at system level */
  type?: string;
  /** set at instance level */
  id?: string;
}

export interface Operation {
  definition: OperationDefinition;
  handler: (ctx: FhirContext, req: FhirRequest, target: OperationTarget) => Promise<FhirResponse>;
}

const operations = new Map<string, Operation>();

export function registerOperation(op: Operation): void {
  operations.set(op.definition.code, op);
}

export function findOperation(code: string): Operation | undefined {
  return operations.get(code);
}

export function allOperations(): Operation[] {
  return [...operations.values()];
}

/** Whether the definition allows the operation at this level for this type. */
export function operationApplies(def: OperationDefinition, target: OperationTarget): boolean {
  if (target.id !== undefined) return def.instance === true && appliesToType(def, target.type);
  if (target.type !== undefined) return def.type === true && appliesToType(def, target.type);
  return def.system === true;
}

function appliesToType(def: OperationDefinition, type: string | undefined): boolean {
  const resources = def.resource ?? [];
  return resources.length === 0 || resources.includes('Resource' as never) || resources.includes(type as never);
}
