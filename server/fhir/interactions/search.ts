// search-type and search-system (R4 http.html#search): GET with query or POST _search with a
// form body (the HTTP layer merges the form into req.query), same result either way.
import { parsePrefer, type FhirContext, type FhirRequest, type FhirResponse } from '../request.ts';
import { search } from '../search/search.ts';

export async function searchInteraction(ctx: FhirContext, req: FhirRequest, type?: string): Promise<FhirResponse> {
  const strict = parsePrefer(req.headers.prefer).handling === 'strict';
  const json = await search(
    ctx.repo.db,
    { resourceType: type, params: req.query },
    { fhirBase: ctx.fhirBase, defaultCount: ctx.defaultCount, maxCount: ctx.maxCount, strict },
  );
  return { status: 200, body: { json } };
}
