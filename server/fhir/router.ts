// Dispatches a FhirRequest to its interaction or operation (R4 http.html summary table). The
// interaction lists below are what the CapabilityStatement advertises: one source for both.
import { isResourceType } from './definitions.ts';
import { batchInteraction } from './interactions/batch.ts';
import { capabilitiesInteraction } from './interactions/capabilities.ts';
import { createInteraction } from './interactions/create.ts';
import { conditionalDeleteInteraction, deleteInteraction } from './interactions/delete.ts';
import { historyInteraction } from './interactions/history.ts';
import { conditionalPatchInteraction, patchInteraction } from './interactions/patch.ts';
import { readInteraction, vreadInteraction } from './interactions/read.ts';
import { searchInteraction } from './interactions/search.ts';
import { conditionalUpdateInteraction, updateInteraction } from './interactions/update.ts';
import { findOperation, operationApplies, type OperationTarget } from './operations/registry.ts';
import { badRequest, methodNotAllowed, notFound, notSupported } from './outcome.ts';
import type { FhirContext, FhirRequest, FhirResponse } from './request.ts';
import { isValidId } from './validate.ts';
import './operations/index.ts';

export const TYPE_INTERACTIONS = [
  'read',
  'vread',
  'update',
  'patch',
  'delete',
  'history-instance',
  'history-type',
  'create',
  'search-type',
] as const;
export const SYSTEM_INTERACTIONS = ['transaction', 'batch', 'search-system', 'history-system'] as const;

export interface RouteOptions {
  /** The client asked for raw Binary content (Accept is not FHIR JSON). */
  wantsRawBinary?: boolean;
  /** Inside a transaction/batch: no nested bundles. */
  inBundle?: boolean;
}

export async function route(ctx: FhirContext, req: FhirRequest, options: RouteOptions = {}): Promise<FhirResponse> {
  const parts = req.path.split('/').filter((p) => p !== '');
  const m = req.method === 'HEAD' ? 'GET' : req.method;
  const [first, second, third, fourth] = parts;

  if (parts.length === 0) {
    if (m === 'GET') return searchInteraction(ctx, req);
    if (m === 'POST') {
      if (options.inBundle) throw badRequest('A batch or transaction cannot contain another batch or transaction');
      return batchInteraction(ctx, req);
    }
    throw methodNotAllowed(`${req.method} is not allowed on the server base`);
  }

  if (first.startsWith('$')) return operation(ctx, req, first.slice(1), {}, parts.length);
  if (first === 'metadata' && parts.length === 1) {
    if (m !== 'GET') throw methodNotAllowed('metadata only answers GET');
    return capabilitiesInteraction(ctx, req);
  }
  if (first === '_history' && parts.length === 1) {
    if (m !== 'GET') throw methodNotAllowed('_history only answers GET');
    return historyInteraction(ctx, req);
  }
  if (first === '_search' && parts.length === 1) {
    if (m !== 'POST') throw methodNotAllowed('_search only answers POST');
    return searchInteraction(ctx, req);
  }

  const type = first;
  if (!isResourceType(type)) throw notFound(`Unknown resource type "${type}"`);

  if (parts.length === 1) {
    switch (m) {
      case 'GET':
        return searchInteraction(ctx, req, type);
      case 'POST':
        return createInteraction(ctx, req, type);
      case 'PUT':
        return conditionalUpdateInteraction(ctx, req, type);
      case 'DELETE':
        return conditionalDeleteInteraction(ctx, req, type);
      case 'PATCH':
        return conditionalPatchInteraction(ctx, req, type);
    }
  }

  if (second === '_search' && parts.length === 2) {
    if (m !== 'POST') throw methodNotAllowed('_search only answers POST');
    return searchInteraction(ctx, req, type);
  }
  if (second === '_history' && parts.length === 2) {
    if (m !== 'GET') throw methodNotAllowed('_history only answers GET');
    return historyInteraction(ctx, req, type);
  }
  if (second.startsWith('$')) return operation(ctx, req, second.slice(1), { type }, parts.length - 1);

  const id = second;
  if (!isValidId(id)) throw notFound(`"${id}" is not a valid ${type} id`);

  if (parts.length === 2) {
    switch (m) {
      case 'GET':
        return readInteraction(ctx, req, type, id, options.wantsRawBinary);
      case 'PUT':
        return updateInteraction(ctx, req, type, id);
      case 'DELETE':
        return deleteInteraction(ctx, req, type, id);
      case 'PATCH':
        return patchInteraction(ctx, req, type, id);
      default:
        throw methodNotAllowed(`${req.method} is not allowed on ${type}/${id}`);
    }
  }
  if (third === '_history') {
    if (m !== 'GET') throw methodNotAllowed('_history only answers GET');
    if (parts.length === 3) return historyInteraction(ctx, req, type, id);
    if (parts.length === 4) return vreadInteraction(ctx, req, type, id, fourth, options.wantsRawBinary);
  }
  if (third?.startsWith('$') && parts.length === 3) return operation(ctx, req, third.slice(1), { type, id }, 1);
  throw notFound(`No FHIR interaction at /${req.path}`);
}

async function operation(ctx: FhirContext, req: FhirRequest, code: string, target: OperationTarget, remaining: number): Promise<FhirResponse> {
  if (remaining !== 1) throw notFound(`No FHIR interaction at /${req.path}`);
  const op = findOperation(code);
  const where = target.id ? `${target.type}/${target.id}` : target.type ?? 'the system level';
  if (!op || !operationApplies(op.definition, target)) throw notSupported(`Operation $${code} is not supported on ${where}`);
  if (req.method !== 'POST' && req.method !== 'GET') throw methodNotAllowed(`$${code} answers GET or POST`);
  return op.handler(ctx, req, target);
}
