// Access rules: the one place that decides what a caller may see and do, from the SMART scopes
// in its token and its role / organisation / patient context. Every door (REST, transaction
// entries, operations, search includes, websocket, HL7 HTTP) asks here.
//
// The answer for a (type, permission) pair is either "refused" (403) or a Restriction: the
// conditions every resource touched must meet. Searches compile the restriction into their SQL
// (nothing is filtered in JavaScript); single-resource reads check it with one indexed query;
// writes check it on the resource before it is stored.
import type { AuthContext, Role } from './context.ts';
import { parseResourceScope, type ResourceScope } from './scope-grants.ts';
import { forbidden } from '../fhir/outcome.ts';

/** c create, r read, u update, d delete, s search (SMART v2 letters). */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

const VERBS: Record<Permission, string> = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' };

/** The scopes that grant `permission` on `type` (empty: refused). */
function grantingScopes(scopes: ResourceScope[], type: string, permission: Permission): ResourceScope[] {
  return scopes.filter((s) => (s.type === '*' || s.type === type) && s.perms.includes(permission));
}

/** Our CodeSystem for what a ServiceRequest / Task is for (ig/codesystems/request-category.json). */
export const REQUEST_CATEGORY_SYSTEM = 'http://wardlink.org/fhir/CodeSystem/request-category';

export interface Restriction {
  /** Search parameters the resources must match (AND): v2 scope restrictions, role limits. */
  params: [string, string][];
  /** The resources must be in this Patient's compartment (patient context, patient users). */
  patientCompartment?: string;
  /** Patient data must belong to (or be shared with) this organisation. */
  organization?: string;
}

export const UNRESTRICTED: Restriction = { params: [] };

export function isUnrestricted(r: Restriction): boolean {
  return r.params.length === 0 && !r.patientCompartment && !r.organization;
}

/** Types only administrators may read (audit trail, server configuration). */
const ADMIN_ONLY = new Set(['AuditEvent', 'CapabilityStatement', 'StructureDefinition', 'SearchParameter', 'OperationDefinition', 'ImplementationGuide']);

/** Reference data anyone signed in may read: it describes the care system, not a patient. */
const DIRECTORY = new Set([
  'Organization',
  'Location',
  'Practitioner',
  'PractitionerRole',
  'HealthcareService',
  'Endpoint',
  'Device',
  'Medication',
  'Substance',
  'CodeSystem',
  'ValueSet',
  'ConceptMap',
  'Schedule',
  'Slot',
]);

/** What ambulance crews work with: dispatch, vehicles, places, and the transport requests. */
const DISPATCH_TYPES = new Set([...DIRECTORY, 'Task', 'ServiceRequest', 'Encounter', 'Patient', 'Communication', 'Observation']);

/** Types each staff role may write (read is governed by scopes and the rules below). */
const RECEPTION_WRITES = new Set(['Patient', 'Appointment', 'AppointmentResponse', 'Slot', 'Schedule', 'Coverage', 'RelatedPerson', 'Communication']);

export class AccessPolicy {
  readonly auth: AuthContext;
  private readonly scopes: ResourceScope[];

  constructor(auth: AuthContext) {
    this.auth = auth;
    this.scopes = auth.scopes.map(parseResourceScope).filter((s): s is ResourceScope => s !== undefined);
  }

  /** The patient whose compartment limits this caller, if any. */
  get patientContext(): string | undefined {
    if (this.auth.role === 'patient' && this.auth.fhirUser?.startsWith('Patient/')) return this.auth.fhirUser.slice(8);
    const patientScoped = this.scopes.length > 0 && this.scopes.every((s) => s.context === 'patient');
    return patientScoped ? this.auth.patient : undefined;
  }

  /**
   * May the caller do `permission` on resources of `type`? Throws 403 if not; otherwise the
   * conditions the resources must meet.
   */
  check(type: string, permission: Permission): Restriction {
    const granting = grantingScopes(this.scopes, type, permission);
    const verb = VERBS[permission];
    if (granting.length === 0) throw forbidden(`The token's scopes do not allow ${verb} on ${type}`);
    this.checkRole(this.auth.role, type, permission, verb);

    const params: [string, string][] = [];
    // v2 restrictions: with several granting scopes, one without restriction wins; otherwise
    // the (first) restriction applies.
    if (granting.every((s) => s.query)) params.push(...new URLSearchParams(granting[0].query));
    if (this.auth.role === 'ambulance-crew' && (type === 'ServiceRequest' || type === 'Task')) {
      params.push([type === 'Task' ? 'code' : 'category', `${REQUEST_CATEGORY_SYSTEM}|transport`]);
    }
    const restriction: Restriction = { params };
    const patient = this.patientContext;
    if (patient && !DIRECTORY.has(type)) {
      // A patient-context token reaches that patient's compartment (and reference data).
      restriction.patientCompartment = patient;
    } else if (this.auth.organization && this.auth.role && this.auth.role !== 'admin' && !DIRECTORY.has(type)) {
      restriction.organization = this.auth.organization;
    }
    return restriction;
  }

  private checkRole(role: Role | undefined, type: string, permission: Permission, verb: string): void {
    if (!role || role === 'admin') return;
    const write = permission === 'c' || permission === 'u' || permission === 'd';
    if (ADMIN_ONLY.has(type) && (write || type === 'AuditEvent')) {
      throw forbidden(`Only administrators may ${verb} ${type}`);
    }
    if (role === 'ambulance-crew' || role === 'dispatcher') {
      if (!DISPATCH_TYPES.has(type)) throw forbidden(`The ${role} role works with dispatch data only; ${type} is not part of it`);
      return;
    }
    if (role === 'receptionist' && write && !RECEPTION_WRITES.has(type)) {
      throw forbidden(`The receptionist role may not ${verb} ${type}`);
    }
    if (role === 'patient' && write && DIRECTORY.has(type)) {
      throw forbidden(`A patient may not ${verb} ${type}`);
    }
  }
}
