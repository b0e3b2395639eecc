// patch (R4 http.html#patch): JSON Patch (application/json-patch+json) and FHIRPath Patch
// (a Parameters body); conditional patch by criteria. The patched resource is validated and
// written like any update, with If-Match honoured.
import { fhirpathPatchTypedValue, OperationOutcomeError, parseFhirPathPatchParameters, toTypedValue } from '@medplum/core';
import type { Parameters, Resource } from '@medplum/fhirtypes';
import jsonpatch from 'fast-json-patch';
import { assertVisible, assertWritable } from '../authorize.ts';
import type { Repository } from '../repository.ts';
import { badRequest, multipleMatches, notFound, unprocessable } from '../outcome.ts';
import type { FhirContext, FhirRequest, FhirResponse } from '../request.ts';
import { criteriaOf, lockAndMatch } from './conditional.ts';
import { writeResponse } from './respond.ts';
import { ifMatchVersion } from './update.ts';

export function applyPatchBody(resource: Resource, req: FhirRequest): Resource {
  const contentType = req.headers.contentType?.split(';')[0].trim();
  const body = req.body;
  if (contentType === 'application/json-patch+json' || Array.isArray(body)) {
    if (!Array.isArray(body)) throw badRequest('A JSON Patch body must be an array of operations');
    const error = jsonpatch.validate(body as jsonpatch.Operation[], resource);
    if (error?.name === 'TEST_OPERATION_FAILED') {
      throw unprocessable([{ severity: 'error', code: 'conflict', diagnostics: `JSON Patch "test" operation ${error.index} failed` }]);
    }
    if (error) throw badRequest(`Invalid JSON Patch operation ${error.index}: ${error.message.split('\n')[0]}`);
    let patched: Resource;
    try {
      patched = jsonpatch.applyPatch(structuredClone(resource), body as jsonpatch.Operation[], true, false).newDocument;
    } catch (e) {
      const err = e as { name?: string; message?: string };
      if (err.name === 'TEST_OPERATION_FAILED') {
        throw unprocessable([{ severity: 'error', code: 'conflict', diagnostics: 'A JSON Patch "test" operation failed' }]);
      }
      throw badRequest(`JSON Patch could not be applied: ${String(err.message).split('\n')[0]}`);
    }
    return patched;
  }
  if ((body as Resource | undefined)?.resourceType === 'Parameters') {
    const copy = structuredClone(resource);
    try {
      const ops = parseFhirPathPatchParameters(body as Parameters);
      fhirpathPatchTypedValue(toTypedValue(copy), ops);
    } catch (e) {
      const message = e instanceof OperationOutcomeError ? e.message : (e as Error).message;
      throw badRequest(`FHIRPath Patch could not be applied: ${message}`);
    }
    return copy;
  }
  throw badRequest('PATCH needs a JSON Patch (application/json-patch+json) or a FHIRPath Patch Parameters body');
}

async function patchOne(repo: Repository, ctx: FhirContext, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  const current = await repo.readResource(type, id);
  await assertVisible(ctx, current);
  const ifMatch = ifMatchVersion(req);
  const patched = applyPatchBody(current, req);
  await assertWritable(ctx, patched);
  if (patched.resourceType !== type || patched.id !== id) {
    throw badRequest('A patch may not change resourceType or id');
  }
  // The version the patch was computed on: a concurrent writer in between makes this a 412.
  const base = ifMatch ?? Number(current.meta?.versionId);
  const { resource } = await repo.update(patched, { ifMatch: base, method: 'PATCH' });
  return writeResponse(ctx, resource, 200);
}

export async function patchInteraction(ctx: FhirContext, req: FhirRequest, type: string, id: string): Promise<FhirResponse> {
  return patchOne(ctx.repo, ctx, req, type, id);
}

export async function conditionalPatchInteraction(ctx: FhirContext, req: FhirRequest, type: string): Promise<FhirResponse> {
  const criteria = criteriaOf(req);
  return ctx.repo.transaction(async (repo) => {
    const matches = await lockAndMatch(repo, type, criteria);
    if (matches.length > 1) throw multipleMatches(`The criteria matched ${matches.length}+ ${type} resources; a conditional patch needs exactly one`);
    if (matches.length === 0) throw notFound(`No ${type} matched the criteria`);
    return patchOne(repo, ctx, req, type, matches[0].id);
  });
}
