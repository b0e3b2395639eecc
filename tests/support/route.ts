// Drives the FHIR router directly (no HTTP) with a given FhirContext, e.g. one carrying the
// AccessPolicy of a role: the quickest way to test access rules and operations per caller on a
// real database. Errors come back as their status and OperationOutcome, as HTTP would show them.
import { FhirError } from '../../server/fhir/outcome.ts';
import type { FhirContext, FhirRequest } from '../../server/fhir/request.ts';
import { route } from '../../server/fhir/router.ts';

export async function call(ctx: FhirContext, method: FhirRequest['method'], path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const [p, q] = path.split('?');
  const req: FhirRequest = { method, path: p, query: q ? [...new URLSearchParams(q).entries()] : [], headers: {}, body };
  try {
    const res = await route(ctx, req);
    const b = res.body && 'json' in res.body && !('resourceType' in res.body) ? JSON.parse(res.body.json) : res.body;
    return { status: res.status, body: b };
  } catch (e) {
    if (e instanceof FhirError) return { status: e.status, body: e.outcome };
    throw e;
  }
}
