// Dispatches a FhirRequest to its interaction or operation (R4 http.html summary table):
// classify the request, ask the access rules (when the caller is a token holder), then run it.
// The interaction lists below are what the CapabilityStatement advertises: one source for both.
import { isResourceType } from './definitions.ts';
import { authorize } from './authorize.ts';
import { batchInteraction } from './interactions/batch.ts';
import { capabilitiesInteraction } from './interactions/capabilities.ts';
import { createInteraction } from './interactions/create.ts';
import { conditionalDeleteInteraction, deleteInteraction } from './interactions/delete.ts';
import { historyInteraction } from './interactions/history.ts';
import { conditionalPatchInteraction, patchInteraction } from './interactions/patch.ts';
import { readInteraction, vreadInteraction } from './interactions/read.ts';
import { searchInteraction } from './interactions/search.ts';
import { conditionalUpdateInteraction, updateInteraction } from './interactions/update.ts';
import { findOperation, operationApplies } from './operations/registry.ts';
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

export type InteractionKind =
  | (typeof TYPE_INTERACTIONS)[number]
  | (typeof SYSTEM_INTERACTIONS)[number]
  | 'capabilities'
  | 'conditional-update'
  | 'conditional-delete'
  | 'conditional-patch'
  | 'operation';

/** What a request is, before anything runs: the access rules and audit read this. */
export interface Interaction {
  kind: InteractionKind;
  type?: string;
  id?: string;
  versionId?: string;
  /** Operation code without '$' */
  operation?: string;
}

export interface RouteOptions {
  /** The client asked for raw Binary content (Accept is not FHIR JSON). */
  wantsRawBinary?: boolean;
  /** Inside a transaction/batch: no nested bundles. */
  inBundle?: boolean;
}

export function classify(req: FhirRequest): Interaction {
  const parts = req.path.split('/').filter((p) => p !== '');
  const m = req.method === 'HEAD' ? 'GET' : req.method;
  const only = (method: string, what: string) => {
    if (m !== method) throw methodNotAllowed(`${what} only answers ${method}`);
  };
  const [first, second, third, fourth] = parts;

  if (parts.length === 0) {
    if (m === 'GET') return { kind: 'search-system' };
    if (m === 'POST') {
      const type = (req.body as { type?: string } | undefined)?.type;
      return { kind: type === 'transaction' ? 'transaction' : 'batch' };
    }
    throw methodNotAllowed(`${req.method} is not allowed on the server base`);
  }
  if (first.startsWith('$')) {
    if (parts.length !== 1) throw notFound(`No FHIR interaction at /${req.path}`);
    return { kind: 'operation', operation: first.slice(1) };
  }
  if (parts.length === 1 && first === 'metadata') {
    only('GET', 'metadata');
    return { kind: 'capabilities' };
  }
  if (parts.length === 1 && first === '_history') {
    only('GET', '_history');
    return { kind: 'history-system' };
  }
  if (parts.length === 1 && first === '_search') {
    only('POST', '_search');
    return { kind: 'search-system' };
  }

  const type = first;
  if (!isResourceType(type)) throw notFound(`Unknown resource type "${type}"`);
  if (parts.length === 1) {
    const kinds: Record<string, InteractionKind> = {
      GET: 'search-type',
      POST: 'create',
      PUT: 'conditional-update',
      DELETE: 'conditional-delete',
      PATCH: 'conditional-patch',
    };
    return { kind: kinds[m], type };
  }
  if (parts.length === 2 && second === '_search') {
    only('POST', '_search');
    return { kind: 'search-type', type };
  }
  if (parts.length === 2 && second === '_history') {
    only('GET', '_history');
    return { kind: 'history-type', type };
  }
  if (second.startsWith('$')) {
    if (parts.length !== 2) throw notFound(`No FHIR interaction at /${req.path}`);
    return { kind: 'operation', type, operation: second.slice(1) };
  }

  const id = second;
  if (!isValidId(id)) throw notFound(`"${id}" is not a valid ${type} id`);
  if (parts.length === 2) {
    const kinds: Record<string, InteractionKind> = { GET: 'read', PUT: 'update', DELETE: 'delete', PATCH: 'patch' };
    if (!kinds[m]) throw methodNotAllowed(`${req.method} is not allowed on ${type}/${id}`);
    return { kind: kinds[m], type, id };
  }
  if (third === '_history' && parts.length <= 4) {
    only('GET', '_history');
    return parts.length === 3 ? { kind: 'history-instance', type, id } : { kind: 'vread', type, id, versionId: fourth };
  }
  if (third?.startsWith('$') && parts.length === 3) return { kind: 'operation', type, id, operation: third.slice(1) };
  throw notFound(`No FHIR interaction at /${req.path}`);
}

/**
 * Runs before a create / update / patch of one resource type, after the access check: may check
 * or adjust the request (req.body, req.assignedId) or refuse it by throwing. Subscriptions use it
 * to record who created a Subscription (its notifications honour that caller's access).
 */
export type WriteHook = (ctx: FhirContext, req: FhirRequest, it: Interaction) => Promise<void>;
const writeHooks = new Map<string, WriteHook[]>();
const HOOKED_KINDS = new Set<InteractionKind>(['create', 'update', 'conditional-update', 'patch', 'conditional-patch']);

export function registerWriteHook(type: string, hook: WriteHook): void {
  writeHooks.set(type, [...(writeHooks.get(type) ?? []), hook]);
}

/** Creates of this type must go through route() (the transaction bulk path skips hooks). */
export function hasWriteHook(type: string): boolean {
  return writeHooks.has(type);
}

export async function route(ctx: FhirContext, req: FhirRequest, options: RouteOptions = {}): Promise<FhirResponse> {
  const it = classify(req);
  if ((it.kind === 'batch' || it.kind === 'transaction') && options.inBundle) {
    throw badRequest('A batch or transaction cannot contain another batch or transaction');
  }
  if (it.kind === 'operation') return operation(ctx, req, it);
  // Reads and writes of single resources are checked inside the interactions (they need the
  // resource); everything else is checked here before it runs.
  ctx = await authorize(ctx, it, req);
  const type = it.type as string;
  const id = it.id as string;
  if (HOOKED_KINDS.has(it.kind)) for (const hook of writeHooks.get(type) ?? []) await hook(ctx, req, it);
  switch (it.kind) {
    case 'search-system':
      return searchInteraction(ctx, req);
    case 'batch':
    case 'transaction':
      return batchInteraction(ctx, req);
    case 'capabilities':
      return capabilitiesInteraction(ctx, req);
    case 'history-system':
      return historyInteraction(ctx, req);
    case 'search-type':
      return searchInteraction(ctx, req, type);
    case 'create':
      return createInteraction(ctx, req, type);
    case 'conditional-update':
      return conditionalUpdateInteraction(ctx, req, type);
    case 'conditional-delete':
      return conditionalDeleteInteraction(ctx, req, type);
    case 'conditional-patch':
      return conditionalPatchInteraction(ctx, req, type);
    case 'history-type':
      return historyInteraction(ctx, req, type);
    case 'read':
      return readInteraction(ctx, req, type, id, options.wantsRawBinary);
    case 'update':
      return updateInteraction(ctx, req, type, id);
    case 'delete':
      return deleteInteraction(ctx, req, type, id);
    case 'patch':
      return patchInteraction(ctx, req, type, id);
    case 'history-instance':
      return historyInteraction(ctx, req, type, id);
    case 'vread':
      return vreadInteraction(ctx, req, type, id, it.versionId as string, options.wantsRawBinary);
  }
  throw notFound(`No FHIR interaction at /${req.path}`);
}

async function operation(ctx: FhirContext, req: FhirRequest, it: Interaction): Promise<FhirResponse> {
  const code = it.operation as string;
  const target = { type: it.type, id: it.id };
  const op = findOperation(code);
  const where = target.id ? `${target.type}/${target.id}` : target.type ?? 'the system level';
  if (!op || !operationApplies(op.definition, target)) throw notSupported(`Operation $${code} is not supported on ${where}`);
  if (req.method !== 'POST' && req.method !== 'GET') throw methodNotAllowed(`$${code} answers GET or POST`);
  return op.handler(await authorize(ctx, it, req), req, target);
}
