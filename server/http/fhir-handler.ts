// The REST adapter: Koa request -> FhirRequest, route it, FhirResponse -> HTTP response with
// the headers R4 asks for (ETag, Last-Modified, Location), content negotiation (_format,
// Accept, _pretty) and Prefer: return=minimal | representation | OperationOutcome.
import type { Context } from 'koa';
import { bodyResource, isRawJson, parsePrefer, type FhirContext, type FhirMethod, type FhirRequest, type FhirResponse } from '../fhir/request.ts';
import { informational, notAcceptable } from '../fhir/outcome.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { AccessPolicy } from '../auth/access.ts';
import type { AuthContext } from '../auth/context.ts';
import { toFhirError } from '../fhir/outcome.ts';
import { classify, route, type Interaction } from '../fhir/router.ts';
import { readBody } from './body.ts';

const FHIR_JSON = 'application/fhir+json';
const JSON_FORMATS = new Set(['json', 'application/json', 'application/fhir+json', 'text/json']);
const XML_FORMATS = new Set(['xml', 'text/xml', 'application/xml', 'application/fhir+xml']);

/** Which representation the client wants: FHIR JSON, or (for Binary) the raw content. */
function negotiate(ctx: Context, format: string | undefined): { rawBinaryOk: boolean } {
  if (format !== undefined) {
    const f = format.split(';')[0].trim().toLowerCase();
    if (XML_FORMATS.has(f)) throw notAcceptable('XML is not supported; use _format=json');
    if (!JSON_FORMATS.has(f)) throw notAcceptable(`Unsupported _format "${format}"`);
    return { rawBinaryOk: false };
  }
  const accept = ctx.get('accept');
  if (!accept || accept.includes('*/*')) return { rawBinaryOk: !accept.includes('json') };
  const types = accept.split(',').map((t) => t.split(';')[0].trim().toLowerCase());
  if (types.some((t) => JSON_FORMATS.has(t))) return { rawBinaryOk: false };
  if (types.every((t) => XML_FORMATS.has(t))) throw notAcceptable('XML is not supported; accept application/fhir+json');
  // Anything else (image/png, application/pdf...) is a request for raw Binary content.
  return { rawBinaryOk: true };
}

export function fhirHandler(fhir: () => FhirContext, limits: { json: number; binary: number }, audit?: AuditLog) {
  return async (ctx: Context): Promise<void> => {
    const url = new URL(ctx.originalUrl, 'http://x');
    const path = decodeURIComponent(url.pathname.replace(/^\/fhir\/?/, ''));
    const query: [string, string][] = [];
    let format: string | undefined;
    let pretty = false;
    for (const [k, v] of url.searchParams) {
      if (k === '_format') format = v;
      else if (k === '_pretty') pretty = v === 'true';
      else query.push([k, v]);
    }
    const { rawBinaryOk } = negotiate(ctx, format);
    const method = ctx.method.toUpperCase() as FhirMethod;
    const hasBody = method === 'POST' || method === 'PUT' || method === 'PATCH';
    const isBinaryPath = /^Binary(\/|$)/.test(path);
    const body = hasBody ? await readBody(ctx, limits, isBinaryPath) : {};
    if (body.form) query.push(...body.form);

    const req: FhirRequest = {
      method,
      path,
      query,
      headers: {
        ifMatch: ctx.get('if-match') || undefined,
        ifNoneMatch: ctx.get('if-none-match') || undefined,
        ifModifiedSince: ctx.get('if-modified-since') || undefined,
        ifNoneExist: ctx.get('if-none-exist') || undefined,
        prefer: ctx.get('prefer') || undefined,
        contentType: ctx.get('content-type') || undefined,
      },
      body: body.json,
      raw: body.raw,
    };
    const fctx = fhir();
    fctx.log = ctx.state.log;
    const auth = ctx.state.auth as AuthContext | undefined;
    if (auth) fctx.access = new AccessPolicy(auth);
    let status = 500;
    try {
      const res = await route(fctx, req, { wantsRawBinary: rawBinaryOk && isBinaryPath });
      status = res.status;
      send(ctx, req, res, pretty);
      if (audit) recordAudit(audit, ctx, req, res.location, status, auth, fctx.access?.patientContext);
    } catch (e) {
      status = toFhirError(e).status;
      if (audit) recordAudit(audit, ctx, req, undefined, status, auth, fctx.access?.patientContext);
      throw e;
    }
  };
}

/** One AuditEvent per FHIR request (BALP): who, what, outcome, and the patient when known. */
function recordAudit(
  audit: AuditLog,
  ctx: Context,
  req: FhirRequest,
  location: string | undefined,
  status: number,
  auth: AuthContext | undefined,
  patientContext: string | undefined,
): void {
  let it: Interaction;
  try {
    it = classify(req);
  } catch {
    it = { kind: 'read' };
  }
  let resource = it.type && it.id ? `${it.type}/${it.id}` : undefined;
  if (!resource && location) resource = /([A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+)\/_history\//.exec(location)?.[1];
  const patient = it.type === 'Patient' && resource ? resource : patientContext ? `Patient/${patientContext}` : undefined;
  const searching = it.kind === 'search-type' || it.kind === 'search-system';
  audit.interaction({
    interaction: it.kind,
    operation: it.operation,
    status,
    auth,
    address: ctx.ip,
    requestId: ctx.state.requestId,
    resource,
    patient,
    query: searching ? new URLSearchParams(req.query).toString() : undefined,
  });
}

export function send(ctx: Context, req: FhirRequest, res: FhirResponse, pretty: boolean): void {
  ctx.status = res.status;
  if (res.versionId) ctx.set('ETag', `W/"${res.versionId}"`);
  if (res.lastModified) ctx.set('Last-Modified', new Date(res.lastModified).toUTCString());
  if (res.location) {
    ctx.set('Location', res.location);
    if (res.status === 201 || res.status === 200) ctx.set('Content-Location', res.location);
  }
  if (res.status === 304) return;
  if (res.binary) {
    ctx.type = res.binary.contentType;
    ctx.body = res.binary.data;
    return;
  }
  if (!res.body) return;
  const preferReturn = req.method === 'GET' || req.method === 'HEAD' ? undefined : parsePrefer(req.headers.prefer).return;
  let body = res.body;
  if (preferReturn === 'minimal' && !res.isOutcome && ['POST', 'PUT', 'PATCH', 'DELETE'].includes(req.method)) {
    ctx.body = null;
    ctx.status = res.status;
    return;
  }
  if (preferReturn === 'OperationOutcome' && !res.isOutcome && ['POST', 'PUT', 'PATCH'].includes(req.method)) {
    const r = bodyResource(body);
    if (r.resourceType !== 'Bundle' && r.resourceType !== 'OperationOutcome') {
      body = informational(`${r.resourceType}/${r.id} version ${res.versionId} stored`);
    }
  }
  ctx.type = FHIR_JSON;
  if (pretty) ctx.body = JSON.stringify(bodyResource(body), null, 2);
  else ctx.body = isRawJson(body) ? body.json : JSON.stringify(body);
}
