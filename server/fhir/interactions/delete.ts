// delete (R4 http.html#delete): soft delete, idempotent; conditional delete by criteria.
import { informational, multipleMatches } from '../outcome.ts';
import type { FhirContext, FhirRequest, FhirResponse } from '../request.ts';
import { criteriaOf, lockAndMatch } from './conditional.ts';
import { assertVisible } from '../authorize.ts';
import { assertMayReplace, ifMatchVersion } from './update.ts';

export async function deleteInteraction(ctx: FhirContext, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  await assertMayReplace(ctx, type, id);
  const version = await ctx.repo.delete(type, id, { ifMatch: ifMatchVersion(req) });
  return deletedResponse(version, `${type}/${id}`);
}

export async function conditionalDeleteInteraction(ctx: FhirContext, req: FhirRequest, type: string): Promise<FhirResponse> {
  const criteria = criteriaOf(req);
  return ctx.repo.transaction(async (repo) => {
    const matches = await lockAndMatch(repo, type, criteria);
    if (matches.length > 1) {
      throw multipleMatches(`The criteria matched ${matches.length}+ ${type} resources; a conditional delete deletes at most one`);
    }
    if (matches.length === 0) return { status: 200, body: informational(`No ${type} matched the criteria; nothing was deleted`), isOutcome: true };
    await assertVisible(ctx, JSON.parse(matches[0].json));
    const version = await repo.delete(type, matches[0].id);
    return deletedResponse(version, `${type}/${matches[0].id}`);
  });
}

function deletedResponse(version: number | undefined, ref: string): FhirResponse {
  const message = version === undefined ? `${ref} did not exist or was already deleted` : `Deleted ${ref}`;
  return { status: 200, body: informational(message), isOutcome: true, versionId: version === undefined ? undefined : String(version) };
}
