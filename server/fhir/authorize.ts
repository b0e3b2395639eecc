// Applies the access rules (server/auth/access.ts) to FHIR interactions. The router calls
// authorize() for every classified request; the single-resource checks (is this resource in the
// caller's patient compartment, does it match the scope's restriction, does it belong to the
// caller's organisation) run where the resource is at hand: assertVisible / assertWritable.
// Callers without ctx.access are the server's own trusted code (jobs, HL7 mapping).
import { matchesSearchRequest, parseSearchRequest } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { isUnrestricted, type Permission, type Restriction } from '../auth/access.ts';
import { patientCompartmentParams } from './compartment.ts';
import { forbidden } from './outcome.ts';
import { queryValue, type FhirContext, type FhirRequest } from './request.ts';
import type { Interaction } from './router.ts';
import { findMatches } from './search/search.ts';
import { indexRowsFor } from './search/index-rows.ts';

const PERMISSION: Partial<Record<Interaction['kind'], Permission>> = {
  read: 'r',
  vread: 'r',
  'history-instance': 'r',
  'search-type': 's',
  'history-type': 's',
  create: 'c',
  update: 'u',
  patch: 'u',
  'conditional-update': 'u',
  'conditional-patch': 'u',
  delete: 'd',
  'conditional-delete': 'd',
};

/**
 * Checks the interaction against the caller's scopes and role; returns the restriction the
 * interaction must then honour (stored on the context for the interaction to apply).
 */
export async function authorize(ctx: FhirContext, it: Interaction, req: FhirRequest): Promise<FhirContext> {
  const access = ctx.access;
  if (!access) return ctx;
  switch (it.kind) {
    case 'capabilities':
    case 'batch':
    case 'transaction':
      // Bundle entries are authorised one by one as they run.
      return ctx;
    case 'search-system':
    case 'history-system': {
      const types = it.kind === 'search-system' ? (queryValue(req.query, '_type')?.split(',') ?? []) : [];
      if (types.length === 0) {
        const r = access.check('*', it.kind === 'search-system' ? 's' : 'r');
        if (!isUnrestricted(r)) throw forbidden(`A restricted token must search by type: ${it.kind} across all types is not allowed`);
        return ctx;
      }
      for (const t of types) {
        if (!isUnrestricted(access.check(t.trim(), 's'))) {
          throw forbidden(`A restricted token must search ${t} at type level (GET /${t}?...)`);
        }
      }
      return ctx;
    }
    case 'operation': {
      // Operations act on a type or an instance: reading it is the least they need.
      if (!it.type) {
        if (!isUnrestricted(access.check('*', 'r'))) throw forbidden(`$${it.operation} at system level needs unrestricted access`);
        return ctx;
      }
      return { ...ctx, restriction: access.check(it.type, 'r') };
    }
    case 'history-type': {
      const r = access.check(it.type as string, 's');
      if (!isUnrestricted(r)) throw forbidden(`A restricted token cannot read the history of every ${it.type}; read one resource's history instead`);
      return ctx;
    }
    default: {
      const permission = PERMISSION[it.kind];
      if (!permission) throw forbidden(`${it.kind} is not allowed`);
      return { ...ctx, restriction: access.check(it.type as string, permission) };
    }
  }
}

/** True when the current interaction carries a restriction that resources must be checked against. */
export function isRestricted(ctx: FhirContext): boolean {
  return ctx.restriction !== undefined && !isUnrestricted(ctx.restriction);
}

/** Throws 403 unless the stored resource meets the caller's restriction (for reads, updates, deletes). */
export async function assertVisible(ctx: FhirContext, resource: Resource): Promise<void> {
  const r = ctx.restriction;
  if (!r || isUnrestricted(r)) return;
  if (!(await meets(ctx, resource, r))) {
    throw forbidden(`${resource.resourceType}/${resource.id} is outside what this token may access`);
  }
}

/** Throws 403 unless a resource about to be written meets the caller's restriction. */
export async function assertWritable(ctx: FhirContext, resource: Resource): Promise<void> {
  const r = ctx.restriction;
  if (!r || isUnrestricted(r)) return;
  if (!(await meets(ctx, resource, r))) {
    throw forbidden(`This token may not write ${resource.resourceType} outside its patient / organisation / scope restriction`);
  }
}

async function meets(ctx: FhirContext, resource: Resource, r: Restriction): Promise<boolean> {
  if (r.params.length) {
    const query = new URLSearchParams(r.params).toString();
    if (!matchesSearchRequest(resource, parseSearchRequest(`${resource.resourceType}?${query}`))) return false;
  }
  const patients = patientsOf(resource, ctx.fhirBase);
  if (r.patientCompartment) {
    if (patients === undefined) return true; // not patient data (reference data the role may read)
    if (!patients.includes(r.patientCompartment)) return false;
  }
  if (r.organization && patients?.length) {
    for (const patient of patients) if (await sharedWith(ctx, patient, r.organization)) return true;
    return false;
  }
  return true;
}

/**
 * The Patient ids whose compartment holds the resource; undefined when its type is not in the
 * Patient compartment at all.
 */
export function patientsOf(resource: Resource, fhirBase?: string): string[] | undefined {
  if (resource.resourceType === 'Patient') return resource.id ? [resource.id] : [];
  const params = patientCompartmentParams(resource.resourceType);
  if (!params) return undefined;
  const rows = indexRowsFor(resource, fhirBase).reference;
  return rows.filter((row) => params.includes(row.param) && row.targetType === 'Patient' && row.targetId).map((row) => row.targetId as string);
}

/** A patient belongs to an organisation (managingOrganization) or is shared with it by a referral or transfer. */
async function sharedWith(ctx: FhirContext, patientId: string, organization: string): Promise<boolean> {
  const db = ctx.repo.db;
  const own = await findMatches(db, 'Patient', [['_id', patientId], ['organization', organization]], 1);
  if (own.length) return true;
  for (const param of ['performer', 'requester']) {
    const shared = await findMatches(db, 'ServiceRequest', [['subject', `Patient/${patientId}`], [param, organization]], 1);
    if (shared.length) return true;
  }
  return false;
}
