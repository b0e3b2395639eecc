// Binary content: a raw upload (any content type) or a FHIR Binary with base64 data. Either way
// the bytes go to binary_content and the stored resource keeps only contentType and meta.
import type { Binary, Resource } from '@medplum/fhirtypes';
import type { BinaryPayload } from '../repository.ts';
import { badRequest, tooLarge } from '../outcome.ts';
import type { FhirContext, FhirRequest } from '../request.ts';

/** Splits a request into the Binary resource to store and its bytes. */
export function binaryFromRequest(ctx: FhirContext, req: FhirRequest, id?: string): { resource: Binary; payload: BinaryPayload } {
  if (req.raw) {
    const contentType = req.headers.contentType?.split(';')[0].trim() || 'application/octet-stream';
    const resource: Binary = { resourceType: 'Binary', contentType };
    if (id) resource.id = id;
    return { resource, payload: { data: req.raw } };
  }
  const body = req.body as Binary;
  const { data, ...rest } = body;
  if (data !== undefined && (typeof data !== 'string' || !/^[A-Za-z0-9+/=\s]*$/.test(data))) {
    throw badRequest('Binary.data must be base64', ['Binary.data']);
  }
  const bytes = Buffer.from(data ?? '', 'base64');
  if (bytes.length > ctx.maxBinaryBytes) throw tooLarge(`Binary content is larger than the limit of ${ctx.maxBinaryBytes} bytes`);
  const resource = { ...rest } as Binary;
  if (id) resource.id = id;
  return { resource, payload: { data: bytes } };
}

export function isBinary(resource: Resource | undefined): resource is Binary {
  return resource?.resourceType === 'Binary';
}
