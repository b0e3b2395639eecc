// read and vread (R4 http.html#read, #vread), with If-None-Match / If-Modified-Since (304),
// _summary / _elements, and Binary served as its own content type when the client asks for it.
import type { Binary } from '@medplum/fhirtypes';
import { parseSummary, subsetResource } from '../elements.ts';
import { assertVisible, isRestricted } from '../authorize.ts';
import type { StoredVersion } from '../repository.ts';
import { queryValue, parseVersionTag, type FhirContext, type FhirRequest, type FhirResponse } from '../request.ts';

export async function readInteraction(ctx: FhirContext, req: FhirRequest, type: string, id: string, wantsRawBinary = false): Promise<FhirResponse> {
  const stored = await ctx.repo.read(type, id);
  return respondWithVersion(ctx, req, stored, wantsRawBinary);
}

export async function vreadInteraction(
  ctx: FhirContext,
  req: FhirRequest,
  type: string,
  id: string,
  vid: string,
  wantsRawBinary = false,
): Promise<FhirResponse> {
  const stored = await ctx.repo.vread(type, id, vid);
  return respondWithVersion(ctx, req, stored, wantsRawBinary);
}

async function respondWithVersion(ctx: FhirContext, req: FhirRequest, stored: StoredVersion, wantsRawBinary: boolean): Promise<FhirResponse> {
  if (isRestricted(ctx)) await assertVisible(ctx, JSON.parse(stored.json as string));
  const headers = { versionId: String(stored.version), lastModified: stored.lastUpdated };
  if (notModified(req, stored)) return { status: 304, ...headers };
  if (stored.resourceType === 'Binary') {
    const data = (await ctx.repo.readBinaryData(stored.id, stored.version)) ?? Buffer.alloc(0);
    const binary = JSON.parse(stored.json as string) as Binary;
    if (wantsRawBinary) return { status: 200, binary: { data, contentType: binary.contentType }, ...headers };
    return { status: 200, body: { ...binary, data: data.toString('base64') }, ...headers };
  }
  const summary = parseSummary(queryValue(req.query, '_summary'));
  const elements = queryValue(req.query, '_elements')?.split(',');
  if ((summary && summary !== 'false') || elements) {
    return { status: 200, body: subsetResource(JSON.parse(stored.json as string), summary, elements), ...headers };
  }
  return { status: 200, body: { json: stored.json as string }, ...headers };
}

function notModified(req: FhirRequest, stored: StoredVersion): boolean {
  const inm = req.headers.ifNoneMatch;
  if (inm !== undefined) {
    if (inm.trim() === '*') return true;
    return inm.split(',').some((tag) => parseVersionTag(tag) === stored.version);
  }
  const ims = req.headers.ifModifiedSince;
  if (ims) {
    const since = Date.parse(ims);
    // HTTP dates have second precision: compare at that precision.
    if (!Number.isNaN(since) && Math.floor(Date.parse(stored.lastUpdated) / 1000) * 1000 <= since) return true;
  }
  return false;
}
