// Shared shaping of write responses: status, ETag/Last-Modified/Location, the body.
import type { Binary, Resource } from '@medplum/fhirtypes';
import type { FhirContext, FhirResponse } from '../request.ts';

export function locationOf(ctx: FhirContext, type: string, id: string, version: number | string): string {
  return `${ctx.fhirBase}/${type}/${id}/_history/${version}`;
}

export function writeResponse(ctx: FhirContext, resource: Resource, status: number): FhirResponse {
  const versionId = resource.meta?.versionId as string;
  // A Binary's bytes are not echoed back on write; the resource says what was stored.
  const body = resource.resourceType === 'Binary' ? ({ ...(resource as Binary), data: undefined } as Resource) : resource;
  return {
    status,
    body,
    versionId,
    lastModified: resource.meta?.lastUpdated,
    location: locationOf(ctx, resource.resourceType, resource.id as string, versionId),
  };
}
