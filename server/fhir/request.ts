// The FHIR interaction model independent of HTTP: the REST layer and the batch/transaction
// processor both turn what they receive into a FhirRequest and get a FhirResponse back, so a
// bundle entry behaves exactly like the same request sent on its own.
import type { Resource } from '@medplum/fhirtypes';
import type { AccessPolicy, Restriction } from '../auth/access.ts';
import type { Logger } from '../logger.ts';
import type { Repository } from './repository.ts';

export type FhirMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface FhirRequest {
  method: FhirMethod;
  /** Path below the FHIR base without leading slash: "", "Patient", "Patient/1/_history/2", "$op". */
  path: string;
  /** Query parameters in order, repeated names kept. */
  query: [string, string][];
  headers: {
    ifMatch?: string;
    ifNoneMatch?: string;
    ifModifiedSince?: string;
    ifNoneExist?: string;
    prefer?: string;
    contentType?: string;
  };
  /** Parsed JSON body (FHIR resource, JSON Patch array, Parameters). */
  body?: unknown;
  /** Raw body when it is not JSON (Binary upload), with its content type. */
  raw?: Buffer;
  /**
   * Id a create must use instead of a fresh one: set by the transaction processor, which
   * assigns ids before writing so urn:uuid references can be rewritten first.
   */
  assignedId?: string;
}

/** A body already serialized by the database (stored content::text): sent without re-encoding. */
export interface RawJson {
  json: string;
}

export interface FhirResponse {
  status: number;
  body?: Resource | RawJson;
  /** Raw non-FHIR payload (Binary content) with its content type. */
  binary?: { data: Buffer; contentType: string };
  versionId?: string;
  lastModified?: string;
  location?: string;
  /** Resource the body describes, for Prefer: return=minimal|OperationOutcome handling. */
  isOutcome?: boolean;
}

export interface FhirContext {
  repo: Repository;
  /** Public FHIR base, e.g. http://localhost:8080/fhir */
  fhirBase: string;
  defaultCount: number;
  maxCount: number;
  maxBinaryBytes: number;
  log?: Logger;
  /** The caller's access rules; absent for the server's own trusted code (jobs, HL7 mapping). */
  access?: AccessPolicy;
  /** Set by authorize() for the interaction being run: what the resources must meet. */
  restriction?: Restriction;
}

export function isRawJson(body: unknown): body is RawJson {
  return typeof body === 'object' && body !== null && typeof (body as RawJson).json === 'string' && !('resourceType' in body);
}

/** The body as a resource object (parsing stored JSON text when needed). */
export function bodyResource(body: Resource | RawJson): Resource {
  return isRawJson(body) ? (JSON.parse(body.json) as Resource) : body;
}

export function queryValue(query: [string, string][], name: string): string | undefined {
  for (const [k, v] of query) if (k === name) return v;
  return undefined;
}

/** Prefer header parts: return=minimal|representation|OperationOutcome, handling=strict|lenient. */
export function parsePrefer(prefer: string | undefined): { return?: string; handling?: string; respondAsync?: boolean } {
  const out: { return?: string; handling?: string; respondAsync?: boolean } = {};
  for (const part of (prefer ?? '').split(/[,;]/)) {
    const [k, v] = part.trim().split('=').map((s) => s?.trim().replace(/^"|"$/g, ''));
    if (k === 'return') out.return = v;
    else if (k === 'handling') out.handling = v;
    else if (k === 'respond-async') out.respondAsync = true;
  }
  return out;
}

/** ETag / If-Match value -> version number: W/"3", "3" or 3. */
export function parseVersionTag(tag: string): number | undefined {
  const m = /^\s*(?:W\/)?"?(\d{1,9})"?\s*$/.exec(tag);
  return m ? Number(m[1]) : undefined;
}
