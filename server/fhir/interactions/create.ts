// create (R4 http.html#create) and conditional create (If-None-Exist).
import type { Resource } from '@medplum/fhirtypes';
import { assertVisible, assertWritable } from '../authorize.ts';
import type { BinaryPayload } from '../repository.ts';
import { multipleMatches } from '../outcome.ts';
import type { FhirContext, FhirRequest, FhirResponse } from '../request.ts';
import { assertResourceShape } from '../validate.ts';
import { binaryFromRequest } from './binary.ts';
import { lockAndMatch, parseCriteria } from './conditional.ts';
import { locationOf, writeResponse } from './respond.ts';

export async function createInteraction(ctx: FhirContext, req: FhirRequest, type: string): Promise<FhirResponse> {
  let resource: Resource;
  let binary: BinaryPayload | undefined;
  if (type === 'Binary' && req.raw) {
    ({ resource, payload: binary } = binaryFromRequest(ctx, req));
  } else {
    assertResourceShape(req.body, type);
    resource = req.body;
    if (type === 'Binary') ({ resource, payload: binary } = binaryFromRequest(ctx, req));
  }
  // The server assigns the id on create (R4: any id in the body is ignored).
  const { id: _ignored, ...withoutId } = resource;
  const toCreate = withoutId as Resource;
  await assertWritable(ctx, toCreate);

  if (req.headers.ifNoneExist) {
    const criteria = parseCriteria(req.headers.ifNoneExist);
    return ctx.repo.transaction(async (repo) => {
      const matches = await lockAndMatch(repo, type, criteria);
      if (matches.length > 1) {
        throw multipleMatches(`If-None-Exist "${req.headers.ifNoneExist}" matched ${matches.length}+ ${type} resources; it must match at most one`);
      }
      if (matches.length === 1) {
        const m = matches[0];
        await assertVisible(ctx, JSON.parse(m.json));
        return {
          status: 200,
          body: { json: m.json },
          versionId: String(m.version),
          lastModified: m.lastUpdated,
          location: locationOf(ctx, type, m.id, m.version),
        };
      }
      const created = await repo.create(toCreate, binary, req.assignedId);
      return writeResponse(ctx, created, 201);
    });
  }
  const created = await ctx.repo.create(toCreate, binary, req.assignedId);
  return writeResponse(ctx, created, 201);
}
