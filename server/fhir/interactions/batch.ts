// batch and transaction Bundles (R4 http.html#transaction).
// transaction: all or nothing in one SQL transaction. Ids for creates are assigned first (and
// conditional creates / updates are matched first, under their locks), so every urn:uuid
// fullUrl and every conditional reference ("Patient?identifier=...") is rewritten to a real
// Type/id before anything is written; entries then run in the spec's order (DELETE, POST,
// PUT/PATCH, GET/HEAD) and the response lists them in request order.
// batch: each entry on its own, failing independently with its own OperationOutcome.
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, BundleEntryResponse, OperationOutcome, Resource } from '@medplum/fhirtypes';
import { badRequest, FhirError, toFhirError } from '../outcome.ts';
import { bodyResource, parsePrefer, type FhirContext, type FhirMethod, type FhirRequest, type FhirResponse } from '../request.ts';
import { hasWriteHook, route } from '../router.ts';
import { findMatches } from '../search/search.ts';
import { lockAndMatch, parseCriteria } from './conditional.ts';
import { writeResponse } from './respond.ts';
import { assertWritable, authorize } from '../authorize.ts';
import { assertResourceShape } from '../validate.ts';

const ORDER: Record<string, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3, HEAD: 3 };
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);

interface Planned {
  index: number;
  entry: BundleEntry;
  req: FhirRequest;
}

export async function batchInteraction(ctx: FhirContext, req: FhirRequest): Promise<FhirResponse> {
  const bundle = req.body as Bundle | undefined;
  if (!bundle || bundle.resourceType !== 'Bundle') throw badRequest('POST to the base needs a Bundle of type batch or transaction');
  if (bundle.type !== 'batch' && bundle.type !== 'transaction') {
    throw badRequest(`Bundle.type must be batch or transaction, got "${bundle.type}"`, ['Bundle.type']);
  }
  const representation = parsePrefer(req.headers.prefer).return === 'representation';
  const entries = bundle.entry ?? [];
  if (bundle.type === 'batch') return runBatch(ctx, entries, representation);
  return runTransaction(ctx, entries, representation);
}

/** Turns a bundle entry into the request it stands for (structure errors name the entry). */
function entryRequest(ctx: FhirContext, entry: BundleEntry, index: number): FhirRequest {
  const r = entry.request;
  const where = `Bundle.entry[${index}].request`;
  if (!r?.method || !METHODS.has(r.method)) throw badRequest(`${where}.method must be one of GET, HEAD, POST, PUT, PATCH, DELETE`, [`${where}.method`]);
  if (!r.url) throw badRequest(`${where}.url is required`, [`${where}.url`]);
  let url = r.url;
  if (url.startsWith(ctx.fhirBase + '/')) url = url.slice(ctx.fhirBase.length + 1);
  const q = url.indexOf('?');
  const path = (q >= 0 ? url.slice(0, q) : url).replace(/^\/+/, '');
  const query = q >= 0 ? [...new URLSearchParams(url.slice(q + 1)).entries()] : [];
  let body: unknown = entry.resource;
  // A PATCH entry carries its patch as a Binary (JSON Patch) or a Parameters (FHIRPath Patch).
  if (r.method === 'PATCH' && entry.resource?.resourceType === 'Binary' && entry.resource.data) {
    body = JSON.parse(Buffer.from(entry.resource.data, 'base64').toString('utf8'));
  }
  if ((r.method === 'POST' || r.method === 'PUT') && !entry.resource) {
    throw badRequest(`Bundle.entry[${index}] needs a resource for ${r.method}`, [`Bundle.entry[${index}].resource`]);
  }
  return {
    method: r.method as FhirMethod,
    path,
    query,
    headers: {
      ifMatch: r.ifMatch,
      ifNoneMatch: r.ifNoneMatch,
      ifModifiedSince: r.ifModifiedSince,
      ifNoneExist: r.ifNoneExist,
      contentType: r.method === 'PATCH' && Array.isArray(body) ? 'application/json-patch+json' : 'application/fhir+json',
    },
    body,
  };
}

function responseEntry(ctx: FhirContext, res: FhirResponse, representation: boolean): BundleEntry {
  const response: BundleEntryResponse = { status: statusText(res.status) };
  if (res.location) response.location = res.location.startsWith(ctx.fhirBase + '/') ? res.location.slice(ctx.fhirBase.length + 1) : res.location;
  if (res.versionId) response.etag = `W/"${res.versionId}"`;
  if (res.lastModified) response.lastModified = res.lastModified;
  const entry: BundleEntry = { response };
  if (res.body) {
    const resource = bodyResource(res.body);
    if (res.isOutcome || resource.resourceType === 'OperationOutcome') response.outcome = resource as OperationOutcome;
    else if (representation || res.status < 300 && !res.location) {
      // GET entries always carry what was read; writes carry the resource when asked to.
      entry.resource = resource;
    }
    if (!response.outcome && entry.resource?.id && entry.resource.resourceType !== 'Bundle') {
      entry.fullUrl = `${ctx.fhirBase}/${entry.resource.resourceType}/${entry.resource.id}`;
    }
  }
  if (!entry.fullUrl && res.location) {
    const m = /^(?:.*\/)?([A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+)\/_history\//.exec(res.location);
    if (m) entry.fullUrl = `${ctx.fhirBase}/${m[1]}`;
  }
  return entry;
}

function errorEntry(e: unknown): BundleEntry {
  const err = toFhirError(e);
  return { response: { status: statusText(err.status), outcome: err.outcome } };
}

/** Batch entries are independent by definition (R4), so a few run at once. */
const BATCH_CONCURRENCY = 4;

async function runBatch(ctx: FhirContext, entries: BundleEntry[], representation: boolean): Promise<FhirResponse> {
  const out = new Array<BundleEntry>(entries.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < entries.length; i = next++) {
      try {
        const req = entryRequest(ctx, entries[i], i);
        if (req.body && typeof req.body === 'object' && !Array.isArray(req.body)) {
          req.body = await rewriteReferences(ctx, req.body as Resource, new Map());
        }
        out[i] = responseEntry(ctx, await route(ctx, req, { inBundle: true }), representation);
      } catch (e) {
        ctx.log?.info({ entry: i, status: toFhirError(e).status }, 'batch entry failed');
        out[i] = errorEntry(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, entries.length) }, worker));
  return { status: 200, body: { resourceType: 'Bundle', type: 'batch-response', entry: out } };
}

async function runTransaction(ctx: FhirContext, entries: BundleEntry[], representation: boolean): Promise<FhirResponse> {
  return ctx.repo.transaction(async (repo) => {
    const tx: FhirContext = { ...ctx, repo };
    const planned: Planned[] = entries.map((entry, index) => ({ index, entry, req: entryRequest(tx, entry, index) }));

    // 1. Identities: fullUrl -> Type/id for everything this transaction creates or updates.
    const ids = new Map<string, string>();
    for (const p of planned) {
      await withEntry(p.index, async () => {
        const target = await resolveIdentity(tx, p);
        if (target && p.entry.fullUrl) {
          if (ids.has(p.entry.fullUrl)) throw badRequest(`fullUrl ${p.entry.fullUrl} appears twice in the transaction`);
          ids.set(p.entry.fullUrl, target);
        }
      });
    }

    // 2. Rewrite urn:uuid and conditional references everywhere in the bundle.
    for (const p of planned) {
      await withEntry(p.index, async () => {
        if (p.req.body && typeof p.req.body === 'object' && !Array.isArray(p.req.body)) {
          p.req.body = await rewriteReferences(tx, p.req.body as Resource, ids);
        }
        if (p.req.path.startsWith('urn:uuid:')) {
          const target = ids.get(p.req.path);
          if (!target) throw badRequest(`${p.req.path} does not name a resource in this transaction`);
          p.req.path = target;
        }
      });
    }

    // 3. Execute in the spec's order; any failure rolls everything back. Plain creates are
    //    validated one by one (so an invalid one names its entry) and then inserted together,
    //    one statement per resource type, when the POST phase begins.
    const results = new Array<BundleEntry>(planned.length);
    const order = [...planned].sort((a, b) => ORDER[a.req.method] - ORDER[b.req.method] || a.index - b.index);
    const bulk = order.filter(isPlainCreate);
    let bulkDone = false;
    for (const p of order) {
      if (!bulkDone && ORDER[p.req.method] >= ORDER.POST) {
        bulkDone = true;
        await insertPlainCreates(tx, bulk, results, representation);
      }
      if (bulk.includes(p)) continue;
      const res = await withEntry(p.index, () => route(tx, p.req, { inBundle: true }));
      results[p.index] = responseEntry(tx, res, representation);
    }
    if (!bulkDone) await insertPlainCreates(tx, bulk, results, representation);
    const body: Bundle = { resourceType: 'Bundle', type: 'transaction-response', entry: results };
    return { status: 200, body };
  });
}

/** A POST of a FHIR JSON resource to a type, without If-None-Exist: nothing to match first. */
function isPlainCreate(p: Planned): boolean {
  const { req } = p;
  return (
    req.method === 'POST' &&
    !req.headers.ifNoneExist &&
    !req.path.includes('/') &&
    req.path !== 'Binary' &&
    !hasWriteHook(req.path) &&
    req.assignedId !== undefined &&
    (req.body as Resource | undefined)?.resourceType === req.path
  );
}

async function insertPlainCreates(tx: FhirContext, bulk: Planned[], results: BundleEntry[], representation: boolean): Promise<void> {
  if (bulk.length === 0) return;
  const prepared = await Promise.all(
    bulk.map((p) =>
      withEntry(p.index, async () => {
        assertResourceShape(p.req.body, p.req.path);
        const { id: _ignored, ...resource } = p.req.body;
        // These entries skip route(), so they are authorised here like any create.
        const entryCtx = await authorize(tx, { kind: 'create', type: p.req.path }, p.req);
        await assertWritable(entryCtx, resource as Resource);
        return tx.repo.prepareCreate(resource as Resource, p.req.assignedId);
      }),
    ),
  );
  await tx.repo.insertPrepared(prepared);
  bulk.forEach((p, i) => {
    results[p.index] = responseEntry(tx, writeResponse(tx, prepared[i], 201), representation);
  });
}

/** Runs one entry's step, naming the entry in any error so the client knows which one failed. */
async function withEntry<T>(index: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const err = toFhirError(e);
    for (const issue of err.outcome.issue ?? []) {
      issue.diagnostics = `Bundle.entry[${index}]: ${issue.diagnostics ?? issue.details?.text ?? issue.code}`;
      issue.expression = issue.expression?.map((x) => `Bundle.entry[${index}].resource.${x.replace(/^[A-Z][A-Za-z]+\./, '')}`);
    }
    throw new FhirError(err.status, err.outcome);
  }
}

/**
 * The Type/id an entry will write, decided before anything is written: a fresh id for a
 * create (or the existing match of a conditional create), the URL id of an update, the match
 * (or a fresh id) of a conditional update.
 */
async function resolveIdentity(tx: FhirContext, p: Planned): Promise<string | undefined> {
  const { req } = p;
  const [type, id] = req.path.split('/');
  if (req.method === 'POST' && req.path === type && type) {
    if (req.headers.ifNoneExist) {
      const matches = await lockAndMatch(tx.repo, type, parseCriteria(req.headers.ifNoneExist));
      if (matches.length === 1) return `${type}/${matches[0].id}`;
    }
    req.assignedId = randomUUID();
    return `${type}/${req.assignedId}`;
  }
  if (req.method === 'PUT' && type) {
    if (id) return `${type}/${id}`;
    const matches = await lockAndMatch(tx.repo, type, req.query);
    if (matches.length === 1) return `${type}/${matches[0].id}`;
    const bodyId = (req.body as Resource | undefined)?.id;
    if (bodyId) return `${type}/${bodyId}`;
    req.assignedId = randomUUID();
    return `${type}/${req.assignedId}`;
  }
  return undefined;
}

/** Rewrites every `reference` (and narrative mention) of a mapped fullUrl or conditional reference. */
async function rewriteReferences(ctx: FhirContext, resource: Resource, ids: Map<string, string>): Promise<Resource> {
  const conditional = new Map<string, string>();
  const pending: string[] = [];
  walkReferences(resource, (ref) => {
    if (!ids.has(ref) && /^[A-Z][A-Za-z]+\?/.test(ref)) pending.push(ref);
    return undefined;
  });
  for (const ref of pending) {
    if (conditional.has(ref)) continue;
    const q = ref.indexOf('?');
    const type = ref.slice(0, q);
    const matches = await findMatches(ctx.repo.db, type, parseCriteria(ref.slice(q + 1)), 2);
    if (matches.length !== 1) {
      throw new FhirError(412, {
        resourceType: 'OperationOutcome',
        issue: [
          {
            severity: 'error',
            code: matches.length ? 'multiple-matches' : 'not-found',
            diagnostics: `Conditional reference ${ref} matched ${matches.length === 0 ? 'no' : 'more than one'} resource; it must match exactly one`,
          },
        ],
      });
    }
    conditional.set(ref, `${type}/${matches[0].id}`);
  }
  if (ids.size === 0 && conditional.size === 0) return resource;
  walkReferences(resource, (ref) => ids.get(ref) ?? conditional.get(ref));
  const text = (resource as { text?: { div?: string } }).text;
  if (text?.div && ids.size) {
    for (const [from, to] of ids) if (text.div.includes(from)) text.div = text.div.split(from).join(to);
  }
  return resource;
}

/** Visits every Reference.reference string; replaces it when fn returns a value. */
function walkReferences(node: unknown, fn: (ref: string) => string | undefined): void {
  if (Array.isArray(node)) {
    for (const item of node) walkReferences(item, fn);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const obj = node as Record<string, unknown>;
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'reference' && typeof v === 'string') {
      const replacement = fn(v);
      if (replacement !== undefined) obj[k] = replacement;
    } else if (typeof v === 'object') {
      walkReferences(v, fn);
    }
  }
}

const REASONS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  304: 'Not Modified',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  410: 'Gone',
  412: 'Precondition Failed',
  413: 'Payload Too Large',
  422: 'Unprocessable Entity',
  500: 'Internal Server Error',
  501: 'Not Implemented',
};

function statusText(status: number): string {
  return `${status} ${REASONS[status] ?? ''}`.trim();
}
