// search-type and search-system (R4 http.html#search): GET with query or POST _search with a
// form body (the HTTP layer merges the form into req.query), same result either way. The
// caller's access rules go into the SQL for the searched type and for included resources.
import type { AccessPolicy, Restriction } from '../../auth/access.ts';
import { FhirError } from '../outcome.ts';
import { parsePrefer, type FhirContext, type FhirRequest, type FhirResponse } from '../request.ts';
import { search } from '../search/search.ts';

export async function searchInteraction(ctx: FhirContext, req: FhirRequest, type?: string): Promise<FhirResponse> {
  const strict = parsePrefer(req.headers.prefer).handling === 'strict';
  const json = await search(
    ctx.repo.db,
    { resourceType: type, params: req.query },
    {
      fhirBase: ctx.fhirBase,
      defaultCount: ctx.defaultCount,
      maxCount: ctx.maxCount,
      strict,
      access: ctx.access ? accessFor(ctx.access, type) : undefined,
    },
  );
  return { status: 200, body: { json } };
}

/** Per type: the searched type needs search permission, included types read permission. */
function accessFor(access: AccessPolicy, searched?: string): (type: string) => Restriction | undefined {
  return (type) => {
    try {
      return access.check(type, type === searched ? 's' : 'r');
    } catch (e) {
      if (e instanceof FhirError && e.status === 403) return undefined;
      throw e;
    }
  };
}
