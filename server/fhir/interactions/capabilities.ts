// capabilities (GET /metadata): the generated CapabilityStatement.
import { capabilityStatementJson } from '../capability.ts';
import type { FhirContext, FhirRequest, FhirResponse } from '../request.ts';

export const SERVER_VERSION = '0.1.0';

export async function capabilitiesInteraction(ctx: FhirContext, _req: FhirRequest): Promise<FhirResponse> {
  return { status: 200, body: { json: capabilityStatementJson(ctx.fhirBase, SERVER_VERSION) } };
}
