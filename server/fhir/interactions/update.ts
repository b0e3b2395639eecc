// update (R4 http.html#update): If-Match version checks, update-as-create with a client id,
// and conditional update (PUT Type?criteria).
import type { Resource } from '@medplum/fhirtypes';
import { assertVisible, assertWritable, isRestricted } from '../authorize.ts';
import type { Repository } from '../repository.ts';
import { badRequest, conflict, multipleMatches } from '../outcome.ts';
import { parseVersionTag, type FhirContext, type FhirRequest, type FhirResponse } from '../request.ts';
import { assertResourceShape } from '../validate.ts';
import { binaryFromRequest } from './binary.ts';
import { criteriaOf, lockAndMatch } from './conditional.ts';
import { writeResponse } from './respond.ts';

export function ifMatchVersion(req: FhirRequest): number | undefined {
  const h = req.headers.ifMatch;
  if (h === undefined) return undefined;
  const v = parseVersionTag(h);
  if (v === undefined) throw badRequest(`If-Match must be an ETag like W/"3", got ${h}`);
  return v;
}

function bodyFor(ctx: FhirContext, req: FhirRequest, type: string, id?: string) {
  if (type === 'Binary') {
    if (!req.raw) assertResourceShape(req.body, type);
    return binaryFromRequest(ctx, req, id ?? (req.body as Resource | undefined)?.id);
  }
  assertResourceShape(req.body, type);
  return { resource: req.body, payload: undefined };
}

export async function updateInteraction(ctx: FhirContext, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  const { resource, payload } = bodyFor(ctx, req, type, req.raw ? id : undefined);
  if (resource.id === undefined) throw badRequest(`The resource must carry id "${id}" for an update`, [`${type}.id`]);
  if (resource.id !== id) throw badRequest(`The resource id "${resource.id}" does not match the URL id "${id}"`, [`${type}.id`]);
  await assertMayReplace(ctx, type, id);
  return doUpdate(ctx.repo, ctx, resource, ifMatchVersion(req), payload);
}

/** A restricted caller may only replace (or delete) what it may see. */
export async function assertMayReplace(ctx: FhirContext, type: string, id: string): Promise<void> {
  if (!isRestricted(ctx)) return;
  const existing = await ctx.repo.readVersion(type, id).catch(() => undefined);
  if (existing?.json) await assertVisible(ctx, JSON.parse(existing.json));
}

async function doUpdate(repo: Repository, ctx: FhirContext, resource: Resource, ifMatch: number | undefined, binary?: { data: Buffer }) {
  await assertWritable(ctx, resource);
  const { resource: stored, created } = await repo.update(resource, { ifMatch, binary });
  return writeResponse(ctx, stored, created ? 201 : 200);
}

/** PUT Type?criteria (R4: none -> create, one -> update it, several -> 412). */
export async function conditionalUpdateInteraction(ctx: FhirContext, req: FhirRequest, type: string): Promise<FhirResponse> {
  const { resource, payload } = bodyFor(ctx, req, type);
  const criteria = criteriaOf(req);
  const ifMatch = ifMatchVersion(req);
  return ctx.repo.transaction(async (repo) => {
    const matches = await lockAndMatch(repo, type, criteria);
    if (matches.length > 1) throw multipleMatches(`The criteria matched ${matches.length}+ ${type} resources; a conditional update needs at most one`);
    if (matches.length === 1) {
      const id = matches[0].id;
      await assertVisible(ctx, JSON.parse(matches[0].json));
      if (resource.id !== undefined && resource.id !== id) {
        throw badRequest(`The resource id "${resource.id}" differs from the id "${id}" of the resource the criteria matched`, [`${type}.id`]);
      }
      return doUpdate(repo, ctx, { ...resource, id }, ifMatch, payload);
    }
    if (resource.id !== undefined) {
      // No match but an id: update-as-create, unless that id exists already (it did not match).
      const existing = await repo.readVersion(type, resource.id).catch(() => undefined);
      if (existing && !existing.deleted) {
        throw conflict(`${type}/${resource.id} exists but does not match the criteria`);
      }
      return doUpdate(repo, ctx, resource, undefined, payload);
    }
    const created = await repo.create(resource, payload, req.assignedId);
    return writeResponse(ctx, created, 201);
  });
}
