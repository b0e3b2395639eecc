// The app's FHIR client: fetch with the session's bearer token (refreshed and retried once on a
// 401), JSON in and out, and every refusal turned into a FhirError whose message is the
// server's own words (OperationOutcome details / diagnostics) or, failing those, a plain
// sentence for the status in the user's language.
import { FHIR_BASE } from '../config.ts';
import { session } from '../auth/session.ts';
import { t } from '../i18n/index.ts';

export interface Reference {
  reference?: string;
  display?: string;
}
export interface Resource {
  resourceType: string;
  id?: string;
  meta?: { versionId?: string; lastUpdated?: string };
  [key: string]: unknown;
}
export interface BundleEntry<T = Resource> {
  fullUrl?: string;
  resource?: T;
  search?: { mode?: 'match' | 'include' | 'outcome' };
}
export interface Bundle<T = Resource> extends Resource {
  total?: number;
  link?: { relation: string; url: string }[];
  entry?: BundleEntry<T>[];
}
interface OperationOutcome {
  resourceType: 'OperationOutcome';
  issue?: { severity?: string; code?: string; diagnostics?: string; details?: { text?: string }; expression?: string[] }[];
}

export class FhirError extends Error {
  readonly status: number;
  readonly outcome?: OperationOutcome;
  constructor(status: number, message: string, outcome?: OperationOutcome) {
    super(message);
    this.status = status;
    this.outcome = outcome;
  }
}

/** A readable sentence for an OperationOutcome (errors first), or undefined when it says nothing. */
export function outcomeMessage(outcome: OperationOutcome | undefined): string | undefined {
  const issues = (outcome?.issue ?? []).filter((i) => i.severity === 'error' || i.severity === 'fatal' || !i.severity);
  const texts = (issues.length ? issues : (outcome?.issue ?? [])).map((i) => i.diagnostics || i.details?.text).filter((s): s is string => !!s);
  return texts.length ? [...new Set(texts)].join(' ') : undefined;
}

function statusMessage(status: number): string {
  if (status === 0) return t('error.network');
  if (status >= 500) return t('error.5xx', { status });
  const known = [401, 403, 404, 409, 412, 422, 429] as const;
  return (known as readonly number[]).includes(status) ? t(`error.${status as (typeof known)[number]}`) : t('error.other', { status });
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A FHIR request relative to the base (`Task?status=...`) or an absolute URL on it. */
export async function fhir<T = Resource>(path: string, options: RequestOptions = {}): Promise<T> {
  const url = /^https?:/.test(path) ? path : path ? `${FHIR_BASE}/${path.replace(/^\//, '')}` : FHIR_BASE;
  const send = async (): Promise<Response> => {
    const headers: Record<string, string> = { accept: 'application/fhir+json', authorization: `Bearer ${await session.accessToken()}`, ...options.headers };
    if (options.body !== undefined) headers['content-type'] ??= 'application/fhir+json';
    return fetch(url, { method: options.method ?? 'GET', headers, body: options.body === undefined ? undefined : JSON.stringify(options.body), signal: options.signal });
  };
  let res: Response;
  try {
    res = await send();
    if (res.status === 401 && session.signedIn) {
      await session.refreshNow();
      res = await send();
    }
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    if (!session.signedIn) throw new FhirError(401, t('error.401'));
    throw new FhirError(0, t('error.network'));
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const outcome = (body as OperationOutcome | undefined)?.resourceType === 'OperationOutcome' ? (body as OperationOutcome) : undefined;
    throw new FhirError(res.status, outcomeMessage(outcome) ?? statusMessage(res.status), outcome);
  }
  return body as T;
}

export function search<T extends Resource = Resource>(type: string, params: [string, string][] | Record<string, string>, signal?: AbortSignal): Promise<Bundle<T>> {
  const q = new URLSearchParams(Array.isArray(params) ? params : Object.entries(params));
  return fhir<Bundle<T>>(`${type}?${q}`, { signal });
}

/** Resources of a search result by "Type/id" (matches and includes alike). */
export function byReference(bundle: Bundle): Map<string, Resource> {
  const out = new Map<string, Resource>();
  for (const e of bundle.entry ?? []) if (e.resource?.id) out.set(`${e.resource.resourceType}/${e.resource.id}`, e.resource);
  return out;
}

export function matches<T extends Resource>(bundle: Bundle, type: string): T[] {
  return (bundle.entry ?? []).filter((e) => e.resource?.resourceType === type && e.search?.mode !== 'include').map((e) => e.resource as T);
}

/** Invokes an operation with named inputs (references as valueReference, text as valueString). */
export function operation<T = Resource>(path: string, inputs: Record<string, string | boolean | undefined> = {}): Promise<T> {
  const parameter = Object.entries(inputs)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([name, v]) => {
      if (typeof v === 'boolean') return { name, valueBoolean: v };
      if (/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+$/.test(v as string)) return { name, valueReference: { reference: v } };
      return { name, valueString: v };
    });
  return fhir<T>(path, { method: 'POST', body: { resourceType: 'Parameters', parameter } });
}

/** "Given Family" of a Patient / Practitioner. */
export function nameOf(r: Resource | undefined): string {
  if (typeof r?.name === 'string') return r.name; // Organization, Location, ...
  const names = (r?.name as { text?: string; given?: string[]; family?: string; use?: string }[] | undefined) ?? [];
  const n = names.find((x) => x.use === 'official') ?? names[0];
  if (!n) return '';
  return n.text ?? [...(n.given ?? []), n.family ?? ''].join(' ').trim();
}

export const refOf = (r: Resource): string => `${r.resourceType}/${r.id}`;
